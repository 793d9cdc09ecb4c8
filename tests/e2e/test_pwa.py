"""The service worker in Chromium: registered for the whole site, hashed static files served from
its cache offline, the offline page in the page's language, and nothing but static files and the
offline pages ever in the Cache Storage, even after a participant's pages were shown."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest

from patient_portal.extensions import db
from patient_portal.schedule import services
from tests.e2e.conftest import assert_accessible, assert_no_horizontal_scroll
from tests.factories import open_session_for

HASHED_STATIC = re.compile(r"^/static/.+\.[0-9a-f]{12}\.[a-z0-9]+$")
OFFLINE_PAGES = {"/offline?lang=fr", "/offline?lang=en"}
CACHED_PATHS = """async () => {
  const paths = [];
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    for (const request of await cache.keys()) {
      const url = new URL(request.url);
      paths.push(url.pathname + url.search);
    }
  }
  return paths;
}"""


def wait_for_worker(page, live_server: str) -> None:
    """The worker is active and controls the page (clients.claim), and has the page's language."""
    scope = page.evaluate("async () => (await navigator.serviceWorker.ready).scope")
    assert scope == live_server + "/"
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")


@pytest.mark.parametrize(
    ("locale", "language", "heading", "other_heading"),
    [
        # The participant's stored language, not the phone's, decides the page's language.
        ("en-CA", "fr", "Vous êtes hors ligne", "You are offline"),
        ("fr-CA", "en", "You are offline", "Vous êtes hors ligne"),
    ],
)
def test_offline_participant_sees_the_offline_page_and_nothing_personal_is_cached(
    live_server, new_phone, make_participant, locale, language, heading, other_heading
):
    participant = make_participant(
        day0=date.today() + timedelta(days=10), language=language, study_id="JGH-007"
    )
    services.plan_visits(participant)
    db.session.commit()
    page = new_phone(locale)
    page.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(participant), "url": live_server}]
    )
    page.goto(live_server + "/home")
    wait_for_worker(page, live_server)
    page.reload()
    assert page.locator("html").get_attribute("lang") == language
    page.goto(live_server + "/visits")
    wait_for_worker(page, live_server)

    page.context.set_offline(True)
    from_worker: dict[str, bool] = {}
    page.on("response", lambda r: from_worker.__setitem__(r.url, r.from_service_worker))
    page.goto(live_server + "/home")
    assert page.locator("html").get_attribute("lang") == language
    assert page.get_by_role("heading", level=1).inner_text() == heading
    assert page.get_by_role("heading", level=2).inner_text() == other_heading
    assert "JGH-007" not in page.content()
    stylesheet = page.locator("link[rel=stylesheet]").get_attribute("href")
    assert from_worker[live_server + stylesheet] is True
    assert page.evaluate(
        "() => getComputedStyle(document.querySelector('.button')).minHeight"
    ) not in ("", "auto", "0px"), "the offline page's stylesheet did not load from the cache"
    # A hashed script the participant's pages used comes from the cache too.
    htmx = page.evaluate(
        """async () => {
          for (const name of await caches.keys()) {
            for (const request of await (await caches.open(name)).keys()) {
              if (request.url.includes("/static/vendor/htmx.min.")) { return request.url; }
            }
          }
          return null;
        }"""
    )
    assert htmx, "htmx was not cached while online"
    assert page.evaluate("async (url) => (await fetch(url)).ok", htmx)
    assert_accessible(page)
    assert_no_horizontal_scroll(page)

    paths = page.evaluate(CACHED_PATHS)
    assert set(paths) >= OFFLINE_PAGES
    strays = [path for path in paths if not HASHED_STATIC.match(path) and path not in OFFLINE_PAGES]
    assert not strays, f"non-static URLs in the Cache Storage: {strays}"

    page.context.set_offline(False)
    page.get_by_role("link", name=re.compile("Réessayer|Try again")).click()
    page.wait_for_url(live_server + "/home")
    assert page.locator("a[aria-current=page]").count() == 1


@pytest.mark.parametrize(
    ("locale", "heading"), [("fr-FR", "Vous êtes hors ligne"), ("en-CA", "You are offline")]
)
def test_offline_visitor_sees_the_offline_page_in_the_page_language(
    live_server, new_phone, locale, heading
):
    page = new_phone(locale)
    page.goto(live_server + "/")
    wait_for_worker(page, live_server)
    page.context.set_offline(True)
    page.goto(live_server + "/sign-in")
    assert page.get_by_role("heading", level=1).inner_text() == heading
    assert_accessible(page)


def test_a_new_deploy_replaces_the_worker_and_its_cache(app, live_server, new_phone):
    page = new_phone("en-CA")
    page.goto(live_server + "/")
    wait_for_worker(page, live_server)
    before = page.evaluate("async () => await caches.keys()")
    assert len(before) == 1

    # As after a deploy that changed a static file: the worker's version changes.
    app.extensions["pwa_worker_version"] = "0123456789ab"
    page.evaluate("async () => await (await navigator.serviceWorker.getRegistration()).update()")
    # The old worker's activation deletes the old cache; give it up to ten seconds.
    after = page.evaluate(
        """async (expected) => {
          for (let attempt = 0; attempt < 100; attempt++) {
            const names = await caches.keys();
            if (names.join() === expected) { return names; }
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
          return await caches.keys();
        }""",
        "care-ssc-0123456789ab",
    )
    assert after == ["care-ssc-0123456789ab"]


def test_install_button_stays_hidden_until_the_browser_offers_to_install(
    live_server, new_phone, make_participant
):
    participant = make_participant(language="en")
    page = new_phone("en-CA")
    page.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(participant), "url": live_server}]
    )
    page.goto(f"{live_server}/settings")
    assert page.get_by_role("heading", name="Put the portal on my home screen").is_visible()
    # Headless Chromium never offers to install: the button must not be shown for nothing.
    assert not page.locator("#install-app").is_visible()
