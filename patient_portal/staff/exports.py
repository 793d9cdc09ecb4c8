"""Standard exports, streamed: CSV (completion, answers in long format, scores, contact
attempts), a FHIR R4
Bundle of QuestionnaireResponse with the Questionnaire definitions, and CDISC ODM 1.3.2 XML with
clinical data and audit records.

Each export is a generator over a streaming query (server-side cursor on PostgreSQL), written
out in chunks: a large export never sits in memory. Exports name participants by study ID only;
contact details are never read. Answers exported are those of submitted questionnaires, the
same rows in every format (docs/exports.md).
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby, islice
from typing import Any, NamedTuple
from xml.sax.saxutils import escape, quoteattr

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from patient_portal import clock
from patient_portal.accounts.models import EnrolmentToken, Participant, StaffUser
from patient_portal.contacts.models import ContactAttempt
from patient_portal.extensions import db
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires.fhir import CANONICAL_BASE, instrument_to_fhir
from patient_portal.questionnaires.loader import get_instruments
from patient_portal.questionnaires.models import Answer, Assignment, Submission
from patient_portal.questionnaires.states import state_expression, visit_key_expression
from patient_portal.schedule.models import Visit

CHUNK_ROWS = 2000
STUDY_ID_SYSTEM = "https://care-ssc.example/fhir/study-id"
ASSIGNMENT_SYSTEM = "https://care-ssc.example/fhir/assignment"
# Which visit or series occurrence a response belongs to, and whether the protocol called for
# it ("scheduled") or the participant started it ("unscheduled": a symptom report).
PORTAL_EVENT_URL = "https://care-ssc.example/fhir/StructureDefinition/portal-event"
STAFF_SYSTEM = "https://care-ssc.example/fhir/staff"
ODM_NAMESPACE = "http://www.cdisc.org/ns/odm/v1.3"
METADATA_OID = "MDV.CARE-SSc.1"
PARTICIPANT_USER = "USR.PARTICIPANT"
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

ANSWER_COLUMNS = [
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
COMPLETION_COLUMNS = [
    "study_id",
    "site",
    "visit",
    "instrument",
    "version",
    "opens_at",
    "closes_at",
    "state",
    "submitted_at",
    "entered_by",
    "schedule",
]
CONTACT_COLUMNS = ["study_id", "site", "contacted_at", "channel", "outcome", "by", "note"]
SCORE_COLUMNS = [
    "study_id",
    "site",
    "visit",
    "instrument",
    "version",
    "language",
    "score",
    "value",
    "scorer_version",
    "submitted_at",
    "entered_by",
    "schedule",
]


# --- shared helpers ---------------------------------------------------------------------------


def timestamp(moment: datetime | None) -> str:
    """ISO 8601 in UTC, to the second: 2026-12-01T14:03:07Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


def value_text(value: Any) -> str:
    """One text form of an answer for CSV and ODM: true/false, several choices joined by ';'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return str(value)


def visit_label(visit_key: str, series_code: str | None, occurrence: int) -> str:
    """The visit column: the visit code, or the series code and its week (WEEKLY.12)."""
    return f"{visit_key}.{occurrence + 1}" if series_code else visit_key


def schedule_kind(series_code: str | None) -> str:
    """ "unscheduled" for a report the participant started, else "scheduled" (visits, series,
    post-infusion diaries: the protocol called for them)."""
    unscheduled = get_protocol().unscheduled
    if unscheduled is not None and series_code == unscheduled.code:
        return "unscheduled"
    return "scheduled"


def _entered_by(email: str | None) -> str:
    return f"staff:{email}" if email else "participant"


def _safe_cell(text: str) -> str:
    if text.startswith(FORMULA_START):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def _csv(header: list[str], rows: Iterable[list[str]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    yield buffer.getvalue()
    rows = iter(rows)
    while chunk := list(islice(rows, CHUNK_ROWS)):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(chunk)
        yield buffer.getvalue()


def _stream(query: sa.Select):
    return db.session.execute(query.execution_options(yield_per=CHUNK_ROWS))


def _rows_of(query: sa.Select):
    """Plain rows from a server-side cursor, without the ORM's row objects."""
    # Options on the statement, not the connection: the session's connection goes on to run
    # other statements (an executemany cannot use a server-side cursor).
    return db.session.connection().execute(query.execution_options(yield_per=CHUNK_ROWS))


