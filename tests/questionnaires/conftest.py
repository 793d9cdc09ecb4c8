"""Fixtures for the questionnaire web layer: a clock to travel in time and planned participants."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from patient_portal.extensions import db
from patient_portal.questionnaires.models import Assignment
from patient_portal.questionnaires.services import plan_assignments
from patient_portal.schedule.services import plan_visits

DAY0 = date(2026, 12, 1)


@pytest.fixture
def clock(now):
    """The stopped clock, on the day after day 0 by default."""
    now.set(datetime(2026, 12, 2, 15, 0, tzinfo=UTC))
    return now


@pytest.fixture
def planned(make_participant, clock):
    """planned(**participant_fields) -> a participant with visits and assignments, committed."""

    def make(**fields):
        fields.setdefault("day0", DAY0)
        participant = make_participant(**fields)
        plan_visits(participant)
        plan_assignments(participant)
        db.session.commit()
        return participant

    return make


def weekly(participant, occurrence: int = 0) -> Assignment:
    return db.session.scalars(
        sa.select(Assignment).where(
            Assignment.participant_id == participant.id,
            Assignment.series_code == "WEEKLY",
            Assignment.occurrence == occurrence,
        )
    ).one()


# The weekly check-in answered with no alert, item by item, as a form would send it.
CALM_WEEK = {
    "raynaud": "3",
    "finger_ulcers": "0",
    "breathing": "2",
    "swallowing_reflux": "1",
    "bowel": "1",
    "pain": "4",
    "fatigue": "5",
    "skin_tightness": "3",
    "overall": "3",
    "anything_new": "no",
}
