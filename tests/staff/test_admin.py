"""Staff administration and the audit log viewer, for admins only."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from patient_portal.accounts.models import AuthSession
from patient_portal.audit import AuditEvent
from patient_portal.extensions import db
from tests.factories import open_session_for


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


@pytest.fixture
def admin_client(client, sign_in, make_staff):
    admin = make_staff(role="admin", sites=[], email="admin@example.org", name="Ada Admin")
    sign_in(client, admin)
    return client


def test_admin_sets_role_and_sites_audited(admin_client, make_staff, csrf_token):
    member = make_staff(sites=["JGH"], name="Chris Coordinator")
    token = csrf_token(admin_client, "/staff/team")
    response = admin_client.post(
        f"/staff/team/{member.id}",
        data={"csrf_token": token, "role": "coordinator", "sites": ["CHUM", "SLS"]},
    )
    assert response.status_code == 303
    db.session.expire_all()
    assert member.site_codes == ["CHUM", "SLS"]
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "staff.updated"))
    assert event.before == {"role": "coordinator", "sites": ["JGH"]}
    assert event.after == {"role": "coordinator", "sites": ["CHUM", "SLS"]}


def test_admin_marks_an_investigator_audited(admin_client, make_staff, csrf_token):
    member = make_staff(sites=["JGH"], name="Pat Investigator")
    token = csrf_token(admin_client, "/staff/team")
    path = f"/staff/team/{member.id}/investigator"
    response = admin_client.post(path, data={"csrf_token": token, "investigator": "yes"})
    assert response.status_code == 303
    db.session.expire_all()
    assert member.investigator is True
    page = _text(admin_client.get("/staff/team"))
    assert "Pat Investigator" in page and "Remove Pat Investigator from the investigators" in page
    event = db.session.scalar(
        sa.select(AuditEvent).where(AuditEvent.action == "staff.investigator")
    )
    assert event.after == {"investigator": True} and event.entity_id == member.email
    admin_client.post(path, data={"csrf_token": token, "investigator": "no"})
    db.session.expire_all()
    assert member.investigator is False


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        ({"role": "king", "sites": ["JGH"]}, 422, "Please choose a role."),
        ({"role": "coordinator"}, 422, "Please choose at least one known site."),
        ({"role": "coordinator", "sites": ["MARS"]}, 422, "Please choose at least one known site."),
    ],
)
def test_bad_role_or_sites_are_refused(admin_client, make_staff, csrf_token, data, status, message):
    member = make_staff(sites=["JGH"])
    token = csrf_token(admin_client, "/staff/team")
    response = admin_client.post(f"/staff/team/{member.id}", data={"csrf_token": token, **data})
    assert response.status_code == status
    assert message in _text(response)
    db.session.expire_all()
    assert member.site_codes == ["JGH"]


def test_deactivation_ends_sessions_and_blocks_the_account(
    admin_client, make_staff, csrf_token, app
):
    member = make_staff(sites=["JGH"], name="Dee Parted")
    their_client = app.test_client()
    their_client.set_cookie("portal_session", open_session_for(member), domain="localhost")
    assert their_client.get("/staff/dashboard").status_code == 200
    token = csrf_token(admin_client, "/staff/team")
    response = admin_client.post(
        f"/staff/team/{member.id}/active", data={"csrf_token": token, "active": "no"}
    )
    assert response.status_code == 303
    assert their_client.get("/staff/dashboard").status_code == 302
    live = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(AuthSession)
        .where(AuthSession.staff_id == member.id, AuthSession.revoked_at.is_(None))
    )
    assert live == 0
    assert "Deactivated" in _text(admin_client.get("/staff/team"))
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "staff.deactivated"))
    assert event.entity_id == member.email


def test_admin_cannot_deactivate_or_demote_themselves(admin_client, csrf_token):
    from patient_portal.accounts.models import StaffUser

    me = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == "admin@example.org"))
    token = csrf_token(admin_client, "/staff/team")
    response = admin_client.post(
        f"/staff/team/{me.id}/active", data={"csrf_token": token, "active": "no"}
    )
    assert response.status_code == 409
    response = admin_client.post(
        f"/staff/team/{me.id}", data={"csrf_token": token, "role": "coordinator", "sites": ["JGH"]}
    )
    assert response.status_code == 409


def test_unknown_member_is_a_404(admin_client, csrf_token):
    token = csrf_token(admin_client, "/staff/team")
    response = admin_client.post("/staff/team/999999/active", data={"csrf_token": token})
    assert response.status_code == 404


def test_audit_log_filters(admin_client, in_year):
    in_year("JGH", days=10, habit="all")
    page = _text(admin_client.get("/staff/audit?action=questionnaire.submitted"))
    assert "JGH-001 submitted “" in page and " enrolled JGH-001" not in page
    page = _text(admin_client.get("/staff/audit?actor=participant:JGH-001&entity=assignment"))
    assert "JGH-001 answered a question of “" in page
    fragment = admin_client.get("/staff/audit?action=answer", headers={"HX-Request": "true"})
    assert "<html" not in fragment.get_data(as_text=True)
    assert "JGH-001 answered a question of “" in _text(fragment)
    assert "No audit event matches" in _text(admin_client.get("/staff/audit?from=2030-01-01"))


@pytest.mark.parametrize(
    "query",
    ["from=yesterday", "from=2026-05-01&to=2026-01-01", "actor=%3Cscript%3E", "page=-1"],
)
def test_audit_log_refuses_bad_filters(admin_client, query):
    response = admin_client.get(f"/staff/audit?{query}")
    assert response.status_code == 400
    assert "<script>" not in response.get_data(as_text=True)
