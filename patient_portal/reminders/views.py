"""The participant's reminder preferences, push subscription endpoints, test reminders, and the
home-page banner.

Load → authorise → act; one commit per request. Bad input answers 422 with the page (or, for
the JSON endpoints that static/js/reminders.js calls, `{"error": ...}`) and nothing saved.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import cast

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.local import LocalProxy

from patient_portal.accounts.auth import require
from patient_portal.accounts.models import Participant
from patient_portal.errors import PortalError, rolled_back
from patient_portal.extensions import db, limiter
from patient_portal.i18n import current_language, format_date, format_time
from patient_portal.inputs import json_body
from patient_portal.protocol.services import get_protocol
from patient_portal.reminders import channels, dispatch, messages, planning
from patient_portal.reminders import preferences as choices  # `preferences` is the page's view
from patient_portal.reminders.models import CHANNELS, KINDS, Reminder
from patient_portal.schedule.models import Visit
from patient_portal.timezones import local_instant

bp = Blueprint("reminders", __name__)

HOURS = list(range(24))


def kind_label(kind: str) -> str:
    return {
        "infusion": _("Infusion days"),
        "visit": _("Other study visits"),
        "questionnaire": _("Questionnaires"),
        "test": _("Test"),
        "new_device": _("New device added"),
    }[kind]


def channel_label(channel: str) -> str:
    return {
        "push": _("Notification on this phone"),
        "email": _("E-mail"),
        "inapp": _("Message on my home page"),
    }[channel]


def hour_label(hour: int) -> str:
    site = get_protocol().site(current_user.site_code)
    moment = local_instant(date(2026, 1, 5), site.zone, time(hour))
    return format_time(moment, site.formatting_locale(current_language()), site.zone)


def when_label(reminder: Reminder) -> str:
    site = get_protocol().site(current_user.site_code)
    locale = site.formatting_locale(current_language())
    return _(
        "%(date)s at %(time)s",
        date=format_date(reminder.due_at, locale, site.zone),
        time=format_time(reminder.due_at, locale, site.zone),
    )


def _page(status: int = 200, errors: dict | None = None, form: dict | None = None, **extra):
    participant: Participant = current_user
    prefs = choices.preferences_of(participant)
    return render_template(
        "reminders/preferences.html",
        prefs=prefs,
        kinds=KINDS,
        channels=CHANNELS,
        hours=HOURS,
        hour_label=hour_label,
        kind_label=kind_label,
        channel_label=channel_label,
        when_label=when_label,
        upcoming=planning.upcoming_reminders(participant),
        usable=choices.usable_channels(participant, prefs),
        email=choices.email_of(participant),
        smtp=choices.smtp_configured(),
        subscriptions=choices.subscriptions_of(participant),
        vapid_public_key=channels.vapid_public_key(
            cast("LocalProxy[Flask]", current_app)._get_current_object()
        ),
        errors=errors or {},
        form=form,
        **extra,
    ), status


# The phone's script (static/js/reminders.js) reads `{"error": ...}` whatever it sent.
SCRIPT_ENDPOINTS = {"reminders.push_subscribe", "reminders.push_unsubscribe"}


@bp.errorhandler(PortalError)
def refused(error: PortalError):
    """Nothing saved; the page again with the message beside what was refused, or JSON for
    the phone's script."""
    rolled_back()
    if request.endpoint in SCRIPT_ENDPOINTS:
        return jsonify(error=error.message), error.status
    return _page(error.status, errors={error.field: error.message}, form=request.form)


@bp.get("/reminders")
@require("participant")
def preferences():
    return _page()


@bp.post("/reminders/preferences")
@require("participant")
def save_preferences():
    participant: Participant = current_user
    chosen = {kind: request.form.getlist(f"channels-{kind}") for kind in KINDS}
    quiet = choices.parse_quiet_hours(
        request.form.get("quiet") == "on",
        request.form.get("quiet_start"),
        request.form.get("quiet_end"),
    )
    choices.save_preferences(participant, chosen, quiet)
    db.session.commit()
    flash(_("Your reminder choices are saved."))
    return redirect(url_for("reminders.preferences"), 303)


@bp.post("/reminders/email")
@require("participant")
@limiter.limit("20/hour")
def save_email():
    participant: Participant = current_user
    remove = request.form.get("remove") == "yes"
    changed = choices.set_email(participant, "" if remove else request.form.get("email"))
    db.session.commit()
    if changed:
        flash(
            _("Your e-mail address is removed.") if remove else _("Your e-mail address is saved.")
        )
    return redirect(url_for("reminders.preferences") + "#email-heading", 303)


@bp.post("/reminders/push/subscribe")
@require("participant")
@limiter.limit("30/hour")
def push_subscribe():
    choices.add_subscription(current_user, json_body(), request.headers.get("User-Agent", ""))
    db.session.commit()
    return jsonify(message=_("Notifications are on for this phone.")), 201


@bp.post("/reminders/push/unsubscribe")
@require("participant")
def push_unsubscribe():
    data = json_body()
    endpoint = data.get("endpoint") if isinstance(data, dict) else None
    choices.remove_subscription(current_user, endpoint)
    db.session.commit()
    return jsonify(message=_("Notifications are off for this phone."))


@bp.post("/reminders/test/<channel>")
@require("participant")
@limiter.limit("10/hour")
def send_test(channel: str):
    if channel not in CHANNELS:
        abort(404)
    outcome = dispatch.send_test_reminder(
        current_user, channel, dispatch.Dispatcher(name=f"test:{current_user.study_id}")
    )
    if outcome.status == "sent":
        message = {
            "push": _("A test notification is on its way to your phone."),
            "email": _("A test e-mail is on its way."),
            "inapp": _("A test message is waiting on your home page."),
        }[channel]
        return _page(test_result=message)
    # Only "could not be sent": what the push service or mail server answered is in the log
    # for the study team, never on the page.
    if outcome.status == "retry":
        message = _(
            "The test reminder could not be sent just now. It is logged and your study "
            "team can see it; the portal will try again."
        )
    else:
        message = _(
            "The test reminder could not be sent. It is logged and your study team can see it."
        )
    return _page(503, errors={"test": message})


# --- Home page ------------------------------------------------------------------------------


def home_banner(participant: Participant, now: datetime) -> dict | None:
    """The in-app reminders shown on top of the home page, if any."""
    if participant.home_notices_until is None or participant.home_notices_until <= now:
        return None
    reminders = dispatch.banner_reminders(participant, now)
    if not reminders:
        return None
    composed = []
    for reminder in reminders:
        visit = db.session.get(Visit, reminder.visit_id) if reminder.visit_id else None
        composed.append(messages.compose(reminder, participant, visit, now))
    return {"messages": composed}


# --- Coordinators ---------------------------------------------------------------------------


def outcome_label(outcome: str) -> str:
    return {
        "sent": _("sent"),
        "retry": _("failed, will be retried"),
        "failed": _("failed"),
        "gone": _("phone no longer reachable"),
        "skipped": _("skipped, too late"),
        "cancelled": _("cancelled, no longer needed"),
    }[outcome]


@bp.app_context_processor
def _staff_helpers() -> dict:
    # For staff/participant.html's reminder block (templates/reminders/_staff_log.html).
    return {
        "reminder_log_of": lambda participant: dispatch.reminder_log(participant, limit=30),
        "reminder_kind_label": kind_label,
        "reminder_channel_label": channel_label,
        "reminder_outcome_label": outcome_label,
    }