def _iso_from_text(text: str | None) -> str:
    """'2026-12-01 14:03:07.123456' (a UTC timestamp as the database prints it) → ISO 8601 Z."""
    return f"{text[:10]}T{text[11:19]}Z" if text else ""


def _json_text(raw: str) -> str:
    """An answer's stored JSON as export text, without decoding the common numbers and booleans."""
    if raw.isdigit() or raw in ("true", "false"):
        return raw
    return value_text(json.loads(raw))


class AnswerRow(NamedTuple):
    study_id: str
    site_code: str
    visit: str
    series_code: str | None
    occurrence: int
    assignment_id: int
    instrument_id: str
    instrument_version: str
    language: str
    submitted_at: str
    item_id: str
    value: str
    answered_at: str
    email: str | None
    submitted_by: str | None  # the staff member who submitted it (assisted entry), else None


def _answers_query(sites: list[str]) -> sa.Select:
    """Every answer of a submitted questionnaire at the sites, grouped by participant and visit.

    Timestamps come as the database's text and values as their stored JSON text: converting
    them to Python objects and back would cost more than the rest of the export.
    """
    visit = visit_key_expression().label("visit")
    submitter = aliased(StaffUser)
    return (
        sa.select(
            Participant.study_id,
            Participant.site_code,
            visit,
            Assignment.series_code,
            Assignment.occurrence,
            Assignment.id.label("assignment_id"),
            Assignment.instrument_id,
            Submission.instrument_version,
            Submission.language,
            sa.cast(Submission.submitted_at, sa.String),
            Answer.item_id,
            sa.cast(Answer.value, sa.Text),
            sa.cast(Answer.answered_at, sa.String),
            StaffUser.email,
            submitter.email,
        )
        .select_from(Answer)
        .join(Assignment, Assignment.id == Answer.assignment_id)
        .join(Submission, Submission.assignment_id == Assignment.id)
        .join(Participant, Participant.id == Assignment.participant_id)
        .outerjoin(Visit, Visit.id == Assignment.visit_id)
        .outerjoin(StaffUser, StaffUser.id == Answer.entered_by_staff_id)
        .outerjoin(submitter, submitter.id == Submission.entered_by_staff_id)
        .where(Participant.site_code.in_(sites))
        .order_by(Participant.study_id, visit, Assignment.occurrence, Assignment.id, Answer.id)
    )


def answer_rows(sites: list[str]) -> Iterator[AnswerRow]:
    """The answers export rows, streamed from a server-side cursor; cleared answers left out."""
    for row in _rows_of(_answers_query(sites)):
        raw = row[11]
        if raw is None or raw == "null":
            continue
        yield AnswerRow(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            _iso_from_text(row[9]),
            row[10],
            raw,
            _iso_from_text(row[12]),
            row[13],
            row[14],
        )


# --- CSV --------------------------------------------------------------------------------------


def answers_csv(sites: list[str]) -> Iterator[str]:
    """Answers in long format, one row per item answered."""

    def rows() -> Iterator[list[str]]:
        # The hottest loop of the exports: plain tuples, and each questionnaire's submission
        # time and visit formatted once for all its answers.
        current = None
        for row in _rows_of(_answers_query(sites)):
            raw = row[11]
            if raw is None or raw == "null":
                continue
            if row[5] != current:
                current = row[5]
                visit = visit_label(row[2], row[3], row[4])
                submitted = _iso_from_text(row[9])
                schedule = schedule_kind(row[3])
            answered = row[12]
            yield [
                row[0],
                row[1],
                visit,
                row[6],
                row[7],
                row[8],
                row[10],
                raw if raw.isdigit() else _safe_cell(_json_text(raw)),
                f"{answered[:10]}T{answered[11:19]}Z",
                submitted,
                _entered_by(row[13]),
                schedule,
            ]

    return _csv(ANSWER_COLUMNS, rows())


