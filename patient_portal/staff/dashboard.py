"""The coordinator's workspace: completion dashboard queries, filters and participant follow-up.

The dashboard runs a fixed number of SQL statements whatever the number of participants: every
count is a GROUP BY in the database and every list is limited. The counts per visit and
questionnaire and the weekly chart read the completion tally (models.py), which the database
keeps as assignments are written, so they cost the same for 100 participants or 100,000.
Assignment states (upcoming, open, completed, missed, withdrawn) are computed in SQL with the
same rule as `Assignment.state`.
Blinding: nothing here reads, stores or infers what a participant received; every participant has
the same schedule.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _

from patient_portal import audit, clock, signals
from patient_portal.accounts import services as account_services
from patient_portal.accounts.auth import visible_site_codes
from patient_portal.accounts.models import (
    STAFF_ROLES,
    AuthSession,
    Participant,
    StaffSite,
    StaffUser,
)
from patient_portal.audit import AuditEvent
from patient_portal.extensions import db
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires.loader import get_instruments
from patient_portal.questionnaires.models import Alert, Assignment, Submission
from patient_portal.questionnaires.services import grace
from patient_portal.reminders.models import Reminder
from patient_portal.schedule.models import Visit
from patient_portal.workspace.models import CompletionTally, hour_number, hour_start

_CACHE_LOCK = threading.Lock()
# Dashboard states; "open" includes a questionnaire started and still finishable in the grace.
STATES = ("upcoming", "open", "completed", "missed", "withdrawn")
PAGE_SIZE = 50
LIST_LIMIT = 50
CLOSING_SOON = timedelta(hours=48)
INACTIVE_AFTER = timedelta(days=14)
MISSED_SHOWN_FOR = timedelta(days=30)
CHART_DEFAULT_WEEKS = 26
CHART_MAX_DAYS = 731
MAX_PAGE = 100_000
STUDY_ID_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,20}$")
WITHDRAWAL_REASON_MAX = 500


class WorkspaceError(Exception):
    """A refused request; `message` is translated for the person in front of the screen."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


# ---------------------------------------------------------------------------------------------
# Filters


@dataclass(frozen=True)
class Filters:
    """What the dashboard shows; `sites` are the sites in scope after the site filter."""

    sites: tuple[str, ...]
    site: str | None = None
    visit: str | None = None
    instrument: str | None = None
    state: str | None = None
    study_id: str | None = None
    page: int = 1
    start: date | None = None
    end: date | None = None

    def query_args(self, **changes) -> dict[str, str]:
        """The filters as URL arguments (for links that keep them), with some changed."""
        values = {
            "site": self.site,
            "visit": self.visit,
            "instrument": self.instrument,
            "state": self.state,
            "study_id": self.study_id,
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "page": str(self.page) if self.page != 1 else None,
        }
        values.update(changes)
        return {key: value for key, value in values.items() if value}


def visit_keys() -> list[str]:
    """Every visit with questionnaires, in protocol order, then the series (weekly check-in)."""
    protocol = get_protocol()
    return [v.code for v in protocol.visits if v.questionnaires] + [s.code for s in protocol.series]


def parse_date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise WorkspaceError(
            _("“%(name)s” must be a date written year-month-day.", name=name)
        ) from None


def parse_date_range(args: Mapping[str, str]) -> tuple[date | None, date | None]:
    """`from` and `to` as dates; a malformed or reversed range, or one too long, is refused."""
    start = parse_date(args["from"], _("First day")) if args.get("from") else None
    end = parse_date(args["to"], _("Last day")) if args.get("to") else None
    if start and end:
        if start > end:
            raise WorkspaceError(_("The start of the period must be before its end."))
        if (end - start).days > CHART_MAX_DAYS:
            raise WorkspaceError(_("Please choose a period of at most two years."))
    return start, end


def parse_page(value: str | None) -> int:
    if not value:
        return 1
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise WorkspaceError(_("The page number is not valid."))
    return int(value)


def scoped_sites(staff: StaffUser, site: str | None) -> tuple[str, ...]:
    """The sites a request may read: all the staff member's sites, or the one asked for.

    An unknown site is a 400; a known site that is not theirs is a 404, as for any other record
    of another site.
    """
    visible = tuple(visible_site_codes(staff))
    if not site:
        return visible
    if site not in get_protocol().sites:
        raise WorkspaceError(_("This site does not exist."))
    if site not in visible:
        raise WorkspaceError(_("Page not found"), 404)
    return (site,)


