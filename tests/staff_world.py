"""A small study seen by a coordinator who covers Montréal (JGH) and Paris (Saint-Louis): what
the staff-screen tests walk (tests/staff/test_staff_words.py, tests/e2e/test_staff_screens.py).

Every kind of record a staff page shows is there: answers and scores, an open and an
acknowledged alert, an appointment set by the coordinator, passkeys named in the other
language, a failed reminder and the audit events all of it wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import Flask
from flask_login import login_user

from patient_portal import clock
from patient_portal.accounts.models import Participant, PasskeyCredential, StaffUser
from patient_portal.demo import answer_due
from patient_portal.extensions import db
from patient_portal.planning import plan_year
from patient_portal.questionnaires import alerts
from patient_portal.questionnaires.models import Alert, Assignment
from patient_portal.schedule.models import Visit
from patient_portal.schedule.services import set_appointment
from patient_portal.timezones import local_instant


@dataclass
class StaffWorld:
    coordinator: StaffUser
    admin: StaffUser
    montreal: Participant
    paris: Participant


def _answered(make_participant, site: str, days: int, language: str) -> Participant:
    person = make_participant(
        site_code=site, day0=clock.now().date() - timedelta(days=days), language=language
    )
    plan_year(person)
    answer_due(person, "some", clock.now())
    return person


def _alert_on(person: Participant, rule: str) -> Alert:
    sent = db.session.scalars(
        sa.select(Assignment)
        .where(Assignment.participant_id == person.id, Assignment.status == "completed")
        .order_by(Assignment.opens_at.desc())
    ).first()
    assert sent is not None
    alert = Alert(participant_id=person.id, assignment_id=sent.id, rule_id=rule, severity="urgent")
    db.session.add(alert)
    db.session.flush()
    return alert


def staff_world(app: Flask, make_participant, make_staff, language: str = "fr") -> StaffWorld:
    """The study above, committed; the coordinator and the admin read in `language`."""
    montreal = _answered(make_participant, "JGH", days=40, language="en")
    paris = _answered(make_participant, "SLS", days=100, language="fr")
    coordinator = make_staff(
        sites=["JGH", "SLS"], language=language, name="A. Martin", role="coordinator"
    )
    admin = make_staff(role="admin", sites=[], language=language, name="B. Admin")
    # Passkeys named by the portal in the language of the day they were added.
    db.session.add_all(
        [
            PasskeyCredential(
                participant_id=montreal.id,
                credential_id=b"montreal-1",
                public_key=b"-",
                nickname="Clé d’accès 1",
                last_used_at=clock.now() - timedelta(days=2),
            ),
            PasskeyCredential(
                participant_id=paris.id,
                credential_id=b"paris-1",
                public_key=b"-",
                nickname="Passkey 1",
            ),
        ]
    )
    _alert_on(montreal, "pain_severe")
    acknowledged = _alert_on(paris, "pain_severe")
    alerts.acknowledge(acknowledged, coordinator, "called", "Seen at the desk")
    # The coordinator sets an appointment: the audit event names them.
    with app.test_request_context():
        login_user(coordinator)
        visit = db.session.scalars(
            sa.select(Visit).where(Visit.participant_id == montreal.id, Visit.code == "M3")
        ).one()
        set_appointment(visit, visit.target_date, time(9, 30), None, None, None)
    db.session.commit()
    return StaffWorld(coordinator, admin, montreal, paris)


def paris_window_opening(paris: Participant, opens_on: date) -> Assignment:
    """Move the Paris participant's last visit questionnaire to open at midnight, Paris time,
    on `opens_on`, and to close at midnight after its seventh day (the stored end)."""
    zone = ZoneInfo("Europe/Paris")
    assignment = db.session.scalars(
        sa.select(Assignment)
        .where(Assignment.participant_id == paris.id, Assignment.visit_id.is_not(None))
        .order_by(Assignment.opens_at.desc(), Assignment.id.desc())
    ).first()
    assert assignment is not None
    assignment.opens_at = local_instant(opens_on, zone)
    assignment.closes_at = local_instant(opens_on + timedelta(days=7), zone)
    db.session.commit()
    return assignment
