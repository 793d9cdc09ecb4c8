"""Visit schedule use cases: planning from the protocol, day 0 changes, appointments, statuses,
what the participant sees next, and the calendar (.ics) they can subscribe to.

Dates are computed on the site's wall calendar (`America/Toronto`, `Europe/Paris`) and
appointments converted from the site's wall clock to UTC with zoneinfo; see docs/time.md.
Every function here flushes and never commits: the view commits once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import icalendar
import sqlalchemy as sa
from flask_babel import force_locale
from flask_babel import gettext as _

from patient_portal import audit, clock, signals
from patient_portal.accounts.models import Participant
from patient_portal.errors import PortalError
from patient_portal.extensions import db
from patient_portal.protocol.services import Site, VisitDefinition, get_protocol
from patient_portal.schedule.models import CalendarFeed, Visit
from patient_portal.security import token_digest
from patient_portal.timezones import local_today, parse_day, wall_clock_to_utc

# A day 0 further than this from today is a typing mistake, not a plan.
DAY0_LIMIT = timedelta(days=730)
NOTES_MAX = 1000
REASON_MAX = 1000
# The protocol does not say how long a visit lasts; calendars need an end.
VISIT_DURATION = timedelta(hours=1)
UID_DOMAIN = "care-ssc-portal"
PRODID = "-//CARE-SSc//Participant portal//EN"
MARKABLE_STATUSES = ("planned", "completed", "missed", "cancelled")


@dataclass(frozen=True)
class VisitMove:
    """A visit that a day 0 change moves (old_target is None for a visit not yet planned)."""

    code: str
    name: dict[str, str]
    old_target: date | None
    new_target: date
    new_window_start: date
    new_window_end: date
    clears_appointment: datetime | None


@dataclass(frozen=True)
class TimelineEntry:
    """A visit as the participant's pages show it."""

    visit: Visit
    definition: VisitDefinition
    state: str  # done | next | later | past | missed | cancelled
    local_date: date
    days_until: int

    @property
    def is_infusion(self) -> bool:
        return self.visit.kind == "infusion"


# --- Time -----------------------------------------------------------------------------------


def site_of(participant: Participant) -> Site:
    return get_protocol().site(participant.site_code)


# --- Input parsing --------------------------------------------------------------------------


def parse_local_date(text: str | None, field: str = "date") -> date:
    """A date typed as YYYY-MM-DD (what <input type=date> sends), or a 422 naming the field."""
    return parse_day(text, _("Please enter a valid date (year-month-day)."), field)


def parse_local_time(text: str | None, field: str = "time") -> time:
    """A time typed as HH:MM (what <input type=time> sends), or PortalError."""
    value = (text or "").strip()
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or len(value) not in (5, 8) or parsed.tzinfo is not None:
        raise PortalError(_("Please enter a valid time (hours:minutes)."), 422, field=field)
    return parsed.replace(second=0, microsecond=0)


def _clean_text(value: str | None, limit: int, field: str) -> str | None:
    value = (value or "").strip()
    if len(value) > limit:
        raise PortalError(
            _("Please keep this under %(count)s characters.", count=limit), 422, field=field
        )
    return value or None


# --- Planning -------------------------------------------------------------------------------


def _visit_dates(definition: VisitDefinition, day0: date) -> tuple[date, date, date]:
    target = day0 + timedelta(days=definition.day)
    return (
        target,
        target - timedelta(days=definition.window_before),
        target + timedelta(days=definition.window_after),
    )


def visits_of(participant: Participant) -> list[Visit]:
    """The participant's visits in protocol order."""
    order = {definition.code: i for i, definition in enumerate(get_protocol().visits)}
    visits = db.session.scalars(sa.select(Visit).where(Visit.participant_id == participant.id))
    return sorted(visits, key=lambda visit: (order.get(visit.code, len(order)), visit.id))


def _snapshot(visit: Visit) -> dict:
    return {
        "code": visit.code,
        "target_date": visit.target_date,
        "window_start": visit.window_start,
        "window_end": visit.window_end,
        "scheduled_at": visit.scheduled_at,
        "notes_en": visit.notes_en,
        "notes_fr": visit.notes_fr,
        "status": visit.status,
        "status_reason": visit.status_reason,
        "outside_window_reason": visit.outside_window_reason,
    }


