"""Bringing the questionnaire standing up to date, and recounting it to check it.

Each participant's row (models.QuestionnaireStanding) says which states their questionnaires
are in until `fresh_until`. The triggers on `assignment` mark a participant's row for a recount
(0) when one of their questionnaires is written; the clock makes rows due when their time comes.
`bring_up_to_date(now)` recounts the due rows from the participants' questionnaires, with the
same rule as `Assignment.state` (questionnaires/states.py), in two statements whatever their
number: at any moment only the participants whose questionnaire just opened or closed, or was
just answered, are due.

It writes through its own short transaction, as the session bookkeeping does: it runs while a
dashboard is read (a GET), and what it writes follows from committed rows and the clock alone.
On PostgreSQL the due rows are taken with SKIP LOCKED: a row a writer holds is recounted at the
next view (the writer's trigger marks it due again), and two dashboards recounting at once
never wait for each other or deadlock.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from patient_portal.accounts.models import Participant
from patient_portal.extensions import db
from patient_portal.questionnaires.models import Assignment
from patient_portal.questionnaires.services import grace
from patient_portal.questionnaires.states import STATES, state_condition
from patient_portal.staff.models import QuestionnaireStanding

NOT_DONE = ("planned", "in_progress")


def epoch_seconds(column, dialect: str) -> sa.ColumnElement[int]:
    """Whole seconds since 1970 of a stored naive-UTC timestamp, rounded down (a row is then
    recounted at, or a moment before, the time its state changes; never after)."""
    if dialect == "postgresql":
        return sa.cast(sa.func.floor(sa.func.extract("epoch", column)), sa.BigInteger)
    # Truncated as text first: strftime('%s') rounds the last millisecond of a second up.
    return sa.cast(sa.func.strftime("%s", sa.func.substr(column, 1, 19)), sa.BigInteger)


def _any(condition, dialect: str) -> sa.ColumnElement[bool]:
    if dialect == "postgresql":
        return sa.func.bool_or(condition)
    return sa.func.max(sa.case((condition, 1), else_=0))


def _visit_keys(dialect: str) -> sa.ColumnElement[str]:
    key = sa.distinct(Assignment.visit_key)
    if dialect == "postgresql":
        listed = sa.func.string_agg(key, sa.literal_column("','"))
    else:
        listed = sa.func.group_concat(key)
    return sa.literal(",").concat(listed).concat(",")


def next_change(now: datetime, dialect: str) -> sa.ColumnElement[int | None]:
    """When a questionnaire not done next opens, closes, or stops being finishable: the first
    moment any of the participant's states may change by the clock alone (None: never)."""
    grace_seconds = int(grace().total_seconds())
    return sa.func.min(
        sa.case(
            (
                sa.and_(Assignment.status.in_(NOT_DONE), Assignment.opens_at > now),
                epoch_seconds(Assignment.opens_at, dialect),
            ),
            (
                sa.and_(Assignment.status == "planned", Assignment.closes_at > now),
                epoch_seconds(Assignment.closes_at, dialect),
            ),
            (
                sa.and_(Assignment.status == "in_progress", Assignment.closes_at > now - grace()),
                epoch_seconds(Assignment.closes_at, dialect) + grace_seconds,
            ),
            else_=None,
        )
    )


def counted(now: datetime, dialect: str, participants=None) -> sa.Select:
    """(participant_id, each state, visits, fresh_until) counted from the questionnaires, for
    the given participants (a subquery of ids) or for everyone."""
    query = sa.select(
        Assignment.participant_id.label("participant_id"),
        *(_any(state_condition(state, now), dialect).label(state) for state in STATES),
        _visit_keys(dialect).label("visits"),
        next_change(now, dialect).label("fresh_until"),
    ).group_by(Assignment.participant_id)
    if participants is not None:
        query = query.where(Assignment.participant_id.in_(participants))
    return query


