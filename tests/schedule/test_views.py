"""The participant's pages, the coordinator's schedule, access rules and bad input."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time

import pytest
import sqlalchemy as sa

from patient_portal.audit import AuditEvent
from patient_portal.extensions import db
from patient_portal.schedule import services
from tests.schedule.helpers import visit

PARTICIPANT_PAGES = ["/home", "/visits", "/visits/calendar", "/visits/M0.ics"]
STAFF_PAGES = ["/staff/participants/JGH-001/schedule"]
POSTS = {
    "participant": ["/visits/calendar", "/visits/calendar/revoke"],
    "staff": [
        "/staff/participants/JGH-001/schedule/day0",
        "/staff/participants/JGH-001/visits/M1/appointment",
        "/staff/participants/JGH-001/visits/M1/status",
    ],
}


def _text(response) -> str:
    return response.get_data(as_text=True)


def _audit_count() -> int:
    return db.session.scalars(sa.select(sa.func.count(AuditEvent.id))).one()


@pytest.fixture
def participant(planned, now):
    return planned(day0=date(2026, 12, 1), study_id="JGH-001", language="fr")


@pytest.fixture
def coordinator(make_staff):
    return make_staff(sites=["JGH"], language="en")


@pytest.mark.parametrize("path", PARTICIPANT_PAGES + STAFF_PAGES)
def test_pages_send_the_unauthenticated_to_sign_in(client, participant, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in")


@pytest.mark.parametrize("path", PARTICIPANT_PAGES)
def test_participant_pages_are_403_for_staff(client, sign_in, participant, coordinator, path):
    sign_in(client, coordinator)
    assert client.get(path).status_code == 403


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_staff_pages_are_403_for_participants(client, sign_in, participant, path):
    sign_in(client, participant)
    assert client.get(path).status_code == 403


@pytest.mark.parametrize("path", POSTS["staff"])
def test_staff_forms_are_403_for_participants(client, sign_in, csrf_token, participant, path):
    sign_in(client, participant)
    token = csrf_token(client, "/visits")
    response = client.post(path, data={"csrf_token": token, "day0": "2026-12-02"})
    assert response.status_code == 403


@pytest.mark.parametrize("path", POSTS["participant"])
def test_participant_forms_are_403_for_staff(client, sign_in, csrf_token, coordinator, path):
    sign_in(client, coordinator)
    token = csrf_token(client, "/staff/participants/JGH-001/schedule")
    assert client.post(path, data={"csrf_token": token}).status_code == 403


def test_another_sites_participant_is_404(client, sign_in, csrf_token, planned, coordinator):
    paris = planned(day0=date(2026, 12, 1), site_code="SLS", study_id="SLS-001")
    planned(day0=date(2026, 12, 1), study_id="JGH-001")
    sign_in(client, coordinator)
    token = csrf_token(client, "/staff/participants/JGH-001/schedule")
    before = _audit_count()
    assert client.get("/staff/participants/SLS-001/schedule").status_code == 404
    for path, data in [
        (
            "/staff/participants/SLS-001/visits/M1/appointment",
            {"date": "2026-12-29", "time": "09:00"},
        ),
        ("/staff/participants/SLS-001/visits/M1/status", {"status": "cancelled", "reason": "x"}),
        ("/staff/participants/SLS-001/schedule/day0", {"day0": "2026-12-02", "confirm": "yes"}),
    ]:
        assert client.post(path, data={"csrf_token": token, **data}).status_code == 404
    assert visit(paris, "M1").scheduled_at is None and visit(paris, "M1").status == "planned"
    assert _audit_count() == before


def test_home_shows_the_next_visit_in_french_with_fr_ca_formatting(client, sign_in, participant):
    services.set_appointment(
        visit(participant, "SCREENING"), date(2026, 11, 23), time(9, 30), "", "Venez à jeun", ""
    )
    db.session.commit()
    sign_in(client, participant)
    page = _text(client.get("/home"))
    assert '<html lang="fr">' in page
    assert "Votre prochaine visite" in page
    assert "Visite de sélection" in page
    assert "dans 3 jours" in page
    assert "lundi 23 novembre 2026 à 09 h 30" in page
    assert "Venez à jeun" in page
    assert "Hôpital général juif" in page
    assert 'href="tel:+15143408222"' in page
    assert 'href="/visits/SCREENING.ics"' in page


def test_home_in_english_and_infusion_stands_out_by_text(client, sign_in, planned, now):
    participant = planned(day0=date(2026, 11, 25), language="en")
    services.mark_visit(visit(participant, "SCREENING"), "completed", None)
    services.set_appointment(
        visit(participant, "M0"), date(2026, 11, 25), time(8), "Come fasting", "À jeun", ""
    )
    db.session.commit()
    sign_in(client, participant)
    page = _text(client.get("/home"))
    assert "Your next visit" in page
    assert "Infusion 1 (month 0)" in page
    assert "in 5 days" in page
    assert "Wednesday, November 25, 2026 at 8:00" in page
    assert "Come fasting" in page and "À jeun" not in page
    assert "next-visit-infusion" in page
    assert re.search(r'class="visit-kind visit-kind-infusion">.*Infusion</p>', page, re.S)


def test_home_leaves_room_for_other_features(client, sign_in, participant, app):
    templates = [section.template for section in app.extensions["home_sections"]]
    assert templates == [
        "accounts/_new_device_banner.html",
        "questionnaires/_home_section.html",
        "questionnaires/_report_section.html",
        "reminders/_home_banner.html",
    ]
    sign_in(client, participant)
    assert client.get("/home").status_code == 200


def test_timeline_lists_the_whole_year_with_states_in_text(client, sign_in, participant):
    services.mark_visit(visit(participant, "SCREENING"), "completed", None)
    services.mark_visit(visit(participant, "M3"), "cancelled", "Secret coordinator reason")
    db.session.commit()
    sign_in(client, participant)
    page = _text(client.get("/visits"))
    items = re.findall(r'<li id="visit-\w+" class="timeline-item[^"]*"', page)
    assert len(items) == 8
    assert '<ol class="timeline">' in page and "<table" not in page
    assert "Visite faite" in page and "Prochaine visite" in page and "À venir" in page
    assert "Cette visite n’aura pas lieu" in page
    assert "Secret coordinator reason" not in page
    assert 'aria-current="step"' in page
    assert "Perfusion 2 (mois 3)" in page
    # A window stays a window until a date is booked, with what the visit involves.
    assert "Entre le 22 décembre 2026 et le 5 janvier 2027" in page
    assert "aux alentours" not in page and "Période prévue" not in page
    assert "Ce qui se passe" in page and "À apporter" in page


def test_staff_page_shows_the_schedule_in_the_staff_language(
    client, sign_in, participant, coordinator
):
    sign_in(client, coordinator)
    page = _text(client.get("/staff/participants/JGH-001/schedule"))
    assert "Schedule of JGH-001" in page
    assert page.count('<li class="staff-visit') == 8
    assert "America/Toronto" in page
    assert page.count('name="csrf_token"') >= 1 + 8 + 8


def test_coordinator_sets_an_appointment_without_javascript(
    client, sign_in, csrf_token, participant, coordinator
):
    sign_in(client, coordinator)
    token = csrf_token(client, "/staff/participants/JGH-001/schedule")
    response = client.post(
        "/staff/participants/JGH-001/visits/M1/appointment",
        data={
            "csrf_token": token,
            "date": "2026-12-29",
            "time": "10:15",
            "notes_fr": "Apportez vos médicaments",
            "notes_en": "Bring your medication list",
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/staff/participants/JGH-001/schedule#visit-M1")
    m1 = visit(participant, "M1")
    assert m1.scheduled_at == datetime(2026, 12, 29, 15, 15, tzinfo=UTC)
    page = _text(client.get("/staff/participants/JGH-001/schedule"))
    assert "Saved." in page and "Tuesday, December 29, 2026 at 10:15" in page


def test_coordinator_sets_an_appointment_with_htmx_and_gets_the_fragment(
    client, sign_in, csrf_token, participant, coordinator
):
    sign_in(client, coordinator)
    token = csrf_token(client, "/staff/participants/JGH-001/schedule")
    response = client.post(
        "/staff/participants/JGH-001/visits/M1/appointment",
        data={"csrf_token": token, "date": "2026-12-29", "time": "10:15"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    page = _text(response)
    assert page.lstrip().startswith('<li class="staff-visit') and "<html" not in page
    assert 'name="csrf_token"' in page


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"date": "2026-02-30", "time": "09:00"}, "Veuillez saisir une date valide"),
        ({"date": "29/12/2026", "time": "09:00"}, "Veuillez saisir une date valide"),
        ({"date": "2026-12-29", "time": "25:00"}, "Veuillez saisir une heure valide"),
        ({"date": "2026-12-29", "time": ""}, "Veuillez saisir une heure valide"),
        ({"date": "2027-01-20", "time": "09:00"}, "hors de la période"),
        ({"date": "2027-03-14", "time": "02:30", "reason": "ok"}, "n’existe pas"),
        ({"date": "2026-12-29", "time": "09:00", "notes_fr": "x" * 1001}, "moins de"),
    ],
)
@pytest.mark.parametrize("htmx", [False, True])
def test_bad_appointment_input_is_a_translated_422_and_nothing_changes(
    client, sign_in, csrf_token, participant, make_staff, data, message, htmx
):
    coordinator = make_staff(sites=["JGH"], language="fr")
    sign_in(client, coordinator)
    token = csrf_token(client, "/staff/participants/JGH-001/schedule")
    before = _audit_count()
    response = client.post(
        "/staff/participants/JGH-001/visits/M1/appointment",
        data={"csrf_token": token, **data},
        headers={"HX-Request": "true"} if htmx else {},
    )
    assert response.status_code == 422
    assert message in _text(response)
    db.session.expire_all()
    m1 = visit(participant, "M1")
    assert m1.scheduled_at is None and m1.notes_fr is None and m1.sequence == 0
    assert _audit_count() == before


def test_marking_a_visit_requires_a_reason_then_saves(
    client, sign_in, csrf_token, participant, coordinator
):
    sign_in(client, coordinator)
    token = csrf_token(client, "/staff/participants/JGH-001/schedule")
    path = "/staff/participants/JGH-001/visits/M3/status"
    refused = client.post(path, data={"csrf_token": token, "status": "cancelled", "reason": ""})
    assert refused.status_code == 422 and "Please give the reason." in _text(refused)
    assert client.post(path, data={"csrf_token": token, "status": "bogus"}).status_code == 422
    assert visit(participant, "M3").status == "planned"
    saved = client.post(
        path, data={"csrf_token": token, "status": "cancelled", "reason": "Team decision"}
    )
    assert saved.status_code == 303
    db.session.expire_all()
    assert visit(participant, "M3").status == "cancelled"


def test_day0_change_asks_for_confirmation_listing_what_moves(
    client, sign_in, csrf_token, participant, coordinator
):
    services.set_appointment(visit(participant, "M1"), date(2026, 12, 29), time(9), "", "", "")
    db.session.commit()
    sign_in(client, coordinator)
    token = csrf_token(client, "/staff/participants/JGH-001/schedule")
    path = "/staff/participants/JGH-001/schedule/day0"
    form = {"csrf_token": token, "day0": "2026-12-08", "reason": "Infusion postponed"}

    preview = client.post(path, data=form)
    assert preview.status_code == 200
    page = _text(preview)
    assert "Please confirm the new day 0" in page
    assert "December 29, 2026 → January 5, 2027" in page
    assert "its appointment is cleared" in page
    assert 'name="confirm" value="yes"' in page
    db.session.expire_all()
    assert participant.day0 == date(2026, 12, 1)

    done = client.post(path, data={**form, "confirm": "yes"})
    assert done.status_code == 303
    db.session.expire_all()
    assert participant.day0 == date(2026, 12, 8)
    assert visit(participant, "M1").target_date == date(2027, 1, 5)
    assert visit(participant, "M1").scheduled_at is None


@pytest.mark.parametrize(
    ("day0", "reason", "message"),
    [
        ("2026-13-01", "x", "valid date"),
        ("", "x", "valid date"),
        ("2010-01-01", "x", "within two years"),
        ("2030-01-01", "x", "within two years"),
        ("2026-12-08", "", "reason for changing day 0"),
    ],
)
def test_a_bad_day0_is_a_422_and_nothing_changes(
    client, sign_in, csrf_token, participant, coordinator, day0, reason, message
):
    sign_in(client, coordinator)
    token = csrf_token(client, "/staff/participants/JGH-001/schedule")
    before = _audit_count()
    response = client.post(
        "/staff/participants/JGH-001/schedule/day0",
        data={"csrf_token": token, "day0": day0, "reason": reason, "confirm": "yes"},
    )
    assert response.status_code == 422
    assert message in _text(response)
    db.session.expire_all()
    assert participant.day0 == date(2026, 12, 1)
    assert _audit_count() == before


def test_a_participant_without_day0_sees_a_waiting_message(client, sign_in, make_participant, now):
    participant = make_participant(day0=None, language="en")
    sign_in(client, participant)
    assert "has not planned your visits yet" in _text(client.get("/home"))
    assert "has not planned your visits yet" in _text(client.get("/visits"))


def test_visits_are_planned_when_a_page_finds_day0_set_without_visits(
    client, sign_in, make_participant, now
):
    participant = make_participant(day0=date(2026, 12, 1), language="en")
    sign_in(client, participant)
    assert client.get("/visits").status_code == 200
    assert len(services.visits_of(participant)) == 8
