"""Pages a participant opens every day run the same number of SQL statements in week 1 and in
week 40: nothing loads one row at a time from a list that grows through the year."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from patient_portal.extensions import db
from patient_portal.questionnaires.models import Assignment, Submission


def _counted(request) -> int:
    """The statements one request sends, the test's own savepoints left out (production has
    none: each request there is its own transaction)."""
    count = 0

    def counter(_connection, _cursor, statement: str, *_args) -> None:
        nonlocal count
        if not statement.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO")):
            count += 1

    sa.event.listen(db.engine, "before_cursor_execute", counter)
    try:
        assert request().status_code == 200
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", counter)
    return count


def _statements(app, client, path: str) -> int:
    client.get(path)  # warm: the session's last-seen time is written on the first visit
    return _counted(lambda: client.get(path))


def _send_past_check_ins(participant, how_many: int) -> None:
    """Check-ins already sent, as after weeks of taking part."""
    past = db.session.scalars(
        sa.select(Assignment)
        .where(Assignment.participant_id == participant.id, Assignment.series_code == "WEEKLY")
        .order_by(Assignment.occurrence)
        .limit(how_many)
    ).all()
    for assignment in past:
        assignment.status = "completed"
        db.session.add(
            Submission(
                assignment_id=assignment.id,
                submitted_at=assignment.closes_at - timedelta(days=1),
                language="fr",
                instrument_version=assignment.instrument_version,
            )
        )
    db.session.commit()


@pytest.mark.parametrize("path", ["/home", "/questionnaires"])
def test_daily_pages_do_not_grow_with_the_weeks(app, make_participant, sign_in, path):
    day0 = date.today() - timedelta(weeks=40)
    early, late = make_participant(day0=day0), make_participant(day0=day0)
    _send_past_check_ins(early, 1)
    _send_past_check_ins(late, 30)
    counts = []
    for participant in (early, late):
        client = app.test_client()
        sign_in(client, participant)
        counts.append(_statements(app, client, path))
    assert counts[0] == counts[1], f"{path}: {counts[0]} statements in week 1, {counts[1]} later"


def test_home_costs_three_statements(app, make_participant, sign_in):
    """The session with its owner, the visits, the questionnaires with their submissions; the
    home notices (in-app reminders, a new device) only while one may be showing (issue 19)."""
    participant = make_participant(day0=date.today() - timedelta(weeks=3))
    client = app.test_client()
    sign_in(client, participant)
    assert _statements(app, client, "/home") == 3


def test_home_looks_for_in_app_reminders_while_one_may_show(
    app, client, csrf_token, make_participant, sign_in
):
    participant = make_participant(day0=date.today() - timedelta(weeks=3))
    sign_in(client, participant)
    token = csrf_token(client, "/reminders")
    assert client.post("/reminders/test/inapp", data={"csrf_token": token}).status_code == 200
    home = client.get("/home").get_data(as_text=True)
    assert "Rappel d’essai CARE-SSc" in home
    # While a notice may show: the in-app reminders, a new device's notice, and the reports
    # whose alerts the team may have seen (docs/safety.md) are looked for.
    assert _statements(app, client, "/home") == 6


def _this_weeks_check_in(participant) -> Assignment:
    assignment = db.session.scalars(
        sa.select(Assignment).where(
            Assignment.participant_id == participant.id, Assignment.series_code == "WEEKLY"
        )
    ).first()
    assert assignment is not None
    return assignment


def test_a_questionnaire_item_costs_three_statements(app, make_participant, sign_in):
    """The session with its owner, the questionnaire, its answers."""
    participant = make_participant(day0=date.today() - timedelta(days=1))
    assignment = _this_weeks_check_in(participant)
    client = app.test_client()
    sign_in(client, participant)
    assert _statements(app, client, f"/questionnaires/{assignment.id}/items/raynaud") == 3


def test_an_answer_costs_five_statements(app, make_participant, sign_in, csrf_token):
    """The session with its owner; the questionnaire locked with its submission and answers;
    the answer written; the audit stream's position taken; the event, whose trigger moves the
    stream's head (issue 19)."""
    participant = make_participant(day0=date.today() - timedelta(days=1))
    assignment = _this_weeks_check_in(participant)
    client = app.test_client()
    sign_in(client, participant)
    path = f"/questionnaires/{assignment.id}/items/raynaud"
    token = csrf_token(client, path)
    headers = {"HX-Request": "true", "X-CSRFToken": token}
    client.post(path, data={"value": "3"}, headers=headers)  # the first answer inserts
    assert _counted(lambda: client.post(path, data={"value": "4"}, headers=headers)) == 5
