"""Questionnaires given to a participant: assignments, their answers, the submission and alerts.

Only what cannot be derived is stored. An assignment's stored status is `planned`,
`in_progress`, `completed` or `withdrawn`; whether it is upcoming, open or missed follows from
its window and the clock (`Assignment.state`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from patient_portal import clock
from patient_portal.accounts.models import Participant, StaffUser
from patient_portal.db import UTCDateTime
from patient_portal.extensions import db

STORED_STATUSES = ("planned", "in_progress", "completed", "withdrawn")
STATES = ("upcoming", "open", "in_progress", "completed", "missed", "withdrawn")


def _visit_key_default(context) -> str | None:
    """The series code, or the code of the visit: for an insert that did not give it (the
    planners do)."""
    values = context.get_current_parameters()
    if values.get("series_code"):
        return values["series_code"]
    if values.get("visit_id") is None:
        return None
    return context.connection.scalar(
        sa.text("SELECT code FROM visit WHERE id = :id"), {"id": values["visit_id"]}
    )


class Assignment(db.Model):
    """One instrument to be answered by one participant, for a visit or a series occurrence."""

    __tablename__ = "assignment"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(sa.ForeignKey("participant.id"))
    visit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("visit.id"), index=True)
    series_code: Mapped[str | None] = mapped_column(sa.String(20))
    # The visit's code or the series code, as the dashboard filters by it ("M3", "WEEKLY"):
    # written once, since neither changes, so "closing soon at M3" is one index range and not a
    # look-up of the visit of every questionnaire closing soon (issue 19).
    visit_key: Mapped[str | None] = mapped_column(sa.String(20), default=_visit_key_default)
    occurrence: Mapped[int] = mapped_column(default=0)
    instrument_id: Mapped[str] = mapped_column(sa.String(64))
    instrument_version: Mapped[str] = mapped_column(sa.String(40))
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(sa.String(12), default="planned")
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)

    participant: Mapped[Participant] = relationship()
    answers: Mapped[list[Answer]] = relationship(
        back_populates="assignment", order_by="Answer.id", cascade="all, delete-orphan"
    )
    submission: Mapped[Submission | None] = relationship(back_populates="assignment")

    __table_args__ = (
        # The dashboard's lists (closing soon, just missed) walk closing times from now, in a
        # stable order among the many that close at the same midnight, and stop at the 50th.
        sa.Index("ix_assignment_closes_at", "closes_at", "id"),
        # A participant's questionnaires, and whether one of them is missed, from the index
        # alone: the dashboard's "missed" filter asks it of every participant (issue 19).
        sa.Index("ix_assignment_participant_state", "participant_id", "status", "closes_at"),
        # The questionnaires opened lately with what makes them open now, from the index alone:
        # the "open" filter reads a few weeks of openings, not the rows (issue 19).
        sa.Index("ix_assignment_opens_window", "opens_at", "closes_at", "status", "participant_id"),
        # One visit's questionnaires closing soon or just missed, from its own range (issue 19).
        sa.Index("ix_assignment_visit_closes", "visit_key", "closes_at"),
        sa.CheckConstraint(
            "status IN ('planned', 'in_progress', 'completed', 'withdrawn')", name="status"
        ),
        # For a visit, or for one occurrence of a series: never both, never neither.
        sa.CheckConstraint("(visit_id IS NULL) <> (series_code IS NULL)", name="visit_or_series"),
        sa.UniqueConstraint("visit_id", "instrument_id", name="uq_assignment_visit_instrument"),
        sa.UniqueConstraint(
            "participant_id",
            "series_code",
            "occurrence",
            "instrument_id",
            name="uq_assignment_series_occurrence",
        ),
    )

    def state(self, now: datetime, grace: timedelta) -> str:
        """upcoming, open, in_progress, completed, missed or withdrawn at `now`.

        One already started may still be finished during `grace` after closing; after that,
        or at closing for one never started, it is missed.
        """
        if self.status in ("completed", "withdrawn"):
            return self.status
        if now < self.opens_at:
            return "upcoming"
        if now < self.closes_at:
            return "in_progress" if self.status == "in_progress" else "open"
        if self.status == "in_progress" and now < self.closes_at + grace:
            return "in_progress"
        return "missed"


class Answer(db.Model):
    """The current answer to one item; every change is in the audit trail. None = cleared."""

    __tablename__ = "answer"

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(sa.ForeignKey("assignment.id"))
    item_id: Mapped[str] = mapped_column(sa.String(64))
    value: Mapped[Any | None] = mapped_column(sa.JSON)
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    entered_by_staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id"))

    assignment: Mapped[Assignment] = relationship(back_populates="answers")
    entered_by: Mapped[StaffUser | None] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("assignment_id", "item_id", name="uq_answer_assignment_item"),
    )


class Submission(db.Model):
    """The one submission of an assignment, with what it was scored with."""

    __tablename__ = "submission"

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(sa.ForeignKey("assignment.id"), unique=True)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    language: Mapped[str] = mapped_column(sa.String(2))
    instrument_version: Mapped[str] = mapped_column(sa.String(40))
    answers: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    scores: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    scorer_versions: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    entered_by_staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id"))

    assignment: Mapped[Assignment] = relationship(back_populates="submission")
    entered_by: Mapped[StaffUser | None] = relationship()

    __table_args__ = (sa.CheckConstraint("language IN ('fr', 'en')", name="language"),)


ALERT_OUTCOMES = ("called", "no_answer", "advised_emergency", "adverse_event", "no_action")


class Alert(db.Model):
    """A rule met by a participant's answers, for the site's coordinators to acknowledge.

    It keeps the answer that raised it (item and value, shown in each reader's language), its
    severity and the response target (`due_at`, in the site's working time); `notified_at`
    and `escalated_at` record the e-mails the dispatcher sent about it.
    """

    __tablename__ = "alert"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(sa.ForeignKey("participant.id"), index=True)
    source: Mapped[str] = mapped_column(sa.String(20), default="questionnaire")
    assignment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("assignment.id"))
    rule_id: Mapped[str] = mapped_column(sa.String(64))
    message_key: Mapped[str | None] = mapped_column(sa.String(120))
    severity: Mapped[str] = mapped_column(sa.String(8), default="routine", server_default="routine")
    item_id: Mapped[str | None] = mapped_column(sa.String(64))
    value: Mapped[Any | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id"))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(sa.String(24))
    note: Mapped[str | None] = mapped_column(sa.Text)

    participant: Mapped[Participant] = relationship()
    assignment: Mapped[Assignment | None] = relationship()
    acknowledged_by: Mapped[StaffUser | None] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("assignment_id", "rule_id", name="uq_alert_assignment_rule"),
        sa.CheckConstraint("severity IN ('urgent', 'routine')", name="severity"),
        sa.Index("ix_alert_open_due", "acknowledged_at", "due_at"),
    )
