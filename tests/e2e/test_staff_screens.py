"""The staff screens on a laptop (1366 × 768, 1280 × 800) and a tablet (768 px), in French and
English: axe-core finds nothing, nothing scrolls sideways, the dashboard's filters sit on one
row, and no study ID wraps in the middle ("CHUM-" then "001") (issue 18, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.e2e.conftest import assert_accessible, assert_no_horizontal_scroll
from tests.factories import open_session_for
from tests.staff_world import staff_world

SHOTS = Path("/tmp/shots-staff-words")
COORDINATOR_PAGES = [
    "/staff/dashboard",
    "/staff/participants",
    "/staff/participants/JGH-001",
    "/staff/participants/SLS-001",
    "/staff/participants/SLS-001/schedule",
    "/staff/participants/JGH-001/questionnaires",
    "/staff/exports",
]
ADMIN_PAGES = ["/staff/audit", "/staff/team"]

# Each study ID on the page: how many line boxes it takes, and its height against its line's.
WRAPPED_STUDY_IDS = """() => [...document.querySelectorAll('main a, main th, main td, main li')]
  .filter(el => /^(JGH|CHUM|SLS)-\\d{3}$/.test(el.textContent.trim()) && el.children.length === 0)
  .filter(el => {
    const lines = el.getClientRects().length;
    const line = parseFloat(getComputedStyle(el).lineHeight) || parseFloat(getComputedStyle(el).fontSize) * 1.6;
    return lines > 1 || el.getBoundingClientRect().height > line * 1.5;
  })
  .map(el => el.textContent.trim())"""

FILTER_ROWS = """() => new Set([...document.querySelectorAll('#filters .filter-grid > .field')]
  .map(field => Math.round(field.getBoundingClientRect().bottom))).size"""


def _signed_in(page: Page, live_server: str, person) -> None:
    page.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(person), "url": live_server}]
    )


def _look(page: Page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
@pytest.mark.parametrize(("width", "height"), [(1366, 768), (1280, 800)])
def test_staff_screens_use_a_laptops_width(
    app, live_server, screen, make_participant, make_staff, now, locale, width, height
):
    world = staff_world(app, make_participant, make_staff, language=locale[:2])
    for person, paths in ((world.coordinator, COORDINATOR_PAGES), (world.admin, ADMIN_PAGES)):
        page = screen(width, height, locale)
        _signed_in(page, live_server, person)
        for path in paths:
            page.goto(live_server + path)
            assert_accessible(page)
            assert_no_horizontal_scroll(page)
            assert page.evaluate(WRAPPED_STUDY_IDS) == [], path
            # The content uses the width: no narrow phone column in the middle of a laptop.
            main_width = page.evaluate("() => document.querySelector('main').clientWidth")
            assert main_width >= width - 80, (path, main_width)
            name = path.strip("/").replace("/", "_")
            _look(page, f"{locale}-{width}-{name}")
    page = screen(width, height, locale)
    _signed_in(page, live_server, world.coordinator)
    page.goto(live_server + "/staff/dashboard")
    assert page.evaluate(FILTER_ROWS) == 1


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_staff_screens_stay_usable_on_a_tablet(
    app, live_server, screen, make_participant, make_staff, now, locale
):
    world = staff_world(app, make_participant, make_staff, language=locale[:2])
    page = screen(768, 1024, locale)
    _signed_in(page, live_server, world.coordinator)
    for path in COORDINATOR_PAGES:
        page.goto(live_server + path)
        assert_accessible(page)
        assert_no_horizontal_scroll(page)
        assert page.evaluate(WRAPPED_STUDY_IDS) == [], path
        _look(page, f"{locale}-768-{path.strip('/').replace('/', '_')}")