def parse_filters(args: Mapping[str, str], staff: StaffUser) -> Filters:
    """The dashboard's filters from the query string; anything unknown is a translated 400."""
    site = args.get("site") or None
    visit = args.get("visit") or None
    instrument = args.get("instrument") or None
    state = args.get("state") or None
    study_id = (args.get("study_id") or "").strip() or None
    if visit is not None and visit not in visit_keys():
        raise WorkspaceError(_("This visit does not exist."))
    if instrument is not None and instrument not in get_instruments():
        raise WorkspaceError(_("This questionnaire does not exist."))
    if state is not None and state not in STATES:
        raise WorkspaceError(_("This state does not exist."))
    if study_id is not None and not STUDY_ID_PATTERN.match(study_id):
        raise WorkspaceError(_("A study ID has only letters, digits and hyphens."))
    start, end = parse_date_range(args)
    return Filters(
        sites=scoped_sites(staff, site),
        site=site,
        visit=visit,
        instrument=instrument,
        state=state,
        study_id=study_id.upper() if study_id else None,
        page=parse_page(args.get("page")),
        start=start,
        end=end,
    )


# ---------------------------------------------------------------------------------------------
# SQL building blocks


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


def visit_key_expression() -> sa.ColumnElement[str]:
    """The visit code of a visit's questionnaire, or the series code of a series occurrence."""
    return sa.func.coalesce(Visit.code, Assignment.series_code)


def _assignments_in_scope(query: sa.Select, filters: Filters, now: datetime) -> sa.Select:
    """Join an assignment query to its participant and visit, and apply the filters."""
    query = query.join(Participant, Participant.id == Assignment.participant_id).outerjoin(
        Visit, Visit.id == Assignment.visit_id
    )
    query = query.where(Participant.site_code.in_(filters.sites))
    if filters.visit:
        query = query.where(visit_key_expression() == filters.visit)
    if filters.instrument:
        query = query.where(Assignment.instrument_id == filters.instrument)
    if filters.study_id:
        query = query.where(Participant.study_id.startswith(filters.study_id, autoescape=True))
    return query


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
    return timedelta(days=max(spans, default=0) + 1)


def _epoch_seconds(column) -> sa.ColumnElement:
    """Seconds since 1970 of a stored (naive UTC) timestamp, on either engine."""
    if db.session.get_bind().dialect.name == "postgresql":
        return sa.func.extract("epoch", column)
    return sa.cast(sa.func.strftime("%s", column), sa.Integer)


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


def _tallied_state_counts(filters: Filters, now: datetime) -> sa.Select:
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

    Questionnaires open now lie in a short range of opening times, so they are looked up once
    (IN); any other filter is checked participant by participant (a correlated EXISTS), so a
    page can stop at its fiftieth.
    """
    query = sa.select(Participant.id).where(Participant.site_code.in_(filters.sites))
    if filters.study_id:
        query = query.where(Participant.study_id.startswith(filters.study_id, autoescape=True))
    if not (filters.visit or filters.instrument or filters.state):
        return query
    series_codes = {series.code for series in get_protocol().series}
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


def _cell(counts: dict[str, int]) -> MatrixCell:
    """One state for a visit's questionnaires: what needs attention first."""
    total = sum(counts.values())
    live = total - counts["withdrawn"]
    for state in ("missed", "open", "upcoming"):
        if counts[state]:
            return MatrixCell(state, counts["completed"], live)
    if counts["completed"]:
        return MatrixCell("completed", counts["completed"], live)
    return MatrixCell("withdrawn", 0, 0)


def completion_matrix(filters: Filters, now: datetime) -> tuple[list[MatrixRow], int]:
    """One page of participants by visit, each cell with its state; and the number of rows.

    The count and the page are two statements: a window count would read every matching
    participant before the page's fifty, where the page alone walks the study ID index.
    """
    matching = _matrix_participants(filters, now).subquery()
    total = db.session.scalar(sa.select(sa.func.count()).select_from(matching)) or 0
    page = db.session.execute(
        sa.select(Participant.id, Participant.study_id, Participant.site_code, Participant.status)
        .where(Participant.id.in_(sa.select(matching.c.id)))
        .order_by(Participant.study_id)
        .limit(PAGE_SIZE)
        .offset((filters.page - 1) * PAGE_SIZE)
    ).all()
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
    """Alerts no coordinator has acknowledged, oldest first, and how many there are."""
    query = (
        sa.select(
            Alert.id,
            Alert.rule_id,
            Alert.created_at,
            Participant.study_id,
            Participant.site_code,
            Assignment.instrument_id,
            sa.func.count().over().label("total"),
        )
        .join(Participant, Participant.id == Alert.participant_id)
        .outerjoin(Assignment, Assignment.id == Alert.assignment_id)
        .where(Alert.acknowledged_at.is_(None), Participant.site_code.in_(filters.sites))
        .order_by(Alert.created_at, Alert.id)
        .limit(limit)
    )
    if filters.study_id:
        query = query.where(Participant.study_id.startswith(filters.study_id, autoescape=True))
    rows = db.session.execute(query).all()
    return [AlertLine(*row[:6]) for row in rows], rows[0].total if rows else 0


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
            (_epoch_seconds(Assignment.closes_at) - int(start_at.timestamp())) / (7 * 86400.0)
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


