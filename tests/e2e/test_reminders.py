"""Reminders in Chromium: the preferences page in French and English (axe), permission asked
only from a tap, and the service worker's push and notification-click handlers."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta

import pytest

from tests.e2e.conftest import assert_accessible, assert_no_horizontal_scroll
from tests.factories import open_session_for

NOTIFICATIONS = """async () => {
  const registration = await navigator.serviceWorker.ready;
  return (await registration.getNotifications()).map((n) => ({
    title: n.title, body: n.body, tag: n.tag, url: n.data && n.data.url,
  }));
}"""


def signed_in_page(new_phone, live_server, participant, locale="fr-CA"):
    page = new_phone(locale)
    page.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(participant), "url": live_server}]
    )
    return page


def shown_notifications(page, count: int = 1) -> list[dict]:
    """The worker's notifications once there are `count` of them (pushes arrive asynchronously)."""
    deadline = time.monotonic() + 10
    while True:
        shown = page.evaluate(NOTIFICATIONS)
        if len(shown) >= count or time.monotonic() > deadline:
            return shown
        page.wait_for_timeout(100)


def wait_for_worker(page) -> None:
    page.evaluate("async () => (await navigator.serviceWorker.ready).scope")
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")


@pytest.mark.parametrize(
    ("language", "heading", "button", "blocked"),
    [
        (
            "fr",
            "Rappels",
            "Activer les notifications",
            "Les notifications sont bloquées pour le portail.",
        ),
        ("en", "Reminders", "Turn on notifications", "Notifications are blocked for the portal."),
    ],
)
def test_preferences_page_asks_for_notifications_only_after_a_tap(
    app, live_server, new_phone, make_participant, language, heading, button, blocked
):
    participant = make_participant(day0=date.today() + timedelta(days=10), language=language)
    page = signed_in_page(new_phone, live_server, participant)
    page.goto(live_server + "/settings")
    # From Settings, as a participant would get there.
    page.get_by_role(
        "link", name="Mes réglages de rappels" if language == "fr" else "My reminder settings"
    ).click()
    page.wait_for_url(live_server + "/reminders")
    assert page.get_by_role("heading", level=1).inner_text() == heading
    assert_accessible(page)
    assert_no_horizontal_scroll(page)
    # Nothing was asked on arrival.
    assert page.evaluate("() => Notification.permission") == "default"
    # The upcoming reminders are listed.
    assert page.locator("#upcoming-heading + ul li").count() > 0
    # The phone says no (headless Chromium dismisses the prompt): the page explains.
    page.get_by_role("button", name=button).click()
    page.wait_for_function(
        "text => document.querySelector('.push-status').textContent.startsWith(text)", arg=blocked
    )
    assert_accessible(page)


def test_saving_choices_by_taps_in_the_browser(live_server, new_phone, make_participant):
    participant = make_participant(day0=date.today() + timedelta(days=10), language="en")
    page = signed_in_page(new_phone, live_server, participant, "en-CA")
    page.goto(live_server + "/reminders")
    page.locator("#kind-visit").uncheck()
    page.select_option("#quiet-start", "22")
    page.select_option("#quiet-end", "7")
    page.get_by_role("button", name="Save my choices").click()
    page.get_by_text("Your reminder choices are saved.").wait_for()
    assert page.locator("#quiet-start").input_value() == "22"
    assert not page.locator("#kind-visit").is_checked()
    # Nonsense quiet hours: refused with the reason, on the page.
    page.select_option("#quiet-start", "7")
    page.select_option("#quiet-end", "7")
    page.get_by_role("button", name="Save my choices").click()
    page.get_by_text("Quiet hours must last between 1 and 14 hours.").first.wait_for()
    assert_accessible(page)


def test_the_worker_shows_a_push_and_a_tap_opens_its_page(live_server, new_phone, make_participant):
    participant = make_participant(day0=date.today() + timedelta(days=10))
    page = signed_in_page(new_phone, live_server, participant)
    page.context.grant_permissions(["notifications"], origin=live_server)
    page.goto(live_server + "/home")
    wait_for_worker(page)

    cdp = page.context.new_cdp_session(page)
    registrations: list[dict] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda event: registrations.extend(event["registrations"]),
    )
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + 10
    while not registrations and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    registration = next(r for r in registrations if r["scopeURL"] == live_server + "/")
    payload = {
        "title": "Visite de l’étude CARE-SSc demain",
        "body": "mardi 1 décembre 2026 à 9 h 00, Hôpital général juif.",
        "url": "/visits",
        "tag": "care-ssc-visit",
        "lang": "fr",
    }
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {
            "origin": live_server,
            "registrationId": registration["registrationId"],
            "data": json.dumps(payload, ensure_ascii=False),
        },
    )
    shown = shown_notifications(page)
    assert shown == [
        {
            "title": payload["title"],
            "body": payload["body"],
            "tag": "care-ssc-visit",
            "url": "/visits",
        }
    ]

    # A tap on the notification: the worker's notificationclick handler opens its page in the
    # portal tab that is already open.
    worker = page.context.service_workers[0]
    worker.evaluate(
        """async () => {
          const [notification] = await self.registration.getNotifications();
          self.dispatchEvent(new NotificationEvent("notificationclick", { notification }));
        }"""
    )
    page.wait_for_url(live_server + "/visits")
    assert page.evaluate(NOTIFICATIONS) == []
    # The new page registers the worker again on load, which checks /sw.js for a new version. A
    # push delivered while that check was under way was once never shown (CI, on a loaded
    # machine), so the next push waits for the page's load and for the check to end.
    page.wait_for_load_state("load")
    page.evaluate("async () => (await navigator.serviceWorker.ready).update()")

    # A payload pointing elsewhere cannot send the participant off the portal.
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {
            "origin": live_server,
            "registrationId": registration["registrationId"],
            "data": json.dumps({"title": "x", "url": "https://example.org/"}),
        },
    )
    assert shown_notifications(page)[0]["url"] == "/home"
    # Showing and opening reminders kept nothing on the phone: no database, no stored text.
    assert worker.evaluate("async () => (await indexedDB.databases()).length") == 0
    assert page.evaluate("async () => (await indexedDB.databases()).length") == 0
    local, session = page.evaluate("() => [{...localStorage}, {...sessionStorage}]")
    # htmx keeps the current path for its history handling; paths carry no health data.
    assert local == {} and set(session) <= {"htmx-current-path-for-history"}
