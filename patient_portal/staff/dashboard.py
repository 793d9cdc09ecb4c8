"""The dashboard's read model: completion counts, the matrix, follow-up lists, alerts and the
weekly chart, and the cache that keeps the last ones computed.

The dashboard runs a fixed number of SQL statements whatever the number of participants: every
count is a GROUP BY in the database and every list is limited. The counts per visit and
questionnaire and the weekly chart read the completion tally (models.py), which the database
keeps as assignments are written, so they cost the same for 100 participants or 100,000.
Assignment states (upcoming, open, completed, missed, withdrawn) are computed in SQL with the
same rule as `Assignment.state` (questionnaires/states.py).
Blinding: nothing here reads, stores or infers what a participant received; every participant has
the same schedule.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from patient_portal import clock
from patient_portal.accounts.models import AuthSession, Participant
from patient_portal.audit import AuditStream
from patient_portal.extensions import db
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires.models import Alert, Assignment
from patient_portal.questionnaires.services import grace
from patient_portal.questionnaires.states import (
    STATES,
    state_condition,
    state_expression,
    visit_key_expression,
)
from patient_portal.reminders.models import Reminder
from patient_portal.schedule.models import Visit
from patient_portal.staff import standing
from patient_portal.staff.filters import PAGE_SIZE, Filters, visit_keys
from patient_portal.staff.models import (
    CompletionTally,
    QuestionnaireStanding,
    hour_number,
    hour_start,
)

_CACHE_LOCK = threading.Lock()
LIST_LIMIT = 50
CLOSING_SOON = timedelta(hours=48)
INACTIVE_AFTER = timedelta(days=14)
MISSED_SHOWN_FOR = timedelta(days=30)
CHART_DEFAULT_WEEKS = 26


def _assignments_in_scope(query: sa.Select, filters: Filters, now: datetime) -> sa.Select:
    """Join an assignment query to its participant and visit, and apply the filters."""
    query = query.join(Participant, Participant.id == Assignment.participant_id).outerjoin(
        Visit, Visit.id == Assignment.visit_id
    )
    query = query.where(_site_in(filters.sites))
    if filters.visit:
        query = query.where(Assignment.visit_key == filters.visit)
    if filters.instrument:
        query = query.where(Assignment.instrument_id == filters.instrument)
    if filters.study_id:
        query = query.where(Participant.study_id.startswith(filters.study_id, autoescape=True))
    return query


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def _site_in(sites: tuple[str, ...]) -> sa.ColumnElement[bool]:
    """The participant's site among these, for queries bounded by opening or closing times.

    On SQLite, as an expression no index serves: with one site asked for, its planner otherwise
    walked every questionnaire of that site's participants (2 s at 100,000 participants) rather
    than the hour's few through the time indexes. PostgreSQL keeps statistics on the column; the
    same expression made it guess 1.5 % of participants and loop over all of them (0.6 s).
    """
    if _dialect() == "postgresql":
        return Participant.site_code.in_(sites)
    return Participant.site_code.concat("").in_(sites)


# ---------------------------------------------------------------------------------------------
# Dashboard


@dataclass
class SummaryRow:
    site: str
    visit: str
    instrument: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))

    @property
    def expected(self) -> int:
        """Questionnaires whose window has opened, not withdrawn."""
        return self.counts["open"] + self.counts["completed"] + self.counts["missed"]

    @property
    def rate(self) -> float | None:
        return self.counts["completed"] / self.expected if self.expected else None


@dataclass
class MatrixCell:
    state: str
    completed: int
    total: int
    # Every state's count, so a cell can answer for the state the filter asks about.
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class MatrixRow:
    study_id: str
    site: str
    status: str
    cells: dict[str, MatrixCell]


@dataclass
class FollowUp:
    """A line of the follow-up list: who, what, since or until when."""

    kind: str
    study_id: str
    site: str
    when: datetime | None
    visit: str | None = None
    instrument: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class AlertLine:
    """An alert as the dashboard lists it (plain values: dashboards are cached between requests)."""

    alert_id: int
    rule_id: str
    created_at: datetime
    study_id: str
    site: str
    instrument_id: str | None
    severity: str = "routine"
    item_id: str | None = None
    value: Any = None
    due_at: datetime | None = None
    escalated_at: datetime | None = None


@dataclass
class ChartPoint:
    week_start: date
    completed: int
    expected: int

    @property
    def rate(self) -> float | None:
        return self.completed / self.expected if self.expected else None


@dataclass
class Dashboard:
    filters: Filters
    now: datetime
    summary: list[SummaryRow]
    matrix: list[MatrixRow]
    matrix_total: int
    closing_soon: list[FollowUp]
    missed: list[FollowUp]
    inactive: list[FollowUp]
    inactive_total: int
    failed_reminders: list[FollowUp]
    alerts: list[AlertLine]
    alerts_total: int
    chart: list[ChartPoint]
    chart_start: date
    chart_end: date

    @property
    def pages(self) -> int:
        return max(1, -(-self.matrix_total // PAGE_SIZE))


def _undecided_hours(now: datetime) -> tuple[int, int, int]:
    """The hours in which a not-yet-done questionnaire's state depends on the minute: the current
    hour for opening and closing, and back to the start of the grace period for closing."""
    current = hour_number(now)
    return current, hour_number(now - grace()), current + 1


def _tallied_state_counts(filters: Filters, now: datetime) -> sa.CompoundSelect:
    """(site, visit, questionnaire, state, count) from the tally, for every tally row whose
    state follows from its hours alone, plus the assignments of the undecided hours counted
    one by one; one statement, so both halves read the same snapshot."""
    tally = CompletionTally
    current, grace_from, next_hour = _undecided_hours(now)
    undecided = sa.and_(
        tally.status.in_(("planned", "in_progress")),
        sa.or_(tally.opens_hour == current, tally.closes_hour.between(grace_from, current)),
    )
    # Outside the undecided hours, opening after this hour means upcoming and closing after it
    # means open; closing before the grace period means missed (see Assignment.state).
    state = sa.case(
        (tally.status == "completed", "completed"),
        (tally.status == "withdrawn", "withdrawn"),
        (tally.opens_hour > current, "upcoming"),
        (tally.closes_hour > current, "open"),
        else_="missed",
    )
    tallied = sa.select(
        tally.site_code, tally.visit_key, tally.instrument_id, state, sa.func.sum(tally.total)
    ).where(tally.site_code.in_(filters.sites), ~undecided, tally.total != 0)
    if filters.visit:
        tallied = tallied.where(tally.visit_key == filters.visit)
    if filters.instrument:
        tallied = tallied.where(tally.instrument_id == filters.instrument)
    tallied = tallied.group_by(tally.site_code, tally.visit_key, tally.instrument_id, state)
    edge = _exact_state_counts(filters, now).where(
        Assignment.status.in_(("planned", "in_progress")),
        sa.or_(
            sa.and_(
                Assignment.opens_at >= hour_start(current),
                Assignment.opens_at < hour_start(next_hour),
            ),
            sa.and_(
                Assignment.closes_at >= hour_start(grace_from),
                Assignment.closes_at < hour_start(next_hour),
            ),
        ),
    )
    return sa.union_all(tallied, edge)


def _exact_state_counts(filters: Filters, now: datetime) -> sa.Select:
    """(site, visit, questionnaire, state, count) counted over the assignments themselves."""
    state = state_expression(now).label("state")
    visit = visit_key_expression().label("visit")
    return _assignments_in_scope(
        sa.select(Participant.site_code, visit, Assignment.instrument_id, state, sa.func.count()),
        filters,
        now,
    ).group_by(Participant.site_code, visit, Assignment.instrument_id, state)


def completion_summary(filters: Filters, now: datetime) -> list[SummaryRow]:
    """Per site, visit and questionnaire: how many are upcoming, open, completed, missed, withdrawn.

    From the tally, except for a study ID search, which concerns a few participants and is
    counted from their assignments.
    """
    query: sa.Select | sa.CompoundSelect
    if filters.study_id:
        query = _exact_state_counts(filters, now)
    else:
        query = _tallied_state_counts(filters, now)
    rows: dict[tuple[str, str, str], SummaryRow] = {}
    for site, visit_code, instrument_id, state_name, count in db.session.execute(query):
        key = (site, visit_code, instrument_id)
        row = rows.setdefault(key, SummaryRow(site, visit_code, instrument_id))
        row.counts[state_name] += int(count)
    order = {code: index for index, code in enumerate(visit_keys())}
    result = sorted(rows.values(), key=lambda r: (r.site, order.get(r.visit, 99), r.instrument))
    if filters.state:
        result = [row for row in result if row.counts[filters.state]]
    return result


def _matrix_participants(filters: Filters, now: datetime) -> sa.Select:
    """The participants the matrix lists: of the sites in scope, with the study ID searched,
    and with a questionnaire of the visit, instrument and state asked for.

    A state alone or a visit alone is the questionnaire standing's answer. Otherwise the
    questionnaires are checked: those open now lie in a short range of opening times, so they
    are looked up once (IN); any other filter is checked participant by participant (a
    correlated EXISTS), so a page can stop at its fiftieth.
    """
    query = sa.select(Participant.id).where(Participant.site_code.in_(filters.sites))
    if filters.study_id:
        query = query.where(Participant.study_id.startswith(filters.study_id, autoescape=True))
    if not (filters.visit or filters.instrument or filters.state):
        return query
    if _reads_standing(filters):
        # Participant by participant in study ID order, one look-up in the standing each, so a
        # page stops at its fiftieth (the standing is brought up to date by the caller).
        return query.where(
            sa.exists().where(
                QuestionnaireStanding.participant_id == Participant.id, _standing_says(filters)
            )
        )
    series_codes = set(get_protocol().series_codes())
    correlated = filters.state != "open"
    if filters.visit and filters.visit not in series_codes:
        # Through the participant's visit (one index probe), then its questionnaires.
        wanted = (
            sa.select(Visit.participant_id)
            .join(Assignment, Assignment.visit_id == Visit.id)
            .where(Visit.code == filters.visit)
        )
        owner = Visit.participant_id
    else:
        wanted = sa.select(Assignment.participant_id)
        owner = Assignment.participant_id
        if filters.visit:
            wanted = wanted.where(Assignment.series_code == filters.visit)
    if filters.instrument:
        wanted = wanted.where(Assignment.instrument_id == filters.instrument)
    if filters.state:
        wanted = wanted.where(state_condition(filters.state, now))
    if correlated:
        return query.where(wanted.where(owner == Participant.id).exists())
    return query.where(Participant.id.in_(wanted))


def _standing_says(filters: Filters) -> sa.ColumnElement[bool]:
    """The standing's answer to a state alone or a visit alone."""
    standing = QuestionnaireStanding
    if filters.state:
        return getattr(standing, filters.state).is_(True)
    # A plain search for ",M3," (LIKE would build its pattern row by row).
    find = "strpos" if _dialect() == "postgresql" else "instr"
    return getattr(sa.func, find)(standing.visits, f",{filters.visit},") > 0


