"""Enrolment, passkey ceremonies and sessions, driven through HTTP with a software authenticator."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from patient_portal.accounts import services
from patient_portal.accounts.models import (
    AuthSession,
    EnrolmentToken,
    Participant,
    PasskeyCredential,
)
from patient_portal.audit import AuditEvent
from patient_portal.extensions import db
from tests.accounts.softauthn import SoftAuthenticator


def _post_json(client, url: str, token: str, body=None, **headers):
    data = None if body is None else (body if isinstance(body, str | bytes) else json.dumps(body))
    return client.post(
        url,
        data=data,
        headers={"X-CSRFToken": token, "Content-Type": "application/json", **headers},
    )


def enrol_with_passkey(client, csrf_token, link_token: str, authenticator: SoftAuthenticator):
    """What the enrolment page's button does: options, create, verify."""
    csrf = csrf_token(client, f"/enrol/{link_token}")
    options = _post_json(client, f"/enrol/{link_token}/options", csrf).get_json()
    return _post_json(client, f"/enrol/{link_token}/verify", csrf, authenticator.register(options))


def sign_in_with_passkey(client, csrf_token, authenticator: SoftAuthenticator, **kwargs):
    csrf = csrf_token(client, "/sign-in")
    options = _post_json(client, "/sign-in/options", csrf).get_json()
    return _post_json(
        client, "/sign-in/verify", csrf, authenticator.authenticate(options, **kwargs)
    )


@pytest.fixture
def coordinator(make_staff):
    return make_staff(sites=["JGH"])


@pytest.fixture
def enrolled(app, coordinator):
    """A participant fresh from the coordinator's desk and the raw token of their link."""
    participant, raw = services.enrol_participant("JGH", "fr", None, coordinator)
    db.session.commit()
    return participant, raw


def test_study_ids_are_numbered_per_site(app, coordinator):
    ids = [
        services.enrol_participant(site, "en", None, coordinator)[0].study_id
        for site in ["JGH", "SLS", "JGH", "CHUM"]
    ]
    assert ids == ["JGH-001", "SLS-001", "JGH-002", "CHUM-001"]


def test_the_link_token_is_random_and_stored_only_as_a_hash(app, enrolled):
    _, raw = enrolled
    assert len(services.token_digest(raw)) == 64 and len(raw) >= 43  # 256 bits in base64url
    stored = db.session.scalar(sa.select(EnrolmentToken))
    assert stored.token_hash != raw and raw not in stored.token_hash
    assert stored.expires_at - stored.created_at == timedelta(hours=72)


def test_enrolment_registers_a_passkey_and_signs_in(app, client, csrf_token, enrolled):
    participant, raw = enrolled
    authenticator = SoftAuthenticator()
    response = enrol_with_passkey(client, csrf_token, raw, authenticator)
    assert response.status_code == 200, response.get_data(as_text=True)
    db.session.expire_all()
    passkey = db.session.scalar(sa.select(PasskeyCredential))
    assert passkey.participant_id == participant.id
    assert passkey.credential_id == authenticator.credential_id
    assert passkey.transports == ["internal"]
    assert db.session.get(Participant, participant.id).status == "active"
    # Signed in: the settings page answers instead of sending to sign-in.
    assert client.get("/settings").status_code == 200
    actions = db.session.scalars(sa.select(AuditEvent.action)).all()
    assert {"enrolment.issued", "enrolment.used", "passkey.added"} <= set(actions)


def test_a_link_works_once(app, client, csrf_token, enrolled):
    _, raw = enrolled
    enrol_with_passkey(client, csrf_token, raw, SoftAuthenticator())
    other = app.test_client()
    assert other.get(f"/enrol/{raw}").status_code == 410


@pytest.mark.parametrize(
    "mangle",
    [lambda t: t[:-3], lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), lambda t: "x" * 500],
)
def test_a_truncated_or_altered_token_is_a_translated_404(client, enrolled, mangle):
    _, raw = enrolled
    response = client.get(f"/enrol/{mangle(raw)}", headers={"Accept-Language": "fr"})
    assert response.status_code == 404
    assert "Ce lien n’est pas valide" in response.get_data(as_text=True)


