"""The portal as a site deploys it (tests/deployment/conftest.py): people in Chromium over TLS
through nginx to two app servers, and the proxy rules checked from outside."""

from __future__ import annotations

import csv
import gzip
import http.client
import io
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, Response, expect, sync_playwright

from tests.deployment.conftest import (
    HOST,
    ROOT,
    Deployment,
    stop,
    unit_command,
    unit_commands,
    unit_environment,
)
from tests.e2e.conftest import CHROMIUM_FLAGS, PHONE
from tests.e2e.test_passkeys import virtual_authenticator

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LINK = re.compile(r"Enrolment link \(single use, valid 72 hours\): (\S+)")


@pytest.fixture(scope="module")
def browser(deployment: Deployment) -> Iterator[Browser]:
    """Debian's Chromium trusting the test's certificate authority, with HOST on 127.0.0.1."""
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=[*CHROMIUM_FLAGS, f"--host-resolver-rules=MAP {HOST} 127.0.0.1"],
            env={**os.environ, "HOME": str(deployment.chromium_home)},
            headless=True,
        )
        yield browser
        browser.close()


def _phone(browser: Browser, locale: str, timezone: str) -> Page:
    # No bypass_csp and no ignore_https_errors: the real headers and the real certificate.
    context = browser.new_context(
        viewport=PHONE, is_mobile=True, has_touch=True, locale=locale, timezone_id=timezone
    )
    context.set_default_timeout(15_000)
    return context.new_page()


def _enrol(page: Page, link: str, button: str) -> None:
    """Open an enrolment link and create a passkey with the phone's virtual authenticator."""
    virtual_authenticator(page)
    page.goto(link)
    page.get_by_role("button", name=button).click()
    page.wait_for_url(lambda url: "/enrol/" not in url)


def _record_responses(page: Page, origin: str) -> list[Response]:
    seen: list[Response] = []
    page.on("response", lambda r: seen.append(r) if r.url.startswith(origin) else None)
    return seen


def _assert_production_headers(responses: list[Response]) -> None:
    # Pages, fragments and script requests (never stored: Cache-Control: no-store). What the
    # service worker or the HTTP cache answers never crossed the network, and Chromium hands it
    # over without Strict-Transport-Security; static files' headers are checked on the wire in
    # test_the_proxy_serves_as_documented.
    from_network = [
        response
        for response in responses
        if not response.from_service_worker
        and response.request.resource_type in ("document", "fetch", "xhr")
    ]
    assert from_network
    for response in from_network:
        headers = response.all_headers()
        assert headers.get("strict-transport-security", "").startswith("max-age="), response.url
        # One header, from the app: nginx must not add a second one.
        assert "," not in headers["strict-transport-security"], response.url
        for cookie in response.headers_array():
            if cookie["name"].lower() == "set-cookie":
                assert "Secure" in cookie["value"] and "HttpOnly" in cookie["value"]


def _upstreams_for(deployment: Deployment, path_part: str) -> set[str]:
    lines = deployment.access_log.read_text().splitlines()
    return {line.rsplit(" ", 1)[-1] for line in lines if path_part in line}


def _not(url: str):
    return lambda seen: seen != url


def found(pattern: re.Pattern[str] | str, text: str) -> str:
    """The first group of a pattern that must be in the text."""
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not found"
    return match.group(1)


def _jgh_today() -> str:
    return datetime.now(ZoneInfo("America/Toronto")).date().isoformat()


