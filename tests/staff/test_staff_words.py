"""Staff screens in words, in the viewer's language: audit events as sentences, labels instead
of codes, times to the minute on the site's clock, questionnaire windows as the days a
participant can answer (issue 18, item 3)."""

from __future__ import annotations

import ast
import html
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from flask_babel import refresh
from flask_login import login_user

import patient_portal
from patient_portal import i18n
from patient_portal.staff.views.audit_sentences import SENTENCES
from patient_portal.staff.views.labels import score_label, score_value
from tests.staff_world import paris_window_opening, staff_world


def _text(response) -> str:
    """The words a person reads: no tags, no attribute values, no scripts."""
    body = response.get_data(as_text=True)
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    body = re.sub(r"<[^>]+>", " ", body)
    return re.sub(r"\s+", " ", html.unescape(body))


# --- every audit event kind has its sentence --------------------------------------------------


def _recorded_kinds() -> set[str]:
    """Every action string passed to `audit.record(...)` anywhere in the portal's code; an
    f-string such as f"alert.{step.kind}" stands for its literal prefix followed by a word."""
    kinds: set[str] = set()
    for path in Path(patient_portal.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "record"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "audit"
                and node.args
            ):
                continue
            first = node.args[0]
            for part in ast.walk(first):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    kinds.add(part.value)
            if isinstance(first, ast.JoinedStr):
                prefix = "".join(str(p.value) for p in first.values if isinstance(p, ast.Constant))
                kinds.discard(prefix)
                kinds.add(prefix + "*")
    return kinds


def test_every_kind_of_audit_event_has_a_sentence():
    kinds = _recorded_kinds()
    assert "visit.appointment_set" in kinds and "alert.*" in kinds  # the scan finds them
    missing = [
        kind
        for kind in sorted(kinds)
        if not (
            kind in SENTENCES
            if not kind.endswith("*")
            else any(name.startswith(kind[:-1]) for name in SENTENCES)
        )
    ]
    assert not missing, (
        f"audit events with no sentence in staff/views/audit_sentences.py: {missing}"
    )
    # The e-mail steps of an alert (reminders/alert_mail.py) each have theirs.
    assert {"alert.notified", "alert.escalated"} <= set(SENTENCES)


def test_the_audit_history_tells_who_did_what_to_whom(
    app, client, sign_in, make_participant, make_staff, now
):
    world = staff_world(app, make_participant, make_staff, language="en")
    sign_in(client, world.coordinator)
    page = _text(client.get(f"/staff/participants/{world.montreal.study_id}"))
    assert re.search(
        r"Coordinator A\. Martin set the appointment of JGH-001 for “Infusion 2 \(month 3\)” "
        r"to \w{3} \d+, \d{4}, 9:30 a\.m\. \(Montréal time\)\.",
        page,
    ), page
    assert "JGH-001 submitted “" in page
    assert "visit.appointment_set" not in page and "questionnaire.submitted" not in page


def test_a_contact_attempt_reads_as_a_sentence_without_its_note(
    app, client, sign_in, make_participant, make_staff, now
):
    from patient_portal.contacts.services import record_contact
    from patient_portal.extensions import db

    world = staff_world(app, make_participant, make_staff, language="en")
    record_contact(world.montreal, world.coordinator, "phone", "no_answer", "left at reception")
    db.session.commit()
    sign_in(client, world.coordinator)
    page = _text(client.get(f"/staff/participants/{world.montreal.study_id}"))
    assert "A. Martin recorded a contact with JGH-001 (phone): no answer." in page, page
    assert "contact.recorded" not in page


def test_the_audit_sentences_are_french_for_a_french_viewer(
    app, client, sign_in, make_participant, make_staff, now
):
    world = staff_world(app, make_participant, make_staff, language="fr")
    sign_in(client, world.coordinator)
    page = _text(client.get(f"/staff/participants/{world.montreal.study_id}"))
    assert re.search(
        r"A\. Martin \(Coordination\) a fixé le rendez-vous de JGH-001 pour "
        r"« Perfusion 2 \(mois 3\) » au \d+ \w+\.? \d{4}, 09 h 30 \(heure de Montréal\)\.",
        page,
    ), page
    page = _text(client.get(f"/staff/participants/{world.paris.study_id}"))
    assert "A. Martin (Coordination) a pris en charge l’alerte de SLS-001" in page
    assert "Appel passé à la personne participante" in page


