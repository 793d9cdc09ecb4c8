"""An answer whose save fails is sent again by itself, on a phone, in French and in English:
after a server error (503) or a failed connection while the phone still says it is online, with
backoff and without waiting for an `online` event; the question and its buttons stay on screen,
the tapped answer stays chosen, the status area says it is not saved yet, and a later tap on the
same question replaces an unsent earlier one without losing a toggle."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, Route, expect

from patient_portal import clock
from patient_portal.extensions import db
from patient_portal.questionnaires.models import Answer, Assignment
from patient_portal.questionnaires.services import plan_assignments
from patient_portal.schedule.services import plan_visits
from tests.e2e.conftest import assert_accessible, horizontal_overflow_at_320_and_200_percent
from tests.factories import open_session_for

DATA = Path(__file__).parent / "data"
WORDS = {
    "fr-CA": {
        "language": "fr",
        "retrying": "Pas encore enregistré",
        "detail": "Le portail réessaie de lui-même. Gardez cette page ouverte.",
        "saved": "Enregistré",
        "hands": "Mains",
        "face": "Visage",
    },
    "en-CA": {
        "language": "en",
        "retrying": "Not saved yet",
        "detail": "The portal is trying again by itself. Keep this page open.",
        "saved": "Saved",
        "hands": "Hands",
        "face": "Face",
    },
}
# The app's own "something went wrong" fragment, as a 5xx would bring it: never swapped in.
SERVER_ERROR = (
    '<div class="notice notice-error" role="alert"><p class="notice-title">Something went '
    "wrong on our side</p></div>"
)
# 1 s, then 2 s, between the first tries: well inside this.
RETRIED = 15_000
START = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def settings(settings: dict) -> dict:
    settings["PORTAL_INSTRUMENTS_DIR"] = str(DATA)
    return settings


def _phone(live_server, new_phone, participant, locale: str) -> Page:
    page = new_phone(locale)
    page.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(participant), "url": live_server}]
    )
    return page


def _weekly(
    live_server, new_phone, make_participant, locale: str, fake_clock: bool = False
) -> tuple[Page, Assignment]:
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
    page = _phone(live_server, new_phone, participant, locale)
    if fake_clock:
        page.clock.install(time=START)
    page.goto(f"{live_server}/questionnaires/{assignment.id}/items/pain")
    if fake_clock:
        page.clock.pause_at(START + timedelta(minutes=1))  # from now on, time moves on demand
    _watch_buttons(page)
    return page, assignment


def _watch_buttons(page: Page) -> None:
    """Note the fewest answer buttons the question ever shows from now on."""
    page.evaluate(
        """() => {
            const count = () => document.querySelectorAll('#question button.answer').length;
            window.fewestButtons = count();
            new MutationObserver(() => {
                window.fewestButtons = Math.min(window.fewestButtons, count());
            }).observe(document.body, {childList: true, subtree: true});
        }"""
    )


class Saves:
    """The answer saves the phone sends: the first `failures` answer 503 (or, with
    how="abort", fail as a connection does), then the server has them; `values` are the
    answers sent, in order."""

    def __init__(self, page: Page, path: str, failures: int, how: str = "503"):
        self.failures, self.how = failures, how
        self.values: list[list[str]] = []
        page.route(f"**{path}", self.handle)

    def handle(self, route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        self.values.append(
            sorted(
                v.split("=")[1]
                for v in (route.request.post_data or "").split("&")
                if v.startswith("value=")
            )
        )
        if len(self.values) > self.failures:
            route.continue_()
        elif self.how == "abort":
            route.abort("failed")
        else:
            route.fulfill(status=503, content_type="text/html", body=SERVER_ERROR)


def _answers(assignment: Assignment) -> dict:
    db.session.expire_all()
    return {
        a.item_id: a.value
        for a in db.session.scalars(sa.select(Answer).where(Answer.assignment_id == assignment.id))
    }


def _back_to_pain_shows(page: Page, assignment: Assignment, chosen: str) -> None:
    """Once saved, the one-tap answer moved on to the next question; going back shows it
    chosen."""
    base = page.url.split("/questionnaires/")[0]
    expect(page).to_have_url(f"{base}/questionnaires/{assignment.id}/items/fatigue")
    page.go_back()
    expect(page).to_have_url(f"{base}/questionnaires/{assignment.id}/items/pain")
    expect(page.get_by_role("button", name=chosen, exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )


def _retrying(page: Page, words: dict) -> None:
    status = page.locator("#answer-status")
    expect(status).to_contain_text(words["retrying"])
    expect(status).to_contain_text(words["detail"])


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_an_answer_refused_twice_by_a_server_error_is_saved_by_itself(
    live_server, new_phone, make_participant, locale
):
    words = WORDS[locale]
    page, assignment = _weekly(live_server, new_phone, make_participant, locale)
    saves = Saves(page, f"/questionnaires/{assignment.id}/items/pain", failures=2)

    page.get_by_role("button", name="6", exact=True).tap()
    _retrying(page, words)
    six = page.get_by_role("button", name="6", exact=True)
    expect(six).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#question button.answer")).to_have_count(11)

    expect(page.locator("#save-status")).to_contain_text(words["saved"], timeout=RETRIED)
    expect(page.locator("#answer-status")).to_be_empty()
    assert saves.values == [["6"], ["6"], ["6"]]
    assert _answers(assignment) == {"pain": 6}
    assert page.evaluate("window.fewestButtons") == 11
    expect(page.get_by_text("Something went wrong")).to_have_count(0)
    _back_to_pain_shows(page, assignment, "6")
    # Nothing of the answer was kept in the browser while it waited (htmx keeps only the
    # page's path for its history).
    stored = page.evaluate(
        """async () => [Object.keys(localStorage), Object.keys(sessionStorage),
                        (await indexedDB.databases()).length]"""
    )
    assert stored == [[], ["htmx-current-path-for-history"], 0]
    assert_accessible(page)


def test_retries_back_off_from_one_second_to_at_most_thirty(
    live_server, new_phone, make_participant
):
    page, assignment = _weekly(live_server, new_phone, make_participant, "en-CA", fake_clock=True)
    saves = Saves(page, f"/questionnaires/{assignment.id}/items/pain", failures=1000)
    # Each failed answer has reached the page (which then sets its timer) before the clock
    # moves: the clock moves only on demand, so the real waits here cannot shift the times.
    with page.expect_request_finished():
        page.get_by_role("button", name="6", exact=True).tap()
    for sent, seconds in enumerate([1, 2, 4, 8, 16, 30, 30], start=1):
        page.wait_for_timeout(300)
        page.clock.run_for(seconds * 1000 - 100)
        page.wait_for_timeout(300)
        assert len(saves.values) == sent, f"sent before {seconds} s"
        with page.expect_request_finished():
            page.clock.run_for(200)
        assert len(saves.values) == sent + 1
    _retrying(page, WORDS["en-CA"])
    assert page.evaluate("window.fewestButtons") == 11


def test_a_failed_connection_while_the_phone_says_online_is_retried(
    live_server, new_phone, make_participant
):
    words = WORDS["en-CA"]
    page, assignment = _weekly(live_server, new_phone, make_participant, "en-CA")
    saves = Saves(page, f"/questionnaires/{assignment.id}/items/pain", failures=1, how="abort")

    page.get_by_role("button", name="3", exact=True).tap()
    _retrying(page, words)
    assert page.evaluate("navigator.onLine") is True  # no `online` event will ever come
    expect(page.locator("#offline-banner")).to_be_hidden()

    expect(page.locator("#save-status")).to_contain_text(words["saved"], timeout=RETRIED)
    assert saves.values == [["3"], ["3"]]
    assert _answers(assignment) == {"pain": 3}
    assert page.evaluate("window.fewestButtons") == 11


def test_a_later_tap_replaces_an_unsent_one_and_is_the_one_saved(
    live_server, new_phone, make_participant
):
    words = WORDS["en-CA"]
    page, assignment = _weekly(live_server, new_phone, make_participant, "en-CA")
    saves = Saves(page, f"/questionnaires/{assignment.id}/items/pain", failures=2)

    page.get_by_role("button", name="6", exact=True).tap()
    _retrying(page, words)
    page.get_by_role("button", name="8", exact=True).tap()
    expect(page.get_by_role("button", name="8", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page.get_by_role("button", name="6", exact=True)).to_have_attribute(
        "aria-pressed", "false"
    )

    expect(page.locator("#save-status")).to_contain_text(words["saved"], timeout=RETRIED)
    # In order, and the 6 is never sent again once the 8 was tapped.
    assert saves.values[0] == ["6"] and saves.values[1:] == [["8"]] * (len(saves.values) - 1)
    assert _answers(assignment) == {"pain": 8}
    _back_to_pain_shows(page, assignment, "8")


def _every_item_type(live_server, new_phone, make_participant, item: str):
    participant = make_participant(language="en", day0=date.today() - timedelta(days=1))
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
    page = _phone(live_server, new_phone, participant, "en-CA")
    page.goto(f"{live_server}/questionnaires/{assignment.id}/items/{item}")
    return page, assignment


def test_toggles_tapped_while_a_save_is_retried_are_all_kept(
    live_server, new_phone, make_participant
):
    words = WORDS["en-CA"]
    page, assignment = _every_item_type(live_server, new_phone, make_participant, "areas")
    saves = Saves(page, f"/questionnaires/{assignment.id}/items/areas", failures=2)

    page.get_by_role("button", name=words["hands"]).tap()
    _retrying(page, words)
    page.get_by_role("button", name=words["face"]).tap()
    for name in (words["hands"], words["face"]):
        expect(page.get_by_role("button", name=name)).to_have_attribute("aria-pressed", "true")

    expect(page.locator("#save-status")).to_contain_text(words["saved"], timeout=RETRIED)
    assert saves.values[0] == ["hands"] and saves.values[-1] == ["face", "hands"]
    assert sorted(_answers(assignment)["areas"]) == ["face", "hands"]


def test_steppers_tapped_while_a_save_is_retried_count_every_tap(
    live_server, new_phone, make_participant
):
    words = WORDS["en-CA"]
    page, assignment = _every_item_type(live_server, new_phone, make_participant, "count")
    Saves(page, f"/questionnaires/{assignment.id}/items/count", failures=3)

    plus = page.locator("button.answer-step").last
    for expected in ("1", "2", "3"):
        plus.tap()
        expect(page.locator(".q-current strong")).to_have_text(expected)
    _retrying(page, words)

    expect(page.locator("#save-status")).to_contain_text(words["saved"], timeout=RETRIED)
    assert _answers(assignment) == {"count": 3}
    expect(page.locator(".q-current strong")).to_have_text("3")


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_the_retrying_state_fits_a_small_screen_with_large_text(
    live_server, new_phone, make_participant, locale
):
    words = WORDS[locale]
    page, assignment = _weekly(live_server, new_phone, make_participant, locale)
    Saves(page, f"/questionnaires/{assignment.id}/items/pain", failures=1000)
    page.get_by_role("button", name="6", exact=True).tap()
    _retrying(page, words)
    status = page.locator("#answer-status")
    shots = os.environ.get("E2E_SCREENSHOTS")  # to look at them: a directory
    # Where the participant looks after the tap: the message is on screen with the button.
    expect(status).to_be_in_viewport()
    if shots:
        page.screenshot(path=f"{shots}/retrying-{locale}-390.png")
    assert horizontal_overflow_at_320_and_200_percent(page) <= 0
    # Here the buttons fill more than the screen: the message is in the status bar, on screen
    # wherever the page is scrolled to (here, down to the question's links).
    page.locator("#question .q-nav").scroll_into_view_if_needed()
    if shots:
        page.screenshot(path=f"{shots}/retrying-{locale}-320-200.png")
    expect(status).to_be_in_viewport()
    assert_accessible(page)
