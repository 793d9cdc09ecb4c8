"""The participant's home page, timeline and calendar; the coordinator's view of a schedule.

Load → authorise → act; one commit per request. Schedule errors answer 422 with the page (or
the htmx fragment) showing the message, and nothing saved.
"""

from __future__ import annotations

import datetime as datetime_module
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from babel import dates as babel_dates
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from htmx_flask import request

from patient_portal import clock, form_keys, timezones
from patient_portal.accounts.auth import participant_of_visible_site, require
from patient_portal.accounts.models import Participant
from patient_portal.errors import PortalError, handle_portal_error, rolled_back
from patient_portal.extensions import db, limiter
from patient_portal.i18n import (
    babel_locale,
    current_language,
    format_date,
    format_relative_days,
    format_time,
    viewer_locale_and_zone,
)
from patient_portal.origin import public_url
from patient_portal.protocol.services import Site, get_protocol
from patient_portal.schedule import services
from patient_portal.schedule.models import Visit
from patient_portal.schedule.services import TimelineEntry

bp = Blueprint("schedule", __name__)


# --- Sections other features add to the participant's home page -----------------------------


@dataclass(frozen=True)
class HomeSection:
    """A section under the next visit on the home page, from another feature.

    `context(participant, now)` returns the template's variables (as `section`), or None to
    leave the section out for that participant. create_app lists them in order.
    """

    template: str
    context: Callable[[Participant, datetime], dict | None]


# --- Presentation ---------------------------------------------------------------------------


# Translated when shown, one label at a time (a dict of gettext calls translated all six for
# each of a timeline's visits).
PARTICIPANT_STATE_LABELS = {
    "done": _l("Visit done"),
    "next": _l("Next visit"),
    "later": _l("Coming later"),
    "past": _l("Date passed"),
    # Cancelled and missed are worded neutrally and never give the coordinator's reason.
    "missed": _l("This visit did not take place"),
    "cancelled": _l("This visit will not take place"),
}
STAFF_STATUS_LABELS = {
    "planned": _l("Status: planned"),
    "completed": _l("Status: completed"),
    "missed": _l("Status: missed"),
    "cancelled": _l("Status: cancelled"),
}


def participant_state_label(state: str) -> str:
    return str(PARTICIPANT_STATE_LABELS[state])


def staff_status_label(status: str) -> str:
    return str(STAFF_STATUS_LABELS[status])


def format_skeleton(skeleton: str, value: date, locale: str) -> str:
    """A date in a CLDR skeleton (“MMMMd” → “August 12” / « 12 août »)."""
    return babel_dates.format_skeleton(skeleton, value, locale=babel_locale(locale))


def working_hours_text(site: Site, locale: str) -> str:
    """The site's working days and hours in words: “Monday to Friday, 8:30 AM to 4:30 PM”."""
    hours = site.working_hours
    names = babel_dates.get_day_names("wide", locale=babel_locale(locale))
    # Babel numbers weekdays from 0 = Monday; the protocol from 1 = Monday (ISO).
    days = [names[day - 1] for day in hours.days]
    if len(days) > 2 and list(hours.days) == list(range(hours.days[0], hours.days[-1] + 1)):
        span = _("%(first)s to %(last)s", first=days[0], last=days[-1])
    else:
        span = ", ".join(days)
    start = babel_dates.format_time(hours.start, format="short", locale=babel_locale(locale))
    end = babel_dates.format_time(hours.end, format="short", locale=babel_locale(locale))
    return _("%(days)s, %(start)s to %(end)s", days=span, start=start, end=end)


