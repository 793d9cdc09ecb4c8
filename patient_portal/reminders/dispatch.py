"""Reminder use cases: planning from visits and questionnaires, preferences, dispatch, and the
log coordinators read.

Planning (`plan_reminders`, registered as a participant planner) is idempotent: it computes the
reminders the participant's visits, questionnaires and preferences call for within the horizon,
creates the missing ones, moves the ones whose moment moved and cancels those no longer wanted,
with one audit event per change. Times are computed on the site's wall clock (docs/time.md,
docs/reminders.md) and moved out of the participant's quiet hours.

Dispatch (`Dispatcher`) claims due rows in batches (FOR UPDATE SKIP LOCKED on PostgreSQL, a
conditional UPDATE on SQLite), sends outside any transaction, then records every attempt. Any
number of dispatchers may run at once; a row is claimed by exactly one.

Functions here flush, never commit, except the dispatcher, which owns its transactions.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import secrets
import socket
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _

from patient_portal import audit, clock
from patient_portal.accounts.models import Participant
from patient_portal.extensions import db
from patient_portal.i18n import format_date, format_time
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires.models import Assignment
from patient_portal.reminders import channels as channels_module
from patient_portal.reminders.channels import Channel, Message, Outcome, Target
from patient_portal.reminders.models import (
    CHANNELS,
    KINDS,
    PushSubscription,
    Reminder,
    ReminderAttempt,
    ReminderPreference,
)
from patient_portal.schedule.models import Visit
from patient_portal.timezones import local_instant

log = logging.getLogger(__name__)

DEFAULT_QUIET = (21, 8)
# Quiet hours shorter than this or longer than that are a slip of the finger, not a choice.
QUIET_MIN_HOURS, QUIET_MAX_HOURS = 1, 14
# A reminder this late is pointless: skipped, never sent late.
MAX_LATENESS = timedelta(hours=3)
# When a reminder cannot wait for the end of quiet hours, it goes this long before they start.
BEFORE_QUIET = timedelta(hours=1)
RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=1)
# A row left "sending" this long belongs to a dispatcher that stopped mid-way.
STALE_CLAIM = timedelta(minutes=15)
BATCH_SIZE = 200
EMAIL_MAX = 254
# Deliberately simple: one @, a dot in the domain, no spaces. The SMTP server has the last word.
EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}$")
PUSH_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


class ReminderError(ValueError):
    """Bad input from the preferences page; the message is translated and safe to show."""

    status = 422

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


# --- Preferences ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Preferences:
    channels: dict[str, tuple[str, ...]]
    quiet: tuple[int, int] | None
    has_email: bool


def _preference_row(participant: Participant) -> ReminderPreference | None:
    return db.session.get(ReminderPreference, participant.id)


def preferences_of(participant: Participant, row: ReminderPreference | None = None) -> Preferences:
    """The participant's choices, or the defaults: every channel, quiet from 21:00 to 08:00."""
    row = row if row is not None else _preference_row(participant)
    if row is None:
        return Preferences({kind: CHANNELS for kind in KINDS}, DEFAULT_QUIET, False)
    stored = row.channels or {}
    chosen = {kind: tuple(c for c in CHANNELS if c in stored.get(kind, CHANNELS)) for kind in KINDS}
    quiet = None if row.quiet_start is None else (row.quiet_start, row.quiet_end)
    return Preferences(chosen, quiet, row.email_encrypted is not None)


def _ensure_row(participant: Participant) -> ReminderPreference:
    row = _preference_row(participant)
    if row is None:
        row = ReminderPreference(
            participant_id=participant.id,
            channels={kind: list(CHANNELS) for kind in KINDS},
            quiet_start=DEFAULT_QUIET[0],
            quiet_end=DEFAULT_QUIET[1],
            updated_at=clock.now(),
        )
        db.session.add(row)
    return row


def parse_quiet_hours(enabled: bool, start: str | None, end: str | None) -> tuple[int, int] | None:
    """Quiet hours from the page's choices, or ReminderError naming what makes no sense."""
    if not enabled:
        return None
    try:
        start_hour, end_hour = int(start or ""), int(end or "")
    except ValueError:
        raise ReminderError(_("Please choose the hours from the lists."), "quiet") from None
    if not (0 <= start_hour <= 23 and 0 <= end_hour <= 23):
        raise ReminderError(_("Please choose the hours from the lists."), "quiet")
    length = (end_hour - start_hour) % 24
    if not QUIET_MIN_HOURS <= length <= QUIET_MAX_HOURS:
        raise ReminderError(
            _(
                "Quiet hours must last between %(min)s and %(max)s hours.",
                min=QUIET_MIN_HOURS,
                max=QUIET_MAX_HOURS,
            ),
            "quiet",
        )
    return start_hour, end_hour


