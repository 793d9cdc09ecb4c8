"""Saving answers, submitting and assisted entry, below the web layer."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from patient_portal.audit import AuditEvent, verify_chain
from patient_portal.extensions import db
from patient_portal.questionnaires import services
from patient_portal.questionnaires.engine import AnswerError
from patient_portal.questionnaires.models import Alert, Answer, Submission
from tests.questionnaires.conftest import CALM_WEEK, weekly


def _answer(assignment, item_id):
    return db.session.scalars(
        sa.select(Answer).where(Answer.assignment_id == assignment.id, Answer.item_id == item_id)
    ).one_or_none()


def _fill(assignment, actor, answers=CALM_WEEK):
    for item_id, raw in answers.items():
        services.save_answer(assignment, item_id, raw, actor)
    db.session.commit()


def test_last_write_wins_and_every_write_is_audited(planned):
    participant = planned()
    assignment = weekly(participant)
    services.save_answer(assignment, "pain", "3", participant)
    db.session.commit()
    services.save_answer(assignment, "pain", "6", participant)
    db.session.commit()
    assert _answer(assignment, "pain").value == 6
    events = db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.action == "answer.saved").order_by(AuditEvent.id)
    ).all()
    assert [(e.before, e.after["value"]) for e in events] == [
        (None, 3),
        ({"item": "pain", "value": 3}, 6),
    ]
    assert events[0].actor == f"participant:{participant.study_id}"
    assert assignment.status == "in_progress" and assignment.started_at is not None
    assert verify_chain() is None


@pytest.mark.parametrize(
    ("item_id", "raw", "code"),
    [
        ("pain", "11", "out_of_range"),
        ("pain", "4.5", "wrong_type"),
        ("pain", ["1", "2"], "wrong_type"),
        ("anything_new", "maybe", "wrong_type"),
        ("new_areas", "skin", "not_enabled"),
        ("urgent_note", "x", "not_answerable"),
        ("nope", "1", "unknown_item"),
    ],
)
def test_a_bad_value_leaves_the_earlier_answer_untouched(planned, item_id, raw, code):
    participant = planned()
    assignment = weekly(participant)
    services.save_answer(assignment, "pain", "3", participant)
    db.session.commit()
    with pytest.raises(AnswerError) as error:
        services.save_answer(assignment, item_id, raw, participant)
    assert error.value.code == code
    db.session.rollback()
    assert _answer(assignment, "pain").value == 3
    assert db.session.scalar(sa.select(sa.func.count(Answer.id))) == 1


def test_submit_is_idempotent_scores_and_locks(planned):
    participant = planned()
    assignment = weekly(participant)
    _fill(assignment, participant)
    first, created = services.submit(assignment, participant, "en")
    db.session.commit()
    again, created_again = services.submit(assignment, participant, "fr")
    db.session.commit()
    assert created and not created_again and first.id == again.id
    assert db.session.scalar(sa.select(sa.func.count(Submission.id))) == 1
    assert first.language == "en" and first.instrument_version == "1.0"
    assert first.answers["pain"] == 4 and "new_areas" not in first.answers
    assert assignment.status == "completed"
    with pytest.raises(services.QuestionnaireError) as error:
        services.save_answer(assignment, "pain", "9", participant)
    assert error.value.code == "submitted"
    db.session.rollback()
    assert _answer(assignment, "pain").value == 4


def test_scores_and_scorer_versions_are_stored(planned, clock):
    participant = planned()
    from patient_portal.questionnaires.models import Assignment

    assignment = db.session.scalars(
        sa.select(Assignment).where(
            Assignment.participant_id == participant.id,
            Assignment.instrument_id == "patient_global",
        )
    ).first()
    clock.set(assignment.opens_at)
    services.save_answer(assignment, "global", "6", participant)
    submission, _ = services.submit(assignment, participant, "fr")
    db.session.commit()
    assert submission.scores == {"patient_global": 6}
    assert submission.scorer_versions == {"patient_global": "sum 1.0"}


def test_submit_refuses_missing_required_answers(planned):
    participant = planned()
    assignment = weekly(participant)
    services.save_answer(assignment, "pain", "3", participant)
    with pytest.raises(services.QuestionnaireError) as error:
        services.submit(assignment, participant, "fr")
    assert error.value.code == "incomplete" and error.value.status == 422
    assert "raynaud" in error.value.missing
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count(Submission.id))) == 0


def test_alerts_are_raised_once_per_rule(planned):
    participant = planned()
    assignment = weekly(participant)
    answers = dict(CALM_WEEK, breathing="8", anything_new="yes")
    _fill(assignment, participant, answers)
    services.save_answer(assignment, "new_areas", ["heart_chest", "skin"], participant)
    services.submit(assignment, participant, "fr")
    services.submit(assignment, participant, "fr")
    db.session.commit()
    alerts = db.session.scalars(sa.select(Alert).order_by(Alert.id)).all()
    assert [a.rule_id for a in alerts] == ["breathing_severe", "new_breathing_or_heart"]
    assert all(a.participant_id == participant.id and a.acknowledged_at is None for a in alerts)


def test_assisted_entry_records_the_staff_member(planned, make_staff):
    participant = planned()
    staff = make_staff()
    assignment = weekly(participant)
    _fill(assignment, staff)
    submission, _ = services.submit(assignment, staff, "fr")
    db.session.commit()
    assert _answer(assignment, "pain").entered_by_staff_id == staff.id
    assert submission.entered_by_staff_id == staff.id
    event = db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.action == "questionnaire.submitted")
    ).one()
    assert event.actor == f"staff:{staff.email}"
    assert event.reason == f"entered on behalf of participant:{participant.study_id}"


def test_another_participant_cannot_write(planned):
    owner = planned()
    other = planned()
    with pytest.raises(PermissionError):
        services.save_answer(weekly(owner), "pain", "3", other)
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count(Answer.id))) == 0
