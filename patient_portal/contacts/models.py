"""The study team's contact attempts: who tried to reach which participant, when, how, and
whether they got through. The next coordinator reads them before calling again."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from patient_portal import clock
from patient_portal.accounts.models import Participant, StaffUser
from patient_portal.db import UTCDateTime
from patient_portal.extensions import db

CHANNELS = ("phone", "email", "in_person")
OUTCOMES = ("reached", "no_answer", "message_left")
# A line for the next caller ("call after 17 h"), not a clinical note: those go in the file.
NOTE_MAX = 280


class ContactAttempt(db.Model):
    __tablename__ = "contact_attempt"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(sa.ForeignKey("participant.id"))
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff_user.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    channel: Mapped[str] = mapped_column(sa.String(10))
    outcome: Mapped[str] = mapped_column(sa.String(14))
    note: Mapped[str | None] = mapped_column(sa.String(NOTE_MAX))

    participant: Mapped[Participant] = relationship()
    staff: Mapped[StaffUser] = relationship()

    __table_args__ = (
        sa.CheckConstraint("channel IN ('phone', 'email', 'in_person')", name="channel"),
        sa.CheckConstraint("outcome IN ('reached', 'no_answer', 'message_left')", name="outcome"),
        # The worklist reads each participant's latest attempt.
        sa.Index("ix_contact_attempt_participant_at", "participant_id", "at"),
    )
