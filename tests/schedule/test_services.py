"""Visit planning, day 0 changes, appointments across DST, statuses, next visit and timeline."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from patient_portal import timezones
from patient_portal.audit import AuditEvent, verify_chain
from patient_portal.errors import PortalError
from patient_portal.extensions import db
from patient_portal.schedule import services
from patient_portal.schedule.models import Visit
from patient_portal.timezones import NonexistentLocalTime
from tests.schedule.helpers import visit

pytestmark = pytest.mark.usefixtures("in_request")

MONTREAL = ZoneInfo("America/Toronto")
PARIS = ZoneInfo("Europe/Paris")
PROTOCOL_DAYS = {
    "SCREENING": (-21, 0, 20),
    "M0": (0, 0, 0),
    "M1": (28, 7, 7),
    "M3": (91, 7, 7),
    "M4": (119, 7, 7),
    "M6": (182, 14, 14),
    "M9": (273, 14, 14),
    "M12": (365, 14, 14),
}


def _audit_actions() -> list[str]:
    return list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)))


def test_visits_are_planned_from_the_protocol_on_the_site_calendar(planned):
    participant = planned(day0=date(2026, 12, 1))
    visits = services.visits_of(participant)
    assert [v.code for v in visits] == list(PROTOCOL_DAYS)
    for v in visits:
        day, before, after = PROTOCOL_DAYS[v.code]
        assert v.target_date == date(2026, 12, 1) + timedelta(days=day)
        assert v.window_start == v.target_date - timedelta(days=before)
        assert v.window_end == v.target_date + timedelta(days=after)
        assert v.status == "planned" and v.scheduled_at is None
    assert visit(participant, "M3").kind == "infusion"
    assert visit(participant, "M12").target_date == date(2027, 12, 1)


def test_planning_is_idempotent_and_audited_once(planned):
    participant = planned(day0=date(2026, 12, 1))
    assert services.plan_visits(participant) == []
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count(Visit.id))) == 8
    assert _audit_actions().count("visits.planned") == 1


def test_nothing_is_planned_without_day0(make_participant, now):
    participant = make_participant(day0=None)
    assert services.plan_visits(participant) == []
    assert services.visits_of(participant) == []


def test_every_participant_has_the_same_visits_including_the_second_infusion(planned):
    first = planned(day0=date(2026, 12, 1))
    second = planned(day0=date(2027, 1, 5), site_code="SLS")
    assert [v.code for v in services.visits_of(first)] == [
        v.code for v in services.visits_of(second)
    ]
    assert visit(second, "M3").kind == "infusion"
    assert not hasattr(Visit, "arm") and not hasattr(Visit, "allocation")


# Day 0 on the clock-change days themselves, and a week either side, in both zones and years.
DST_DAYS = [
    ("JGH", date(2026, 3, 8)),
    ("JGH", date(2026, 11, 1)),
    ("JGH", date(2027, 3, 14)),
    ("JGH", date(2027, 11, 7)),
    ("SLS", date(2026, 3, 29)),
    ("SLS", date(2026, 10, 25)),
    ("SLS", date(2027, 3, 28)),
    ("SLS", date(2027, 10, 31)),
]


def window_bounds(v: Visit) -> tuple[datetime, datetime]:
    """The visit window as UTC instants, as the planners compute them on the site's calendar:
    local midnight of its first day, and of the day after its last (an exclusive end)."""
    return (
        timezones.local_instant(v.window_start, v.zone),
        timezones.local_instant(v.window_end + timedelta(days=1), v.zone),
    )


@pytest.mark.parametrize("shift", [-7, -1, 0, 1, 7])
@pytest.mark.parametrize(("site_code", "change_day"), DST_DAYS)
def test_visit_dates_and_window_instants_hold_across_dst(
    planned, now, site_code, change_day, shift
):
    now(datetime(2026, 6, 1, tzinfo=UTC))
    zone = MONTREAL if site_code == "JGH" else PARIS
    day0 = change_day + timedelta(days=shift)
    participant = planned(day0=day0, site_code=site_code)
    for v in services.visits_of(participant):
        day, before, after = PROTOCOL_DAYS[v.code]
        assert v.target_date == day0 + timedelta(days=day)
        assert (v.target_date - v.window_start, v.window_end - v.target_date) == (
            timedelta(days=before),
            timedelta(days=after),
        )
        opens = window_bounds(v)[0].astimezone(zone)
        closes = window_bounds(v)[1].astimezone(zone)
        assert (opens.date(), opens.time()) == (v.window_start, time(0))
        assert (closes.date(), closes.time()) == (v.window_end + timedelta(days=1), time(0))
        target_day_starts_at = timezones.local_instant(v.target_date, v.zone)
        assert target_day_starts_at.astimezone(zone).replace(tzinfo=None) == datetime.combine(
            v.target_date, time(0)
        )


@pytest.mark.parametrize(
    ("site_code", "day0", "opens", "closes"),
    [
        # Spring forward in Montréal: a 23-hour day 0, EST at its start, EDT at its end.
        (
            "JGH",
            date(2026, 3, 8),
            datetime(2026, 3, 8, 5, tzinfo=UTC),
            datetime(2026, 3, 9, 4, tzinfo=UTC),
        ),
        # Fall back in Paris: a 25-hour day 0.
        (
            "SLS",
            date(2026, 10, 25),
            datetime(2026, 10, 24, 22, tzinfo=UTC),
            datetime(2026, 10, 25, 23, tzinfo=UTC),
        ),
        (
            "JGH",
            date(2027, 11, 7),
            datetime(2027, 11, 7, 4, tzinfo=UTC),
            datetime(2027, 11, 8, 5, tzinfo=UTC),
        ),
        (
            "SLS",
            date(2027, 3, 28),
            datetime(2027, 3, 27, 23, tzinfo=UTC),
            datetime(2027, 3, 28, 22, tzinfo=UTC),
        ),
    ],
)
def test_a_day0_on_a_clock_change_has_the_true_utc_bounds(planned, site_code, day0, opens, closes):
    participant = planned(day0=day0, site_code=site_code)
    m0 = visit(participant, "M0")
    assert window_bounds(m0) == (opens, closes)


def test_in_the_march_weeks_montreal_and_paris_are_five_hours_apart(planned):
    montreal = planned(day0=date(2026, 3, 16), site_code="JGH")
    paris = planned(day0=date(2026, 3, 16), site_code="SLS")
    for participant in (montreal, paris):
        services.set_appointment(visit(participant, "M0"), date(2026, 3, 16), time(9), "", "", "")
    assert visit(montreal, "M0").scheduled_at == datetime(2026, 3, 16, 13, tzinfo=UTC)
    assert visit(paris, "M0").scheduled_at == datetime(2026, 3, 16, 8, tzinfo=UTC)
    assert window_bounds(visit(montreal, "M0"))[0] - window_bounds(visit(paris, "M0"))[0] == (
        timedelta(hours=5)
    )
    # Once Europe has changed too (29 March), the usual six hours again.
    for participant in (montreal, paris):
        services.set_appointment(visit(participant, "M1"), date(2026, 4, 13), time(9), "", "", "")
    gap = visit(montreal, "M1").scheduled_at - visit(paris, "M1").scheduled_at
    assert gap == timedelta(hours=6)


@pytest.mark.parametrize(
    ("site_code", "day", "clock"),
    [
        ("JGH", date(2026, 3, 8), time(2, 30)),
        ("JGH", date(2027, 3, 14), time(2, 0)),
        ("SLS", date(2026, 3, 29), time(2, 59)),
        ("SLS", date(2027, 3, 28), time(2, 15)),
    ],
)
def test_a_time_in_the_spring_forward_gap_is_refused_and_nothing_changes(
    planned, site_code, day, clock
):
    participant = planned(day0=day, site_code=site_code)
    m0 = visit(participant, "M0")
    before = (m0.scheduled_at, m0.sequence, m0.updated_at)
    with pytest.raises(NonexistentLocalTime) as refused:
        services.set_appointment(m0, day, clock, "note", "note", "")
    assert "does not exist" in refused.value.message
    assert refused.value.field == "time"
    assert (m0.scheduled_at, m0.sequence, m0.updated_at) == before
    assert "visit.appointment_set" not in _audit_actions()


@pytest.mark.parametrize(
    ("site_code", "day", "clock", "first", "offset"),
    [
        (
            "JGH",
            date(2026, 11, 1),
            time(1, 30),
            datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
            "UTC−04:00",
        ),
        ("JGH", date(2027, 11, 7), time(1, 0), datetime(2027, 11, 7, 5, tzinfo=UTC), "UTC−04:00"),
        (
            "SLS",
            date(2026, 10, 25),
            time(2, 30),
            datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
            "UTC+02:00",
        ),
        (
            "SLS",
            date(2027, 10, 31),
            time(2, 45),
            datetime(2027, 10, 31, 0, 45, tzinfo=UTC),
            "UTC+02:00",
        ),
    ],
)
def test_a_repeated_fall_back_time_is_its_first_occurrence(
    planned, site_code, day, clock, first, offset
):
    zone = MONTREAL if site_code == "JGH" else PARIS
    participant = planned(day0=day, site_code=site_code)
    m0 = services.set_appointment(visit(participant, "M0"), day, clock, "", "", "")
    assert m0.scheduled_at == first
    assert timezones.is_repeated_local_time(m0.scheduled_at, zone)
    assert timezones.utc_offset_label(m0.scheduled_at, zone) == offset
    # The second occurrence is an hour later and is never what the coordinator gets.
    assert first + timedelta(hours=1) != m0.scheduled_at
    assert not timezones.is_repeated_local_time(first + timedelta(hours=3), zone)


def test_an_appointment_is_stored_in_utc_with_notes_and_audited(planned):
    participant = planned(day0=date(2026, 12, 1))
    m1 = services.set_appointment(
        visit(participant, "M1"),
        date(2026, 12, 30),
        time(9, 30),
        "Come fasting",
        " Venez à jeun ",
        "",
    )
    db.session.commit()
    assert m1.scheduled_at == datetime(2026, 12, 30, 14, 30, tzinfo=UTC)
    assert (m1.notes_en, m1.notes_fr) == ("Come fasting", "Venez à jeun")
    assert m1.notes("fr") == "Venez à jeun"
    assert m1.sequence == 1 and not m1.outside_window and m1.outside_window_reason is None
    event = db.session.scalar(
        sa.select(AuditEvent).where(AuditEvent.action == "visit.appointment_set")
    )
    assert event.before["scheduled_at"] is None
    assert event.after["scheduled_at"].startswith("2026-12-30T14:30")
    assert verify_chain() is None


def test_an_appointment_outside_the_window_needs_a_reason_and_is_flagged(planned):
    participant = planned(day0=date(2026, 12, 1))
    m1 = visit(participant, "M1")
    with pytest.raises(PortalError) as refused:
        services.set_appointment(m1, date(2027, 1, 20), time(9), "", "", "  ")
    assert refused.value.field == "reason"
    assert m1.scheduled_at is None
    services.set_appointment(m1, date(2027, 1, 20), time(9), "", "", "Participant travelling")
    assert m1.outside_window and m1.outside_window_reason == "Participant travelling"
    # Moving it back inside the window clears the flag.
    services.set_appointment(m1, date(2026, 12, 29), time(9), "", "", "")
    assert not m1.outside_window and m1.outside_window_reason is None
    assert m1.sequence == 2


def test_only_a_planned_visit_gets_an_appointment(planned):
    participant = planned(day0=date(2026, 12, 1))
    m1 = services.mark_visit(visit(participant, "M1"), "cancelled", "Coordinator decision")
    with pytest.raises(PortalError):
        services.set_appointment(m1, date(2026, 12, 29), time(9), "", "", "")


def test_changing_day0_recomputes_only_the_visits_not_done(planned):
    participant = planned(day0=date(2026, 12, 1))
    services.mark_visit(visit(participant, "SCREENING"), "completed", None)
    services.mark_visit(visit(participant, "M3"), "cancelled", "Coordinator decision")
    services.set_appointment(visit(participant, "M1"), date(2026, 12, 29), time(9), "", "", "")
    db.session.commit()
    m1_sequence = visit(participant, "M1").sequence

    moves = services.change_day0(participant, date(2026, 12, 8), "Infusion postponed")
    db.session.commit()

    assert participant.day0 == date(2026, 12, 8)
    assert {m.code for m in moves} == {"M0", "M1", "M4", "M6", "M9", "M12"}
    assert visit(participant, "SCREENING").target_date == date(2026, 11, 10)
    assert visit(participant, "M3").target_date == date(2027, 3, 2)
    m1 = visit(participant, "M1")
    assert (m1.target_date, m1.window_start, m1.window_end) == (
        date(2027, 1, 5),
        date(2026, 12, 29),
        date(2027, 1, 12),
    )
    assert m1.scheduled_at is None and m1.sequence == m1_sequence + 1
    moved_m1 = next(m for m in moves if m.code == "M1")
    assert moved_m1.clears_appointment == datetime(2026, 12, 29, 14, tzinfo=UTC)
    actions = _audit_actions()
    assert actions.count("visit.recomputed") == 6
    change = db.session.scalar(
        sa.select(AuditEvent).where(AuditEvent.action == "participant.day0_changed")
    )
    assert change.before == {"day0": "2026-12-01"}
    assert change.after["day0"] == "2026-12-08" and change.reason == "Infusion postponed"


def test_preview_lists_what_moves_and_changes_nothing(planned):
    participant = planned(day0=date(2026, 12, 1))
    services.mark_visit(visit(participant, "SCREENING"), "completed", None)
    db.session.commit()
    moves = services.preview_day0_change(participant, date(2026, 11, 30))
    assert [m.code for m in moves] == ["M0", "M1", "M3", "M4", "M6", "M9", "M12"]
    assert moves[0].old_target == date(2026, 12, 1) and moves[0].new_target == date(2026, 11, 30)
    assert participant.day0 == date(2026, 12, 1)
    assert visit(participant, "M0").target_date == date(2026, 12, 1)


def test_setting_the_first_day0_plans_the_visits(make_participant, now):
    participant = make_participant(day0=None)
    moves = services.change_day0(participant, date(2026, 12, 1), None)
    assert len(moves) == 8 and all(m.old_target is None for m in moves)
    assert len(services.visits_of(participant)) == 8


@pytest.mark.parametrize(
    ("new_day0", "reason", "field"),
    [
        (date(2024, 11, 1), "typo", "day0"),
        (date(2029, 1, 1), "typo", "day0"),
        (date(2026, 12, 8), "", "reason"),
        (date(2026, 12, 1), "same", "day0"),
    ],
)
def test_a_bad_day0_change_is_refused_and_nothing_changes(planned, new_day0, reason, field):
    participant = planned(day0=date(2026, 12, 1))
    with pytest.raises(PortalError) as refused:
        services.change_day0(participant, new_day0, reason)
    assert refused.value.field == field
    db.session.rollback()
    assert participant.day0 == date(2026, 12, 1)
    assert visit(participant, "M1").target_date == date(2026, 12, 29)
    assert "participant.day0_changed" not in _audit_actions()


def test_marking_a_visit_needs_a_reason_except_completed_and_is_audited(planned):
    participant = planned(day0=date(2026, 12, 1))
    m1 = visit(participant, "M1")
    for status in ("missed", "cancelled", "planned"):
        with pytest.raises(PortalError):
            services.mark_visit(m1, status, "")
    with pytest.raises(PortalError):
        services.mark_visit(m1, "lost", "why")
    services.mark_visit(m1, "missed", "Did not come")
    services.mark_visit(m1, "planned", "Marked by mistake")
    services.mark_visit(m1, "completed", None)
    assert m1.status == "completed" and m1.sequence == 3
    assert _audit_actions().count("visit.status_changed") == 3


def test_next_visit_and_timeline_follow_the_site_calendar(planned, now):
    participant = planned(day0=date(2026, 12, 1))
    services.mark_visit(visit(participant, "SCREENING"), "completed", None)
    services.mark_visit(visit(participant, "M3"), "cancelled", "Coordinator decision")
    # 1 December 2026 at 23:30 in Montréal is already 2 December in UTC: day 0 is still today.
    moment = datetime(2026, 12, 2, 4, 30, tzinfo=UTC)
    assert services.next_visit(participant, moment).code == "M0"
    states = {e.visit.code: e.state for e in services.timeline(participant, moment)}
    assert states == {
        "SCREENING": "done",
        "M0": "next",
        "M1": "later",
        "M3": "cancelled",
        "M4": "later",
        "M6": "later",
        "M9": "later",
        "M12": "later",
    }
    later = datetime(2026, 12, 2, 5, 30, tzinfo=UTC)
    assert services.next_visit(participant, later).code == "M1"
    entries = services.timeline(participant, later)
    assert {e.visit.code: e.state for e in entries}["M0"] == "past"
    assert next(e for e in entries if e.state == "next").days_until == 27


def test_next_visit_is_the_earliest_appointment(planned):
    participant = planned(day0=date(2026, 12, 1))
    services.mark_visit(visit(participant, "SCREENING"), "completed", None)
    services.set_appointment(
        visit(participant, "M1"), date(2026, 11, 25), time(8), "", "", "Early, agreed"
    )
    now = datetime(2026, 11, 21, tzinfo=UTC)
    assert services.next_visit(participant, now).code == "M1"


@pytest.mark.parametrize("text", ["", "2026-13-01", "2026-02-30", "01/12/2026", "yesterday"])
def test_malformed_dates_are_refused(app, text):
    with pytest.raises(PortalError):
        services.parse_local_date(text)


@pytest.mark.parametrize("text", ["", "25:00", "9h30", "09:60", "9:30", "09:30+01:00", "noon"])
def test_malformed_times_are_refused(app, text):
    with pytest.raises(PortalError):
        services.parse_local_time(text)


def test_well_formed_times_are_read(app):
    assert services.parse_local_time("09:30") == time(9, 30)
    assert services.parse_local_time("14:05:00") == time(14, 5)
