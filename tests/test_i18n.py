"""French and English: negotiation, the switch, and a complete French catalogue."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from patient_portal.i18n import format_date, format_datetime, format_number, formatting_locale

PO_FILE = (
    Path(__file__).resolve().parent.parent / "translations" / "fr" / "LC_MESSAGES" / "messages.po"
)


def _lang(response) -> str:
    match = re.search(r'<html lang="([^"]+)"', response.get_data(as_text=True))
    assert match, "the page names no language"
    return match.group(1)


@pytest.mark.parametrize(
    ("accept", "lang", "phrase"),
    [
        ("fr-CA,fr;q=0.9", "fr", "Comment vous connecter"),
        ("en-CA,en;q=0.8", "en", "How to sign in"),
        ("de-DE", "fr", "Comment vous connecter"),
        (";;;q=abc,,", "fr", "Comment vous connecter"),
    ],
)
def test_landing_page_follows_accept_language(client, accept, lang, phrase):
    response = client.get("/", headers={"Accept-Language": accept})
    assert response.status_code == 200
    assert _lang(response) == lang
    assert phrase in response.get_data(as_text=True)


def test_language_switch_sticks(client, csrf_token):
    token = csrf_token(client)
    response = client.post(
        "/language", data={"language": "en", "next": "/sign-in", "csrf_token": token}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/sign-in"
    later = client.get("/", headers={"Accept-Language": "fr"})
    assert _lang(later) == "en"


def test_language_switch_refuses_unknown_codes_in_the_visitors_language(client, csrf_token):
    token = csrf_token(client)
    response = client.post(
        "/language", data={"language": "xx", "csrf_token": token}, headers={"Accept-Language": "fr"}
    )
    assert response.status_code == 400
    assert "Cette demande" in response.get_data(as_text=True)


def test_language_switch_never_redirects_off_site(client, csrf_token):
    token = csrf_token(client)
    for target in ["https://evil.example/", "//evil.example/", "/\\evil.example"]:
        response = client.post(
            "/language", data={"language": "fr", "next": target, "csrf_token": token}
        )
        assert response.headers["Location"] == "/"


def test_a_missing_csrf_token_gets_a_translated_400(client):
    response = client.post("/language", data={"language": "en"}, headers={"Accept-Language": "fr"})
    assert response.status_code == 400
    assert "Ce formulaire a expiré" in response.get_data(as_text=True)


def test_unknown_page_is_a_translated_404(client):
    response = client.get("/nowhere", headers={"Accept-Language": "fr-FR"})
    assert response.status_code == 404
    assert "Page introuvable" in response.get_data(as_text=True)
    assert _lang(response) == "fr"


def test_french_catalogue_is_complete():
    with PO_FILE.open("rb") as handle:
        catalogue = read_po(handle)
    messages = [m for m in catalogue if m.id]
    untranslated = [
        m.id
        for m in messages
        if not m.string or (isinstance(m.string, tuple) and not all(m.string))
    ]
    fuzzy = [m.id for m in messages if m.fuzzy]
    assert not untranslated, f"untranslated: {untranslated[:5]}"
    assert not fuzzy, f"fuzzy: {fuzzy[:5]}"


PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]|%[sd]|\{[a-z_]*\}")
TAG = re.compile(r"</?[a-z]+")


def test_french_placeholders_and_tags_match_the_source():
    with PO_FILE.open("rb") as handle:
        catalogue = read_po(handle)
    for message in catalogue:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for translated in strings:
            assert sorted(PLACEHOLDER.findall(ids[-1])) == sorted(
                PLACEHOLDER.findall(translated)
            ), message.id
            assert sorted(TAG.findall(ids[-1])) == sorted(TAG.findall(translated)), message.id


@pytest.mark.parametrize(
    ("language", "country", "expected"),
    [("fr", "CA", "fr_CA"), ("en", "CA", "en_CA"), ("fr", "FR", "fr_FR"), ("en", None, "en_CA")],
)
def test_formatting_locale_is_language_plus_site_country(language, country, expected):
    assert formatting_locale(language, country) == expected


def test_dates_and_numbers_follow_locale_and_site_zone():
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    # 02:30 UTC on 3 December is still 2 December in Montréal, already 3 December in Paris.
    moment = datetime(2026, 12, 3, 2, 30, tzinfo=UTC)
    assert format_date(moment, "fr_CA", ZoneInfo("America/Toronto")) == "mercredi 2 décembre 2026"
    assert (
        format_date(moment, "en_CA", ZoneInfo("America/Toronto")) == "Wednesday, December 2, 2026"
    )
    assert format_date(moment, "fr_FR", ZoneInfo("Europe/Paris")) == "jeudi 3 décembre 2026"
    assert "21 h 30" in format_datetime(moment, "fr_CA", ZoneInfo("America/Toronto"))
    assert format_number(1234.5, "fr_FR", 1) == "1\u202f234,5"
    assert format_number(1234.5, "en_CA", 1) == "1,234.5"