def test_a_revoked_link_is_refused(app, client, coordinator, enrolled):
    participant, raw = enrolled
    services.revoke_enrolment_links(participant)
    db.session.commit()
    assert client.get(f"/enrol/{raw}").status_code == 404


def test_a_replayed_registration_is_refused(app, client, csrf_token, enrolled):
    _, raw = enrolled
    csrf = csrf_token(client, f"/enrol/{raw}")
    options = _post_json(client, f"/enrol/{raw}/options", csrf).get_json()
    answer = SoftAuthenticator(user_verified=False).register(options)
    assert _post_json(client, f"/enrol/{raw}/verify", csrf, answer).status_code == 400
    # Same challenge again, now with a valid answer: the ceremony is gone.
    good = SoftAuthenticator().register(options)
    assert _post_json(client, f"/enrol/{raw}/verify", csrf, good).status_code == 400
    assert db.session.scalar(sa.select(sa.func.count(PasskeyCredential.id))) == 0


def test_a_wrong_origin_is_refused(app, client, csrf_token, enrolled):
    _, raw = enrolled
    csrf = csrf_token(client, f"/enrol/{raw}")
    options = _post_json(client, f"/enrol/{raw}/options", csrf).get_json()
    answer = SoftAuthenticator().register(options, origin="https://phishing.example")
    assert _post_json(client, f"/enrol/{raw}/verify", csrf, answer).status_code == 400


@pytest.mark.parametrize(
    "body", ["", "not json", "[]", '{"id": 5}', "{" * 10, json.dumps({"response": {}})]
)
def test_malformed_webauthn_json_is_a_clean_400(app, client, csrf_token, enrolled, body):
    _, raw = enrolled
    csrf = csrf_token(client, f"/enrol/{raw}")
    _post_json(client, f"/enrol/{raw}/options", csrf)
    response = _post_json(client, f"/enrol/{raw}/verify", csrf, body)
    assert response.status_code == 400
    assert response.get_json()["error"]
    sign_in = _post_json(client, "/sign-in/verify", csrf, body)
    assert sign_in.status_code == 400


def test_a_huge_body_is_refused_with_413(client, csrf_token, enrolled):
    _, raw = enrolled
    csrf = csrf_token(client, f"/enrol/{raw}")
    response = _post_json(client, f"/enrol/{raw}/verify", csrf, "x" * 200_000)
    assert response.status_code == 413


def test_sign_in_with_a_discoverable_passkey(app, client, csrf_token, enrolled):
    _, raw = enrolled
    authenticator = SoftAuthenticator()
    enrol_with_passkey(client, csrf_token, raw, authenticator)
    fresh = app.test_client()
    response = sign_in_with_passkey(fresh, csrf_token, authenticator)
    assert response.status_code == 200
    assert fresh.get("/settings").status_code == 200


def test_every_sign_in_failure_says_the_same_thing(app, client, csrf_token, enrolled):
    _, raw = enrolled
    authenticator = SoftAuthenticator()
    enrol_with_passkey(client, csrf_token, raw, authenticator)
    assert (
        sign_in_with_passkey(app.test_client(), csrf_token, authenticator, sign_count=5).status_code
        == 200
    )
    unknown = sign_in_with_passkey(app.test_client(), csrf_token, SoftAuthenticator())
    wrong_origin = sign_in_with_passkey(
        app.test_client(), csrf_token, authenticator, origin="https://evil.example"
    )
    backwards = sign_in_with_passkey(app.test_client(), csrf_token, authenticator, sign_count=2)
    messages = {r.get_json()["error"] for r in (unknown, wrong_origin, backwards)}
    assert len(messages) == 1
    assert all(r.status_code == 400 for r in (unknown, wrong_origin, backwards))
    reasons = db.session.scalars(
        sa.select(AuditEvent.reason).where(AuditEvent.action == "signin.failed")
    ).all()
    assert "unknown credential" in reasons and "sign count went backwards" in reasons


def test_a_new_session_id_at_every_sign_in(app, client, csrf_token, enrolled):
    _, raw = enrolled
    authenticator = SoftAuthenticator()
    csrf_token(client, f"/enrol/{raw}")
    before = client.get_cookie("portal_session").value
    enrol_with_passkey(client, csrf_token, raw, authenticator)
    after = client.get_cookie("portal_session").value
    assert before != after
    assert db.session.get(AuthSession, services.token_digest(before)) is None


