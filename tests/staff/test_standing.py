"""The questionnaire standing: each participant's row, brought up to date when the dashboard
reads it, says what a recount of their questionnaires says, after every kind of write and at
every moment a state changes by the clock alone."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from patient_portal import clock as portal_clock
from patient_portal.accounts import services as account_services
from patient_portal.accounts.models import Participant
from patient_portal.extensions import db
from patient_portal.questionnaires import services as questionnaire_services
from patient_portal.questionnaires.models import Assignment
from patient_portal.reminders.models import Reminder
from patient_portal.schedule import services as schedule_services
from patient_portal.staff import standing
from patient_portal.staff.models import QuestionnaireStanding
from tests.staff.test_tally import _moments_around, _open_questionnaire


def _agrees(now) -> None:
    assert standing.differences(now) == [], now


def _row(person: Participant) -> QuestionnaireStanding:
    db.session.expire_all()
    row = db.session.get(QuestionnaireStanding, person.id)
    assert row is not None
    return row


def test_standing_follows_answers_day0_change_withdrawal_and_deletion(app, in_year, coordinator):
    person = in_year("JGH", days=40, habit="some")
    in_year("CHUM", days=100, habit="all")
    now = portal_clock.now()
    _agrees(now)
    row = _row(person)
    assert (row.open, row.missed, row.upcoming, row.withdrawn) == (True, True, True, False)
    assert {",M0,", ",M1,", ",WEEKLY,"} <= {f",{key}," for key in row.visits.split(",") if key}

    # Nothing written and the clock still before any change: nothing to recount.
    assert standing.bring_up_to_date(now) == 0

    # A participant starts this week's check-in: their row alone is recounted.
    current = _open_questionnaire(person, now)
    instrument = questionnaire_services.get_instrument(current.instrument_id)
    item = next(item for item in instrument.items if item.type == "rating_0_10")
    questionnaire_services.save_answer(current, item.id, "3", person)
    db.session.commit()
    assert standing.bring_up_to_date(now) == 1
    _agrees(now)

    schedule_services.change_day0(person, person.day0 + timedelta(days=2), "Infusion moved")
    db.session.commit()
    _agrees(now)

    assert account_services.withdraw_participant(person, coordinator, "Moved abroad") > 0
    db.session.commit()
    _agrees(now)
    assert _row(person).withdrawn

    # Questionnaires still to come removed (as an erasure of a test enrolment would).
    to_come = sa.select(Assignment.id).where(
        Assignment.participant_id == person.id, Assignment.opens_at > now + timedelta(days=7)
    )
    db.session.execute(sa.delete(Reminder).where(Reminder.assignment_id.in_(to_come)))
    assert db.session.execute(sa.delete(Assignment).where(Assignment.id.in_(to_come))).rowcount
    db.session.commit()
    _agrees(now)

    # Every questionnaire of a participant whose day 0 is a month away removed: none left.
    later = in_year("JGH", days=-30, habit="none")
    _agrees(now)
    db.session.execute(sa.delete(Reminder).where(Reminder.participant_id == later.id))
    db.session.execute(sa.delete(Assignment).where(Assignment.participant_id == later.id))
    db.session.commit()
    _agrees(now)
    row = _row(later)
    assert not (row.upcoming or row.open or row.completed or row.missed or row.withdrawn)
    assert row.visits == ""


def test_standing_changes_with_the_clock_at_every_edge(app, in_year):
    """Opening, closing and the end of a started questionnaire's grace period each make the row
    due at that moment, never later: recounting only due rows agrees with a full recount a
    microsecond either side of each."""
    person = in_year("JGH", days=40, habit="some")
    started = db.session.scalars(
        sa.select(Assignment)
        .where(Assignment.participant_id == person.id, Assignment.status == "planned")
        .order_by(Assignment.closes_at.desc())
    ).first()
    assert started is not None
    started.status = "in_progress"
    started.started_at = started.opens_at + timedelta(minutes=5)
    db.session.commit()
    sample = db.session.scalars(
        sa.select(Assignment)
        .where(Assignment.participant_id == person.id)
        .order_by(Assignment.opens_at)
        .limit(8)
    ).all()
    moments = sorted([*_moments_around([started]), *_moments_around(sample)])
    for now in moments:  # forward in time, as the clock goes
        _agrees(now)
    end_of_grace = started.closes_at + questionnaire_services.grace()
    assert end_of_grace in moments


def test_the_state_filter_counts_a_missed_questionnaire_the_moment_it_closes(
    app, now, in_year, client, sign_in, coordinator
):
    """Through the page: the matrix's count of who has something missed moves when a window
    closes, with nothing written in between."""
    person = in_year("JGH", days=40, habit="all")
    soonest = db.session.scalars(
        sa.select(Assignment)
        .where(
            Assignment.participant_id == person.id,
            Assignment.status == "planned",
            Assignment.closes_at > now(),
        )
        .order_by(Assignment.closes_at)
    ).first()
    assert soonest is not None

    def missed_page(at) -> str:
        now.set(at)
        sign_in(client, coordinator)  # days later: a new staff session
        page = client.get("/staff/dashboard?state=missed")
        assert page.status_code == 200
        return page.get_data(as_text=True)

    before = missed_page(soonest.closes_at - timedelta(seconds=1))
    after = missed_page(soonest.closes_at + timedelta(seconds=1))
    assert "0 participants match these filters." in before
    assert "1 participant matches these filters." in after
    assert f'href="/staff/participants/{person.study_id}"' in after


@pytest.mark.commits
def test_standing_is_filled_for_questionnaires_written_before_the_migration(app, make_participant):
    """The migration marks every participant who has questionnaires due for a recount."""
    from flask_migrate import downgrade, upgrade

    person = make_participant(site_code="JGH", day0=date.today() - timedelta(days=10))
    db.session.commit()
    person_id = person.id
    db.session.remove()
    try:
        downgrade(revision="7e2c4b9a1d05")
    finally:
        upgrade()
    assert db.session.get(QuestionnaireStanding, person_id).fresh_until == 0
    _agrees(portal_clock.now())


def test_tally_command_finds_a_standing_written_behind_the_triggers_and_recounts_it(app, in_year):
    """A restore that wrote the standing alone (or dropped rows) is reported, and repaired."""
    person = in_year("JGH", days=40, habit="some")
    other = in_year("CHUM", days=100, habit="all")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["workspace", "tally"])
    assert result.exit_code == 0, result.output
    assert "agree" in result.output

    db.session.execute(
        sa.update(QuestionnaireStanding)
        .where(QuestionnaireStanding.participant_id == person.id)
        .values(missed=False, fresh_until=None)
    )
    db.session.execute(
        sa.delete(QuestionnaireStanding).where(QuestionnaireStanding.participant_id == other.id)
    )
    db.session.commit()
    result = runner.invoke(args=["workspace", "tally"])
    assert result.exit_code == 1
    assert "standing is off for 2 participant(s)" in result.output

    result = runner.invoke(args=["workspace", "tally", "--repair"])
    assert result.exit_code == 0, result.output
    assert "recounted for 2 participants" in result.output
    _agrees(portal_clock.now())
    assert _row(person).missed


def test_the_background_workers_pass_recounts_the_rows_the_clock_made_due(app, in_year):
    """The wave of rows due when a site's windows turn at midnight is recounted by the worker
    (`flask reminders dispatch --loop` sends `worker_pass` at each pass), not by a coordinator's
    request."""
    from patient_portal import signals

    person = in_year("JGH", days=40, habit="some")
    now = portal_clock.now()
    standing.bring_up_to_date(now)
    turn = _row(person).fresh_until
    assert turn is not None and turn > now.timestamp()
    later = now + timedelta(seconds=turn - int(now.timestamp()) + 1)

    signals.worker_pass.send(later)

    assert _row(person).fresh_until > later.timestamp()
    assert standing.bring_up_to_date(later) == 0
    _agrees(later)
