"""Safety between visits in Chromium, in French and English: a participant reports a fever in
the diary the day after an infusion and sees whom to call; the coordinator's e-mail reaches a
local SMTP server in one dispatcher pass; the coordinator acknowledges with an outcome; the
participant sees that the team has seen it. Each screen is checked at 390 px and at 320 px
with 200 % text (axe-core, tap targets, no sideways scrolling)."""

from __future__ import annotations

import os
from datetime import date, datetime, time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from patient_portal.extensions import db
from patient_portal.protocol.services import get_protocol
from patient_portal.reminders.dispatch import Dispatcher
from patient_portal.schedule.services import set_appointment
from tests.e2e.conftest import (
    PHONE,
    assert_accessible,
    assert_no_horizontal_scroll,
    horizontal_overflow_at_320_and_200_percent,
    small_tap_targets,
)
from tests.factories import open_session_for
from tests.reminders.receivers import SMTPServer
from tests.safety.conftest import diary, visit_of

DAY0 = date(2026, 12, 1)
# Screenshots for a person to look at, when asked: SAFETY_SCREENSHOTS=/some/dir.
SHOTS = os.environ.get("SAFETY_SCREENSHOTS")

WORDS = {
    "fr-CA": {
        "language": "fr",
        "start": "Commencer",
        "fever": "38,5 à 38,9 °C",
        "call": "Appelez l’équipe de recherche : +1\u00a0514\u2011555\u20110100",
        "subject": "CARE-SSc : un signalement urgent est en attente",
        "label": "Température de 38,0 °C ou plus",
        "outcome": "Appel passé à la personne participante",
        "acknowledge": "Prendre en compte l’alerte de",
        "seen": "Votre équipe a vu votre signalement le 2 décembre 2026.",
        "report": "Signaler un symptôme",
    },
    "en-CA": {
        "language": "en",
        "start": "Start",
        "fever": "38.5 to 38.9 °C",
        "call": "Call your study team: +1\u00a0514\u2011555\u20110100",
        "subject": "CARE-SSc: an urgent report is waiting",
        "label": "Temperature 38.0 °C or higher",
        "outcome": "Called the participant",
        "acknowledge": "Acknowledge the alert of",
        "seen": "Your team saw your report on December 2, 2026.",
        "report": "Report a symptom",
    },
}


def _look(page, name: str, tap_targets: bool = True, focus: str | None = None) -> None:
    """The screen as it is, then at 320 px with 200 % text: accessible, fitting, and for the
    participant's screens every target at least 44×44 px (as the accessibility sweep asks)."""
    assert_accessible(page)
    assert_no_horizontal_scroll(page)
    if tap_targets:
        small = small_tap_targets(page)
        assert small == [], (name, small)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SHOTS}/{name}-390.png", full_page=True)
        if focus:
            page.locator(focus).first.screenshot(path=f"{SHOTS}/{name}-390-part.png")
    assert horizontal_overflow_at_320_and_200_percent(page) <= 0
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/{name}-320-200.png", full_page=True)
        if focus:
            page.locator(focus).first.screenshot(path=f"{SHOTS}/{name}-320-200-part.png")
    page.set_viewport_size(PHONE)
    page.reload()


@pytest.fixture
def smtp(app):
    with SMTPServer() as server:
        app.config.update(
            PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_PORT=server.port, PORTAL_SMTP_SECURITY="none"
        )
        yield server


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_a_fever_after_an_infusion_reaches_the_team_and_the_participant_sees_it_was_seen(
    app, live_server, new_phone, make_participant, make_staff, smtp, now, locale
):
    words = WORDS[locale]
    zone = get_protocol().site("JGH").zone
    now.set(datetime.combine(DAY0, time(8), tzinfo=zone))
    participant = make_participant(site_code="JGH", day0=DAY0, language=words["language"])
    set_appointment(visit_of(participant, "M0"), DAY0, time(10), None, None, None)
    coordinator = make_staff(
        email=f"coordinator-{words['language']}@jgh.example",
        sites=["JGH"],
        language=words["language"],
    )
    db.session.commit()
    entry = diary(participant)[0]
    # The morning after the infusion, on the site's clock.
    now.set(datetime.combine(date(2026, 12, 2), time(9), tzinfo=zone))

    phone = new_phone(locale)
    phone.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(participant), "url": live_server}]
    )
    phone.goto(f"{live_server}/home")
    expect(phone.get_by_role("button", name=words["report"])).to_be_visible()
    _look(phone, f"home-{locale}")
    phone.goto(f"{live_server}/questionnaires/{entry.id}")
    phone.get_by_role("link", name=words["start"]).tap()
    expect(phone).to_have_url(f"{live_server}/questionnaires/{entry.id}/items/temperature")
    phone.get_by_role("button", name=words["fever"]).tap()
    # Whom to call, at once, before the diary is finished.
    expect(phone.get_by_role("alert")).to_contain_text(words["call"])
    _look(phone, f"diary-urgent-{locale}", focus=".notice-urgent")

    dispatcher = Dispatcher()
    counts = dispatcher.run_once()
    assert counts.outcomes["alert_notified"] == 1
    [mail] = smtp.messages
    assert mail["To"] == coordinator.email and mail["Subject"] == words["subject"]
    body = mail.get_body(("plain",)).get_content()
    assert f"{live_server}/staff/dashboard" in body
    # No health data: neither who nor what (the link's port may hold any digits).
    without_link = body.replace(f"{live_server}/staff/dashboard", "")
    assert participant.study_id not in without_link
    assert "38" not in without_link and "°" not in without_link

    desk = new_phone(locale)
    desk.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(coordinator), "url": live_server}]
    )
    desk.goto(f"{live_server}/staff/dashboard")
    card = desk.locator(".alert-card").first
    expect(card).to_contain_text(words["label"])
    expect(card).to_contain_text(words["fever"])
    _look(desk, f"dashboard-alert-{locale}", tap_targets=False, focus=".alert-card")
    card = desk.locator(".alert-card").first
    card.get_by_label(words["outcome"]).check()
    card.get_by_role("button", name=words["acknowledge"]).tap()
    expect(desk.locator(".alert-card")).to_have_count(0)

    phone.goto(f"{live_server}/home")
    expect(phone.get_by_text(words["seen"])).to_be_visible()
    _look(phone, f"home-seen-{locale}", focus=".report-home")
