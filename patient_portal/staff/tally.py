"""Recounting the completion tally from the assignments, to check it or to rebuild it.

The triggers keep the tally (see models.py); this recounts with the same hour arithmetic, for
`flask workspace tally` (a monitor's check that the dashboard's counts match the records) and
for the tests that hold the triggers to a recount after every kind of write.
"""

from __future__ import annotations

import sqlalchemy as sa

from patient_portal.accounts.models import Participant
from patient_portal.extensions import db
from patient_portal.questionnaires.models import Assignment
from patient_portal.schedule.models import Visit
from patient_portal.staff.models import CompletionTally

KEY = ("site_code", "visit_key", "instrument_id", "status", "opens_hour", "closes_hour")


def tally_hour(column) -> sa.ColumnElement[int]:
    """Whole hours since 1970 of a stored naive-UTC timestamp, exactly as the triggers count."""
    if db.session.get_bind().dialect.name == "postgresql":
        epoch = sa.func.extract("epoch", sa.func.date_trunc("hour", column))
        return sa.cast(sa.cast(epoch, sa.BigInteger) // 3600, sa.Integer)
    text = sa.func.substr(column, 1, 13).concat(":00:00")
    return sa.cast(sa.func.strftime("%s", text), sa.Integer) // 3600


def recount() -> sa.Select:
    """The tally as it should be: assignments grouped by the tally's key."""
    key = (
        Participant.site_code,
        sa.func.coalesce(Visit.code, Assignment.series_code),
        Assignment.instrument_id,
        Assignment.status,
        tally_hour(Assignment.opens_at),
        tally_hour(Assignment.closes_at),
    )
    return (
        sa.select(*key, sa.func.count().label("total"))
        .join(Participant, Participant.id == Assignment.participant_id)
        .outerjoin(Visit, Visit.id == Assignment.visit_id)
        .group_by(*key)
    )


def differences(limit: int = 20) -> tuple[int, list[tuple]]:
    """Keys where the tally and a recount disagree (how many, and the first few with both
    figures); zero rows are the same as absent ones."""
    counted = recount().subquery()
    tally = sa.select(
        *(getattr(CompletionTally, name) for name in KEY), CompletionTally.total
    ).where(CompletionTally.total != 0)
    tallied = tally.subquery()
    pairs = sa.union_all(
        sa.select(*(tallied.c[name] for name in KEY), tallied.c.total, sa.literal(0)),
        sa.select(*list(counted.c)[: len(KEY)], sa.literal(0), counted.c.total),
    ).subquery()
    columns = list(pairs.c)
    grouped = (
        sa.select(*columns[: len(KEY)], sa.func.sum(columns[6]), sa.func.sum(columns[7]))
        .group_by(*columns[: len(KEY)])
        .having(sa.func.sum(columns[6]) != sa.func.sum(columns[7]))
    )
    rows = db.session.execute(grouped.order_by(*columns[: len(KEY)])).all()
    return len(rows), [tuple(row) for row in rows[:limit]]


def rebuild() -> int:
    """Replace the tally with a recount; returns the number of tally rows. Locks the tally
    (PostgreSQL) so no write lands between the delete and the insert."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.text("LOCK TABLE assignment IN SHARE MODE"))
    db.session.execute(sa.delete(CompletionTally))
    db.session.execute(sa.insert(CompletionTally).from_select([*KEY, "total"], recount()))
    db.session.flush()
    return db.session.scalar(sa.select(sa.func.count()).select_from(CompletionTally)) or 0