@dataclass(frozen=True)
class Formatter:
    """Dates and times of one site, in one language's formatting locale."""

    site: Site
    language: str

    @property
    def locale(self) -> str:
        return self.site.formatting_locale(self.language)

    def date(self, value: date) -> str:
        return format_date(value, self.locale, self.site.zone)

    def short_date(self, value: datetime_module.date) -> str:  # `date` is the method above
        return format_date(value, self.locale, self.site.zone, format="long")

    def appointment(self, visit: Visit) -> str | None:
        """“Tuesday, December 1, 2026 at 9:00 a.m.”; a repeated local time adds its offset."""
        if visit.scheduled_at is None:
            return None
        zone = self.site.zone
        text = _(
            "%(date)s at %(time)s",
            date=format_date(visit.scheduled_at, self.locale, zone),
            time=format_time(visit.scheduled_at, self.locale, zone),
        )
        if timezones.is_repeated_local_time(visit.scheduled_at, zone):
            text += f" ({timezones.utc_offset_label(visit.scheduled_at, zone)})"
        return text

    def window(self, visit: Visit) -> str:
        if visit.window_start == visit.window_end:
            return _("On %(date)s exactly", date=self.short_date(visit.window_start))
        return _(
            "Visit window: %(start)s to %(end)s",
            start=self.short_date(visit.window_start),
            end=self.short_date(visit.window_end),
        )

    def when(self, visit: Visit) -> str:
        """The appointment, else the protocol's day when it has no window, else the window:
        never a day guessed inside a window."""
        booked = self.appointment(visit)
        if booked:
            return booked
        if visit.window_start == visit.window_end:
            return _("On %(date)s", date=self.date(visit.window_start))
        return self.between(visit.window_start, visit.window_end)

    def between(self, start: datetime_module.date, end: datetime_module.date) -> str:
        """“Between August 12 and August 26, 2027”: the year once, unless the window spans two."""
        first = "MMMMd" if start.year == end.year else "yMMMMd"
        return _(
            "Between %(start)s and %(end)s",
            start=format_skeleton(first, start, self.locale),
            end=format_skeleton("yMMMMd", end, self.locale),
        )

    def hours(self) -> str:
        """The site's working hours: “Monday to Friday, 8:30 a.m. to 4:30 p.m.”."""
        return working_hours_text(self.site, self.locale)

    def relative(self, days: int) -> str:
        return format_relative_days(days, self.locale)


# --- Participant pages ----------------------------------------------------------------------


@bp.get("/home")
@require("participant")
def home():
    participant: Participant = current_user
    now = clock.now()
    site = services.site_of(participant)
    sections = []
    for section in current_app.extensions["home_sections"]:
        data = section.context(participant, now)
        if data is not None:
            sections.append((section.template, data))
    return render_template(
        "schedule/home.html",
        participant=participant,
        site=site,
        fmt=Formatter(site, current_language()),
        plan=services.what_next(participant, now),
        sections=sections,
    )


@bp.get("/contact")
def contact():
    """Whom to call: the participant's own site, or every site for anyone else (someone on a
    new phone, signed out, still needs the number)."""
    protocol = get_protocol()
    language = current_language()
    if current_user.is_authenticated and not current_user.is_staff:
        sites = [services.site_of(current_user)]
    else:
        sites = list(protocol.sites.values())
    return render_template(
        "schedule/contact.html",
        contacts=[Formatter(site, language) for site in sites],
        own_site=len(sites) == 1,
    )


@bp.get("/after-infusion")
@require("participant")
def after_infusion():
    """What to expect and when to call after an infusion: one page for everyone, whatever was
    given, so that nothing on it can reveal what a participant received (blinding)."""
    site = services.site_of(current_user)
    return render_template("schedule/after_infusion.html", site=site)


@bp.get("/visits")
@require("participant")
def timeline():
    participant: Participant = current_user
    site = services.site_of(participant)
    return render_template(
        "schedule/timeline.html",
        site=site,
        entries=services.timeline(participant, clock.now()),
        fmt=Formatter(site, current_language()),
        state_label=participant_state_label,
        kinds=get_protocol().visit_kinds,
    )


def _ics_response(body: bytes, filename: str) -> Response:
    response = Response(body, mimetype="text/calendar")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/visits/<code>.ics")
