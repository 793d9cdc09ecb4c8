"""Replacement enrolment links: a new link for a participant who already has a passkey needs a
reason, shows on the staff page, and the participant learns of the device it added (home page,
settings, e-mail). Answers a coordinator enters are never recorded as the participant's own."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from patient_portal.accounts import services
from patient_portal.accounts.models import EnrolmentToken, PasskeyCredential
from patient_portal.audit import AuditEvent
from patient_portal.extensions import db
from patient_portal.reminders import dispatch, preferences
from patient_portal.reminders.models import Reminder
from tests.accounts.softauthn import SoftAuthenticator
from tests.accounts.test_accounts import enrol_with_passkey
from tests.reminders.receivers import SMTPServer

BANNER = "A new device was added on"
LINK_PATH = "/staff/participants/{}/enrolment-link"


@pytest.fixture
def coordinator(make_staff):
    return make_staff(sites=["JGH"], name="Camille Roy")


@pytest.fixture
def staff_client(app, sign_in, coordinator):
    client = app.test_client()
    sign_in(client, coordinator)
    return client


@pytest.fixture
def enrolled(app, client, csrf_token, coordinator):
    """A participant (English) who used their first link on their own phone: (participant, the
    phone's client)."""
    participant, raw = services.enrol_participant("JGH", "en", date(2026, 12, 1), coordinator)
    db.session.commit()
    assert enrol_with_passkey(client, csrf_token, raw, SoftAuthenticator()).status_code == 200
    return participant, client


def issue(staff_client, csrf_token, participant, **form):
    path = f"/staff/participants/{participant.study_id}"
    token = csrf_token(staff_client, path)
    return staff_client.post(
        LINK_PATH.format(participant.study_id),
        data={"csrf_token": token, **form},
        follow_redirects=True,
    )


def raw_token_of(response) -> str:
    page = response.get_data(as_text=True)
    return page.split("http://localhost:5000/enrol/", 1)[1].split('"', 1)[0].split("<", 1)[0]


def tokens_of(participant) -> list[EnrolmentToken]:
    return list(
        db.session.scalars(
            sa.select(EnrolmentToken)
            .where(EnrolmentToken.participant_id == participant.id)
            .order_by(EnrolmentToken.id)
        )
    )


@pytest.mark.parametrize("reason", [None, "", "because"])
def test_a_new_link_for_a_participant_with_a_passkey_needs_a_listed_reason(
    app, staff_client, csrf_token, enrolled, reason
):
    participant, phone = enrolled
    form = {} if reason is None else {"reason": reason}
    response = issue(staff_client, csrf_token, participant, **form)
    assert response.status_code == 422
    assert "please choose why a new link is needed" in response.get_data(as_text=True)
    db.session.expire_all()
    assert len(tokens_of(participant)) == 1  # only the first, used one
    assert phone.get("/settings").status_code == 200  # nothing happened: still signed in


def test_a_replacement_link_records_its_reason_on_the_staff_page_and_in_the_audit(
    app, staff_client, csrf_token, enrolled
):
    participant, phone = enrolled
    response = issue(
        staff_client, csrf_token, participant, reason="new_device", note="Changed phone today"
    )
    assert response.status_code == 200
    db.session.expire_all()
    link = tokens_of(participant)[-1]
    assert (link.replacement_reason, link.replacement_note) == ("new_device", "Changed phone today")
    event = db.session.scalars(
        sa.select(AuditEvent).where(
            AuditEvent.action == "enrolment.issued", AuditEvent.entity_id == str(link.id)
        )
    ).one()
    assert event.reason == "new_device: Changed phone today"
    assert event.after["replacement"] is True
    assert phone.get("/settings").status_code == 302  # signed out everywhere, as before

    page = staff_client.get(f"/staff/participants/{participant.study_id}").get_data(as_text=True)
    links = page.split("Replacement links", 1)[1].split("</ul>", 1)[0]
    assert "New phone or device" in links
    assert "issued by Camille Roy" in links
    assert "Changed phone today" in links
    assert "Not used yet." in links
    # The staff audit history tells the link's events too, with the reason in words.
    history = page.split("Audit history", 1)[1]
    assert "Coordinator Camille Roy issued an enrolment link for participant JGH-001." in history
    assert "Reason: New phone or device: Changed phone today" in history


def test_a_link_for_a_participant_who_never_registered_needs_no_reason(
    app, staff_client, csrf_token, coordinator
):
    participant, _raw = services.enrol_participant("JGH", "en", None, coordinator)
    db.session.commit()
    assert issue(staff_client, csrf_token, participant).status_code == 200
    db.session.expire_all()
    assert [t.replacement_reason for t in tokens_of(participant)] == [None, None]


def test_a_device_added_from_a_replacement_link_is_marked_and_announced_until_dismissed(
    app, staff_client, csrf_token, enrolled
):
    participant, phone = enrolled
    assert BANNER not in phone.get("/home").get_data(as_text=True)  # the first enrolment: none
    raw = raw_token_of(issue(staff_client, csrf_token, participant, reason="lost_or_stolen"))
    other = app.test_client()
    assert enrol_with_passkey(other, csrf_token, raw, SoftAuthenticator()).status_code == 200

    db.session.expire_all()
    first, added = db.session.scalars(
        sa.select(PasskeyCredential)
        .where(PasskeyCredential.participant_id == participant.id)
        .order_by(PasskeyCredential.id)
    ).all()
    assert (first.from_replacement_link, added.from_replacement_link) == (False, True)
    home = other.get("/home").get_data(as_text=True)
    assert BANNER in home and "If it was not you, please call your study team." in home
    settings = other.get("/settings").get_data(as_text=True)
    assert settings.count("with a new link from your study team") == 1
    staff_page = staff_client.get(f"/staff/participants/{participant.study_id}")
    assert "Added from a replacement link on" in staff_page.get_data(as_text=True)
    assert "Used on " in staff_page.get_data(as_text=True)
    added_event = db.session.scalars(
        sa.select(AuditEvent).where(
            AuditEvent.action == "passkey.added", AuditEvent.entity_id == str(added.id)
        )
    ).one()
    assert added_event.after["replacement_link"] is True

    token = csrf_token(other, "/home")
    dismissed = other.post("/settings/passkeys/notices/dismiss", data={"csrf_token": token})
    assert dismissed.status_code == 303
    assert BANNER not in other.get("/home").get_data(as_text=True)
    # The mark stays where passkeys are listed.
    assert "with a new link from your study team" in other.get("/settings").get_data(as_text=True)
    assert db.session.scalar(
        sa.select(sa.func.count(AuditEvent.id)).where(
            AuditEvent.action == "passkey.notice_dismissed"
        )
    )


def test_staff_cannot_dismiss_a_participants_notice(app, staff_client, csrf_token):
    token = csrf_token(staff_client, "/staff/participants")
    response = staff_client.post("/settings/passkeys/notices/dismiss", data={"csrf_token": token})
    assert response.status_code in (403, 404)


@pytest.fixture
def smtp(app):
    with SMTPServer() as server:
        app.config.update(
            PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_PORT=server.port, PORTAL_SMTP_SECURITY="none"
        )
        yield server


@pytest.mark.parametrize(
    ("language", "subject", "call"),
    [
        ("en", "A new device was added to your CARE-SSc account", "please call your study team"),
        ("fr", "Un nouvel appareil a été ajouté à votre compte CARE-SSc", "veuillez appeler"),
    ],
)
def test_the_participant_is_emailed_when_a_replacement_link_adds_a_device(
    app, smtp, now, client, staff_client, csrf_token, coordinator, language, subject, call
):
    participant, raw = services.enrol_participant("JGH", language, None, coordinator)
    db.session.commit()
    enrol_with_passkey(client, csrf_token, raw, SoftAuthenticator())
    with app.test_request_context("/"):
        preferences.set_email(participant, "participant@example.org")
        preferences.confirm_email(participant)
    db.session.commit()
    raw = raw_token_of(issue(staff_client, csrf_token, participant, reason="cannot_sign_in"))
    # At night: a security notice does not wait for the end of the participant's quiet hours.
    now.set(now().replace(hour=6))  # 1:00 in Montréal
    enrol_with_passkey(app.test_client(), csrf_token, raw, SoftAuthenticator())

    dispatch.Dispatcher().run_once()
    mail = next(m for m in smtp.messages if m["Subject"] == subject)
    assert mail["To"] == "participant@example.org"
    text = mail.get_body(("plain",)).get_content()
    assert call in text and "514" in text  # the site's phone number
    assert "http://localhost:5000/settings" in text
    # Nothing about the study's content: no questionnaire, visit or treatment word.
    for word in ("questionnaire", "visit", "visite", "infusion", "perfusion", "cannot_sign_in"):
        assert word not in text.lower()
    sent = db.session.scalars(sa.select(Reminder.status).where(Reminder.kind == "new_device")).all()
    assert sent == ["sent"]


def test_no_email_without_an_address_and_none_for_a_first_enrolment(
    app, smtp, staff_client, csrf_token, enrolled
):
    participant, _phone = enrolled
    raw = raw_token_of(issue(staff_client, csrf_token, participant, reason="new_device"))
    enrol_with_passkey(app.test_client(), csrf_token, raw, SoftAuthenticator())
    db.session.expire_all()
    assert (
        db.session.scalar(
            sa.select(sa.func.count(Reminder.id)).where(Reminder.kind == "new_device")
        )
        == 0
    )
    dispatch.Dispatcher().run_once()
    assert smtp.messages == []
