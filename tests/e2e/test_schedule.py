"""A coordinator sets an appointment and the participant sees it on a phone, in French (fr_CA)
and in English, with no accessibility violation and no sideways scrolling."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from patient_portal.extensions import db
from patient_portal.schedule import services
from tests.e2e.conftest import assert_accessible, assert_no_horizontal_scroll
from tests.factories import open_session_for


def _signed_in_page(new_phone, live_server, owner, locale):
    page = new_phone(locale)
    page.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(owner), "url": live_server}]
    )
    return page


@pytest.fixture
def day0() -> date:
    return date.today() + timedelta(days=10)


@pytest.mark.parametrize(
    ("language", "locale", "expected"),
    [
        (
            "fr",
            "fr-CA",
            ["Votre prochaine visite", "Perfusion 1 (mois 0)", "à 10 h 15", "Venez à jeun"],
        ),
        ("en", "en-CA", ["Your next visit", "Infusion 1 (month 0)", "at 10:15", "Come fasting"]),
    ],
)
def test_coordinator_sets_an_appointment_and_the_participant_sees_it(
    live_server, new_phone, make_participant, make_staff, day0, language, locale, expected
):
    participant = make_participant(day0=day0, language=language, study_id="JGH-001")
    services.plan_visits(participant)
    services.mark_visit(services.visit_by_code(participant, "SCREENING"), "completed", None)
    db.session.commit()
    coordinator = make_staff(sites=["JGH"], language="en")

    staff = _signed_in_page(new_phone, live_server, coordinator, "en-CA")
    staff.goto(live_server + "/staff/participants/JGH-001/schedule")
    assert staff.get_by_role("heading", level=1).inner_text() == "Schedule of JGH-001"
    assert_accessible(staff)
    visit = staff.locator("#visit-M0")
    visit.get_by_text("Set the appointment").click()
    visit.get_by_label("Date").fill(day0.isoformat())
    visit.get_by_label("Time (site clock)").fill("10:15")
    visit.get_by_label("Note for the participant, in French").fill("Venez à jeun")
    visit.get_by_label("Note for the participant, in English").fill("Come fasting")
    visit.get_by_role("button", name="Save the appointment").click()
    staff.locator("#visit-M0 .notice-ok").wait_for()
    assert "10:15" in staff.locator("#visit-M0").inner_text()
    assert_accessible(staff)
    assert_no_horizontal_scroll(staff)

    phone = _signed_in_page(new_phone, live_server, participant, locale)
    phone.goto(live_server + "/home")
    text = phone.locator("main").inner_text()
    for phrase in expected:
        assert phrase in text
    assert phone.locator(".next-visit-infusion .visit-kind").is_visible()
    call = phone.locator("a.tel")
    box = call.bounding_box()
    assert box["height"] >= 44
    assert call.get_attribute("href") == "tel:+15143408222"
    assert_accessible(phone)
    assert_no_horizontal_scroll(phone)

    phone.get_by_role(
        "link", name="Voir toutes mes visites" if language == "fr" else "See all my visits"
    ).click()
    phone.wait_for_url("**/visits")
    assert phone.locator("ol.timeline > li").count() == 8
    assert_accessible(phone)
    assert_no_horizontal_scroll(phone)
    for link in phone.locator("main a.button").all():
        box = link.bounding_box()
        assert box["width"] >= 44 and box["height"] >= 44


def test_timeline_fits_320px_at_200_percent_text(live_server, new_phone, make_participant, day0):
    participant = make_participant(day0=day0, language="fr", site_code="SLS")
    services.plan_visits(participant)
    db.session.commit()
    page = _signed_in_page(new_phone, live_server, participant, "fr-FR")
    page.set_viewport_size({"width": 320, "height": 640})
    for path in ("/visits", "/home", "/visits/calendar"):
        page.goto(live_server + path)
        page.add_style_tag(content="html { font-size: 200% !important; }")
        assert_no_horizontal_scroll(page)


def test_participant_makes_and_turns_off_a_calendar_link(
    live_server, new_phone, make_participant, day0
):
    participant = make_participant(day0=day0, language="en")
    services.plan_visits(participant)
    db.session.commit()
    page = _signed_in_page(new_phone, live_server, participant, "en-CA")
    page.goto(live_server + "/visits/calendar")
    assert_accessible(page)
    page.get_by_role("button", name="Make my calendar link").click()
    subscribe = page.get_by_role("link", name="Subscribe in my calendar")
    href = subscribe.get_attribute("href")
    assert href.startswith("webcal://localhost")
    assert_accessible(page)
    feed_url = "http://" + href.removeprefix("webcal://")
    assert page.request.get(feed_url).status == 200
    page.get_by_role("button", name="Turn off my calendar link").click()
    page.get_by_text("Your calendar link is turned off").wait_for()
    assert page.request.get(feed_url).status == 404
    assert_accessible(page)