# --- times, zones, windows --------------------------------------------------------------------


def test_a_paris_window_is_shown_on_paris_days_with_its_last_answerable_day(
    app, client, sign_in, make_participant, make_staff, now
):
    world = staff_world(app, make_participant, make_staff, language="en")
    # Midnight in Paris on 19 March is still 18 March in Montréal, the coordinator's first site.
    paris_window_opening(world.paris, date(2027, 3, 19))
    sign_in(client, world.coordinator)
    page = _text(client.get(f"/staff/participants/{world.paris.study_id}"))
    assert "First day to answer" in page and "Last day to answer" in page
    assert "Mar 19, 2027" in page and "Mar 18, 2027" not in page
    # Stored end: midnight after 25 March; the last day it can be answered is the 25th.
    assert "Mar 25, 2027" in page and "Mar 26, 2027" not in page


def test_times_are_to_the_minute_and_name_the_zone_only_for_two_zones(
    app, make_participant, make_staff, now
):
    world = staff_world(app, make_participant, make_staff, language="fr")
    montreal_only = make_staff(sites=["JGH"], language="fr", name="C. Roy")
    moment = datetime(2027, 3, 12, 14, 30, 45, tzinfo=UTC)
    with app.test_request_context():
        login_user(world.coordinator)
        assert i18n.site_datetime(moment, "SLS") == "12 mars 2027, 15 h 30 (heure de Paris)"
        assert i18n.site_datetime(moment, "JGH") == "12 mars 2027, 09 h 30 (heure de Montréal)"
    with app.test_request_context():
        login_user(montreal_only)
        assert i18n.site_datetime(moment, "JGH") == "12 mars 2027, 09 h 30"


def test_window_bounds_follow_the_participants_site_not_the_viewers(app, make_staff, now):
    coordinator = make_staff(sites=["JGH", "SLS"], language="fr")
    opens = datetime(2027, 3, 18, 23, 0, tzinfo=UTC)  # 19 March, 00:00 in Paris
    closes = datetime(2027, 3, 25, 23, 0, tzinfo=UTC)  # 26 March, 00:00 in Paris
    evening = datetime(2027, 3, 20, 19, 0, tzinfo=UTC)  # 20 March, 20:00 in Paris
    with app.test_request_context():
        login_user(coordinator)
        assert i18n.window_bound(opens, "SLS", closing=False) == "19 mars 2027"
        assert i18n.window_bound(closes, "SLS", closing=True) == "25 mars 2027"
        assert i18n.window_bound(evening, "SLS", closing=True) == "20 mars 2027, jusqu’à 20 h 00"


def test_passkey_and_language_names_follow_the_viewers_language(
    app, client, sign_in, make_participant, make_staff, now
):
    world = staff_world(app, make_participant, make_staff, language="en")
    sign_in(client, world.coordinator)
    page = _text(client.get(f"/staff/participants/{world.montreal.study_id}"))
    assert "Passkey 1" in page and "Clé d’accès 1" not in page
    assert "answered in English" in page or "answered in French" in page
    assert "answered in Français" not in page and "answered in English." in page


def test_scores_are_named_and_formatted_in_the_viewers_locale(app, make_staff):
    with app.test_request_context(headers={"Accept-Language": "fr"}):
        refresh()
        assert score_label("daily_life_hands", "hands_mean") == "Score moyen"
        assert score_label("daily_life_hands", "hands_sum") == "Score total"
        assert score_value("daily_life_hands", "hands_mean", 0.0) == "0,00"
    with app.test_request_context(headers={"Accept-Language": "en"}):
        refresh()
        assert score_label("daily_life_hands", "hands_mean") == "Mean score"
        assert score_value("daily_life_hands", "hands_mean", 1.5) == "1.50"


