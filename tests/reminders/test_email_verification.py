"""An e-mail address is used only once its owner opened the link sent to it: the link is signed,
expires, names no address, and a wrong one gets a translated 4xx; every form of the reminders
page answers with a redirect, so a reload makes nothing twice."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from patient_portal.audit import AuditEvent
from patient_portal.extensions import db
from patient_portal.reminders import dispatch, planning, preferences
from patient_portal.reminders.models import ReminderAttempt, ReminderPreference
from tests.reminders.conftest import reminders_of
from tests.reminders.receivers import SMTPServer

ADDRESS = "person@example.org"


@pytest.fixture
def smtp(app):
    with SMTPServer() as server:
        app.config.update(
            PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_PORT=server.port, PORTAL_SMTP_SECURITY="none"
        )
        yield server


@pytest.fixture
def participant(make_participant, now, client, sign_in):
    now(datetime(2026, 11, 20, 15, tzinfo=UTC))
    person = make_participant(day0=date(2026, 12, 1))
    sign_in(client, person)
    return person


def _post(client, csrf_token, path, **data):
    return client.post(path, data={"csrf_token": csrf_token(client, "/reminders"), **data})


def _link_in(mail) -> str:
    text = mail.get_body(("plain",)).get_content()
    match = re.search(r"http://localhost:5000(/reminders/email/confirm/\S+)", text)
    assert match, text
    return match.group(1)


def _audited(action: str) -> int:
    return (
        db.session.scalar(
            sa.select(sa.func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        )
        or 0
    )


def test_a_new_address_gets_a_link_and_nothing_else_until_it_is_opened(
    client, csrf_token, participant, smtp
):
    answer = _post(client, csrf_token, "/reminders/email", email=ADDRESS)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/reminders#email"
    page = client.get("/reminders").get_data(as_text=True)
    assert "Un lien a été envoyé à cette adresse." in page
    assert "Adresse pas encore confirmée" in page
    # The e-mail switch stays off, with the reason beside it.
    assert re.search(r'id="channel-email"[^>]*disabled', page)
    assert 'id="channel-email"' in page and not re.search(r'id="channel-email"[^>]*checked', page)
    [mail] = smtp.messages
    assert mail["To"] == ADDRESS
    assert mail["Subject"] == "Veuillez confirmer votre adresse courriel pour les rappels CARE-SSc"
    link = _link_in(mail)
    # The link carries no address, in clear or otherwise readable.
    assert "person" not in link and "example" not in link
    assert {r.channel for r in planning.upcoming_reminders(participant, limit=200)} == {"inapp"}
    assert _audited("reminder_email.verification_sent") == 1

    confirm_page = client.get(link)
    assert confirm_page.status_code == 200
    # Opening the link confirms nothing by itself: a mail scanner follows links too.
    assert db.session.get(ReminderPreference, participant.id).email_verified_at is None
    token = csrf_token(client, link)
    answer = client.post(link, data={"csrf_token": token})
    assert answer.status_code == 303 and answer.headers["Location"] == link
    assert "Votre adresse est confirmée." in client.get(link).get_data(as_text=True)
    # A reload of the confirmation, or a second tap, confirms once.
    client.post(link, data={"csrf_token": token})
    assert _audited("reminder_email.verified") == 1
    assert "email" in {r.channel for r in planning.upcoming_reminders(participant, limit=200)}
    page = client.get("/reminders").get_data(as_text=True)
    assert re.search(r'id="channel-email"[^>]*checked', page)


def test_the_link_works_without_signing_in(app, client, csrf_token, participant, smtp):
    _post(client, csrf_token, "/reminders/email", email=ADDRESS)
    link = _link_in(smtp.messages[0])
    other_phone = app.test_client()
    answer = other_phone.post(link, data={"csrf_token": csrf_token(other_phone, link)})
    assert answer.status_code == 303
    assert preferences.preferences_of(participant).email_verified


def test_an_expired_link_is_refused_in_the_participants_language(
    app, client, csrf_token, participant, smtp, now
):
    _post(client, csrf_token, "/reminders/email", email=ADDRESS)
    link = _link_in(smtp.messages[0])
    now(now() + preferences.EMAIL_LINK_LIFETIME + timedelta(minutes=1))
    page = app.test_client().get(link, headers={"Accept-Language": "fr-CA"})
    assert page.status_code == 410
    assert "Ce lien de confirmation a expiré." in page.get_data(as_text=True)
    assert not preferences.preferences_of(participant).email_verified


@pytest.mark.parametrize("change", ["tampered", "garbage", "other address"])
def test_a_wrong_link_is_a_translated_400(app, client, csrf_token, participant, smtp, change):
    _post(client, csrf_token, "/reminders/email", email=ADDRESS)
    link = _link_in(smtp.messages[0])
    if change == "tampered":
        link = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    elif change == "garbage":
        link = "/reminders/email/confirm/nonsense"
    else:
        # The address was changed since: the old link confirms nothing.
        _post(client, csrf_token, "/reminders/email", email="someone@example.org")
    visitor = app.test_client()
    page = visitor.get(link, headers={"Accept-Language": "en-CA"})
    assert page.status_code == 400
    assert "This confirmation link is not valid." in page.get_data(as_text=True)
    answer = visitor.post(link, data={"csrf_token": csrf_token(visitor, "/")})
    assert answer.status_code == 400
    assert not preferences.preferences_of(participant).email_verified


def test_the_dispatcher_sends_nothing_to_an_unconfirmed_address(app, participant, smtp, now):
    preferences.set_email(participant, ADDRESS)
    preferences.confirm_email(participant)
    db.session.commit()
    planned = reminders_of(participant, channel="email", status="planned")[0]
    # As if the address had lost its confirmation after the reminder was planned.
    db.session.get(ReminderPreference, participant.id).email_verified_at = None
    db.session.commit()
    now(planned.due_at + timedelta(seconds=5))
    dispatch.Dispatcher().run_once()
    assert smtp.messages == []
    attempt = db.session.scalars(
        sa.select(ReminderAttempt).where(ReminderAttempt.reminder_id == planned.id)
    ).one()
    assert (attempt.outcome, attempt.detail) == ("cancelled", "e-mail address not confirmed")


def test_a_new_address_loses_the_old_confirmation(participant, smtp):
    preferences.set_email(participant, ADDRESS)
    preferences.confirm_email(participant)
    preferences.set_email(participant, "someone@example.org")
    assert not preferences.preferences_of(participant).email_verified
    assert "email" not in preferences.usable_channels(participant)


def test_the_address_is_never_in_the_audit_trail(client, csrf_token, participant, smtp):
    _post(client, csrf_token, "/reminders/email", email=ADDRESS)
    link = _link_in(smtp.messages[0])
    client.post(link, data={"csrf_token": csrf_token(client, link)})
    events = db.session.scalars(sa.select(AuditEvent)).all()
    assert events and all(ADDRESS not in repr((e.before, e.after)) for e in events)


def test_saving_choices_twice_saves_once(client, csrf_token, participant):
    form = {"channels": ["inapp"], "kinds": ["visit"], "quiet": "on"}
    form |= {"quiet_start": "21", "quiet_end": "8"}
    for _ in range(2):
        answer = _post(client, csrf_token, "/reminders/preferences", **form)
        assert answer.status_code == 303 and answer.headers["Location"] == "/reminders#choices"
    assert _audited("reminder_preferences.changed") == 1
    assert {r.kind for r in planning.upcoming_reminders(participant, limit=200)} <= {"visit"}


def test_a_switch_that_cannot_reach_the_participant_is_not_ticked(client, participant):
    page = client.get("/reminders").get_data(as_text=True)
    # No phone said yes and no address: only the home-page message is on.
    assert re.search(r'id="channel-inapp"[^>]*checked', page)
    for channel in ("push", "email"):
        assert re.search(rf'id="channel-{channel}"[^>]*disabled', page)
        assert not re.search(rf'id="channel-{channel}"[^>]*checked', page)


def test_upcoming_reminders_are_one_line_per_moment(client, participant):
    planned = planning.upcoming_reminders(participant, limit=200)
    page = client.get("/reminders").get_data(as_text=True)
    upcoming = page[page.index('id="upcoming-heading"') : page.index('id="test-heading"')]
    lines = re.findall(r"<li>(.*?)</li>", upcoming, flags=re.S)
    assert lines and len(lines) == len(set(lines))
    assert len(lines) <= min(5, len({(r.due_at, r.kind) for r in planned}))


@pytest.mark.parametrize(
    "path", ["/reminders/preferences", "/reminders/email", "/reminders/test/inapp"]
)
def test_every_form_answers_with_a_redirect(client, csrf_token, participant, path):
    answer = _post(client, csrf_token, path)
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/reminders#")
