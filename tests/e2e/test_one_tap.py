"""One tap per answer, on a phone (issue 16, items 4–7): the month-3 bundle answered with one
tap per single-choice answer; the chosen answer shown at once on a slow line; nothing moves
when the connection drops; one ordered 0–10 layout at every size; a menu that fits a hand."""

from __future__ import annotations

import os
from datetime import date, timedelta
from itertools import pairwise

import pytest
import sqlalchemy as sa
from playwright.sync_api import Error, Page, Route, expect

from patient_portal import clock
from patient_portal.extensions import db
from patient_portal.questionnaires.models import Answer, Assignment, Submission
from patient_portal.questionnaires.services import plan_assignments
from patient_portal.schedule.services import plan_visits
from tests.e2e.conftest import PHONE, assert_accessible, assert_no_horizontal_scroll
from tests.factories import open_session_for

WORDS = {
    "fr-CA": {
        "language": "fr",
        "start": "Commencer",
        "saved": "Enregistré",
        "saving": "Enregistrement…",
        "not_saved": "Pas encore enregistré",
        "no": "Non",
        "send": "Envoyer mes réponses",
        "back": "Retour à mes questionnaires",
        "menu": "Menu",
        "exit": "Faire une pause",
        "offline": "Vous êtes hors ligne",
    },
    "en-CA": {
        "language": "en",
        "start": "Start",
        "saved": "Saved",
        "saving": "Saving…",
        "not_saved": "Not saved yet",
        "no": "No",
        "send": "Send my answers",
        "back": "Back to my questionnaires",
        "menu": "Menu",
        "exit": "Stop for now",
        "offline": "You are offline",
    },
}
# What the month-3 visit asks, with that week's check-in.
MONTH_3 = {"patient_global", "daily_life_hands", "quality_of_life", "weekly_checkin"}
SHOTS = os.environ.get("E2E_SCREENSHOTS")  # a directory, to look at the screens


def _month_3_phone(live_server, new_phone, make_participant, locale: str) -> Page:
    # Infusion 2 (month 3) is tomorrow: its questionnaires and this week's check-in are open.
    participant = make_participant(
        language=WORDS[locale]["language"], day0=date.today() - timedelta(days=90)
    )
    plan_visits(participant)
    plan_assignments(participant)
    db.session.commit()
    page = new_phone(locale)
    page.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(participant), "url": live_server}]
    )
    return page


def _open_assignment(instrument_id: str) -> Assignment:
    db.session.expire_all()
    now = clock.now()
    return db.session.scalars(
        sa.select(Assignment).where(
            Assignment.instrument_id == instrument_id,
            Assignment.opens_at <= now,
            Assignment.closes_at > now,
        )
    ).one()


