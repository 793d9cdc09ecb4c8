"""The .ics files and the private subscription feed, read back with the icalendar package."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import icalendar
import pytest

from patient_portal.extensions import db
from patient_portal.schedule import services
from tests.schedule.helpers import visit

FORBIDDEN_WORDS = re.compile(
    r"infusion|perfusion|scl[ée]ro|placebo|stromal|UCMSC|cellule|cell|diagnos|treatment|traitement",
    re.IGNORECASE,
)


def _events(ics: bytes) -> dict[str, icalendar.cal.Component]:
    calendar = icalendar.Calendar.from_ical(ics)
    return {str(event["uid"]): event for event in calendar.walk("VEVENT")}


@pytest.fixture
def fr_participant(planned, in_request):
    participant = planned(day0=date(2026, 12, 1), language="fr")
    services.set_appointment(
        visit(participant, "M0"), date(2026, 12, 1), time(8, 30), "Bring", "Apportez", ""
    )
    db.session.commit()
    return participant


def test_feed_has_every_visit_with_stable_uids_and_neutral_french_text(fr_participant):
    ics = services.feed_ics(fr_participant)
    calendar = icalendar.Calendar.from_ical(ics)
    events = _events(ics)
    visits = services.visits_of(fr_participant)
    assert set(events) == {f"visit-{v.id}@care-ssc-portal" for v in visits}
    for v in visits:
        event = events[f"visit-{v.id}@care-ssc-portal"]
        assert str(event["summary"]).startswith("Visite de l’étude CARE-SSc")
        assert (
            str(event["location"])
            == "3755, chemin de la Côte-Sainte-Catherine, Montréal (Québec) H3T 1E2"
        )
        assert event["sequence"] == v.sequence
        assert event["dtstamp"].dt == v.updated_at
        assert event["last-modified"].dt == v.updated_at
        # Only the booked visit is confirmed: the others are known as windows only.
        assert str(event["status"]) == ("CONFIRMED" if v.code == "M0" else "TENTATIVE")
        if v.code != "M0":
            assert event["dtstart"].dt == v.target_date
    # No word that would tell a lock screen's reader anything about health, and no note.
    assert not FORBIDDEN_WORDS.search(ics.decode())
    assert "Apportez" not in ics.decode()
    assert calendar["x-wr-timezone"] == "America/Toronto"


def test_a_timed_event_uses_the_site_zone_and_its_vtimezone(fr_participant):
    ics = services.feed_ics(fr_participant)
    calendar = icalendar.Calendar.from_ical(ics)
    m0 = _events(ics)[f"visit-{visit(fr_participant, 'M0').id}@care-ssc-portal"]
    assert m0["dtstart"].params["TZID"] == "America/Toronto"
    start = m0["dtstart"].dt
    assert start == datetime(2026, 12, 1, 8, 30, tzinfo=ZoneInfo("America/Toronto"))
    assert start.astimezone(UTC) == datetime(2026, 12, 1, 13, 30, tzinfo=UTC)
    assert (m0["dtend"].dt - start).total_seconds() == 3600
    zones = [str(tz["tzid"]) for tz in calendar.walk("VTIMEZONE")]
    assert zones == ["America/Toronto"]
    assert "TZID=America/Toronto:20261201T083000" in ics.decode().replace("\r\n ", "")


def test_a_paris_participant_gets_paris_time_in_english(planned, in_request):
    participant = planned(day0=date(2027, 3, 30), site_code="SLS", language="en")
    services.set_appointment(visit(participant, "M0"), date(2027, 3, 30), time(10), "", "", "")
    ics = services.visit_ics(visit(participant, "M0"))
    (event,) = _events(ics).values()
    assert str(event["summary"]) == "CARE-SSc study visit"
    assert event["dtstart"].params["TZID"] == "Europe/Paris"
    assert event["dtstart"].dt.astimezone(UTC) == datetime(2027, 3, 30, 8, tzinfo=UTC)
    assert str(event["location"]) == "1, avenue Claude-Vellefaux, 75010 Paris"


def test_moving_an_appointment_updates_the_same_event(fr_participant, now):
    m0 = visit(fr_participant, "M0")
    uid = f"visit-{m0.id}@care-ssc-portal"
    first = _events(services.feed_ics(fr_participant))[uid]
    now(datetime(2026, 11, 22, 10, tzinfo=UTC))
    services.set_appointment(m0, date(2026, 12, 1), time(13), "", "", "")
    db.session.commit()
    second = _events(services.feed_ics(fr_participant))[uid]
    assert second["sequence"] == first["sequence"] + 1
    assert second["dtstart"].dt.hour == 13
    assert second["last-modified"].dt > first["last-modified"].dt
    assert second["dtstamp"].dt == datetime(2026, 11, 22, 10, tzinfo=UTC)


def test_a_cancelled_visit_is_marked_cancelled_in_the_feed(fr_participant):
    m3 = services.mark_visit(visit(fr_participant, "M3"), "cancelled", "Coordinator decision")
    event = _events(services.feed_ics(fr_participant))[f"visit-{m3.id}@care-ssc-portal"]
    assert str(event["status"]) == "CANCELLED"
    assert "Coordinator decision" not in services.feed_ics(fr_participant).decode()


def test_a_feed_token_is_stored_hashed_and_replaced_by_a_new_one(fr_participant):
    token = services.issue_feed_token(fr_participant)
    assert services.participant_for_feed_token(token) == fr_participant
    assert services.active_feed(fr_participant).token_hash != token
    newer = services.issue_feed_token(fr_participant)
    assert services.participant_for_feed_token(token) is None
    assert services.participant_for_feed_token(newer) == fr_participant
    assert services.revoke_feed(fr_participant)
    assert services.participant_for_feed_token(newer) is None
    assert not services.revoke_feed(fr_participant)


def _feed_path(page: str) -> str:
    match = re.search(r"http://localhost(?::\d+)?(/calendar/[A-Za-z0-9_-]+\.ics)", page)
    assert match, "no feed link on the page"
    return match.group(1)


def test_the_feed_url_works_until_revoked_then_answers_404(
    client, sign_in, csrf_token, fr_participant
):
    sign_in(client, fr_participant)
    token = csrf_token(client, "/visits/calendar")
    page = client.post("/visits/calendar", data={"csrf_token": token})
    assert page.status_code == 200
    path = _feed_path(page.get_data(as_text=True))
    assert "webcal://localhost" in page.get_data(as_text=True)

    anonymous = client.application.test_client()
    feed = anonymous.get(path)
    assert feed.status_code == 200
    assert feed.mimetype == "text/calendar"
    assert feed.headers["Cache-Control"] == "no-store"
    assert len(_events(feed.data)) == 8

    # The link is shown once: the settings page afterwards does not repeat it.
    assert path not in client.get("/visits/calendar").get_data(as_text=True)

    revoked = client.post("/visits/calendar/revoke", data={"csrf_token": token})
    assert revoked.status_code == 303
    assert anonymous.get(path).status_code == 404


@pytest.mark.parametrize(
    "path", ["/calendar/unknown-token.ics", "/calendar/" + "a" * 200 + ".ics", "/calendar/.ics"]
)
def test_an_unknown_feed_token_is_404(client, path):
    assert client.get(path).status_code == 404


def test_a_visit_ics_download_is_only_for_the_participants_own_planned_visit(
    client, sign_in, fr_participant, planned
):
    sign_in(client, fr_participant)
    response = client.get("/visits/M0.ics")
    assert response.status_code == 200
    assert response.mimetype == "text/calendar"
    assert "attachment" in response.headers["Content-Disposition"]
    (event,) = _events(response.data).values()
    assert str(event["uid"]) == f"visit-{visit(fr_participant, 'M0').id}@care-ssc-portal"
    assert client.get("/visits/NOPE.ics").status_code == 404
    services.mark_visit(visit(fr_participant, "M1"), "cancelled", "Coordinator decision")
    db.session.commit()
    assert client.get("/visits/M1.ics").status_code == 404
