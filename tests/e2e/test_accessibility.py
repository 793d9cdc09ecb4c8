"""Every page, in French and in English, on a phone: axe-core finds nothing; a 320 px screen at
200 % text needs no sideways scrolling; the keyboard reaches every control with a visible focus;
reduced motion is honoured; and on participant pages every control is at least 44×44 px.

A last test lists the app's GET routes, so that a new page cannot escape the sweep unnoticed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from patient_portal import clock
from patient_portal.accounts.models import EnrolmentToken, PasskeyCredential
from patient_portal.accounts.services import issue_enrolment_link
from patient_portal.extensions import db
from patient_portal.questionnaires import services as questionnaires
from patient_portal.questionnaires.models import Assignment
from patient_portal.reminders import preferences as reminder_preferences
from tests.e2e.conftest import (
    assert_accessible,
    horizontal_overflow_at_320_and_200_percent,
    keyboard_gaps,
    moving_elements,
    small_tap_targets,
)
from tests.factories import open_session_for

DATA = Path(__file__).parent / "data"
LANGUAGE = {"fr-CA": "fr", "en-CA": "en"}


@pytest.fixture
def settings(settings: dict) -> dict:
    settings["PORTAL_INSTRUMENTS_DIR"] = str(DATA)
    return settings


@dataclass
class World:
    participant_cookie: str
    coordinator_cookie: str
    admin_cookie: str
    enrol_token: str
    study_id: str
    open_id: int
    done_id: int
    email_token: str


def _submitted_check_in(participant) -> Assignment:
    """This week's check-in, answered and sent, for the confirmation page."""
    weekly = db.session.scalars(
        sa.select(Assignment).where(
            Assignment.participant_id == participant.id,
            Assignment.series_code == "WEEKLY",
            Assignment.occurrence == 0,
        )
    ).one()
    instrument = questionnaires.get_instrument(weekly.instrument_id)
    for item in instrument.items:
        if item.type == "rating_0_10":
            questionnaires.save_answer(weekly, item.id, ["2"], participant)
        elif item.type == "yes_no":
            questionnaires.save_answer(weekly, item.id, ["no"], participant)
    questionnaires.submit(weekly, participant, participant.language)
    return weekly


def _replaced_phone(participant, coordinator) -> None:
    """A first passkey, then one from a replacement link: the home page's new-device notice,
    the marks on the settings and staff pages, and the staff page's reason form all show."""
    db.session.add(
        PasskeyCredential(
            participant_id=participant.id, credential_id=b"first", public_key=b"-", nickname="A"
        )
    )
    db.session.flush()
    issue_enrolment_link(participant, coordinator, reason="lost_or_stolen", note="At the desk")
    link = db.session.scalars(
        sa.select(EnrolmentToken).where(EnrolmentToken.participant_id == participant.id)
    ).one()
    link.used_at = clock.now()
    db.session.add(
        PasskeyCredential(
            participant_id=participant.id,
            credential_id=b"second",
            public_key=b"-",
            nickname="B",
            enrolment_token_id=link.id,
        )
    )


@pytest.fixture
def world(make_participant, make_staff) -> Callable[[str], World]:
    def build(language: str) -> World:
        participant = make_participant(language=language, day0=date.today() - timedelta(days=1))
        newcomer = make_participant(language=language, day0=None)
        now = clock.now()
        open_one = Assignment(
            participant_id=participant.id,
            series_code="TEST",
            instrument_id="every_item_type",
            instrument_version="test-1",
            opens_at=now - timedelta(hours=1),
            closes_at=now + timedelta(days=2),
        )
        db.session.add(open_one)
        done = _submitted_check_in(participant)
        token = issue_enrolment_link(newcomer, None)
        coordinator = make_staff(language=language, sites=["JGH"])
        _replaced_phone(participant, coordinator)
        reminder_preferences.set_email(newcomer, "newcomer@example.org")
        email_token = reminder_preferences.verification_token(newcomer)
        admin = make_staff(role="admin", language=language, sites=[])
        db.session.commit()
        return World(
            participant_cookie=open_session_for(participant),
            coordinator_cookie=open_session_for(coordinator),
            admin_cookie=open_session_for(admin),
            enrol_token=token,
            study_id=participant.study_id,
            open_id=open_one.id,
            done_id=done.id,
            email_token=email_token,
        )

    return build


def participant_pages(w: World) -> list[str]:
    items = [
        f"/questionnaires/{w.open_id}/items/{i}"
        for i in ("scale", "count", "areas", "when", "note")
    ]
    return [
        "/home",
        "/visits",
        "/visits/calendar",
        "/contact",
        "/after-infusion",
        "/questionnaires",
        f"/questionnaires/{w.open_id}",
        *items,
        f"/questionnaires/{w.open_id}/review",
        f"/questionnaires/{w.done_id}/done",
        "/settings",
        "/reminders",
        "/sign-out",
        "/questionnaires/999999",  # the not-found page, as a participant sees it
    ]


def public_pages(w: World) -> list[str]:
    return [
        "/",
        "/sign-in",
        f"/enrol/{w.enrol_token}",
        "/signed-out",
        "/offline",
        "/contact",
        f"/reminders/email/confirm/{w.email_token}",
    ]


def staff_pages(w: World) -> list[str]:
    base = f"/staff/participants/{w.study_id}"
    return [
        "/staff",
        f"{base}/contacts/new",
        "/staff/participants",
        base,
        f"{base}/schedule",
        f"{base}/questionnaires",
        "/staff/dashboard",
        "/staff/exports",
        # Nothing waits to be shown here: the page that says a link is shown only once.
        "/staff/enrolment-link",
        "/settings",
    ]


