"""Coordinator pages: the participants of one's sites, enrolment, enrolment links, a participant's
record and withdrawal; for admins, the study team (invitations, role and sites, deactivation).

Every query is filtered by the sites the staff member may see; another site's participant is a 404.
"""

from __future__ import annotations

from datetime import date

import segno
import sqlalchemy as sa
from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup

from patient_portal.accounts import services
from patient_portal.accounts.auth import participant_of_visible_site, require, visible_site_codes
from patient_portal.accounts.models import LANGUAGES, STAFF_ROLES, Participant, StaffUser
from patient_portal.accounts.services import AccountError
from patient_portal.extensions import db, limiter
from patient_portal.i18n import current_language
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires.loader import get_instruments
from patient_portal.questionnaires.services import answers_of
from patient_portal.questionnaires.views import display_value
from patient_portal.workspace import services as workspace
from patient_portal.workspace.services import WorkspaceError

bp = Blueprint("staff", __name__, url_prefix="/staff")

DAY0_EARLIEST = date(2020, 1, 1)
DAY0_LATEST = date(2035, 12, 31)


def participant_status_label(status: str) -> str:
    return {
        "enrolled": _("Enrolled, no passkey yet"),
        "active": _("Active"),
        "withdrawn": _("Withdrawn"),
        "completed": _("Completed"),
    }[status]


def staff_role_label(role: str) -> str:
    return {"coordinator": _("Coordinator"), "admin": _("Administrator")}[role]


@bp.app_context_processor
def labels() -> dict:
    return {
        "participant_status_label": participant_status_label,
        "staff_role_label": staff_role_label,
    }


def qr_svg(url: str) -> Markup:
    """The enrolment link as an SVG QR code, drawn on the server (no script, no image request)."""
    svg = segno.make(url, error="m").svg_inline(
        scale=6, border=2, title=_("QR code of the enrolment link")
    )
    return Markup(svg)  # noqa: S704 - segno's own SVG, built from our own URL


def _link_page(owner, raw_token: str, status: int = 201):
    url = services.enrolment_url(raw_token)
    return render_template(
        "staff/enrolment_link.html", owner=owner, url=url, qr=qr_svg(url)
    ), status


def _parse_day0(value: str) -> date | None:
    if not value:
        return None
    try:
        day0 = date.fromisoformat(value)
    except ValueError:
        raise AccountError(_("Please give day 0 as a date (year-month-day)."), 422) from None
    if not DAY0_EARLIEST <= day0 <= DAY0_LATEST:
        raise AccountError(_("Day 0 must be between 2020 and 2035."), 422)
    return day0


def _participants_page(error: AccountError | None = None):
    """The participants of the staff member's sites, with the enrolment form (and its error)."""
    sites = visible_site_codes(current_user)
    rows = db.session.scalars(
        sa.select(Participant)
        .where(Participant.site_code.in_(sites))
        .order_by(Participant.site_code, Participant.study_id)
    ).all()
    page = render_template(
        "staff/participants.html",
        participants=rows,
        sites=sites,
        languages=LANGUAGES,
        error=error.message if error else None,
    )
    return page, error.status if error else 200


@bp.get("/participants")
@require("staff")
def participants():
    return _participants_page()


@bp.post("/participants")
@require("staff")
@limiter.limit("30 per minute")
def enrol_participant():
    site_code = request.form.get("site", "")
    try:
        if site_code not in visible_site_codes(current_user):
            raise AccountError(_("Please choose one of your sites."), 422)
        day0 = _parse_day0(request.form.get("day0", "").strip())
        participant, raw = services.enrol_participant(
            site_code, request.form.get("language", ""), day0, current_user
        )
    except AccountError as error:
        db.session.rollback()
        return _participants_page(error)
    db.session.commit()
    return _link_page(participant, raw)


def _participant_page(person: Participant, error: WorkspaceError | None = None):
    """Everything about one participant: schedule and questionnaire states, answers and scores,
    alerts, passkeys and sessions, withdrawal, and their audit history."""
    page = render_template(
        "staff/participant.html",
        participant=person,
        sessions=services.live_sessions(person),
        assignments=workspace.participant_assignments(person),
        submitted=workspace.submitted_answers(person),
        alerts=workspace.participant_alerts(person),
        history=workspace.participant_audit_history(person),
        answer_rows=_answer_rows,
        error=error.message if error else None,
    )
    return page, error.status if error else 200


