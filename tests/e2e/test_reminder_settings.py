"""Reminder settings as a participant meets them, in fr-CA, fr-FR and en-CA on a 390 px phone and
at 320 px with 200 % text, light and dark: one screen of switches, the e-mail address confirmed
by its link before use, each confirmation beside the button tapped, and a reload after a test
reminder that shows the page again (it was a 405)."""

from __future__ import annotations

import os
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from patient_portal.extensions import db
from patient_portal.reminders.models import Reminder
from tests.e2e.conftest import (
    assert_accessible,
    assert_no_horizontal_scroll,
    horizontal_overflow_at_320_and_200_percent,
    small_tap_targets,
)
from tests.factories import open_session_for
from tests.reminders.receivers import SMTPServer

# Screenshots for a person to look at, only when asked: PORTAL_SHOTS=/tmp/shots-words.
SHOTS = os.environ.get("PORTAL_SHOTS")

JOURNEYS = {
    "fr-CA": {
        "site": "CHUM",
        "language": "fr",
        "email_heading": "Rappels par courriel",
        "other_word": "e-mail",
        "save_address": "Enregistrer l’adresse",
        "sent": "Un lien a été envoyé à cette adresse.",
        "confirm": "Confirmer mon adresse courriel",
        "confirmed": "Votre adresse est confirmée.",
        "test_inapp": "Message sur ma page d’accueil",
        "test_sent": "Un message d’essai vous attend sur votre page d’accueil.",
        "save": "Enregistrer mes choix",
        "saved": "Vos choix de rappels sont enregistrés.",
    },
    "fr-FR": {
        "site": "SLS",
        "language": "fr",
        "email_heading": "Rappels par e-mail",
        "other_word": "courriel",
        "save_address": "Enregistrer l’adresse",
        "sent": "Un lien a été envoyé à cette adresse.",
        "confirm": "Confirmer mon adresse e-mail",
        "confirmed": "Votre adresse est confirmée.",
        "test_inapp": "Message sur ma page d’accueil",
        "test_sent": "Un message d’essai vous attend sur votre page d’accueil.",
        "save": "Enregistrer mes choix",
        "saved": "Vos choix de rappels sont enregistrés.",
    },
    "en-CA": {
        "site": "JGH",
        "language": "en",
        "email_heading": "E-mail reminders",
        "other_word": "courriel",
        "save_address": "Save the address",
        "sent": "We sent a link to this address.",
        "confirm": "Confirm my e-mail address",
        "confirmed": "Your address is confirmed.",
        "test_inapp": "Message on my home page",
        "test_sent": "A test message is waiting on your home page.",
        "save": "Save my choices",
        "saved": "Your reminder choices are saved.",
    },
}
# The page was about 4,800 px tall (9 checkboxes); it is now some 2,600 px on a 390 × 844 phone.
MAX_HEIGHT_AT_390 = 2_800


def _shot(page, name: str) -> None:
    """The whole page, and what the phone's screen shows now."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SHOTS}/{name}-screen.png")
        page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True)


def _in_view(page, locator) -> bool:
    """Whether the confirmation is wholly on screen once the page has scrolled to it, which
    comes after htmx's own scroll to the top (later on a loaded machine): asked for up to 5 s."""
    height = page.evaluate("() => window.innerHeight")
    for _ in range(50):
        box = locator.bounding_box()
        if box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height:
            return True
        page.wait_for_timeout(100)
    return False


def _signed_in_participant(make_participant, new_phone, live_server, locale):
    """A participant of the journey's site whose first infusion is in 10 days, and their phone."""
    words = JOURNEYS[locale]
    participant = make_participant(
        site_code=words["site"],
        language=words["language"],
        day0=date.today() + timedelta(days=10),
    )
    db.session.commit()
    return participant, _participant_page(new_phone, live_server, participant, locale)


def _participant_page(new_phone, live_server, participant, locale):
    page = new_phone(locale)
    page.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(participant), "url": live_server}]
    )
    return page


@pytest.fixture
def smtp(app):
    with SMTPServer() as server:
        app.config.update(
            PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_PORT=server.port, PORTAL_SMTP_SECURITY="none"
        )
        yield server


def _link_in(mail) -> str:
    text = mail.get_body(("plain",)).get_content()
    match = re.search(r"https?://\S+/reminders/email/confirm/\S+", text)
    assert match, text
    return match.group(0)