def test_a_coordinator_and_a_participant_through_the_proxy(deployment: Deployment, browser):
    """A coordinator enrols, enrols a participant, opens the dashboard and exports; the
    participant enrols, answers across both app servers, signs out and in again."""
    created = deployment.flask(
        "staff", "create", "--email", "c.roy@jgh.example", "--name", "Camille Roy",
        "--role", "coordinator", "--site", "JGH",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    staff_link = found(LINK, created.stdout)
    assert staff_link.startswith(deployment.origin + "/enrol/")

    desk = _phone(browser, "fr-CA", "America/Toronto")
    desk_responses = _record_responses(desk, deployment.origin)
    _enrol(desk, staff_link, "Créer ma clé d’accès")

    desk.goto(deployment.origin + "/staff/participants")
    form = desk.locator("form[action='/staff/participants']")
    form.get_by_label("English").check()
    form.locator("input[name=day0]").fill(_jgh_today())
    form.locator("button[type=submit]").click()
    participant_link = desk.locator("[data-enrolment-link]").inner_text().strip()
    assert participant_link.startswith(deployment.origin + "/enrol/")
    study_id = desk.get_by_role("heading", level=1).inner_text().rsplit(" ", 1)[-1]

    phone = _phone(browser, "en-CA", "America/Toronto")
    phone_responses = _record_responses(phone, deployment.origin)
    _enrol(phone, participant_link, "Create my passkey")

    phone.goto(deployment.origin + "/questionnaires")
    phone.get_by_role("link", name=re.compile("Your overall health")).click()
    phone.get_by_role("link", name="Start", exact=True).click()
    for _ in range(6):
        phone.wait_for_url(re.compile(r"/(items/[^/]+|review)$"))
        if phone.url.endswith("/review"):
            break
        answers = phone.locator("button.answer")
        before = phone.url
        answered = answers.count() > 0
        if answered:
            # One tap is the answer: saved, then the next question (or the review) by itself.
            answers.nth(5).tap()
        else:
            phone.get_by_role("link", name="Next").click()
        phone.wait_for_url(_not(before))
        if answered and "/items/" in phone.url:
            expect(phone.locator("#save-status")).to_contain_text("Saved")
    phone.get_by_role("button", name="Send my answers").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text(
        "Thank you, your answers have been sent"
    )
    # nginx spread the questionnaire's requests over both app servers.
    assert _upstreams_for(deployment, "/questionnaires/") == {
        f"127.0.0.1:{port}" for port in deployment.app_ports
    }

    phone.goto(deployment.origin + "/sign-out")
    phone.get_by_role("button", name="Sign out of this device").click()
    phone.wait_for_url("**/signed-out")
    phone.goto(deployment.origin + "/sign-in")
    phone.get_by_role("button", name="Sign in with my passkey").click()
    phone.wait_for_url(lambda url: "/sign-in" not in url)
    # Signed in: the participant's menu button is there (the menu opens from it).
    expect(phone.locator(".menu-button")).to_be_visible()
    for cookie in phone.context.cookies():
        if cookie["name"] == "__Host-portal_session":
            assert cookie["secure"] and cookie["httpOnly"] and cookie["expires"] > 0

    desk.goto(deployment.origin + "/staff/dashboard")
    expect(desk.get_by_role("heading", level=1)).to_have_text("Tableau de bord")
    expect(desk.get_by_role("link", name=study_id).first).to_be_visible()
    desk.goto(deployment.origin + "/staff/exports")
    with desk.expect_download() as download_info:
        desk.get_by_role("button", name="Télécharger Réponses, format long (CSV)").click()
    with open(download_info.value.path(), encoding="utf-8") as exported:
        rows = list(csv.DictReader(io.StringIO(exported.read())))
    assert study_id in {row["study_id"] for row in rows}
    assert {row["site"] for row in rows} == {"JGH"}

    _assert_production_headers(desk_responses)
    _assert_production_headers(phone_responses)
    desk.context.close()
    phone.context.close()


def _visitor(deployment: Deployment, source: str) -> tuple[str, str]:
    """A visitor's session cookie and CSRF token, from the landing page."""
    page = deployment.request("GET", "/", source=source)
    cookie = page.getheader("Set-Cookie").split(";", 1)[0]
    return cookie, found(CSRF, page.text)


def _sign_in_options(deployment: Deployment, source: str, visitor, **headers):
    cookie, token = visitor
    return deployment.request(
        "POST",
        "/sign-in/options",
        source=source,
        headers={
            "Cookie": cookie,
            "X-CSRFToken": token,
            "Origin": deployment.origin,
            "Content-Type": "application/json",
            **headers,
        },
    )


def test_each_client_has_its_own_rate_limit(deployment: Deployment):
    """Twenty sign-in starts a minute per address: one busy client locks out only itself."""
    busy = _visitor(deployment, "127.0.0.2")
    statuses = [_sign_in_options(deployment, "127.0.0.2", busy).status for _ in range(21)]
    assert statuses[:20] == [200] * 20 and statuses[20] == 429
    # Claiming another address in X-Forwarded-For does not open a new bucket.
    forged = _sign_in_options(deployment, "127.0.0.2", busy, **{"X-Forwarded-For": "192.0.2.1"})
    assert forged.status == 429
    other = _visitor(deployment, "127.0.0.3")
    assert _sign_in_options(deployment, "127.0.0.3", other).status == 200


def test_writes_from_elsewhere_are_refused(deployment: Deployment):
    cookie, token = _visitor(deployment, "127.0.0.4")
    _, other_token = _visitor(deployment, "127.0.0.4")

    def post(token_sent: str | None, **headers):
        form = f"language=en&next=/&csrf_token={token_sent}" if token_sent else "language=en"
        return deployment.request(
            "POST",
            "/language",
            source="127.0.0.4",
            body=form.encode(),
            headers={
                "Cookie": cookie,
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept-Language": "fr-CA",
                **headers,
            },
        )

    assert post(token, Origin=deployment.origin).status == 303
    for refused in (
        post(token, Origin="https://evil.example"),
        post(token),  # a program that says nothing of its origin
        post(None, Origin=deployment.origin),
        post(other_token, Origin=deployment.origin),
    ):
        assert refused.status == 400
        assert "Ce formulaire a expiré" in refused.body.decode()


def test_the_calendar_feed_is_on_the_public_origin_whatever_host_says(
    deployment: Deployment, participant_session
):
    cookie = f"__Host-portal_session={participant_session}"
    # Through nginx, another Host is refused before any app server sees it.
    assert deployment.request("GET", "/", headers={"Host": "evil.example"}).status == 421
    # Straight at an app server, with forged Host and forwarded headers.
    port = deployment.app_ports[0]
    forged = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "Cookie": cookie}
    page = deployment.request(
        "GET", "/visits/calendar", port=port, headers={**forged, "X-Forwarded-Proto": "http"}
    )
    assert page.status == 200, page.body[:500]
    token = found(CSRF, page.text)
    issued = deployment.request(
        "POST",
        "/visits/calendar",
        port=port,
        body=f"csrf_token={token}".encode(),
        headers={
            **forged,
            "Origin": deployment.origin,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert issued.status == 200
    feed_urls = re.findall(r"(?:https?|webcal)://[^\"<\s]+\.ics", issued.body.decode())
    assert feed_urls
    assert all(
        url.startswith((deployment.origin + "/calendar/", f"webcal://{HOST}:")) for url in feed_urls
    ), feed_urls
    assert "evil.example" not in issued.body.decode()


def test_the_proxy_serves_as_documented(deployment: Deployment):
    """Plain HTTP redirects, static files cached for a year, HTML compressed only for the
    portal's own requests (BREACH), bodies over the app's limit stopped at the proxy."""
    plain = http.client.HTTPConnection("127.0.0.1", deployment.http_port, timeout=10)
    plain.request("GET", "/visits?x=1", headers={"Host": HOST})
    redirected = plain.getresponse()
    assert redirected.status == 301
    assert redirected.getheader("Location") == deployment.origin + "/visits?x=1"
    plain.close()

    landing = deployment.request("GET", "/")
    stylesheet = found(r'href="(/static/css/portal\.[0-9a-f]+\.css)"', landing.text)
    first = deployment.request("GET", stylesheet)
    again = deployment.request("GET", stylesheet)
    assert first.getheader("Strict-Transport-Security").startswith("max-age=")
    assert again.getheader("Strict-Transport-Security") == first.getheader(
        "Strict-Transport-Security"
    )
    cache_control = first.getheader("Cache-Control")
    assert "immutable" in cache_control
    assert int(found(r"max-age=(\d+)", cache_control)) >= 365 * 24 * 3600
    assert again.getheader("X-Cache-Status") == "HIT"

    same_site = deployment.request(
        "GET", "/", headers={"Accept-Encoding": "gzip", "Sec-Fetch-Site": "same-origin"}
    )
    assert same_site.getheader("Content-Encoding") == "gzip"
    assert b"CARE-SSc" in gzip.decompress(same_site.body)
    cross_site = deployment.request(
        "GET", "/", headers={"Accept-Encoding": "gzip", "Sec-Fetch-Site": "cross-site"}
    )
    assert cross_site.getheader("Content-Encoding") == ""

    too_big = deployment.request(
        "POST",
        "/sign-in/options",
        body=b"x" * 70_000,
        headers={"Content-Type": "application/json", "Origin": deployment.origin},
    )
    assert too_big.status == 413


def test_the_timers_jobs_run_as_the_app_role(deployment: Deployment):
    """What the hourly and then the nightly timer start, as deploy/systemd says, with the app's
    environment: each command succeeds (the nightly checks need the hourly checkpoint)."""
    for unit in ("care-ssc-hourly.service", "care-ssc-checks.service"):
        environment = {**deployment.env, **unit_environment(unit)}
        for command in unit_commands(unit):
            done = subprocess.run(
                command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"


def test_the_reminder_dispatcher_runs_as_its_unit_says(deployment: Deployment, tmp_path):
    """The dispatcher's service starts, makes its passes without failing, and stops on SIGTERM
    as systemd stops it."""
    log = tmp_path / "dispatcher.log"
    environment = {**deployment.env, **unit_environment("care-ssc-reminders.service")}
    dispatcher = deployment.start(
        unit_command("care-ssc-reminders.service"), log, cwd=ROOT, env=environment
    )
    try:
        deadline = time.monotonic() + 30
        while "running" not in log.read_text() and time.monotonic() < deadline:
            assert dispatcher.poll() is None, log.read_text()
            time.sleep(0.2)
        time.sleep(3)  # its first passes: planning everyone, then sending what is due
        assert dispatcher.poll() is None, log.read_text()
    finally:
        stop(dispatcher)
    assert dispatcher.returncode == 0
    assert "running" in log.read_text() and "failed" not in log.read_text(), log.read_text()
