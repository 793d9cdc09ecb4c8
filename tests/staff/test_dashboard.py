"""The completion dashboard: figures a coordinator can check by hand, filters with and without
htmx, refused input, and a statement count that does not grow with the participants."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from patient_portal.extensions import db
from patient_portal.questionnaires.models import Assignment
from patient_portal.staff import dashboard as services


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def test_dashboard_shows_completion_matrix_follow_up_and_chart(signed_in, in_year):
    in_year("JGH", days=40, habit="some")
    in_year("JGH", days=10, habit="all")
    in_year("CHUM", days=40, habit="all")
    response = signed_in.get("/staff/dashboard")
    assert response.status_code == 200
    page = _text(response)
    assert "JGH-001" in page and "JGH-002" in page
    assert "CHUM-001" not in page  # not this coordinator's site
    assert "2 participants match these filters." in page
    assert "Missed" in page and "Completed" in page
    assert "<svg" in page and "Questionnaires completed, by week of closing" in page
    # The weekly check-in of the participant who answers everything raised an alert.
    assert "Shortness of breath this week" in page and "breathing_severe" not in page
    assert "No activity for 14 days" in page
    assert response.headers["Vary"].count("HX-Request") == 1


def test_summary_counts_agree_with_the_assignments(app, in_year, coordinator):
    person = in_year("JGH", days=40, habit="some")
    filters = services.Filters(sites=("JGH",))
    now = services.clock.now()
    summary = services.completion_summary(filters, now)
    assignments = db.session.scalars(
        sa.select(Assignment).where(Assignment.participant_id == person.id)
    ).all()
    from patient_portal.questionnaires.services import state_of

    by_state = {}
    for a in assignments:
        state = state_of(a, now)
        state = "open" if state == "in_progress" else state
        by_state[state] = by_state.get(state, 0) + 1
    for state in services.STATES:
        assert sum(row.counts[state] for row in summary) == by_state.get(state, 0)
    assert sum(row.counts["missed"] for row in summary) >= 1


def test_filters_narrow_the_results_and_the_fragment_is_only_the_results(signed_in, in_year):
    in_year("JGH", days=40, habit="some")
    in_year("JGH", days=200, habit="all")
    page = _text(signed_in.get("/staff/dashboard?visit=M6&state=completed"))
    assert "1 participant matches these filters." in page
    assert "JGH-002" in page and 'href="/staff/participants/JGH-001"' not in page
    assert '<option value="M6" selected>' in page
    fragment = signed_in.get("/staff/dashboard?study_id=jgh-001", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    body = _text(fragment)
    assert "<html" not in body and 'id="filters"' not in body
    assert fragment.headers["HX-Push-Url"] == "/staff/dashboard?study_id=JGH-001"
    assert "1 participant matches these filters." in body


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("visit=M99", "This visit does not exist."),
        ("instrument=haq", "This questionnaire does not exist."),
        ("state=lost", "This state does not exist."),
        ("study_id=JGH%27%3B--", "A study ID has only letters, digits and hyphens."),
        ("site=MARS", "This site does not exist."),
        ("from=2026-13-01", "must be a date written year-month-day."),
        ("from=2026-12-01&to=2026-01-01", "The start of the period must be before its end."),
        ("from=2020-01-01&to=2026-01-01", "Please choose a period of at most two years."),
        ("page=0", "The page number is not valid."),
        ("page=abc", "The page number is not valid."),
    ],
)
def test_bad_filters_are_a_clear_400(signed_in, in_year, query, message):
    in_year("JGH", days=40)
    response = signed_in.get(f"/staff/dashboard?{query}")
    assert response.status_code == 400
    page = _text(response)
    assert message in page
    assert "JGH-001" not in page


def test_bad_filters_are_translated(client, sign_in, make_staff, in_year):
    sign_in(client, make_staff(sites=["JGH"], language="fr"))
    response = client.get("/staff/dashboard?state=lost")
    assert response.status_code == 400
    assert "Cet état n’existe pas." in _text(response)


def test_another_sites_filter_is_a_404(signed_in, in_year):
    in_year("CHUM", days=40)
    response = signed_in.get("/staff/dashboard?site=CHUM")
    assert response.status_code == 404
    assert "CHUM-001" not in _text(response)


def test_admin_sees_every_site_and_filters_one(client, sign_in, make_staff, in_year):
    in_year("JGH", days=40)
    in_year("SLS", days=40)
    sign_in(client, make_staff(role="admin", sites=[]))
    page = _text(client.get("/staff/dashboard"))
    assert "JGH-001" in page and "SLS-001" in page
    page = _text(client.get("/staff/dashboard?site=SLS"))
    assert "SLS-001" in page and "JGH-001" not in page


def test_acknowledging_an_alert_from_the_dashboard_keeps_the_filters(
    signed_in, in_year, csrf_token
):
    in_year("JGH", days=10, habit="all")
    page = signed_in.get("/staff/dashboard?visit=WEEKLY").get_data(as_text=True)
    alert_id = re.search(r"/staff/alerts/(\d+)/acknowledge", page).group(1)
    token = csrf_token(signed_in, "/staff/dashboard")
    response = signed_in.post(
        f"/staff/alerts/{alert_id}/acknowledge",
        data={
            "csrf_token": token,
            "outcome": "called",
            "note": "Called, fine",
            "next": "/staff/dashboard?visit=WEEKLY",
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/staff/dashboard?visit=WEEKLY")
    page = _text(signed_in.get("/staff/dashboard"))
    assert "Alerts to acknowledge (0)" in page
    from patient_portal.audit import AuditEvent

    event = db.session.scalar(
        sa.select(AuditEvent).where(AuditEvent.action == "alert.acknowledged")
    )
    assert event.after["note"] == "Called, fine" and event.after["outcome"] == "called"


def test_another_sites_alert_cannot_be_acknowledged(
    client, sign_in, make_staff, in_year, csrf_token
):
    in_year("CHUM", days=10, habit="all")
    sign_in(client, make_staff(sites=["JGH"]))
    from patient_portal.questionnaires.models import Alert

    alert = db.session.scalar(sa.select(Alert))
    token = csrf_token(client, "/staff/dashboard")
    response = client.post(f"/staff/alerts/{alert.id}/acknowledge", data={"csrf_token": token})
    assert response.status_code == 404
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).acknowledged_at is None


def _count_statements(app, client, path: str, cold: bool = True) -> int:
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    client.get(path)  # the first request of a session also refreshes the session row
    if cold:
        app.extensions["workspace_dashboards"].clear()
    engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(path).status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    return len(statements)


def test_statement_count_does_not_grow_with_participants(app, signed_in, make_participant):
    from bench.dashboard import seed

    seed(db.session, participants=10, sites=("JGH",), start_number=1)
    db.session.commit()
    few = _count_statements(app, signed_in, "/staff/dashboard")
    seed(db.session, participants=990, sites=("JGH",), start_number=11)
    db.session.commit()
    many = _count_statements(app, signed_in, "/staff/dashboard")
    assert few == many
    filtered = _count_statements(app, signed_in, "/staff/dashboard?state=missed&visit=M1")
    # Filtered, the matrix's page and count are one statement (a window count), not two.
    assert filtered == many - 1
    seed(db.session, participants=1000, sites=("JGH",), start_number=1001)
    db.session.commit()
    assert _count_statements(app, signed_in, "/staff/dashboard?state=missed&visit=M1") == filtered


def test_failed_reminders_are_in_the_follow_up(signed_in, in_year):
    from datetime import timedelta

    from patient_portal import clock
    from patient_portal.reminders.models import Reminder

    person = in_year("JGH", days=40)
    now = clock.now()
    db.session.add(
        Reminder(
            participant_id=person.id,
            kind="questionnaire",
            subject="test:failed",
            channel="email",
            due_at=now - timedelta(hours=2),
            expires_at=now + timedelta(hours=2),
            next_attempt_at=now,
            status="failed",
            attempts=3,
            last_error="SMTP 550",
            updated_at=now - timedelta(hours=1),
        )
    )
    db.session.commit()
    page = _text(signed_in.get("/staff/dashboard"))
    assert "Reminders not delivered in the last 14 days (1)" in page
    assert "SMTP 550" not in page  # technical detail stays in the reminder log


def test_a_cached_dashboard_is_cheaper_and_an_audited_write_refreshes_it(app, signed_in, in_year):
    from patient_portal.demo import answer_and_submit
    from patient_portal.questionnaires.services import state_of

    person = in_year("JGH", days=10, habit="none")
    cold = _count_statements(app, signed_in, "/staff/dashboard")
    warm = _count_statements(app, signed_in, "/staff/dashboard", cold=False)
    assert warm < cold
    assert "Alerts to acknowledge (0)" in _text(signed_in.get("/staff/dashboard"))
    now = services.clock.now()
    weekly = next(
        a
        for a in db.session.scalars(
            sa.select(Assignment).where(
                Assignment.participant_id == person.id, Assignment.series_code == "WEEKLY"
            )
        )
        if state_of(a, now) == "open"
    )
    answer_and_submit(weekly, person, now, level=3, extra={"breathing": 9})
    db.session.commit()
    assert "Alerts to acknowledge (1)" in _text(signed_in.get("/staff/dashboard"))


def test_a_page_past_the_last_still_says_how_many_participants_match(signed_in, in_year):
    in_year(days=40)
    in_year(days=100)
    page = _text(signed_in.get("/staff/dashboard?page=40"))
    assert "2 participants match these filters." in page


def test_matrix_filters_match_the_state_of_each_questionnaire(app, in_year):
    """Every state, alone and with a visit or the weekly series, selects exactly the
    participants who have such a questionnaire by Assignment.state."""
    people = [
        in_year("JGH", days=40, habit="some"),
        in_year("JGH", days=3, habit="all"),
        in_year("JGH", days=200, habit="none"),
        in_year("JGH", days=-10, habit="none"),  # day 0 still to come
    ]
    now = services.clock.now()
    from patient_portal.questionnaires.services import grace
    from patient_portal.schedule.models import Visit

    visit_codes = dict(db.session.execute(sa.select(Visit.id, Visit.code)).all())
    rows = db.session.scalars(sa.select(Assignment)).all()
    series = services.get_protocol().series[0].code
    # A state alone or a visit alone is read from the questionnaire standing, which the
    # matrix brings up to date before it asks.
    services.standing.bring_up_to_date(now)
    for visit in (None, "M1", series):
        for state in (None, *services.STATES):
            if visit is None and state is None:
                continue
            filters = services.Filters(sites=("JGH",), visit=visit, state=state)
            found = set(db.session.scalars(services._matrix_participants(filters, now)))
            expected = set()
            for assignment in rows:
                key = assignment.series_code or visit_codes[assignment.visit_id]
                shown = assignment.state(now, grace())
                shown = "open" if shown == "in_progress" else shown
                if (visit is None or key == visit) and (state is None or shown == state):
                    expected.add(assignment.participant_id)
            assert found == expected, (visit, state)
    assert {p.id for p in people} == set(
        db.session.scalars(services._matrix_participants(services.Filters(sites=("JGH",)), now))
    )
