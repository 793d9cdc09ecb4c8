"""Alert rules with severity, raised at autosave for the diary, readable by staff, with a
response target in the site's working hours; e-mailed and escalated by the dispatcher."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from patient_portal.audit import AuditEvent
from patient_portal.extensions import db
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires import alerts, services
from patient_portal.questionnaires.models import Alert
from patient_portal.reminders.channels import Channel, Outcome
from patient_portal.reminders.dispatch import Dispatcher
from tests.safety.conftest import diary, local

FRIDAY_BEFORE_SPRING = date(2027, 3, 12)  # Montréal springs forward on Sunday 14 March 2027


class Mailbox(Channel):
    """An e-mail channel that keeps what it was asked to send."""

    name = "email"

    def __init__(self):
        self.sent: list[tuple[str, object]] = []

    def send(self, message, target) -> Outcome:
        self.sent.append((target.email, message))
        return Outcome("sent")


class Sink(Channel):
    """Push and in-app reminders falling due while the clock moves: accepted, not looked at."""

    def send(self, message, target) -> Outcome:
        return Outcome("sent")


def dispatcher_with(mailbox: Mailbox) -> Dispatcher:
    return Dispatcher(channels={"email": mailbox, "push": Sink(), "inapp": Sink()})


def _zone(site: str):
    return get_protocol().site(site).zone


def _alerts(participant) -> list[Alert]:
    return list(
        db.session.scalars(
            sa.select(Alert).where(Alert.participant_id == participant.id).order_by(Alert.id)
        )
    )


def test_an_urgent_diary_answer_raises_its_alert_before_the_diary_is_sent(infused, now):
    participant = infused("JGH", date(2026, 12, 1))
    entry = diary(participant)[0]
    now.set(local(date(2026, 12, 2), 7, 0, _zone("JGH")))
    services.save_answer(entry, "temperature", ["385"], participant)
    db.session.commit()
    [alert] = _alerts(participant)
    assert (alert.rule_id, alert.severity, alert.item_id, alert.value) == (
        "fever",
        "urgent",
        "temperature",
        385,
    )
    assert entry.submission is None
    assert alerts.answer_text(
        "post_infusion_diary", "fever", "temperature", 385, "en", "en_CA"
    ) == ("38.5 to 38.9 °C")
    assert alerts.alert_label("post_infusion_diary", "fever", "temperature", "fr") == (
        "Température de 38,0 °C ou plus"
    )
    # Changing the answer does not take the alert back, and the same rule never fires twice.
    services.save_answer(entry, "temperature", ["374"], participant)
    services.save_answer(entry, "temperature", ["390"], participant)
    services.save_answer(entry, "symptoms", ["headache", "breathing"], participant)
    services.save_answer(entry, "breathing_severity", ["7"], participant)
    services.save_answer(entry, "how_bad", ["2"], participant)
    services.submit(entry, participant, "en")
    db.session.commit()
    assert [(a.rule_id, a.severity) for a in _alerts(participant)] == [
        ("fever", "urgent"),
        ("symptom_reported", "routine"),
        ("breathing_worse", "urgent"),
    ]
    breathing = _alerts(participant)[2]
    label = alerts.alert_label("post_infusion_diary", "breathing_worse", "breathing_severity", "en")
    answer = alerts.answer_text(
        "post_infusion_diary", "breathing_worse", "breathing_severity", breathing.value, "en", "en"
    )
    assert f"{label}: {answer}" == "Shortness of breath: 7/10"
    raised = db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.action == "alert.raised")
    ).all()
    assert len(raised) == 3


def test_weekly_check_in_rules_have_a_severity_and_still_wait_for_submission(infused, now):
    participant = infused("JGH", date(2026, 12, 1))
    weekly = next(
        a
        for a in services.participant_questionnaires(participant).open
        if a.series_code == "WEEKLY"
    )
    services.save_answer(weekly, "breathing", ["9"], participant)
    assert _alerts(participant) == []  # the weekly check-in is checked once, when sent
    from tests.questionnaires.conftest import CALM_WEEK

    for item_id, raw in dict(CALM_WEEK, breathing="9").items():
        services.save_answer(weekly, item_id, raw, participant)
    services.submit(weekly, participant, "fr")
    assert [(a.rule_id, a.severity) for a in _alerts(participant)] == [
        ("breathing_severe", "urgent")
    ]


@pytest.mark.parametrize(
    ("site", "severity", "raised", "expected"),
    [
        # Friday 15:00 + 4 working hours (08:30–16:30): 1.5 h on Friday, 2.5 h on Monday,
        # across the weekend and Montréal's spring change (UTC−5 → UTC−4).
        ("JGH", "urgent", (FRIDAY_BEFORE_SPRING, 15, 0), (date(2027, 3, 15), 11, 0)),
        # Paris, 2 working days (09:00–17:00, 16 h) from Friday 26 March 10:00: 7 h Friday,
        # 8 h Monday 29 (after the change to summer time), 1 h Tuesday.
        ("SLS", "routine", (date(2027, 3, 26), 10, 0), (date(2027, 3, 30), 10, 0)),
        # Raised on a Saturday night: the clock starts on Monday morning.
        ("JGH", "urgent", (date(2026, 12, 5), 23, 0), (date(2026, 12, 7), 12, 30)),
        # Autumn: Paris falls back on 25 October 2026.
        ("SLS", "urgent", (date(2026, 10, 23), 16, 0), (date(2026, 10, 26), 12, 0)),
    ],
)
def test_response_targets_count_the_sites_working_hours(
    site, severity, raised, expected, make_participant
):
    participant = make_participant(site_code=site)
    zone = _zone(site)
    created = local(raised[0], raised[1], raised[2], zone)
    due = alerts.due_at(participant, severity, created)
    assert due == local(expected[0], expected[1], expected[2], zone)


@pytest.fixture
def team(make_staff):
    coordinator = make_staff(email="coord@jgh.example", sites=["JGH"])
    investigator = make_staff(email="pi@jgh.example", sites=["JGH"], investigator=True)
    make_staff(email="coord@sls.example", sites=["SLS"])
    make_staff(email="pi@sls.example", sites=["SLS"], investigator=True)
    return coordinator, investigator


def test_urgent_alert_is_mailed_in_one_pass_and_escalated_when_its_target_passes(
    infused, team, now
):
    zone = _zone("JGH")
    participant = infused("JGH", date(2027, 3, 11))  # diary day 1 is Friday 12 March
    now.set(local(FRIDAY_BEFORE_SPRING, 15, 0, zone))
    entry = diary(participant)[0]
    services.save_answer(entry, "temperature", ["385"], participant)
    db.session.commit()
    mailbox = Mailbox()
    dispatcher = dispatcher_with(mailbox)

    counts = dispatcher.run_once()
    # The site's coordinators (the investigator coordinates too), not the other site's.
    assert counts.outcomes["alert_notified"] == 2
    assert [to for to, _message in mailbox.sent] == ["coord@jgh.example", "pi@jgh.example"]
    _to, message = mailbox.sent[0]
    assert message.subject_line == "CARE-SSc: an urgent report is waiting"
    assert message.text.endswith("/staff/dashboard\n")
    for private in (participant.study_id, "38", "temperature", "fever", "Température"):
        assert private not in message.text and private not in message.html
    dispatcher.run_once()
    assert len(mailbox.sent) == 2  # once only

    # Due Monday 11:00 in Montréal (4 working hours, over the weekend and the DST change).
    now.set(local(date(2027, 3, 15), 10, 59, zone))
    dispatcher.run_once()
    assert len(mailbox.sent) == 2
    now.set(local(date(2027, 3, 15), 11, 0, zone))
    counts = dispatcher.run_once()
    assert counts.outcomes["alert_escalated"] == 1
    assert [to for to, _message in mailbox.sent[2:]] == ["pi@jgh.example"]
    assert "past its response target" in mailbox.sent[2][1].subject_line
    actions = db.session.scalars(
        sa.select(AuditEvent.action).where(AuditEvent.entity == "alert").order_by(AuditEvent.id)
    ).all()
    assert actions == ["alert.raised", "alert.notified", "alert.escalated"]


def test_an_acknowledged_alert_is_not_escalated(infused, team, now):
    zone = _zone("JGH")
    participant = infused("JGH", date(2027, 3, 11))
    now.set(local(FRIDAY_BEFORE_SPRING, 15, 0, zone))
    services.save_answer(diary(participant)[0], "symptoms", ["chest"], participant)
    [alert] = [a for a in _alerts(participant) if a.severity == "urgent"]
    alerts.acknowledge(alert, team[0], "advised_emergency", None)
    db.session.commit()
    mailbox = Mailbox()
    now.set(datetime(2027, 3, 20, 12, tzinfo=UTC))
    dispatcher_with(mailbox).run_once()
    # The routine alert of the same answer is still waiting, and past its target: escalated.
    assert [to for to, _message in mailbox.sent] == ["pi@jgh.example"]
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).escalated_at is None


def test_staff_read_the_alert_with_its_answer_age_and_target_in_their_language(
    infused, team, client, sign_in, now
):
    zone = _zone("JGH")
    participant = infused("JGH", date(2026, 12, 1))
    now.set(local(date(2026, 12, 2), 9, 0, zone))
    services.save_answer(diary(participant)[0], "temperature", ["380"], participant)
    db.session.commit()
    now.set(local(date(2026, 12, 2), 12, 0, zone))
    sign_in(client, team[0])
    page = client.get("/staff/dashboard").get_data(as_text=True)
    assert "Temperature 38.0 °C or higher: 38.0 to 38.4 °C" in page
    assert "3 hours ago" in page and "Respond by" in page and "fever" not in page
    team[0].language = "fr"
    db.session.commit()
    page = client.get("/staff/participants/" + participant.study_id).get_data(as_text=True)
    assert "Température de 38,0 °C ou plus : 38,0 à 38,4 °C" in page
    now.set(local(date(2026, 12, 2), 16, 0, zone))  # 4 working hours from 09:00: 13:00
    sign_in(client, team[0])  # a staff session ends after 30 idle minutes
    page = client.get("/staff/dashboard").get_data(as_text=True)
    assert "alert-overdue" in page


def test_a_site_without_working_days_is_refused(app):
    from patient_portal.protocol.services import WorkingHours

    with pytest.raises(ValueError):
        alerts.add_working_time(
            datetime(2027, 1, 1, tzinfo=UTC), 60, _zone("JGH"), WorkingHours(days=())
        )


def test_the_dashboard_follows_each_infusions_diary(infused, team, client, sign_in):
    infused("JGH", date(2026, 12, 1))
    sign_in(client, team[0])
    page = client.get("/staff/dashboard?visit=DIARY_M0").get_data(as_text=True)
    assert "1 participant matches these filters." in page
    assert "Daily diary after your infusion — Infusion 1 (month 0)" in page