@require("participant")
def visit_ics(code: str):
    visit = services.visit_by_code(current_user, code)
    if visit is None or visit.status != "planned":
        abort(404)
    return _ics_response(services.visit_ics(visit), f"care-ssc-{code.lower()}.ics")


def _calendar_page(token: str | None = None, status: int = 200):
    participant: Participant = current_user
    feed = services.active_feed(participant)
    site = services.site_of(participant)
    feed_url = public_url("schedule.feed", token=token) if token else None
    return render_template(
        "schedule/calendar.html",
        feed=feed,
        feed_url=feed_url,
        webcal_url=("webcal://" + feed_url.split("://", 1)[1]) if feed_url else None,
        created_on=Formatter(site, current_language()).date(
            feed.created_at.astimezone(site.zone).date()
        )
        if feed
        else None,
    ), status


@bp.get("/visits/calendar")
@require("participant")
def calendar_settings():
    return _calendar_page()


@bp.post("/visits/calendar")
@require("participant")
def calendar_issue():
    token = services.issue_feed_token(current_user)
    db.session.commit()
    # The link is shown this once: only its hash is kept.
    return _calendar_page(token)


@bp.post("/visits/calendar/revoke")
@require("participant")
def calendar_revoke():
    services.revoke_feed(current_user)
    db.session.commit()
    flash(_("Your calendar link is turned off. Calendars that used it will stop updating."))
    return redirect(url_for("schedule.calendar_settings"), 303)


@bp.get("/calendar/<token>.ics")
@limiter.limit("60/minute")
def feed(token: str):
    """The private subscription feed: public, the token in the path is the only key."""
    participant = services.participant_for_feed_token(token)
    if participant is None:
        abort(404)
    return _ics_response(services.feed_ics(participant), "care-ssc.ics")


# --- Coordinator pages ----------------------------------------------------------------------


def _staff_context(participant: Participant, **extra) -> dict:
    site = services.site_of(participant)
    entries = services.timeline(participant, clock.now())
    return {
        "participant": participant,
        "site": site,
        "entries": entries,
        "fmt": Formatter(site, current_language()),
        "status_label": staff_status_label,
        "statuses": services.MARKABLE_STATUSES,
        "messages": get_flashed_messages(),
        "errors": {},
        "form": {},
        "default_hour": get_protocol().default_visit_hour,
        **extra,
    }


def _staff_page(participant: Participant, status: int = 200, **extra):
    return render_template("schedule/staff.html", **_staff_context(participant, **extra)), status


def _staff_visit_answer(participant: Participant, visit: Visit, error: PortalError | None):
    """After a visit form: the visit's fragment for htmx, else the page (or a redirect)."""
    status = 422 if error else 200
    if error is None and not (request.htmx and not request.htmx.boosted):
        flash(_("Saved."))
        return redirect(
            url_for("schedule.staff_schedule", study_id=participant.study_id)
            + f"#visit-{visit.code}",
            303,
        )
    errors = {visit.code: error} if error else {}
    form = {visit.code: request.form} if error else {}
    if request.htmx and not request.htmx.boosted:
        context = _staff_context(participant, errors=errors, form=form)
        entry = next(e for e in context["entries"] if e.visit.code == visit.code)
        return render_template(
            "schedule/_staff_visit.html", entry=entry, saved=error is None, **context
        ), status
    return _staff_page(participant, status, errors=errors, form=form)


@bp.get("/staff/participants/<study_id>/schedule")
@require("staff")
def staff_schedule(study_id: str):
    participant = participant_of_visible_site(study_id, current_user)
    return _staff_page(participant)


@bp.errorhandler(PortalError)
def refused(error: PortalError):
    """A refused schedule form: its page (or the visit's fragment) again, with the message
    beside the field and what was typed kept."""
    rolled_back()
    args = request.view_args or {}
    if "study_id" not in args:
        return handle_portal_error(error)
    participant = participant_of_visible_site(args["study_id"], current_user)
    if "code" in args:
        return _staff_visit_answer(participant, _visit_of(participant, args["code"]), error)
    return _staff_page(participant, error.status, day0_error=error, day0_form=_day0_form())


