"""Sessions as a browser keeps them: no row for a mere visitor, cookies that last as long as the
policy promises, ended rows purged, and the page asked for before sign-in reached after it."""

from __future__ import annotations

from datetime import timedelta
from http.cookies import SimpleCookie

import pytest
import sqlalchemy as sa

from patient_portal.accounts import services
from patient_portal.accounts.models import AuthSession, WebAuthnCeremony
from patient_portal.extensions import db
from patient_portal.security import purge_ended_sessions
from tests.accounts.softauthn import SoftAuthenticator
from tests.accounts.test_accounts import _post_json, enrol_with_passkey, sign_in_with_passkey
from tests.factories import open_session_for


def _session_rows() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuthSession)) or 0


def _max_age(response, name: str = "portal_session") -> int:
    cookies = SimpleCookie()
    for header in response.headers.getlist("Set-Cookie"):
        cookies.load(header)
    return int(cookies[name]["max-age"])


@pytest.fixture
def enrolled(app, make_staff):
    coordinator = make_staff(sites=["JGH"])
    participant, raw = services.enrol_participant("JGH", "fr", None, coordinator)
    db.session.commit()
    return participant, raw


def test_visitors_reading_pages_leave_no_row(app):
    """Anyone can load the landing page as often as they like without filling the table."""
    for _ in range(30):
        visitor = app.test_client()
        assert visitor.get("/").status_code == 200
        assert visitor.get("/sign-in").status_code == 200
    assert _session_rows() == 0


def test_a_visitor_can_still_post_a_form_with_their_token(app, client, csrf_token):
    token = csrf_token(client, "/")
    response = client.post("/language", data={"csrf_token": token, "language": "en", "next": "/"})
    assert response.status_code == 303
    assert _session_rows() == 0
    assert client.post("/language", data={"language": "en"}).status_code == 400


def test_a_visitors_token_does_not_work_in_another_browser(app, csrf_token):
    first, second = app.test_client(), app.test_client()
    token = csrf_token(first, "/")
    csrf_token(second, "/")
    response = second.post("/language", data={"csrf_token": token, "language": "en"})
    assert response.status_code == 400


def test_a_tampered_visitor_cookie_is_a_new_visitor(app, client, csrf_token):
    token = csrf_token(client, "/")
    cookie = client.get_cookie("portal_session").value
    client.set_cookie("portal_session", cookie[:-2] + "xx", domain="localhost")
    response = client.post("/language", data={"csrf_token": token, "language": "en"})
    assert response.status_code == 400


def test_the_row_is_created_when_sign_in_starts(app, client, csrf_token):
    token = csrf_token(client, "/sign-in")
    assert _post_json(client, "/sign-in/options", token).status_code == 200
    assert _session_rows() == 1
    assert "." not in client.get_cookie("portal_session").value


def test_cookies_last_as_long_as_the_sessions_may(app, client, csrf_token, enrolled):
    """An installed app may drop session cookies: the cookie itself carries the policy."""
    visitor = client.get("/")
    assert _max_age(visitor) == 12 * 3600
    _, raw = enrolled
    enrolment = enrol_with_passkey(client, csrf_token, raw, SoftAuthenticator())
    assert enrolment.status_code == 200
    assert _max_age(enrolment) == 90 * 24 * 3600


def test_ended_sessions_and_ceremonies_are_purged(app, now, make_participant, make_staff):
    participant, staff = make_participant(), make_staff()
    open_session_for(participant)
    open_session_for(staff)
    db.session.add(
        WebAuthnCeremony(id="c" * 64, purpose="authentication", challenge=b"x", expires_at=now())
    )
    db.session.commit()
    assert purge_ended_sessions(now()) == (0, 1)
    now(now() + timedelta(minutes=31))  # staff sessions end after 30 idle minutes
    assert purge_ended_sessions(now()) == (1, 0)
    now(now() + timedelta(days=15))  # participants' after 14 idle days
    assert purge_ended_sessions(now()) == (1, 0)
    assert _session_rows() == 0


def test_purge_command_reports_what_it_deleted(runner, now, make_staff):
    open_session_for(make_staff())
    now(now() + timedelta(hours=13))
    result = runner.invoke(args=["sessions", "purge"])
    assert result.exit_code == 0
    assert "Purged 1 ended sessions" in result.output


def test_the_page_asked_for_is_reached_after_sign_in(app, client, csrf_token, enrolled):
    """A participant who tapped a reminder lands on its questionnaire, not on home."""
    _, raw = enrolled
    authenticator = SoftAuthenticator()
    enrol_with_passkey(client, csrf_token, raw, authenticator)
    phone = app.test_client()
    asked = phone.get("/questionnaires")
    assert asked.status_code == 302
    sign_in_page = asked.headers["Location"]
    assert "next=" in sign_in_page
    page = phone.get(sign_in_page).get_data(as_text=True)
    assert "/sign-in/verify?next=/questionnaires" in page
    response = _sign_in(phone, csrf_token, authenticator, "/questionnaires")
    assert response.get_json()["redirect"] == "/questionnaires"


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"]
)
def test_only_local_pages_are_reached_after_sign_in(app, client, csrf_token, enrolled, target):
    _, raw = enrolled
    authenticator = SoftAuthenticator()
    enrol_with_passkey(client, csrf_token, raw, authenticator)
    response = _sign_in(app.test_client(), csrf_token, authenticator, target)
    assert response.get_json()["redirect"] == "/home"


def _sign_in(client, csrf_token, authenticator, target: str):
    csrf = csrf_token(client, "/sign-in")
    options = _post_json(client, "/sign-in/options", csrf).get_json()
    return client.post(
        "/sign-in/verify",
        query_string={"next": target},
        json=authenticator.authenticate(options),
        headers={"X-CSRFToken": csrf},
    )


def test_sign_in_still_works_without_next(app, client, csrf_token, enrolled):
    _, raw = enrolled
    authenticator = SoftAuthenticator()
    enrol_with_passkey(client, csrf_token, raw, authenticator)
    response = sign_in_with_passkey(app.test_client(), csrf_token, authenticator)
    assert response.get_json()["redirect"] == "/home"
