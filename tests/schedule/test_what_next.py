"""What home answers across the participant's year: the next visit is never in the past, an open
window not yet booked says the team will call, today and tomorrow come first, the next infusion
has its card, after the last visit a thank-you; the after-infusion page is pinned for 7 days.
Checked on the wall calendars of Montréal and Paris."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from patient_portal.extensions import db
from patient_portal.schedule import services
from tests.schedule.helpers import visit

DAY0 = date(2026, 12, 1)
MONTREAL = ZoneInfo("America/Toronto")
PARIS = ZoneInfo("Europe/Paris")
# Words that would put a visit in the past on home.
PAST_WORDS = re.compile(r"\bago\b|il y a|Date passed|Date passée|around|aux alentours")


def _local(day: date, hour: int, zone: ZoneInfo, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)


def _main(response) -> str:
    page = response.get_data(as_text=True)
    # Phone numbers and French colons hold together with no-break spaces and hyphens.
    main = page[page.index("<main") : page.index("</main>")]
    return main.replace("\u00a0", " ").replace("\u2011", "-")


def _home(client, sign_in, participant) -> str:
    sign_in(client, participant)
    response = client.get("/home")
    assert response.status_code == 200
    return _main(response)


def _done(participant, *codes: str) -> None:
    for code in codes:
        services.mark_visit(visit(participant, code), "completed", None)
    db.session.commit()


# --- The services ---------------------------------------------------------------------------


def test_before_day0_screening_is_to_book_and_the_first_infusion_has_its_card(planned, now):
    participant = planned(day0=DAY0)
    # 20 November: the screening window (10–30 November) is open and its target day is past.
    plan = services.what_next(participant, now())
    assert plan.next_visit.visit.code == "SCREENING"
    assert plan.next_visit.moment == "to_book"
    assert plan.next_visit.day is None  # no guessed day inside the window
    assert plan.next_infusion.visit.code == "M0"
    assert (plan.next_infusion.moment, plan.next_infusion.days_until) == ("on_day", 11)
    assert plan.infused_on is None and not plan.finished


def test_a_booked_next_visit_is_on_its_day(planned, now):
    participant = planned(day0=DAY0)
    services.set_appointment(
        visit(participant, "SCREENING"), date(2026, 11, 23), time(9, 30), None, None, None
    )
    db.session.commit()
    plan = services.what_next(participant, now())
    assert (plan.next_visit.moment, plan.next_visit.day) == ("on_day", date(2026, 11, 23))
    assert plan.next_visit.days_until == 3


@pytest.mark.parametrize(
    ("site_code", "zone", "expected"),
    # 1 December 04:30 UTC is still 30 November in Montréal, already 1 December in Paris.
    [("JGH", MONTREAL, "tomorrow"), ("SLS", PARIS, "today")],
)
def test_the_infusion_is_today_or_tomorrow_on_the_sites_calendar(
    planned, now, site_code, zone, expected
):
    participant = planned(day0=DAY0, site_code=site_code)
    _done(participant, "SCREENING")
    plan = services.what_next(participant, datetime(2026, 12, 1, 4, 30, tzinfo=UTC))
    assert plan.next_visit.visit.code == "M0"
    assert plan.next_visit.moment == expected
    # The infusion is the next visit: no second card for it.
    assert plan.next_infusion is None


@pytest.mark.parametrize(("site_code", "zone"), [("JGH", MONTREAL), ("SLS", PARIS)])
def test_an_appointment_tomorrow_says_tomorrow(planned, now, site_code, zone):
    participant = planned(day0=DAY0, site_code=site_code)
    _done(participant, "SCREENING", "M0")
    services.set_appointment(visit(participant, "M1"), date(2026, 12, 29), time(8), "", "", "")
    db.session.commit()
    plan = services.what_next(participant, _local(date(2026, 12, 28), 23, zone, 30))
    assert (plan.next_visit.visit.code, plan.next_visit.moment) == ("M1", "tomorrow")
    plan = services.what_next(participant, _local(date(2026, 12, 29), 0, zone, 30))
    assert plan.next_visit.moment == "today"
    # Once the appointment's day is over and nobody marked it, home moves on; never "ago".
    plan = services.what_next(participant, _local(date(2026, 12, 30), 0, zone, 30))
    assert plan.next_visit.visit.code == "M3"


@pytest.mark.parametrize(("site_code", "zone"), [("JGH", MONTREAL), ("SLS", PARIS)])
def test_an_open_window_past_its_target_stays_to_book_until_it_closes(
    planned, now, site_code, zone
):
    participant = planned(day0=DAY0, site_code=site_code)
    _done(participant, "SCREENING", "M0")
    # M1: target 29 December, window 22 December to 5 January.
    for day, moment in [
        (date(2026, 12, 21), "window"),
        (date(2026, 12, 22), "to_book"),
        (date(2027, 1, 3), "to_book"),
        (date(2027, 1, 5), "to_book"),
    ]:
        plan = services.what_next(participant, _local(day, 12, zone))
        assert (plan.next_visit.visit.code, plan.next_visit.moment) == ("M1", moment), day
        assert plan.next_infusion.visit.code == "M3"
        assert plan.next_infusion.moment == "window"
    plan = services.what_next(participant, _local(date(2027, 1, 6), 0, zone, 1))
    assert plan.next_visit.visit.code == "M3"


def test_after_the_last_visit_the_year_is_finished(planned, now):
    participant = planned(day0=DAY0)
    _done(participant, *[v.code for v in services.visits_of(participant)])
    plan = services.what_next(participant, _local(date(2027, 12, 20), 12, MONTREAL))
    assert plan.next_visit is None and plan.next_infusion is None
    assert plan.finished and plan.has_visits


def test_no_visits_planned_is_not_finished(make_participant, now):
    participant = make_participant(day0=None)
    plan = services.what_next(participant, now())
    assert not plan.finished and not plan.has_visits


@pytest.mark.parametrize(("site_code", "zone"), [("JGH", MONTREAL), ("SLS", PARIS)])
def test_after_infusion_is_pinned_from_the_infusion_day_for_7_days(planned, now, site_code, zone):
    participant = planned(day0=DAY0, site_code=site_code)
    _done(participant, "SCREENING")
    services.set_appointment(visit(participant, "M0"), DAY0, time(9), None, None, None)
    db.session.commit()
    pinned = {
        offset: services.last_infusion_day(participant, _local(DAY0 + timedelta(offset), 12, zone))
        for offset in (-1, 0, 1, 7, 8)
    }
    assert pinned == {-1: None, 0: DAY0, 1: DAY0, 7: DAY0, 8: None}
    # The day ends at midnight on the site's clock, not in UTC.
    assert services.last_infusion_day(participant, _local(DAY0 + timedelta(7), 23, zone, 59))
    assert not services.last_infusion_day(participant, _local(DAY0 + timedelta(8), 0, zone, 1))


def test_the_second_infusion_pins_it_again_and_a_cancelled_one_does_not(planned, now):
    participant = planned(day0=DAY0)
    _done(participant, "SCREENING", "M0", "M1")
    services.set_appointment(visit(participant, "M3"), date(2027, 3, 3), time(9), "", "", "")
    db.session.commit()
    assert services.last_infusion_day(participant, _local(date(2027, 3, 5), 12, MONTREAL)) == date(
        2027, 3, 3
    )
    services.mark_visit(visit(participant, "M3"), "cancelled", "Neutral reason")
    db.session.commit()
    assert services.last_infusion_day(participant, _local(date(2027, 3, 5), 12, MONTREAL)) is None


# --- The home page --------------------------------------------------------------------------


def test_home_before_day0_in_french(client, sign_in, planned, now):
    participant = planned(day0=DAY0, language="fr")
    page = _home(client, sign_in, participant)
    assert not PAST_WORDS.search(page)
    assert "Votre prochaine visite" in page and "Visite de sélection" in page
    assert "À fixer : l’équipe de recherche vous appellera pour convenir de la date." in page
    assert "Entre le 10 novembre et le 30 novembre 2026" in page
    assert 'href="tel:+15145550100"' in page  # the study team's line, from the protocol
    assert "Votre prochaine perfusion" in page and "Perfusion 1 (mois 0)" in page
    assert "dans 11 jours" in page
    assert "Le mardi 1 décembre 2026" in page
    assert 'href="/contact"' in page and "Joindre l’équipe de recherche" in page
    assert "Après ma perfusion" not in page


def test_home_says_tomorrow_first_in_english(client, sign_in, planned, now):
    participant = planned(day0=DAY0, language="en")
    _done(participant, "SCREENING")
    services.set_appointment(visit(participant, "M0"), DAY0, time(8), "Come fasting", "", "")
    db.session.commit()
    now.set(_local(date(2026, 11, 30), 18, MONTREAL))
    page = _home(client, sign_in, participant)
    card = page[page.index('class="next-visit') :]
    assert card.index("Tomorrow") < card.index("Infusion 1 (month 0)")
    assert "Tuesday, December 1, 2026 at 8:00" in card
    assert "Your next infusion" not in page  # it is the next visit already
    assert not PAST_WORDS.search(page)


def test_home_with_a_window_open_and_the_infusion_ahead(client, sign_in, planned, now):
    participant = planned(day0=DAY0, language="en", site_code="SLS")
    _done(participant, "SCREENING", "M0")
    now.set(_local(date(2027, 1, 3), 12, PARIS))
    page = _home(client, sign_in, participant)
    assert not PAST_WORDS.search(page)
    assert "Safety visit (month 1)" in page
    assert "To be booked: your study team will call you to set the date." in page
    # English dates written as in France (en_FR): the site's country.
    assert "Between 22 December 2026 and 5 January 2027" in page
    assert 'href="tel:+33199001234"' in page
    assert "Your next infusion" in page and "Infusion 2 (month 3)" in page
    assert "Between 23 February and 9 March 2027" in page


def test_home_pins_after_infusion_for_7_days(client, sign_in, planned, now):
    participant = planned(day0=DAY0, language="en")
    _done(participant, "SCREENING", "M0")
    now.set(_local(DAY0 + timedelta(days=7), 20, MONTREAL))
    page = _home(client, sign_in, participant)
    assert 'href="/after-infusion"' in page and "After your infusion" in page
    now.set(_local(DAY0 + timedelta(days=8), 9, MONTREAL))
    assert 'href="/after-infusion"' not in _home(client, sign_in, participant)


def test_home_after_the_last_visit_says_thank_you(client, sign_in, planned, now):
    participant = planned(day0=DAY0, language="fr")
    _done(participant, *[v.code for v in services.visits_of(participant)])
    now.set(_local(date(2027, 12, 20), 12, MONTREAL))
    page = _home(client, sign_in, participant)
    assert "Merci de votre participation à l’étude" in page
    assert "Votre prochaine visite" not in page
    assert 'href="/contact"' in page


def test_the_menu_has_contact(client, sign_in, planned, now):
    participant = planned(day0=DAY0, language="en")
    sign_in(client, participant)
    page = client.get("/visits").get_data(as_text=True)
    nav = page[page.index('<nav class="menu-nav"') : page.index("</nav>")]
    assert '<a href="/contact">Contact</a>' in nav
    # And one tap away, beside the menu button, without opening it.
    header = page[page.index('<header class="site-header">') : page.index('<details class="menu">')]
    assert 'class="button button-quiet header-pin" href="/contact">Contact</a>' in header


# --- Visits explained -----------------------------------------------------------------------


def test_visits_page_explains_each_kind_from_the_protocol(client, sign_in, planned, now):
    participant = planned(day0=DAY0, language="en")
    sign_in(client, participant)
    page = _main(client.get("/visits"))
    assert page.count("<dt>What happens</dt>") == 8
    assert "You receive the study product through a vein" in page
    assert "About half a day." in page
    assert "Your health insurance card" in page
    assert "Between November 10 and November 30, 2026" in page
    assert not re.search(r"around|to be confirmed", page)
