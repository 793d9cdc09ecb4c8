"""Staff forms that record something follow Post/Redirect/Get and carry a form key: reloading
the page after the redirect records nothing, and the same form sent twice records once
(appointments, visit statuses, alert acknowledgements; enrolment and contacts in their own
tests). An appointment date in the past needs a second, explicit step (issue 18)."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from patient_portal import clock
from patient_portal.audit import AuditEvent
from patient_portal.extensions import db
from patient_portal.questionnaires.models import Alert
from patient_portal.schedule.models import Visit

FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')
SCHEDULE = "/staff/participants/JGH-001/schedule"


def _events(action: str) -> int:
    return (
        db.session.scalar(
            sa.select(sa.func.count(AuditEvent.id)).where(AuditEvent.action == action)
        )
        or 0
    )


def _key(client, path: str) -> str:
    match = FORM_KEY.search(client.get(path).get_data(as_text=True))
    assert match
    return match.group(1)


@pytest.fixture
def person(now, make_participant):
    # 20 November 2026: M1 (day 28) is 9 December, its window 2 to 16 December.
    return make_participant(site_code="JGH", day0=date(2026, 11, 11))


def _m1() -> Visit:
    return db.session.scalars(sa.select(Visit).where(Visit.code == "M1")).one()


def test_an_appointment_sent_twice_is_saved_once(person, signed_in, csrf_token):
    form = {
        "csrf_token": csrf_token(signed_in, SCHEDULE),
        "form_key": _key(signed_in, SCHEDULE),
        "date": "2026-12-09",
        "time": "10:00",
    }
    first = signed_in.post(
        f"/staff/participants/{person.study_id}/visits/M1/appointment", data=form
    )
    assert first.status_code == 303 and first.headers["Location"].endswith("#visit-M1")
    again = signed_in.post(
        f"/staff/participants/{person.study_id}/visits/M1/appointment", data=form
    )
    assert again.status_code == 303
    assert _events("visit.appointment_set") == 1
    db.session.expire_all()
    assert _m1().sequence == 1
    # The page the redirect leads to, reloaded, changes nothing.
    signed_in.get(SCHEDULE)
    signed_in.get(SCHEDULE)
    assert _events("visit.appointment_set") == 1


def test_a_status_sent_twice_is_saved_once(person, signed_in, csrf_token):
    form = {
        "csrf_token": csrf_token(signed_in, SCHEDULE),
        "form_key": _key(signed_in, SCHEDULE),
        "status": "missed",
        "reason": "Could not come",
    }
    path = f"/staff/participants/{person.study_id}/visits/M1/status"
    assert signed_in.post(path, data=form).status_code == 303
    # Sent again, the form does not answer "already has this status": it leads to the visit.
    assert signed_in.post(path, data=form).status_code == 303
    assert _events("visit.status_changed") == 1


def test_a_past_appointment_needs_an_explicit_confirmation(person, signed_in, csrf_token):
    path = f"/staff/participants/{person.study_id}/visits/M1/appointment"
    yesterday = (clock.now().date() - timedelta(days=1)).isoformat()
    form = {
        "csrf_token": csrf_token(signed_in, SCHEDULE),
        "form_key": _key(signed_in, SCHEDULE),
        "date": yesterday,
        "time": "10:00",
        "reason": "Came early",
    }
    asked = signed_in.post(path, data=form)
    assert asked.status_code == 422
    text = asked.get_data(as_text=True)
    assert "This date is in the past" in text and 'name="confirm_past"' in text
    assert "Confirm the past date" in text
    db.session.expire_all()
    assert _m1().scheduled_at is None
    confirmed = signed_in.post(path, data={**form, "confirm_past": "yes"})
    assert confirmed.status_code == 303
    db.session.expire_all()
    assert _m1().scheduled_at is not None


def test_a_past_appointment_is_asked_again_in_french(
    person, client, sign_in, make_staff, csrf_token
):
    sign_in(client, make_staff(sites=["JGH"], language="fr"))
    path = f"/staff/participants/{person.study_id}/visits/M1/appointment"
    form = {
        "csrf_token": csrf_token(client, SCHEDULE),
        "date": (clock.now().date() - timedelta(days=3)).isoformat(),
        "time": "10:00",
        "reason": "Venue plus tôt",
    }
    text = client.post(path, data=form).get_data(as_text=True)
    assert "Cette date est passée" in text


def test_an_unmarked_past_visit_is_flagged_overdue(now, make_participant, signed_in):
    make_participant(site_code="JGH", day0=date(2026, 10, 1))
    text = signed_in.get(SCHEDULE).get_data(as_text=True)
    assert "Overdue: past, not marked" in text


def test_an_acknowledgement_sent_twice_is_recorded_once(person, signed_in, csrf_token, now):
    alert = Alert(participant_id=person.id, rule_id="test", severity="urgent")
    db.session.add(alert)
    db.session.commit()
    page = f"/staff/participants/{person.study_id}"
    form = {
        "csrf_token": csrf_token(signed_in, page),
        "form_key": _key(signed_in, page),
        "outcome": "called",
        "next": page,
    }
    first = signed_in.post(f"/staff/alerts/{alert.id}/acknowledge", data=form)
    again = signed_in.post(f"/staff/alerts/{alert.id}/acknowledge", data=form)
    assert first.status_code == again.status_code == 303
    assert again.headers["Location"] == page
    signed_in.get(page)
    assert _events("alert.acknowledged") == 1