def admin_pages(w: World) -> list[str]:
    return ["/staff/team", "/staff/audit", "/staff/dashboard"]


SWEPT_ROUTES = {
    "/",
    "/sign-in",
    "/enrol/<token>",
    "/signed-out",
    "/offline",
    "/sign-out",
    "/home",
    "/visits",
    "/visits/calendar",
    "/contact",
    "/after-infusion",
    "/questionnaires",
    "/questionnaires/<id:assignment_id>",
    "/questionnaires/<id:assignment_id>/items/<item_id>",
    "/questionnaires/<id:assignment_id>/review",
    "/questionnaires/<id:assignment_id>/done",
    "/settings",
    "/reminders",
    "/reminders/email/confirm/<token>",
    "/staff",
    "/staff/participants/<study_id>/contacts/new",
    "/staff/participants",
    "/staff/participants/<study_id>",
    "/staff/participants/<study_id>/schedule",
    "/staff/participants/<study_id>/questionnaires",
    "/staff/dashboard",
    "/staff/exports",
    "/staff/enrolment-link",
    "/staff/team",
    "/staff/audit",
}
# Not pages: files, feeds and machine endpoints.
NOT_PAGES = {
    "/healthz",
    "/manifest.webmanifest",
    "/sw.js",
    "/visits/<code>.ics",
    "/calendar/<token>.ics",
    "/staff/exports/<kind>",
    "/static/<path:filename>",
}


def _sweep(page, base: str, paths: list[str], *, tap_targets: bool) -> list[str]:
    problems: list[str] = []
    for path in paths:
        page.set_viewport_size({"width": 390, "height": 844})
        page.emulate_media(reduced_motion="no-preference")
        page.goto(base + path)
        try:
            assert_accessible(page)
        except AssertionError as error:
            problems.append(str(error))
        if tap_targets:
            problems += [f"{path}: small target {t}" for t in small_tap_targets(page)]
        problems += [f"{path}: {gap}" for gap in keyboard_gaps(page)]
        problems += [f"{path}: moves with reduced motion: {m}" for m in moving_elements(page)]
        overflow = horizontal_overflow_at_320_and_200_percent(page)
        if overflow > 0:
            problems.append(f"{path}: scrolls sideways by {overflow}px at 320 px and 200 % text")
    return problems


def _phone_with(new_phone, locale: str, base: str, cookie: str | None):
    page = new_phone(locale)
    if cookie:
        page.context.add_cookies([{"name": "portal_session", "value": cookie, "url": base}])
    return page


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_participant_and_public_pages(live_server, new_phone, world, locale):
    w = world(LANGUAGE[locale])
    problems = _sweep(new_phone(locale), live_server, public_pages(w), tap_targets=True)
    page = _phone_with(new_phone, locale, live_server, w.participant_cookie)
    problems += _sweep(page, live_server, participant_pages(w), tap_targets=True)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_coordinator_and_admin_pages(live_server, new_phone, world, locale):
    w = world(LANGUAGE[locale])
    page = _phone_with(new_phone, locale, live_server, w.coordinator_cookie)
    problems = _sweep(page, live_server, staff_pages(w), tap_targets=False)
    page = _phone_with(new_phone, locale, live_server, w.admin_cookie)
    problems += _sweep(page, live_server, admin_pages(w), tap_targets=False)
    assert not problems, "\n".join(problems)


def test_every_page_route_is_in_the_sweep(app):
    routes = {rule.rule for rule in app.url_map.iter_rules() if "GET" in rule.methods}
    assert routes - SWEPT_ROUTES - NOT_PAGES == set(), "a page is missing from the sweep"


def _tab_to(page, name: str) -> None:
    """Press Tab until the control named `name` has the focus (as a keyboard user would)."""
    for _ in range(100):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => (document.activeElement.innerText || '').trim()"
            " || document.activeElement.getAttribute('aria-label') || ''"
        )
        if focused == name:
            return
    raise AssertionError(f"Tab never reached {name!r} on {page.url}")


@pytest.mark.parametrize(
    ("locale", "words"),
    [
        ("fr-CA", {"start": "Commencer", "saved": "Enregistré"}),
        ("en-CA", {"start": "Start", "saved": "Saved"}),
    ],
)
def test_a_questionnaire_answered_with_the_keyboard_alone(
    live_server, new_phone, make_participant, locale, words
):
    participant = make_participant(language=LANGUAGE[locale], day0=date.today() - timedelta(days=1))
    weekly = db.session.scalars(
        sa.select(Assignment)
        .where(Assignment.participant_id == participant.id, Assignment.series_code == "WEEKLY")
        .order_by(Assignment.occurrence)
    ).first()
    page = _phone_with(new_phone, locale, live_server, open_session_for(participant))
    page.goto(f"{live_server}/questionnaires/{weekly.id}")
    _tab_to(page, words["start"])
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server}/questionnaires/{weekly.id}/items/**")
    first_item = page.url
    _tab_to(page, "3")
    page.keyboard.press("Enter")
    # One key press is the answer: saved, then the next question, its text focused.
    page.wait_for_url(lambda url: url != first_item)
    page.locator("#save-status", has_text=words["saved"]).wait_for()
    assert page.evaluate("document.activeElement.id") == "question-text"
    db.session.expire_all()
    assert [answer.value for answer in weekly.answers] == [3]
