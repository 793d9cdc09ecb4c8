"""The inputs that once answered 500 (issue 15's outside review), each now a translated 4xx, and
SQL parameters kept out of the error log (docs/input-bounds.md)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa

from patient_portal import clock
from patient_portal.accounts import services as accounts_services
from patient_portal.accounts.models import PasskeyCredential, StaffUser
from patient_portal.extensions import db, limiter
from patient_portal.questionnaires.models import Alert
from patient_portal.schedule.models import Visit
from tests.conftest import csrf_token_for
from tests.route_world import World, build_world

HUGE_IDS = [str(2**31), str(2**63), "9" * 40]
DATE_BOUNDS = "between the years 2000 and 2037"


@pytest.fixture
def world(app, make_participant, make_staff, monkeypatch) -> World:
    monkeypatch.setattr(limiter, "enabled", False)
    return build_world(make_participant, make_staff)


@pytest.fixture
def as_(app, sign_in, world):
    """as_("coordinator") -> (client, csrf token) signed in as that member of the world."""

    def make(identity: str):
        client = app.test_client()
        owner = {
            "participant": world.participant_a,
            "coordinator": world.coordinator,
            "admin": world.admin,
        }.get(identity)
        if owner is not None:
            sign_in(client, owner)
        return client, csrf_token_for(client, "/")

    return make


def _text(response) -> str:
    return response.get_data(as_text=True)


@pytest.mark.parametrize("huge", HUGE_IDS)
def test_an_id_beyond_the_database_range_is_no_such_record(as_, world, huge):
    coordinator, token = as_("coordinator")
    admin, admin_token = as_("admin")
    participant, participant_token = as_("participant")
    study_id = world.values["study_id"]
    assert coordinator.get(f"/questionnaires/{huge}").status_code == 404
    assert coordinator.get(f"/questionnaires/{huge}/items/x").status_code == 404
    for path in (
        f"/staff/alerts/{huge}/acknowledge",
        f"/staff/participants/{study_id}/alerts/{huge}/acknowledge",
    ):
        assert coordinator.post(path, data={"csrf_token": token}).status_code == 404
    assert admin.post(f"/staff/team/{huge}", data={"csrf_token": admin_token}).status_code == 404
    for action in ("rename", "remove"):
        response = participant.post(
            f"/settings/passkeys/{huge}/{action}",
            data={"csrf_token": participant_token, "nickname": "x"},
        )
        assert response.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/staff/participants/{study_id}%00",
        "/staff/participants/{study_id}%00/schedule",
        "/staff/participants/%0D%0A{study_id}/questionnaires",
    ],
)
def test_a_control_character_in_a_study_id_is_no_such_participant(as_, world, path):
    coordinator, _token = as_("coordinator")
    assert coordinator.get(path.format(**world.values)).status_code == 404


def test_a_control_character_in_a_visit_code_or_session_id_is_not_found(as_, world):
    coordinator, token = as_("coordinator")
    study_id = world.values["study_id"]
    response = coordinator.post(
        f"/staff/participants/{study_id}/visits/M1%00/appointment",
        data={"csrf_token": token, "date": "2026-12-01", "time": "10:00"},
    )
    assert response.status_code == 404
    participant, participant_token = as_("participant")
    response = participant.post(
        f"/settings/sessions/{world.values['session_id']}%00/end",
        data={"csrf_token": participant_token},
    )
    assert response.status_code == 404


def test_a_nul_in_a_passkey_nickname_is_refused_in_the_participants_language(as_, world):
    participant, token = as_("participant")
    passkey_id = world.values["passkey_id"]
    response = participant.post(
        f"/settings/passkeys/{passkey_id}/rename", data={"csrf_token": token, "nickname": "a\x00b"}
    )
    assert response.status_code == 422
    assert "caractère invisible qui ne peut pas être enregistré" in _text(response)
    db.session.expire_all()
    assert db.session.get(PasskeyCredential, int(passkey_id)).nickname == "Phone"


@pytest.mark.parametrize("field", ["notes_en", "notes_fr", "reason"])
def test_a_nul_in_an_appointment_note_or_reason_is_refused(as_, world, field):
    coordinator, token = as_("coordinator")
    response = coordinator.post(
        f"/staff/participants/{world.values['study_id']}/visits/M1/appointment",
        data={"csrf_token": token, "date": "2026-12-01", "time": "10:00", field: "a\x00b"},
    )
    assert response.status_code == 422
    assert "invisible character that cannot be saved" in _text(response)


@pytest.mark.parametrize(
    "query",
    [
        "to=9999-12-31",
        "to=0001-01-01",
        "from=1900-01-01&to=1900-12-31",
        "from=2038-06-01&to=2038-12-31",
    ],
)
def test_a_dashboard_or_audit_date_outside_the_bounds_is_a_400_naming_them(as_, query):
    coordinator, _token = as_("coordinator")
    admin, _admin_token = as_("admin")
    for client, path in ((coordinator, "/staff/dashboard"), (admin, "/staff/audit")):
        response = client.get(f"{path}?{query}")
        assert response.status_code == 400
        assert DATE_BOUNDS in _text(response)


@pytest.mark.parametrize(("day", "time"), [("0001-01-01", "10:00"), ("9999-12-31", "23:00")])
def test_an_appointment_outside_the_date_bounds_is_a_422_and_nothing_is_saved(
    as_, world, day, time
):
    coordinator, token = as_("coordinator")
    response = coordinator.post(
        f"/staff/participants/{world.values['study_id']}/visits/M1/appointment",
        data={"csrf_token": token, "date": day, "time": time, "reason": "far away"},
    )
    assert response.status_code == 422
    assert DATE_BOUNDS in _text(response)
    visit = db.session.scalar(
        sa.select(Visit).where(Visit.participant_id == world.participant_a.id, Visit.code == "M1")
    )
    db.session.refresh(visit)
    assert visit.scheduled_at is None


@pytest.mark.parametrize("page", ["²", "٣", "1e3", "0", "100001"])
def test_a_page_number_that_is_not_plain_digits_is_a_400(as_, page):
    coordinator, _token = as_("coordinator")
    admin, _admin_token = as_("admin")
    assert coordinator.get(f"/staff/dashboard?page={page}").status_code == 400
    assert admin.get(f"/staff/audit?page={page}").status_code == 400


def test_an_open_dashboard_period_is_at_most_two_years(as_):
    coordinator, _token = as_("coordinator")
    response = coordinator.get("/staff/dashboard?from=2000-01-01")
    assert response.status_code == 400
    assert "Please choose a period of at most two years." in _text(response)
    recent = (clock.now().date() - timedelta(days=700)).isoformat()
    assert coordinator.get(f"/staff/dashboard?from={recent}").status_code == 200


DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(
    "body",
    [DEEP, '{"endpoint": "\\ud800"}', '{"endpoint": "x\\u0000"}', b'{"endpoint": "\xff"}'],
)
def test_push_endpoints_refuse_unusable_json_without_a_5xx(as_, body):
    participant, token = as_("participant")
    headers = {"X-CSRFToken": token, "Content-Type": "application/json"}
    response = participant.post("/reminders/push/subscribe", data=body, headers=headers)
    assert response.status_code == 422
    assert "error" in response.get_json()
    response = participant.post("/reminders/push/unsubscribe", data=body, headers=headers)
    # Nothing to turn off: the phone's script is told notifications are off, as for any
    # endpoint the portal does not know.
    assert response.status_code == 200


def test_sign_in_verify_refuses_deeply_nested_json_with_the_generic_message(as_):
    anonymous, token = as_("anonymous")
    headers = {"X-CSRFToken": token, "Content-Type": "application/json"}
    assert anonymous.post("/sign-in/options", headers=headers).status_code == 200
    response = anonymous.post("/sign-in/verify", data=DEEP, headers=headers)
    assert response.status_code == 400
    # The same words as for any credential that does not verify.
    anonymous.post("/sign-in/options", headers=headers)
    malformed = anonymous.post("/sign-in/verify", data="{}", headers=headers)
    assert response.get_json()["error"] == malformed.get_json()["error"]


@pytest.mark.parametrize(
    "target",
    ["/home\r\nSet-Cookie: x=1", "/\nx", "//evil.example/", "/\\evil.example", "https://e.org/"],
)
def test_a_next_that_is_not_a_plain_local_path_goes_home(as_, target):
    anonymous, token = as_("anonymous")
    response = anonymous.post(
        "/language", data={"csrf_token": token, "language": "en", "next": target}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


def test_an_acknowledged_alert_with_a_bad_next_lands_on_the_dashboard(as_, world):
    coordinator, token = as_("coordinator")
    response = coordinator.post(
        f"/staff/alerts/{world.values['alert_id']}/acknowledge",
        data={
            "csrf_token": token,
            "outcome": "called",
            "next": "/staff/participants\r\nX-Injected: 1",
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/staff/dashboard"
    db.session.expire_all()
    assert db.session.get(Alert, int(world.values["alert_id"])).acknowledged_at is not None


def test_a_failing_statement_logs_neither_answers_nor_e_mail_addresses(
    as_, world, monkeypatch, caplog
):
    """A statement that fails is logged with its SQL, never with its values."""
    secret_text = "Recognisable-health-text-4242"
    taken_email = world.coordinator.email

    def failing_withdrawal(participant, staff, reason):
        db.session.add(StaffUser(email=taken_email, name=reason, role="coordinator"))
        db.session.flush()

    monkeypatch.setattr(accounts_services, "withdraw_participant", failing_withdrawal)
    coordinator, token = as_("coordinator")
    with caplog.at_level(logging.DEBUG):
        response = coordinator.post(
            f"/staff/participants/{world.values['study_id']}/withdraw",
            data={"csrf_token": token, "reason": secret_text},
        )
    assert response.status_code == 500
    logged = caplog.text
    assert "IntegrityError" in logged
    assert "INSERT INTO staff_user" in logged
    assert secret_text not in logged
    assert taken_email not in logged
