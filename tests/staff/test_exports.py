"""Exports: streamed, audited, the coordinator's sites only, and the same answers in CSV, FHIR
(validated by fhir.resources R4B) and CDISC ODM 1.3.2."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

import pytest
import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle

from patient_portal import clock
from patient_portal.accounts import services
from patient_portal.accounts.models import PasskeyCredential
from patient_portal.audit import AuditEvent
from patient_portal.contacts.services import record_contact
from patient_portal.demo import answer_and_submit
from patient_portal.extensions import db
from patient_portal.questionnaires.models import Answer, Assignment, Submission

ODM = "{http://www.cdisc.org/ns/odm/v1.3}"
KINDS = [
    "completion.csv",
    "answers.csv",
    "scores.csv",
    "contacts.csv",
    "questionnaire-responses.fhir.json",
    "clinical-data.odm.xml",
]


@pytest.fixture
def two_sites(in_year):
    in_year("JGH", days=40, habit="some")
    in_year("JGH", days=10, habit="all", language="en")
    in_year("CHUM", days=40, habit="all")


def _download(client, kind: str, query: str = "") -> tuple[object, str]:
    response = client.get(f"/staff/exports/{kind}{query}")
    assert response.status_code == 200, response.status_code
    assert response.is_streamed
    return response, response.get_data(as_text=True)


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _submitted_answers(site: str) -> int:
    from patient_portal.accounts.models import Participant
    from patient_portal.questionnaires.models import Assignment

    return db.session.scalars(
        sa.select(sa.func.count(Answer.id))
        .join(Assignment, Assignment.id == Answer.assignment_id)
        .join(Submission, Submission.assignment_id == Assignment.id)
        .join(Participant, Participant.id == Assignment.participant_id)
        .where(Participant.site_code == site, Answer.value.is_not(None))
    ).one()


def test_answers_csv_is_long_format_for_own_sites_and_audited(signed_in, two_sites):
    response, text = _download(signed_in, "answers.csv")
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = _rows(text)
    assert list(rows[0]) == [
        "study_id",
        "site",
        "visit",
        "instrument",
        "version",
        "language",
        "item",
        "value",
        "answered_at",
        "submitted_at",
        "entered_by",
        "schedule",
    ]
    assert {row["site"] for row in rows} == {"JGH"}
    assert len(rows) == _submitted_answers("JGH")
    assert {row["entered_by"] for row in rows} == {"participant"}
    weekly = [row for row in rows if row["instrument"] == "weekly_checkin"]
    assert weekly and all(row["visit"].startswith("WEEKLY.") for row in weekly)
    assert all(row["answered_at"].endswith("Z") for row in rows)
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "export.downloaded"))
    assert event.entity_id == "answers.csv" and event.after["sites"] == ["JGH"]


def test_completion_and_scores_csv(signed_in, two_sites):
    _response, text = _download(signed_in, "completion.csv")
    rows = _rows(text)
    states = {row["state"] for row in rows}
    assert {"completed", "missed", "upcoming"} <= states
    assert {row["study_id"] for row in rows} == {"JGH-001", "JGH-002"}
    done = [row for row in rows if row["state"] == "completed"]
    assert all(row["submitted_at"] and row["entered_by"] == "participant" for row in done)
    _response, text = _download(signed_in, "scores.csv")
    scores = _rows(text)
    assert scores and {row["site"] for row in scores} == {"JGH"}
    assert all(row["score"] and row["submitted_at"] for row in scores)


def test_fhir_bundle_is_valid_r4b(signed_in, two_sites):
    response, text = _download(signed_in, "questionnaire-responses.fhir.json")
    assert response.mimetype == "application/fhir+json"
    bundle = Bundle.model_validate_json(text)
    assert bundle.type == "collection"
    kinds = [entry.resource.get_resource_type() for entry in bundle.entry]
    assert "Questionnaire" in kinds
    responses = [
        e.resource
        for e in bundle.entry
        if e.resource.get_resource_type() == "QuestionnaireResponse"
    ]
    submissions = db.session.scalar(sa.select(sa.func.count(Submission.id)))
    chum = json.loads(text)
    assert len(responses) < submissions  # CHUM's are not in a JGH export
    assert all(r.subject.identifier.value.startswith("JGH-") for r in responses)
    assert all(r.status == "completed" for r in responses)
    assert "CHUM-" not in json.dumps(chum)
    answered = sum(len(group.item) for r in responses for group in r.item)
    assert answered == _submitted_answers("JGH")


def test_odm_is_well_formed_with_audit_records_and_agrees_with_the_csv(signed_in, two_sites):
    _response, text = _download(signed_in, "clinical-data.odm.xml")
    root = ET.fromstring(text.encode())
    assert root.tag == f"{ODM}ODM" and root.get("ODMVersion") == "1.3.2"
    clinical = root.find(f"{ODM}ClinicalData")
    odm_values = set()
    for subject in clinical.iter(f"{ODM}SubjectData"):
        for event in subject.iter(f"{ODM}StudyEventData"):
            visit = event.get("StudyEventOID").removeprefix("SE.")
            if event.get("StudyEventRepeatKey"):
                visit += "." + event.get("StudyEventRepeatKey")
            for form in event.iter(f"{ODM}FormData"):
                for item in form.iter(f"{ODM}ItemData"):
                    audit = item.find(f"{ODM}AuditRecord")
                    assert audit.find(f"{ODM}DateTimeStamp").text.endswith("Z")
                    assert audit.find(f"{ODM}UserRef").get("UserOID")
                    odm_values.add(
                        (
                            subject.get("SubjectKey"),
                            visit,
                            form.get("FormOID").removeprefix("F."),
                            item.get("ItemOID").split(".", 2)[2],
                            item.get("Value"),
                        )
                    )
    _response, text = _download(signed_in, "answers.csv")
    csv_values = {
        (r["study_id"], r["visit"], r["instrument"], r["item"], r["value"]) for r in _rows(text)
    }
    assert odm_values == csv_values
    assert len(odm_values) == _submitted_answers("JGH")
    # Every ItemOID used is declared in the metadata.
    declared = {d.get("OID") for d in root.iter(f"{ODM}ItemDef")}
    used = {i.get("ItemOID") for i in root.iter(f"{ODM}ItemData")}
    assert used <= declared


def test_admin_exports_every_site_or_one(client, sign_in, make_staff, two_sites):
    sign_in(client, make_staff(role="admin", sites=[]))
    _response, text = _download(client, "answers.csv")
    assert {row["site"] for row in _rows(text)} == {"JGH", "CHUM"}
    _response, text = _download(client, "answers.csv", "?site=CHUM")
    assert {row["site"] for row in _rows(text)} == {"CHUM"}


@pytest.mark.parametrize("kind", KINDS)
def test_another_sites_export_is_a_404_and_unknown_site_a_400(signed_in, two_sites, kind):
    response = signed_in.get(f"/staff/exports/{kind}?site=CHUM")
    assert response.status_code == 404
    assert "CHUM-" not in response.get_data(as_text=True)
    response = signed_in.get(f"/staff/exports/{kind}?site=MARS")
    assert response.status_code == 400
    assert "This site does not exist." in response.get_data(as_text=True)
    assert (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "export.downloaded")
        )
        == 0
    )


def test_unknown_export_is_a_404(signed_in):
    assert signed_in.get("/staff/exports/everything.zip").status_code == 404


def test_a_text_answer_cannot_become_a_spreadsheet_formula():
    from patient_portal.staff.exports import _safe_cell

    assert _safe_cell('=HYPERLINK("x")') == '\'=HYPERLINK("x")'
    assert _safe_cell("-3") == "-3"
    assert _safe_cell("plain") == "plain"


def test_an_export_leaves_the_connection_fit_for_other_statements(two_sites, make_staff):
    """Regression: the streaming option was set on the session's connection, and PostgreSQL's
    server-side cursor then refused the next executemany."""
    from patient_portal.accounts.models import StaffSite
    from patient_portal.staff import exports

    member = make_staff(sites=["JGH"])
    assert sum(len(chunk) for chunk in exports.answers_csv(["JGH"])) > 0
    db.session.execute(
        sa.insert(StaffSite),
        [{"staff_id": member.id, "site_code": "CHUM"}, {"staff_id": member.id, "site_code": "SLS"}],
    )
    db.session.commit()
    db.session.expire_all()
    assert member.site_codes == ["CHUM", "JGH", "SLS"]


def test_the_odm_export_notes_replacement_links_without_the_staff_note(
    signed_in, coordinator, in_year
):
    participant = in_year("JGH", days=40, habit="all", language="en")
    other = in_year("JGH", days=40, habit="all", language="en")
    db.session.add(
        PasskeyCredential(
            participant_id=participant.id, credential_id=b"phone", public_key=b"-", nickname="x"
        )
    )
    db.session.flush()
    services.issue_enrolment_link(
        participant, coordinator, reason="lost_or_stolen", note="Private remark"
    )
    db.session.commit()
    _response, text = _download(signed_in, "clinical-data.odm.xml")
    assert "Private remark" not in text
    root = ET.fromstring(text)
    subjects = {s.get("SubjectKey"): s for s in root.iter(f"{ODM}SubjectData")}
    comments = [c.text for c in subjects[participant.study_id].iter(f"{ODM}Comment")]
    assert len(comments) == 1
    assert "reason: lost_or_stolen" in comments[0]
    assert f"staff:{coordinator.email}" in comments[0]
    assert list(subjects[other.study_id].iter(f"{ODM}Annotation")) == []


def test_answers_a_coordinator_entered_are_theirs_in_every_export(signed_in, coordinator, in_year):
    """Assisted entry: the coordinator answers and submits with the participant at the site. No
    export may present those answers, or their submission, as the participant's self-report."""
    participant = in_year("JGH", days=40, habit="none", language="en")
    assignment = db.session.scalars(
        sa.select(Assignment)
        .where(Assignment.participant_id == participant.id, Assignment.closes_at > clock.now())
        .where(Assignment.opens_at <= clock.now())
        .order_by(Assignment.id)
    ).first()
    answer_and_submit(assignment, coordinator, clock.now(), level=2)
    db.session.commit()
    staff_name = f"staff:{coordinator.email}"

    _response, text = _download(signed_in, "answers.csv")
    rows = [r for r in _rows(text) if r["study_id"] == participant.study_id]
    assert rows and {r["entered_by"] for r in rows} == {staff_name}

    _response, text = _download(signed_in, "questionnaire-responses.fhir.json")
    bundle = Bundle.model_validate_json(text)
    authors = [
        e.resource.author.identifier.value
        for e in bundle.entry
        if e.resource.get_resource_type() == "QuestionnaireResponse"
        and e.resource.subject.identifier.value == participant.study_id
    ]
    assert authors == [coordinator.email]

    _response, text = _download(signed_in, "clinical-data.odm.xml")
    root = ET.fromstring(text)
    subject = next(
        s for s in root.iter(f"{ODM}SubjectData") if s.get("SubjectKey") == participant.study_id
    )
    users = {u.get("OID") for u in root.iter(f"{ODM}User")}
    for record in subject.iter(f"{ODM}AuditRecord"):
        assert record.get("EditPoint") == "DataManagement"
        user = record.find(f"{ODM}UserRef").get("UserOID")
        assert user == f"USR.STAFF.{coordinator.email}" and user in users


