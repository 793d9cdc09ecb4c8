"""Reminder fixtures: a fixed "now", participants planned at it, and the dispatcher."""

from __future__ import annotations

import sqlalchemy as sa

from patient_portal.extensions import db
from patient_portal.reminders.models import Reminder
from patient_portal.schedule.models import Visit


def reminders_of(participant, **filters) -> list[Reminder]:
    query = sa.select(Reminder).where(Reminder.participant_id == participant.id)
    for name, value in filters.items():
        query = query.where(getattr(Reminder, name) == value)
    return list(db.session.scalars(query.order_by(Reminder.due_at, Reminder.id)))


def visit_of(participant, code: str) -> Visit:
    return db.session.scalars(
        sa.select(Visit).where(Visit.participant_id == participant.id, Visit.code == code)
    ).one()
