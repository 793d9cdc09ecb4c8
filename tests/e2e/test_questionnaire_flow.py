"""The weekly check-in on a phone, by taps only, in French and in English; offline and back."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from patient_portal.extensions import db
from patient_portal.questionnaires.models import Answer, Assignment, Submission
from patient_portal.questionnaires.services import plan_assignments
from patient_portal.schedule.services import plan_visits
from tests.e2e.conftest import assert_accessible, assert_no_horizontal_scroll
from tests.factories import open_session_for

RATINGS = [
    "raynaud",
    "finger_ulcers",
    "breathing",
    "swallowing_reflux",
    "bowel",
    "pain",
    "fatigue",
    "skin_tightness",
    "overall",
]
WORDS = {
    "fr-CA": {
        "language": "fr",
        "start": "Commencer",
        "saved": "Enregistré",
        "next": "Suivant",
        "no": "Non",
        "review": "Vérifiez vos réponses",
        "send": "Envoyer mes réponses",
        "done": "Merci, vos réponses ont été envoyées",
        "offline": "Vous êtes hors ligne",
    },
    "en-CA": {
        "language": "en",
        "start": "Start",
        "saved": "Saved",
        "next": "Next",
        "no": "No",
        "review": "Review your answers",
        "send": "Send my answers",
        "done": "Thank you, your answers have been sent",
        "offline": "You are offline",
    },
}


def _signed_in_phone(live_server, new_phone, make_participant, locale):
    # Day 0 yesterday: this week's check-in is open now, without travelling in time.
    participant = make_participant(
        language=WORDS[locale]["language"], day0=date.today() - timedelta(days=1)
    )
    plan_visits(participant)
    plan_assignments(participant)
    db.session.commit()
    assignment = db.session.scalars(
        sa.select(Assignment).where(
            Assignment.participant_id == participant.id,
            Assignment.series_code == "WEEKLY",
            Assignment.occurrence == 0,
        )
    ).one()
    page = new_phone(locale)
    page.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(participant), "url": live_server}]
    )
    return page, assignment


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_weekly_check_in_by_taps_only(live_server, new_phone, make_participant, locale):
    words = WORDS[locale]
    page, assignment = _signed_in_phone(live_server, new_phone, make_participant, locale)
    page.goto(f"{live_server}/questionnaires")
    page.get_by_role("link", name=words["start"]).tap()
    page.get_by_role("link", name=words["start"]).tap()

    for number, item_id in enumerate(RATINGS):
        expect(page).to_have_url(f"{live_server}/questionnaires/{assignment.id}/items/{item_id}")
        if number == 0:
            for button in page.locator("button.answer").all():
                box = button.bounding_box()
                assert box["width"] >= 44 and box["height"] >= 44
            assert_accessible(page)
            assert_no_horizontal_scroll(page)
        # One tap is the answer: it is saved, and the next question comes by itself.
        page.get_by_role("button", name=str(number % 7 + 1), exact=True).tap()
        following = RATINGS[number + 1] if number + 1 < len(RATINGS) else "anything_new"
        expect(page).to_have_url(f"{live_server}/questionnaires/{assignment.id}/items/{following}")
        expect(page.locator("#save-status")).to_contain_text(words["saved"])

    page.get_by_role("button", name=words["no"], exact=True).tap()
    # The note on whom to call; the areas question stays hidden after "no". Wait for it, or
    # the next tap can land on the page being left.
    expect(page).to_have_url(f"{live_server}/questionnaires/{assignment.id}/items/urgent_note")
    expect(page.locator("#save-status")).to_contain_text(words["saved"])
    page.get_by_role("link", name=words["next"]).tap()

    expect(page.get_by_role("heading", level=1)).to_have_text(words["review"])
    assert_accessible(page)
    assert_no_horizontal_scroll(page)
    page.get_by_role("button", name=words["send"]).tap()
    expect(page.get_by_role("heading", level=1)).to_have_text(words["done"])
    assert_accessible(page)

    db.session.expire_all()
    submission = db.session.scalars(sa.select(Submission)).one()
    assert submission.language == words["language"]
    assert submission.answers["raynaud"] == 1 and submission.answers["anything_new"] is False


def test_offline_answer_is_resent_when_the_connection_is_back(
    live_server, new_phone, make_participant
):
    page, assignment = _signed_in_phone(live_server, new_phone, make_participant, "en-CA")
    page.goto(f"{live_server}/questionnaires/{assignment.id}/items/pain")
    page.context.set_offline(True)
    page.get_by_role("button", name="6", exact=True).tap()
    expect(page.get_by_role("alert")).to_contain_text(WORDS["en-CA"]["offline"])
    assert db.session.scalar(sa.select(sa.func.count(Answer.id))) == 0

    page.context.set_offline(False)
    expect(page.locator("#save-status")).to_contain_text("Saved")
    expect(page.locator("#offline-banner")).to_be_hidden()
    db.session.expire_all()
    assert db.session.scalars(sa.select(Answer)).one().value == 6