def test_contact_attempts_are_in_the_csv_and_odm_not_in_fhir(
    signed_in, coordinator, in_year, make_participant
):
    answered = in_year("JGH", days=10, habit="all")
    quiet = make_participant(site_code="JGH", day0=None)
    record_contact(answered, coordinator, "phone", "no_answer", "=call after 5")
    record_contact(quiet, coordinator, "in_person", "reached", None)
    db.session.commit()
    _response, text = _download(signed_in, "contacts.csv")
    rows = _rows(text)
    assert [(r["study_id"], r["channel"], r["outcome"]) for r in rows] == [
        (answered.study_id, "phone", "no_answer"),
        (quiet.study_id, "in_person", "reached"),
    ]
    assert rows[0]["by"] == f"staff:{coordinator.email}"
    assert rows[0]["note"] == "'=call after 5"  # never a spreadsheet formula
    _response, odm = _download(signed_in, "clinical-data.odm.xml")
    root = ET.fromstring(odm)
    comments = {
        subject.get("SubjectKey"): [c.text for c in subject.iter(f"{ODM}Comment")]
        for subject in root.iter(f"{ODM}SubjectData")
    }
    assert any("phone, no_answer" in c for c in comments[answered.study_id])
    # Reached in person before answering anything: the subject is there with the annotation.
    assert any("in_person, reached" in c for c in comments[quiet.study_id])
    assert "call after 5" not in odm
    _response, fhir = _download(signed_in, "questionnaire-responses.fhir.json")
    assert "no_answer" not in fhir and "in_person" not in fhir
