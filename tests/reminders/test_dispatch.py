"""Dispatch: several dispatchers at once send each reminder exactly once; Web Push reaches a
real push endpoint signed and encrypted; e-mail reaches a real SMTP server in the participant's
language; failures are retried with backoff, logged, and never duplicate or lose a reminder."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from patient_portal import clock
from patient_portal.audit import AuditEvent
from patient_portal.extensions import db
from patient_portal.questionnaires.models import Assignment
from patient_portal.questionnaires.services import plan_assignments
from patient_portal.reminders import channels, dispatch, preferences
from patient_portal.reminders.channels import Channel, Outcome
from patient_portal.reminders.models import PushSubscription, Reminder, ReminderAttempt
from patient_portal.schedule.services import plan_visits
from tests.reminders.conftest import reminders_of, visit_of
from tests.reminders.receivers import Browser, PushService, SMTPServer, free_port


class Recording(Channel):
    """Accepts like a push service would and notes which reminder it was given."""

    def __init__(self, name: str):
        self.name = name
        self.sent: list[int] = []
        self.lock = threading.Lock()

    def send(self, message, target) -> Outcome:
        with self.lock:
            self.sent.append(message.reminder_id)
        return Outcome("sent")


def recording_channels() -> dict[str, Recording]:
    return {name: Recording(name) for name in ("push", "email", "inapp")}


def _due_rows(participants, count: int, now: datetime) -> list[int]:
    rows = [
        {
            "participant_id": participants[i % len(participants)].id,
            "kind": "test",
            "subject": f"test:load:{i}",
            "channel": "inapp",
            "due_at": now - timedelta(minutes=1),
            "expires_at": now + timedelta(hours=1),
            "next_attempt_at": now - timedelta(minutes=1),
            "status": "planned",
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(count)
    ]
    db.session.execute(sa.insert(Reminder), rows)
    db.session.commit()
    return list(db.session.scalars(sa.select(Reminder.id).where(Reminder.kind == "test")))


@pytest.mark.commits
def test_four_dispatchers_in_parallel_send_each_reminder_exactly_once(app, make_participant):
    postgres = db.engine.dialect.name == "postgresql"
    participants = [make_participant(day0=None) for _ in range(8)]
    ids = _due_rows(participants, 3000 if postgres else 1000, clock.now())
    channel = recording_channels()
    start = threading.Barrier(4)
    claimed: dict[str, int] = {}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            with app.app_context():
                dispatcher = dispatch.Dispatcher(channels=channel, name=name, batch_size=50)
                start.wait()
                claimed[name] = dispatcher.run_once().claimed
                db.session.remove()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(f"dispatcher-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    sent = channel["inapp"].sent
    assert len(sent) == len(ids)
    assert sorted(sent) == sorted(ids)  # every one, none twice
    assert sum(claimed.values()) == len(ids)
    if postgres:
        # SKIP LOCKED lets them work side by side rather than in turn.
        assert sum(1 for count in claimed.values() if count) >= 2
    db.session.expire_all()
    statuses = db.session.execute(
        sa.select(Reminder.status, Reminder.attempts, sa.func.count()).group_by(
            Reminder.status, Reminder.attempts
        )
    ).all()
    assert statuses == [("sent", 1, len(ids))]
    attempts = db.session.execute(
        sa.select(ReminderAttempt.outcome, sa.func.count()).group_by(ReminderAttempt.outcome)
    ).all()
    assert attempts == [("sent", len(ids))]


def test_a_claimed_reminder_is_not_claimed_again(app, make_participant):
    participant = make_participant(day0=None)
    now = clock.now()
    ids = _due_rows([participant], 5, now)
    first = dispatch.Dispatcher(channels=recording_channels(), name="first")
    second = dispatch.Dispatcher(channels=recording_channels(), name="second")
    assert sorted(first.claim(now)) == sorted(ids)
    assert second.claim(now) == []
    db.session.expire_all()
    assert {(r.status, r.claimed_by) for r in reminders_of(participant)} == {("sending", "first")}


def test_a_reminder_whose_moment_passed_is_skipped_not_sent_late(app, now, make_participant):
    now(datetime(2026, 11, 20, 15, tzinfo=UTC))
    participant = make_participant(day0=date(2026, 12, 1))
    m0 = visit_of(participant, "M0")
    row = next(r for r in reminders_of(participant, visit_id=m0.id) if "day-before" in r.subject)
    now(row.expires_at + timedelta(minutes=1))
    channel = recording_channels()
    dispatch.Dispatcher(channels=channel).run_once()
    db.session.expire_all()
    assert db.session.get(Reminder, row.id).status == "skipped"
    assert row.id not in channel["inapp"].sent
    attempt = db.session.scalars(
        sa.select(ReminderAttempt).where(ReminderAttempt.reminder_id == row.id)
    ).one()
    assert (attempt.outcome, attempt.detail) == ("skipped", "its moment has passed")


def test_withdrawn_and_answered_mean_no_reminder(app, now, make_participant):
    now(datetime(2026, 11, 20, 15, tzinfo=UTC))
    withdrawn = make_participant(day0=date(2026, 12, 1))
    answering = make_participant(day0=date(2026, 11, 1))
    withdrawn.status = "withdrawn"  # as if the withdrawal flow had not cancelled them
    closes = [r for r in reminders_of(answering, kind="questionnaire") if ":closes:" in r.subject]
    for assignment in db.session.scalars(
        sa.select(Assignment).where(Assignment.participant_id == answering.id)
    ):
        assignment.status = "completed"
    db.session.commit()
    now(datetime(2026, 12, 31, 15, tzinfo=UTC))
    channel = recording_channels()
    counts = dispatch.Dispatcher(channels=channel).run_once()
    assert channel["inapp"].sent == []
    assert counts.claimed > 0
    assert set(counts.outcomes) <= {"cancelled", "skipped"}
    db.session.expire_all()
    assert {r.status for r in reminders_of(withdrawn)} == {"cancelled"}
    assert {db.session.get(Reminder, r.id).status for r in closes} <= {"cancelled"}


@pytest.fixture
def signed_in(client, sign_in, make_participant, now):
    """signed_in(**participant fields) -> participant, with the client signed in as them."""

    def make(**fields):
        now(datetime(2026, 11, 20, 15, tzinfo=UTC))
        participant = make_participant(**fields)
        sign_in(client, participant)
        return participant

    return make


def _subscribe(client, csrf_token, subscription: dict):
    token = csrf_token(client, "/reminders")
    return client.post(
        "/reminders/push/subscribe", json=subscription, headers={"X-CSRFToken": token}
    )


def test_web_push_reaches_the_phone_signed_encrypted_and_neutral(
    app, client, csrf_token, signed_in, now
):
    participant = signed_in(day0=date(2026, 12, 1))
    browser = Browser()
    with PushService(browser) as service:
        service.allowed_in(app)
        answer = _subscribe(client, csrf_token, browser.subscription(service.url()))
        assert answer.status_code == 201
        rows = reminders_of(participant, channel="push", kind="infusion")
        assert len(rows) == 3
        day_before = next(r for r in rows if "day-before" in r.subject)
        now(day_before.due_at + timedelta(seconds=30))
        counts = dispatch.Dispatcher().run_once()
    assert service.refused == []
    assert counts.outcomes["sent"] >= 1
    delivery = next(d for d in service.deliveries if d.payload["title"].endswith("demain"))
    assert delivery.vapid_key == channels.vapid_public_key(app)
    assert delivery.claims["aud"] == service.origin
    payload = delivery.payload
    assert payload["title"] == "Visite de l’étude CARE-SSc demain"
    assert (
        payload["body"]
        == "mardi 1 décembre 2026, Hôpital général juif. L’équipe de recherche vous confirmera l’heure."
    )
    assert payload["url"] == "/home"
    assert payload["lang"] == "fr"
    # Lock screens are seen by others: no treatment named.
    assert "perfusion" not in str(payload).lower() and "infusion" not in str(payload).lower()
    db.session.expire_all()
    assert db.session.get(Reminder, day_before.id).status == "sent"
    assert db.session.scalars(sa.select(PushSubscription)).one().last_success_at is not None


def test_a_test_push_from_the_page(app, client, csrf_token, signed_in):
    signed_in(day0=None, language="en")
    browser = Browser()
    with PushService(browser) as service:
        service.allowed_in(app)
        _subscribe(client, csrf_token, browser.subscription(service.url()))
        page = client.post(
            "/reminders/test/push", data={"csrf_token": csrf_token(client, "/reminders")}
        )
    assert page.status_code == 303
    assert "A test notification is on its way to your phone." in client.get(
        page.headers["Location"]
    ).get_data(as_text=True)
    assert [d.payload["title"] for d in service.deliveries] == ["CARE-SSc test reminder"]


def test_a_subscription_the_push_service_says_is_gone_is_removed(
    app, client, csrf_token, signed_in, now
):
    participant = signed_in(day0=date(2026, 12, 1))
    browser = Browser()
    with PushService(browser) as service:
        service.allowed_in(app)
        _subscribe(client, csrf_token, browser.subscription(service.url("gone")))
        rows = reminders_of(participant, channel="push", status="planned")
        first = rows[0]
        now(first.due_at + timedelta(seconds=30))
        dispatch.Dispatcher().run_once()
    db.session.expire_all()
    assert db.session.scalars(sa.select(PushSubscription)).all() == []
    assert db.session.get(Reminder, first.id).status == "failed"
    attempt = db.session.scalars(
        sa.select(ReminderAttempt).where(ReminderAttempt.reminder_id == first.id)
    ).one()
    assert attempt.outcome == "gone" and "410" in attempt.detail
    # The phone's other push reminders go with it; in-app ones stay.
    later = [r for r in reminders_of(participant, channel="push") if r.due_at > now()]
    assert later and {r.status for r in later} == {"cancelled"}
    assert reminders_of(participant, channel="inapp", status="planned")
    assert db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.action == "push_subscription.expired")
    ).one()


def test_a_busy_push_service_is_retried_with_backoff(app, client, csrf_token, signed_in, now):
    participant = signed_in(day0=date(2026, 12, 1))
    browser = Browser()
    with PushService(browser) as service:
        service.allowed_in(app)
        _subscribe(client, csrf_token, browser.subscription(service.url("busy")))
        first = reminders_of(participant, channel="push", status="planned")[0]
        moment = now(first.due_at + timedelta(seconds=30))
        dispatch.Dispatcher().run_once()
        db.session.expire_all()
        row = db.session.get(Reminder, first.id)
        assert (row.status, row.attempts) == ("planned", 1)
        assert row.next_attempt_at == moment + timedelta(minutes=1)
        now(moment + timedelta(minutes=1))
        dispatch.Dispatcher().run_once()
        db.session.expire_all()
        row = db.session.get(Reminder, first.id)
        assert (row.status, row.attempts) == ("planned", 2)
        assert row.next_attempt_at == moment + timedelta(minutes=3)
    outcomes = db.session.scalars(
        sa.select(ReminderAttempt.outcome).where(ReminderAttempt.reminder_id == first.id)
    ).all()
    assert outcomes == ["retry", "retry"]


@pytest.fixture
def smtp(app):
    with SMTPServer() as server:
        app.config.update(
            PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_PORT=server.port, PORTAL_SMTP_SECURITY="none"
        )
        yield server


@pytest.mark.parametrize(
    ("language", "subject", "footer"),
    [
        ("fr", "Visite de l’étude CARE-SSc demain", "Vous recevez ce courriel"),
        ("en", "CARE-SSc study visit tomorrow", "You receive this e-mail"),
    ],
)
def test_email_reaches_a_real_smtp_server_in_the_participants_language(
    app, smtp, now, make_participant, language, subject, footer
):
    now(datetime(2026, 11, 20, 15, tzinfo=UTC))
    participant = make_participant(day0=date(2026, 12, 1), language=language)
    with app.test_request_context("/"):
        preferences.set_email(participant, "participant@example.org")
        preferences.confirm_email(participant)
    db.session.commit()
    stored = db.session.execute(sa.text("SELECT email_encrypted FROM reminder_preference")).scalar()
    assert b"participant@example.org" not in bytes(stored)
    day_before = next(
        r
        for r in reminders_of(participant, channel="email", kind="infusion")
        if "day-before" in r.subject
    )
    now(day_before.due_at + timedelta(seconds=5))
    dispatch.Dispatcher().run_once()
    mail = next(m for m in smtp.messages if m["Subject"] == subject)
    assert mail["To"] == "participant@example.org"
    assert mail["Content-Language"] == language
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert footer in text and footer in html
    assert "http://localhost:5000/home" in text
    assert f'<html lang="{language}">' in html
    assert "perfusion" not in text.lower() and "infusion" not in text.lower()


def test_smtp_down_is_retried_logged_then_failed_and_shown_to_coordinators(
    app, now, make_participant
):
    app.config.update(PORTAL_SMTP_HOST="127.0.0.1", PORTAL_SMTP_PORT=free_port())  # nobody there
    now(datetime(2026, 11, 20, 15, tzinfo=UTC))
    participant = make_participant(day0=date(2026, 12, 1))
    with app.test_request_context("/"):
        preferences.set_email(participant, "participant@example.org")
        preferences.confirm_email(participant)
    db.session.commit()
    week_before = next(
        r
        for r in reminders_of(participant, channel="email", kind="infusion")
        if "week-before" in r.subject
    )
    moment = now(week_before.due_at)
    # 1, 2, 4 and 8 minutes apart: five attempts fit in the three hours it may be late.
    for _ in range(app.config["PORTAL_REMINDER_MAX_ATTEMPTS"]):
        dispatch.Dispatcher().run_once()
        db.session.expire_all()
        moment = now(db.session.get(Reminder, week_before.id).next_attempt_at)
    row = db.session.get(Reminder, week_before.id)
    assert (row.status, row.attempts) == ("failed", 5)
    log = [e for e in dispatch.reminder_log(participant) if e.channel == "email"]
    assert [e.outcome for e in log] == ["failed", "retry", "retry", "retry", "retry"]
    assert all("SMTP server unreachable" in e.detail for e in log)
    # The in-app reminder of the same moment went as planned: nothing else was held up.
    assert moment > week_before.due_at


def test_the_dispatch_command_runs_one_pass(app, runner, make_participant):
    participant = make_participant(day0=None)
    _due_rows([participant], 3, clock.now())
    result = runner.invoke(args=["reminders", "dispatch"])
    assert result.exit_code == 0, result.output
    assert "claimed 3: sent 3" in result.output
    assert {r.status for r in reminders_of(participant)} == {"sent"}


def test_the_plan_command_plans_everyone(app, runner, now, make_participant):
    now(datetime(2026, 11, 20, 15, tzinfo=UTC))
    participant = make_participant(day0=date(2026, 12, 1), planned=False)
    plan_visits(participant)
    plan_assignments(participant)
    db.session.commit()
    assert reminders_of(participant) == []
    result = runner.invoke(args=["reminders", "plan"])
    assert result.exit_code == 0, result.output
    assert reminders_of(participant, status="planned")


def test_a_retry_that_falls_in_quiet_hours_waits_for_their_end(app, now, make_participant):
    now(datetime(2026, 11, 20, 15, tzinfo=UTC))
    participant = make_participant(day0=date(2026, 12, 1))
    m0 = visit_of(participant, "M0")
    # 22:30 in Montréal on 20 November 2026 (UTC−5): quiet until 08:00.
    moment = now(datetime(2026, 11, 21, 3, 30, tzinfo=UTC))
    row = Reminder(
        participant_id=participant.id,
        kind="infusion",
        subject=f"visit:{m0.id}:retried:2026-12-01",
        channel="inapp",
        visit_id=m0.id,
        due_at=moment - timedelta(hours=2),
        expires_at=moment + timedelta(days=1),
        next_attempt_at=moment,
        status="planned",
        attempts=1,
    )
    db.session.add(row)
    db.session.commit()
    channel = recording_channels()
    counts = dispatch.Dispatcher(channels=channel).run_batch(ids=[row.id])
    assert channel["inapp"].sent == []
    assert counts.outcomes == {"deferred": 1}
    db.session.expire_all()
    row = db.session.get(Reminder, row.id)
    assert (row.status, row.attempts) == ("planned", 1)
    assert row.next_attempt_at == datetime(2026, 11, 21, 13, tzinfo=UTC)  # 08:00 local


def test_a_claim_left_by_a_dispatcher_that_died_is_failed_not_resent(app, make_participant):
    participant = make_participant(day0=None)
    now = clock.now()
    ids = _due_rows([participant], 2, now)
    dead = dispatch.Dispatcher(channels=recording_channels(), name="dead")
    assert sorted(dead.claim(now)) == sorted(ids)
    # It stopped twenty minutes ago, between its claim and its record.
    db.session.execute(sa.update(Reminder).values(claimed_at=now - timedelta(minutes=20)))
    db.session.commit()
    channel = recording_channels()
    dispatch.Dispatcher(channels=channel, name="alive").run_once()
    assert channel["inapp"].sent == []
    db.session.expire_all()
    assert {r.status for r in reminders_of(participant)} == {"failed"}
    assert {e.outcome for e in dispatch.reminder_log(participant)} == {"failed"}
