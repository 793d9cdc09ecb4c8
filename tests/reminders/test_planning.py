"""Planning: reminder times on the sites' wall clocks across DST changes, quiet hours, and
re-planning when an appointment, day 0 or a participant's status changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
import sqlalchemy as sa

from patient_portal.audit import AuditEvent, verify_chain
from patient_portal.errors import PortalError
from patient_portal.extensions import db
from patient_portal.planning import plan_year
from patient_portal.reminders import planning, preferences
from patient_portal.reminders.messages import Subject
from patient_portal.reminders.models import KINDS, Reminder
from patient_portal.schedule import services as schedule
from tests.reminders.conftest import reminders_of, visit_of


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# (site, infusion day = day 0, expected UTC of: 7 days before 18:00, day before 18:00, 08:00 that day)
DST_CASES = [
    # Montréal springs forward on 8 March 2026: a week before is EST (UTC−5), the eve EDT (UTC−4).
    ("JGH", date(2026, 3, 9), [_utc(2026, 3, 2, 23), _utc(2026, 3, 8, 22), _utc(2026, 3, 9, 12)]),
    # ... and falls back on 1 November 2026.
    (
        "CHUM",
        date(2026, 11, 2),
        [_utc(2026, 10, 26, 22), _utc(2026, 11, 1, 23), _utc(2026, 11, 2, 13)],
    ),
    (
        "JGH",
        date(2027, 3, 15),
        [_utc(2027, 3, 8, 23), _utc(2027, 3, 14, 22), _utc(2027, 3, 15, 12)],
    ),
    (
        "JGH",
        date(2027, 11, 8),
        [_utc(2027, 11, 1, 22), _utc(2027, 11, 7, 23), _utc(2027, 11, 8, 13)],
    ),
    # Paris springs forward on 29 March 2026 (CET UTC+1 → CEST UTC+2) and falls back on 25 October.
    (
        "SLS",
        date(2026, 3, 30),
        [_utc(2026, 3, 23, 17), _utc(2026, 3, 29, 16), _utc(2026, 3, 30, 6)],
    ),
    (
        "SLS",
        date(2026, 10, 26),
        [_utc(2026, 10, 19, 16), _utc(2026, 10, 25, 17), _utc(2026, 10, 26, 7)],
    ),
    (
        "SLS",
        date(2027, 3, 29),
        [_utc(2027, 3, 22, 17), _utc(2027, 3, 28, 16), _utc(2027, 3, 29, 6)],
    ),
    (
        "SLS",
        date(2027, 11, 1),
        [_utc(2027, 10, 25, 16), _utc(2027, 10, 31, 17), _utc(2027, 11, 1, 7)],
    ),
]


@pytest.mark.parametrize(("site", "infusion_day", "expected"), DST_CASES)
def test_infusion_reminders_keep_the_wall_clock_across_dst(
    now, make_participant, site, infusion_day, expected
):
    now(datetime.combine(infusion_day - timedelta(days=20), time(12), tzinfo=UTC))
    participant = make_participant(site_code=site, day0=infusion_day)
    m0 = visit_of(participant, "M0")
    rows = reminders_of(participant, visit_id=m0.id, kind="infusion", channel="inapp")
    assert [r.due_at for r in rows] == expected
    assert [r.kind for r in rows] == ["infusion"] * 3
    # The morning reminder is pointless once the day is over.
    assert rows[2].expires_at <= datetime.combine(
        infusion_day + timedelta(days=1), time(12), tzinfo=UTC
    )


def test_a_visit_gets_one_reminder_the_evening_before(now, make_participant):
    now(_utc(2026, 11, 20, 15))
    participant = make_participant(day0=date(2026, 11, 1))
    m1 = visit_of(participant, "M1")  # day 28: 29 November 2026
    schedule.set_appointment(m1, date(2026, 11, 30), time(10, 0), None, None, None)
    db.session.commit()
    rows = reminders_of(participant, visit_id=m1.id, kind="visit", status="planned")
    assert [(r.kind, r.due_at) for r in rows] == [("visit", _utc(2026, 11, 29, 23))]
    assert rows[0].expires_at == _utc(2026, 11, 30, 2)  # three hours late at most


def test_questionnaire_reminders_leave_the_night_alone(now, make_participant):
    # Weekly check-ins open at local midnight; the reminder waits for 08:00, the end of quiet hours.
    now(_utc(2026, 11, 20, 15))
    participant = make_participant(day0=date(2026, 11, 1))
    opens = [
        r
        for r in reminders_of(participant, kind="questionnaire", channel="inapp")
        if ":opens:" in r.subject
    ]
    assert opens
    for row in opens:
        local = row.due_at.astimezone(schedule.site_of(participant).zone)
        assert (local.hour, local.minute) == (8, 0)
    closes = [r for r in reminders_of(participant, kind="questionnaire") if ":closes:" in r.subject]
    for row in closes:
        # 24 hours before local midnight is midnight: quiet, so 08:00 on the last day.
        local = row.due_at.astimezone(schedule.site_of(participant).zone)
        assert (local.hour, local.minute) == (8, 0)
        assert row.expires_at - row.due_at <= timedelta(hours=16)


def test_quiet_hours_ending_in_the_spring_forward_gap_end_an_hour_later(app, now, make_participant):
    # Quiet from 22:00 to 02:00 in Paris; the eve-of-infusion reminder is set for 23:00 on
    # 27 March 2027, and quiet hours end at 02:00 on the 28th, the night the clocks jump.
    app.config["PORTAL_REMINDER_HOUR"] = 23
    now(_utc(2027, 3, 10, 12))
    participant = make_participant(site_code="SLS", day0=date(2027, 3, 28), planned=False)
    preferences.save_preferences(participant, {k: ["inapp"] for k in KINDS}, (22, 2))
    plan_year(participant)
    db.session.commit()
    m0 = visit_of(participant, "M0")
    day_before = next(
        r
        for r in reminders_of(participant, visit_id=m0.id, kind="infusion")
        if "day-before" in r.subject
    )
    # 02:00 on 28 March 2027 does not exist in Paris: 03:00 CEST, 01:00 UTC.
    assert day_before.due_at == _utc(2027, 3, 28, 1)


def test_a_reminder_that_would_wait_past_its_visit_comes_before_quiet_hours(
    app, now, make_participant
):
    now(_utc(2026, 11, 20, 15))
    participant = make_participant(day0=date(2026, 12, 1), planned=False)
    preferences.save_preferences(participant, {k: ["inapp"] for k in KINDS}, (21, 9))
    plan_year(participant)
    m0 = visit_of(participant, "M0")
    schedule.set_appointment(m0, date(2026, 12, 1), time(8, 30), None, None, None)
    db.session.commit()
    morning = next(
        r
        for r in reminders_of(participant, visit_id=m0.id, kind="infusion")
        if "morning" in r.subject
    )
    # 08:00 is quiet and 09:00 is after the 08:30 appointment: 20:00 the evening before.
    assert morning.due_at == _utc(2026, 12, 1, 1)


def test_without_quiet_hours_a_questionnaire_reminder_comes_when_it_opens(now, make_participant):
    now(_utc(2026, 11, 20, 15))
    participant = make_participant(day0=date(2026, 11, 1), planned=False)
    preferences.save_preferences(participant, {k: ["inapp"] for k in KINDS}, None)
    plan_year(participant)
    db.session.commit()
    opens = [r for r in reminders_of(participant, kind="questionnaire") if ":opens:" in r.subject]
    local = opens[0].due_at.astimezone(schedule.site_of(participant).zone)
    assert (local.hour, local.minute) == (0, 0)


def test_moving_an_appointment_replans_its_reminders_and_audits_it(now, make_participant):
    now(_utc(2026, 11, 20, 15))
    participant = make_participant(day0=date(2026, 11, 1))
    m1 = visit_of(participant, "M1")
    schedule.set_appointment(m1, date(2026, 11, 30), time(10, 0), None, None, None)
    db.session.commit()
    first = reminders_of(participant, visit_id=m1.id, kind="visit", status="planned")
    schedule.set_appointment(m1, date(2026, 12, 3), time(14, 0), None, None, "Team availability")
    db.session.commit()
    rows = reminders_of(participant, visit_id=m1.id, kind="visit")
    # The first row was for the target date (29th), the second for the first appointment.
    assert [(r.status, r.due_at) for r in rows] == [
        ("cancelled", _utc(2026, 11, 28, 23)),
        ("cancelled", _utc(2026, 11, 29, 23)),
        ("planned", _utc(2026, 12, 2, 23)),
    ]
    assert rows[1].id == first[0].id
    rows = rows[1:]
    event = db.session.scalars(
        sa.select(AuditEvent)
        .where(AuditEvent.action == "reminders.planned")
        .order_by(AuditEvent.id.desc())
    ).first()
    assert [c["subject"] for c in event.after["cancelled"]] == [rows[0].subject]
    assert [c["subject"] for c in event.after["created"]] == [rows[1].subject]
    assert verify_chain() is None


def test_a_new_time_the_same_day_moves_the_reminder_row(now, make_participant):
    now(_utc(2026, 11, 20, 15))
    participant = make_participant(day0=date(2026, 12, 1))
    m0 = visit_of(participant, "M0")
    schedule.set_appointment(m0, date(2026, 12, 1), time(8, 30), None, None, None)
    schedule.set_appointment(m0, date(2026, 12, 1), time(13, 0), None, None, None)
    db.session.commit()
    morning = [
        r
        for r in reminders_of(participant, visit_id=m0.id, kind="infusion")
        if "morning" in r.subject
    ]
    assert len(morning) == 1
    assert morning[0].expires_at == _utc(2026, 12, 1, 16)  # 08:00 + 3 h, before 13:00 EST


def test_planning_is_idempotent(now, make_participant):
    now(_utc(2026, 11, 20, 15))
    participant = make_participant(day0=date(2026, 12, 1))
    count = len(reminders_of(participant))
    assert count > 0
    assert planning.plan_reminders(participant) == 0
    assert plan_year(participant) is False
    assert len(reminders_of(participant)) == count


def test_changing_day0_moves_the_reminders(now, make_participant):
    now(_utc(2026, 11, 20, 15))
    participant = make_participant(day0=date(2026, 12, 1))
    schedule.change_day0(participant, date(2026, 12, 8), "Product delivery delayed")
    plan_year(participant)
    db.session.commit()
    planned = reminders_of(participant, kind="infusion", status="planned")
    assert {r.subject.rsplit(":", 1)[1] for r in planned} == {"2026-12-08"}
    assert all(
        r.status == "cancelled"
        for r in reminders_of(participant, kind="infusion")
        if r.subject.endswith("2026-12-01")
    )


def test_channels_follow_preferences_and_what_can_reach_the_participant(app, now, make_participant):
    now(_utc(2026, 11, 20, 15))
    participant = make_participant(day0=date(2026, 12, 1))
    # No phone accepted notifications and there is no address: in-app only.
    assert {r.channel for r in reminders_of(participant)} == {"inapp"}
    preferences.save_preferences(
        participant, {"infusion": ["inapp"], "visit": [], "questionnaire": []}, (21, 8)
    )
    db.session.commit()
    planned = reminders_of(participant, status="planned")
    assert {r.kind for r in planned} == {"infusion"}


def test_withdrawn_participants_get_no_reminders(now, make_participant):
    now(_utc(2026, 11, 20, 15))
    participant = make_participant(day0=date(2026, 12, 1))
    assert reminders_of(participant, status="planned")
    participant.status = "withdrawn"
    assert planning.cancel_reminders_for(participant, "Withdrew consent") > 0
    db.session.commit()
    assert reminders_of(participant, status="planned") == []
    assert planning.plan_reminders(participant) == 0
    assert reminders_of(participant, status="planned") == []
    event = db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.action == "reminders.cancelled")
    ).one()
    assert event.reason == "Withdrew consent"


def test_only_the_horizon_is_planned_and_plan_everyone_extends_it(app, now, make_participant):
    now(_utc(2026, 11, 20, 15))
    participant = make_participant(day0=date(2026, 12, 1))
    latest = max(r.due_at for r in reminders_of(participant))
    assert latest <= now() + timedelta(days=app.config["PORTAL_REMINDER_HORIZON_DAYS"])
    now(now() + timedelta(days=30))
    assert planning.plan_everyone() > 0
    assert max(r.due_at for r in reminders_of(participant)) > latest


@pytest.mark.parametrize(
    ("enabled", "start", "end"),
    [(True, "8", "8"), (True, "abc", "7"), (True, "25", "7"), (True, "6", "23"), (True, None, "7")],
)
def test_nonsense_quiet_hours_are_refused(app, enabled, start, end):
    with (
        app.test_request_context("/", headers={"Accept-Language": "en"}),
        pytest.raises(PortalError) as refused,
    ):
        preferences.parse_quiet_hours(enabled, start, end)
    assert refused.value.field == "quiet"


def test_reminder_rows_are_unique_per_subject_and_channel(now, make_participant):
    now(_utc(2026, 11, 20, 15))
    participant = make_participant(day0=date(2026, 12, 1))
    row = reminders_of(participant)[0]
    db.session.add(
        Reminder(
            participant_id=participant.id,
            kind=row.kind,
            subject=row.subject,
            channel=row.channel,
            due_at=row.due_at,
            expires_at=row.expires_at,
            next_attempt_at=row.due_at,
        )
    )
    with pytest.raises(sa.exc.IntegrityError):
        db.session.flush()
    db.session.rollback()


@pytest.mark.parametrize(
    "text",
    [
        "visit:12:day-before:2026-12-01",
        "questionnaire:visit:12:opens:2026-12-01",
        "questionnaire:one:40:closes:2027-01-31",
        "test:20261120T150000.000000:0a1b2c3d",
    ],
)
def test_a_subject_reads_back_as_the_stored_text(text):
    # The stored text is part of each row's unique key: its format may never drift.
    assert str(Subject.parse(text)) == text


def test_a_subject_names_its_moment_and_day():
    subject = Subject.parse("questionnaire:one:40:closes:2027-01-31")
    assert (subject.topic, subject.ref, subject.moment, subject.day) == (
        "questionnaire",
        "one:40",
        "closes",
        date(2027, 1, 31),
    )
    assert (
        Subject.parse("test:20261120T150000.000000:0a1b2c3d").moment,
        Subject.parse("test:x:y").day,
    ) == ("", None)
