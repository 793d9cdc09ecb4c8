"""A questionnaire's state in SQL, beside `Assignment.state` which says the same in Python.

The dashboard, the participant record and the exports count and filter assignments by state in
the database; the rule is written here once, so it cannot drift from the model's. The dashboard
merges "in_progress" into "open": a questionnaire started and still finishable is open.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires.models import Assignment
from patient_portal.questionnaires.services import grace
from patient_portal.schedule.models import Visit

STATES = ("upcoming", "open", "completed", "missed", "withdrawn")


def state_expression(now: datetime) -> sa.ColumnElement[str]:
    """The assignment's state at `now`, in SQL, by the same rule as Assignment.state."""
    return sa.case(
        (Assignment.status == "completed", "completed"),
        (Assignment.status == "withdrawn", "withdrawn"),
        (Assignment.opens_at > now, "upcoming"),
        (Assignment.closes_at > now, "open"),
        (
            sa.and_(Assignment.status == "in_progress", Assignment.closes_at > now - grace()),
            "open",
        ),
        else_="missed",
    )


def state_condition(state: str, now: datetime) -> sa.ColumnElement[bool]:
    """`state_expression(now) == state` as plain comparisons of the stored status and times,
    which the planner can estimate and serve from the indexes on opening and closing times."""
    not_done = Assignment.status.in_(("planned", "in_progress"))
    started = Assignment.status == "in_progress"
    if state in ("completed", "withdrawn"):
        return Assignment.status == state
    if state == "upcoming":
        return sa.and_(not_done, Assignment.opens_at > now)
    if state == "open":
        return sa.and_(
            not_done,
            Assignment.opens_at <= now,
            # Implied (nothing stays open longer), and it bounds the search on opening times.
            Assignment.opens_at > now - longest_window(),
            sa.or_(
                Assignment.closes_at > now,
                sa.and_(started, Assignment.closes_at > now - grace()),
            ),
        )
    if state == "missed":
        return sa.or_(
            sa.and_(Assignment.status == "planned", Assignment.closes_at <= now),
            sa.and_(started, Assignment.closes_at <= now - grace()),
        )
    raise ValueError(state)


def longest_window() -> timedelta:
    """The longest time any questionnaire stays open, from the protocol (plus a day for DST).

    An assignment closing after T opened after T minus this, so a search on closing times can
    also bound the opening time, which is indexed.
    """
    protocol = get_protocol()
    spans = [
        protocol.open_days_before_target + visit.window_after + 1
        for visit in protocol.visits
        if visit.questionnaires
    ]
    spans += [series.open_days for series in protocol.series]
    spans += [1 for _series in protocol.visit_series]  # a diary day: one morning to the next
    if protocol.unscheduled is not None:
        spans.append(-(-protocol.unscheduled.open_hours // 24))
    return timedelta(days=max(spans, default=0) + 1)


def visit_key_expression() -> sa.ColumnElement[str]:
    """The visit code of a visit's questionnaire, or the series code of a series occurrence
    (the query must join `Visit` on the assignment's visit)."""
    return sa.func.coalesce(Visit.code, Assignment.series_code)
