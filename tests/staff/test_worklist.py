"""The "Today" worklist: who is on it and why, in what order, only one's own sites, and the
contact log it records from (issue 18)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from patient_portal import clock
from patient_portal.audit import AuditEvent
from patient_portal.contacts import services as contacts
from patient_portal.contacts.models import ContactAttempt
from patient_portal.extensions import db
from patient_portal.questionnaires.models import Alert, Assignment
from patient_portal.reminders.models import Reminder
from patient_portal.schedule.models import Visit
from patient_portal.staff.worklist import worklist

FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')
INACTIVE_DAYS = 14


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


@pytest.fixture
def settled(now, make_participant):
    """settled(days=40, site="JGH") -> a participant `days` after day 0 with nothing to do:
    every past visit marked done, every questionnaire already closed answered."""

    def make(days: int = 40, site: str = "JGH", **fields):
        today = clock.now().date()
        person = make_participant(site_code=site, day0=today - timedelta(days=days), **fields)
        for visit in db.session.scalars(sa.select(Visit).where(Visit.participant_id == person.id)):
            if visit.window_start <= today:
                visit.status = "completed"
        db.session.execute(
            sa.update(Assignment)
            .where(Assignment.participant_id == person.id, Assignment.opens_at <= clock.now())
            .values(status="completed")
        )
        db.session.commit()
        return person

    return make


def _rows(sites=("JGH",)):
    return worklist(list(sites), clock.now(), INACTIVE_DAYS)


def _kinds(person, sites=("JGH",)) -> list[str]:
    row = next((r for r in _rows(sites) if r.study_id == person.study_id), None)
    return [reason.kind for reason in row.reasons] if row else []


def _visit(person, code: str) -> Visit:
    return db.session.scalars(
        sa.select(Visit).where(Visit.participant_id == person.id, Visit.code == code)
    ).one()


def _alert(person, severity: str, hours_ago: int = 1) -> Alert:
    created = clock.now() - timedelta(hours=hours_ago)
    alert = Alert(
        participant_id=person.id,
        rule_id=f"test-{severity}-{hours_ago}",
        severity=severity,
        created_at=created,
        due_at=created + timedelta(hours=4),
    )
    db.session.add(alert)
    db.session.commit()
    return alert


def test_a_participant_with_nothing_to_do_is_not_listed(settled):
    person = settled()
    assert _kinds(person) == []


def test_each_reason_is_found(settled):
    alerted = settled()
    _alert(alerted, "urgent")
    routine = settled()
    _alert(routine, "routine")
    today = settled()
    _visit(today, "M3").scheduled_at = clock.now() + timedelta(hours=2)
    tomorrow = settled()
    _visit(tomorrow, "M3").scheduled_at = clock.now() + timedelta(days=1)
    window = settled(days=28)
    # The M1 window (days 21 to 35) is open; the visit was reopened as not done.
    _visit(window, "M1").status = "planned"
    unmarked = settled()
    _visit(unmarked, "M1").status = "planned"
    closing = settled()
    open_one = db.session.scalars(
        sa.select(Assignment).where(
            Assignment.participant_id == closing.id,
            Assignment.opens_at > clock.now(),
        )
    ).first()
    open_one.opens_at = clock.now() - timedelta(days=1)
    open_one.closes_at = clock.now() + timedelta(hours=3)
    open_one.status = "planned"
    missed = settled()
    late = db.session.scalars(
        sa.select(Assignment).where(Assignment.participant_id == missed.id)
    ).first()
    late.status = "planned"
    late.opens_at = clock.now() - timedelta(days=5)
    late.closes_at = clock.now() - timedelta(days=2)
    inactive = settled()
    inactive.created_at = clock.now() - timedelta(days=INACTIVE_DAYS + 1)
    undelivered = settled()
    db.session.add(
        Reminder(
            participant_id=undelivered.id,
            kind="visit",
            subject="visit:test",
            channel="email",
            due_at=clock.now() - timedelta(days=1),
            expires_at=clock.now(),
            next_attempt_at=clock.now(),
            status="failed",
            updated_at=clock.now() - timedelta(days=1),
        )
    )
    db.session.commit()
    assert _kinds(alerted) == ["alert_urgent"]
    assert _kinds(routine) == ["alert_routine"]
    assert _kinds(today) == ["visit_today"]
    assert _kinds(tomorrow) == ["visit_tomorrow"]
    assert _kinds(window) == ["window_open"]
    assert _kinds(unmarked) == ["unmarked"]
    assert _kinds(closing) == ["closing_today"]
    assert _kinds(missed) == ["missed"]
    assert _kinds(inactive) == ["inactive"]
    assert _kinds(undelivered) == ["undelivered"]


def test_most_urgent_first_alerts_by_severity_then_age(settled):
    window = settled(days=28)
    _visit(window, "M1").status = "planned"
    routine_old = settled()
    _alert(routine_old, "routine", hours_ago=30)
    urgent_new = settled()
    _alert(urgent_new, "urgent", hours_ago=1)
    urgent_old = settled()
    _alert(urgent_old, "urgent", hours_ago=5)
    today = settled()
    _visit(today, "M3").scheduled_at = clock.now() + timedelta(hours=2)
    db.session.commit()
    order = [row.study_id for row in _rows()]
    assert order == [
        urgent_old.study_id,
        urgent_new.study_id,
        routine_old.study_id,
        today.study_id,
        window.study_id,
    ]


def test_a_contact_clears_the_missed_questionnaires_before_it(settled, coordinator):
    person = settled()
    late = db.session.scalars(
        sa.select(Assignment).where(Assignment.participant_id == person.id)
    ).first()
    late.status = "planned"
    late.closes_at = clock.now() - timedelta(days=2)
    db.session.commit()
    assert _kinds(person) == ["missed"]
    contacts.record_contact(person, coordinator, "phone", "no_answer", None)
    db.session.commit()
    assert _kinds(person) == []


def test_staff_see_only_their_sites(settled, signed_in):
    mine = settled(site="JGH")
    theirs = settled(site="SLS")
    _alert(mine, "urgent")
    _alert(theirs, "urgent")
    page = _text(signed_in.get("/staff"))
    assert mine.study_id in page and theirs.study_id not in page
    assert [row.study_id for row in _rows(["SLS"])] == [theirs.study_id]


def test_the_worklist_is_the_staff_landing_page(settled, signed_in):
    person = settled()
    _alert(person, "urgent")
    page = _text(signed_in.get("/staff"))
    assert "1 urgent alert open for 1 hour" in page
    assert "Acknowledge the alert" in page and "No contact recorded" in page
    assert f"/staff/participants/{person.study_id}/questionnaires" in page  # assisted entry


def test_a_participant_cannot_open_the_worklist(client, sign_in, make_participant):
    sign_in(client, make_participant())
    assert client.get("/staff").status_code == 403


def _contact_form(client, csrf_token, study_id: str) -> dict[str, str]:
    path = f"/staff/participants/{study_id}/contacts/new?next=/staff"
    page = client.get(path).get_data(as_text=True)
    match = FORM_KEY.search(page)
    assert match
    return {
        "csrf_token": csrf_token(client, path),
        "form_key": match.group(1),
        "channel": "phone",
        "outcome": "no_answer",
        "note": "Call back after 5 pm",
        "next": "/staff",
    }


def _contacts() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(ContactAttempt)) or 0


def test_a_contact_is_recorded_once_shown_and_audited(settled, signed_in, csrf_token):
    person = settled()
    _alert(person, "urgent")
    form = _contact_form(signed_in, csrf_token, person.study_id)
    first = signed_in.post(f"/staff/participants/{person.study_id}/contacts", data=form)
    assert first.status_code == 303 and first.headers["Location"] == "/staff"
    # The same form again (a second press, the back button): nothing more is recorded.
    second = signed_in.post(f"/staff/participants/{person.study_id}/contacts", data=form)
    assert second.status_code == 303 and second.headers["Location"] == "/staff"
    assert _contacts() == 1
    page = _text(signed_in.get("/staff"))
    assert f"Contact with {person.study_id} recorded." in page
    assert "Last contact today (phone), no answer" in page
    # Reloading the page after the redirect is a GET: still one.
    signed_in.get("/staff")
    assert _contacts() == 1
    record = _text(signed_in.get(f"/staff/participants/{person.study_id}"))
    assert "Call back after 5 pm" in record and "phone, no answer" in record
    event = db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.action == "contact.recorded")
    ).one()
    assert event.after["outcome"] == "no_answer" and event.stream == person.audit_stream


def test_a_contact_needs_an_outcome_and_a_short_note(settled, signed_in, csrf_token):
    person = settled()
    form = _contact_form(signed_in, csrf_token, person.study_id)
    refused = signed_in.post(
        f"/staff/participants/{person.study_id}/contacts", data={**form, "outcome": ""}
    )
    assert refused.status_code == 422
    assert "Choose how the contact went." in _text(refused)
    too_long = signed_in.post(
        f"/staff/participants/{person.study_id}/contacts", data={**form, "note": "x" * 281}
    )
    assert too_long.status_code == 422
    assert _contacts() == 0


def test_another_sites_participant_has_no_contact_form(settled, signed_in, csrf_token):
    theirs = settled(site="SLS")
    assert signed_in.get(f"/staff/participants/{theirs.study_id}/contacts/new").status_code == 404
    token = csrf_token(signed_in, "/staff")
    sent = signed_in.post(
        f"/staff/participants/{theirs.study_id}/contacts",
        data={"csrf_token": token, "channel": "phone", "outcome": "reached"},
    )
    assert sent.status_code == 404
    assert _contacts() == 0


def _statements(app, client, path: str) -> int:
    count = 0

    def counter(_connection, _cursor, statement: str, *_args) -> None:
        nonlocal count
        if not statement.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO")):
            count += 1

    client.get(path)  # the first request of a session also refreshes the session row
    sa.event.listen(db.engine, "before_cursor_execute", counter)
    try:
        assert client.get(path).status_code == 200
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", counter)
    return count


def test_statement_count_does_not_grow_with_participants(app, signed_in):
    """Eight statements whatever the number of rows (issue 18): the session with its owner and
    the session's last-seen time, then the participants with their last sign-in and contact,
    open alerts, visits, questionnaires closing today, missed ones, failed reminders."""
    from bench.dashboard import seed

    seed(db.session, participants=10, sites=("JGH",), start_number=1)
    db.session.commit()
    few = _statements(app, signed_in, "/staff")
    seed(db.session, participants=990, sites=("JGH",), start_number=11)
    db.session.commit()
    many = _statements(app, signed_in, "/staff")
    assert few == many == 8
    assert len(_rows()) > 100  # the seeded year gives the list something to sort


def test_the_participant_page_starts_with_a_summary(settled, signed_in, coordinator):
    person = settled(days=28)
    _visit(person, "M1").status = "planned"
    _visit(person, "M0").status = "planned"  # day 0 is four weeks ago: overdue
    _alert(person, "urgent")
    contacts.record_contact(person, coordinator, "email", "message_left", None)
    db.session.commit()
    page = _text(signed_in.get(f"/staff/participants/{person.study_id}"))
    summary = page[page.index('id="summary-heading"') : page.index('id="contacts-heading"')]
    assert "Study ID" in summary and "Day 0" in summary
    assert "Next visit" in summary and "not booked, window until" in summary
    assert "Overdue visits" in summary and "Infusion 1 (month 0)" in summary
    assert "1 urgent" in summary
    assert "(e-mail), message left" in summary
    assert "Completion this month" in summary and "100%" in summary


def test_a_withdrawn_participant_is_not_on_the_worklist(settled):
    person = settled()
    _alert(person, "urgent")
    person.status = "withdrawn"
    db.session.commit()
    assert _kinds(person) == []
