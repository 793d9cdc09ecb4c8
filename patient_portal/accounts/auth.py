"""Who is signed in, and the one authorisation helper every view goes through."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

import sqlalchemy as sa
from flask import Flask, abort, redirect, request, session, url_for
from flask_login import current_user
from htmx_flask import make_response

from patient_portal.accounts.models import AuthSession, Participant, StaffUser
from patient_portal.errors import log_refusal
from patient_portal.extensions import db, login_manager
from patient_portal.protocol.services import get_protocol


def load_signed_in_owner(_request) -> Participant | StaffUser | None:
    """The owner of the server-side session row the cookie points at, if still allowed in."""
    record_id = getattr(session, "record_id", None)
    if record_id is None:
        return None
    record = db.session.get(AuthSession, record_id)
    owner = record.owner if record else None
    if owner is None or not owner.is_active:
        return None
    return owner


def answer_unauthenticated():
    """Send people to sign in; an htmx request gets HX-Redirect, never a form inside a fragment."""
    target = url_for(
        "accounts.sign_in", next=request.full_path if request.method == "GET" else None
    )
    if request.htmx:
        return make_response("", 204, redirect=target)
    return redirect(target)


def visible_site_codes(staff: StaffUser) -> list[str]:
    """The sites a staff member may see: every site for an admin, their own for a coordinator."""
    if staff.is_admin:
        return list(get_protocol().sites)
    return staff.site_codes


def require(role: str) -> Callable:
    """View decorator: 'any' signed-in person, 'participant', 'staff' (coordinator or admin) or 'admin'.

    Staff who reach a participant page, or participants who reach a staff page, get 403: they
    are signed in, just not allowed. Records of another site are filtered out by the queries and
    answer 404.
    """

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                return answer_unauthenticated()
            allowed = {
                "any": True,
                "participant": not current_user.is_staff,
                "staff": current_user.is_staff,
                "admin": current_user.is_staff and current_user.is_admin,
            }[role]
            if not allowed:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def participant_of_visible_site(study_id: str, staff: StaffUser) -> Participant:
    """A participant the staff member may see, or 404 (another site looks like no one)."""
    participant = db.session.scalar(
        sa.select(Participant).where(
            Participant.study_id == study_id, Participant.site_code.in_(visible_site_codes(staff))
        )
    )
    if participant is None:
        # Unknown, or of a site the staff member does not cover: both look like no one.
        log_refusal("no visible participant")
        abort(404)
    return participant


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.request_loader(load_signed_in_owner)
    login_manager.unauthorized_handler(answer_unauthenticated)
    # The server-side session is already bound to its row; Flask-Login's own cookie checks
    # would only duplicate it.
    login_manager.session_protection = None
