"""The coordinator's "Today" worklist (the staff landing page) and the contact log's form.

Load → authorise → act, one commit per request. The worklist shows only the participants of
the staff member's sites; the contact form answers 404 for another site's participant. A
recorded contact redirects (Post/Redirect/Get) and its form key makes a second sending of the
same form record nothing.
"""

from __future__ import annotations

from datetime import datetime

from babel.dates import format_timedelta
from flask import (
    current_app,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user

from patient_portal import clock, form_keys
from patient_portal.accounts.auth import participant_of_visible_site, require, visible_site_codes
from patient_portal.contacts import services as contacts
from patient_portal.contacts.models import CHANNELS, NOTE_MAX, OUTCOMES
from patient_portal.errors import PortalError
from patient_portal.extensions import db
from patient_portal.i18n import (
    babel_locale,
    current_language,
    format_date,
    format_relative_days,
    format_time,
)
from patient_portal.protocol.services import get_protocol
from patient_portal.staff import worklist as read_model
from patient_portal.staff.views.blueprints import staff, workspace
from patient_portal.staff.views.labels import visit_label
from patient_portal.views import local_path

# A morning's worth of calls; past that the list would only be scrolled, and every row costs
# rendering time (a site of thousands has its dashboard for the rest).
ROWS_SHOWN = 100


def _locale(row: read_model.Row) -> str:
    return get_protocol().site(row.site_code).formatting_locale(current_language())


def _day(row: read_model.Row, moment: datetime) -> str:
    return format_date(moment, _locale(row), row.zone, "medium")


def _moment(row: read_model.Row, moment: datetime) -> str:
    """A time today as a time ("8:23 a.m."), another day with its date, on the site's clock."""
    locale = _locale(row)
    time = format_time(moment, locale, row.zone)
    if moment.astimezone(row.zone).date() == row.today:
        return time
    return _("%(date)s at %(time)s", date=_day(row, moment), time=time)


def reason_text(row: read_model.Row, reason: read_model.Reason) -> str:
    """Why the participant is on the list, in words."""
    locale = _locale(row)
    visit = visit_label(reason.visit_code) if reason.visit_code else ""
    if reason.kind in ("alert_urgent", "alert_routine"):
        assert reason.since is not None
        age = format_timedelta(clock.now() - reason.since, threshold=1, locale=babel_locale(locale))
        if reason.kind == "alert_urgent":
            text = ngettext(
                "%(num)d urgent alert open for %(age)s",
                "%(num)d urgent alerts open for %(age)s",
                reason.count,
                age=age,
            )
        else:
            text = ngettext(
                "%(num)d routine alert open for %(age)s",
                "%(num)d routine alerts open for %(age)s",
                reason.count,
                age=age,
            )
        if reason.due_at is None:
            return text
        if reason.due_at <= clock.now():
            return _("%(alert)s: response target passed", alert=text)
        return _("%(alert)s: respond by %(when)s", alert=text, when=_moment(row, reason.due_at))
    if reason.kind in ("visit_today", "visit_tomorrow"):
        assert reason.since is not None
        at = format_time(reason.since, locale, row.zone)
        if reason.kind == "visit_today":
            return _("%(visit)s today at %(time)s", visit=visit, time=at)
        return _("%(visit)s tomorrow at %(time)s", visit=visit, time=at)
    if reason.kind == "window_open":
        assert reason.day is not None
        return _(
            "%(visit)s: window open until %(date)s, nothing booked",
            visit=visit,
            date=format_date(reason.day, locale, row.zone, "medium"),
        )
    if reason.kind == "unmarked":
        assert reason.day is not None
        day = format_date(reason.day, locale, row.zone, "medium")
        if reason.since is not None:
            return _("%(visit)s of %(date)s: not marked", visit=visit, date=day)
        return _("%(visit)s: window ended %(date)s, visit not marked", visit=visit, date=day)
    if reason.kind == "closing_today":
        return ngettext(
            "%(num)d questionnaire closes today", "%(num)d questionnaires close today", reason.count
        )
    if reason.kind == "missed":
        return ngettext(
            "%(num)d questionnaire missed since the last contact",
            "%(num)d questionnaires missed since the last contact",
            reason.count,
        )
    if reason.kind == "inactive":
        if reason.since is None:
            return _("Never signed in to the portal")
        days = (row.today - reason.since.astimezone(row.zone).date()).days
        return ngettext(
            "Not seen on the portal for %(num)d day",
            "Not seen on the portal for %(num)d days",
            days,
        )
    return ngettext(
        "%(num)d reminder not delivered this week",
        "%(num)d reminders not delivered this week",
        reason.count,
    )


def last_contact_text(row: read_model.Row) -> str:
    """“Last contact 2 days ago (phone), no answer”."""
    contact = row.last_contact
    if contact is None:
        return _("No contact recorded")
    days = (contact.at.astimezone(row.zone).date() - row.today).days
    return _(
        "Last contact %(when)s (%(channel)s), %(outcome)s",
        when=format_relative_days(days, _locale(row)),
        channel=contacts.CHANNEL_LABELS[contact.channel],
        outcome=contacts.OUTCOME_LABELS[contact.outcome],
    )


def next_action(row: read_model.Row) -> tuple[str, str]:
    """The one thing to do first for this row: its label and where it is done."""
    reason = row.first
    study_id = row.study_id
    schedule = url_for("schedule.staff_schedule", study_id=study_id)
    if reason.kind.startswith("alert_"):
        return _("Acknowledge the alert"), url_for(
            "staff.participant", study_id=study_id, _anchor="alerts-heading"
        )
    if reason.kind == "window_open":
        return _("Book the visit"), f"{schedule}#visit-{reason.visit_code}"
    if reason.kind in ("visit_today", "unmarked"):
        return _("Mark the visit"), f"{schedule}#visit-{reason.visit_code}"
    if reason.kind == "visit_tomorrow":
        return _("See the appointment"), f"{schedule}#visit-{reason.visit_code}"
    if reason.kind == "closing_today":
        return _("Enter answers with the participant"), url_for(
            "questionnaires.staff_overview", study_id=study_id
        )
    # Missed, inactive, undelivered: a call. No phone number is kept in the portal (the
    # site's file has it), so the participant's page is where the call starts.
    return _("Call"), url_for("staff.participant", study_id=study_id)


@workspace.get("")
@require("staff")
def worklist():
    """Whom to call today, and why: the staff landing page."""
    rows = read_model.worklist(
        visible_site_codes(current_user),
        clock.now(),
        current_app.config["PORTAL_WORKLIST_INACTIVE_DAYS"],
    )
    return render_template(
        "staff/worklist.html",
        rows=rows[:ROWS_SHOWN],
        total=len(rows),
        reason_text=reason_text,
        last_contact_text=last_contact_text,
        next_action=next_action,
        messages=get_flashed_messages(),
    )


def contact_page(error: PortalError | None = None):
    """The contact form of one participant (again, with its message, when refused)."""
    person = participant_of_visible_site((request.view_args or {})["study_id"], current_user)
    sent = request.form if error else {}
    page = render_template(
        "staff/contact.html",
        participant=person,
        channels=[(code, contacts.CHANNEL_LABELS[code]) for code in CHANNELS],
        outcomes=[(code, contacts.OUTCOME_LABELS[code]) for code in OUTCOMES],
        note_max=NOTE_MAX,
        sent=sent,
        next_url=local_path(
            sent.get("next") or request.args.get("next"),
            url_for("staff.participant", study_id=person.study_id),
        ),
        error=error,
    )
    return page, error.status if error else 200


@staff.get("/participants/<study_id>/contacts/new")
@require("staff")
def new_contact(study_id: str):
    return contact_page()


@staff.post("/participants/<study_id>/contacts")
@require("staff")
def record_contact(study_id: str):
    person = participant_of_visible_site(study_id, current_user)
    target = local_path(
        request.form.get("next"), url_for("staff.participant", study_id=person.study_id)
    )
    key = form_keys.sent_key()
    if form_keys.handled(key):
        return redirect(target, 303)
    contacts.record_contact(
        person,
        current_user,
        request.form.get("channel", ""),
        request.form.get("outcome", ""),
        request.form.get("note"),
    )
    db.session.commit()
    form_keys.remember(key, target)
    flash(_("Contact with %(study_id)s recorded.", study_id=person.study_id))
    return redirect(target, 303)