def completion_csv(sites: list[str]) -> Iterator[str]:
    """Every questionnaire planned for the participants, with its window and state now."""
    now = clock.now()
    visit = visit_key_expression().label("visit")
    query = (
        sa.select(
            Participant.study_id,
            Participant.site_code,
            visit,
            Assignment.series_code,
            Assignment.occurrence,
            Assignment.instrument_id,
            sa.func.coalesce(Submission.instrument_version, Assignment.instrument_version),
            Assignment.opens_at,
            Assignment.closes_at,
            state_expression(now),
            Submission.submitted_at,
            StaffUser.email,
        )
        .join(Participant, Participant.id == Assignment.participant_id)
        .outerjoin(Visit, Visit.id == Assignment.visit_id)
        .outerjoin(Submission, Submission.assignment_id == Assignment.id)
        .outerjoin(StaffUser, StaffUser.id == Submission.entered_by_staff_id)
        .where(Participant.site_code.in_(sites))
        .order_by(Participant.study_id, Assignment.opens_at, Assignment.id)
    )
    rows = (
        [
            study_id,
            site,
            visit_label(visit_key, series, occurrence),
            instrument,
            version,
            timestamp(opens),
            timestamp(closes),
            state,
            timestamp(submitted),
            _entered_by(email) if submitted else "",
            schedule_kind(series),
        ]
        for (
            study_id,
            site,
            visit_key,
            series,
            occurrence,
            instrument,
            version,
            opens,
            closes,
            state,
            submitted,
            email,
        ) in _stream(query)
    )
    return _csv(COMPLETION_COLUMNS, rows)


def _contacts_query(sites: list[str]) -> sa.Select:
    return (
        sa.select(
            Participant.study_id,
            Participant.site_code,
            ContactAttempt.at,
            ContactAttempt.channel,
            ContactAttempt.outcome,
            StaffUser.email,
            ContactAttempt.note,
        )
        .join(Participant, Participant.id == ContactAttempt.participant_id)
        .join(StaffUser, StaffUser.id == ContactAttempt.staff_id)
        .where(Participant.site_code.in_(sites))
        .order_by(Participant.study_id, ContactAttempt.at, ContactAttempt.id)
    )


def contacts_csv(sites: list[str]) -> Iterator[str]:
    """The study team's contact attempts: when, how, the outcome, who, and the short note."""
    rows = (
        [
            study_id,
            site,
            timestamp(at),
            channel,
            outcome,
            _entered_by(email),
            _safe_cell(note or ""),
        ]
        for study_id, site, at, channel, outcome, email, note in _stream(_contacts_query(sites))
    )
    return _csv(CONTACT_COLUMNS, rows)


def scores_csv(sites: list[str]) -> Iterator[str]:
    """One row per score of each submitted questionnaire."""
    visit = visit_key_expression().label("visit")
    query = (
        sa.select(
            Participant.study_id,
            Participant.site_code,
            visit,
            Assignment.series_code,
            Assignment.occurrence,
            Assignment.instrument_id,
            Submission.instrument_version,
            Submission.language,
            Submission.scores,
            Submission.scorer_versions,
            Submission.submitted_at,
            StaffUser.email,
        )
        .select_from(Submission)
        .join(Assignment, Assignment.id == Submission.assignment_id)
        .join(Participant, Participant.id == Assignment.participant_id)
        .outerjoin(Visit, Visit.id == Assignment.visit_id)
        .outerjoin(StaffUser, StaffUser.id == Submission.entered_by_staff_id)
        .where(Participant.site_code.in_(sites))
        .order_by(Participant.study_id, Submission.submitted_at, Assignment.id)
    )

    def rows() -> Iterator[list[str]]:
        for r in _stream(query):
            for name, value in sorted((r.scores or {}).items()):
                yield [
                    r.study_id,
                    r.site_code,
                    visit_label(r.visit, r.series_code, r.occurrence),
                    r.instrument_id,
                    r.instrument_version,
                    r.language,
                    name,
                    value_text(value),
                    str((r.scorer_versions or {}).get(name, "")),
                    timestamp(r.submitted_at),
                    _entered_by(r.email),
                    schedule_kind(r.series_code),
                ]

    return _csv(SCORE_COLUMNS, rows())


