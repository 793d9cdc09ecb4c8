"""Planning assignments from the protocol and the visits, and the windows enforced on the server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from patient_portal.audit import AuditEvent
from patient_portal.extensions import db
from patient_portal.questionnaires import services
from patient_portal.questionnaires.models import Assignment
from patient_portal.schedule.models import Visit
from tests.questionnaires.conftest import CALM_WEEK, weekly

MICRO = timedelta(microseconds=1)


def _assignments(participant):
    return db.session.scalars(
        sa.select(Assignment).where(Assignment.participant_id == participant.id)
    ).all()


def test_plan_creates_visit_and_weekly_assignments_once(planned):
    participant = planned()
    rows = _assignments(participant)
    by_visit = [a for a in rows if a.visit_id is not None]
    series = [a for a in rows if a.series_code == "WEEKLY"]
    # M0 3, M1 1, M3 3, M4 1, M6 3, M9 3, M12 3; weekly from day 0 to day 364.
    assert len(by_visit) == 17
    assert [a.occurrence for a in series] == list(range(53))
    assert all(a.status == "planned" for a in rows)
    assert {a.instrument_version for a in rows} == {"1.0"}

    events = db.session.scalar(sa.select(sa.func.count(AuditEvent.id)))
    services.plan_assignments(participant)
    db.session.commit()
    assert len(_assignments(participant)) == 70
    assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id))) == events


def test_visit_window_opens_three_days_before_target_and_closes_after_window(planned):
    participant = planned()
    visit = db.session.scalars(
        sa.select(Visit).where(Visit.participant_id == participant.id, Visit.code == "M1")
    ).one()
    assignment = db.session.scalars(
        sa.select(Assignment).where(Assignment.visit_id == visit.id)
    ).one()
    # Day 28 = 29 December 2026; opens 26 December at 00:00 in Montréal (UTC−5).
    assert assignment.opens_at == datetime(2026, 12, 26, 5, 0, tzinfo=UTC)
    # Window ends day 35 = 5 January 2027: closes at the start of 6 January, local time.
    assert assignment.closes_at == datetime(2027, 1, 6, 5, 0, tzinfo=UTC)


def test_weekly_windows_follow_the_site_wall_clock_across_dst(planned):
    montreal = planned()
    paris = planned(site_code="SLS")
    assert weekly(montreal, 0).opens_at == datetime(2026, 12, 1, 5, 0, tzinfo=UTC)
    assert weekly(paris, 0).opens_at == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    # Day 98 = 9 March 2027 (EST), day 105 = 16 March 2027 (EDT, clocks moved on 14 March).
    assert weekly(montreal, 14).opens_at == datetime(2027, 3, 9, 5, 0, tzinfo=UTC)
    assert weekly(montreal, 14).closes_at == datetime(2027, 3, 16, 4, 0, tzinfo=UTC)
    assert weekly(montreal, 15).opens_at == datetime(2027, 3, 16, 4, 0, tzinfo=UTC)


def test_replanning_follows_moved_and_cancelled_visits(planned):
    participant = planned()
    visit = db.session.scalars(
        sa.select(Visit).where(Visit.participant_id == participant.id, Visit.code == "M1")
    ).one()
    assignment = db.session.scalars(
        sa.select(Assignment).where(Assignment.visit_id == visit.id)
    ).one()
    visit.target_date += timedelta(days=2)
    visit.window_start += timedelta(days=2)
    visit.window_end += timedelta(days=2)
    services.plan_assignments(participant)
    assert assignment.opens_at == datetime(2026, 12, 28, 5, 0, tzinfo=UTC)
    assert assignment.closes_at == datetime(2027, 1, 8, 5, 0, tzinfo=UTC)

    visit.status = "cancelled"
    services.plan_assignments(participant)
    assert assignment.status == "withdrawn"
    visit.status = "planned"
    services.plan_assignments(participant)
    assert assignment.status == "planned"
    db.session.commit()


def test_withdrawn_participant_has_nothing_left_to_answer(planned):
    participant = planned()
    participant.status = "withdrawn"
    services.plan_assignments(participant)
    db.session.commit()
    assert {a.status for a in _assignments(participant)} == {"withdrawn"}


@pytest.mark.parametrize(
    ("offset", "allowed"),
    [(-MICRO, False), (timedelta(0), True), (timedelta(days=7) - MICRO, True)],
)
def test_answers_only_within_the_window(planned, clock, offset, allowed):
    participant = planned()
    assignment = weekly(participant)
    clock.set(assignment.opens_at + offset)
    if allowed:
        assert services.save_answer(assignment, "pain", "4", participant) == 4
    else:
        with pytest.raises(services.QuestionnaireError) as error:
            services.save_answer(assignment, "pain", "4", participant)
        assert error.value.code == "not_open_yet"
    db.session.rollback()


def test_not_started_cannot_begin_after_close(planned, clock):
    participant = planned()
    assignment = weekly(participant)
    clock.set(assignment.closes_at)
    with pytest.raises(services.QuestionnaireError) as error:
        services.save_answer(assignment, "pain", "4", participant)
    assert error.value.code == "closed"
    assert services.state_of(assignment) == "missed"


def test_started_one_may_be_finished_within_the_grace_period_only(planned, clock):
    participant = planned()
    assignment = weekly(participant)
    clock.set(assignment.closes_at - timedelta(minutes=5))
    services.save_answer(assignment, "raynaud", "3", participant)
    db.session.commit()

    grace_end = assignment.closes_at + timedelta(hours=2)
    clock.set(grace_end - MICRO)
    for item_id, raw in CALM_WEEK.items():
        services.save_answer(assignment, item_id, raw, participant)
    db.session.commit()
    clock.set(grace_end)
    with pytest.raises(services.QuestionnaireError) as error:
        services.submit(assignment, participant, "fr")
    assert error.value.code == "closed"
    db.session.rollback()
    clock.set(grace_end - MICRO)
    submission, created = services.submit(assignment, participant, "fr")
    assert created and submission.language == "fr"


def test_overview_lists_open_soon_and_done(planned, clock):
    participant = planned()
    clock.set(datetime(2026, 12, 27, 12, 0, tzinfo=UTC))
    overview = services.participant_questionnaires(participant)
    # The weekly check-in of the 4th week (22–28 December) and M1's questionnaire (from the 26th).
    assert {(a.series_code, a.occurrence) for a in overview.open} == {("WEEKLY", 3), (None, 0)}
    assert [a.occurrence for a in overview.due_soon] == [4]
    assert overview.done == []


def test_overview_lists_the_last_ten_sent_newest_first_and_never_a_missed_one(planned, clock):
    """Late in the year: twelve check-ins sent (one of them late, the day after the next one),
    one missed, one started and still finishable in its grace hours."""
    from patient_portal.questionnaires.models import Submission

    participant = planned()
    series = sorted(
        (a for a in _assignments(participant) if a.series_code == "WEEKLY"),
        key=lambda a: a.occurrence,
    )
    for assignment in series[:12]:
        assignment.status = "completed"
        sent = assignment.opens_at + timedelta(days=1)
        if assignment.occurrence == 2:
            sent = series[3].opens_at + timedelta(days=2)  # sent after week 4's
        db.session.add(
            Submission(
                assignment_id=assignment.id,
                submitted_at=sent,
                language="fr",
                instrument_version="1.0",
                answers={},
                scores={},
                scorer_versions={},
            )
        )
    started = series[13]
    started.status = "in_progress"
    db.session.commit()
    clock.set(started.closes_at + timedelta(minutes=30))

    overview = services.participant_questionnaires(participant)

    newest_first = [11, 10, 9, 8, 7, 6, 5, 4, 2, 3]
    assert [a.occurrence for a in overview.done if a.series_code == "WEEKLY"] == newest_first
    assert len(overview.done) == services.DONE_SHOWN
    shown = overview.open + overview.due_soon + overview.done
    assert series[12] not in shown  # missed: never listed
    assert started in overview.open  # still finishable


def test_every_questionnaire_carries_its_visit_key_however_it_was_written(planned):
    """The dashboard filters by the stored visit key: planned visits' and series' questionnaires,
    and one inserted without it (as a test or an import would), all carry the visit's code or
    the series code."""
    participant = planned()
    codes = dict(db.session.execute(sa.select(Visit.id, Visit.code)).all())
    rows = _assignments(participant)
    assert {a.visit_key for a in rows} >= {"M0", "M3", "WEEKLY"}
    assert all(a.visit_key == (a.series_code or codes[a.visit_id]) for a in rows)

    m3 = next(a for a in rows if a.visit_key == "M3")
    at_m3 = {a.instrument_id for a in rows if a.visit_id == m3.visit_id}
    extra = Assignment(
        participant_id=participant.id,
        visit_id=m3.visit_id,
        occurrence=1,
        instrument_id=next(a.instrument_id for a in rows if a.instrument_id not in at_m3),
        instrument_version="1.0",
        opens_at=m3.opens_at,
        closes_at=m3.closes_at,
    )
    db.session.add(extra)
    db.session.flush()
    assert extra.visit_key == "M3"
