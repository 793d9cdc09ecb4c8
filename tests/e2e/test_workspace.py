"""A coordinator's round, in French and in English: filter the dashboard to missed
questionnaires, open the overdue participant, acknowledge their alert with a note, and export
the answers as CSV; axe-core finds nothing on each page."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from patient_portal import clock
from patient_portal.demo import answer_due
from patient_portal.extensions import db
from patient_portal.planning import plan_year
from patient_portal.questionnaires.models import Alert, Assignment
from tests.e2e.conftest import assert_accessible
from tests.factories import open_session_for

WORDS = {
    "fr-CA": {
        "language": "fr",
        "dashboard": "Tableau de bord",
        "state": "État",
        "missed": "Manqué",
        "one_match": "1 participant correspond à ces filtres.",
        "note": "Note (facultative)",
        "outcome": "Appel passé à la personne participante",
        "acknowledge": "Prendre en compte cette alerte",
        "acknowledged": "Prise en compte par",
        "exports": "Exports",
        "download": "Télécharger Réponses, format long (CSV)",
    },
    "en-CA": {
        "language": "en",
        "dashboard": "Dashboard",
        "state": "State",
        "missed": "Missed",
        "one_match": "1 participant matches these filters.",
        "note": "Note (optional)",
        "outcome": "Called the participant",
        "acknowledge": "Acknowledge this alert",
        "acknowledged": "Acknowledged by",
        "exports": "Exports",
        "download": "Download Answers, long format (CSV)",
    },
}


def _participant(make_participant, days: int, habit: str):
    today = clock.now().date()
    person = make_participant(site_code="JGH", day0=today - timedelta(days=days))
    plan_year(person)
    answer_due(person, habit, clock.now())
    return person


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_coordinator_follows_up_an_overdue_participant_and_exports(
    live_server, new_phone, make_participant, make_staff, locale
):
    words = WORDS[locale]
    on_time = _participant(make_participant, days=3, habit="all")
    overdue = _participant(make_participant, days=40, habit="some")
    # The overdue participant's last check-in raised an alert.
    sent = db.session.scalars(
        sa.select(Assignment)
        .where(Assignment.participant_id == overdue.id, Assignment.status == "completed")
        .order_by(Assignment.opens_at.desc())
    ).first()
    db.session.add(Alert(participant_id=overdue.id, assignment_id=sent.id, rule_id="pain_severe"))
    db.session.commit()
    coordinator = make_staff(sites=["JGH"], language=words["language"], name="Camille Test")
    page = new_phone(locale)
    page.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(coordinator), "url": live_server}]
    )

    page.goto(live_server + "/staff/dashboard")
    expect(page.get_by_role("heading", level=1)).to_have_text(words["dashboard"])
    assert_accessible(page)

    # Filtering by state updates the results with htmx and puts the filter in the URL.
    page.get_by_label(words["state"], exact=True).select_option("missed")
    expect(page.get_by_role("status").first).to_have_text(words["one_match"])
    expect(page).to_have_url(live_server + "/staff/dashboard?state=missed")
    matrix = page.locator(".matrix")
    expect(matrix.get_by_role("link", name=overdue.study_id)).to_be_visible()
    expect(matrix.get_by_role("link", name=on_time.study_id)).to_have_count(0)
    expect(matrix.get_by_text(words["missed"]).first).to_be_visible()
    assert_accessible(page)

    # The same URL, loaded afresh, is the same filtered page (shareable, no JavaScript needed).
    page.reload()
    expect(page.get_by_role("status").first).to_have_text(words["one_match"])

    matrix.get_by_role("link", name=overdue.study_id).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(overdue.study_id)
    assert_accessible(page)

    page.get_by_label(words["outcome"]).check()
    page.get_by_label(words["note"]).fill("Called: pain eased, seen Monday")
    page.get_by_role("button", name=words["acknowledge"]).click()
    expect(page.get_by_text(words["acknowledged"])).to_be_visible()
    expect(page.locator(".card").get_by_text("Called: pain eased, seen Monday")).to_be_visible()
    assert_accessible(page)
    db.session.expire_all()
    note = db.session.scalar(sa.select(Alert.note).where(Alert.participant_id == overdue.id))
    assert note == "Called: pain eased, seen Monday"

    page.get_by_role("navigation").get_by_role("link", name=words["exports"]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(words["exports"])
    assert_accessible(page)
    with page.expect_download() as download_info:
        page.get_by_role("button", name=words["download"]).click()
    download = download_info.value
    assert download.suggested_filename.endswith(".answers.csv")
    with open(download.path(), encoding="utf-8") as exported:
        rows = list(csv.DictReader(io.StringIO(exported.read())))
    assert rows and {row["site"] for row in rows} == {"JGH"}
    assert {row["study_id"] for row in rows} == {on_time.study_id, overdue.study_id}
