"""End-to-end fixtures: the app served on a free port in a thread, Debian's Chromium through
Playwright with a phone viewport, and axe-core (from npm) checked on every page visited."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[2]
AXE_SCRIPT = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
PHONE: ViewportSize = {"width": 390, "height": 844}
LOCALES = {"fr-CA": "America/Toronto", "fr-FR": "Europe/Paris", "en-CA": "America/Toronto"}


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            # The live server answers in threads of its own, on connections of its own.
            item.add_marker(pytest.mark.commits)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_FLAGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def settings(settings: dict) -> dict:
    port = free_port()
    # WebAuthn needs a secure context: http://localhost qualifies, 127.0.0.1 is not the RP ID.
    settings.update(
        PORTAL_ORIGIN=f"http://localhost:{port}", PORTAL_RP_ID="localhost", E2E_PORT=port
    )
    return settings


@pytest.fixture
def live_server(app) -> Iterator[str]:
    port = app.config["E2E_PORT"]
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{port}"
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


@contextmanager
def _fresh_profiles(browser: Browser) -> Iterator[Callable[..., Page]]:
    """page_in(locale, **profile) -> a Page in a fresh browser profile; all closed afterwards."""
    contexts: list[BrowserContext] = []

    def page_in(locale: str, **profile) -> Page:
        context = browser.new_context(
            locale=locale,
            timezone_id=LOCALES[locale],
            # Only so that axe-core can be injected; the pages' own CSP is tested elsewhere.
            bypass_csp=True,
            **profile,
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    try:
        yield page_in
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def new_phone(browser: Browser) -> Iterator:
    """new_phone(locale="fr-CA") -> a Page in a fresh phone-sized browser profile."""
    with _fresh_profiles(browser) as page_in:
        yield lambda locale="fr-CA": page_in(
            locale, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
        )


@pytest.fixture
def screen(browser: Browser) -> Iterator:
    """screen(width, height, locale) -> a Page in a fresh desktop or tablet profile."""
    with _fresh_profiles(browser) as page_in:
        yield lambda width, height, locale: page_in(
            locale, viewport={"width": width, "height": height}
        )


def assert_accessible(page: Page) -> None:
    """axe-core finds no violation on the page as it is now."""
    page.add_script_tag(path=str(AXE_SCRIPT))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    violations = [
        f"{v['id']}: {v['help']} ({', '.join(n['target'][0] for n in v['nodes'][:3])})"
        for v in result["violations"]
    ]
    assert not violations, "axe-core violations on " + page.url + ":\n" + "\n".join(violations)


def assert_no_horizontal_scroll(page: Page) -> None:
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px"


INTERACTIVE = (
    "a[href], button, input:not([type=hidden]), select, textarea, summary,"
    " [tabindex]:not([tabindex='-1'])"
)


def small_tap_targets(page: Page) -> list[str]:
    """Visible interactive elements smaller than 44×44 CSS px (stiff fingers need room)."""
    return page.evaluate(
        """(selector) => Array.from(document.querySelectorAll(selector))
            .filter((el) => !el.closest('[hidden], .skip-link'))
            .map((el) => [el, el.getBoundingClientRect()])
            .filter(([el, box]) => box.width > 0 && box.height > 0
                    && el.checkVisibility({visibilityProperty: true}))
            .filter(([el, box]) => box.width < 44 || box.height < 44)
            // A checkbox or radio is toggled by its whole label too: the label is the target.
            .filter(([el, box]) => !Array.from(el.labels || []).some((label) => {
                const b = label.getBoundingClientRect();
                return b.width >= 44 && b.height >= 44;
            }))
            .map(([el, box]) => `${el.tagName.toLowerCase()} "${(el.innerText || el.value ||
                 el.getAttribute('aria-label') || '').trim().slice(0, 40)}"`
                 + ` ${Math.round(box.width)}×${Math.round(box.height)}`)""",
        INTERACTIVE,
    )


def horizontal_overflow_at_320_and_200_percent(page: Page) -> int:
    """Sideways scrolling, in px, on a 320 px screen with text at 200 % (0 when it fits)."""
    page.set_viewport_size({"width": 320, "height": 640})
    page.add_style_tag(content="html { font-size: 200% !important; }")
    return page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )


def keyboard_gaps(page: Page, max_tabs: int = 400) -> list[str]:
    """Tab from the top of the page: the visible interactive elements never reached, and
    those reached without a visible focus indicator."""
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); }")
    page.evaluate("() => window.scrollTo(0, 0)")
    page.evaluate(
        "() => document.querySelectorAll('[data-kbd]').forEach(e => e.removeAttribute('data-kbd'))"
    )
    invisible_focus: list[str] = []
    previous = None
    for _ in range(max_tabs):
        page.keyboard.press("Tab")
        state = page.evaluate(
            """() => {
                const el = document.activeElement;
                if (!el || el === document.body) { return ['none', null]; }
                const seen = el.getAttribute('data-kbd');
                if (!seen) { el.setAttribute('data-kbd', String(Math.random())); }
                const style = getComputedStyle(el);
                const shown = (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0)
                              || style.boxShadow !== 'none';
                const name = el.tagName.toLowerCase() + ' "' +
                       (el.innerText || el.getAttribute('aria-label') || '').trim().slice(0, 40) + '"';
                return [seen ? 'seen' : (shown ? 'ok' : name), el.getAttribute('data-kbd')];
            }"""
        )
        kind, mark = state
        # A date field takes several Tabs (day, month, year) on one element; coming back to an
        # element met earlier means the cycle is complete.
        if kind == "seen" and mark != previous:
            break
        if kind not in ("none", "ok", "seen"):
            invisible_focus.append(f"no visible focus: {kind}")
        previous = mark
    unreached = page.evaluate(
        """(selector) => Array.from(document.querySelectorAll(selector))
            .filter((el) => !el.closest('[hidden]') && !el.hasAttribute('data-kbd'))
            // A radio group is one Tab stop; the arrow keys move inside it.
            .filter((el) => !(el.type === 'radio' && el.form && Array.from(
                el.form.querySelectorAll('input[type=radio]')).some(
                (other) => other.name === el.name && other.hasAttribute('data-kbd'))))
            .filter((el) => { const b = el.getBoundingClientRect();
                              // Inside a closed <details>, a control is not shown, so
                              // not expected to be reached until the details is opened.
                              return b.width > 0 && b.height > 0
                                     && el.checkVisibility({visibilityProperty: true})
                                     && !el.disabled; })
            .map((el) => 'not reachable by Tab: ' + el.tagName.toLowerCase() + ' "' +
                 (el.innerText || el.getAttribute('aria-label') || '').trim().slice(0, 40) + '"')""",
        INTERACTIVE,
    )
    return invisible_focus + unreached


def moving_elements(page: Page) -> list[str]:
    """With prefers-reduced-motion: reduce, the elements that still animate or transition."""
    page.emulate_media(reduced_motion="reduce")
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('*')).filter((el) => {
                const s = getComputedStyle(el);
                const long = (v) => v.split(',').some((d) => parseFloat(d) > 0.01);
                return (s.animationName !== 'none' && long(s.animationDuration))
                       || long(s.transitionDuration) || s.scrollBehavior === 'smooth';
            }).map((el) => el.tagName.toLowerCase() + '.' + el.className)"""
    )