def _standing_count(filters: Filters) -> int:
    """How many participants of the sites in scope the standing says match: one narrow table."""
    standing = QuestionnaireStanding
    return (
        db.session.scalar(
            sa.select(sa.func.count()).where(
                standing.site_code.in_(filters.sites), _standing_says(filters)
            )
        )
        or 0
    )


def _reads_standing(filters: Filters) -> bool:
    """A state alone or a visit alone: the questionnaire standing answers either per participant;
    together, or with a questionnaire, they are checked against the questionnaires."""
    return bool(filters.state) != bool(filters.visit) and not filters.instrument


def _cell(counts: dict[str, int]) -> MatrixCell:
    """One state for a visit's questionnaires: what needs attention first."""
    total = sum(counts.values())
    live = total - counts["withdrawn"]
    for state in ("missed", "open", "upcoming"):
        if counts[state]:
            return MatrixCell(state, counts["completed"], live, dict(counts))
    if counts["completed"]:
        return MatrixCell("completed", counts["completed"], live, dict(counts))
    return MatrixCell("withdrawn", 0, 0, dict(counts))


def completion_matrix(filters: Filters, now: datetime) -> tuple[list[MatrixRow], int]:
    """One page of participants by visit, each cell with its state; and the number of rows.

    A state alone or a visit alone is read from the questionnaire standing (one row per
    participant, brought up to date first): the count reads that narrow table, and the page
    walks the study IDs and stops at its fiftieth, in two statements. Filtered by a
    questionnaire, or by a state and a visit together, each participant's questionnaires are
    checked, and the page and the count come from one statement (a window count), where two
    statements checked every participant twice (issue 19). Unfiltered, the count reads an index.
    """
    if _reads_standing(filters):
        standing.bring_up_to_date(now)
    matching = _matrix_participants(filters, now)
    columns: list[Any] = [
        Participant.id,
        Participant.study_id,
        Participant.site_code,
        Participant.status,
    ]
    checked_one_by_one = bool(filters.visit or filters.instrument or filters.state) and not (
        _reads_standing(filters)
    )
    if checked_one_by_one:
        columns.append(sa.func.count().over().label("total"))
    page = db.session.execute(
        matching.with_only_columns(*columns)
        .order_by(Participant.study_id)
        .limit(PAGE_SIZE)
        .offset((filters.page - 1) * PAGE_SIZE)
    ).all()
    if checked_one_by_one and page:
        total = page[0].total
    elif _reads_standing(filters) and not filters.study_id:
        total = _standing_count(filters)
    else:
        total = db.session.scalar(sa.select(sa.func.count()).select_from(matching.subquery())) or 0
    if not page:
        return [], total
    ids = [row.id for row in page]
    state = state_expression(now).label("state")
    visit = visit_key_expression().label("visit")
    cells_query = (
        sa.select(Assignment.participant_id, visit, state, sa.func.count())
        # The visit's own participant too, so the join reads this page's visits only.
        .outerjoin(Visit, sa.and_(Visit.id == Assignment.visit_id, Visit.participant_id.in_(ids)))
        .where(Assignment.participant_id.in_(ids))
        .group_by(Assignment.participant_id, visit, state)
    )
    if filters.instrument:
        cells_query = cells_query.where(Assignment.instrument_id == filters.instrument)
    counts: dict[tuple[int, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATES, 0))
    for participant_id, visit_code, state_name, count in db.session.execute(cells_query):
        counts[(participant_id, visit_code)][state_name] += count
    rows = [
        MatrixRow(
            row.study_id,
            row.site_code,
            row.status,
            {
                code: _cell(counts[(row.id, code)])
                for code in visit_keys()
                if (row.id, code) in counts
            },
        )
        for row in page
    ]
    return rows, total


