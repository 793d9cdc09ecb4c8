"""Reminder fixtures: a fixed "now", participants planned at it, and the dispatcher."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from patient_portal.extensions import db
from patient_portal.reminders.models import Reminder
from patient_portal.schedule.models import Visit


@pytest.fixture
def now(monkeypatch):
    """Travel to a moment: now(datetime) sets it; the default is 20 November 2026, 15:00 UTC."""
    moment = {"value": datetime(2026, 11, 20, 15, 0, tzinfo=UTC)}
    monkeypatch.setattr("patient_portal.db.utcnow", lambda: moment["value"])

    def travel(value: datetime | None = None) -> datetime:
        if value is not None:
            moment["value"] = value
        return moment["value"]

    return travel


def reminders_of(participant, **filters) -> list[Reminder]:
    query = sa.select(Reminder).where(Reminder.participant_id == participant.id)
    for name, value in filters.items():
        query = query.where(getattr(Reminder, name) == value)
    return list(db.session.scalars(query.order_by(Reminder.due_at, Reminder.id)))


def visit_of(participant, code: str) -> Visit:
    return db.session.scalar(
        sa.select(Visit).where(Visit.participant_id == participant.id, Visit.code == code)
    )