# --- FHIR R4 ----------------------------------------------------------------------------------


def _fhir_answers(item_type: str, value: Any) -> list[dict[str, Any]]:
    values = value if isinstance(value, list) else [value]
    if item_type in ("single_choice", "multiple_choice"):
        return [{"valueCoding": {"code": str(v)}} for v in values]
    if item_type == "yes_no":
        return [{"valueBoolean": bool(v)} for v in values]
    if item_type in ("rating_0_10", "vas_0_100", "integer"):
        return [{"valueInteger": int(v)} for v in values]
    if item_type == "date":
        return [{"valueDate": str(v)} for v in values]
    return [{"valueString": str(v)} for v in values]


def _page_of_items(questionnaire: dict[str, Any]) -> dict[str, str]:
    """Which page group of the FHIR Questionnaire holds each item."""
    return {
        child["linkId"]: group["linkId"]
        for group in questionnaire.get("item", [])
        for child in group.get("item", [])
    }


def _entry(resource: dict[str, Any], key: str) -> str:
    full_url = "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, CANONICAL_BASE + key))
    return json.dumps({"fullUrl": full_url, "resource": resource}, ensure_ascii=False)


def fhir_bundle(sites: list[str]) -> Iterator[str]:
    """A FHIR R4 `collection` Bundle: the Questionnaire definitions, then one completed
    QuestionnaireResponse per submission, its answers nested in the Questionnaire's pages."""
    instruments = get_instruments()
    header = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "collection",
        "timestamp": timestamp(clock.now()),
    }
    yield json.dumps(header, ensure_ascii=False)[:-1] + ', "entry": ['
    pages: dict[str, dict[str, str]] = {}
    first = True
    for instrument_id in sorted(instruments):
        questionnaire = instrument_to_fhir(instruments[instrument_id])
        pages[instrument_id] = _page_of_items(questionnaire)
        yield ("" if first else ",\n") + _entry(questionnaire, f"Questionnaire/{instrument_id}")
        first = False
    for assignment_id, group in groupby(answer_rows(sites), key=lambda r: r.assignment_id):
        rows = list(group)
        head = rows[0]
        instrument = instruments.get(head.instrument_id)
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            item_type = (
                instrument.item(row.item_id).type
                if instrument and instrument.has_item(row.item_id)
                else "text"
            )
            page = pages.get(head.instrument_id, {}).get(row.item_id, "answers")
            groups.setdefault(page, []).append(
                {"linkId": row.item_id, "answer": _fhir_answers(item_type, json.loads(row.value))}
            )
        response = {
            "resourceType": "QuestionnaireResponse",
            "id": f"assignment-{assignment_id}",
            "identifier": {"system": ASSIGNMENT_SYSTEM, "value": str(assignment_id)},
            "questionnaire": f"{CANONICAL_BASE}{head.instrument_id}|{head.instrument_version}",
            "status": "completed",
            "subject": {"identifier": {"system": STUDY_ID_SYSTEM, "value": head.study_id}},
            "authored": head.submitted_at,
            # Who sent it: the participant, or the coordinator who entered it with them.
            "author": (
                {"identifier": {"system": STAFF_SYSTEM, "value": head.submitted_by}}
                if head.submitted_by
                else {"identifier": {"system": STUDY_ID_SYSTEM, "value": head.study_id}}
            ),
            "language": head.language,
            "extension": [
                {
                    "url": PORTAL_EVENT_URL,
                    "extension": [
                        {
                            "url": "event",
                            "valueString": visit_label(
                                head.visit, head.series_code, head.occurrence
                            ),
                        },
                        {"url": "schedule", "valueCode": schedule_kind(head.series_code)},
                    ],
                }
            ],
            "item": [{"linkId": page, "item": items} for page, items in groups.items()],
        }
        yield ",\n" + _entry(response, f"QuestionnaireResponse/{assignment_id}")
    yield "]}\n"


# --- CDISC ODM 1.3.2 --------------------------------------------------------------------------


