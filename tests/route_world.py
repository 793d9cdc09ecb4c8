"""A small trial in which every route of the app has a realistic URL: participant A part-way
through the year (an open questionnaire, an alert, a passkey, a second phone, a calendar feed),
participant B of the same site, a withdrawn participant, an enrolment link, and the staff of
docs/input-bounds.md's access matrix.

Shared by the route fuzzing (tests/test_fuzz_routes.py) and the access matrix
(tests/test_access_matrix.py); `path_values` gives each path parameter name its value here.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask
from werkzeug.routing import Rule

from patient_portal import clock
from patient_portal.accounts import services as accounts
from patient_portal.accounts.models import AuthSession, Participant, PasskeyCredential, StaffUser
from patient_portal.demo import answer_due
from patient_portal.extensions import db
from patient_portal.planning import plan_year
from patient_portal.questionnaires.loader import get_instrument
from patient_portal.questionnaires.models import Alert, Assignment
from patient_portal.questionnaires.services import state_of
from patient_portal.reminders import preferences as reminder_preferences
from patient_portal.schedule import services as schedule
from patient_portal.security import SESSION_LIMITS, token_digest

PARAMETER = re.compile(r"<(?:(?P<converter>[^:<>]+):)?(?P<name>[^<>]+)>")


@dataclass
class World:
    participant_a: Participant
    participant_b: Participant
    withdrawn: Participant
    coordinator: StaffUser
    other_site: StaffUser
    deactivated: StaffUser
    admin: StaffUser
    values: dict[str, str] = field(default_factory=dict)


def _session_of(owner) -> str:
    """A live server-side session of the owner (as a passkey sign-in leaves); its row id."""
    now = clock.now()
    token = secrets.token_urlsafe(32)
    owner_field = (
        {"participant_id": owner.id} if owner.kind == "participant" else {"staff_id": owner.id}
    )
    record = AuthSession(
        id=token_digest(token),
        created_at=now,
        last_seen_at=now,
        expires_at=now + SESSION_LIMITS[owner.kind][1],
        data={},
        **owner_field,
    )
    db.session.add(record)
    db.session.flush()
    return record.id


def _open_assignment(participant: Participant) -> Assignment:
    assignments = db.session.scalars(
        sa.select(Assignment)
        .where(Assignment.participant_id == participant.id)
        .order_by(Assignment.opens_at, Assignment.id)
    ).all()
    return next(a for a in assignments if state_of(a) in ("open", "in_progress"))


def build_world(make_participant, make_staff) -> World:
    """The trial above, committed (inside the test's rolled-back transaction)."""
    today = clock.now().date()
    participant_a = make_participant(site_code="JGH", day0=today - timedelta(days=10))
    participant_b = make_participant(site_code="JGH", day0=today - timedelta(days=10))
    withdrawn = make_participant(site_code="JGH", day0=today - timedelta(days=10))
    for participant in (participant_a, participant_b, withdrawn):
        plan_year(participant)
    answer_due(participant_a, "some", clock.now())
    coordinator = make_staff(sites=["JGH"], email="coordinator.jgh@example.org")
    other_site = make_staff(sites=["CHUM"], email="coordinator.chum@example.org")
    deactivated = make_staff(sites=["JGH"], email="former.jgh@example.org")
    admin = make_staff(role="admin", sites=[], email="admin@example.org")
    withdrawn.status = "withdrawn"
    deactivated.active = False

    assignment = _open_assignment(participant_a)
    instrument = get_instrument(assignment.instrument_id)
    item = next(i for i in instrument.items if i.answerable)
    alert = Alert(participant_id=participant_a.id, rule_id="fuzz", message_key=None)
    passkey = PasskeyCredential(
        participant_id=participant_a.id,
        credential_id=secrets.token_bytes(16),
        public_key=b"not used",
        nickname="Phone",
    )
    db.session.add_all([alert, passkey])
    other_phone = _session_of(participant_a)
    _newcomer, enrolment_token = accounts.enrol_participant("JGH", "en", None, coordinator)
    feed_token = schedule.issue_feed_token(participant_a)
    reminder_preferences.set_email(participant_a, "participant-a@example.org")
    email_token = reminder_preferences.verification_token(participant_a)
    db.session.commit()
    return World(
        participant_a=participant_a,
        participant_b=participant_b,
        withdrawn=withdrawn,
        coordinator=coordinator,
        other_site=other_site,
        deactivated=deactivated,
        admin=admin,
        values={
            "assignment_id": str(assignment.id),
            "item_id": item.id,
            "alert_id": str(alert.id),
            "study_id": participant_a.study_id,
            "code": "M1",
            "passkey_id": str(passkey.id),
            "session_id": other_phone,
            "staff_id": str(other_site.id),
            "token": enrolment_token,
            "feed_token": feed_token,
            "email_token": email_token,
            "channel": "inapp",
            "kind": "completion.csv",
        },
    )


def routes(app: Flask) -> list[tuple[str, Rule]]:
    """Every (method, rule) a visitor can call, HEAD and OPTIONS aside, in URL order."""
    return sorted(
        (
            (method, rule)
            for rule in app.url_map.iter_rules()
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        ),
        key=lambda pair: (pair[1].rule, pair[0]),
    )


def realistic_value(rule: Rule, name: str, values: dict[str, str]) -> str:
    """The world's value for a path parameter (the calendar feed's token is not an enrolment
    link's); an unknown parameter of a new rule gets a plain word."""
    if name == "token" and rule.endpoint == "schedule.feed":
        return values["feed_token"]
    if name == "token" and rule.endpoint.startswith("reminders.confirm_email"):
        return values["email_token"]
    return values.get(name, "new-parameter")


def build_path(rule: Rule, given: dict[str, str]) -> str:
    """The rule's path with each parameter replaced by the given text, already URL-quoted."""
    return PARAMETER.sub(lambda match: given[match.group("name")], rule.rule)
