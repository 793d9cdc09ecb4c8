"""The coordinator's "Today" worklist: one row per participant of their sites who needs the
study team today, most urgent first, each with its reasons and the next thing to do.

Read in a fixed number of statements whatever the number of participants (one per kind of
reason, and one for the participants with their last sign-in and last contact): nothing is
loaded one row at a time. Days ("today", "tomorrow") are each site's wall-clock days.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from patient_portal.accounts.models import AuthSession, Participant
from patient_portal.contacts.models import ContactAttempt
from patient_portal.extensions import db
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires.models import Alert, Assignment
from patient_portal.questionnaires.states import state_condition
from patient_portal.reminders.models import Reminder
from patient_portal.schedule.models import Visit
from patient_portal.timezones import local_instant, local_today

# Most urgent first: the order in which reasons sort a row.
KINDS = (
    "alert_urgent",
    "alert_routine",
    "visit_today",
    "visit_tomorrow",
    "window_open",
    "unmarked",
    "closing_today",
    "missed",
    "inactive",
    "undelivered",
)
RANK = {kind: number for number, kind in enumerate(KINDS)}
# Withdrawn participants are asked nothing more; those who finished the study neither.
FOLLOWED = ("enrolled", "active")
# Questionnaires missed longer ago than this were followed up at the time, or never will be.
MISSED_LOOKBACK = timedelta(days=30)
UNDELIVERED_LOOKBACK = timedelta(days=7)


@dataclass(frozen=True)
class Reason:
    """Why a participant is on the list: its kind, what it is about, and how it sorts among
    reasons of the same kind (the oldest alert, the window closing soonest...)."""

    kind: str
    order: float = 0.0
    visit_code: str | None = None
    since: datetime | None = None
    due_at: datetime | None = None
    day: date | None = None
    count: int = 1


@dataclass(frozen=True)
class LastContact:
    at: datetime
    channel: str
    outcome: str


@dataclass
class Row:
    participant_id: int
    study_id: str
    site_code: str
    zone: ZoneInfo
    today: date
    last_seen: datetime | None
    last_contact: LastContact | None
    # Most urgent first: the first is what the row's main action is about.
    reasons: list[Reason] = field(default_factory=list)

    @property
    def first(self) -> Reason:
        return self.reasons[0]


@dataclass(frozen=True)
class SiteDays:
    """One site's today and the UTC instants that bound its days."""

    code: str
    zone: ZoneInfo
    today: date
    today_starts: datetime
    tomorrow_starts: datetime
    day_after_starts: datetime


def site_days(sites: list[str], now: datetime) -> list[SiteDays]:
    protocol = get_protocol()
    days = []
    for code in sites:
        zone = protocol.site(code).zone
        today = local_today(zone, now)
        days.append(
            SiteDays(
                code,
                zone,
                today,
                local_instant(today, zone),
                local_instant(today + timedelta(days=1), zone),
                local_instant(today + timedelta(days=2), zone),
            )
        )
    return days


def _per_site(days: list[SiteDays], condition) -> sa.ColumnElement[bool]:
    """A condition that depends on the site's day, written once per site."""
    return sa.or_(*[sa.and_(Participant.site_code == d.code, condition(d)) for d in days])


def _participants(sites: list[str]) -> list[sa.Row]:
    last_seen = (
        sa.select(
            AuthSession.participant_id.label("participant_id"),
            sa.func.max(AuthSession.last_seen_at).label("last_seen"),
        )
        .where(AuthSession.participant_id.is_not(None))
        .group_by(AuthSession.participant_id)
        .subquery()
    )
    latest = (
        sa.select(
            ContactAttempt.participant_id.label("participant_id"),
            sa.func.max(ContactAttempt.id).label("id"),
        )
        .group_by(ContactAttempt.participant_id)
        .subquery()
    )
    return list(
        db.session.execute(
            sa.select(
                Participant.id,
                Participant.study_id,
                Participant.site_code,
                Participant.created_at,
                last_seen.c.last_seen,
                ContactAttempt.at,
                ContactAttempt.channel,
                ContactAttempt.outcome,
            )
            .outerjoin(last_seen, last_seen.c.participant_id == Participant.id)
            .outerjoin(latest, latest.c.participant_id == Participant.id)
            .outerjoin(ContactAttempt, ContactAttempt.id == latest.c.id)
            .where(Participant.site_code.in_(sites), Participant.status.in_(FOLLOWED))
        )
    )


