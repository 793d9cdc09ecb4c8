"""The coordinator's morning on a 1366 × 768 laptop, in French and in English: the worklist is
the landing page, the participant with an urgent alert is first; the coordinator records a
call, acknowledges the alert, books the visit whose window is open, and the row leaves the
list. Reloading after each form records nothing twice; axe-core finds nothing on each page.
Screenshots at 1366 and 1280 px and on a 768 px tablet go to /tmp/shots-worklist."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from patient_portal import clock
from patient_portal.audit import AuditEvent
from patient_portal.contacts.models import ContactAttempt
from patient_portal.extensions import db
from patient_portal.questionnaires.models import Alert, Assignment
from patient_portal.schedule.models import Visit
from tests.e2e.conftest import LOCALES, assert_accessible
from tests.factories import open_session_for

SHOTS = Path("/tmp/shots-worklist")
LOCALES_ZONE = {locale: ZoneInfo(zone) for locale, zone in LOCALES.items()}
WORDS = {
    "fr-CA": {
        "language": "fr",
        "today": "Aujourd’hui",
        "urgent": "1 alerte urgente ouverte depuis",
        "record": "Noter un contact",
        "reached": "Personne jointe",
        "save_contact": "Enregistrer le contact",
        "recorded": "enregistré.",
        "last_contact": "Dernier contact aujourd’hui (téléphone), personne jointe",
        "acknowledge_link": "Prendre en compte l’alerte",
        "outcome": "Appel passé à la personne participante",
        "acknowledge": "Prendre en compte cette alerte",
        "book": "Fixer le rendez-vous",
        "set": "Fixer le rendez-vous",
        "date": "Date",
        "save": "Enregistrer le rendez-vous",
        "saved": "Enregistré.",
        "past": "Cette date est passée.",
        "confirm_box": "Oui, le rendez-vous a eu lieu à cette date passée",
        "confirm": "Confirmer la date passée",
        "overdue": "En retard : date passée, statut non saisi",
        "reason": "Motif (obligatoire hors de la fenêtre)",
    },
    "en-CA": {
        "language": "en",
        "today": "Today",
        "urgent": "1 urgent alert open for",
        "record": "Record a contact",
        "reached": "Reached",
        "save_contact": "Record the contact",
        "recorded": "recorded.",
        "last_contact": "Last contact today (phone), reached",
        "acknowledge_link": "Acknowledge the alert",
        "outcome": "Called the participant",
        "acknowledge": "Acknowledge this alert",
        "book": "Book the visit",
        "set": "Set the appointment",
        "date": "Date",
        "save": "Save the appointment",
        "saved": "Saved.",
        "past": "This date is in the past.",
        "confirm_box": "Yes, the appointment was on this past date",
        "confirm": "Confirm the past date",
        "overdue": "Overdue: past, not marked",
        "reason": "Reason (required outside the window)",
    },
}


def _waiting_for_m1(make_participant):
    """A participant 28 days after day 0 with nothing else to do: the M1 window is open and
    nothing is booked; earlier visits done, every questionnaire opened so far answered."""
    today = clock.now().date()
    person = make_participant(site_code="JGH", day0=today - timedelta(days=28))
    for visit in db.session.scalars(sa.select(Visit).where(Visit.participant_id == person.id)):
        if visit.window_end < today:
            visit.status = "completed"
    db.session.execute(
        sa.update(Assignment)
        .where(Assignment.participant_id == person.id, Assignment.opens_at <= clock.now())
        .values(status="completed")
    )
    db.session.commit()
    return person


def _count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def _shoot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_the_coordinators_morning_from_the_worklist(
    live_server, screen, make_participant, make_staff, locale
):
    words = WORDS[locale]
    waiting = _waiting_for_m1(make_participant)
    urgent = _waiting_for_m1(make_participant)
    db.session.add(
        Alert(
            participant_id=urgent.id,
            rule_id="chest_pain",
            severity="urgent",
            created_at=clock.now() - timedelta(hours=1),
            due_at=clock.now() + timedelta(hours=1),
        )
    )
    db.session.commit()
    coordinator = make_staff(sites=["JGH"], language=words["language"], name="Camille Test")
    page = screen(1366, 768, locale)
    page.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(coordinator), "url": live_server}]
    )
    page.goto(live_server + "/staff")
    expect(page.get_by_role("heading", level=1)).to_have_text(words["today"])
    rows = page.locator(".work-row")
    expect(rows).to_have_count(2)
    expect(rows.first.get_by_role("heading")).to_have_text(urgent.study_id)
    expect(rows.first).to_contain_text(words["urgent"])
    expect(rows.nth(1).get_by_role("heading")).to_have_text(waiting.study_id)
    assert_accessible(page)
    _shoot(page, f"worklist-{locale}-1366.png")
    page.set_viewport_size({"width": 1280, "height": 800})
    _shoot(page, f"worklist-{locale}-1280.png")
    page.set_viewport_size({"width": 768, "height": 1024})
    _shoot(page, f"worklist-{locale}-768.png")
    page.set_viewport_size({"width": 1366, "height": 768})

    # A call, recorded from the row; reloading the page it leads to records nothing more.
    rows.first.get_by_role("link", name=words["record"]).click()
    assert_accessible(page)
    _shoot(page, f"contact-{locale}-1366.png")
    page.get_by_label(words["reached"]).check()
    page.get_by_role("button", name=words["save_contact"]).click()
    expect(page.get_by_role("status")).to_contain_text(words["recorded"])
    expect(rows.first).to_contain_text(words["last_contact"])
    page.reload()
    assert _count(ContactAttempt) == 1
    assert_accessible(page)

    # The alert, acknowledged from the participant's page the row leads to.
    rows.first.get_by_role("link", name=words["acknowledge_link"]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(urgent.study_id)
    assert_accessible(page)
    _shoot(page, f"participant-{locale}-1366.png")
    page.set_viewport_size({"width": 768, "height": 1024})
    _shoot(page, f"participant-{locale}-768.png")
    page.set_viewport_size({"width": 1366, "height": 768})
    page.get_by_label(words["outcome"]).check()
    page.get_by_role("button", name=words["acknowledge"]).click()
    page.reload()
    db.session.expire_all()
    assert (
        db.session.scalar(
            sa.select(sa.func.count(AuditEvent.id)).where(AuditEvent.action == "alert.acknowledged")
        )
        == 1
    )

    # The visit whose window is open, booked three days from now.
    page.goto(live_server + "/staff")
    row = page.locator(f"#row-{urgent.study_id}")
    expect(row).not_to_contain_text(words["urgent"])
    row.get_by_role("link", name=words["book"]).click()
    visit = page.locator("#visit-M1")
    visit.get_by_text(words["set"], exact=True).click()
    day = (clock.now().astimezone(LOCALES_ZONE[locale]).date() + timedelta(days=3)).isoformat()
    visit.get_by_label(words["date"], exact=True).fill(day)
    visit.get_by_role("button", name=words["save"]).click()
    expect(page.locator("#visit-M1").get_by_text(words["saved"])).to_be_visible()
    assert_accessible(page)
    _shoot(page, f"schedule-{locale}-1366.png")

    # Back to the list: the row has left it; the other participant is still there.
    page.get_by_role("navigation").get_by_role("link", name=words["today"]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(words["today"])
    remaining = page.locator(".work-row")
    expect(remaining).to_have_count(1)
    expect(remaining.first.get_by_role("heading")).to_have_text(waiting.study_id)
    assert_accessible(page)
    db.session.expire_all()
    assert (
        db.session.scalar(
            sa.select(sa.func.count(AuditEvent.id)).where(
                AuditEvent.action == "visit.appointment_set"
            )
        )
        == 1
    )


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_a_past_appointment_date_is_saved_only_once_confirmed(
    live_server, screen, make_participant, make_staff, locale
):
    words = WORDS[locale]
    today = clock.now().date()
    # Day 0 six weeks ago: the M1 window (days 21 to 35) has ended with nothing marked.
    person = make_participant(site_code="JGH", day0=today - timedelta(days=42))
    coordinator = make_staff(sites=["JGH"], language=words["language"])
    page = screen(1366, 768, locale)
    page.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(coordinator), "url": live_server}]
    )
    page.goto(f"{live_server}/staff/participants/{person.study_id}/schedule")
    visit = page.locator("#visit-M1")
    expect(visit.get_by_text(words["overdue"])).to_be_visible()
    visit.get_by_text(words["set"], exact=True).click()
    day = (clock.now().astimezone(LOCALES_ZONE[locale]).date() - timedelta(days=10)).isoformat()
    visit.get_by_label(words["date"], exact=True).fill(day)
    visit.get_by_role("button", name=words["save"]).click()
    visit = page.locator("#visit-M1")
    expect(visit.get_by_role("alert")).to_contain_text(words["past"])
    db.session.expire_all()
    m1 = db.session.scalars(
        sa.select(Visit).where(Visit.participant_id == person.id, Visit.code == "M1")
    ).one()
    assert m1.scheduled_at is None
    assert_accessible(page)
    SHOTS.mkdir(exist_ok=True)
    visit.screenshot(path=str(SHOTS / f"past-date-{locale}-1366.png"))
    visit.get_by_label(words["confirm_box"]).check()
    visit.get_by_role("button", name=words["confirm"]).click()
    expect(page.locator("#visit-M1").get_by_text(words["saved"])).to_be_visible()
    db.session.expire_all()
    assert db.session.get(Visit, m1.id).scheduled_at is not None
