"""The landing page on a phone, in both languages, with no accessibility violation."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import assert_accessible, assert_no_horizontal_scroll


@pytest.mark.parametrize(
    ("locale", "heading", "switch_to", "switched_heading"),
    [
        ("fr-CA", "Le portail de l’étude CARE-SSc", "English", "The CARE-SSc study portal"),
        ("en-CA", "The CARE-SSc study portal", "Français", "Le portail de l’étude CARE-SSc"),
    ],
)
def test_landing_page_on_a_phone_in_both_languages(
    live_server, new_phone, locale, heading, switch_to, switched_heading
):
    page = new_phone(locale)
    page.goto(live_server + "/")
    assert page.get_by_role("heading", level=1).inner_text() == heading
    assert_accessible(page)
    assert_no_horizontal_scroll(page)

    page.get_by_role("button", name=switch_to).click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == switched_heading
    assert page.locator("html").get_attribute("lang") == ("en" if locale.startswith("fr") else "fr")
    page.reload()
    assert page.get_by_role("heading", level=1).inner_text() == switched_heading
    assert_accessible(page)


def test_landing_page_fits_320px_at_200_percent_text(live_server, new_phone):
    page = new_phone("fr-FR")
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto(live_server + "/")
    page.add_style_tag(content="html { font-size: 200% !important; }")
    assert_no_horizontal_scroll(page)


def test_sign_in_link_is_a_large_target(live_server, new_phone):
    page = new_phone("en-CA")
    page.goto(live_server + "/")
    box = page.get_by_role("link", name="Sign in").bounding_box()
    assert box["width"] >= 44 and box["height"] >= 44