def _alert_reasons(sites: list[str]) -> dict[int, list[Reason]]:
    rows = db.session.execute(
        sa.select(Alert.participant_id, Alert.severity, Alert.created_at, Alert.due_at)
        .join(Participant, Participant.id == Alert.participant_id)
        .where(
            Alert.acknowledged_at.is_(None),
            Participant.site_code.in_(sites),
            Participant.status.in_(FOLLOWED),
        )
        .order_by(Alert.created_at, Alert.id)
    )
    found: dict[tuple[int, str], list] = {}
    for participant_id, severity, created_at, due_at in rows:
        found.setdefault((participant_id, severity), []).append((created_at, due_at))
    reasons: dict[int, list[Reason]] = {}
    for (participant_id, severity), alerts in found.items():
        oldest, due = alerts[0]
        reasons.setdefault(participant_id, []).append(
            Reason(
                f"alert_{severity}",
                order=oldest.timestamp(),
                since=oldest,
                due_at=due,
                count=len(alerts),
            )
        )
    return reasons


def _visit_reasons(days: list[SiteDays]) -> dict[int, list[Reason]]:
    # One broad condition for every site (a planned visit whose window has begun, or booked
    # before the day after tomorrow anywhere); each site's own days are applied below.
    latest_today = max(d.today for d in days)
    latest_day_after = max(d.day_after_starts for d in days)
    by_site = {d.code: d for d in days}
    rows = db.session.execute(
        sa.select(
            Visit.participant_id,
            Participant.site_code,
            Visit.code,
            Visit.window_start,
            Visit.window_end,
            Visit.scheduled_at,
        )
        .join(Participant, Participant.id == Visit.participant_id)
        .where(
            Visit.status == "planned",
            Participant.site_code.in_(list(by_site)),
            Participant.status.in_(FOLLOWED),
            sa.or_(
                Visit.window_start <= latest_today,
                Visit.scheduled_at < latest_day_after,
            ),
        )
        .order_by(Visit.target_date, Visit.id)
    )
    reasons: dict[int, list[Reason]] = {}
    for participant_id, site_code, code, window_start, window_end, scheduled_at in rows:
        reason = _visit_reason(by_site[site_code], code, window_start, window_end, scheduled_at)
        if reason is not None:
            reasons.setdefault(participant_id, []).append(reason)
    return reasons


def _visit_reason(
    d: SiteDays, code: str, window_start: date, window_end: date, scheduled_at: datetime | None
) -> Reason | None:
    """What a planned visit asks of the team today at its site, if anything."""
    if scheduled_at is not None:
        if scheduled_at >= d.day_after_starts:
            return None  # booked for later (outside its window, with a reason, if need be)
        if scheduled_at >= d.tomorrow_starts:
            return Reason("visit_tomorrow", scheduled_at.timestamp(), code, since=scheduled_at)
        if scheduled_at >= d.today_starts:
            return Reason("visit_today", scheduled_at.timestamp(), code, since=scheduled_at)
        day = scheduled_at.astimezone(d.zone).date()
        return Reason("unmarked", day.toordinal(), code, since=scheduled_at, day=day)
    if window_end < d.today:
        return Reason("unmarked", window_end.toordinal(), code, day=window_end)
    if window_start <= d.today:
        return Reason("window_open", window_end.toordinal(), code, day=window_end)
    return None