def test_a_forged_session_cookie_is_anonymous(app, client, make_participant):
    make_participant()
    client.set_cookie("portal_session", "forged-" + "a" * 40, domain="localhost")
    response = client.get("/settings")
    assert response.status_code == 302 and "/sign-in" in response.headers["Location"]


def test_sessions_end_after_their_idle_and_absolute_limits(
    app, client, sign_in, make_participant, make_staff, now
):
    staff = make_staff()
    participant = make_participant()
    staff_client, participant_client = app.test_client(), app.test_client()
    sign_in(staff_client, staff)
    sign_in(participant_client, participant)
    start = now()
    now(start + timedelta(minutes=31))
    assert staff_client.get("/settings").status_code == 302  # staff: 30 minutes idle
    assert participant_client.get("/settings").status_code == 200
    now(start + timedelta(days=91))
    assert participant_client.get("/settings").status_code == 302  # participants: 90 days at most


def test_an_htmx_request_after_the_session_ended_gets_hx_redirect(client):
    response = client.get("/settings", headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert response.headers["HX-Redirect"].startswith("/sign-in")


def test_sign_out_everywhere_ends_every_device(app, sign_in, make_participant, csrf_token):
    participant = make_participant()
    phone, tablet = app.test_client(), app.test_client()
    sign_in(phone, participant)
    sign_in(tablet, participant)
    token = csrf_token(phone, "/settings")
    assert phone.post("/sign-out-everywhere", data={"csrf_token": token}).status_code == 303
    assert tablet.get("/settings").status_code == 302
    assert phone.get("/settings").status_code == 302


def test_a_new_enrolment_link_ends_sessions_and_can_revoke_passkeys(
    app, client, csrf_token, sign_in, enrolled, coordinator
):
    participant, raw = enrolled
    enrol_with_passkey(client, csrf_token, raw, SoftAuthenticator())
    staff_client = app.test_client()
    sign_in(staff_client, coordinator)
    token = csrf_token(staff_client, f"/staff/participants/{participant.study_id}")
    response = staff_client.post(
        f"/staff/participants/{participant.study_id}/enrolment-link",
        data={"csrf_token": token, "revoke_passkeys": "yes", "reason": "lost_or_stolen"},
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "<svg" in response.get_data(as_text=True)
    assert client.get("/settings").status_code == 302
    assert db.session.scalar(sa.select(sa.func.count(PasskeyCredential.id))) == 0


def test_the_last_passkey_cannot_be_removed(app, client, csrf_token, enrolled):
    _, raw = enrolled
    enrol_with_passkey(client, csrf_token, raw, SoftAuthenticator())
    passkey = db.session.scalar(sa.select(PasskeyCredential))
    token = csrf_token(client, "/settings")
    response = client.post(
        f"/settings/passkeys/{passkey.id}/remove",
        data={"csrf_token": token},
        headers={"Accept-Language": "en"},
    )
    assert response.status_code == 409
    assert db.session.scalar(sa.select(sa.func.count(PasskeyCredential.id))) == 1


def test_rename_a_passkey(app, client, csrf_token, enrolled):
    _, raw = enrolled
    enrol_with_passkey(client, csrf_token, raw, SoftAuthenticator())
    passkey = db.session.scalar(sa.select(PasskeyCredential))
    token = csrf_token(client, "/settings")
    client.post(
        f"/settings/passkeys/{passkey.id}/rename",
        data={"csrf_token": token, "nickname": "<b>Mon téléphone</b>"},
    )
    page = client.get("/settings").get_data(as_text=True)
    assert "&lt;b&gt;Mon téléphone&lt;/b&gt;" in page


def test_coordinator_enrols_a_participant_and_sees_the_qr_code(
    app, client, sign_in, coordinator, csrf_token
):
    sign_in(client, coordinator)
    token = csrf_token(client, "/staff/participants")
    response = client.post(
        "/staff/participants",
        data={"csrf_token": token, "site": "JGH", "language": "en", "day0": ""},
        follow_redirects=True,
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "JGH-001" in page and "<svg" in page and "http://localhost:5000/enrol/" in page


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"site": "SLS", "language": "en"}, 422),
        ({"site": "JGH", "language": "de"}, 422),
        ({"site": "JGH", "language": "en", "day0": "31/12/2026"}, 422),
        ({"site": "JGH", "language": "en", "day0": "1900-01-01"}, 422),
    ],
)
def test_bad_enrolment_input_is_a_4xx_and_creates_nobody(
    app, client, sign_in, coordinator, csrf_token, form, status
):
    sign_in(client, coordinator)
    token = csrf_token(client, "/staff/participants")
    response = client.post("/staff/participants", data={"csrf_token": token, **form})
    assert response.status_code == status
    assert db.session.scalar(sa.select(sa.func.count(Participant.id))) == 0


