"""Pages a participant opens every day run the same number of SQL statements in week 1 and in
week 40: nothing loads one row at a time from a list that grows through the year."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from patient_portal.extensions import db
from patient_portal.questionnaires.models import Assignment, Submission


def _statements(app, client, path: str) -> int:
    count = 0

    def counter(*_args) -> None:
        nonlocal count
        count += 1

    client.get(path)  # warm: the session's last-seen time is written on the first visit
    sa.event.listen(db.engine, "before_cursor_execute", counter)
    try:
        assert client.get(path).status_code == 200
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", counter)
    return count


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
