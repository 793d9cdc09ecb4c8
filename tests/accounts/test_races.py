"""Requests racing on one account or one site, each in its own thread, transaction and commit:
one enrolment link used twice at once, a participant's last two passkeys removed at once, two
coordinators enrolling at one site at once (the security review's findings, issue 15)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from patient_portal.accounts import services
from patient_portal.accounts.models import (
    AuthSession,
    EnrolmentToken,
    Participant,
    PasskeyCredential,
)
from patient_portal.extensions import db
from tests.accounts.softauthn import SoftAuthenticator
from tests.accounts.test_accounts import _post_json

ROUNDS = 3

pytestmark = pytest.mark.commits


def at_once(*calls: Callable[[], object]) -> list:
    """Run the calls in threads released together; their results in the calls' order."""
    start = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], object]) -> None:
        try:
            start.wait()
            results[index] = call()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.fixture
def coordinator(make_staff):
    return make_staff(sites=["JGH"])


def test_one_enrolment_link_used_twice_at_once_gives_one_passkey_and_one_session(
    app, csrf_token, coordinator
):
    for _round in range(ROUNDS):
        participant, raw = services.enrol_participant("JGH", "en", None, coordinator)
        db.session.commit()
        attempts = []
        for _phone in range(2):
            client = app.test_client()
            csrf = csrf_token(client, f"/enrol/{raw}")
            options = _post_json(client, f"/enrol/{raw}/options", csrf).get_json()
            attempts.append((client, csrf, SoftAuthenticator().register(options)))

        responses = at_once(
            *[
                lambda c=client, t=csrf, body=body: _post_json(c, f"/enrol/{raw}/verify", t, body)
                for client, csrf, body in attempts
            ]
        )

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200, 410], [r.get_data(as_text=True) for r in responses]
        loser = next(r for r in responses if r.status_code == 410)
        assert loser.get_json()["error"].startswith("This link has already been used.")
        db.session.expire_all()
        passkeys = db.session.scalar(
            sa.select(sa.func.count(PasskeyCredential.id)).where(
                PasskeyCredential.participant_id == participant.id
            )
        )
        signed_in = db.session.scalar(
            sa.select(sa.func.count(AuthSession.id)).where(
                AuthSession.participant_id == participant.id, AuthSession.revoked_at.is_(None)
            )
        )
        assert (passkeys, signed_in) == (1, 1)
        token = db.session.scalar(
            sa.select(EnrolmentToken).where(EnrolmentToken.participant_id == participant.id)
        )
        assert token.used_at is not None
        # The loser's browser is not signed in: its next page is the sign-in page.
        loser_client = attempts[responses.index(loser)][0]
        assert loser_client.get("/settings").status_code == 302


def _passkey(participant: Participant, name: str) -> PasskeyCredential:
    passkey = PasskeyCredential(
        participant_id=participant.id,
        credential_id=SoftAuthenticator().credential_id,
        public_key=b"unused here",
        nickname=name,
    )
    db.session.add(passkey)
    db.session.commit()
    return passkey


def test_the_last_two_passkeys_removed_at_once_leave_one(
    app, csrf_token, sign_in, make_participant
):
    for round_number in range(ROUNDS):
        participant = make_participant(
            day0=None, study_id=f"JGH-{round_number + 1:03d}", language="en"
        )
        passkeys = [_passkey(participant, "phone"), _passkey(participant, "tablet")]
        removals = []
        for passkey in passkeys:
            client = app.test_client()
            sign_in(client, participant)
            csrf = csrf_token(client, "/settings")
            removals.append((client, csrf, passkey.id))

        responses = at_once(
            *[
                lambda c=client, t=csrf, i=passkey_id: c.post(
                    f"/settings/passkeys/{i}/remove",
                    data={"csrf_token": t},
                    headers={"Accept-Language": "en"},
                )
                for client, csrf, passkey_id in removals
            ]
        )

        assert sorted(r.status_code for r in responses) == [303, 409]
        refused = next(r for r in responses if r.status_code == 409).get_data(as_text=True)
        assert "This is your only passkey: it cannot be removed." in refused
        db.session.expire_all()
        left = db.session.scalars(
            sa.select(PasskeyCredential.nickname).where(
                PasskeyCredential.participant_id == participant.id
            )
        ).all()
        assert len(left) == 1


def test_two_coordinators_enrolling_at_one_site_at_once_get_distinct_study_ids(
    app, csrf_token, sign_in, make_staff, make_participant
):
    # Enrolled before the counter existed (or by the demo): numbering continues after it.
    make_participant(day0=None, study_id="JGH-007")
    desks = []
    for _desk in range(2):
        client = app.test_client()
        sign_in(client, make_staff(sites=["JGH"]))
        desks.append((client, csrf_token(client, "/staff/participants")))

    for _round in range(ROUNDS):
        responses = at_once(
            *[
                lambda c=client, t=csrf: c.post(
                    "/staff/participants",
                    data={"csrf_token": t, "site": "JGH", "language": "fr", "day0": ""},
                )
                for client, csrf in desks
            ]
        )
        assert [r.status_code for r in responses] == [303, 303]

    db.session.expire_all()
    study_ids = db.session.scalars(
        sa.select(Participant.study_id)
        .where(Participant.site_code == "JGH")
        .order_by(Participant.study_id)
    ).all()
    assert study_ids == [f"JGH-{n:03d}" for n in range(7, 14)]
