"""Which reminders a participant should have, and keeping their planned rows in step.

Planning (`plan_reminders`, part of `planning.plan_year` and re-run when the reminder
preferences change) is idempotent: it computes the reminders the participant's visits,
questionnaires and preferences call for within the horizon, creates the missing ones, moves the
ones whose moment moved and cancels those no longer wanted, with one audit event per change.
Times are computed on the site's wall clock (docs/time.md, docs/reminders.md) and moved out of
the participant's quiet hours.

Functions here flush, never commit, except `plan_everyone`, which commits per batch.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app

from patient_portal import audit, clock
from patient_portal.accounts.models import Participant
from patient_portal.extensions import db
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires.models import Assignment
from patient_portal.reminders.messages import Subject
from patient_portal.reminders.models import Reminder
from patient_portal.reminders.preferences import in_quiet_hours, preferences_of, usable_channels
from patient_portal.schedule.models import Visit
from patient_portal.timezones import local_instant

# A reminder this late is pointless: skipped, never sent late.
MAX_LATENESS = timedelta(hours=3)
# When a reminder cannot wait for the end of quiet hours, it goes this long before they start.
BEFORE_QUIET = timedelta(hours=1)
# A new-device notice waits out quiet hours and a mail server's outage for up to a week.
NEW_DEVICE_NOTICE_LIFETIME = timedelta(days=7)


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
    later = local_instant(end_day, zone, time(end))
    if later < deadline:
        return later
    start_day = local.date() if local.hour >= start else local.date() - timedelta(days=1)
    return local_instant(start_day, zone, time(start)) - BEFORE_QUIET


@dataclass(frozen=True)
class Planned:
    kind: str
    subject: str
    channel: str
    due_at: datetime
    expires_at: datetime
    visit_id: int | None = None
    assignment_id: int | None = None


def visit_day(visit: Visit, zone: ZoneInfo) -> date:
    """The visit's day on the site's calendar: its appointment's, else its target date."""
    return visit.scheduled_at.astimezone(zone).date() if visit.scheduled_at else visit.target_date


# (kind, subject, due, event moment, visit_id, assignment_id)
_Moment = tuple[str, str, datetime, datetime, int | None, int | None]


def _moments(participant: Participant, zone: ZoneInfo) -> list[_Moment]:
    """(kind, subject, due, event moment, visit_id, assignment_id) before quiet hours and
    channels: what the visits and questionnaires call for."""
    config = current_app.config
    evening, morning = config["PORTAL_REMINDER_HOUR"], config["PORTAL_REMINDER_MORNING_HOUR"]
    moments: list[_Moment] = []
    visits = db.session.scalars(
        sa.select(Visit).where(Visit.participant_id == participant.id, Visit.status == "planned")
    )
    for visit in visits:
        day = visit_day(visit, zone)
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
        for moment, on, hour in plan:
            subject = str(Subject("visit", str(visit.id), moment, day))
            due = local_instant(on, zone, time(hour))
            moments.append((kind, subject, due, event, visit.id, None))
    assignments = db.session.scalars(
        sa.select(Assignment).where(
            Assignment.participant_id == participant.id,
            Assignment.status.in_(("planned", "in_progress")),
        )
    )
    # A visit's questionnaires open together: one reminder for the lot, about the visit.
    groups: dict[tuple, list[Assignment]] = defaultdict(list)
    unscheduled = get_protocol().unscheduled
    for assignment in assignments:
        if unscheduled is not None and assignment.series_code == unscheduled.code:
            continue  # a symptom report: its author is answering it, nothing to remind
        key = ("visit", assignment.visit_id) if assignment.visit_id else ("one", assignment.id)
        groups[(key, assignment.opens_at, assignment.closes_at)].append(assignment)
    for ((scope, ident), opens_at, closes_at), members in groups.items():
        visit_id = ident if scope == "visit" else None
        assignment_id = None if scope == "visit" else ident
        ref = f"{scope}:{ident}"
        opens = Subject("questionnaire", ref, "opens", opens_at.astimezone(zone).date())
        closes = Subject("questionnaire", ref, "closes", closes_at.astimezone(zone).date())
        if any(a.status == "planned" for a in members):
            moments.append(
                (
                    "questionnaire",
                    str(opens),
                    opens_at,
                    closes_at,
                    visit_id,
                    assignment_id,
                )
            )
        if closes_at - timedelta(hours=24) <= opens_at:
            # Open a day or less (a diary day): "closes soon" would come with "opens".
            continue
        moments.append(
            (
                "questionnaire",
                str(closes),
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
    unique_key = ["participant_id", "kind", "subject", "channel"]
    statement: sa.Insert
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        statement = postgresql_insert(Reminder).on_conflict_do_nothing(index_elements=unique_key)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(Reminder).on_conflict_do_nothing(index_elements=unique_key)
    db.session.execute(statement, rows)


def plan_reminders(
    participant: Participant, actor: str | None = None, reason: str | None = None
) -> int:
    """Create, move or cancel the participant's planned reminders; idempotent and audited.

    Part of `planning.plan_year`, so it runs after visits and questionnaires are planned, and
    again whenever they or the participant's reminder preferences change. Reminders already sent, failed
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
        stream=participant.audit_stream,
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
        stream=participant.audit_stream,
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


def notify_new_device(participant: Participant, added_at: datetime) -> Reminder | None:
    """Tell the participant by e-mail, if they gave an address for reminders, that a passkey was
    added to their account from a replacement enrolment link; audited. The dispatcher sends it
    like any reminder (claimed once, logged, retried). Returns the row, or None without e-mail.

    Connected to `replacement_passkey_added`: such a link may have been used by someone else
    than the participant (a coordinator included), so the participant hears of it where that
    someone cannot answer in their place.
    """
    if "email" not in usable_channels(participant):
        return None
    reminder = Reminder.due_now(
        participant.id,
        "new_device",
        str(Subject("new_device", added_at.strftime("%Y%m%dT%H%M%S.%f"))),
        "email",
        NEW_DEVICE_NOTICE_LIFETIME,
    )
    db.session.add(reminder)
    db.session.flush()
    audit.record(
        "reminder.new_device_planned",
        "reminder",
        reminder.id,
        after={"channel": "email"},
        stream=participant.audit_stream,
    )
    return reminder


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