def _touch(visit: Visit) -> None:
    visit.sequence = (visit.sequence or 0) + 1
    visit.updated_at = clock.now()


def plan_visits(participant: Participant, actor: str | None = None) -> list[Visit]:
    """Create the protocol's visits the participant does not have yet; idempotent.

    Nothing is planned without a day 0. Returns the visits created (none on a second call).
    """
    if participant.day0 is None:
        return []
    existing = {
        code
        for code in db.session.scalars(
            sa.select(Visit.code).where(Visit.participant_id == participant.id)
        )
    }
    now = clock.now()
    created = []
    for definition in get_protocol().visits:
        if definition.code in existing:
            continue
        target, start, end = _visit_dates(definition, participant.day0)
        visit = Visit(
            participant=participant,
            code=definition.code,
            kind=definition.kind,
            target_date=target,
            window_start=start,
            window_end=end,
            status="planned",
            sequence=0,
            created_at=now,
            updated_at=now,
        )
        db.session.add(visit)
        created.append(visit)
    if created:
        db.session.flush()
        audit.record(
            "visits.planned",
            "participant",
            participant.id,
            after={
                "day0": participant.day0,
                "visits": {v.code: v.target_date for v in created},
            },
            actor=actor,
            stream=participant.audit_stream,
        )
    return created


def _check_day0(new_day0: date, now: datetime, zone: ZoneInfo) -> None:
    today = local_today(zone, now)
    if abs(new_day0 - today) > DAY0_LIMIT:
        raise PortalError(
            _("Day 0 must be within two years of today. Please check the year."), 422, field="day0"
        )


def preview_day0_change(participant: Participant, new_day0: date) -> list[VisitMove]:
    """What a new day 0 would move: each visit not done whose target date changes."""
    _check_day0(new_day0, clock.now(), site_of(participant).zone)
    by_code = {visit.code: visit for visit in visits_of(participant)}
    moves = []
    for definition in get_protocol().visits:
        target, start, end = _visit_dates(definition, new_day0)
        visit = by_code.get(definition.code)
        if visit is not None and (visit.status != "planned" or visit.target_date == target):
            continue
        moves.append(
            VisitMove(
                code=definition.code,
                name=definition.name,
                old_target=visit.target_date if visit else None,
                new_target=target,
                new_window_start=start,
                new_window_end=end,
                clears_appointment=visit.scheduled_at if visit else None,
            )
        )
    return moves


def change_day0(participant: Participant, new_day0: date, reason: str | None) -> list[VisitMove]:
    """Set or change day 0 and recompute the planned visits; completed, missed and cancelled
    visits keep their dates. A moved visit loses its appointment, which was for the old date.
    """
    reason = _clean_text(reason, REASON_MAX, "reason")
    if participant.day0 is not None and not reason:
        raise PortalError(_("Please give the reason for changing day 0."), 422, field="reason")
    if new_day0 == participant.day0:
        raise PortalError(_("Day 0 is already this date."), 422, field="day0")
    moves = preview_day0_change(participant, new_day0)
    before = participant.day0
    participant.day0 = new_day0
    by_code = {visit.code: visit for visit in visits_of(participant)}
    for move in moves:
        visit = by_code.get(move.code)
        if visit is None:
            continue
        old = _snapshot(visit)
        visit.target_date = move.new_target
        visit.window_start = move.new_window_start
        visit.window_end = move.new_window_end
        visit.scheduled_at = None
        visit.outside_window_reason = None
        _touch(visit)
        audit.record(
            "visit.recomputed",
            "visit",
            visit.id,
            before=old,
            after=_snapshot(visit),
            reason=reason,
            stream=participant.audit_stream,
        )
    audit.record(
        "participant.day0_changed",
        "participant",
        participant.id,
        before={"day0": before},
        after={"day0": new_day0, "moved": {m.code: m.new_target for m in moves}},
        reason=reason,
        stream=participant.audit_stream,
    )
    db.session.flush()
    # Visits not planned yet, questionnaire windows and reminders follow the new day 0.
    signals.participant_changed.send(participant)
    return moves


# --- Appointments and statuses --------------------------------------------------------------