def _follow_up_query(filters: Filters, now: datetime, *columns) -> sa.Select:
    return _assignments_in_scope(
        sa.select(
            Participant.study_id,
            Participant.site_code,
            visit_key_expression(),
            Assignment.instrument_id,
            *columns,
        ),
        filters,
        now,
    )


def closing_soon(filters: Filters, now: datetime) -> list[FollowUp]:
    """Open questionnaires that close within 48 hours, soonest first."""
    query = (
        _follow_up_query(filters, now, Assignment.closes_at)
        .where(
            Assignment.status.in_(("planned", "in_progress")),
            Assignment.opens_at <= now,
            Assignment.closes_at > now,
            Assignment.closes_at <= now + CLOSING_SOON,
        )
        .order_by(Assignment.closes_at, Assignment.id)
        .limit(LIST_LIMIT)
    )
    return [
        FollowUp("closing", study, site, closes, visit, instrument)
        for study, site, visit, instrument, closes in db.session.execute(query)
    ]


def recently_missed(filters: Filters, now: datetime) -> list[FollowUp]:
    """Questionnaires missed in the last 30 days by participants still in the study."""
    # As plain conditions, the planner walks the index on closing times back from now and
    # stops at the 50th.
    missed = state_condition("missed", now)
    query = (
        _follow_up_query(filters, now, Assignment.closes_at)
        .where(
            missed,
            Participant.status != "withdrawn",
            Assignment.closes_at >= now - MISSED_SHOWN_FOR,
            Assignment.closes_at <= now,
        )
        .order_by(Assignment.closes_at.desc(), Assignment.id.desc())
        .limit(LIST_LIMIT)
    )
    return [
        FollowUp("missed", study, site, closes, visit, instrument)
        for study, site, visit, instrument, closes in db.session.execute(query)
    ]


