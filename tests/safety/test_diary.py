"""The post-infusion diary: days 1–7 after each infusion, each open from one morning to the next,
in both zones and across DST changes, planned from the protocol's visit series."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from patient_portal.extensions import db
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires import services
from patient_portal.schedule.services import mark_visit, set_appointment
from tests.safety.conftest import DST_WEEKS, day, diary, local, visit_of


@pytest.mark.parametrize("site", ["JGH", "SLS"])
def test_the_diary_opens_each_morning_for_exactly_the_seven_days_after_the_infusion(
    site, infused, now
):
    day0 = DST_WEEKS[site]
    zone = get_protocol().site(site).zone
    participant = infused(site, day0)
    series = get_protocol().visit_series[0]
    entries = diary(participant)
    assert [entry.occurrence for entry in entries] == list(range(series.days)) == list(range(7))
    for n, entry in enumerate(entries, start=1):
        # Read on the site's wall clock, whatever the DST change in the week did to UTC.
        assert entry.opens_at.astimezone(zone).replace(tzinfo=None) == (
            local(day(day0, n), 6, 0, zone).astimezone(zone).replace(tzinfo=None)
        )
        assert entry.closes_at.astimezone(zone).date() == day(day0, n + 1)
        assert entry.closes_at.astimezone(zone).time() == time(6)
    # One 23-hour day in the week: the spring change happens inside one diary window.
    lengths = {entry.closes_at - entry.opens_at for entry in entries}
    assert lengths == {timedelta(hours=24), timedelta(hours=23)}

    def open_diaries(hour: int, minute: int, n: int):
        now.set(local(day(day0, n), hour, minute, zone))
        return [
            a.occurrence
            for a in services.participant_questionnaires(participant).open
            if a.series_code == "DIARY_M0"
        ]

    assert open_diaries(23, 0, 0) == []  # the evening of the infusion: nothing yet
    assert open_diaries(5, 59, 1) == []
    assert open_diaries(6, 0, 1) == [0]  # day 1 opens that morning
    assert open_diaries(5, 59, 2) == [0]  # and stays open through the night
    assert open_diaries(6, 0, 2) == [1]  # closes the next morning: no back-fill
    assert open_diaries(12, 0, 7) == [6]
    assert open_diaries(6, 0, 8) == []  # day 8: the diary is over
    assert services.state_of(entries[0]) == "missed"


def test_no_diary_before_the_infusion_is_booked_or_done(make_participant, now):
    participant = make_participant(site_code="JGH")
    assert diary(participant) == [] and diary(participant, "M3") == []


def test_a_second_infusion_marked_done_without_appointment_gets_its_own_diary(infused):
    participant = infused("SLS", DST_WEEKS["SLS"])
    m3 = visit_of(participant, "M3")
    mark_visit(m3, "completed", None)
    db.session.commit()
    entries = diary(participant, "M3")
    zone = get_protocol().site("SLS").zone
    assert len(entries) == 7
    assert entries[0].opens_at.astimezone(zone).date() == day(m3.target_date, 1)
    assert len(diary(participant, "M0")) == 7  # the first infusion's diary is untouched


def test_moving_the_appointment_moves_the_diary_and_cancelling_withdraws_it(infused, now):
    participant = infused("JGH", DST_WEEKS["JGH"])
    m3 = visit_of(participant, "M3")
    zone = get_protocol().site("JGH").zone
    set_appointment(m3, m3.target_date, time(9), None, None, None)
    db.session.commit()
    assert diary(participant, "M3")[0].opens_at.astimezone(zone).date() == day(m3.target_date, 1)
    set_appointment(m3, day(m3.target_date, 2), time(9), None, None, None)
    db.session.commit()
    assert diary(participant, "M3")[0].opens_at.astimezone(zone).date() == day(m3.target_date, 3)
    mark_visit(m3, "cancelled", "Neutral reason")
    db.session.commit()
    assert {entry.status for entry in diary(participant, "M3")} == {"withdrawn"}
    assert {entry.status for entry in diary(participant, "M0")} == {"planned"}