def _tallied_weekly_counts(filters: Filters, now: datetime, start_at, end_at) -> sa.Select:
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
    """The audit trail's last hash: every write of clinical or account data appends an event,
    so a dashboard computed at the same version (and minute) is still true."""
    return (
        db.session.scalar(sa.select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)) or ""
    )


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


# ---------------------------------------------------------------------------------------------
# One participant


def participant_assignments(participant: Participant, now: datetime | None = None) -> list[dict]:
    """The participant's questionnaires (not the weekly ones still to come), with their state."""
    now = now or clock.now()
    state = state_expression(now).label("state")
    rows = db.session.execute(
        sa.select(Assignment, visit_key_expression().label("visit"), state)
        .outerjoin(Visit, Visit.id == Assignment.visit_id)
        .where(Assignment.participant_id == participant.id)
        .where(sa.or_(Assignment.visit_id.is_not(None), Assignment.opens_at <= now))
        .order_by(Assignment.opens_at, Assignment.id)
    ).all()
    return [{"assignment": a, "visit": v, "state": s} for a, v, s in rows]


def submitted_answers(participant: Participant) -> list[Assignment]:
    """Submitted questionnaires with their answers, most recent first."""
    return list(
        db.session.scalars(
            sa.select(Assignment)
            .join(Submission, Submission.assignment_id == Assignment.id)
            .where(Assignment.participant_id == participant.id)
            .order_by(Submission.submitted_at.desc(), Assignment.id.desc())
            .options(sa.orm.selectinload(Assignment.answers))
        )
    )


def participant_alerts(participant: Participant) -> list[Alert]:
    """All of the participant's alerts, unacknowledged first, then the most recent."""
    return list(
        db.session.scalars(
            sa.select(Alert)
            .where(Alert.participant_id == participant.id)
            .order_by(Alert.acknowledged_at.is_not(None), Alert.created_at.desc(), Alert.id)
        )
    )


def participant_audit_history(participant: Participant, limit: int = 200) -> list[AuditEvent]:
    """The audit events about this participant and their records, newest first."""
    as_text = sa.String(60)
    own = [
        (
            "assignment",
            sa.select(sa.cast(Assignment.id, as_text)).where(
                Assignment.participant_id == participant.id
            ),
        ),
        (
            "visit",
            sa.select(sa.cast(Visit.id, as_text)).where(Visit.participant_id == participant.id),
        ),
        (
            "alert",
            sa.select(sa.cast(Alert.id, as_text)).where(Alert.participant_id == participant.id),
        ),
    ]
    conditions = [
        sa.and_(
            AuditEvent.entity == "participant",
            AuditEvent.entity_id.in_(
                [participant.study_id, str(participant.id), participant.audit_name]
            ),
        ),
        AuditEvent.actor == participant.audit_name,
        *[
            sa.and_(AuditEvent.entity == entity, AuditEvent.entity_id.in_(ids))
            for entity, ids in own
        ],
    ]
    return list(
        db.session.scalars(
            sa.select(AuditEvent)
            .where(sa.or_(*conditions))
            .order_by(AuditEvent.id.desc())
            .limit(limit)
        )
    )


def withdraw_participant(participant: Participant, staff: StaffUser, reason: str) -> int:
    """Withdraw a participant: questionnaires not done are closed, reminders stop, data stays.

    The participant is signed out and unused enrolment links stop; every feature closes its
    own rows on `participant_withdrawn`, and may return counts for the audit event.
    Returns how many questionnaires were closed.
    """
    reason = (reason or "").strip()
    if not reason:
        raise WorkspaceError(_("Please give the reason for the withdrawal."), 422)
    if len(reason) > WITHDRAWAL_REASON_MAX:
        raise WorkspaceError(_("Please give a reason of at most 500 characters."), 422)
    if participant.status == "withdrawn":
        raise WorkspaceError(_("This participant has already withdrawn."), 409)
    before = participant.status
    participant.status = "withdrawn"
    counts: dict[str, int] = {}
    for _receiver, outcome in signals.participant_withdrawn.send(participant):
        if isinstance(outcome, dict):
            counts.update(outcome)
    account_services.end_all_sessions(participant, reason="participant withdrawn")
    account_services.revoke_enrolment_links(participant)
    db.session.flush()
    audit.record(
        "participant.withdrawn",
        "participant",
        participant.study_id,
        before={"status": before},
        after={"status": "withdrawn", **counts},
        reason=reason,
        actor=staff.audit_name,
    )
    return counts.get("questionnaires_closed", 0)