def inactive_participants(filters: Filters, now: datetime) -> tuple[list[FollowUp], int]:
    """Participants in the study not seen on the portal for 14 days (or never), and how many.

    Counted and listed in two statements: the count joins everyone at once, the list walks
    the study IDs in order and stops at the 50th.
    """
    cutoff = now - INACTIVE_AFTER
    conditions = [
        Participant.site_code.in_(filters.sites),
        Participant.status.in_(("enrolled", "active")),
        Participant.created_at < cutoff,
        ~sa.exists().where(
            AuthSession.participant_id == Participant.id, AuthSession.last_seen_at >= cutoff
        ),
    ]
    if filters.study_id:
        conditions.append(Participant.study_id.startswith(filters.study_id, autoescape=True))
    last_seen = (
        sa.select(sa.func.max(AuthSession.last_seen_at))
        .where(AuthSession.participant_id == Participant.id)
        .scalar_subquery()
    )
    rows = db.session.execute(
        sa.select(Participant.study_id, Participant.site_code, last_seen.label("last_seen"))
        .where(*conditions)
        .order_by(Participant.study_id)
        .limit(LIST_LIMIT)
    ).all()
    items = [FollowUp("inactive", r.study_id, r.site_code, r.last_seen) for r in rows]
    total = db.session.scalar(sa.select(sa.func.count(Participant.id)).where(*conditions))
    return items, total or 0


