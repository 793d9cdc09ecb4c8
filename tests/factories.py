"""factory_boy factories bound to the app's session, exposed as fixtures that return callables."""

from __future__ import annotations

import secrets
from datetime import date
from typing import cast

import factory
import pytest
from factory.alchemy import SQLAlchemyModelFactory
from flask.testing import FlaskClient

from patient_portal import clock
from patient_portal.accounts.models import AuthSession, Participant, StaffSite, StaffUser
from patient_portal.extensions import db
from patient_portal.planning import plan_year
from patient_portal.security import SESSION_LIMITS, token_digest


class _Base(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: db.session  # noqa: E731
        sqlalchemy_session_persistence = "commit"


class ParticipantFactory(_Base):
    class Meta:
        model = Participant

    site_code = "JGH"
    study_id = factory.Sequence(lambda n: f"JGH-{n + 1:03d}")
    language = "fr"
    day0 = factory.LazyFunction(lambda: date(2026, 12, 1))
    status = "active"

    @factory.post_generation
    def planned(self, create, extracted, **kwargs):
        """Plan the year as enrolment does (visits, questionnaires...); planned=False skips it,
        for tests of the planners themselves."""
        if create and self.day0 is not None and extracted is not False:
            plan_year(self)
            db.session.commit()


class StaffFactory(_Base):
    class Meta:
        model = StaffUser

    email = factory.Sequence(lambda n: f"coordinator{n}@example.org")
    name = factory.Sequence(lambda n: f"Coordinator {n}")
    role = "coordinator"
    language = "en"

    @factory.post_generation
    def sites(self, create, extracted, **kwargs):
        for code in extracted if extracted is not None else ["JGH"]:
            self.site_links.append(StaffSite(site_code=code))
        if create:
            db.session.commit()


@pytest.fixture
def make_participant(app):
    """make_participant(site_code="SLS", study_id="SLS-001", language="en", ...) -> Participant"""

    def make(**fields) -> Participant:
        if "site_code" in fields and "study_id" not in fields:
            count = db.session.query(Participant).filter_by(site_code=fields["site_code"]).count()
            fields["study_id"] = f"{fields['site_code']}-{count + 1:03d}"
        return cast(Participant, ParticipantFactory(**fields))

    return make


@pytest.fixture
def make_staff(app):
    """make_staff(role="admin", sites=["JGH", "CHUM"]) -> StaffUser"""
    return lambda **fields: StaffFactory(**fields)


def open_session_for(owner) -> str:
    """A live server-side session for the owner, as a passkey sign-in would leave; its token."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    owner_field = (
        {"participant_id": owner.id} if owner.kind == "participant" else {"staff_id": owner.id}
    )
    db.session.add(
        AuthSession(
            id=token_digest(token),
            created_at=now,
            last_seen_at=now,
            expires_at=now + SESSION_LIMITS[owner.kind][1],
            data={},
            **owner_field,
        )
    )
    db.session.commit()
    return token


@pytest.fixture
def sign_in(app):
    """sign_in(client, owner): the client now carries a session cookie for that owner."""

    def sign(client: FlaskClient, owner) -> str:
        token = open_session_for(owner)
        client.set_cookie(app.config["SESSION_COOKIE_NAME"], token, domain="localhost")
        return token

    return sign
