"""A participant's day on a phone: home says what comes next (the after-infusion page pinned,
the next visit, the next infusion), the visit explained, then "Contact my team" and "After my
infusion"; in fr-CA, en-CA and fr-FR, at 390 px and at 320 px with 200 % text, with axe at 0
violations, no sideways scrolling and every target at least 44×44 px."""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import pytest

from patient_portal.extensions import db
from patient_portal.schedule import services
from tests.e2e.conftest import (
    PHONE,
    assert_accessible,
    assert_no_horizontal_scroll,
    small_tap_targets,
)
from tests.factories import open_session_for

# Screenshots for a person to look at, when asked: PARTICIPANT_DAY_SCREENSHOTS=/some/dir.
SHOTS = os.environ.get("PARTICIPANT_DAY_SCREENSHOTS")

WORDS = {
    "fr-CA": {
        "site": "JGH",
        "language": "fr",
        "home": "Ce qui vient ensuite",
        "pin": "Lire : après ma perfusion",
        "next_visit": "Visite de suivi de la tolérance (mois 1)",
        "next_infusion": "Perfusion 2 (mois 3)",
        "first_infusion": "Perfusion 1 (mois 0)",
        "explain": "Le déroulement de cette visite",
        "what": "Ce qui se passe",
        "home_link": "Accueil",
        "contact": "Joindre l’équipe de recherche",
        "tel": "tel:+15145550100",
        "emergency": "tel:911",
        "after": "Quand appeler le numéro d’urgence",
    },
    "en-CA": {
        "site": "JGH",
        "language": "en",
        "home": "What comes next",
        "pin": "Read: after my infusion",
        "next_visit": "Safety visit (month 1)",
        "next_infusion": "Infusion 2 (month 3)",
        "first_infusion": "Infusion 1 (month 0)",
        "explain": "What happens at this visit",
        "what": "What happens",
        "home_link": "Home",
        "contact": "Contact my team",
        "tel": "tel:+15145550100",
        "emergency": "tel:911",
        "after": "When to call the emergency number",
    },
    "fr-FR": {
        "site": "SLS",
        "language": "fr",
        "home": "Ce qui vient ensuite",
        "pin": "Lire : après ma perfusion",
        "next_visit": "Visite de suivi de la tolérance (mois 1)",
        "next_infusion": "Perfusion 2 (mois 3)",
        "first_infusion": "Perfusion 1 (mois 0)",
        "explain": "Le déroulement de cette visite",
        "what": "Ce qui se passe",
        "home_link": "Accueil",
        "contact": "Joindre l’équipe de recherche",
        "tel": "tel:+33199001234",
        "emergency": "tel:15",
        "after": "Quand appeler le numéro d’urgence",
    },
}


def _look(page, name: str) -> None:
    """The screen at 390 px, then at 320 px with 200 % text: accessible, no sideways scrolling,
    no target under 44×44 px; back to the phone afterwards."""
    for width, text in ((PHONE["width"], None), (320, "200%")):
        if text:
            page.set_viewport_size({"width": width, "height": 640})
            page.evaluate(f"document.documentElement.style.fontSize='{text}'")
        assert_accessible(page)
        assert_no_horizontal_scroll(page)
        assert small_tap_targets(page) == [], (name, width)
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            # In screen-high parts, so that a person can read each one at full size.
            height = page.evaluate("document.documentElement.scrollHeight")
            for part, top in enumerate(range(0, height, 900)):
                clip = {"x": 0, "y": top, "width": width, "height": min(900, height - top)}
                page.screenshot(
                    path=f"{SHOTS}/{name}-{width}-{part}.png", full_page=True, clip=clip
                )
    page.set_viewport_size(PHONE)
    page.evaluate("document.documentElement.style.fontSize=''")


@pytest.mark.parametrize("locale", list(WORDS))
def test_home_next_infusion_contact_and_after_infusion(
    live_server, new_phone, make_participant, locale
):
    words = WORDS[locale]
    # The first infusion was three days ago: its after-care page is pinned to home.
    day0 = date.today() - timedelta(days=3)
    participant = make_participant(day0=day0, language=words["language"], site_code=words["site"])
    services.plan_visits(participant)
    for code in ("SCREENING", "M0"):
        services.mark_visit(services.visit_by_code(participant, code), "completed", None)
    db.session.commit()
    page = new_phone(locale)
    page.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(participant), "url": live_server}]
    )
    shot = f"{locale}"

    page.goto(live_server + "/home")
    assert page.get_by_role("heading", level=1).inner_text() == words["home"]
    main = page.locator("main").inner_text().replace("\u00a0", " ")
    # The pin first, then the next visit, then the next infusion; no visit in the past.
    assert main.index(words["pin"]) < main.index(words["next_visit"])
    assert main.index(words["next_visit"]) < main.index(words["next_infusion"])
    _look(page, f"{shot}-home")

    infusion = page.locator("section.next-visit", has_text=words["next_infusion"])
    infusion.get_by_role("link", name=words["explain"]).click()
    page.wait_for_url("**/visits#visit-M3")
    assert words["what"] in page.locator("#visit-M3").inner_text()
    _look(page, f"{shot}-visits")

    page.locator(".menu-button").click()  # the participant's menu opens from one button
    page.get_by_role("link", name=words["home_link"], exact=True).click()
    page.wait_for_url("**/home")
    page.get_by_role("link", name=words["contact"]).click()
    page.wait_for_url("**/contact")
    assert page.locator(f'main a[href="{words["tel"]}"]').count() == 1
    assert page.locator(f'main a[href="{words["emergency"]}"]').count() == 1
    _look(page, f"{shot}-contact")

    page.locator(".menu-button").click()  # the participant's menu opens from one button
    page.get_by_role("link", name=words["home_link"], exact=True).click()
    page.wait_for_url("**/home")
    page.get_by_role("link", name=words["pin"]).click()
    page.wait_for_url("**/after-infusion")
    assert words["after"] in page.locator("main").inner_text()
    assert page.locator(f'main a[href="{words["tel"]}"]').count() == 1
    _look(page, f"{shot}-after-infusion")


@pytest.mark.parametrize("locale", ["fr-CA", "en-CA"])
def test_before_day0_home_says_the_screening_is_to_book_with_a_call_button(
    live_server, new_phone, make_participant, locale
):
    words = WORDS[locale]
    participant = make_participant(
        day0=date.today() + timedelta(days=10), language=words["language"], site_code="JGH"
    )
    services.plan_visits(participant)
    db.session.commit()
    page = new_phone(locale)
    page.context.add_cookies(
        [{"name": "portal_session", "value": open_session_for(participant), "url": live_server}]
    )
    page.goto(live_server + "/home")
    card = page.locator("section.next-visit").first
    call = card.locator(f'a[href="{words["tel"]}"]')
    assert call.is_visible()
    assert call.bounding_box()["height"] >= 44
    infusion = page.locator("section.next-visit-infusion")
    assert words["first_infusion"] in infusion.inner_text()
    _look(page, f"{locale}-home-before-day0")