def set_appointment(
    visit: Visit,
    local_date: date,
    local_time: time,
    notes_en: str | None,
    notes_fr: str | None,
    reason: str | None,
) -> Visit:
    """Set or move the appointment of a planned visit, given on the site's wall clock.

    The local time is converted with `wall_clock_to_utc`: a time in the spring-forward gap is
    refused (NonexistentLocalTime); a time repeated at the fall-back change is the FIRST of the
    two occurrences (fold=0). A date outside the visit window needs a reason and is flagged.
    """
    if visit.status != "planned":
        raise PortalError(_("Only a planned visit can be given an appointment."), 422)
    zone = visit.zone
    scheduled_at = wall_clock_to_utc(local_date, local_time, zone)
    notes_en = _clean_text(notes_en, NOTES_MAX, "notes_en")
    notes_fr = _clean_text(notes_fr, NOTES_MAX, "notes_fr")
    reason = _clean_text(reason, REASON_MAX, "reason")
    outside = not visit.window_start <= local_date <= visit.window_end
    if outside and not reason:
        raise PortalError(
            _("This date is outside the visit window. Please give the reason."), 422, field="reason"
        )
    before = _snapshot(visit)
    visit.scheduled_at = scheduled_at
    visit.notes_en = notes_en
    visit.notes_fr = notes_fr
    visit.outside_window_reason = reason if outside else None
    _touch(visit)
    audit.record(
        "visit.appointment_set",
        "visit",
        visit.id,
        before=before,
        after=_snapshot(visit),
        reason=reason,
        stream=visit.participant.audit_stream,
    )
    db.session.flush()
    # What hangs on the appointment (its reminders) is re-planned.
    signals.participant_changed.send(visit.participant)
    return visit


def mark_visit(visit: Visit, status: str, reason: str | None) -> Visit:
    """Mark a visit completed, missed or cancelled, or back to planned to correct a mistake.

    A reason is required for every status but completed. A cancelled visit is shown to the
    participant with neutral wording and never with its reason (blinding).
    """
    if status not in MARKABLE_STATUSES:
        raise PortalError(_("Please choose what happened to this visit."), 422, field="status")
    reason = _clean_text(reason, REASON_MAX, "reason")
    if status != "completed" and not reason:
        raise PortalError(_("Please give the reason."), 422, field="reason")
    if status == visit.status:
        raise PortalError(_("The visit already has this status."), 422, field="status")
    before = _snapshot(visit)
    visit.status = status
    visit.status_reason = reason
    _touch(visit)
    audit.record(
        "visit.status_changed",
        "visit",
        visit.id,
        before=before,
        after=_snapshot(visit),
        reason=reason,
        stream=visit.participant.audit_stream,
    )
    db.session.flush()
    # A cancelled visit withdraws its questionnaires; undoing it brings them back.
    signals.participant_changed.send(visit.participant)
    return visit


# --- What the participant sees --------------------------------------------------------------


def visit_local_date(visit: Visit, zone: ZoneInfo) -> date:
    """The day the visit happens on the wall calendar: the appointment's, else the target."""
    if visit.scheduled_at is not None:
        return visit.scheduled_at.astimezone(zone).date()
    return visit.target_date


def _is_upcoming(visit: Visit, zone: ZoneInfo, today: date) -> bool:
    if visit.status != "planned":
        return False
    if visit.scheduled_at is not None:
        return visit_local_date(visit, zone) >= today
    return visit.window_end >= today


def timeline(
    participant: Participant, now: datetime, visits: list[Visit] | None = None
) -> list[TimelineEntry]:
    """Every visit in protocol order, each with its state for the participant; `visits` when
    the caller has loaded them already."""
    zone = site_of(participant).zone
    today = local_today(zone, now)
    protocol = get_protocol()
    if visits is None:
        visits = visits_of(participant)
    next_one = next_visit(participant, now, visits)
    entries = []
    for visit in visits:
        if visit.status == "completed":
            state = "done"
        elif visit.status in ("missed", "cancelled"):
            state = visit.status
        elif next_one is not None and visit.id == next_one.id:
            state = "next"
        elif _is_upcoming(visit, zone, today):
            state = "later"
        else:
            state = "past"
        local = visit_local_date(visit, zone)
        entries.append(
            TimelineEntry(
                visit=visit,
                definition=protocol.visit(visit.code),
                state=state,
                local_date=local,
                days_until=(local - today).days,
            )
        )
    return entries