ODM_DATA_TYPES = {
    "rating_0_10": "integer",
    "vas_0_100": "integer",
    "integer": "integer",
    "yes_no": "boolean",
    "date": "date",
}


def _event_oid(visit_key: str) -> str:
    return f"SE.{visit_key}"


def _user_oid(email: str | None) -> str:
    return f"USR.STAFF.{email}" if email else PARTICIPANT_USER


def _metadata() -> Iterator[str]:
    protocol = get_protocol()
    instruments = get_instruments()
    yield f'<MetaDataVersion OID="{METADATA_OID}" Name="CARE-SSc questionnaires">'
    # (code, name, forms, repeating, ODM event type)
    events = [
        (v.code, v.name["en"], list(v.questionnaires), "No", "Scheduled") for v in protocol.visits
    ]
    events += [
        (s.code, instruments[s.instrument].title.get("en"), [s.instrument], "Yes", "Common")
        for s in protocol.series
    ]
    events += [
        (
            vs.occurrence_code(code),
            f"{instruments[vs.instrument].title.get('en')} ({code})",
            [vs.instrument],
            "Yes",
            "Common",
        )
        for vs in protocol.visit_series
        for code in vs.after_visits
    ]
    if protocol.unscheduled is not None:
        report = protocol.unscheduled
        title = instruments[report.instrument].title.get("en")
        events.append((report.code, title, [report.instrument], "Yes", "Unscheduled"))
    events = [event for event in events if event[2]]
    yield "<Protocol>"
    for number, (code, *_rest) in enumerate(events, start=1):
        yield f'<StudyEventRef StudyEventOID="{_event_oid(code)}" OrderNumber="{number}" Mandatory="No"/>'
    yield "</Protocol>"
    for code, name, forms, repeating, event_type in events:
        yield (
            f'<StudyEventDef OID="{_event_oid(code)}" Name={quoteattr(name)} '
            f'Repeating="{repeating}" Type="{event_type}">'
        )
        for form in forms:
            yield f'<FormRef FormOID="F.{form}" Mandatory="No"/>'
        yield "</StudyEventDef>"
    for instrument_id in sorted(instruments):
        title = instruments[instrument_id].title.get("en")
        yield f'<FormDef OID="F.{instrument_id}" Name={quoteattr(title)} Repeating="No">'
        yield f'<ItemGroupRef ItemGroupOID="IG.{instrument_id}" Mandatory="Yes"/></FormDef>'
    for instrument_id in sorted(instruments):
        yield f'<ItemGroupDef OID="IG.{instrument_id}" Name="{instrument_id}" Repeating="No">'
        for item in instruments[instrument_id].items:
            if item.answerable:
                yield f'<ItemRef ItemOID="I.{instrument_id}.{item.id}" Mandatory="No"/>'
        yield "</ItemGroupDef>"
    for instrument_id in sorted(instruments):
        for item in instruments[instrument_id].items:
            if item.answerable:
                data_type = ODM_DATA_TYPES.get(item.type, "text")
                yield (
                    f'<ItemDef OID="I.{instrument_id}.{item.id}" Name="{item.id}" '
                    f'DataType="{data_type}"><Question><TranslatedText xml:lang="en">'
                    f"{escape(item.text.get('en'))}</TranslatedText>"
                    f'<TranslatedText xml:lang="fr">{escape(item.text.get("fr"))}</TranslatedText>'
                    "</Question></ItemDef>"
                )
    yield "</MetaDataVersion>"