STAFF_ROUTES = [
    ("get", "/staff/participants/{study_id}"),
    ("post", "/staff/participants/{study_id}/enrolment-link"),
    ("post", "/staff/participants/{study_id}/enrolment-link/revoke"),
    ("post", "/staff/participants/{study_id}/sessions/end"),
]


@pytest.mark.parametrize(("method", "route"), STAFF_ROUTES)
def test_a_coordinator_of_another_site_gets_404(
    app, client, sign_in, make_staff, make_participant, csrf_token, method, route
):
    paris = make_staff(sites=["SLS"])
    montreal_participant = make_participant(site_code="JGH")
    sign_in(client, paris)
    token = csrf_token(client, "/staff/participants")
    url = route.format(study_id=montreal_participant.study_id)
    response = client.get(url) if method == "get" else client.post(url, data={"csrf_token": token})
    assert response.status_code == 404


def test_the_participant_list_shows_only_ones_own_sites(
    app, client, sign_in, make_staff, make_participant
):
    make_participant(site_code="JGH")
    make_participant(site_code="SLS")
    sign_in(client, make_staff(sites=["SLS"]))
    page = client.get("/staff/participants").get_data(as_text=True)
    assert "SLS-001" in page and "JGH-001" not in page


@pytest.mark.parametrize("path", ["/staff/participants", "/staff/team"])
def test_participants_cannot_open_staff_pages(client, sign_in, make_participant, path):
    sign_in(client, make_participant())
    assert client.get(path).status_code == 403


def test_only_admins_invite_staff(app, client, sign_in, make_staff, csrf_token):
    sign_in(client, make_staff(role="coordinator"))
    assert client.get("/staff/team").status_code == 403
    admin_client = app.test_client()
    sign_in(admin_client, make_staff(role="admin", sites=[]))
    token = csrf_token(admin_client, "/staff/team")
    response = admin_client.post(
        "/staff/team",
        data={
            "csrf_token": token,
            "email": "new@example.org",
            "name": "New Person",
            "role": "coordinator",
            "sites": ["CHUM"],
        },
        follow_redirects=True,
    )
    assert response.status_code == 200 and "/enrol/" in response.get_data(as_text=True)


def test_staff_create_command_prints_a_link(runner):
    result = runner.invoke(
        args=[
            "staff",
            "create",
            "--email",
            "a@example.org",
            "--name",
            "A",
            "--role",
            "coordinator",
            "--site",
            "JGH",
        ]
    )
    assert result.exit_code == 0
    assert "http://localhost:5000/enrol/" in result.output
    bad = runner.invoke(
        args=[
            "staff",
            "create",
            "--email",
            "b@example.org",
            "--name",
            "B",
            "--role",
            "coordinator",
            "--site",
            "XYZ",
        ]
    )
    assert bad.exit_code != 0


def test_sign_in_is_rate_limited_with_a_translated_429(client, csrf_token):
    token = csrf_token(client, "/sign-in")
    statuses = [_post_json(client, "/sign-in/options", token).status_code for _ in range(25)]
    assert statuses[:20] == [200] * 20
    assert statuses[-1] == 429
    response = client.post(
        "/sign-in/options", headers={"X-CSRFToken": token, "Accept-Language": "fr"}
    )
    assert "Trop de tentatives" in response.get_data(as_text=True)


def test_demo_links_print_both_lines(runner):
    assert runner.invoke(args=["demo", "load"]).exit_code == 0
    result = runner.invoke(args=["demo", "links"])
    assert "Coordinator enrolment link: http://localhost:5000/enrol/" in result.output
    assert "Participant enrolment link: http://localhost:5000/enrol/" in result.output
    assert runner.invoke(args=["demo", "load"]).output.strip() == "Demo data already present."
