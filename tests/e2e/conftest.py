"""End-to-end fixtures: the app served on a free port in a thread, Debian's Chromium through
Playwright with a phone viewport, and axe-core (from npm) checked on every page visited."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
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
PHONE = {"width": 390, "height": 844}
LOCALES = {"fr-CA": "America/Toronto", "fr-FR": "Europe/Paris", "en-CA": "America/Toronto"}


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def _free_port() -> int:
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
    port = _free_port()
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


@pytest.fixture
def new_phone(browser: Browser) -> Iterator:
    """new_phone(locale="fr-CA") -> a Page in a fresh phone-sized browser profile."""
    contexts: list[BrowserContext] = []

    def make(locale: str = "fr-CA") -> Page:
        context = browser.new_context(
            viewport=PHONE,
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
            locale=locale,
            timezone_id=LOCALES[locale],
            # Only so that axe-core can be injected; the pages' own CSP is tested elsewhere.
            bypass_csp=True,
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


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