def unacknowledged_alerts(filters: Filters, limit: int = LIST_LIMIT) -> tuple[list[AlertLine], int]:
    """Alerts no coordinator has acknowledged, urgent first, oldest first, and how many."""
    query = (
        sa.select(
            Alert.id,
            Alert.rule_id,
            Alert.created_at,
            Participant.study_id,
            Participant.site_code,
            Assignment.instrument_id,
            Alert.severity,
            Alert.item_id,
            Alert.value,
            Alert.due_at,
            Alert.escalated_at,
            sa.func.count().over().label("total"),
        )
        .join(Participant, Participant.id == Alert.participant_id)
        .outerjoin(Assignment, Assignment.id == Alert.assignment_id)
        .where(Alert.acknowledged_at.is_(None), Participant.site_code.in_(filters.sites))
        # "urgent" sorts after "routine": descending puts urgent alerts first.
        .order_by(Alert.severity.desc(), Alert.created_at, Alert.id)
        .limit(limit)
    )
    if filters.study_id:
        query = query.where(Participant.study_id.startswith(filters.study_id, autoescape=True))
    rows = db.session.execute(query).all()
    return [AlertLine(*row[:11]) for row in rows], rows[0].total if rows else 0


def chart_period(filters: Filters, now: datetime) -> tuple[date, date]:
    """The chart's weeks: the filter's period, or the last 26 weeks, starting on a Monday."""
    end = filters.end or now.date()
    start = filters.start or end - timedelta(weeks=CHART_DEFAULT_WEEKS)
    start -= timedelta(days=start.weekday())
    return start, end


def _chart_bounds(filters: Filters, now: datetime) -> tuple[date, datetime, datetime]:
    start, end = chart_period(filters, now)
    start_at = datetime.combine(start, datetime.min.time(), tzinfo=now.tzinfo)
    end_at = min(datetime.combine(end + timedelta(days=1), datetime.min.time(), now.tzinfo), now)
    return start, start_at, end_at


def _exact_weekly_counts(
    filters: Filters, now: datetime, start_at: datetime, end_at: datetime, since=None
) -> sa.Select:
    """(week, completed, closed) over the assignments that closed in [since, end_at), weeks
    counted from start_at; `since` defaults to start_at (one range, so the index is used)."""
    week = sa.cast(
        sa.func.floor(
            (standing.epoch_seconds(Assignment.closes_at, _dialect()) - int(start_at.timestamp()))
            / (7 * 86400.0)
        ),
        sa.Integer,
    ).label("week")
    return (
        _assignments_in_scope(
            sa.select(
                week,
                sa.func.sum(sa.case((Assignment.status == "completed", 1), else_=0)),
                sa.func.count(),
            ),
            filters,
            now,
        )
        .where(
            Assignment.status != "withdrawn",
            Assignment.closes_at >= (since or start_at),
            Assignment.closes_at < end_at,
        )
        .group_by(week)
    )


