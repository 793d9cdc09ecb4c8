"""Participants part-way through their year, answered through the real questionnaire services."""

from __future__ import annotations

from datetime import timedelta

import pytest

from patient_portal import clock
from patient_portal.demo import answer_due
from patient_portal.extensions import db
from patient_portal.planning import plan_year


@pytest.fixture
def in_year(app, make_participant):
    """in_year(site="JGH", days=40, habit="some") -> a participant `days` after day 0, planned,
    with the questionnaires due so far answered by habit ("all", "some", "none")."""

    def make(site: str = "JGH", days: int = 40, habit: str = "some", **fields):
        today = clock.now().date()
        participant = make_participant(site_code=site, day0=today - timedelta(days=days), **fields)
        plan_year(participant)
        answer_due(participant, habit, clock.now())
        db.session.commit()
        return participant

    return make


@pytest.fixture
def coordinator(make_staff):
    return make_staff(sites=["JGH"], language="en")


@pytest.fixture
def signed_in(client, sign_in, coordinator):
    """The client, signed in as a JGH coordinator (English)."""
    sign_in(client, coordinator)
    return client