def save_preferences(
    participant: Participant, channels: dict[str, list[str]], quiet: tuple[int, int] | None
) -> bool:
    """Store channels per kind and quiet hours (audited), then re-plan; True if anything changed."""
    unknown = [c for chosen in channels.values() for c in chosen if c not in CHANNELS]
    if unknown or any(kind not in KINDS for kind in channels):
        raise ReminderError(_("Please choose among the channels shown."), "channels")
    row = _ensure_row(participant)
    before = {"channels": row.channels, "quiet": [row.quiet_start, row.quiet_end]}
    row.channels = {kind: [c for c in CHANNELS if c in channels.get(kind, [])] for kind in KINDS}
    row.quiet_start, row.quiet_end = quiet if quiet else (None, None)
    after = {"channels": row.channels, "quiet": [row.quiet_start, row.quiet_end]}
    if before == after:
        return False
    row.updated_at = clock.now()
    db.session.flush()
    audit.record(
        "reminder_preferences.changed", "participant", participant.id, before=before, after=after
    )
    plan_reminders(participant)
    return True


def smtp_configured() -> bool:
    return bool(current_app.config.get("PORTAL_SMTP_HOST"))


def email_of(participant: Participant) -> str | None:
    """The participant's decrypted address, for the page and the e-mail channel only."""
    row = _preference_row(participant)
    return channels_module.decrypt_contact(current_app, row.email_encrypted if row else None)


def set_email(participant: Participant, address: str | None) -> bool:
    """Set, change or remove (empty) the optional address, encrypted at rest; audited without
    the address itself. True if it changed."""
    address = (address or "").strip()
    if address and (len(address) > EMAIL_MAX or not EMAIL_PATTERN.match(address)):
        raise ReminderError(
            _("Please enter a valid e-mail address, like name@example.org."), "email"
        )
    if address == (email_of(participant) or ""):
        return False
    row = _ensure_row(participant)
    had = row.email_encrypted is not None
    row.email_encrypted = channels_module.encrypt_contact(current_app, address) if address else None
    row.updated_at = clock.now()
    db.session.flush()
    audit.record(
        "reminder_email.changed",
        "participant",
        participant.id,
        before={"email": "set" if had else None},
        after={"email": "set" if address else None},
    )
    plan_reminders(participant)
    return True


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _check_subscription(data: object) -> tuple[str, str, str]:
    """(endpoint, p256dh, auth) from a browser's PushSubscription JSON, or ReminderError."""
    refused = ReminderError(
        _("This phone sent notification details the portal cannot use. Please try again."),
        "push",
    )
    if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
        raise refused
    endpoint, keys = data.get("endpoint"), data["keys"]
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    if not all(isinstance(v, str) for v in (endpoint, p256dh, auth)) or len(endpoint) > 2000:
        raise refused
    parts = urlsplit(endpoint)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    production = current_app.config.get("PORTAL_ENV") == "production"
    if not parts.hostname or not (
        parts.scheme == "https" or (parts.scheme == "http" and local and not production)
    ):
        raise refused
    if not (PUSH_KEY_PATTERN.match(p256dh) and PUSH_KEY_PATTERN.match(auth)):
        raise refused
    try:
        point, secret = _b64url_decode(p256dh), _b64url_decode(auth)
    except ValueError:
        raise refused from None
    if len(point) != 65 or point[0] != 4 or len(secret) != 16:
        raise refused
    return endpoint, p256dh, auth


def add_subscription(
    participant: Participant, data: object, user_agent: str = ""
) -> PushSubscription:
    """Keep a phone's push subscription (the same endpoint again updates it); audited; re-plans."""
    endpoint, p256dh, auth = _check_subscription(data)
    digest = hashlib.sha256(endpoint.encode()).hexdigest()
    subscription = db.session.scalar(
        sa.select(PushSubscription).where(PushSubscription.endpoint_hash == digest)
    )
    if subscription is None:
        subscription = PushSubscription(
            endpoint=endpoint, endpoint_hash=digest, created_at=clock.now()
        )
        db.session.add(subscription)
    subscription.participant_id = participant.id
    subscription.p256dh, subscription.auth = p256dh, auth
    subscription.user_agent = (user_agent or "")[:200]
    db.session.flush()
    audit.record(
        "push_subscription.added",
        "push_subscription",
        subscription.id,
        after={"participant": participant.id},
    )
    plan_reminders(participant)
    return subscription


def remove_subscription(participant: Participant, endpoint: object) -> bool:
    """Forget this phone's subscription (turned off on the page); True if there was one."""
    if not isinstance(endpoint, str):
        return False
    digest = hashlib.sha256(endpoint.encode()).hexdigest()
    subscription = db.session.scalar(
        sa.select(PushSubscription).where(
            PushSubscription.endpoint_hash == digest,
            PushSubscription.participant_id == participant.id,
        )
    )
    if subscription is None:
        return False
    audit.record(
        "push_subscription.removed",
        "push_subscription",
        subscription.id,
        before={"participant": participant.id},
    )
    db.session.delete(subscription)
    db.session.flush()
    plan_reminders(participant)
    return True


def subscriptions_of(participant: Participant) -> list[PushSubscription]:
    return list(
        db.session.scalars(
            sa.select(PushSubscription)
            .where(PushSubscription.participant_id == participant.id)
            .order_by(PushSubscription.id)
        )
    )


def usable_channels(participant: Participant, prefs: Preferences | None = None) -> set[str]:
    """The channels that can reach this participant now: push needs a phone that accepted
    notifications, e-mail an address and an SMTP server."""
    prefs = prefs or preferences_of(participant)
    usable = {"inapp"}
    if db.session.scalar(
        sa.select(PushSubscription.id).where(PushSubscription.participant_id == participant.id)
    ):
        usable.add("push")
    if prefs.has_email and smtp_configured():
        usable.add("email")
    return usable


