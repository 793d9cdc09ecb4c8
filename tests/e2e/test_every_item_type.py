"""The item types the weekly check-in does not use, on a phone, in French and in English:
a 0–100 line set by a tap then a stepper, a bounded number by steppers, several choices, a
date and a short text; then the review, where what was typed comes back escaped."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from patient_portal import clock
from patient_portal.extensions import db
from patient_portal.questionnaires.models import Assignment, Submission
from tests.e2e.conftest import assert_accessible, assert_no_horizontal_scroll
from tests.factories import open_session_for

DATA = Path(__file__).parent / "data"
WORDS = {
    "fr-CA": {
        "language": "fr",
        "start": "Commencer",
        "saved": "Enregistré",
        "next": "Suivant",
        "answer": "Votre réponse :",
        "save": "Enregistrer cette réponse",
        "send": "Envoyer mes réponses",
        "hands": "Mains",
        "face": "Visage",
    },
    "en-CA": {
        "language": "en",
        "start": "Start",
        "saved": "Saved",
        "next": "Next",
        "answer": "Your answer:",
        "save": "Save this answer",
        "send": "Send my answers",
        "hands": "Hands",
        "face": "Face",
    },
}
NOTE = "<b>Cold</b> & stiff"


@pytest.fixture
def settings(settings: dict) -> dict:
    settings["PORTAL_INSTRUMENTS_DIR"] = str(DATA)
    return settings


def _open_assignment(participant) -> Assignment:
    now = clock.now()
    assignment = Assignment(
        participant_id=participant.id,
        series_code="TEST",
        instrument_id="every_item_type",
        instrument_version="test-1",
        opens_at=now - timedelta(hours=1),
        closes_at=now + timedelta(days=2),
    )
    db.session.add(assignment)
    db.session.commit()
    return assignment


def _saved(page, words) -> None:
    expect(page.locator("#save-status")).to_contain_text(words["saved"])


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_every_item_type_by_taps_on_a_phone(live_server, new_phone, make_participant, locale):
    words = WORDS[locale]
    participant = make_participant(
        language=words["language"], day0=date.today() - timedelta(days=1)
    )
    assignment = _open_assignment(participant)
    page = new_phone(locale)
    page.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(participant), "url": live_server}]
    )
    page.goto(f"{live_server}/questionnaires/{assignment.id}")
    page.get_by_role("link", name=words["start"]).tap()

    # 0–100: a tap three quarters along the line is 75; the + stepper then makes it 76.
    line = page.locator(".vas-line")
    box = line.bounding_box()
    assert box["height"] >= 44, "the line must be easy to hit"
    line.tap(position={"x": box["width"] * 0.75, "y": box["height"] / 2})
    _saved(page, words)
    expect(page.locator(".q-current")).to_contain_text(f"{words['answer']} 75")
    page.locator("button.answer-step").last.tap()
    expect(page.locator(".q-current")).to_contain_text("76")
    assert_accessible(page)
    assert_no_horizontal_scroll(page)
    page.get_by_role("link", name=words["next"]).tap()
    expect(page).to_have_url(f"{live_server}/questionnaires/{assignment.id}/items/count")

    # A bounded number: + three times from nothing gives 0 → 1 → 2 → 3... starting at the minimum.
    for expected in ("1", "2", "3"):
        page.locator("button.answer-step").last.tap()
        expect(page.locator(".q-current strong")).to_have_text(expected)
    page.get_by_role("link", name=words["next"]).tap()
    expect(page).to_have_url(f"{live_server}/questionnaires/{assignment.id}/items/areas")

    # Several choices, each a toggle that says whether it is pressed.
    page.get_by_role("button", name=words["hands"]).tap()
    _saved(page, words)
    page.get_by_role("button", name=words["face"]).tap()
    expect(page.get_by_role("button", name=words["face"])).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("button", name=words["hands"])).to_have_attribute(
        "aria-pressed", "true"
    )
    assert_accessible(page)
    page.get_by_role("link", name=words["next"]).tap()
    expect(page).to_have_url(f"{live_server}/questionnaires/{assignment.id}/items/when")

    # A date, through the phone's own date picker (filled here as the picker would).
    page.locator("input[type=date]").fill("2026-11-02")
    page.get_by_role("button", name=words["save"]).tap()
    _saved(page, words)
    assert_accessible(page)
    page.get_by_role("link", name=words["next"]).tap()
    expect(page).to_have_url(f"{live_server}/questionnaires/{assignment.id}/items/note")

    # The optional short text: what was typed is shown back as text, never as markup.
    page.locator("textarea").fill(NOTE)
    page.get_by_role("button", name=words["save"]).tap()
    _saved(page, words)
    page.get_by_role("link", name=words["next"]).tap()
    expect(page).to_have_url(f"{live_server}/questionnaires/{assignment.id}/review")

    expect(page.get_by_text(NOTE)).to_be_visible()
    assert page.locator("main b").count() == 0
    assert_accessible(page)
    assert_no_horizontal_scroll(page)
    page.get_by_role("button", name=words["send"]).tap()
    expect(page).to_have_url(f"{live_server}/questionnaires/{assignment.id}/done")

    db.session.expire_all()
    submission = db.session.scalars(sa.select(Submission)).one()
    assert submission.answers == {
        "scale": 76,
        "count": 3,
        "areas": ["hands", "face"],
        "when": "2026-11-02",
        "note": NOTE,
    }
    assert submission.language == words["language"]