def _answer_rows(assignment) -> list[tuple[str, str]]:
    """(question, answer as the participant read it) for a submitted questionnaire."""
    instruments = get_instruments()
    instrument = instruments.get(assignment.instrument_id)
    language = current_language()
    typed = answers_of(assignment, instrument) if instrument else {}
    rows = []
    for answer in assignment.answers:
        if instrument is None or not instrument.has_item(answer.item_id):
            rows.append((answer.item_id, str(answer.value)))
            continue
        item = instrument.item(answer.item_id)
        value = typed.get(answer.item_id, answer.value)
        rows.append((item.text.get(language), display_value(instrument, item, value, assignment)))
    return rows


@bp.get("/participants/<study_id>")
@require("staff")
def participant(study_id: str):
    return _participant_page(participant_of_visible_site(study_id, current_user))


@bp.post("/participants/<study_id>/withdraw")
@require("staff")
def withdraw(study_id: str):
    """Withdraw the participant, with a reason: questionnaires close, reminders stop, data stays."""
    person = participant_of_visible_site(study_id, current_user)
    try:
        workspace.withdraw_participant(person, current_user, request.form.get("reason", ""))
    except WorkspaceError as error:
        db.session.rollback()
        return _participant_page(person, error)
    db.session.commit()
    return redirect(url_for("staff.participant", study_id=person.study_id), 303)


@bp.post("/participants/<study_id>/enrolment-link")
@require("staff")
def new_enrolment_link(study_id: str):
    person = participant_of_visible_site(study_id, current_user)
    if person.status == "withdrawn":
        abort(409)
    raw = services.issue_enrolment_link(
        person, current_user, revoke_passkeys=request.form.get("revoke_passkeys") == "yes"
    )
    db.session.commit()
    return _link_page(person, raw)


@bp.post("/participants/<study_id>/enrolment-link/revoke")
@require("staff")
def revoke_enrolment_link(study_id: str):
    person = participant_of_visible_site(study_id, current_user)
    services.revoke_enrolment_links(person)
    db.session.commit()
    return redirect(url_for("staff.participant", study_id=person.study_id), 303)


@bp.post("/participants/<study_id>/sessions/end")
@require("staff")
def end_participant_sessions(study_id: str):
    person = participant_of_visible_site(study_id, current_user)
    services.end_all_sessions(person, reason="ended by staff")
    db.session.commit()
    return redirect(url_for("staff.participant", study_id=person.study_id), 303)


def _team_page(error: AccountError | None = None):
    """Every staff member, with the invitation form (and its error)."""
    members = db.session.scalars(sa.select(StaffUser).order_by(StaffUser.name)).all()
    page = render_template(
        "staff/team.html",
        members=members,
        roles=STAFF_ROLES,
        sites=list(get_protocol().sites),
        error=error.message if error else None,
    )
    return page, error.status if error else 200


@bp.get("/team")
@require("admin")
def team():
    return _team_page()


@bp.post("/team")
@require("admin")
def invite_staff():
    try:
        staff, raw = services.create_staff(
            request.form.get("email", ""),
            request.form.get("name", ""),
            request.form.get("role", ""),
            request.form.getlist("sites"),
            current_user,
        )
    except AccountError as error:
        db.session.rollback()
        return _team_page(error)
    db.session.commit()
    return _link_page(staff, raw)


def _member(staff_id: int) -> StaffUser:
    member = db.session.get(StaffUser, staff_id)
    if member is None:
        abort(404)
    return member


@bp.post("/team/<int:staff_id>")
@require("admin")
def update_member(staff_id: int):
    """Set a staff member's role and sites."""
    member = _member(staff_id)
    try:
        workspace.update_staff(
            member, request.form.get("role", ""), request.form.getlist("sites"), current_user
        )
    except WorkspaceError as error:
        db.session.rollback()
        return _team_page(AccountError(error.message, error.status))
    db.session.commit()
    return redirect(url_for("staff.team"), 303)


@bp.post("/team/<int:staff_id>/active")
@require("admin")
def set_member_active(staff_id: int):
    """Deactivate (signed out everywhere) or reactivate a staff account."""
    member = _member(staff_id)
    try:
        workspace.set_staff_active(member, request.form.get("active") == "yes", current_user)
    except WorkspaceError as error:
        db.session.rollback()
        return _team_page(AccountError(error.message, error.status))
    db.session.commit()
    return redirect(url_for("staff.team"), 303)
