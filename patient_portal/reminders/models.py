"""Reminders: planned rows, each attempt to send one, the participant's preferences and the
phones that accepted notifications.

A reminder is unique per (participant, kind, subject, channel): planning twice, or two
dispatchers at once, can never make a second one. Its text is composed when it is sent, from the
visit or questionnaire it is about, and says when and where only (DESIGN §2, lock screens).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from patient_portal import clock
from patient_portal.accounts.models import Participant
from patient_portal.db import UTCDateTime
from patient_portal.extensions import db

KINDS = ("infusion", "visit", "questionnaire")
# A test reminder is asked for from the preferences page; a new-device notice is sent when a
# passkey is registered from a replacement enrolment link. Neither is ever planned.
ALL_KINDS = (*KINDS, "test", "new_device")
CHANNELS = ("push", "email", "inapp")
STATUSES = ("planned", "sending", "sent", "failed", "skipped", "cancelled")
OUTCOMES = ("sent", "retry", "failed", "gone", "skipped", "cancelled")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Reminder(db.Model):
    __tablename__ = "reminder"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(sa.ForeignKey("participant.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    # What the reminder is about, with its date: "visit:12:day-before:2026-12-01". A visit moved
    # to another day is a new subject, so a reminder already sent for the old day stays as it was.
    subject: Mapped[str] = mapped_column(sa.String(80))
    channel: Mapped[str] = mapped_column(sa.String(8))
    visit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("visit.id"))
    assignment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("assignment.id"))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # After this instant the reminder is pointless (the visit started, the questionnaire closed,
    # or it is hours late): it is skipped, never sent late.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(sa.String(10), default="planned")
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_by: Mapped[str | None] = mapped_column(sa.String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(sa.String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)

    participant: Mapped[Participant] = relationship()

    @classmethod
    def due_now(
        cls, participant_id: int, kind: str, subject: str, channel: str, lifetime: timedelta
    ) -> Reminder:
        """A reminder to send at once (a test, a new-device notice), valid for `lifetime`."""
        now = clock.now()
        return cls(
            participant_id=participant_id,
            kind=kind,
            subject=subject,
            channel=channel,
            due_at=now,
            expires_at=now + lifetime,
            next_attempt_at=now,
            status="planned",
            attempts=0,
            created_at=now,
            updated_at=now,
        )

    __table_args__ = (
        sa.UniqueConstraint(
            "participant_id", "kind", "subject", "channel", name="uq_reminder_subject_channel"
        ),
        # The dispatcher's query: due rows in the order they fall due.
        sa.Index("ix_reminder_due", "status", "next_attempt_at"),
        sa.CheckConstraint(_in("kind", ALL_KINDS), name="kind"),
        sa.CheckConstraint(_in("channel", CHANNELS), name="channel"),
        sa.CheckConstraint(_in("status", STATUSES), name="status"),
    )


class ReminderAttempt(db.Model):
    """One try at sending a reminder (or the decision not to), for the coordinators' log."""

    __tablename__ = "reminder_attempt"

    id: Mapped[int] = mapped_column(primary_key=True)
    reminder_id: Mapped[int] = mapped_column(
        sa.ForeignKey("reminder.id", ondelete="CASCADE"), index=True
    )
    participant_id: Mapped[int] = mapped_column(sa.ForeignKey("participant.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    outcome: Mapped[str] = mapped_column(sa.String(10))
    # Technical detail only (an SMTP or HTTP status); never the reminder's text or an address.
    detail: Mapped[str | None] = mapped_column(sa.String(300))
    dispatcher: Mapped[str] = mapped_column(sa.String(64))

    reminder: Mapped[Reminder] = relationship()

    __table_args__ = (sa.CheckConstraint(_in("outcome", OUTCOMES), name="outcome"),)


class ReminderPreference(db.Model):
    """A participant's choices; a participant without a row has the defaults."""

    __tablename__ = "reminder_preference"

    participant_id: Mapped[int] = mapped_column(sa.ForeignKey("participant.id"), primary_key=True)
    # {"infusion": ["push", "email", "inapp"], "visit": [...], "questionnaire": [...]}
    channels: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    # Whole local hours; both None = no quiet hours. [start, end), across midnight when end < start.
    quiet_start: Mapped[int | None] = mapped_column(sa.SmallInteger)
    quiet_end: Mapped[int | None] = mapped_column(sa.SmallInteger)
    # Fernet token of the address (encrypted at rest, DESIGN §2); never exported.
    email_encrypted: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    # When its owner opened the link sent to the address; until then nothing is sent to it.
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)

    __table_args__ = (
        sa.CheckConstraint(
            "(quiet_start IS NULL AND quiet_end IS NULL) OR "
            "(quiet_start BETWEEN 0 AND 23 AND quiet_end BETWEEN 0 AND 23 "
            "AND quiet_start <> quiet_end)",
            name="quiet_hours",
        ),
    )


class PushSubscription(db.Model):
    """A browser's push endpoint and keys (RFC 8291); removed when the push service says 404/410."""

    __tablename__ = "push_subscription"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(sa.ForeignKey("participant.id"), index=True)
    endpoint: Mapped[str] = mapped_column(sa.Text)
    endpoint_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    p256dh: Mapped[str] = mapped_column(sa.String(120))
    auth: Mapped[str] = mapped_column(sa.String(60))
    user_agent: Mapped[str] = mapped_column(sa.String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
