"""Schedule fixtures: a fixed "now" and participants with their visits planned."""

from __future__ import annotations

import pytest

from patient_portal.extensions import db
from patient_portal.schedule import services


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