def _day0_form() -> dict[str, str]:
    return {"day0": request.form.get("day0", ""), "reason": request.form.get("reason", "")}


@bp.post("/staff/participants/<study_id>/schedule/day0")
@require("staff")
def staff_day0(study_id: str):
    participant = participant_of_visible_site(study_id, current_user)
    form = _day0_form()
    new_day0 = services.parse_local_date(form["day0"], field="day0")
    if request.form.get("confirm") != "yes":
        moves = services.preview_day0_change(participant, new_day0)
        return _staff_page(participant, day0_preview=moves, day0_form=form, new_day0=new_day0)
    services.change_day0(participant, new_day0, form["reason"])
    db.session.commit()
    flash(_("Day 0 is saved and the visits are updated."))
    return redirect(url_for("schedule.staff_schedule", study_id=study_id), 303)


def _visit_of(participant: Participant, code: str) -> Visit:
    visit = services.visit_by_code(participant, code)
    if visit is None:
        abort(404)
    return visit


@bp.post("/staff/participants/<study_id>/visits/<code>/appointment")
@require("staff")
def staff_appointment(study_id: str, code: str):
    participant = participant_of_visible_site(study_id, current_user)
    visit = _visit_of(participant, code)
    key = form_keys.sent_key()
    if form_keys.handled(key):
        return _staff_visit_answer(participant, visit, None)
    day = services.parse_local_date(request.form.get("date"))
    # A date already past is usually a slip of the calendar: it is saved only once confirmed.
    if (
        day < timezones.local_today(visit.zone, clock.now())
        and request.form.get("confirm_past") != "yes"
    ):
        raise PortalError(
            _("This date is in the past. Please check it, then confirm it to save it."),
            422,
            field="confirm_past",
        )
    services.set_appointment(
        visit,
        day,
        services.parse_local_time(request.form.get("time")),
        request.form.get("notes_en"),
        request.form.get("notes_fr"),
        request.form.get("reason"),
    )
    db.session.commit()
    form_keys.remember(key, url_for("schedule.staff_schedule", study_id=study_id))
    return _staff_visit_answer(participant, visit, None)


@bp.post("/staff/participants/<study_id>/visits/<code>/status")
@require("staff")
def staff_status(study_id: str, code: str):
    participant = participant_of_visible_site(study_id, current_user)
    visit = _visit_of(participant, code)
    key = form_keys.sent_key()
    if form_keys.handled(key):
        return _staff_visit_answer(participant, visit, None)
    services.mark_visit(visit, request.form.get("status", ""), request.form.get("reason"))
    db.session.commit()
    form_keys.remember(key, url_for("schedule.staff_schedule", study_id=study_id))
    return _staff_visit_answer(participant, visit, None)


@bp.app_template_global()
def visit_name(entry: TimelineEntry) -> str:
    """The protocol's name of the visit in the page language."""
    return entry.definition.name[current_language()]


@bp.app_template_global()
def day_and_time(moment: datetime) -> str:
    """“Thursday, December 3, 2026 at 2:00 p.m.” on the signed-in person's site clock."""
    locale, zone = viewer_locale_and_zone()
    return _(
        "%(date)s at %(time)s",
        date=format_date(moment, locale, zone),
        time=format_time(moment, locale, zone),
    )


@bp.app_template_filter("phone_text")
def phone_text(number: str) -> str:
    """A phone number kept on one line where it fits: no-break spaces and hyphens."""
    return number.replace(" ", "\u00a0").replace("-", "\u2011")


@bp.app_template_filter("dialled")
def dialled(number: str) -> str:
    """The number a call button dials, of one the protocol may write as “15 / 112”."""
    return number.split("/")[0].strip()


@bp.app_template_filter("tel")
def tel(number: str) -> str:
    """The tel: address of a number as the protocol writes it (“15 / 112” calls 15)."""
    return "tel:" + "".join(c for c in dialled(number) if c.isdigit() or c == "+")
