"""A participant's page for coordinators: answers and scores, alerts, withdrawal, history."""

from __future__ import annotations

import re

import sqlalchemy as sa

from patient_portal import clock, signals
from patient_portal.audit import AuditEvent, verify_chain
from patient_portal.extensions import db
from patient_portal.questionnaires.models import Alert, Answer, Assignment
from patient_portal.questionnaires.services import state_of


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def test_participant_page_shows_answers_scores_states_alerts_and_history(signed_in, in_year):
    in_year("JGH", days=10, habit="all")
    page = _text(signed_in.get("/staff/participants/JGH-001"))
    assert "Submitted answers and scores" in page
    # An answer as the participant read it, with the question's English text.
    assert "out of 10" in page
    assert "Completed" in page and "Upcoming" in page
    assert "Shortness of breath this week" in page and "Acknowledge this alert" in page
    # The history in sentences, never the event codes.
    assert "JGH-001 submitted “" in page and "The portal planned the questionnaires" in page
    assert "questionnaire.submitted" not in page and "assignments.planned" not in page


def test_acknowledging_from_the_participant_page_records_the_note(signed_in, in_year, csrf_token):
    in_year("JGH", days=10, habit="all")
    alert = db.session.scalar(sa.select(Alert))
    token = csrf_token(signed_in, "/staff/participants/JGH-001")
    response = signed_in.post(
        f"/staff/alerts/{alert.id}/acknowledge",
        data={
            "csrf_token": token,
            "outcome": "no_answer",
            "note": "Seen at visit",
            "next": "/staff/participants/JGH-001",
        },
    )
    assert response.status_code == 303
    page = _text(signed_in.get("/staff/participants/JGH-001"))
    assert "Acknowledged by" in page and "Note: Seen at visit" in page
    assert "Outcome: Called, no answer" in page


def test_acknowledging_needs_an_outcome(signed_in, in_year, csrf_token):
    in_year("JGH", days=10, habit="all")
    alert = db.session.scalar(sa.select(Alert))
    token = csrf_token(signed_in, "/staff/participants/JGH-001")
    response = signed_in.post(
        f"/staff/alerts/{alert.id}/acknowledge", data={"csrf_token": token, "note": "Seen"}
    )
    assert response.status_code == 422
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).acknowledged_at is None


def test_withdrawal_closes_questionnaires_keeps_data_and_is_audited(
    signed_in, in_year, csrf_token, app
):
    person = in_year("JGH", days=40, habit="some")
    answers_before = db.session.scalar(sa.select(sa.func.count(Answer.id)))
    called = []
    token = csrf_token(signed_in, "/staff/participants/JGH-001")
    with signals.participant_withdrawn.connected_to(lambda participant: called.append(participant)):
        response = signed_in.post(
            "/staff/participants/JGH-001/withdraw",
            data={"csrf_token": token, "reason": "Moved abroad"},
        )
    assert response.status_code == 303
    db.session.expire_all()
    assert person.status == "withdrawn"
    assert [p.study_id for p in called] == ["JGH-001"]
    assignments = db.session.scalars(
        sa.select(Assignment).where(Assignment.participant_id == person.id)
    ).all()
    states = {state_of(a) for a in assignments}
    assert states <= {"completed", "withdrawn", "missed"} and "completed" in states
    # What had already closed keeps its state: a missed questionnaire is not rewritten.
    assert all(a.status != "withdrawn" for a in assignments if a.closes_at <= clock.now())
    assert any(a.status == "withdrawn" for a in assignments)
    assert db.session.scalar(sa.select(sa.func.count(Answer.id))) == answers_before
    event = db.session.scalar(
        sa.select(AuditEvent).where(AuditEvent.action == "participant.withdrawn")
    )
    assert event.reason == "Moved abroad" and event.before == {"status": "active"}
    assert verify_chain() is None
    page = _text(signed_in.get("/staff/participants/JGH-001"))
    assert "This participant has withdrawn." in page and "Moved abroad" in page
    # The dashboard no longer lists them as missing anything.
    dashboard = _text(signed_in.get("/staff/dashboard?state=open"))
    assert "0 participants match these filters." in dashboard


def test_withdrawal_needs_a_reason_and_happens_once(signed_in, in_year, csrf_token):
    person = in_year("JGH", days=40)
    token = csrf_token(signed_in, "/staff/participants/JGH-001")
    response = signed_in.post(
        "/staff/participants/JGH-001/withdraw", data={"csrf_token": token, "reason": "  "}
    )
    assert response.status_code == 422
    assert "Please give the reason for the withdrawal." in _text(response)
    db.session.expire_all()
    assert person.status == "active"
    signed_in.post(
        "/staff/participants/JGH-001/withdraw", data={"csrf_token": token, "reason": "Own choice"}
    )
    again = signed_in.post(
        "/staff/participants/JGH-001/withdraw", data={"csrf_token": token, "reason": "Twice"}
    )
    assert again.status_code == 409
    assert "already withdrawn" in _text(again)


def test_a_withdrawn_participant_cannot_sign_in_or_use_a_session(
    client, sign_in, in_year, coordinator
):
    from patient_portal.accounts.services import withdraw_participant

    person = in_year("JGH", days=40)
    sign_in(client, person)
    assert client.get("/home").status_code == 200
    withdraw_participant(person, coordinator, "Own choice")
    db.session.commit()
    response = client.get("/home")
    assert response.status_code == 302 and "/sign-in" in response.headers["Location"]