def next_visit(
    participant: Participant, now: datetime, visits: list[Visit] | None = None
) -> Visit | None:
    """The first planned visit not yet past, by its day on the site's calendar; `visits` when
    the caller has loaded them already."""
    zone = site_of(participant).zone
    today = local_today(zone, now)
    if visits is None:
        visits = visits_of(participant)
    upcoming = [v for v in visits if _is_upcoming(v, zone, today)]
    if not upcoming:
        return None
    return min(
        upcoming,
        key=lambda v: (
            visit_local_date(v, zone),
            v.scheduled_at or datetime.max.replace(tzinfo=UTC),
        ),
    )


def visit_by_code(participant: Participant, code: str) -> Visit | None:
    return db.session.scalar(
        sa.select(Visit).where(Visit.participant_id == participant.id, Visit.code == code)
    )


# --- What next: the home page's answer ------------------------------------------------------

# How long the "after my infusion" page stays pinned to home: the days of the daily diary.
AFTER_INFUSION_DAYS = 7


@dataclass(frozen=True)
class Upcoming:
    """A visit ahead and how to say when it is.

    `moment`: today | tomorrow (its day is known and is that day), on_day (a known day later),
    to_book (its window is open and no date is booked: the team will call), window (its window
    opens later and no date is booked). A window is never turned into a guessed day.
    """

    entry: TimelineEntry
    moment: str
    day: date | None
    days_until: int | None

    @property
    def visit(self) -> Visit:
        return self.entry.visit


@dataclass(frozen=True)
class WhatNext:
    """What the participant's home page answers: the next visit, the next infusion when it is
    another visit, the infusion whose after-care page is pinned, or that the year is over."""

    next_visit: Upcoming | None
    next_infusion: Upcoming | None
    infused_on: date | None
    finished: bool
    has_visits: bool


def known_day(visit: Visit, zone: ZoneInfo) -> date | None:
    """The visit's day when it is known: its appointment's, the day it was marked done without
    one, or a protocol day with no window (day 0); None while only a window is known."""
    if visit.scheduled_at is not None:
        return visit.scheduled_at.astimezone(zone).date()
    if visit.status == "completed" or visit.window_start == visit.window_end:
        return visit.target_date
    return None


def _upcoming(entry: TimelineEntry, zone: ZoneInfo, today: date) -> Upcoming:
    visit = entry.visit
    day = known_day(visit, zone)
    if day is not None:
        days = (day - today).days
        moment = {0: "today", 1: "tomorrow"}.get(days, "on_day")
        return Upcoming(entry=entry, moment=moment, day=day, days_until=days)
    moment = "to_book" if visit.window_start <= today else "window"
    return Upcoming(entry=entry, moment=moment, day=None, days_until=None)


def last_infusion_day(
    participant: Participant, now: datetime, visits: list[Visit] | None = None
) -> date | None:
    """The day of an infusion given in the last AFTER_INFUSION_DAYS days (today included).

    Only the infusion visits' days count, never what was given: the page it pins is the same
    for every participant.
    """
    zone = site_of(participant).zone
    today = local_today(zone, now)
    days = [
        day
        for visit in (visits_of(participant) if visits is None else visits)
        if visit.kind == "infusion" and visit.status in ("planned", "completed")
        for day in [known_day(visit, zone)]
        if day is not None and 0 <= (today - day).days <= AFTER_INFUSION_DAYS
    ]
    return max(days, default=None)


def what_next(participant: Participant, now: datetime) -> WhatNext:
    """The next visit, the next infusion and the pinned after-infusion care, for home."""
    zone = site_of(participant).zone
    today = local_today(zone, now)
    visits = visits_of(participant)
    entries = timeline(participant, now, visits)
    ahead = [e for e in entries if e.state in ("next", "later")]
    first = next((e for e in entries if e.state == "next"), None)
    infusion = next((e for e in ahead if e.is_infusion), None)
    return WhatNext(
        next_visit=_upcoming(first, zone, today) if first else None,
        next_infusion=_upcoming(infusion, zone, today)
        if infusion is not None and infusion is not first
        else None,
        infused_on=last_infusion_day(participant, now, visits),
        finished=bool(entries) and not ahead,
        has_visits=bool(entries),
    )


# --- Calendar -------------------------------------------------------------------------------


