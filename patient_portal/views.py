"""Pages that belong to no feature: the landing page, the language switch and the health check."""

from __future__ import annotations

from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
)
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError

from patient_portal import audit
from patient_portal.extensions import db
from patient_portal.i18n import LANGUAGE_COOKIE, LANGUAGES, current_language
from patient_portal.inputs import has_control_character
from patient_portal.protocol.services import get_protocol

bp = Blueprint("core", __name__)

ONE_YEAR = 365 * 24 * 3600
LOCAL_PATH_MAX = 2000


def local_path(target: str | None, default: str = "/") -> str:
    """Only a plain path on this site may be a redirect target: no scheme or host (no open
    redirect), no `//` or backslash (which browsers read as a host), and no control character
    (CR/LF would split the Location header)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or has_control_character(target) or len(target) > LOCAL_PATH_MAX:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def nav_links() -> list[tuple[str, str]]:
    """The main menu for the signed-in person; features that are not installed are left out.
    Worked out once per request and language (the header asks for it twice: the menu and the
    entries pinned beside it)."""
    key = (current_user.get_id(), current_language())
    cached = g.get("nav_links")
    if cached is None or cached[0] != key:
        cached = g.nav_links = (key, _menu_for_current_user())
    return cached[1]


def _menu_for_current_user() -> list[tuple[str, str]]:
    if not current_user.is_authenticated:
        return []
    if current_user.is_staff:
        candidates = [
            ("workspace.worklist", _("Today")),
            ("workspace.dashboard", _("Dashboard")),
            ("staff.participants", _("Participants")),
            ("workspace.exports_page", _("Exports")),
        ]
        if current_user.is_admin:
            candidates += [("staff.team", _("Study team")), ("workspace.audit_log", _("Audit log"))]
    else:
        candidates = [
            ("schedule.home", _("Home")),
            ("schedule.timeline", _("My visits")),
            ("questionnaires.index", _("Questionnaires")),
            ("schedule.contact", _("Contact")),
            ("accounts.settings", _("Settings")),
        ]
    candidates.append(("accounts.sign_out_page", _("Sign out")))
    return [
        (endpoint, label)
        for endpoint, label in candidates
        if endpoint in current_app.view_functions
    ]


# Kept in sight beside the participant's "Menu" button, so that they are one tap from every
# page (whom to call above all); the menu lists them too.
PINNED_ENDPOINTS = ("schedule.contact",)


def pinned_links() -> list[tuple[str, str]]:
    """The menu entries a participant sees without opening the menu."""
    if not current_user.is_authenticated or current_user.is_staff:
        return []
    return [(endpoint, label) for endpoint, label in nav_links() if endpoint in PINNED_ENDPOINTS]


@bp.app_context_processor
def menu() -> dict:
    return {"nav_links": nav_links, "pinned_links": pinned_links}


@bp.get("/")
def landing():
    protocol = get_protocol()
    return render_template(
        "core/landing.html", sites=list(protocol.sites.values()), protocol=protocol
    )


@bp.post("/language")
def switch_language():
    """Set the language: a cookie for everyone, and the stored choice of a signed-in person."""
    language = request.form.get("language", "")
    if language not in LANGUAGES:
        abort(400)
    if current_user.is_authenticated and current_user.language != language:
        before = current_user.language
        current_user.language = language
        audit.record(
            "language.changed",
            current_user.kind,
            current_user.id,
            before={"language": before},
            after={"language": language},
        )
        db.session.commit()
    response = redirect(local_path(request.form.get("next")), 303)
    response.set_cookie(
        LANGUAGE_COOKIE,
        language,
        max_age=ONE_YEAR,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
    )
    return response


@bp.get("/healthz")
def healthz():
    try:
        db.session.execute(sa.text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        return jsonify(status="degraded", database="unavailable"), 503
    return jsonify(status="ok", database="ok")