def test_inactive_participants_read_last_sign_in(
    app, client, sign_in, make_participant, make_staff, now
):
    world = staff_world(app, make_participant, make_staff, language="en")
    sign_in(client, world.coordinator)
    page = _text(client.get("/staff/dashboard"))
    assert "last seen" not in page


def test_the_state_filter_changes_the_cells_it_describes(
    app, client, sign_in, make_participant, make_staff, now
):
    world = staff_world(app, make_participant, make_staff, language="en")
    sign_in(client, world.coordinator)
    unfiltered = client.get("/staff/dashboard").get_data(as_text=True)
    assert "state-missed" in unfiltered and "state-completed" in unfiltered
    completed = client.get("/staff/dashboard?state=completed").get_data(as_text=True)
    grid = completed[completed.index('class="matrix"') :]
    # Each cell now counts the completed questionnaires, whatever else the visit has.
    assert "state-completed" in grid
    assert "state-missed" not in grid and "state-open" not in grid
    assert re.search(r"\d+ questionnaires?", re.sub(r"<[^>]+>", " ", grid))


# --- no codes on any staff page in French -----------------------------------------------------

STAFF_PAGES = [
    "/staff/dashboard",
    "/staff/dashboard?state=missed",
    "/staff/participants",
    "/staff/participants/JGH-001",
    "/staff/participants/SLS-001",
    "/staff/participants/JGH-001/schedule",
    "/staff/participants/SLS-001/schedule",
    "/staff/participants/JGH-001/questionnaires",
    "/staff/participants/SLS-001/questionnaires",
    "/staff/exports",
]
ADMIN_PAGES = ["/staff/audit", "/staff/team"]
# What may look like a code but is a name: study IDs, site codes, format and standard names.
ALLOWED_CAPITALS = {"JGH", "CHUM", "SLS", "CSV", "JSON", "XML", "FHIR", "ODM", "CDISC", "EDC", "QR"}
ALLOWED_CAPITALS |= {"NCT04356287", "HAQ-DI", "AP-HP"}
STUDY_ID = re.compile(r"^(JGH|CHUM|SLS)-\d{3}$")


def _codes_in(text: str) -> list[str]:
    found = re.findall(r"\b[a-z]+(?:_[a-z]+)*\.[a-z_]+\b", text)  # visit.appointment_set
    found += [
        word
        for word in re.findall(r"\b[A-Z][A-Z0-9_-]{2,}\b", text)
        if word not in ALLOWED_CAPITALS and not STUDY_ID.match(word)
    ]
    # 0.0: a number not in the French locale (an instrument's version keeps its dot).
    found += re.findall(r"(?<![Vv]ersion )(?<![\d.])\d+\.\d+(?![\d.])", text)
    found += re.findall(r"\b\d{1,2} ?(?:h|:) ?\d{2} ?(?:min|:) ?\d{2}", text)  # seconds
    found += re.findall(r"\b[a-z]+_[a-z_]+\b", text)  # hands_mean
    found += re.findall(r"\b[A-Z][a-z]+/[A-Z][A-Za-z_]+\b", text)  # Europe/Paris
    return [code for code in found if not code.startswith(("www.", "e.g"))]


@pytest.mark.parametrize("admin", [False, True])
def test_no_staff_page_in_french_shows_a_code(
    app, client, sign_in, make_participant, make_staff, now, admin
):
    world = staff_world(app, make_participant, make_staff, language="fr")
    sign_in(client, world.admin if admin else world.coordinator)
    for path in ADMIN_PAGES if admin else STAFF_PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        text = _text(response)
        # The study's name (CARE-SSc) and e-mail addresses are names, not codes.
        text = re.sub(r"\S+@\S+", " ", text.replace("CARE-SSc", ""))
        codes = _codes_in(text)
        assert not codes, f"{path}: {sorted(set(codes))[:10]} in {text[:4000]}"