def _admin_data(sites: list[str]) -> Iterator[str]:
    protocol = get_protocol()
    staff = db.session.execute(
        sa.select(StaffUser.email, StaffUser.name)
        .where(
            sa.or_(
                StaffUser.id.in_(
                    sa.select(Answer.entered_by_staff_id)
                    .join(Assignment, Assignment.id == Answer.assignment_id)
                    .join(Participant, Participant.id == Assignment.participant_id)
                    .where(Participant.site_code.in_(sites))
                ),
                StaffUser.id.in_(
                    sa.select(Submission.entered_by_staff_id)
                    .join(Assignment, Assignment.id == Submission.assignment_id)
                    .join(Participant, Participant.id == Assignment.participant_id)
                    .where(Participant.site_code.in_(sites))
                ),
            )
        )
        .order_by(StaffUser.email)
    ).all()
    yield "<AdminData>"
    yield f'<User OID="{PARTICIPANT_USER}" UserType="Other"><FullName>Participant (self-report)</FullName></User>'
    for email, name in staff:
        yield f'<User OID={quoteattr(_user_oid(email))} UserType="Investigator"><FullName>{escape(name)}</FullName></User>'
    for code in sites:
        site = protocol.site(code)
        yield (
            f'<Location OID="LOC.{code}" Name={quoteattr(site.name["en"])} LocationType="Site">'
            f'<MetaDataVersionRef StudyOID="CARE-SSc" MetaDataVersionOID="{METADATA_OID}" '
            'EffectiveDate="2020-01-01"/></Location>'
        )
    yield "</AdminData>"


def _replacement_links(sites: list[str]) -> dict[str, list[str]]:
    """Per study ID, the ODM comments on its replacement enrolment links: when, by whom, why,
    and when a passkey was registered from it. The staff note stays in the portal."""
    rows = db.session.execute(
        sa.select(
            Participant.study_id,
            EnrolmentToken.created_at,
            StaffUser.email,
            EnrolmentToken.replacement_reason,
            EnrolmentToken.used_at,
        )
        .join(Participant, Participant.id == EnrolmentToken.participant_id)
        .outerjoin(StaffUser, StaffUser.id == EnrolmentToken.issued_by_id)
        .where(Participant.site_code.in_(sites), EnrolmentToken.replacement_reason.is_not(None))
        .order_by(Participant.study_id, EnrolmentToken.created_at, EnrolmentToken.id)
    ).all()
    comments: dict[str, list[str]] = {}
    for study_id, issued_at, email, reason, used_at in rows:
        used = f"; a passkey was registered from it at {timestamp(used_at)}" if used_at else ""
        comments.setdefault(study_id, []).append(
            f"Replacement enrolment link issued at {timestamp(issued_at)} by "
            f"{_entered_by(email) if email else 'a command'} (reason: {reason}){used}."
        )
    return comments


def _contact_comments(sites: list[str]) -> dict[str, tuple[str, list[str]]]:
    """Per study ID, its site and the ODM comments on the team's contact attempts: when, by
    whom, how and the outcome. The short note stays in the portal and the contacts CSV."""
    comments: dict[str, tuple[str, list[str]]] = {}
    for study_id, site, at, channel, outcome, email, _note in db.session.execute(
        _contacts_query(sites)
    ):
        comments.setdefault(study_id, (site, []))[1].append(
            f"Contact attempt at {timestamp(at)} by {_entered_by(email)}: {channel}, {outcome}."
        )
    return comments


def _annotations(comments: list[str], first: int = 1) -> Iterator[str]:
    for number, comment in enumerate(comments, start=first):
        yield (
            f'<Annotation SeqNum="{number}"><Comment SponsorOrSite="Site">'
            f"{escape(comment)}</Comment></Annotation>"
        )


