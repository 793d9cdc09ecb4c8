"""The copy's rules (patient_portal/wording.py): Québec and France differ only by the listed
regional terms, one apostrophe in French, no masculine-only words about the reader, one name for
the study team, Canadian spelling in English. After merging new strings, `make translations`
(or `python -m patient_portal.wording tidy`) fixes what is mechanical; the rest is rewriting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from patient_portal import wording

POT_FILE = wording.ROOT / "translations" / "messages.pot"


def _french_texts() -> list[tuple[str, str]]:
    """(where, text) for every French text a participant or coordinator can read."""
    texts = [
        (msgid, text)
        for region in ("CA", "FR")
        for msgid, strings in wording.effective_french(region).items()
        for text in strings
    ]
    for path in wording.FRENCH_DATA_FILES:
        texts += [(path.name, text) for text in wording.french_data_texts(path)]
    return texts


def _english_sources() -> list[str]:
    with POT_FILE.open("rb") as handle:
        catalogue = read_po(handle)
    texts: list[str] = []
    for message in catalogue:
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        texts += [str(text) for text in ids if text]
    for path in wording.FRENCH_DATA_FILES:
        texts += _english_data_texts(path)
    return texts


def _english_data_texts(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return re.findall(r'"en":\s*"((?:[^"\\]|\\.)*)"', text)


def test_quebec_and_france_differ_only_by_the_listed_regional_terms():
    quebec, france = wording.effective_french("CA"), wording.effective_french("FR")
    assert quebec.keys() == france.keys()
    unexplained = [
        (msgid, qc, fr)
        for msgid in quebec
        for qc, fr in zip(quebec[msgid], france[msgid], strict=True)
        if qc != fr and wording.in_france(qc) != fr
    ]
    assert not unexplained, f"not a listed regional term: {unexplained[:3]}"


def test_no_region_reads_the_other_regions_words():
    # A new French string with "courriel" and no fr_FR override means `tidy` was not run.
    for region in ("CA", "FR"):
        found = [
            (msgid, words)
            for msgid, strings in wording.effective_french(region).items()
            for text in strings
            if (words := wording.regional_words(text, region))
        ]
        assert not found, f"fr_{region} shows the other region's words: {found[:3]}"


def test_every_regional_override_translates_a_current_string():
    base = wording.effective_french("CA")
    with wording.FRANCE_PO.open("rb") as handle:
        overrides = [m.id for m in read_po(handle) if m.id]
    stale = [
        msgid for msgid in overrides if (msgid if isinstance(msgid, str) else msgid[0]) not in base
    ]
    assert not stale, f"overrides of strings that no longer exist: {stale[:3]}"


def test_french_has_no_straight_apostrophe():
    straight = [
        (where, text) for where, text in _french_texts() if wording.straight_apostrophes(text)
    ]
    assert not straight, f"run `python -m patient_portal.wording tidy`: {straight[:3]}"


@pytest.mark.parametrize(("pattern", "why"), wording.MASCULINE_ABOUT_THE_READER)
def test_french_has_no_masculine_only_words_about_the_reader(pattern, why):
    found = [
        (where, text)
        for where, text in _french_texts()
        if re.search(pattern, text, flags=re.IGNORECASE | re.MULTILINE)
    ]
    assert not found, f"{why}: {found[:3]}"


def test_french_names_the_study_team_one_way():
    found = [
        (where, text)
        for where, text in _french_texts()
        for other in wording.OTHER_TEAM_NAMES_FRENCH
        if re.search(other, text, flags=re.IGNORECASE)
    ]
    assert not found, f"say « {wording.STUDY_TEAM_FRENCH} »: {found[:3]}"


def test_english_names_the_study_team_one_way():
    found = [
        text
        for text in _english_sources()
        for other in wording.OTHER_TEAM_NAMES_ENGLISH
        if re.search(other, text, flags=re.IGNORECASE)
    ]
    assert not found, f"say “study team”: {found[:3]}"


def test_offline_and_signed_out_are_distinct_in_both_languages():
    quebec = wording.effective_french("CA")
    offline = {quebec["You are offline"][0]}
    signed_out = {quebec["You are signed out"][0], quebec["Signed out"][0]}
    assert offline == {"Vous êtes hors ligne"}
    # English says it one way too: "not connected" could mean either.
    assert "You are not connected" not in quebec
    assert not offline & signed_out
    assert all("connect" not in text for text in signed_out)


@pytest.mark.parametrize(("pattern", "canadian"), wording.NOT_CANADIAN_SPELLINGS)
def test_english_uses_canadian_spelling(pattern, canadian):
    found = [text for text in _english_sources() if re.search(pattern, text, re.IGNORECASE)]
    assert not found, f"Canadian spelling is {canadian}: {found[:3]}"


def test_tidy_curls_apostrophes_outside_tags_only():
    assert wording.curl_apostrophes("l'équipe d'aujourd'hui") == "l’équipe d’aujourd’hui"
    assert wording.curl_apostrophes("<a href='/x'>l'accueil</a>") == "<a href='/x'>l’accueil</a>"


def test_france_wording_elides_the_article():
    assert wording.in_france("Le courriel est parti.") == "L’e-mail est parti."
    assert wording.in_france("Votre adresse courriel") == "Votre adresse e-mail"
    assert wording.in_france("Un courriel d’essai") == "Un e-mail d’essai"
    assert wording.in_france("dans ce courriel") == "dans cet e-mail"


@pytest.mark.parametrize(
    ("site", "word", "other"),
    [("CHUM", "adresse courriel", "e-mail"), ("SLS", "adresse e-mail", "courriel")],
)
def test_the_site_decides_the_regional_words(
    app, client, make_participant, sign_in, site, word, other
):
    app.config["PORTAL_SMTP_HOST"] = "127.0.0.1"
    sign_in(client, make_participant(site_code=site, language="fr"))
    html = client.get("/reminders").get_data(as_text=True)
    assert word in html
    assert other not in html.replace('type="email"', "")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [("fr-CA,fr;q=0.9", "fr_CA"), ("fr-FR", "fr_FR"), ("fr", "fr_FR"), ("en-CA", "en")],
)
def test_before_sign_in_accept_language_decides_the_region(app, accept, expected):
    from patient_portal.i18n import select_language

    with app.test_request_context("/", headers={"Accept-Language": accept}):
        assert select_language() == expected


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("Vous êtes déconnecté", True),
        ("Vous n’êtes pas connecté", True),
        ("Êtes-vous sûr ?", True),
        ("Rien n’a été fait. Vous pouvez réessayer quand vous serez prêt.", True),
        ("Votre session est fermée", False),
        ("Votre nouveau lien est prêt.", False),
        ("%(num)d appareils connectés.", False),
    ],
)
def test_the_deny_list_catches_what_it_is_for(text, refused):
    found = any(
        re.search(pattern, text, flags=re.IGNORECASE | re.MULTILINE)
        for pattern, _why in wording.MASCULINE_ABOUT_THE_READER
    )
    assert found is refused


@pytest.mark.parametrize(("site", "footer"), [("CHUM", "ce courriel"), ("SLS", "cet e-mail")])
def test_a_reminder_email_speaks_the_sites_french(app, now, make_participant, site, footer):
    from datetime import UTC, date, datetime

    from patient_portal.extensions import db
    from patient_portal.reminders import messages, preferences
    from patient_portal.schedule.models import Visit
    from tests.reminders.conftest import reminders_of

    app.config["PORTAL_SMTP_HOST"] = "127.0.0.1"
    now(datetime(2026, 11, 20, 15, tzinfo=UTC))
    participant = make_participant(site_code=site, language="fr", day0=date(2026, 12, 1))
    with app.test_request_context("/"):
        preferences.set_email(participant, "participant@example.org")
        preferences.confirm_email(participant)
        reminder = reminders_of(participant, channel="email")[0]
        visit = db.session.get(Visit, reminder.visit_id) if reminder.visit_id else None
        message = messages.compose(reminder, participant, visit, now(), email=True)
    assert f"Vous recevez {footer}" in message.text
    assert message.language == "fr"
