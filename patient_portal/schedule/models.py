"""A participant's visits (from the protocol, with the coordinator's appointments) and the
private calendar feed that publishes them.

Visit dates are calendar dates in the site's wall-clock zone: "day 28" is a day on the wall
calendar in Montréal or Paris, whatever UTC says. Appointments are instants, stored in UTC.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from patient_portal import clock
from patient_portal.accounts.models import Participant
from patient_portal.db import UTCDateTime
from patient_portal.extensions import db
from patient_portal.protocol.services import get_protocol

VISIT_STATUSES = ("planned", "completed", "missed", "cancelled")


class Visit(db.Model):
    __tablename__ = "visit"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(sa.ForeignKey("participant.id"), index=True)
    code: Mapped[str] = mapped_column(sa.String(20))
    kind: Mapped[str] = mapped_column(sa.String(20))
    target_date: Mapped[date] = mapped_column(sa.Date)
    window_start: Mapped[date] = mapped_column(sa.Date)
    window_end: Mapped[date] = mapped_column(sa.Date)
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    notes_en: Mapped[str | None] = mapped_column(sa.Text)
    notes_fr: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(12), default="planned")
    status_reason: Mapped[str | None] = mapped_column(sa.Text)
    outside_window_reason: Mapped[str | None] = mapped_column(sa.Text)
    # Calendar apps only replace an event whose SEQUENCE went up; every change bumps it.
    sequence: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)

    participant: Mapped[Participant] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("participant_id", "code"),
        sa.CheckConstraint(
            "status IN ('planned', 'completed', 'missed', 'cancelled')", name="status"
        ),
        sa.CheckConstraint("window_start <= target_date", name="window_starts_before_target"),
        sa.CheckConstraint("target_date <= window_end", name="window_ends_after_target"),
    )

    @property
    def zone(self) -> ZoneInfo:
        """The site's zone: the visit's days are days on its wall calendar."""
        return get_protocol().site(self.participant.site_code).zone

    def notes(self, language: str) -> str | None:
        return self.notes_fr if language == "fr" else self.notes_en

    @property
    def outside_window(self) -> bool:
        if self.scheduled_at is None:
            return False
        local = self.scheduled_at.astimezone(self.zone).date()
        return not self.window_start <= local <= self.window_end


class CalendarFeed(db.Model):
    """A private subscription URL: the token is in the path, only its SHA-256 is stored."""

    __tablename__ = "calendar_feed"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(sa.ForeignKey("participant.id"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    participant: Mapped[Participant] = relationship()