def odm_xml(sites: list[str]) -> Iterator[str]:
    """ODM 1.3.2 snapshot: study metadata, admin data (users, sites) and clinical data of
    submitted questionnaires, each item with its audit record (who, where, when)."""
    created = timestamp(clock.now())
    yield '<?xml version="1.0" encoding="UTF-8"?>\n'
    yield (
        f'<ODM xmlns="{ODM_NAMESPACE}" ODMVersion="1.3.2" FileType="Snapshot" '
        f'FileOID="CARE-SSc.export.{uuid.uuid4()}" CreationDateTime="{created}" '
        'Originator="CARE-SSc participant portal">'
    )
    yield '<Study OID="CARE-SSc"><GlobalVariables><StudyName>CARE-SSc</StudyName>'
    yield f"<StudyDescription>{escape(get_protocol().title['en'])}</StudyDescription>"
    yield "<ProtocolName>NCT04356287</ProtocolName></GlobalVariables>"
    yield from _metadata()
    yield "</Study>"
    yield from _admin_data(sites)
    yield f'<ClinicalData StudyOID="CARE-SSc" MetaDataVersionOID="{METADATA_OID}">'
    replacements = _replacement_links(sites)
    contacts = _contact_comments(sites)
    for study_id, subject_group in groupby(answer_rows(sites), key=lambda r: r.study_id):
        subject_rows = list(subject_group)
        site = subject_rows[0].site_code
        yield f'<SubjectData SubjectKey={quoteattr(study_id)}><SiteRef LocationOID="LOC.{site}"/>'
        # Someone other than the participant may have answered from a replacement link's device.
        comments = replacements.get(study_id, []) + contacts.pop(study_id, ("", []))[1]
        yield from _annotations(comments)
        for (visit_key, series, occurrence), event_rows in groupby(
            subject_rows, key=lambda r: (r.visit, r.series_code, r.occurrence)
        ):
            repeat = f' StudyEventRepeatKey="{occurrence + 1}"' if series else ""
            yield f'<StudyEventData StudyEventOID="{_event_oid(visit_key)}"{repeat}>'
            for _assignment, form_group in groupby(event_rows, key=lambda r: r.assignment_id):
                form_rows = list(form_group)
                head = form_rows[0]
                yield f'<FormData FormOID="F.{head.instrument_id}">'
                edit_point = "DataManagement" if head.submitted_by else "Subject"
                yield (
                    f'<AuditRecord EditPoint="{edit_point}" UsedImputationMethod="No">'
                    f"<UserRef UserOID={quoteattr(_user_oid(head.submitted_by))}/>"
                    f'<LocationRef LocationOID="LOC.{site}"/>'
                    f"<DateTimeStamp>{head.submitted_at}</DateTimeStamp>"
                    f"<ReasonForChange>submitted, version {escape(head.instrument_version)}, "
                    f"language {head.language}</ReasonForChange></AuditRecord>"
                )
                yield f'<ItemGroupData ItemGroupOID="IG.{head.instrument_id}">'
                parts = []
                for row in form_rows:
                    parts.append(
                        f'<ItemData ItemOID="I.{row.instrument_id}.{row.item_id}" '
                        f"Value={quoteattr(_json_text(row.value))}>"
                        f'<AuditRecord EditPoint="{"DataManagement" if row.email else "Subject"}" '
                        'UsedImputationMethod="No">'
                        f"<UserRef UserOID={quoteattr(_user_oid(row.email))}/>"
                        f'<LocationRef LocationOID="LOC.{site}"/>'
                        f"<DateTimeStamp>{row.answered_at}</DateTimeStamp>"
                        "</AuditRecord></ItemData>"
                    )
                yield "".join(parts)
                yield "</ItemGroupData></FormData>"
            yield "</StudyEventData>"
        yield "</SubjectData>"
    # Participants the team tried to reach who have submitted nothing yet.
    for study_id, (site, comments) in sorted(contacts.items()):
        yield f'<SubjectData SubjectKey={quoteattr(study_id)}><SiteRef LocationOID="LOC.{site}"/>'
        yield from _annotations(replacements.get(study_id, []) + comments)
        yield "</SubjectData>"
    yield "</ClinicalData></ODM>\n"


# --- the list the views offer -------------------------------------------------------------------


@dataclass(frozen=True)
class ExportKind:
    generate: Callable[[list[str]], Iterator[str]]
    media_type: str
    extension: str

    def filename(self, sites: Iterable[str]) -> str:
        return f"care-ssc-{'-'.join(sites).lower()}-{clock.now():%Y%m%d}.{self.extension}"


KINDS: dict[str, ExportKind] = {
    "completion.csv": ExportKind(completion_csv, "text/csv", "completion.csv"),
    "answers.csv": ExportKind(answers_csv, "text/csv", "answers.csv"),
    "scores.csv": ExportKind(scores_csv, "text/csv", "scores.csv"),
    "contacts.csv": ExportKind(contacts_csv, "text/csv", "contacts.csv"),
    "questionnaire-responses.fhir.json": ExportKind(
        fhir_bundle, "application/fhir+json", "fhir.json"
    ),
    "clinical-data.odm.xml": ExportKind(odm_xml, "application/xml", "odm.xml"),
}