def _closing_today(days: list[SiteDays], now: datetime) -> dict[int, list[Reason]]:
    """Questionnaires that can still be answered today and not tomorrow."""
    sites = [d.code for d in days]
    closing = db.session.execute(
        sa.select(Assignment.participant_id, sa.func.count(Assignment.id))
        .join(Participant, Participant.id == Assignment.participant_id)
        .where(
            Participant.site_code.in_(sites),
            Participant.status.in_(FOLLOWED),
            Assignment.closes_at > now,
            Assignment.closes_at <= max(d.tomorrow_starts for d in days),
            state_condition("open", now),
            _per_site(days, lambda d: Assignment.closes_at <= d.tomorrow_starts),
        )
        .group_by(Assignment.participant_id)
    )
    reasons: dict[int, list[Reason]] = {}
    for participant_id, count in closing:
        reasons.setdefault(participant_id, []).append(Reason("closing_today", count=count))
    return reasons


def _missed_closings(sites: list[str], now: datetime) -> dict[int, list[datetime]]:
    """When each questionnaire missed in the last month closed, per participant; those before
    the participant's last contact were talked about then, and are left out by the caller."""
    rows = db.session.execute(
        sa.select(Assignment.participant_id, Assignment.closes_at)
        .join(Participant, Participant.id == Assignment.participant_id)
        .where(
            Participant.site_code.in_(sites),
            Participant.status.in_(FOLLOWED),
            Assignment.closes_at > now - MISSED_LOOKBACK,
            Assignment.closes_at <= now,
            state_condition("missed", now),
        )
    )
    closings: dict[int, list[datetime]] = {}
    for participant_id, closes_at in rows:
        closings.setdefault(participant_id, []).append(closes_at)
    return closings


def _undelivered(sites: list[str], now: datetime) -> dict[int, int]:
    rows = db.session.execute(
        sa.select(Reminder.participant_id, sa.func.count(Reminder.id))
        .join(Participant, Participant.id == Reminder.participant_id)
        .where(
            Reminder.status == "failed",
            Reminder.updated_at >= now - UNDELIVERED_LOOKBACK,
            Participant.site_code.in_(sites),
            Participant.status.in_(FOLLOWED),
        )
        .group_by(Reminder.participant_id)
    )
    return {participant_id: count for participant_id, count in rows}


def worklist(sites: list[str], now: datetime, inactive_days: int) -> list[Row]:
    """Who needs the study team today at these sites, most urgent first."""
    days = site_days(sites, now)
    by_site = {d.code: d for d in days}
    found = [_alert_reasons(sites), _visit_reasons(days), _closing_today(days, now)]
    missed = _missed_closings(sites, now)
    undelivered = _undelivered(sites, now)
    inactive_since = now - timedelta(days=inactive_days)
    rows = []
    for person in _participants(sites):
        participant_id = person.id
        reasons = [reason for kind in found for reason in kind.get(participant_id, ())]
        since_contact = [
            closed
            for closed in missed.get(participant_id, ())
            if person.at is None or closed > person.at
        ]
        if since_contact:
            reasons.append(Reason("missed", count=len(since_contact)))
        last_seen = person.last_seen
        if person.created_at < inactive_since and (last_seen is None or last_seen < inactive_since):
            reasons.append(Reason("inactive", since=last_seen))
        if participant_id in undelivered:
            reasons.append(Reason("undelivered", count=undelivered[participant_id]))
        if not reasons:
            continue
        reasons.sort(key=_reason_key)
        d = by_site[person.site_code]
        contact = LastContact(person.at, person.channel, person.outcome) if person.at else None
        rows.append(
            Row(
                participant_id,
                person.study_id,
                person.site_code,
                d.zone,
                d.today,
                last_seen,
                contact,
                reasons,
            )
        )
    rows.sort(key=lambda row: (_reason_key(row.reasons[0]), row.study_id))
    return rows


def _reason_key(reason: Reason) -> tuple[int, float]:
    return RANK[reason.kind], reason.order
