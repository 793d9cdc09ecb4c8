"""Report a symptom at any time; what the participant sees after an urgent answer and once the
team has seen it; reports and diaries in the exports; the blind holds in all of it."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle

from patient_portal.extensions import db
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires import alerts, services
from patient_portal.questionnaires.models import Alert, Assignment
from patient_portal.questionnaires.services import plan_assignments
from tests.safety.conftest import diary, local

HTMX = {"HX-Request": "true"}
ODM = "{http://www.cdisc.org/ns/odm/v1.3}"
ROOT = Path(__file__).resolve().parents[2] / "patient_portal"


def _report(client, csrf_token):
    token = csrf_token(client, "/home")
    return client.post("/questionnaires/report", data={"csrf_token": token})


def _answer(client, token, assignment, item_id, values, htmx=True):
    return client.post(
        f"/questionnaires/{assignment.id}/items/{item_id}",
        data={"csrf_token": token, "value": values},
        headers=HTMX if htmx else {},
    )


def test_a_symptom_report_is_started_from_home_and_never_planned_away(
    client, infused, sign_in, csrf_token
):
    participant = infused("SLS", date(2026, 12, 1), language="en")
    sign_in(client, participant)
    home = client.get("/home").get_data(as_text=True)
    assert "Report a symptom" in home and "This is not an emergency service" in home
    assert "call 15 / 112" in home  # the site's emergency number, from the protocol file
    response = _report(client, csrf_token)
    assert response.status_code == 303
    report = db.session.scalars(
        sa.select(Assignment).where(Assignment.series_code == "REPORT")
    ).one()
    assert response.location.endswith(f"/questionnaires/{report.id}")
    assert (report.occurrence, report.participant_id) == (0, participant.id)
    # A second tap goes back to the same unfinished report; planning leaves it alone.
    assert _report(client, csrf_token).location.endswith(f"/questionnaires/{report.id}")
    plan_assignments(participant)
    db.session.commit()
    assert db.session.get(Assignment, report.id).status == "planned"


def test_an_urgent_answer_shows_whom_to_call_at_once_and_later_that_the_team_saw_it(
    client, infused, sign_in, csrf_token, make_staff, now
):
    participant = infused("JGH", date(2026, 12, 1), language="fr")
    sign_in(client, participant)
    _report(client, csrf_token)
    report = db.session.scalars(
        sa.select(Assignment).where(Assignment.series_code == "REPORT")
    ).one()
    token = csrf_token(client, f"/questionnaires/{report.id}/items/what")
    page = _answer(client, token, report, "what", ["headache"]).get_data(as_text=True)
    assert "Appelez l’équipe de recherche" not in page  # routine: no call-now box
    page = _answer(client, token, report, "what", ["headache", "fever"]).get_data(as_text=True)
    assert 'role="alert"' in page and "+1\u00a0514\u2011555\u20110100" in page and "911" in page
    # Without JavaScript the next question carries the same box.
    response = _answer(client, token, report, "since", ["today"], htmx=False)
    page = client.get(response.location).get_data(as_text=True)
    assert "+1\u00a0514\u2011555\u20110100" in page
    assert [a.severity for a in alerts.open_alerts(participant)] == ["urgent", "routine"]
    for item_id, value in (("how_bad", "5"), ("stops_you", "2")):
        _answer(client, token, report, item_id, [value])
    client.post(f"/questionnaires/{report.id}/submit", data={"csrf_token": token})
    home = client.get("/home").get_data(as_text=True)
    assert "Votre équipe n’a pas encore vu" in home

    coordinator = make_staff(sites=["JGH"])
    now.set(local(date(2026, 12, 3), 10, 0, get_protocol().site("JGH").zone))
    for alert in alerts.open_alerts(participant):
        alerts.acknowledge(alert, coordinator, "called", None)
    db.session.commit()
    sign_in(client, participant)
    home = client.get("/home").get_data(as_text=True)
    assert "Votre équipe a vu votre signalement le 3 décembre 2026." in home


def test_exports_count_diaries_and_reports_and_the_fhir_bundle_validates(
    client, infused, make_staff, sign_in, now
):
    participant = infused("JGH", date(2026, 12, 1))
    zone = get_protocol().site("JGH").zone
    now.set(local(date(2026, 12, 2), 8, 0, zone))
    entry = diary(participant)[0]
    for item_id, value in (("temperature", ["380"]), ("symptoms", ["none"])):
        services.save_answer(entry, item_id, value, participant)
    services.submit(entry, participant, "fr")
    report = services.start_report(participant)
    for item_id, value in (("what", ["rash_itching"]), ("since", ["yesterday"])):
        services.save_answer(report, item_id, value, participant)
    for item_id, value in (("how_bad", "3"), ("stops_you", "1")):
        services.save_answer(report, item_id, value, participant)
    services.submit(report, participant, "fr")
    db.session.commit()
    sign_in(client, make_staff(sites=["JGH"]))

    rows = list(csv.DictReader(io.StringIO(_get(client, "answers.csv"))))
    kinds = {(row["visit"], row["instrument"], row["schedule"]) for row in rows}
    assert ("DIARY_M0.1", "post_infusion_diary", "scheduled") in kinds
    assert ("REPORT.1", "symptom_report", "unscheduled") in kinds
    completion = list(csv.DictReader(io.StringIO(_get(client, "completion.csv"))))
    assert sum(row["visit"].startswith("DIARY_M0.") for row in completion) == 7

    bundle = Bundle.model_validate_json(_get(client, "questionnaire-responses.fhir.json"))
    responses = [
        entry.resource
        for entry in bundle.entry
        if entry.resource.get_resource_type() == "QuestionnaireResponse"
    ]
    marks = {
        tuple(sub.valueString or sub.valueCode for sub in r.extension[0].extension)
        for r in responses
    }
    assert ("REPORT.1", "unscheduled") in marks and ("DIARY_M0.1", "scheduled") in marks

    odm = ET.fromstring(_get(client, "clinical-data.odm.xml"))
    definitions = {d.get("OID"): d.get("Type") for d in odm.iter(f"{ODM}StudyEventDef")}
    assert definitions["SE.REPORT"] == "Unscheduled"
    assert definitions["SE.DIARY_M0"] == definitions["SE.DIARY_M3"] == "Common"
    events = {
        (e.get("StudyEventOID"), e.get("StudyEventRepeatKey"))
        for e in odm.iter(f"{ODM}StudyEventData")
    }
    assert ("SE.REPORT", "1") in events and ("SE.DIARY_M0", "1") in events


def _get(client, kind: str) -> str:
    response = client.get(f"/staff/exports/{kind}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


BLINDING_WORDS = re.compile(
    r"\b(arm|arms|allocation|allocated|placebo|ucmsc|randomi[sz]\w*|product)\b"
)


def test_nothing_in_the_diary_reports_alerts_or_their_e_mails_can_carry_an_allocation(app):
    """Blinding: no arm or allocation field in their models, files, templates or exports."""
    for column in [*Alert.__table__.columns, *Assignment.__table__.columns]:
        assert not BLINDING_WORDS.search(column.name.replace("_", " ")), column.name
    sources = [
        ROOT / "questionnaires/alerts.py",
        ROOT / "reminders/alert_mail.py",
        ROOT / "questionnaires/instruments/post_infusion_diary.json",
        ROOT / "questionnaires/instruments/symptom_report.json",
        ROOT / "templates/questionnaires/_alert.html",
        ROOT / "templates/questionnaires/_urgent_help.html",
        ROOT / "templates/questionnaires/_report_section.html",
    ]
    for path in sources:
        text = path.read_text(encoding="utf-8").lower()
        assert not BLINDING_WORDS.search(text), path.name
    protocol = get_protocol()
    # The same diary after every infusion, for every participant: nothing in the protocol
    # file's series depends on a participant.
    assert [vs.after_visits for vs in protocol.visit_series] == [("M0", "M3")]
    assert {v.code for v in protocol.visits if v.is_infusion} == {"M0", "M3"}


def test_reminders_open_each_diary_day_once_and_never_chase_a_report(infused, now):
    from patient_portal.reminders.models import Reminder
    from patient_portal.reminders.planning import plan_reminders

    participant = infused("JGH", date(2026, 12, 1))
    services.start_report(participant)
    plan_reminders(participant)
    db.session.commit()
    subjects = db.session.scalars(
        sa.select(Reminder.subject).where(Reminder.participant_id == participant.id)
    ).all()
    ids = {a.id: a for a in diary(participant)}
    report = db.session.scalars(
        sa.select(Assignment).where(Assignment.series_code == "REPORT")
    ).one()
    about = [s for s in subjects if s.startswith("questionnaire:one:")]
    diary_moments = sorted(
        (ids[int(s.split(":")[2])].occurrence, s.split(":")[3])
        for s in about
        if int(s.split(":")[2]) in ids
    )
    # Only the reminders within the planning horizon exist; each day has "opens" only.
    assert diary_moments and {moment for _day, moment in diary_moments} == {"opens"}
    assert len(diary_moments) == len({day for day, _moment in diary_moments})
    assert not any(s.startswith(f"questionnaire:one:{report.id}:") for s in subjects)
