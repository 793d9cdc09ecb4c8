"""The completion tally: the database's triggers keep it equal to a recount after every kind of
write, and the dashboard's figures read from it are the figures counted row by row, at any
moment, including the instant a questionnaire opens, closes or its grace period ends."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from patient_portal import clock
from patient_portal.accounts import services as account_services
from patient_portal.accounts.models import Participant
from patient_portal.extensions import db
from patient_portal.questionnaires import services as questionnaire_services
from patient_portal.questionnaires.models import Assignment
from patient_portal.reminders.models import Reminder
from patient_portal.schedule import services as schedule_services
from patient_portal.schedule.models import Visit
from patient_portal.staff import dashboard as services
from patient_portal.staff import tally
from patient_portal.staff.models import CompletionTally

MICROSECOND = timedelta(microseconds=1)


def _assert_tally_matches_recount() -> None:
    assert tally.differences() == (0, [])


def _exact(query) -> Counter:
    counts: Counter = Counter()
    for *key, count in db.session.execute(query):
        counts[tuple(key)] += int(count)
    return +counts  # drop zeros


def _open_questionnaire(person: Participant, now) -> Assignment:
    """One of the participant's questionnaires open now and not started."""
    current = db.session.scalars(
        sa.select(Assignment).where(
            Assignment.participant_id == person.id,
            Assignment.opens_at <= now,
            Assignment.closes_at > now,
            Assignment.status == "planned",
        )
    ).first()
    assert current is not None
    return current


def _summary_both_ways(filters: services.Filters, now) -> tuple[Counter, Counter]:
    return (
        _exact(services._tallied_state_counts(filters, now)),
        _exact(services._exact_state_counts(filters, now)),
    )


def test_tally_follows_planning_answers_submission_day0_change_and_withdrawal(
    app, in_year, coordinator
):
    person = in_year("JGH", days=40, habit="some")
    in_year("CHUM", days=100, habit="all")
    _assert_tally_matches_recount()
    assert db.session.scalar(sa.select(sa.func.sum(CompletionTally.total))) == db.session.scalar(
        sa.select(sa.func.count()).select_from(Assignment)
    )

    # A participant starts this week's check-in: planned -> in progress.
    now = clock.now()
    current = _open_questionnaire(person, now)
    instrument = questionnaire_services.get_instrument(current.instrument_id)
    item = next(item for item in instrument.items if item.type == "rating_0_10")
    questionnaire_services.save_answer(current, item.id, "3", person)
    db.session.commit()
    _assert_tally_matches_recount()

    # A coordinator moves day 0: every window still to come moves to other hours.
    schedule_services.change_day0(person, person.day0 + timedelta(days=2), "Infusion moved")
    db.session.commit()
    _assert_tally_matches_recount()

    # Withdrawal closes what could still be answered, in one bulk UPDATE.
    closed = account_services.withdraw_participant(person, coordinator, "Moved abroad")
    db.session.commit()
    assert closed > 0
    _assert_tally_matches_recount()

    # Rows removed (as an erasure of a test enrolment would) leave the tally too.
    to_come = sa.select(Assignment.id).where(
        Assignment.participant_id == person.id, Assignment.opens_at > now + timedelta(days=7)
    )
    db.session.execute(sa.delete(Reminder).where(Reminder.assignment_id.in_(to_come)))
    assert db.session.execute(sa.delete(Assignment).where(Assignment.id.in_(to_come))).rowcount
    db.session.commit()
    _assert_tally_matches_recount()


def test_tally_follows_submission(app, in_year):
    person = in_year("JGH", days=40, habit="none")
    now = clock.now()
    current = _open_questionnaire(person, now)
    before = services.completion_summary(services.Filters(sites=("JGH",)), now)
    done_before = sum(row.counts["completed"] for row in before)
    from patient_portal.demo import answer_and_submit

    answer_and_submit(current, person, now, level=2)
    db.session.commit()
    _assert_tally_matches_recount()
    services.forget_cached_dashboards()
    after = services.completion_summary(services.Filters(sites=("JGH",)), now)
    assert sum(row.counts["completed"] for row in after) == done_before + 1


def _moments_around(assignments: list[Assignment]) -> list:
    """Instants at which a state changes, a microsecond either side, and mid-hour instants."""
    grace = questionnaire_services.grace()
    moments = []
    for assignment in assignments:
        for edge in (assignment.opens_at, assignment.closes_at, assignment.closes_at + grace):
            moments += [edge - MICROSECOND, edge, edge + MICROSECOND, edge + timedelta(minutes=37)]
    return moments


