"""The participant's reminder preferences, push subscription endpoints, test reminders, and the
home-page banner.

Load → authorise → act; one commit per request. Bad input answers 422 with the page (or, for
the JSON endpoints that static/js/reminders.js calls, `{"error": ...}`) and nothing saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import cast

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    jsonify,
    make_response,
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


@dataclass(frozen=True)
class UpcomingLine:
    """One line of "My next reminders": the same moment and kind on several channels is one
    reminder to the participant, said once."""

    when: str
    kind: str
    channels: tuple[str, ...]


def upcoming_lines(participant: Participant, limit: int = 5) -> list[UpcomingLine]:
    lines: dict[tuple[str, str], list[str]] = {}
    for reminder in planning.upcoming_reminders(participant, limit=60):
        key = (when_label(reminder), reminder.kind)
        if key not in lines and len(lines) == limit:
            break
        channels = lines.setdefault(key, [])
        if reminder.channel not in channels:
            channels.append(reminder.channel)
    return [
        UpcomingLine(when, kind, tuple(c for c in CHANNELS if c in channels))
        for (when, kind), channels in lines.items()
    ]


def _page(status: int = 200, errors: dict | None = None, form: dict | None = None, **extra):
    participant: Participant = current_user
    prefs = choices.preferences_of(participant)
    usable = choices.usable_channels(participant, prefs)
    chosen = {c for kind in KINDS for c in prefs.channels[kind]}
    response = make_response(
        render_template(
            "reminders/preferences.html",
            prefs=prefs,
            kinds=KINDS,
            channels=CHANNELS,
            hours=HOURS,
            hour_label=hour_label,
            kind_label=kind_label,
            channel_label=channel_label,
            # A channel shows as on only where it can reach the participant: nothing ticked
            # before there is a phone that accepted notifications or a confirmed address.
            channels_on={c for c in chosen if c in usable},
            kinds_on={kind for kind in KINDS if prefs.channels[kind]},
            upcoming=upcoming_lines(participant),
            usable=usable,
            email=choices.email_of(participant),
            smtp=choices.smtp_configured(),
            subscriptions=choices.subscriptions_of(participant),
            vapid_public_key=channels.vapid_public_key(
                cast("LocalProxy[Flask]", current_app)._get_current_object()
            ),
            errors=errors or {},
            form=form,
            **extra,
        ),
        status,
    )
    if status != 200:
        # htmx would otherwise put the form's POST address in the history, and a reload
        # would ask the server for a page that answers only POST (405).
        response.headers["HX-Push-Url"] = url_for("reminders.preferences")
    return response


def _back_to(anchor: str):
    """Post/Redirect/Get: back to the page, beside what was just done; a reload does nothing."""
    return redirect(url_for("reminders.preferences") + f"#{anchor}", 303)


# The phone's script (static/js/reminders.js) reads `{"error": ...}` whatever it sent.
SCRIPT_ENDPOINTS = {"reminders.push_subscribe", "reminders.push_unsubscribe"}
# Where a refusal is shown, beside the button that caused it.
PLACES = {
    "channels": "choices",
    "quiet": "choices",
    "test": "test",
    "push": "test",
    "email": "email",
}


@bp.errorhandler(PortalError)
def refused(error: PortalError):
    """Nothing saved. JSON for the phone's script; the page again with the typed address and the
    message beside it for a refused address; otherwise back to the page (Post/Redirect/Get)
    with the message beside the button that caused it."""
    rolled_back()
    if request.endpoint in SCRIPT_ENDPOINTS:
        return jsonify(error=error.message), error.status
    if request.endpoint in ("reminders.confirm_email", "reminders.confirm_email_now"):
        return render_template("reminders/confirm_email.html", refusal=error.message), error.status
    if request.endpoint == "reminders.save_email" and error.field == "email":
        return _page(error.status, errors={"email": error.message}, form=request.form)
    place = PLACES.get(error.field or "", "choices")
    if place == "test" and request.view_args and request.view_args.get("channel") in CHANNELS:
        place = f"test-{request.view_args['channel']}"
    flash(error.message, f"{place} error")
    return _back_to(place)


@bp.get("/reminders")
@require("participant")
def preferences():
    return _page()


@bp.post("/reminders/preferences")
@require("participant")
def save_preferences():
    participant: Participant = current_user
    prefs = choices.preferences_of(participant)
    usable = choices.usable_channels(participant, prefs)
    # A channel that cannot reach the participant yet is not on the form: it keeps its choice,
    # so that e-mail starts once the address is confirmed and push once the phone says yes.
    kept = {c for kind in KINDS for c in prefs.channels[kind] if c not in usable}
    ticked = set(request.form.getlist("channels"))
    if ticked - set(CHANNELS) or set(request.form.getlist("kinds")) - set(KINDS):
        raise PortalError(_("Please choose among the channels shown."), 422, "channels")
    on = (ticked & usable) | kept
    kinds = set(request.form.getlist("kinds"))
    chosen = {kind: [c for c in CHANNELS if c in on] if kind in kinds else [] for kind in KINDS}
    quiet = choices.parse_quiet_hours(
        request.form.get("quiet") == "on",
        request.form.get("quiet_start"),
        request.form.get("quiet_end"),
    )
    choices.save_preferences(participant, chosen, quiet)
    db.session.commit()
    flash(_("Your reminder choices are saved."), "choices")
    return _back_to("choices")


@bp.post("/reminders/email")
@require("participant")
@limiter.limit("20/hour")
def save_email():
    participant: Participant = current_user
    remove = request.form.get("remove") == "yes"
    changed = choices.set_email(participant, "" if remove else request.form.get("email"))
    db.session.commit()
    if remove:
        flash(_("Your e-mail address is removed."), "email")
    elif changed:
        _send_confirmation(participant)
    return _back_to("email")


@bp.post("/reminders/email/confirmation")
@require("participant")
@limiter.limit("10/hour")
def resend_confirmation():
    _send_confirmation(current_user)
    return _back_to("email")


def _send_confirmation(participant: Participant) -> None:
    outcome = choices.send_verification(participant)
    db.session.commit()
    if outcome.status == "sent":
        flash(
            _(
                "We sent a link to this address. Open it to confirm the address: until then, "
                "no reminder goes there."
            ),
            "email",
        )
    else:
        flash(
            _("The confirmation e-mail could not be sent. Please try again later."), "email error"
        )


@bp.get("/reminders/email/confirm/<token>")
def confirm_email(token: str):
    """The link sent to a new address: a button confirms it (a mail scanner that follows links
    confirms nothing)."""
    _participant, confirmed = choices.participant_of_link(token)
    return render_template("reminders/confirm_email.html", token=token, confirmed=confirmed)


@bp.post("/reminders/email/confirm/<token>")
@limiter.limit("20/hour")
def confirm_email_now(token: str):
    participant, _confirmed = choices.participant_of_link(token)
    choices.confirm_email(participant)
    db.session.commit()
    return redirect(url_for("reminders.confirm_email", token=token), 303)


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
    place = f"test-{channel}"
    if outcome.status == "sent":
        message = {
            "push": _("A test notification is on its way to your phone."),
            "email": _("A test e-mail is on its way."),
            "inapp": _("A test message is waiting on your home page."),
        }[channel]
        flash(message, place)
    # Only "could not be sent": what the push service or mail server answered is in the log
    # for the study team, never on the page.
    elif outcome.status == "retry":
        flash(
            _(
                "The test reminder could not be sent just now. It is logged and your study "
                "team can see it; the portal will try again."
            ),
            f"{place} error",
        )
    else:
        flash(
            _("The test reminder could not be sent. It is logged and your study team can see it."),
            f"{place} error",
        )
    return _back_to(place)


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
