"""Enrolment links, passkey registration and sign-in, settings, sign-out.

The passkey endpoints speak JSON to static/js/passkeys.js; the ceremony key lives in the
server-side session, never in the page.
"""

from __future__ import annotations

from datetime import datetime

from flask import (
    Blueprint,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_login import current_user, logout_user

from patient_portal import audit
from patient_portal.accounts import services
from patient_portal.accounts.auth import require
from patient_portal.errors import PortalError, rolled_back
from patient_portal.extensions import db, limiter
from patient_portal.i18n import (
    LANGUAGE_COOKIE,
    format_date,
    format_time,
    person_text_locale,
    viewer_locale_and_zone,
)
from patient_portal.inputs import json_text
from patient_portal.security import current_session_record, end_session, start_authenticated_session
from patient_portal.views import local_path

bp = Blueprint("accounts", __name__)

CEREMONY_KEY = "webauthn_ceremony"
CEREMONY_LIMIT = "20 per minute"


def home_for(owner) -> str:
    """Where someone lands after signing in."""
    endpoint = "workspace.worklist" if owner.is_staff else "schedule.home"
    if endpoint not in current_app.view_functions:
        endpoint = "accounts.settings"
    return url_for(endpoint)


# Ceremonies whose refusal is committed: the ceremony was deleted before verification, and that
# deletion must stick even though the ceremony failed, so a challenge is answered once at most.
CEREMONY_ENDS = {"accounts.enrol_verify", "accounts.add_passkey_verify"}
# Settings actions whose refusal is shown on the settings page, above the passkeys and sessions.
SETTINGS_ACTIONS = {
    "accounts.rename_passkey",
    "accounts.remove_passkey",
    "accounts.end_other_session",
}


@bp.errorhandler(PortalError)
def refused(error: PortalError):
    """A refused accounts action, answered where the person is: the passkey script (JSON), the
    enrolment link's page, or the settings page."""
    if request.endpoint in CEREMONY_ENDS:
        db.session.commit()
        return jsonify(error=error.message), error.status
    rolled_back()
    if request.endpoint == "accounts.enrol":
        return render_template("accounts/enrol_refused.html", message=error.message), error.status
    if request.endpoint in SETTINGS_ACTIONS:
        return _settings_page(error.message, error.status)
    return jsonify(error=error.message), error.status


def _not_created():
    rolled_back()
    return jsonify(error=_("The passkey could not be created. Please try again.")), 400


def _credential_body() -> str:
    # Checked before py_webauthn parses it: a deeply nested body would exhaust its parser's stack.
    return json_text()


# --- enrolment ---------------------------------------------------------------------------------


@bp.get("/enrol/<token>")
@limiter.limit(CEREMONY_LIMIT)
def enrol(token: str):
    enrolment = services.usable_enrolment_token(token)
    owner = enrolment.owner
    # The welcome is in the participant's own language, whatever the phone says.
    with force_locale(person_text_locale(owner)):
        response = current_app.make_response(
            render_template("accounts/enrol.html", owner=owner, token=token)
        )
    response.set_cookie(
        LANGUAGE_COOKIE,
        owner.language,
        max_age=365 * 24 * 3600,
        samesite="Lax",
        httponly=True,
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
    return response


@bp.post("/enrol/<token>/options")
@limiter.limit(CEREMONY_LIMIT)
def enrol_options(token: str):
    enrolment = services.usable_enrolment_token(token)
    key, options = services.registration_options(enrolment.owner, enrolment)
    session[CEREMONY_KEY] = key
    db.session.commit()
    return current_app.response_class(options, mimetype="application/json")


@bp.post("/enrol/<token>/verify")
@limiter.limit(CEREMONY_LIMIT)
def enrol_verify(token: str):
    enrolment = services.usable_enrolment_token(token)
    passkey = services.finish_registration(session.pop(CEREMONY_KEY, None), _credential_body())
    owner = passkey.owner
    if enrolment.owner is not owner:
        return _not_created()
    start_authenticated_session(session, owner)
    db.session.commit()
    return jsonify(redirect=home_for(owner))


# --- sign-in and sign-out ----------------------------------------------------------------------


@bp.get("/sign-in")
def sign_in():
    after = local_path(request.args.get("next"), "")
    if current_user.is_authenticated:
        return redirect(after or home_for(current_user))
    return render_template("accounts/sign_in.html", after=after or None)


@bp.post("/sign-in/options")
@limiter.limit(CEREMONY_LIMIT)
def sign_in_options():
    key, options = services.authentication_options()
    session[CEREMONY_KEY] = key
    db.session.commit()
    return current_app.response_class(options, mimetype="application/json")


@bp.post("/sign-in/verify")
@limiter.limit(CEREMONY_LIMIT)
def sign_in_verify():
    attempt = services.finish_authentication(session.pop(CEREMONY_KEY, None), _credential_body())
    if attempt.owner is None:
        # The failure and its reason are in the audit trail; the person sees one generic message.
        db.session.commit()
        return jsonify(error=services.SignInFailed().message), 400
    start_authenticated_session(session, attempt.owner)
    db.session.commit()
    # The page the person was on before being asked to sign in (a reminder's questionnaire):
    # a path on this site only, never another site.
    return jsonify(redirect=local_path(request.args.get("next"), home_for(attempt.owner)))


@bp.get("/sign-out")
@require("any")
def sign_out_page():
    return render_template("accounts/sign_out.html")


@bp.post("/sign-out")
def sign_out():
    if current_user.is_authenticated:
        record = current_session_record(session)
        if record is not None:
            audit.record(
                "session.ended", "session", record.id[:12], after={"owner": current_user.audit_name}
            )
    end_session(session)
    logout_user()
    db.session.commit()
    return redirect(url_for("accounts.signed_out"), 303)


@bp.get("/signed-out")
def signed_out():
    return render_template("accounts/signed_out.html")


@bp.post("/sign-out-everywhere")
@require("any")
def sign_out_everywhere():
    services.end_all_sessions(current_user, reason="sign out everywhere")
    end_session(session)
    logout_user()
    db.session.commit()
    return redirect(url_for("accounts.signed_out"), 303)


# --- settings: passkeys and sessions -----------------------------------------------------------


def _settings_page(error: str | None = None, status: int = 200, notice: str | None = None):
    record = current_session_record(session)
    return (
        render_template(
            "accounts/settings.html",
            passkeys=current_user.passkeys,
            sessions=services.live_sessions(current_user),
            current_session_id=record.id if record else None,
            error=error,
            notice=notice,
        ),
        status,
    )


@bp.get("/settings")
@require("any")
def settings():
    return _settings_page()


@bp.post("/settings/passkeys/options")
@require("any")
@limiter.limit(CEREMONY_LIMIT)
def add_passkey_options():
    key, options = services.registration_options(current_user)
    session[CEREMONY_KEY] = key
    db.session.commit()
    return current_app.response_class(options, mimetype="application/json")


@bp.post("/settings/passkeys/verify")
@require("any")
@limiter.limit(CEREMONY_LIMIT)
def add_passkey_verify():
    passkey = services.finish_registration(session.pop(CEREMONY_KEY, None), _credential_body())
    if passkey.owner is not current_user._get_current_object():
        return _not_created()
    db.session.commit()
    return jsonify(redirect=url_for("accounts.settings"))


@bp.post("/settings/passkeys/<id:passkey_id>/rename")
@require("any")
def rename_passkey(passkey_id: int):
    services.rename_passkey(current_user, passkey_id, request.form.get("nickname", ""))
    db.session.commit()
    return redirect(url_for("accounts.settings"), 303)


@bp.post("/settings/passkeys/<id:passkey_id>/remove")
@require("any")
def remove_passkey(passkey_id: int):
    services.remove_passkey(current_user, passkey_id)
    db.session.commit()
    return redirect(url_for("accounts.settings"), 303)


@bp.post("/settings/sessions/<session_id>/end")
@require("any")
def end_other_session(session_id: str):
    # The owner itself, not the proxy: the service compares the session's owner by identity.
    services.end_session_by_id(current_user._get_current_object(), session_id)
    db.session.commit()
    return redirect(url_for("accounts.settings"), 303)


@bp.post("/settings/passkeys/notices/dismiss")
@require("participant")
def dismiss_new_device_notice():
    services.dismiss_new_device_notices(current_user)
    db.session.commit()
    return redirect(home_for(current_user), 303)


# --- the participant's home page ---------------------------------------------------------------


def new_device_banner(participant, now: datetime) -> dict | None:
    """The "a new device was added" notice on the home page, until the participant puts it away.

    Listed in create_app's home_sections, first: it may mean someone else can sign in as them.
    """
    passkeys = services.new_device_notices(participant)
    if not passkeys:
        return None
    locale, zone = viewer_locale_and_zone()
    return {
        "added": [
            (
                format_date(p.created_at, locale, zone, "long"),
                format_time(p.created_at, locale, zone),
            )
            for p in passkeys
        ]
    }
