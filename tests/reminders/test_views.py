"""The preferences page and its endpoints: what the participant sees in French and English,
bad input refused with a translated message and nothing saved, and the home-page banner."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from patient_portal.extensions import db
from patient_portal.reminders import dispatch, planning, preferences
from patient_portal.reminders.models import (
    PushSubscription,
    Reminder,
    ReminderAttempt,
    ReminderPreference,
)
from tests.reminders.receivers import Browser, free_port


@pytest.fixture
def participant(make_participant, now, client, sign_in):
    now(datetime(2026, 11, 20, 15, tzinfo=UTC))
    person = make_participant(day0=date(2026, 12, 1))
    sign_in(client, person)
    return person


def _post(client, csrf_token, path, **data):
    return client.post(path, data={"csrf_token": csrf_token(client, "/reminders"), **data})


def test_the_page_lists_upcoming_reminders_and_the_choices_in_french(client, participant):
    page = client.get("/reminders")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<h1>Rappels</h1>" in html
    assert "Mes prochains rappels" in html
    assert "Jours de perfusion" in html
    # The first upcoming reminder: the week before day 0 (1 December), 18:00 in Montréal.
    assert "mardi 24 novembre 2026 à 18 h 00" in html
    assert "Turn on" not in html
    # Tap-only: the quiet hours are lists; the only text field is the optional e-mail address.
    assert html.count('type="text"') == 0
    assert 'id="quiet-start"' in html and "<select" in html


def test_the_page_in_english(client, participant):
    participant.language = "en"
    db.session.commit()
    html = client.get("/reminders").get_data(as_text=True)
    assert "<h1>Reminders</h1>" in html
    assert "Tuesday, November 24, 2026 at 6:00" in html
    assert "Add to Home Screen" in html


@pytest.mark.parametrize("path", ["/reminders"])
def test_the_page_is_for_participants_only(client, make_staff, sign_in, path):
    assert client.get(path).status_code in (302, 303, 401)
    sign_in(client, make_staff())
    assert client.get(path).status_code == 403


def test_choices_are_saved_and_replanned(client, csrf_token, participant):
    answer = client.post(
        "/reminders/preferences",
        data={
            "csrf_token": csrf_token(client, "/reminders"),
            "channels": ["inapp"],
            "kinds": ["infusion"],
            "quiet": "on",
            "quiet_start": "22",
            "quiet_end": "7",
        },
    )
    assert answer.status_code == 303
    prefs = preferences.preferences_of(participant)
    assert prefs.quiet == (22, 7)
    assert prefs.channels["visit"] == ()
    planned = planning.upcoming_reminders(participant, limit=100)
    assert {r.kind for r in planned} == {"infusion"}
    assert "Vos choix de rappels sont enregistrés." in client.get("/reminders").get_data(
        as_text=True
    )


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("8", "8", "Les heures sans rappel doivent durer entre 1 et 14 heures."),
        ("6", "23", "Les heures sans rappel doivent durer entre 1 et 14 heures."),
        ("minuit", "7", "Veuillez choisir les heures dans les listes."),
        ("24", "7", "Veuillez choisir les heures dans les listes."),
    ],
)
def test_quiet_hours_that_make_no_sense_are_refused(
    client, csrf_token, participant, start, end, message
):
    answer = _post(
        client, csrf_token, "/reminders/preferences", quiet="on", quiet_start=start, quiet_end=end
    )
    # Back to the page with the message beside the form (Post/Redirect/Get), nothing saved.
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/reminders#choices"
    assert message in client.get("/reminders").get_data(as_text=True)
    assert db.session.get(ReminderPreference, participant.id) is None


@pytest.mark.parametrize(
    "address",
    [
        "not-an-address",
        "two@@example.org",
        "a b@example.org",
        "x@localhost",
        "a" * 250 + "@example.org",
    ],
)
def test_an_invalid_email_address_is_refused(app, client, csrf_token, participant, address):
    app.config["PORTAL_SMTP_HOST"] = "127.0.0.1"
    answer = _post(client, csrf_token, "/reminders/email", email=address)
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert "Veuillez entrer une adresse courriel valide, par exemple nom@exemple.org." in html
    assert 'aria-invalid="true"' in html
    assert preferences.email_of(participant) is None


def test_an_email_address_is_saved_encrypted_and_removed(app, client, csrf_token, participant):
    app.config["PORTAL_SMTP_HOST"] = "127.0.0.1"
    answer = _post(client, csrf_token, "/reminders/email", email=" person@example.org ")
    assert answer.status_code == 303
    assert preferences.email_of(participant) == "person@example.org"
    # Nothing goes to an address before its owner confirms it.
    assert {r.channel for r in planning.upcoming_reminders(participant, limit=200)} == {"inapp"}
    preferences.confirm_email(participant)
    assert {r.channel for r in planning.upcoming_reminders(participant, limit=200)} == {
        "inapp",
        "email",
    }
    answer = _post(client, csrf_token, "/reminders/email", remove="yes")
    assert answer.status_code == 303
    assert preferences.email_of(participant) is None
    assert {r.channel for r in planning.upcoming_reminders(participant, limit=200)} == {"inapp"}


BROWSER = Browser()
GOOD = BROWSER.subscription("https://fcm.googleapis.com/fcm/send/abc")


@pytest.mark.parametrize(
    "body",
    [
        None,
        "nonsense",
        {"endpoint": "https://push.example.org/x"},
        {**GOOD, "endpoint": "ftp://push.example.org/x"},
        {**GOOD, "keys": {"p256dh": "short", "auth": GOOD["keys"]["auth"]}},
        {**GOOD, "keys": {"p256dh": GOOD["keys"]["p256dh"], "auth": "AAAA"}},
        {**GOOD, "keys": {"p256dh": "!!!", "auth": GOOD["keys"]["auth"]}},
        {**GOOD, "keys": {"p256dh": 12, "auth": GOOD["keys"]["auth"]}},
    ],
)
def test_a_malformed_push_subscription_is_refused(client, csrf_token, participant, body):
    token = csrf_token(client, "/reminders")
    answer = client.post(
        "/reminders/push/subscribe",
        data="nonsense" if body == "nonsense" else None,
        json=None if body == "nonsense" else body,
        headers={"X-CSRFToken": token},
    )
    assert answer.status_code == 422
    assert answer.get_json()["error"] == (
        "Ce téléphone a envoyé des informations de notification que le portail ne peut pas "
        "utiliser. Veuillez réessayer."
    )
    assert db.session.scalars(sa.select(PushSubscription)).all() == []


def test_a_subscription_is_added_once_and_removed(client, csrf_token, participant):
    token = csrf_token(client, "/reminders")
    for _ in range(2):
        answer = client.post("/reminders/push/subscribe", json=GOOD, headers={"X-CSRFToken": token})
        assert answer.status_code == 201
    assert answer.get_json()["message"] == "Les notifications sont activées sur ce téléphone."
    assert len(db.session.scalars(sa.select(PushSubscription)).all()) == 1
    assert "push" in {r.channel for r in planning.upcoming_reminders(participant, limit=200)}
    answer = client.post(
        "/reminders/push/unsubscribe",
        json={"endpoint": GOOD["endpoint"]},
        headers={"X-CSRFToken": token},
    )
    assert answer.status_code == 200
    assert db.session.scalars(sa.select(PushSubscription)).all() == []
    assert "push" not in {r.channel for r in planning.upcoming_reminders(participant, limit=200)}


def test_an_in_app_test_reminder_shows_on_the_home_page(client, csrf_token, participant):
    answer = _post(client, csrf_token, "/reminders/test/inapp")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/reminders#test-inapp"
    page = client.get("/reminders").get_data(as_text=True)
    # The confirmation sits under the button that was tapped.
    button_at = page.index('action="/reminders/test/inapp"')
    assert page.index("Un message d’essai vous attend sur votre page d’accueil.") > button_at
    # A reload is a GET: no second test reminder, no 405.
    assert client.get("/reminders").status_code == 200
    assert db.session.scalar(sa.select(sa.func.count()).where(Reminder.kind == "test")) == 1
    home = client.get("/home").get_data(as_text=True)
    assert "Rappel d’essai CARE-SSc" in home
    assert "Les rappels du portail de l’étude CARE-SSc vous parviendront ici." in home


def test_a_test_on_a_channel_that_cannot_reach_the_participant_says_why(
    client, csrf_token, participant
):
    answer = _post(client, csrf_token, "/reminders/test/push")
    assert answer.status_code == 303
    assert "Activez d’abord les notifications sur ce téléphone." in client.get(
        "/reminders"
    ).get_data(as_text=True)
    assert (
        client.post("/reminders/test/fax", data={"csrf_token": csrf_token(client)}).status_code
        == 404
    )


def test_a_test_email_with_the_smtp_server_down_says_so_and_is_logged(
    app, client, csrf_token, participant
):
    app.config.update(PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_PORT=free_port())
    _post(client, csrf_token, "/reminders/email", email="person@example.org")
    preferences.confirm_email(participant)
    db.session.commit()
    answer = _post(client, csrf_token, "/reminders/test/email")
    assert answer.status_code == 303
    assert "Le rappel d’essai n’a pas pu être envoyé pour le moment." in client.get(
        "/reminders"
    ).get_data(as_text=True)
    attempt = db.session.scalars(sa.select(ReminderAttempt)).one()
    assert attempt.outcome == "retry"
    assert attempt.detail.startswith("SMTP server unreachable")


def test_coordinators_see_the_attempts_but_never_the_text_or_address(
    app, client, csrf_token, participant, make_staff, sign_in
):
    app.config["PORTAL_SMTP_HOST"] = "127.0.0.1"
    _post(client, csrf_token, "/reminders/email", email="person@example.org")
    _post(client, csrf_token, "/reminders/test/inapp")
    staff_client = app.test_client()
    sign_in(staff_client, make_staff(sites=["JGH"]))
    html = staff_client.get(f"/staff/participants/{participant.study_id}").get_data(as_text=True)
    assert "Reminders sent" in html
    assert "Message on my home page" in html
    assert "person@example.org" not in html
    assert "test reminder" not in html.lower()
    entries = dispatch.reminder_log(participant)
    assert [(e.kind, e.channel, e.outcome) for e in entries] == [("test", "inapp", "sent")]
