"""Sending the reminders that are due, each exactly once, and the record of every attempt.

The `Dispatcher` claims due rows in batches (FOR UPDATE SKIP LOCKED on PostgreSQL, a
conditional UPDATE on SQLite), sends outside any transaction, then records every attempt. Any
number of dispatchers may run at once; a row is claimed by exactly one. It owns its
transactions; the reading functions at the end only read.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from flask import Flask, current_app
from flask_babel import gettext as _
from werkzeug.local import LocalProxy

from patient_portal import audit, clock
from patient_portal.accounts.models import Participant
from patient_portal.errors import PortalError
from patient_portal.extensions import db
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires.models import Assignment
from patient_portal.reminders import channels as channels_module
from patient_portal.reminders.alert_mail import send_alert_mail
from patient_portal.reminders.channels import Channel, Message, Outcome, Target
from patient_portal.reminders.messages import Subject, compose, with_email_parts
from patient_portal.reminders.models import (
    CHANNELS,
    PushSubscription,
    Reminder,
    ReminderAttempt,
    ReminderPreference,
)
from patient_portal.reminders.planning import out_of_quiet_hours, plan_reminders, visit_day
from patient_portal.reminders.preferences import in_quiet_hours, preferences_of, usable_channels
from patient_portal.schedule.models import Visit

log = logging.getLogger(__name__)

RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=1)
# A row left "sending" this long belongs to a dispatcher that stopped mid-way.
STALE_CLAIM = timedelta(minutes=15)
BATCH_SIZE = 200
# Sent whatever the hour: a test is asked for now, and a new device added to the account may be
# someone else's (an e-mail at night wakes nobody, and the participant can act sooner).
UNQUIET_KINDS = ("test", "new_device")


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
        channels: Mapping[str, Channel] | None = None,
        name: str | None = None,
        batch_size: int = BATCH_SIZE,
    ):
        self.channels = (
            channels
            if channels is not None
            else channels_module.build_channels(
                cast("LocalProxy[Flask]", current_app)._get_current_object()
            )
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
            visit = visits.get(reminder.visit_id) if reminder.visit_id is not None else None
            job = _Job(reminder, participant, visit)
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
                    and Subject.parse(reminder.subject).day == visit_day(job.visit, zone)
                )
            else:
                still = True
            if participant.status == "withdrawn":
                job.decision, job.detail = "cancelled", "participant withdrawn"
            elif not still:
                job.decision, job.detail = "cancelled", "no longer needed"
            elif now >= reminder.expires_at:
                job.decision, job.detail = "skipped", "its moment has passed"
            elif reminder.kind not in UNQUIET_KINDS and in_quiet_hours(now, zone, quiet):
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
                # Planned before the address changed, or an address nobody confirmed: nothing
                # goes to a mailbox its owner has not shown to be theirs.
                if row is None or row.email_verified_at is None:
                    job.decision, job.detail = "cancelled", "e-mail address not confirmed"
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
            values: dict[str, Any] = {"id": reminder.id, "updated_at": now, "claimed_by": None}
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
        self._show_banners(
            jobs, {values["id"] for values in updates if values.get("status") == "sent"}
        )
        # Rows given the same values (most often: sent, now) are updated by one statement.
        by_values: dict[tuple, list[int]] = defaultdict(list)
        for values in updates:
            row_id = values.pop("id")
            by_values[tuple(sorted(values.items()))].append(row_id)
        for pairs, ids in by_values.items():
            db.session.execute(
                sa.update(Reminder)
                .where(Reminder.id.in_(ids))
                .values(dict(pairs))
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

    def _show_banners(self, jobs: list[_Job], sent_ids: set[int]) -> None:
        """Tell each participant's home page how long its in-app reminders may show."""
        until: dict[int, datetime] = {}
        for job in jobs:
            reminder = job.reminder
            if reminder.channel == "inapp" and reminder.id in sent_ids:
                latest = until.get(reminder.participant_id)
                if latest is None or reminder.expires_at > latest:
                    until[reminder.participant_id] = reminder.expires_at
        # In id order: dispatchers running at once then lock participants in the same order
        # and cannot deadlock on each other's rows.
        for participant_id, moment in sorted(until.items()):
            db.session.execute(
                sa.update(Participant)
                .where(
                    Participant.id == participant_id,
                    sa.or_(
                        Participant.home_notices_until.is_(None),
                        Participant.home_notices_until < moment,
                    ),
                )
                .values(home_notices_until=moment)
                .execution_options(synchronize_session=False)
            )

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
                stream=owners[sub_id].audit_stream if sub_id in owners else None,
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
        """One pass: release stale claims, then batches until nothing is due, then the alert
        e-mails to staff (urgent alerts, escalations), so each goes out within one pass."""
        total = DispatchCounts()
        self.release_stale(clock.now())
        while True:
            counts = self.run_batch()
            total.add(counts)
            if counts.claimed < self.batch_size:
                break
        email = self.channels.get("email")
        if email is not None:
            for key, value in send_alert_mail(email).items():
                if value:
                    total.outcomes[key] += value
        return total


def send_test_reminder(participant: Participant, channel: str, dispatcher: Dispatcher) -> Outcome:
    """Create a test reminder on one channel and send it at once, through the dispatcher, so it
    is claimed, logged and never sent twice like any other."""
    # Shown beside the page's test buttons, whichever channel was refused.
    if channel not in CHANNELS:
        raise PortalError(_("Please choose among the channels shown."), 422, "test")
    if channel not in usable_channels(participant):
        message = {
            "push": _("Turn on notifications on this phone first."),
            "email": _("Add your e-mail address first."),
        }[channel]
        raise PortalError(message, 422, "test")
    now = clock.now()
    reminder = Reminder.due_now(
        participant.id,
        "test",
        str(Subject("test", f"{now.strftime('%Y%m%dT%H%M%S.%f')}:{secrets.token_hex(4)}")),
        channel,
        timedelta(hours=1),
    )
    db.session.add(reminder)
    db.session.flush()
    reminder_id = reminder.id
    audit.record(
        "reminder.test_requested",
        "reminder",
        reminder_id,
        after={"channel": channel},
        stream=participant.audit_stream,
    )
    db.session.commit()
    dispatcher.run_batch(ids=[reminder_id])
    row = db.session.get_one(Reminder, reminder_id)
    if row.status == "sent":
        return Outcome("sent")
    return Outcome("retry" if row.status == "planned" else "failed", row.last_error)


# --- What was sent -------------------------------------------------------------------------


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
