"""Schedule fixtures: a fixed "now" and participants with their visits planned."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from patient_portal.extensions import db
from patient_portal.schedule import services


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


@pytest.fixture
def planned(make_participant, now):
    """planned(day0=date(...), site_code="SLS", ...) -> a participant with every visit planned."""

    def make(**fields):
        participant = make_participant(**fields)
        services.plan_visits(participant)
        db.session.commit()
        return participant

    return make


@pytest.fixture
def in_request(app):
    """A request context, as the services run in: their messages are translated."""
    with app.test_request_context("/", headers={"Accept-Language": "en"}):
        yield
