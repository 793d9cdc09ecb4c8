"""The study team (admins): invitations, each member's role and sites, deactivation."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, redirect, render_template, request, url_for
from flask_login import current_user

from patient_portal.accounts import services
from patient_portal.accounts.auth import require
from patient_portal.accounts.models import STAFF_ROLES, StaffUser
from patient_portal.errors import PortalError
from patient_portal.extensions import db
from patient_portal.protocol.services import get_protocol
from patient_portal.staff.views.blueprints import staff
from patient_portal.staff.views.participants import show_link_once


def team_page(error: PortalError | None = None):
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


@staff.get("/team")
@require("admin")
def team():
    return team_page()


@staff.post("/team")
@require("admin")
def invite_staff():
    member, raw = services.create_staff(
        request.form.get("email", ""),
        request.form.get("name", ""),
        request.form.get("role", ""),
        request.form.getlist("sites"),
        current_user,
    )
    db.session.commit()
    return show_link_once(member, raw)


def _member(staff_id: int) -> StaffUser:
    member = db.session.get(StaffUser, staff_id)
    if member is None:
        abort(404)
    return member


@staff.post("/team/<id:staff_id>")
@require("admin")
def update_member(staff_id: int):
    """Set a staff member's role and sites."""
    member = _member(staff_id)
    services.update_staff(
        member, request.form.get("role", ""), request.form.getlist("sites"), current_user
    )
    db.session.commit()
    return redirect(url_for("staff.team"), 303)


@staff.post("/team/<id:staff_id>/active")
@require("admin")
def set_member_active(staff_id: int):
    """Deactivate (signed out everywhere) or reactivate a staff account."""
    member = _member(staff_id)
    services.set_staff_active(member, request.form.get("active") == "yes", current_user)
    db.session.commit()
    return redirect(url_for("staff.team"), 303)


@staff.post("/team/<id:staff_id>/investigator")
@require("admin")
def set_member_investigator(staff_id: int):
    """Mark or unmark a staff member as an investigator (escalated alerts reach them)."""
    member = _member(staff_id)
    services.set_staff_investigator(member, request.form.get("investigator") == "yes", current_user)
    db.session.commit()
    return redirect(url_for("staff.team"), 303)