def test_summary_from_the_tally_equals_the_row_by_row_count_at_every_edge(app, in_year):
    person = in_year("JGH", days=40, habit="some")
    in_year("JGH", days=3, habit="all")
    in_year("CHUM", days=200, habit="some")
    # One questionnaire started and left unfinished, to be within its grace period after closing.
    started = db.session.scalars(
        sa.select(Assignment)
        .where(Assignment.participant_id == person.id, Assignment.status == "planned")
        .order_by(Assignment.opens_at)
    ).first()
    started.status = "in_progress"
    started.started_at = started.opens_at + timedelta(minutes=5)
    db.session.commit()
    _assert_tally_matches_recount()
    sample = db.session.scalars(
        sa.select(Assignment).where(Assignment.participant_id == person.id).limit(12)
    ).all()
    filters_to_try = [
        services.Filters(sites=("JGH", "CHUM")),
        services.Filters(sites=("JGH",), visit="M1"),
        services.Filters(sites=("JGH",), instrument=started.instrument_id),
    ]
    checked = 0
    for now in [*_moments_around([started]), *_moments_around(sample)]:
        for filters in filters_to_try:
            from_tally, counted = _summary_both_ways(filters, now)
            assert from_tally == counted, (now, filters)
            checked += 1
        # The plain conditions the lists and the matrix filter use agree with the state rule.
        for state in services.STATES:
            by_rule = sa.select(Assignment.id).where(services.state_expression(now) == state)
            by_condition = sa.select(Assignment.id).where(services.state_condition(state, now))
            assert set(db.session.scalars(by_rule)) == set(db.session.scalars(by_condition)), (
                now,
                state,
            )
    assert checked > 100
    # The started one is still open a microsecond before its grace period ends, missed at its end.
    end_of_grace = started.closes_at + questionnaire_services.grace()
    visit_key = started.series_code or db.session.get(Visit, started.visit_id).code
    key = ("JGH", visit_key, started.instrument_id)
    jgh = services.Filters(sites=("JGH",))
    before = _summary_both_ways(jgh, end_of_grace - MICROSECOND)[0]
    at_end = _summary_both_ways(jgh, end_of_grace)[0]
    assert at_end[(*key, "missed")] == before[(*key, "missed")] + 1
    assert at_end[(*key, "open")] == before[(*key, "open")] - 1


def _weeks(query) -> dict[int, tuple[int, int]]:
    """(week, completed, closed) rows summed per week, as the chart does; empty weeks left out."""
    totals: dict[int, tuple[int, int]] = {}
    for week, done, closed in db.session.execute(query):
        previous = totals.get(int(week), (0, 0))
        totals[int(week)] = (previous[0] + int(done or 0), previous[1] + int(closed or 0))
    return {week: figures for week, figures in totals.items() if figures != (0, 0)}


@pytest.mark.parametrize("period", [None, (-60, -5), (-20, 0)])
def test_chart_from_the_tally_equals_the_row_by_row_count(app, in_year, period):
    in_year("JGH", days=100, habit="some")
    in_year("JGH", days=30, habit="all")
    now_today = clock.now()
    for now in (
        now_today,
        now_today.replace(minute=0, second=0, microsecond=0),
        now_today.replace(hour=0, minute=0, second=0, microsecond=0),
    ):
        start = end = None
        if period:
            start = now.date() + timedelta(days=period[0])
            end = now.date() + timedelta(days=period[1])
        filters = services.Filters(sites=("JGH",), start=start, end=end)
        _, start_at, end_at = services._chart_bounds(filters, now)
        from_tally = _weeks(services._tallied_weekly_counts(filters, now, start_at, end_at))
        counted = _weeks(services._exact_weekly_counts(filters, now, start_at, end_at))
        assert from_tally == counted, (now, period)
        assert sum(closed for _, closed in counted.values()) > 0


def test_tally_command_reports_a_disagreement_and_repairs_it(app, in_year):
    in_year("JGH", days=40, habit="some")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["workspace", "tally"])
    assert result.exit_code == 0, result.output
    assert "agree with the assignments" in result.output
    # Something wrote behind the triggers' back (a restore of one table, say).
    db.session.execute(
        sa.update(CompletionTally)
        .where(CompletionTally.status == "completed")
        .values(total=CompletionTally.total + 5)
    )
    db.session.commit()
    result = runner.invoke(args=["workspace", "tally"])
    assert result.exit_code == 1
    assert "disagree" in result.output
    result = runner.invoke(args=["workspace", "tally", "--repair"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    _assert_tally_matches_recount()


@pytest.mark.commits
def test_tally_is_filled_for_assignments_written_before_the_migration(app, make_participant):
    """The migration counts what is already there: downgrade, write, upgrade again."""
    from flask_migrate import downgrade, upgrade

    person = make_participant(site_code="JGH", day0=date.today() - timedelta(days=10))
    db.session.commit()
    planned = db.session.scalar(
        sa.select(sa.func.count()).where(Assignment.participant_id == person.id)
    )
    assert planned > 0
    db.session.remove()
    try:
        downgrade(revision="5e1a7c3b9d20")
    finally:
        upgrade()
    assert db.session.scalar(sa.select(sa.func.sum(CompletionTally.total))) == planned
    _assert_tally_matches_recount()
    assert db.session.get(Participant, person.id) is not None


@pytest.mark.commits
def test_concurrent_submissions_on_the_same_tally_rows_lose_no_count(app, make_participant):
    """Participants who started the same day share tally rows; four writers completing their
    questionnaires at once, each in its own transactions, must leave a tally equal to a recount."""
    day0 = clock.now().date() - timedelta(days=100)
    people = [make_participant(site_code="JGH", day0=day0) for _ in range(8)]
    db.session.commit()
    now = clock.now()
    work = [
        list(
            db.session.scalars(
                sa.select(Assignment.id).where(
                    Assignment.participant_id.in_([p.id for p in people[n::4]]),
                    Assignment.closes_at <= now,
                )
            )
        )
        for n in range(4)
    ]
    assert all(work)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def complete(ids: list[int]) -> None:
        try:
            with app.app_context():
                start.wait()
                for assignment_id in ids:
                    db.session.get_one(Assignment, assignment_id).status = "completed"
                    db.session.commit()
                db.session.remove()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=complete, args=(ids,)) for ids in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    db.session.expire_all()
    _assert_tally_matches_recount()
    completed = db.session.scalar(
        sa.select(sa.func.sum(CompletionTally.total)).where(CompletionTally.status == "completed")
    )
    assert completed == sum(len(ids) for ids in work)
