"""Whom to call: each site's study-team line, hours, after-hours instructions and emergency
number from the protocol file; the after-infusion page, the same for every participant; the
calendar's tentative windows; the call-back promise after an alert; help for a new phone."""

from __future__ import annotations

from datetime import date, time

import icalendar
import pytest

from patient_portal.extensions import db
from patient_portal.questionnaires import services as questionnaires
from patient_portal.schedule import services
from tests.safety.conftest import diary, local
from tests.schedule.helpers import visit

DAY0 = date(2026, 12, 1)


def _main(response) -> str:
    page = response.get_data(as_text=True)
    # Phone numbers and French colons hold together with no-break spaces and hyphens.
    main = page[page.index("<main") : page.index("</main>")]
    return main.replace("\u00a0", " ").replace("\u2011", "-")


@pytest.mark.parametrize(
    ("site_code", "language", "expected", "absent"),
    [
        (
            "JGH",
            "en",
            [
                "Jewish General Hospital",
                'href="tel:+15145550100"',
                "Call +1 514-555-0100",
                "Monday to Friday, 8:30\u202fa.m. to 4:30\u202fp.m.",
                "Outside these hours, call the hospital switchboard at +1 514-340-8222",
                'href="tel:911"',
                "This number is an example that the study has not replaced yet.",
            ],
            ["Saint-Louis", "15 / 112", "514-555-0101"],
        ),
        (
            "CHUM",
            "fr",
            [
                "Centre hospitalier de l’Université de Montréal",
                'href="tel:+15145550101"',
                "du lundi au vendredi, de 08 h 30 à 16 h 30",
                "demandez le rhumatologue de garde",
                "Appeler le 911",
            ],
            ["Hôpital général juif", "514-555-0100"],
        ),
        (
            "SLS",
            "fr",
            [
                "Hôpital Saint-Louis AP-HP",
                'href="tel:+33199001234"',
                "du lundi au vendredi, de 09:00 à 17:00",
                "standard de l’hôpital au +33 1 42 49 49 49",
                'href="tel:15"',
                "Appeler le 15<",  # the button says the number it dials
            ],
            ["911", "Montréal", "Appeler le 15 / 112"],
        ),
    ],
)
def test_contact_page_shows_the_participants_own_site(
    client, sign_in, make_participant, site_code, language, expected, absent
):
    participant = make_participant(site_code=site_code, language=language)
    sign_in(client, participant)
    page = _main(client.get("/contact"))
    for text in expected:
        assert text in page
    for text in absent:
        assert text not in page


def test_contact_page_lists_every_site_when_signed_out(client):
    page = _main(client.get("/contact", headers={"Accept-Language": "fr"}))
    for line in ("tel:+15145550100", "tel:+15145550101", "tel:+33199001234"):
        assert f'href="{line}"' in page
    assert "Chaque hôpital participant a sa propre équipe de recherche." in page


def test_sign_in_explains_how_to_get_a_new_link(client):
    page = _main(client.get("/sign-in", headers={"Accept-Language": "en"}))
    assert "New phone, or no passkey on this one?" in page
    assert "Call your study team: they will make you a new sign-in link" in page
    assert 'href="/contact"' in page


# --- After my infusion ----------------------------------------------------------------------


def test_after_infusion_page_is_the_same_for_every_participant(client, sign_in, planned, now):
    """There is no arm in the portal; the page must not depend on anything about the person
    either (visits done, cancelled, diaries): two very different participants get the same."""
    first = planned(day0=DAY0, language="fr", study_id="JGH-001")
    second = planned(day0=date(2026, 11, 24), language="fr", study_id="JGH-002")
    services.mark_visit(visit(first, "M0"), "completed", None)
    services.mark_visit(visit(second, "M0"), "cancelled", "Neutral reason")
    db.session.commit()
    pages = []
    for participant in (first, second):
        sign_in(client, participant)
        pages.append(_main(client.get("/after-infusion")))
    assert pages[0] == pages[1]
    page = pages[0]
    for heading in (
        "Ce que vous pourriez ressentir",
        "Ce qui doit vous alerter",
        "Quand appeler l’équipe de recherche",
        "Quand appeler le numéro d’urgence",
    ):
        assert heading in page
    assert 'href="tel:+15145550100"' in page and 'href="tel:911"' in page
    assert "JGH-00" not in page and "2026" not in page
    assert not any(word in page.lower() for word in ("placebo", "cellule", "ucmsc", "groupe"))


def test_after_infusion_page_in_english_for_paris(client, sign_in, make_participant):
    sign_in(client, make_participant(site_code="SLS", language="en"))
    page = _main(client.get("/after-infusion"))
    assert "What to watch for" in page and "38 °C" in page
    assert "Call 15 / 112 at once" in page
    assert 'href="tel:+33199001234"' in page


# --- Calendar -------------------------------------------------------------------------------


def test_calendar_entries_are_tentative_until_booked(planned, now):
    participant = planned(day0=DAY0, language="en")
    services.set_appointment(visit(participant, "M0"), DAY0, time(9), "", "", "")
    services.mark_visit(visit(participant, "M6"), "cancelled", "Neutral reason")
    db.session.commit()
    calendar = icalendar.Calendar.from_ical(services.feed_ics(participant))
    statuses = {str(event["uid"]): str(event["status"]) for event in calendar.walk("VEVENT")}
    by_code = {
        v.code: statuses[f"visit-{v.id}@care-ssc-portal"] for v in services.visits_of(participant)
    }
    assert by_code.pop("M0") == "CONFIRMED"
    assert by_code.pop("M6") == "CANCELLED"
    assert set(by_code.values()) == {"TENTATIVE"}
    single = icalendar.Calendar.from_ical(services.visit_ics(visit(participant, "M1")))
    assert [str(e["status"]) for e in single.walk("VEVENT")] == ["TENTATIVE"]


# --- After an answer that raised an alert ---------------------------------------------------


def test_done_page_says_who_will_call_back_and_by_when(client, sign_in, planned, now):
    participant = planned(day0=DAY0, language="en")
    zone = services.site_of(participant).zone
    now.set(local(DAY0, 8, 0, zone))
    services.set_appointment(visit(participant, "M0"), DAY0, time(10), None, None, None)
    db.session.commit()
    entry = diary(participant)[0]
    # Wednesday 2 December, 7:00 in Montréal: an urgent answer; the target is 4 working hours.
    now.set(local(date(2026, 12, 2), 7, 0, zone))
    for item_id, raw in (("temperature", ["390"]), ("symptoms", ["none"])):
        questionnaires.save_answer(entry, item_id, raw, participant)
    questionnaires.submit(entry, participant, "en")
    db.session.commit()
    sign_in(client, participant)
    page = _main(client.get(f"/questionnaires/{entry.id}/done"))
    assert (
        "A member of the study team (Jewish General Hospital) will call you back by"
        " Wednesday, December 2, 2026 at 12:30\u202fp.m. at the latest." in page
    )