def _shot(page: Page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/{name}.png", full_page=False)


class Taps:
    """Every tap the participant makes, by kind, and the "Next" taps a one-tap answer needed."""

    def __init__(self, page: Page, words: dict):
        self.page, self.words = page, words
        self.all: list[str] = []
        self.one_tap_answers = 0
        self.next_after_one_tap = 0
        self.questions = 0

    def tap(self, locator, kind: str) -> None:
        self.all.append(kind)
        before = self.page.url
        locator.tap()
        if kind == "next":
            self.page.wait_for_url(lambda url: url != before)

    def screen_settled(self, before: str) -> None:
        """The answer's save came back: the question was replaced (by itself, saved, or by the
        next one) or the review was loaded."""
        saved = self.words["saved"]
        for _ in range(200):
            try:
                done = self.page.evaluate(
                    """(saved) => !document.querySelector('#question[data-before]')
                        && (location.pathname.endsWith('/review')
                            || (document.getElementById('save-status') || {textContent: ''})
                               .textContent.includes(saved))""",
                    saved,
                )
            except Error:  # the page is being replaced by the review
                done = False
            if done:
                return
            self.page.wait_for_timeout(50)
        raise AssertionError(f"the answer on {before} never came back saved")

    def answer(self) -> None:
        """Answer the question on screen the way a participant would, counting the taps."""
        page = self.page
        question = page.locator("#question")
        before = page.url
        first = question.locator("button.answer, a.q-next").first
        # The first answer is on screen without scrolling, on a 390 × 844 phone.
        expect(first).to_be_in_viewport(ratio=1)
        if question.locator(".q-choices[data-exclusive]").count():
            self.questions += 1
            self.tap(question.locator("button.answer").first, "toggle")
            expect(page.locator("#save-status")).to_contain_text(self.words["saved"])
            self.tap(question.locator("a.q-next"), "next")
            return
        if question.locator(".q-scale").count():
            button = question.get_by_role("button", name="2", exact=True)
        elif question.locator(".q-yes-no").count():
            button = question.get_by_role("button", name=self.words["no"], exact=True)
        elif question.locator(".q-choices").count():
            button = question.locator("button.answer").first
        else:  # a text to read
            self.tap(question.locator("a.q-next"), "next")
            return
        self.questions += 1
        self.one_tap_answers += 1
        page.evaluate("document.getElementById('question').dataset.before = '1'")
        self.tap(button, "answer")
        self.screen_settled(before)
        if page.url == before:  # still the same question: "Next" is needed
            self.next_after_one_tap += 1
            self.tap(page.locator("a.q-next"), "next")


def test_the_month_3_bundle_takes_one_tap_per_single_choice_answer(
    live_server, new_phone, make_participant
):
    words = WORDS["fr-CA"]
    page = _month_3_phone(live_server, new_phone, make_participant, "fr-CA")
    taps = Taps(page, words)
    page.goto(f"{live_server}/questionnaires")
    started = 0
    while page.locator(".q-list a.button").count():
        taps.tap(page.locator(".q-list a.button").first, "open")
        started += 1
        taps.tap(page.get_by_role("link", name=words["start"], exact=True), "start")
        page.wait_for_url("**/items/**")
        while "/items/" in page.url:
            taps.answer()
            page.wait_for_load_state()
        expect(page).to_have_url(f"{page.url.split('/review')[0]}/review")
        taps.tap(page.get_by_role("button", name=words["send"]), "send")
        taps.tap(page.get_by_role("link", name=words["back"]), "back")
        page.wait_for_url(f"{live_server}/questionnaires")

    db.session.expire_all()
    sent = db.session.scalars(sa.select(Submission)).all()
    assert {s.assignment.instrument_id for s in sent} == MONTH_3 and started == len(MONTH_3)
    # The figures of the closing note: taps for the whole bundle, and per answer.
    print(
        f"\nmonth-3 bundle: {taps.questions} questions, {len(taps.all)} taps"
        f" ({taps.one_tap_answers} one-tap answers, {taps.all.count('next')} Next,"
        f" {taps.next_after_one_tap} Next after a one-tap answer)"
    )
    assert taps.next_after_one_tap == 0
    assert taps.all.count("answer") == taps.one_tap_answers


def _weekly_item(live_server, new_phone, make_participant, locale: str, item: str):
    page = _month_3_phone(live_server, new_phone, make_participant, locale)
    assignment = _open_assignment("weekly_checkin")
    page.goto(f"{live_server}/questionnaires/{assignment.id}/items/{item}")
    return page, assignment


TIMING = """() => {
    window.tappedAt = null; window.chosenAt = null; window.savingAt = null;
    const tapped = () => { if (window.tappedAt === null) { window.tappedAt = performance.now(); } };
    for (const type of ['touchstart', 'pointerdown', 'mousedown', 'click']) {
        document.addEventListener(type, tapped, {capture: true});
    }
    new MutationObserver(() => {
        if (window.tappedAt === null) { return; }
        const now = performance.now();
        if (window.chosenAt === null
            && document.querySelector('#question button.answer[aria-pressed="true"]')) {
            window.chosenAt = now;
        }
        if (window.savingAt === null
            && document.querySelector('#save-status .q-saving')) {
            window.savingAt = now;
        }
    }).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_on_a_slow_line_the_tapped_answer_shows_chosen_at_once(
    live_server, new_phone, make_participant, locale
):
    words = WORDS[locale]
    page, assignment = _weekly_item(live_server, new_phone, make_participant, locale, "pain")
    held: list[Route] = []

    def hold(route: Route) -> None:
        if route.request.method == "POST":
            held.append(route)  # answered below, as a slow line would, much later
        else:
            route.continue_()

    page.route(f"**/questionnaires/{assignment.id}/items/pain", hold)
    page.evaluate(TIMING)
    page.get_by_role("button", name="6", exact=True).tap()
    expect(page.get_by_role("button", name="6", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page.locator("#save-status")).to_have_text(words["saving"])
    assert len(held) == 1, "the save is still on its way"
    timing = page.evaluate("[window.tappedAt, window.chosenAt, window.savingAt]")
    assert None not in timing
    tapped, chosen, saving = timing
    # Measured inside the page: chosen and "Saving…" on screen within 100 ms of the tap.
    assert chosen - tapped < 100 and saving - tapped < 100, timing
    _shot(page, f"slow-saving-{locale}")

    held[0].continue_()
    expect(page).to_have_url(f"{live_server}/questionnaires/{assignment.id}/items/fatigue")
    expect(page.locator("#save-status")).to_contain_text(words["saved"])
    db.session.expire_all()
    assert db.session.scalars(sa.select(Answer)).one().value == 6


def _page_box(page: Page, selector: str) -> list[float]:
    return page.evaluate(
        """(selector) => { const r = document.querySelector(selector).getBoundingClientRect();
                           return [r.left, r.top + window.scrollY, r.width, r.height]; }""",
        selector,
    )


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_nothing_moves_when_the_connection_drops(live_server, new_phone, make_participant, locale):
    words = WORDS[locale]
    page, assignment = _weekly_item(live_server, new_phone, make_participant, locale, "pain")
    answers = _page_box(page, "#question .q-scale")
    heading = _page_box(page, "#question-text")

    page.context.set_offline(True)
    page.get_by_role("button", name="6", exact=True).tap()
    expect(page.locator("#offline-banner")).to_be_visible()
    expect(page.locator("#offline-banner")).to_contain_text(words["offline"])
    expect(page.get_by_role("button", name="6", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    # The participant sees that the last answer is not safe yet.
    expect(page.locator(".q-statusbar")).to_contain_text(words["not_saved"])
    expect(page.locator(".q-statusbar")).to_be_in_viewport()
    assert _page_box(page, "#question .q-scale") == answers
    assert _page_box(page, "#question-text") == heading
    # The bar is over the bottom of the screen, not in the page's flow.
    assert page.evaluate("getComputedStyle(document.querySelector('.q-statusbar')).position") == (
        "fixed"
    )
    _shot(page, f"offline-{locale}")

    page.context.set_offline(False)
    expect(page).to_have_url(f"{live_server}/questionnaires/{assignment.id}/items/fatigue")
    expect(page.locator("#save-status")).to_contain_text(words["saved"])
    expect(page.locator("#offline-banner")).to_be_hidden()


BROKEN_WORDS = """(selector) => {
    const broken = [];
    for (const root of document.querySelectorAll(selector)) {
        const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
        while (walker.nextNode()) {
            const node = walker.currentNode;
            const parent = node.parentElement;
            if (!parent || !parent.checkVisibility() || parent.closest('.visually-hidden')) {
                continue;
            }
            for (const match of node.textContent.matchAll(/\\S+/g)) {
                const range = document.createRange();
                range.setStart(node, match.index);
                range.setEnd(node, match.index + match[0].length);
                const lines = new Set(Array.from(range.getClientRects())
                    .filter((r) => r.width > 0).map((r) => Math.round(r.top)));
                if (lines.size > 1) { broken.push(match[0]); }
            }
        }
    }
    return broken;
}"""


SIZES = [(390, 844, "100%"), (320, 640, "100%"), (320, 640, "200%")]


def _scale_layout(page: Page) -> list[list[float]]:
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('#question .q-scale button.answer'))
            .map((b) => { const r = b.getBoundingClientRect();
                          return [Number(b.querySelector('.answer-value').textContent),
                                  r.left, r.top + window.scrollY, r.width, r.height]; })"""
    )


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_every_0_to_10_scale_keeps_one_ordered_layout(
    live_server, new_phone, make_participant, locale
):
    page = _month_3_phone(live_server, new_phone, make_participant, locale)
    weekly = _open_assignment("weekly_checkin")
    global_ = _open_assignment("patient_global")
    for url in (
        f"{live_server}/questionnaires/{weekly.id}/items/pain",
        f"{live_server}/questionnaires/{global_.id}/items/global",
    ):
        for width, height, text in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.goto(url)
            page.evaluate(f"document.documentElement.style.fontSize = '{text}'")
            rows = _scale_layout(page)
            # One column, 0 at the top to 10 at the bottom, every row the same width.
            assert [row[0] for row in rows] == list(range(11)), (width, text)
            assert len({round(row[1]) for row in rows}) == 1, (width, text, rows)
            assert len({round(row[3]) for row in rows}) == 1, (width, text, rows)
            for above, below in pairwise(rows):
                assert below[2] >= above[2] + above[4], (width, text, above, below)
            # The anchors' words are at both ends.
            assert page.locator("#question .q-scale .answer-caption").first.inner_text()
            assert page.locator("#question .q-scale .answer-caption").last.inner_text()
            assert page.evaluate(BROKEN_WORDS, "#question .q-scale") == [], (width, text)
            assert_no_horizontal_scroll(page)
            page.locator("#question .q-scale button").last.scroll_into_view_if_needed()
            _shot(page, f"scale-{url.rsplit('/', 1)[1]}-{locale}-{width}-{text[:-1]}")


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_the_menu_fits_a_small_screen_with_large_text(
    live_server, new_phone, make_participant, locale
):
    words = WORDS[locale]
    page = _month_3_phone(live_server, new_phone, make_participant, locale)
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto(f"{live_server}/home")
    page.evaluate("document.documentElement.style.fontSize = '200%'")
    header = page.locator(".site-header")
    _shot(page, f"menu-closed-{locale}-320-200")
    # Less than a quarter of the screen, menu closed; its words whole.
    assert header.bounding_box()["height"] < 640 / 4
    assert page.evaluate(BROKEN_WORDS, ".site-header") == []
    # Whom to call is one tap away, without opening the menu.
    expect(header.locator("a.header-pin", has_text="Contact")).to_be_in_viewport(ratio=1)

    page.get_by_text(words["menu"], exact=True).tap()
    menu = page.get_by_role(
        "navigation", name="Menu principal" if locale == "fr-CA" else "Main menu"
    )
    expect(menu).to_be_visible()
    assert menu.get_by_role("link").count() >= 4
    _shot(page, f"menu-open-{locale}-320-200")
    assert page.evaluate(BROKEN_WORDS, ".site-header") == []
    assert_no_horizontal_scroll(page)
    assert_accessible(page)
    menu.get_by_role("link").nth(2).tap()  # questionnaires, one tap from the open menu
    expect(page).to_have_url(f"{live_server}/questionnaires")


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_inside_a_questionnaire_one_exit_replaces_the_menu(
    live_server, new_phone, make_participant, locale
):
    words = WORDS[locale]
    page, assignment = _weekly_item(live_server, new_phone, make_participant, locale, "raynaud")
    header = page.locator(".site-header")
    expect(page.get_by_role("navigation", name="Main menu")).to_have_count(0)
    expect(page.get_by_text(words["menu"], exact=True)).to_have_count(0)
    expect(header.get_by_role("link")).to_have_count(1)
    expect(header.get_by_role("link")).to_have_text(words["exit"])
    # The first answer is on screen without scrolling, and so is the status after a tap.
    expect(page.get_by_role("button", name="0", exact=False).first).to_be_in_viewport(ratio=1)
    page.get_by_role("button", name="3", exact=True).tap()
    expect(page).to_have_url(f"{live_server}/questionnaires/{assignment.id}/items/finger_ulcers")
    expect(page.locator("#save-status")).to_be_in_viewport(ratio=1)
    _shot(page, f"item-{locale}-390")
    assert_accessible(page)

    page.set_viewport_size({"width": 320, "height": 640})
    page.evaluate("document.documentElement.style.fontSize = '200%'")
    assert header.bounding_box()["height"] < 640 / 4
    assert page.evaluate(BROKEN_WORDS, ".site-header, .q-nav") == []
    assert_no_horizontal_scroll(page)
    _shot(page, f"item-{locale}-320-200")

    # Back keeps the answer; the exit keeps everything and leads to the questionnaires.
    page.get_by_role(
        "link", name="Question précédente" if locale == "fr-CA" else "Previous question"
    ).tap()
    expect(page).to_have_url(f"{live_server}/questionnaires/{assignment.id}/items/raynaud")
    expect(page.get_by_role("button", name="3", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    header.get_by_role("link").tap()
    expect(page).to_have_url(f"{live_server}/questionnaires")
    db.session.expire_all()
    assert db.session.scalars(sa.select(Answer)).one().value == 3


def test_without_javascript_one_tap_still_answers_and_moves_on(
    live_server, browser, make_participant
):
    participant = make_participant(language="en", day0=date.today() - timedelta(days=90))
    plan_visits(participant)
    plan_assignments(participant)
    db.session.commit()
    weekly = _open_assignment("weekly_checkin")
    context = browser.new_context(
        viewport=PHONE, is_mobile=True, has_touch=True, java_script_enabled=False
    )
    try:
        context.add_cookies(
            [{"name": "portal_session", "value": open_session_for(participant), "url": live_server}]
        )
        page = context.new_page()
        page.goto(f"{live_server}/questionnaires/{weekly.id}/items/raynaud")
        # A plain form: the tap posts, the server saves and sends the next question.
        page.get_by_role("button", name="4", exact=True).tap()
        expect(page).to_have_url(
            f"{live_server}/questionnaires/{weekly.id}/items/finger_ulcers?saved=1"
        )
        expect(page.locator("#save-status")).to_contain_text("Saved")
        page.get_by_role("link", name="Previous question").tap()
        expect(page.get_by_role("button", name="4", exact=True)).to_have_attribute(
            "aria-pressed", "true"
        )
        # The menu opens without JavaScript too.
        page.goto(f"{live_server}/home")
        page.get_by_text("Menu", exact=True).tap()
        expect(page.get_by_role("navigation", name="Main menu")).to_be_visible()
    finally:
        context.close()
    db.session.expire_all()
    assert db.session.scalars(sa.select(Answer)).one().value == 4