def _tallied_weekly_counts(
    filters: Filters, now: datetime, start_at, end_at
) -> sa.Select | sa.CompoundSelect:
    """The same from the tally for the whole hours, plus the current hour's assignments one by
    one when the period ends now (the chart's weeks start at midnight UTC, on an hour)."""
    tally = CompletionTally
    first, last = hour_number(start_at), hour_number(end_at)
    week = ((tally.closes_hour - first) // (7 * 24)).label("week")
    query = sa.select(
        week,
        sa.func.sum(sa.case((tally.status == "completed", tally.total), else_=0)),
        sa.func.sum(tally.total),
    ).where(
        tally.site_code.in_(filters.sites),
        tally.status != "withdrawn",
        tally.closes_hour >= first,
        tally.closes_hour < last,
    )
    if filters.visit:
        query = query.where(tally.visit_key == filters.visit)
    if filters.instrument:
        query = query.where(tally.instrument_id == filters.instrument)
    query = query.group_by(week)
    if hour_start(last) < end_at:
        return sa.union_all(
            query,
            _exact_weekly_counts(filters, now, start_at, end_at, since=hour_start(last)),
        )
    return query


def completion_over_time(filters: Filters, now: datetime) -> list[ChartPoint]:
    """Per week of closing: of the questionnaires whose window closed that week, how many were done."""
    start, start_at, end_at = _chart_bounds(filters, now)
    query: sa.Select | sa.CompoundSelect
    if filters.study_id:
        query = _exact_weekly_counts(filters, now, start_at, end_at)
    else:
        query = _tallied_weekly_counts(filters, now, start_at, end_at)
    totals: dict[int, tuple[int, int]] = {}
    for number, done, count in db.session.execute(query):
        previous = totals.get(int(number), (0, 0))
        totals[int(number)] = (previous[0] + int(done or 0), previous[1] + int(count or 0))
    weeks = max(0, (end_at.date() - start).days + 6) // 7
    return [ChartPoint(start + timedelta(weeks=n), *totals.get(n, (0, 0))) for n in range(weeks)]


def failed_reminders(filters: Filters, now: datetime) -> list[FollowUp]:
    """Reminders that could not be delivered in the last 14 days, most recent first."""
    query = (
        sa.select(
            Participant.study_id, Participant.site_code, Reminder.updated_at, Reminder.channel
        )
        .join(Participant, Participant.id == Reminder.participant_id)
        .where(
            Reminder.status == "failed",
            Reminder.updated_at >= now - INACTIVE_AFTER,
            Participant.site_code.in_(filters.sites),
            Participant.status != "withdrawn",
        )
        .order_by(Reminder.updated_at.desc())
        .limit(LIST_LIMIT)
    )
    if filters.study_id:
        query = query.where(Participant.study_id.startswith(filters.study_id, autoescape=True))
    return [
        FollowUp("failed_reminder", study, site, when, detail=channel)
        for study, site, when, channel in db.session.execute(query)
    ]


CACHED_DASHBOARDS = 64


def data_version() -> str:
    """How many audit events are committed: every write of clinical or account data appends
    one, so a dashboard computed at the same version (and minute) is still true. Counted from
    the stream heads, not read from the newest event: streams commit in any order, so an event
    with a lower id can appear after a higher one."""
    return str(db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(AuditStream.seq), 0))))


def _cache() -> OrderedDict:
    return current_app.extensions.setdefault("workspace_dashboards", OrderedDict())


def forget_cached_dashboards() -> None:
    _cache().clear()


def dashboard(filters: Filters, now: datetime | None = None) -> Dashboard:
    """Everything the dashboard shows, in a fixed number of statements.

    Each app process keeps the last dashboards it computed (a coordinator's htmx filters go back
    and forth), keyed by the filters, the audit trail's head and the minute: any
    audited write (an answer, a submission, an acknowledgement, a withdrawal, a re-planning)
    or the next minute computes afresh. At worst a figure is a minute behind the clock
    (a questionnaire that just closed still counted as open).
    """
    now = now or clock.now()
    key = (filters, data_version(), now.replace(second=0, microsecond=0))
    cache = _cache()
    with _CACHE_LOCK:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    result = _compute_dashboard(filters, now)
    with _CACHE_LOCK:
        cache[key] = result
        while len(cache) > CACHED_DASHBOARDS:
            cache.popitem(last=False)
    return result


def _compute_dashboard(filters: Filters, now: datetime) -> Dashboard:
    matrix, matrix_total = completion_matrix(filters, now)
    inactive, inactive_total = inactive_participants(filters, now)
    alerts, alerts_total = unacknowledged_alerts(filters)
    start, end = chart_period(filters, now)
    return Dashboard(
        filters=filters,
        now=now,
        summary=completion_summary(filters, now),
        matrix=matrix,
        matrix_total=matrix_total,
        closing_soon=closing_soon(filters, now),
        missed=recently_missed(filters, now),
        inactive=inactive,
        inactive_total=inactive_total,
        failed_reminders=failed_reminders(filters, now),
        alerts=alerts,
        alerts_total=alerts_total,
        chart=completion_over_time(filters, now),
        chart_start=start,
        chart_end=end,
    )