def active_feed(participant: Participant) -> CalendarFeed | None:
    return db.session.scalar(
        sa.select(CalendarFeed).where(
            CalendarFeed.participant_id == participant.id, CalendarFeed.revoked_at.is_(None)
        )
    )


def issue_feed_token(participant: Participant) -> str:
    """A new private subscription token (any earlier one stops working); only its hash is kept."""
    revoke_feed(participant)
    token = secrets.token_urlsafe(32)
    feed = CalendarFeed(
        participant=participant, token_hash=token_digest(token), created_at=clock.now()
    )
    db.session.add(feed)
    db.session.flush()
    audit.record(
        "calendar_feed.issued",
        "calendar_feed",
        feed.id,
        after={"participant": participant.id},
        stream=participant.audit_stream,
    )
    return token


def revoke_feed(participant: Participant) -> bool:
    """Stop the participant's subscription URL; True if there was one."""
    feed = active_feed(participant)
    if feed is None:
        return False
    feed.revoked_at = clock.now()
    db.session.flush()
    audit.record(
        "calendar_feed.revoked",
        "calendar_feed",
        feed.id,
        before={"revoked_at": None},
        after={"revoked_at": feed.revoked_at},
        stream=participant.audit_stream,
    )
    return True


def participant_for_feed_token(token: str) -> Participant | None:
    """The owner of a live feed token, or None for an unknown or revoked one."""
    if not token or len(token) > 100:
        return None
    feed = db.session.scalar(
        sa.select(CalendarFeed).where(
            CalendarFeed.token_hash == token_digest(token), CalendarFeed.revoked_at.is_(None)
        )
    )
    if feed is None or not feed.participant.is_active:
        return None
    return feed.participant


def _calendar(participant: Participant, visits: list[Visit]) -> icalendar.Calendar:
    site = site_of(participant)
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    with force_locale(participant.language):
        summary = _("CARE-SSc study visit")
        to_confirm = _("CARE-SSc study visit (time to be confirmed)")
        description = _("Details are in the CARE-SSc study portal.")
        calendar.add("x-wr-calname", _("CARE-SSc study visits"))
    calendar.add("x-wr-timezone", site.timezone)
    # Calendar apps that honour these poll about four times a day.
    calendar.add("refresh-interval", timedelta(hours=6), parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", timedelta(hours=6))
    # The site's own VTIMEZONE, over the years the visits span only, keeps the file small.
    dates = [v.target_date for v in visits] or [clock.now().date()]
    calendar.add_component(
        icalendar.Timezone.from_tzinfo(
            site.zone,
            tzid=site.timezone,
            first_date=date(min(dates).year - 1, 1, 1),
            last_date=date(max(dates).year + 2, 1, 1),
        )
    )
    for visit in visits:
        event = icalendar.Event()
        event.add("uid", f"visit-{visit.id}@{UID_DOMAIN}")
        event.add("dtstamp", visit.updated_at)
        event.add("last-modified", visit.updated_at)
        event.add("created", visit.created_at)
        event.add("sequence", visit.sequence)
        event.add("location", site.address)
        event.add("description", description)
        event.add("transp", "OPAQUE")
        if visit.scheduled_at is not None:
            start = visit.scheduled_at.astimezone(site.zone)
            event.add("summary", summary)
            event.add("dtstart", start)
            event.add("dtend", (visit.scheduled_at + VISIT_DURATION).astimezone(site.zone))
        else:
            event.add("summary", to_confirm)
            event.add("dtstart", visit.target_date)
            event.add("dtend", visit.target_date + timedelta(days=1))
        event.add("status", _event_status(visit))
        calendar.add_component(event)
    return calendar


def _event_status(visit: Visit) -> str:
    """CANCELLED, CONFIRMED once an appointment is booked, TENTATIVE while only a window is."""
    if visit.status == "cancelled":
        return "CANCELLED"
    return "CONFIRMED" if visit.scheduled_at is not None else "TENTATIVE"


def visit_ics(visit: Visit) -> bytes:
    """One visit as an .ics file to add to a calendar."""
    return _calendar(visit.participant, [visit]).to_ical()


def feed_ics(participant: Participant) -> bytes:
    """The participant's subscription feed: every visit, cancelled ones marked CANCELLED."""
    return _calendar(participant, visits_of(participant)).to_ical()
