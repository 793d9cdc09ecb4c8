"""Production behind one proxy: real client addresses, writes only from the portal's own pages,
absolute URLs on the public origin whatever the request's Host says.

The end-to-end proof with nginx, TLS and two app servers is tests/deployment; these tests pin the
rules on the app itself, with the settings an operator would give it.
"""

from __future__ import annotations

import pytest
from flask import Flask

from tests.conftest import CSRF_PATTERN

ORIGIN = "https://portal.example.org"
PROXY = {"REMOTE_ADDR": "127.0.0.1"}


@pytest.fixture
def production(app, make_app, monkeypatch) -> Flask:
    """The portal as deployed: production mode, one trusted proxy, its public origin."""
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "p" * 48)
    monkeypatch.setenv("PORTAL_AUDIT_KEY", "a" * 48)
    monkeypatch.setenv("PORTAL_ORIGIN", ORIGIN)
    monkeypatch.setenv("PORTAL_RP_ID", "portal.example.org")
    monkeypatch.setenv("PORTAL_PROXY_HOPS", "1")
    monkeypatch.setenv("RATELIMIT_STORAGE_URI", "redis://127.0.0.1:6379/0")
    # Counters in memory for this test only: the rule under test is the key, not the storage.
    return make_app(
        {
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )


def _through_proxy(app: Flask, client_address: str = "203.0.113.7"):
    """A test client whose requests arrive as the proxy forwards them."""
    client = app.test_client()
    client.environ_base.update(
        PROXY,
        HTTP_X_FORWARDED_FOR=client_address,
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_FORWARDED_HOST="portal.example.org",
    )
    return client


def _token(client) -> str:
    page = client.get("/", base_url="http://127.0.0.1:8001").get_data(as_text=True)
    match = CSRF_PATTERN.search(page)
    assert match
    return match.group(1)


def _post_language(client, token: str | None, **headers):
    data = {"language": "en", "next": "/"}
    if token:
        data["csrf_token"] = token
    return client.post(
        "/language",
        data=data,
        base_url="http://127.0.0.1:8001",
        headers={"Accept-Language": "fr", **headers},
    )


@pytest.mark.commits
def test_a_same_origin_post_is_accepted(production):
    browser = _through_proxy(production)
    token = _token(browser)
    assert _post_language(browser, token, Origin=ORIGIN).status_code == 303
    # Referrer-Policy: same-origin leaves a Referer where a browser sends no Origin.
    assert _post_language(browser, token, Referer=ORIGIN + "/").status_code == 303


@pytest.mark.commits
@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "http://portal.example.org"},
        {"Origin": "null", "Referer": "https://evil.example/form"},
        {"Referer": "https://portal.example.org.evil.example/"},
        {},
    ],
    ids=["other-site", "plain-http", "null-origin", "lookalike-referer", "no-origin"],
)
def test_a_post_from_elsewhere_is_refused_with_a_translated_400(production, headers):
    browser = _through_proxy(production)
    token = _token(browser)
    response = _post_language(browser, token, **headers)
    assert response.status_code == 400
    assert "Ce formulaire a expiré ou a été envoyé d’ailleurs" in response.get_data(as_text=True)


@pytest.mark.commits
def test_a_post_without_token_or_with_another_sessions_token_is_refused(production):
    browser, other = _through_proxy(production), _through_proxy(production)
    _token(browser)
    assert _post_language(browser, None, Origin=ORIGIN).status_code == 400
    assert _post_language(browser, _token(other), Origin=ORIGIN).status_code == 400


@pytest.mark.commits
def test_responses_carry_the_production_headers(production):
    response = _through_proxy(production).get("/", base_url="http://127.0.0.1:8001")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert response.headers["Referrer-Policy"] == "same-origin"
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # __Host-: Secure, Path=/ and no Domain, or the browser refuses it.
    assert cookie.startswith("__Host-portal_session=") and "Path=/" in cookie
    assert "Domain" not in cookie


def _sign_in_options(client, address: str):
    token = _token(client)
    return client.post(
        "/sign-in/options",
        base_url="http://127.0.0.1:8001",
        headers={"X-CSRFToken": token, "Origin": ORIGIN, "X-Forwarded-For": address},
    )


@pytest.mark.commits
def test_rate_limits_key_on_the_real_client(production):
    """One busy client cannot lock everyone else out of sign-in."""
    busy = _through_proxy(production, "203.0.113.7")
    statuses = [_sign_in_options(busy, "203.0.113.7").status_code for _ in range(21)]
    assert statuses[-1] == 429
    other = _through_proxy(production, "198.51.100.4")
    assert _sign_in_options(other, "198.51.100.4").status_code == 200


@pytest.mark.commits
def test_a_client_cannot_choose_its_address(production):
    """A forged X-Forwarded-For in front of the proxy's own value is not trusted (one hop)."""
    busy = _through_proxy(production, "203.0.113.7")
    for _ in range(20):
        _sign_in_options(busy, "203.0.113.7")
    forged = _sign_in_options(busy, "198.51.100.99, 203.0.113.7")
    assert forged.status_code == 429


@pytest.mark.commits
def test_without_trusted_proxies_forwarded_headers_are_ignored(app, make_app):
    direct = make_app(
        {
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "SECRET_KEY": "d" * 48,
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    assert direct.config["PORTAL_PROXY_HOPS"] == 0
    client = direct.test_client()
    token = _token(client)
    statuses = [
        client.post(
            "/sign-in/options",
            base_url="http://127.0.0.1:8001",
            headers={"X-CSRFToken": token, "X-Forwarded-For": f"198.51.100.{n}"},
        ).status_code
        for n in range(21)
    ]
    assert statuses[-1] == 429