# --- Time -----------------------------------------------------------------------------------


def local_moment(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """The UTC instant of `hour`:00 on the site's wall clock that day.

    An hour that does not exist (spring forward) is read with the offset before the change,
    which lands an hour later on the clock (02:00 → 03:00); an hour that occurs twice (fall
    back) is its first occurrence (fold=0), as for appointments (docs/time.md).
    """
    return datetime.combine(day, time(hour), tzinfo=zone).replace(fold=0).astimezone(UTC)


def in_quiet_hours(moment: datetime, zone: ZoneInfo, quiet: tuple[int, int] | None) -> bool:
    if quiet is None:
        return False
    start, end = quiet
    hour = moment.astimezone(zone).hour
    return start <= hour < end if start < end else hour >= start or hour < end


def out_of_quiet_hours(
    moment: datetime, zone: ZoneInfo, quiet: tuple[int, int] | None, deadline: datetime
) -> datetime:
    """Move a moment that falls in quiet hours to their end; if that is too late (not before
    `deadline`), to an hour before they began instead."""
    if not in_quiet_hours(moment, zone, quiet):
        return moment
    start, end = quiet  # type: ignore[misc]
    local = moment.astimezone(zone)
    end_day = local.date() if local.hour < end else local.date() + timedelta(days=1)
    later = local_moment(end_day, end, zone)
    if later < deadline:
        return later
    start_day = local.date() if local.hour >= start else local.date() - timedelta(days=1)
    return local_moment(start_day, start, zone) - BEFORE_QUIET


# --- Planning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    kind: str
    subject: str
    channel: str
    due_at: datetime
    expires_at: datetime
    visit_id: int | None = None
    assignment_id: int | None = None


def _visit_day(visit: Visit, zone: ZoneInfo) -> date:
    return visit.scheduled_at.astimezone(zone).date() if visit.scheduled_at else visit.target_date


def _moments(participant: Participant, zone: ZoneInfo) -> list[tuple]:
    """(kind, subject, due, event moment, visit_id, assignment_id) before quiet hours and
    channels: what the visits and questionnaires call for."""
    config = current_app.config
    evening, morning = config["PORTAL_REMINDER_HOUR"], config["PORTAL_REMINDER_MORNING_HOUR"]
    moments = []
    visits = db.session.scalars(
        sa.select(Visit).where(Visit.participant_id == participant.id, Visit.status == "planned")
    )
    for visit in visits:
        day = _visit_day(visit, zone)
        # The visit's moment: its appointment, else the end of its day.
        event = visit.scheduled_at or local_instant(day + timedelta(days=1), zone)
        if visit.kind == "infusion":
            kind = "infusion"
            plan = [
                ("week-before", day - timedelta(days=7), evening),
                ("day-before", day - timedelta(days=1), evening),
                ("morning", day, morning),
            ]
        else:
            kind, plan = "visit", [("day-before", day - timedelta(days=1), evening)]
        for label, on, hour in plan:
            subject = f"visit:{visit.id}:{label}:{day.isoformat()}"
            moments.append((kind, subject, local_moment(on, hour, zone), event, visit.id, None))
    assignments = db.session.scalars(
        sa.select(Assignment).where(
            Assignment.participant_id == participant.id,
            Assignment.status.in_(("planned", "in_progress")),
        )
    )
    # A visit's questionnaires open together: one reminder for the lot, about the visit.
    groups: dict[tuple, list[Assignment]] = defaultdict(list)
    for assignment in assignments:
        key = ("visit", assignment.visit_id) if assignment.visit_id else ("one", assignment.id)
        groups[(key, assignment.opens_at, assignment.closes_at)].append(assignment)
    for ((scope, ident), opens_at, closes_at), members in groups.items():
        visit_id = ident if scope == "visit" else None
        assignment_id = None if scope == "visit" else ident
        prefix = f"questionnaire:{scope}:{ident}"
        opens_on = opens_at.astimezone(zone).date().isoformat()
        closes_on = closes_at.astimezone(zone).date().isoformat()
        if any(a.status == "planned" for a in members):
            moments.append(
                (
                    "questionnaire",
                    f"{prefix}:opens:{opens_on}",
                    opens_at,
                    closes_at,
                    visit_id,
                    assignment_id,
                )
            )
        moments.append(
            (
                "questionnaire",
                f"{prefix}:closes:{closes_on}",
                closes_at - timedelta(hours=24),
                closes_at,
                visit_id,
                assignment_id,
            )
        )
    return moments


def wanted_reminders(participant: Participant, now: datetime) -> list[Planned]:
    """Every reminder the participant should have that falls due between now and the horizon."""
    if participant.status == "withdrawn":
        return []
    zone = get_protocol().site(participant.site_code).zone
    prefs = preferences_of(participant)
    usable = usable_channels(participant, prefs)
    horizon = now + timedelta(days=current_app.config["PORTAL_REMINDER_HORIZON_DAYS"])
    wanted = []
    for kind, subject, due, event, visit_id, assignment_id in _moments(participant, zone):
        due = out_of_quiet_hours(due, zone, prefs.quiet, event)
        expires = min(event, due + MAX_LATENESS)
        if not now < due < expires or due > horizon:
            continue
        for channel in prefs.channels[kind]:
            if channel in usable:
                wanted.append(
                    Planned(kind, subject, channel, due, expires, visit_id, assignment_id)
                )
    return wanted


def _insert_ignoring_duplicates(rows: list[dict]) -> None:
    """Insert planned rows; one a concurrent planner already inserted is left as it is."""
    if not rows:
        return
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    db.session.execute(
        insert(Reminder).on_conflict_do_nothing(
            index_elements=["participant_id", "kind", "subject", "channel"]
        ),
        rows,
    )


def plan_reminders(
    participant: Participant, actor: str | None = None, reason: str | None = None
) -> int:
    """Create, move or cancel the participant's planned reminders; idempotent and audited.

    A participant planner (app.extensions["participant_planners"]), so it runs after visits and
    questionnaires are planned, and again whenever they change. Reminders already sent, failed
    or skipped are history and never touched; one already due is left to the dispatcher, which
    checks again that it is still needed. Returns how many rows changed.
    """
    now = clock.now()
    wanted = {(p.kind, p.subject, p.channel): p for p in wanted_reminders(participant, now)}
    existing = {
        (r.kind, r.subject, r.channel): r
        for r in db.session.scalars(
            sa.select(Reminder).where(
                Reminder.participant_id == participant.id,
                Reminder.kind != "test",
                sa.or_(
                    Reminder.status.in_(("planned", "cancelled")),
                    Reminder.due_at >= now - timedelta(days=1),
                ),
            )
        )
    }
    created, moved, cancelled, revived = [], [], [], []
    for key, plan in wanted.items():
        row = existing.get(key)
        if row is None:
            created.append(plan)
        elif row.status == "cancelled":
            revived.append((row, plan))
        elif row.status == "planned" and (row.due_at, row.expires_at) != (
            plan.due_at,
            plan.expires_at,
        ):
            moved.append((row, plan))
    for key, row in existing.items():
        if row.status == "planned" and row.due_at > now and key not in wanted:
            cancelled.append(row)
    if not (created or moved or cancelled or revived):
        return 0
    if db.session.get_bind().dialect.name == "postgresql":
        # Two planners for one participant (a page and the dispatcher) take turns.
        db.session.execute(sa.select(sa.func.pg_advisory_xact_lock(7_230_413, participant.id)))
    _insert_ignoring_duplicates(
        [
            {
                "participant_id": participant.id,
                "kind": p.kind,
                "subject": p.subject,
                "channel": p.channel,
                "visit_id": p.visit_id,
                "assignment_id": p.assignment_id,
                "due_at": p.due_at,
                "expires_at": p.expires_at,
                "next_attempt_at": p.due_at,
                "status": "planned",
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
            for p in created
        ]
    )
    for row, plan in [*moved, *revived]:
        row.due_at = row.next_attempt_at = plan.due_at
        row.expires_at = plan.expires_at
        row.status, row.attempts, row.last_error = "planned", 0, None
        row.updated_at = now
    for row in cancelled:
        row.status, row.updated_at = "cancelled", now
    db.session.flush()

    def brief(items):
        return [{"subject": p.subject, "channel": p.channel, "due_at": p.due_at} for p in items]

    audit.record(
        "reminders.planned",
        "participant",
        participant.id,
        after={
            "created": brief(created),
            "moved": brief(plan for _row, plan in moved),
            "restored": brief(plan for _row, plan in revived),
            "cancelled": [{"subject": r.subject, "channel": r.channel} for r in cancelled],
        },
        actor=actor,
        reason=reason,
    )
    return len(created) + len(moved) + len(cancelled) + len(revived)


def cancel_reminders_for(participant: Participant, reason: str | None = None) -> int:
    """Cancel every planned reminder of the participant (withdrawal); audited. Returns how many."""
    rows = list(
        db.session.scalars(
            sa.select(Reminder).where(
                Reminder.participant_id == participant.id, Reminder.status == "planned"
            )
        )
    )
    if not rows:
        return 0
    now = clock.now()
    for row in rows:
        row.status, row.updated_at = "cancelled", now
    db.session.flush()
    audit.record(
        "reminders.cancelled",
        "participant",
        participant.id,
        after={"cancelled": len(rows)},
        reason=reason,
    )
    return len(rows)


def plan_everyone(batch: int = 200) -> int:
    """Plan every participant not withdrawn (the horizon moves with the clock); commits per
    batch. Returns how many reminder rows changed."""
    changed = 0
    ids = list(
        db.session.scalars(
            sa.select(Participant.id)
            .where(Participant.status != "withdrawn")
            .order_by(Participant.id)
        )
    )
    for start in range(0, len(ids), batch):
        for participant in db.session.scalars(
            sa.select(Participant).where(Participant.id.in_(ids[start : start + batch]))
        ):
            changed += plan_reminders(participant, actor="system:reminders")
        db.session.commit()
    return changed


# --- Reading --------------------------------------------------------------------------------


def upcoming_reminders(participant: Participant, limit: int = 20) -> list[Reminder]:
    """The participant's planned reminders, soonest first."""
    return list(
        db.session.scalars(
            sa.select(Reminder)
            .where(Reminder.participant_id == participant.id, Reminder.status == "planned")
            .order_by(Reminder.due_at, Reminder.id)
            .limit(limit)
        )
    )


def banner_reminders(participant: Participant, now: datetime) -> list[Reminder]:
    """In-app reminders delivered and still relevant (their moment has not passed)."""
    return list(
        db.session.scalars(
            sa.select(Reminder)
            .where(
                Reminder.participant_id == participant.id,
                Reminder.channel == "inapp",
                Reminder.status == "sent",
                Reminder.expires_at > now,
            )
            .order_by(Reminder.due_at.desc())
            .limit(3)
        )
    )


@dataclass(frozen=True)
class LogEntry:
    """One line of the coordinators' reminder log: no text, no address (blinding, privacy)."""

    at: datetime
    kind: str
    channel: str
    due_at: datetime
    outcome: str
    detail: str | None
    attempt: int
    reminder_status: str


def reminder_log(participant: Participant, limit: int = 100) -> list[LogEntry]:
    """Every attempt at the participant's reminders, newest first, for the coordinators."""
    rows = db.session.execute(
        sa.select(ReminderAttempt, Reminder)
        .join(Reminder, ReminderAttempt.reminder_id == Reminder.id)
        .where(ReminderAttempt.participant_id == participant.id)
        .order_by(ReminderAttempt.at.desc(), ReminderAttempt.id.desc())
        .limit(limit)
    )
    return [
        LogEntry(
            at=attempt.at,
            kind=reminder.kind,
            channel=reminder.channel,
            due_at=reminder.due_at,
            outcome=attempt.outcome,
            detail=attempt.detail,
            attempt=reminder.attempts,
            reminder_status=reminder.status,
        )
        for attempt, reminder in rows
    ]


@dataclass(frozen=True)
class FailedReminder:
    study_id: str
    site_code: str
    kind: str
    channel: str
    due_at: datetime
    attempts: int
    error: str | None


def failed_reminders(
    site_codes: list[str] | None, since: datetime | None = None
) -> list[FailedReminder]:
    """Reminders that could not be delivered (after their retries), newest first, at the given
    sites (None: every site, for admins); for the coordinators' follow-up."""
    query = (
        sa.select(Reminder, Participant)
        .join(Participant, Reminder.participant_id == Participant.id)
        .where(Reminder.status == "failed")
        .order_by(Reminder.due_at.desc())
        .limit(500)
    )
    if site_codes is not None:
        query = query.where(Participant.site_code.in_(site_codes))
    if since is not None:
        query = query.where(Reminder.due_at >= since)
    return [
        FailedReminder(
            participant.study_id,
            participant.site_code,
            reminder.kind,
            reminder.channel,
            reminder.due_at,
            reminder.attempts,
            reminder.last_error,
        )
        for reminder, participant in db.session.execute(query)
    ]


# --- Composing ------------------------------------------------------------------------------


def _path(endpoint: str, **values) -> str:
    """A path on the portal, inside or outside a request (the dispatcher has none)."""
    adapter = current_app.extensions.get("reminders_url_adapter")
    if adapter is None:
        adapter = current_app.extensions["reminders_url_adapter"] = current_app.url_map.bind(
            "localhost"
        )
    return adapter.build(endpoint, values)


def _label(subject: str) -> str:
    return subject.split(":")[-2] if subject.count(":") >= 3 else ""


def compose(
    reminder: Reminder,
    participant: Participant,
    visit: Visit | None,
    now: datetime,
    email: bool | None = None,
) -> Message:
    """The reminder's text in the participant's language: when and where, nothing else.

    Infusions are "study visits" here: a lock screen is no place for a treatment's name.
    """
    site = get_protocol().site(participant.site_code)
    zone, language = site.zone, participant.language
    locale = site.formatting_locale(language)
    label = _label(reminder.subject)
    with force_locale(language):
        place = site.name[language]
        if reminder.kind in ("infusion", "visit") and visit is not None:
            title = {
                "week-before": _("CARE-SSc study visit in 7 days"),
                "day-before": _("CARE-SSc study visit tomorrow"),
                "morning": _("CARE-SSc study visit today"),
            }.get(label, _("CARE-SSc study visit"))
            if visit.scheduled_at is not None:
                body = _(
                    "%(date)s at %(time)s, %(place)s.",
                    date=format_date(visit.scheduled_at, locale, zone),
                    time=format_time(visit.scheduled_at, locale, zone),
                    place=place,
                )
            else:
                body = _(
                    "%(date)s, %(place)s. Your study team will confirm the time.",
                    date=format_date(visit.target_date, locale, zone),
                    place=place,
                )
            path = _path("schedule.home")
        elif reminder.kind == "questionnaire":
            last_day = (reminder.expires_at - timedelta(seconds=1)).astimezone(zone).date()
            if label == "opens":
                title = _("A CARE-SSc questionnaire is open")
            else:
                title = _("A CARE-SSc questionnaire closes soon")
            body = _(
                "You can answer it until the end of %(date)s.",
                date=format_date(last_day, locale, zone),
            )
            path = (
                _path("questionnaires.start", assignment_id=reminder.assignment_id)
                if reminder.assignment_id
                else _path("questionnaires.index")
            )
        else:
            title = _("CARE-SSc test reminder")
            body = _("Reminders from the CARE-SSc study portal will reach you here.")
            path = _path("reminders.preferences")
    ttl = int((reminder.expires_at - now).total_seconds())
    message = Message(
        title=title,
        body=body,
        url=path,
        # Infusion or not, the phone only ever sees "visit".
        tag="care-ssc-visit" if reminder.kind == "infusion" else f"care-ssc-{reminder.kind}",
        subject_line=title,
        text="",
        html="",
        language=language,
        ttl=max(ttl, 60),
        reminder_id=reminder.id,
    )
    if email if email is not None else reminder.channel == "email":
        return with_email_parts(message)
    return message


def _email_texts(language: str) -> dict[str, str]:
    """The e-mail's fixed words in one language, translated once per app and language."""
    cache = current_app.extensions.setdefault("reminders_email_texts", {})
    if language not in cache:
        with force_locale(language):
            cache[language] = {
                "open": _("Open the CARE-SSc study portal"),
                "why": _(
                    "You receive this e-mail because you asked for reminders from the "
                    "CARE-SSc study portal."
                ),
                "change": _("Change my reminder settings"),
                "footer": _(
                    "You receive this e-mail because you asked for reminders from the CARE-SSc "
                    "study portal. To stop them, change your reminder settings: %(url)s",
                    url="{url}",
                ),
            }
    return cache[language]


def with_email_parts(message: Message) -> Message:
    """The message with its e-mail text and HTML parts, in its language."""
    origin = current_app.config["PORTAL_ORIGIN"]
    settings_url = origin + _path("reminders.preferences")
    link = origin + message.url
    texts = _email_texts(message.language)
    footer = texts["footer"].replace("{url}", settings_url)
    # The template alone, without the page context processors: it needs none of them.
    html = current_app.jinja_env.get_template("reminders/email.html").render(
        title=message.title,
        body=message.body,
        link=link,
        settings_url=settings_url,
        language=message.language,
        texts=texts,
    )
    text = f"{message.title}\n\n{message.body}\n\n{link}\n\n-- \n{footer}\n"
    return replace(message, text=text, html=html)


# --- Dispatch -------------------------------------------------------------------------------


def dispatcher_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, 8… minutes after the attempts so far, at most an hour."""
    return min(RETRY_BASE * (2 ** max(attempts - 1, 0)), RETRY_CAP)


@dataclass
class _Job:
    reminder: Reminder
    participant: Participant
    visit: Visit | None
    decision: str | None = None  # cancelled / skipped decided before sending, with the detail
    detail: str | None = None
    message: Message | None = None
    target: Target = field(default_factory=Target)
    quiet_until: datetime | None = None


@dataclass
class DispatchCounts:
    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, other: DispatchCounts) -> None:
        self.claimed += other.claimed
        for key, value in other.outcomes.items():
            self.outcomes[key] += value


class Dispatcher:
    """Claims due reminders in batches and sends each through its channel, exactly once."""

    def __init__(
        self,
        channels: dict[str, Channel] | None = None,
        name: str | None = None,
        batch_size: int = BATCH_SIZE,
    ):
        self.channels = (
            channels
            if channels is not None
            else channels_module.build_channels(current_app._get_current_object())
        )
        self.name = name or dispatcher_name()
        self.batch_size = batch_size
        self.max_attempts = current_app.config["PORTAL_REMINDER_MAX_ATTEMPTS"]

    # The claim is the only place where dispatchers meet.
    def claim(self, now: datetime, ids: list[int] | None = None) -> list[int]:
        """Mark up to a batch of due rows as ours and commit; returns their ids."""
        due = (
            sa.select(Reminder.id)
            .where(Reminder.status == "planned", Reminder.next_attempt_at <= now)
            .order_by(Reminder.next_attempt_at, Reminder.id)
            .limit(self.batch_size)
        )
        if ids is not None:
            due = due.where(Reminder.id.in_(ids))
        if db.session.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        # On SQLite one UPDATE runs alone under the database's write lock, and the repeated
        # status condition makes it a conditional claim: a row already taken is not matched.
        claimed = db.session.scalars(
            sa.update(Reminder)
            .where(Reminder.id.in_(due.scalar_subquery()), Reminder.status == "planned")
            .values(
                status="sending",
                claimed_by=self.name,
                claimed_at=now,
                attempts=Reminder.attempts + 1,
                updated_at=now,
            )
            .returning(Reminder.id)
            .execution_options(synchronize_session=False)
        ).all()
        db.session.commit()
        return list(claimed)

    def release_stale(self, now: datetime) -> int:
        """Rows left "sending" by a dispatcher that stopped: failed, not retried, since the
        message may have left before it stopped (never twice beats never late)."""
        stale = db.session.scalars(
            sa.select(Reminder).where(
                Reminder.status == "sending", Reminder.claimed_at < now - STALE_CLAIM
            )
        ).all()
        for row in stale:
            row.status, row.updated_at = "failed", now
            row.last_error = "dispatcher stopped while sending; not retried to avoid a duplicate"
            db.session.add(
                ReminderAttempt(
                    reminder_id=row.id,
                    participant_id=row.participant_id,
                    at=now,
                    outcome="failed",
                    detail=row.last_error,
                    dispatcher=self.name,
                )
            )
        db.session.commit()
        return len(stale)

    def _prepare(self, ids: list[int], now: datetime) -> list[_Job]:
        rows = db.session.execute(
            sa.select(Reminder, Participant)
            .join(Participant, Reminder.participant_id == Participant.id)
            .where(Reminder.id.in_(ids))
        ).all()
        visit_ids = {r.visit_id for r, _p in rows if r.visit_id}
        visits = (
            {v.id: v for v in db.session.scalars(sa.select(Visit).where(Visit.id.in_(visit_ids)))}
            if visit_ids
            else {}
        )
        assignment_ids = {r.assignment_id for r, _p in rows if r.assignment_id}
        assignment_status = (
            dict(
                db.session.execute(
                    sa.select(Assignment.id, Assignment.status).where(
                        Assignment.id.in_(assignment_ids)
                    )
                ).all()
            )
            if assignment_ids
            else {}
        )
        group_visits = {r.visit_id for r, _p in rows if r.kind == "questionnaire" and r.visit_id}
        open_groups = (
            set(
                db.session.scalars(
                    sa.select(Assignment.visit_id).where(
                        Assignment.visit_id.in_(group_visits),
                        Assignment.status.in_(("planned", "in_progress")),
                    )
                )
            )
            if group_visits
            else set()
        )
        participant_ids = {p.id for _r, p in rows}
        prefs = {
            row.participant_id: row
            for row in db.session.scalars(
                sa.select(ReminderPreference).where(
                    ReminderPreference.participant_id.in_(participant_ids)
                )
            )
        }
        subscriptions: dict[int, list] = defaultdict(list)
        if any(r.channel == "push" for r, _p in rows):
            for sub in db.session.scalars(
                sa.select(PushSubscription).where(
                    PushSubscription.participant_id.in_(participant_ids)
                )
            ):
                subscriptions[sub.participant_id].append(sub)
        jobs = []
        composed: dict[tuple, Message] = {}
        for reminder, participant in rows:
            job = _Job(reminder, participant, visits.get(reminder.visit_id))
            jobs.append(job)
            zone = get_protocol().site(participant.site_code).zone
            quiet = preferences_of(participant, prefs.get(participant.id)).quiet
            if reminder.kind == "questionnaire":
                still = (
                    assignment_status.get(reminder.assignment_id) in ("planned", "in_progress")
                    if reminder.assignment_id
                    else reminder.visit_id in open_groups
                )
            elif reminder.kind in ("infusion", "visit"):
                # The subject names the visit's day: a visit moved since is another reminder.
                still = (
                    job.visit is not None
                    and job.visit.status == "planned"
                    and reminder.subject.endswith(_visit_day(job.visit, zone).isoformat())
                )
            else:
                still = True
            if participant.status == "withdrawn":
                job.decision, job.detail = "cancelled", "participant withdrawn"
            elif not still:
                job.decision, job.detail = "cancelled", "no longer needed"
            elif now >= reminder.expires_at:
                job.decision, job.detail = "skipped", "its moment has passed"
            elif reminder.kind != "test" and in_quiet_hours(now, zone, quiet):
                later = out_of_quiet_hours(now, zone, quiet, reminder.expires_at)
                if now < later < reminder.expires_at:
                    job.quiet_until = later
                else:
                    job.decision, job.detail = "skipped", "quiet hours until its moment"
            if job.decision or job.quiet_until:
                continue
            if reminder.channel == "push":
                job.target.subscriptions = subscriptions.get(participant.id, [])
            elif reminder.channel == "email":
                row = prefs.get(participant.id)
                job.target.email = channels_module.decrypt_contact(
                    current_app, row.email_encrypted if row else None
                )
                if job.target.email is None:
                    job.decision, job.detail = "cancelled", "no e-mail address"
                    continue
            # A subject reads the same on every channel: composed once per batch.
            key = (participant.id, reminder.subject, reminder.kind)
            if key not in composed:
                composed[key] = compose(reminder, participant, job.visit, now, email=False)
            job.message = replace(composed[key], reminder_id=reminder.id)
            if reminder.channel == "email":
                job.message = with_email_parts(job.message)
        # Detached, they keep what was loaded while the channels work outside any transaction.
        for job in jobs:
            db.session.expunge(job.reminder)
            for subscription in job.target.subscriptions:
                if subscription in db.session:
                    db.session.expunge(subscription)
        return jobs

    def _record(self, jobs: list[_Job], outcomes: dict[int, Outcome], now: datetime) -> dict:
        updates, attempts, gone, reached = [], [], set(), set()
        counts: dict[str, int] = defaultdict(int)
        for job in jobs:
            reminder = job.reminder
            values = {"id": reminder.id, "updated_at": now, "claimed_by": None}
            if job.quiet_until:
                # Not an attempt: it waits for the end of quiet hours.
                values.update(
                    status="planned",
                    next_attempt_at=job.quiet_until,
                    attempts=reminder.attempts - 1,
                )
                counts["deferred"] += 1
                updates.append(values)
                continue
            if job.decision:
                outcome = Outcome(job.decision, job.detail)
            else:
                outcome = outcomes[reminder.id]
                gone.update(outcome.gone_subscription_ids)
                reached.update(outcome.reached_subscription_ids)
            status, logged = outcome.status, outcome.status
            if status == "sent":
                values.update(status="sent", sent_at=now, last_error=outcome.detail)
            elif status == "retry":
                retry_at = now + backoff(reminder.attempts)
                if reminder.attempts >= self.max_attempts:
                    status = logged = "failed"
                    values.update(status="failed", last_error=outcome.detail)
                elif retry_at >= reminder.expires_at:
                    values.update(status="skipped", last_error=outcome.detail)
                else:
                    values.update(
                        status="planned", next_attempt_at=retry_at, last_error=outcome.detail
                    )
            elif status == "gone":
                values.update(status="failed", last_error=outcome.detail)
            else:  # failed, skipped, cancelled
                values.update(status=status, last_error=outcome.detail)
            counts[logged] += 1
            updates.append(values)
            attempts.append(
                {
                    "reminder_id": reminder.id,
                    "participant_id": reminder.participant_id,
                    "at": now,
                    "outcome": logged,
                    "detail": (outcome.detail or "")[:300] or None,
                    "dispatcher": self.name,
                }
            )
        for values in updates:
            if values.get("last_error"):
                values["last_error"] = values["last_error"][:300]
        # Rows given the same values (most often: sent, now) are updated by one statement.
        by_values: dict[tuple, list[int]] = defaultdict(list)
        for values in updates:
            row_id = values.pop("id")
            by_values[tuple(sorted(values.items()))].append(row_id)
        for values, ids in by_values.items():
            db.session.execute(
                sa.update(Reminder)
                .where(Reminder.id.in_(ids))
                .values(dict(values))
                .execution_options(synchronize_session=False)
            )
        if attempts:
            db.session.execute(ReminderAttempt.__table__.insert(), attempts)
        if reached:
            db.session.execute(
                sa.update(PushSubscription)
                .where(PushSubscription.id.in_(reached))
                .values(last_success_at=now)
            )
        if gone:
            self._forget_subscriptions(gone, jobs)
        db.session.commit()
        return counts

    def _forget_subscriptions(self, gone: set[int], jobs: list[_Job]) -> None:
        """The push service said 404/410: that subscription will never work again."""
        owners = {
            sub.id: job.participant
            for job in jobs
            for sub in job.target.subscriptions
            if sub.id in gone
        }
        db.session.execute(sa.delete(PushSubscription).where(PushSubscription.id.in_(gone)))
        for sub_id in sorted(gone):
            audit.record(
                "push_subscription.expired",
                "push_subscription",
                sub_id,
                before={"participant": owners[sub_id].id} if sub_id in owners else None,
                actor="system:reminders",
            )
        db.session.flush()
        for participant in {p.id: p for p in owners.values()}.values():
            plan_reminders(participant, actor="system:reminders")

    def run_batch(self, ids: list[int] | None = None) -> DispatchCounts:
        """Claim one batch of due reminders (or the given ones if due), send, record."""
        now = clock.now()
        claimed = self.claim(now, ids)
        counts = DispatchCounts(claimed=len(claimed))
        if not claimed:
            return counts
        jobs = self._prepare(claimed, now)
        # Nothing is held open while channels talk to the outside world.
        db.session.commit()
        outcomes = {}
        for job in jobs:
            if job.message is None:
                continue
            channel = self.channels[job.reminder.channel]
            try:
                outcomes[job.reminder.id] = channel.send(job.message, job.target)
            except Exception as error:  # a channel bug must not lose the batch's other results
                log.exception("reminder %s: channel %s failed", job.reminder.id, channel.name)
                outcomes[job.reminder.id] = Outcome("retry", f"{type(error).__name__}")
        for key, value in self._record(jobs, outcomes, clock.now()).items():
            counts.outcomes[key] += value
        return counts

    def run_once(self) -> DispatchCounts:
        """One pass: release stale claims, then batches until nothing is due."""
        total = DispatchCounts()
        self.release_stale(clock.now())
        while True:
            counts = self.run_batch()
            total.add(counts)
            if counts.claimed < self.batch_size:
                return total


def send_test_reminder(participant: Participant, channel: str, dispatcher: Dispatcher) -> Outcome:
    """Create a test reminder on one channel and send it at once, through the dispatcher, so it
    is claimed, logged and never sent twice like any other."""
    if channel not in CHANNELS:
        raise ReminderError(_("Please choose among the channels shown."), "channel")
    if channel not in usable_channels(participant):
        message = {
            "push": _("Turn on notifications on this phone first."),
            "email": _("Add your e-mail address first."),
        }[channel]
        raise ReminderError(message, channel)
    now = clock.now()
    reminder = Reminder(
        participant_id=participant.id,
        kind="test",
        subject=f"test:{now.strftime('%Y%m%dT%H%M%S.%f')}:{secrets.token_hex(4)}",
        channel=channel,
        due_at=now,
        expires_at=now + timedelta(hours=1),
        next_attempt_at=now,
        status="planned",
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    db.session.add(reminder)
    db.session.flush()
    reminder_id = reminder.id
    audit.record("reminder.test_requested", "reminder", reminder_id, after={"channel": channel})
    db.session.commit()
    dispatcher.run_batch(ids=[reminder_id])
    row = db.session.get(Reminder, reminder_id)
    if row.status == "sent":
        return Outcome("sent")
    return Outcome("retry" if row.status == "planned" else "failed", row.last_error)