def _due(now: datetime, taken_on: str | None = None) -> sa.Select:
    """The participants whose row is due at `now`; taken (locked, skipping those a writer holds)
    when the statement runs on PostgreSQL."""
    standing = QuestionnaireStanding
    due = (
        sa.select(standing.participant_id)
        .where(standing.fresh_until <= int(now.timestamp()))
        .correlate(None)
    )
    if taken_on == "postgresql":
        due = due.order_by(standing.participant_id).with_for_update(skip_locked=True)
    return due


def bring_up_to_date(now: datetime) -> int:
    """Recount the rows due at `now`; returns how many were recounted."""
    standing = QuestionnaireStanding
    # Most views find nothing due: one index probe, and no write transaction (on SQLite, even an
    # UPDATE of no row would take the database's write lock).
    if not db.session.scalar(sa.select(_due(now).exists())):
        return 0
    with db.engine.begin() as connection:
        dialect = connection.dialect.name
        if dialect == "postgresql":
            # A plan over millions of questionnaires is costed high enough for PostgreSQL to
            # compile it (0.3 s) though it reads the few due participants' rows (3 ms).
            connection.execute(sa.text("SET LOCAL jit = off"))
        fresh = counted(now, dialect, _due(now, dialect)).subquery()
        recounted = connection.execute(
            sa.update(standing)
            .where(standing.participant_id == fresh.c.participant_id)
            .values(
                **{state: fresh.c[state] for state in STATES},
                visits=fresh.c.visits,
                fresh_until=fresh.c.fresh_until,
            )
        ).rowcount
        # Participants whose every questionnaire was deleted (a re-planning): nothing to count.
        emptied = connection.execute(
            sa.update(standing)
            .where(standing.participant_id.in_(_due(now, dialect)))
            .where(~sa.exists().where(Assignment.participant_id == standing.participant_id))
            .values(**dict.fromkeys(STATES, False), visits="", fresh_until=None)
        ).rowcount
    return recounted + emptied


def mark_all_due() -> int:
    """Mark every participant who has questionnaires due for a recount, adding the rows a
    restore that bypassed the triggers left out; the next dashboard recounts them. Flushes."""
    standing = QuestionnaireStanding
    has_questionnaires = sa.exists().where(Assignment.participant_id == Participant.id)
    missing = sa.select(
        Participant.id,
        Participant.site_code,
        *(sa.false() for _state in STATES),
        sa.literal(""),
        sa.literal(0),
    ).where(has_questionnaires, ~sa.exists().where(standing.participant_id == Participant.id))
    db.session.execute(
        sa.insert(standing).from_select(
            ["participant_id", "site_code", *STATES, "visits", "fresh_until"], missing
        )
    )
    db.session.execute(sa.update(standing).values(fresh_until=0))
    db.session.flush()
    return db.session.scalar(sa.select(sa.func.count()).select_from(standing)) or 0


def differences(now: datetime) -> list[tuple]:
    """Participants whose standing, brought up to date, differs from a recount of their
    questionnaires at `now` (a check for the tests and the bench): (id, stored, counted)."""
    bring_up_to_date(now)
    dialect = db.session.get_bind().dialect.name
    standing = QuestionnaireStanding
    stored = {
        row.participant_id: _compared(row)
        for row in db.session.execute(
            sa.select(
                standing.participant_id,
                *(getattr(standing, state) for state in STATES),
                standing.visits,
            ).where(standing.visits != "")
        )
    }
    recount = {
        row.participant_id: _compared(row) for row in db.session.execute(counted(now, dialect))
    }
    return [
        (participant, stored.get(participant), recount.get(participant))
        for participant in sorted(set(stored) | set(recount))
        if stored.get(participant) != recount.get(participant)
    ]


def _compared(row) -> tuple:
    """The states as booleans and the visit keys sorted (their order in the row is not kept)."""
    keys = tuple(sorted(key for key in (row.visits or "").split(",") if key))
    return (*(bool(getattr(row, state)) for state in STATES), keys)