# ---------------------------------------------------------------------------------------------
# Staff administration and the audit log


def update_staff(member: StaffUser, role: str, site_codes: list[str], by: StaffUser) -> bool:
    """Set a staff member's role and sites, audited; False when nothing changed."""
    if role not in STAFF_ROLES:
        raise WorkspaceError(_("Please choose a role."), 422)
    unknown = [code for code in site_codes if code not in get_protocol().sites]
    if unknown or (role == "coordinator" and not site_codes):
        raise WorkspaceError(_("Please choose at least one known site."), 422)
    if member.id == by.id and role != "admin":
        raise WorkspaceError(_("You cannot remove your own administrator role."), 409)
    sites = sorted(set(site_codes))
    before = {"role": member.role, "sites": member.site_codes}
    if before == {"role": role, "sites": sites}:
        return False
    member.role = role
    member.site_links = [StaffSite(site_code=code) for code in sites]
    db.session.flush()
    audit.record(
        "staff.updated",
        "staff",
        member.email,
        before=before,
        after={"role": role, "sites": sites},
        actor=by.audit_name,
    )
    return True


def set_staff_active(member: StaffUser, active: bool, by: StaffUser) -> bool:
    """Deactivate (signed out everywhere, links stopped) or reactivate a staff account, audited."""
    if member.id == by.id:
        raise WorkspaceError(_("You cannot deactivate your own account."), 409)
    if member.active == active:
        return False
    member.active = active
    if not active:
        account_services.end_all_sessions(member, reason="account deactivated")
        account_services.revoke_enrolment_links(member)
    db.session.flush()
    audit.record(
        "staff.activated" if active else "staff.deactivated",
        "staff",
        member.email,
        before={"active": not active},
        after={"active": active},
        actor=by.audit_name,
    )
    return True


@dataclass(frozen=True)
class AuditFilters:
    actor: str | None = None
    action: str | None = None
    entity: str | None = None
    start: date | None = None
    end: date | None = None
    page: int = 1

    def query_args(self, **changes) -> dict[str, str]:
        values = {
            "actor": self.actor,
            "action": self.action,
            "entity": self.entity,
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "page": str(self.page) if self.page != 1 else None,
        }
        values.update(changes)
        return {key: value for key, value in values.items() if value}


AUDIT_TEXT = re.compile(r"^[\w.@:+\- ]{1,120}$")


def parse_audit_filters(args: Mapping[str, str]) -> AuditFilters:
    """The audit viewer's filters; anything malformed is a translated 400."""
    values = {}
    for name in ("actor", "action", "entity"):
        value = (args.get(name) or "").strip()
        if value and not AUDIT_TEXT.match(value):
            raise WorkspaceError(_("Please search with letters, digits and . @ : - _ only."))
        values[name] = value or None
    start, end = parse_date_range(args)
    return AuditFilters(**values, start=start, end=end, page=parse_page(args.get("page")))


def audit_events(filters: AuditFilters) -> tuple[list[AuditEvent], bool]:
    """One page of audit events, newest first, and whether there is a next page."""
    query = sa.select(AuditEvent)
    if filters.actor:
        query = query.where(AuditEvent.actor.contains(filters.actor, autoescape=True))
    if filters.action:
        query = query.where(AuditEvent.action.startswith(filters.action, autoescape=True))
    if filters.entity:
        query = query.where(AuditEvent.entity == filters.entity)
    if filters.start:
        query = query.where(
            AuditEvent.at
            >= datetime.combine(filters.start, datetime.min.time(), clock.now().tzinfo)
        )
    if filters.end:
        query = query.where(
            AuditEvent.at
            < datetime.combine(
                filters.end + timedelta(days=1), datetime.min.time(), clock.now().tzinfo
            )
        )
    rows = db.session.scalars(
        query.order_by(AuditEvent.id.desc())
        .limit(PAGE_SIZE + 1)
        .offset((filters.page - 1) * PAGE_SIZE)
    ).all()
    return list(rows[:PAGE_SIZE]), len(rows) > PAGE_SIZE
