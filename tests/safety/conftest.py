"""Fixtures for safety between visits: participants with an infusion done, the diary, reports."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from patient_portal.extensions import db
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires.models import Assignment
from patient_portal.schedule.models import Visit
from patient_portal.schedule.services import set_appointment

# Each site's zone and an infusion day whose diary week crosses that zone's spring DST change
# (Montréal 14 March 2027, Paris 28 March 2027).
DST_WEEKS = {"JGH": date(2027, 3, 11), "SLS": date(2027, 3, 25)}


@pytest.fixture
def infused(make_participant, now):
    """infused(site_code, day0, hour=10) -> a participant whose M0 infusion appointment is on
    day 0 at `hour` on the site's clock (the clock is then just after it), committed."""

    def make(site_code: str = "JGH", day0: date = date(2026, 12, 1), hour: int = 10, **fields):
        zone = get_protocol().site(site_code).zone
        now.set(datetime.combine(day0, time(8), tzinfo=zone).astimezone(UTC))
        participant = make_participant(site_code=site_code, day0=day0, **fields)
        visit = visit_of(participant, "M0")
        set_appointment(visit, day0, time(hour), None, None, None)
        db.session.commit()
        now.set(datetime.combine(day0, time(hour, 30), tzinfo=zone).astimezone(UTC))
        return participant

    return make


def visit_of(participant, code: str) -> Visit:
    return db.session.scalars(
        sa.select(Visit).where(Visit.participant_id == participant.id, Visit.code == code)
    ).one()


def diary(participant, visit_code: str = "M0") -> list[Assignment]:
    return list(
        db.session.scalars(
            sa.select(Assignment)
            .where(
                Assignment.participant_id == participant.id,
                Assignment.series_code == f"DIARY_{visit_code}",
            )
            .order_by(Assignment.occurrence)
        )
    )


def local(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)


def day(d: date, n: int) -> date:
    return d + timedelta(days=n)