@pytest.mark.parametrize("locale", list(JOURNEYS))
def test_reminder_settings_on_one_screen(
    app, live_server, new_phone, make_participant, smtp, locale
):
    words = JOURNEYS[locale]
    _participant, page = _signed_in_participant(make_participant, new_phone, live_server, locale)
    page.goto(live_server + "/reminders")
    assert_accessible(page)
    assert_no_horizontal_scroll(page)
    assert small_tap_targets(page) == []
    assert page.evaluate("() => document.documentElement.scrollHeight") <= MAX_HEIGHT_AT_390
    # The site's French: Québec says courriel, France e-mail.
    assert page.get_by_role("heading", name=words["email_heading"]).is_visible()
    assert words["other_word"] not in page.locator("main").inner_text()
    # Nothing is on that cannot reach the participant: no phone said yes, no address.
    assert page.locator("#channel-inapp").is_checked()
    for channel in ("push", "email"):
        assert page.locator(f"#channel-{channel}").is_disabled()
        assert not page.locator(f"#channel-{channel}").is_checked()
    _shot(page, f"{locale}-390")

    # The one field to type in: the address. Its confirmation is beside its button.
    page.locator("#email-address").fill("participant@example.org")
    page.get_by_role("button", name=words["save_address"]).click()
    notice = page.get_by_text(words["sent"])
    notice.wait_for()
    page.wait_for_timeout(300)  # htmx's scroll to the top comes first
    assert _in_view(page, notice)
    assert not page.locator("#channel-email").is_checked()
    _shot(page, f"{locale}-390-address-sent")

    # The link in the e-mail confirms the address with one tap.
    [mail] = smtp.messages
    page.goto(_link_in(mail))
    assert_accessible(page)
    _shot(page, f"{locale}-390-confirm")
    page.get_by_role("button", name=words["confirm"]).click()
    page.get_by_text(words["confirmed"]).first.wait_for()
    page.goto(live_server + "/reminders")
    assert page.locator("#channel-email").is_enabled()
    assert page.locator("#channel-email").is_checked()

    # A test reminder: its confirmation under its button, and a reload is the page again.
    page.get_by_role("button", name=words["test_inapp"]).click()
    sent = page.get_by_text(words["test_sent"])
    sent.wait_for()
    page.wait_for_timeout(300)  # htmx's scroll to the top comes first
    assert _in_view(page, sent)
    _shot(page, f"{locale}-390-test-sent")
    response = page.reload()
    assert response is not None and response.status == 200
    assert page.get_by_role("heading", level=1).is_visible()
    tests = sa.select(sa.func.count()).select_from(Reminder).where(Reminder.kind == "test")
    assert db.session.scalar(tests) == 1

    # Choices saved with taps; the confirmation beside the Save button.
    page.locator("#kind-visit").uncheck()
    page.get_by_role("button", name=words["save"]).click()
    saved = page.get_by_text(words["saved"])
    saved.wait_for()
    page.wait_for_timeout(300)  # htmx's scroll to the top comes first
    assert _in_view(page, saved)
    assert not page.locator("#kind-visit").is_checked()

    # 320 px with 200 % text: nothing sideways, every target still large.
    assert horizontal_overflow_at_320_and_200_percent(page) <= 0
    assert small_tap_targets(page) == []
    _shot(page, f"{locale}-320-200")
    for part in ("#channel-inapp", "#kind-visit", "#email-address"):
        page.locator(part).scroll_into_view_if_needed()
        _shot(page, f"{locale}-320-200-{part[1:]}")


@pytest.mark.parametrize("locale", list(JOURNEYS))
def test_dark_theme_keeps_the_contrast(
    live_server, new_phone, make_participant, make_staff, locale
):
    words = JOURNEYS[locale]
    participant, page = _signed_in_participant(make_participant, new_phone, live_server, locale)
    page.emulate_media(color_scheme="dark")
    for path in ("/reminders", "/home", "/visits", "/settings", "/questionnaires"):
        page.goto(live_server + path)
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(17, 20, 24)", path
        assert_accessible(page)
        _shot(page, f"{locale}-dark{path.replace('/', '-')}")
    assert horizontal_overflow_at_320_and_200_percent(page) <= 0
    # The coordinators' workspace too (workspace.css over portal.css).
    coordinator = make_staff(language=words["language"], sites=[words["site"]])
    db.session.commit()
    desk = new_phone(locale)
    desk.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(coordinator), "url": live_server}]
    )
    desk.emulate_media(color_scheme="dark")
    desk.set_viewport_size({"width": 1280, "height": 900})
    for path in (
        "/staff/dashboard",
        "/staff/participants",
        f"/staff/participants/{participant.study_id}",
    ):
        desk.goto(live_server + path)
        assert_accessible(desk)
        _shot(desk, f"{locale}-dark{path.replace('/', '-')}")
