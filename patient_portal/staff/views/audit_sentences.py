"""Every audit event told as a sentence in the viewer's language, with who acted and about
which participant: the audit log and the participant page's history read these.

The stored event keeps its codes (`visit.appointment_set`, `hands_mean`): they are what the
chain signs and what the exports carry. The pages read sentences: a coordinator should not have
to know the codes to follow a participant's history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

from patient_portal.accounts.models import REPLACEMENT_REASONS, StaffUser
from patient_portal.accounts.services import replacement_reason_label
from patient_portal.audit import AuditEvent
from patient_portal.contacts.services import CHANNEL_LABELS as CONTACT_CHANNELS
from patient_portal.contacts.services import OUTCOME_LABELS as CONTACT_OUTCOMES
from patient_portal.extensions import db
from patient_portal.i18n import language_name, passkey_label, site_date, site_datetime
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires.alerts import OUTCOME_LABELS
from patient_portal.questionnaires.models import Alert, Assignment
from patient_portal.staff.views.labels import instrument_label, staff_role_label, visit_label


@dataclass(frozen=True)
class EventLine:
    """One audit event as a page shows it."""

    event: AuditEvent
    sentence: str
    when: str
    reason: str | None


@dataclass
class _Facts:
    """What a sentence may name about one event, looked up once per page."""

    event: AuditEvent
    actor: str
    participant: str
    site_code: str | None
    staff: dict[str, StaffUser]
    instruments: dict[int, str]
    alerts: dict[int, tuple[str, str | None]]

    @property
    def by_participant(self) -> bool:
        """Whether the participant the event is about did it themselves."""
        return self.event.actor == f"participant:{self.participant}"

    @property
    def before(self) -> dict:
        return self.event.before or {}

    @property
    def after(self) -> dict:
        return self.event.after or {}

    def person(self, audit_name: str | None) -> str:
        return _person(audit_name, self.staff)

    def staff_member(self) -> str:
        member = self.staff.get(self.event.entity_id)
        return member.name if member else self.event.entity_id

    def moment(self, value: Any) -> str:
        moment = _as_datetime(value)
        return site_datetime(moment, self.site_code) if moment else "—"

    def day(self, value: Any) -> str:
        day = _as_date(value)
        return site_date(day, self.site_code) if day else "—"

    def visit(self) -> str:
        return visit_label(self.after.get("code") or self.before.get("code"))

    def questionnaire(self) -> str:
        instrument = self.after.get("instrument") or self.instruments.get(
            _as_int(self.event.entity_id) or 0
        )
        return instrument_label(instrument) if instrument else _("a questionnaire")

    def alert_questionnaire(self) -> str:
        instrument, _severity = self.alerts.get(_as_int(self.event.entity_id) or 0, ("", None))
        return instrument_label(instrument) if instrument else _("a report")


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _as_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _person(audit_name: str | None, staff: dict[str, StaffUser]) -> str:
    """“Coordinator A. Martin”, “participant JGH-003”, “the portal”."""
    if not audit_name:
        return _("someone")
    kind, _sep, who = audit_name.partition(":")
    if kind == "staff":
        member = staff.get(who)
        if member is None:
            return who
        return _("%(role)s %(name)s", role=staff_role_label(member.role), name=member.name)
    if kind == "participant":
        return _("participant %(study_id)s", study_id=who)
    if kind == "system":
        return _("the portal")
    return _("someone not signed in")


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _appointment_set(f: _Facts) -> str:
    when = f.after.get("scheduled_at")
    if not when:
        return _(
            "%(actor)s cleared the appointment of %(participant)s for “%(visit)s”.",
            actor=f.actor,
            participant=f.participant,
            visit=f.visit(),
        )
    return _(
        "%(actor)s set the appointment of %(participant)s for “%(visit)s” to %(when)s.",
        actor=f.actor,
        participant=f.participant,
        visit=f.visit(),
        when=f.moment(when),
    )


def _visit_status(f: _Facts) -> str:
    status = f.after.get("status")
    words = {
        "planned": _("planned"),
        "completed": _("done"),
        "missed": _("missed"),
        "cancelled": _("cancelled"),
    }
    return _(
        "%(actor)s marked the visit “%(visit)s” of %(participant)s as %(status)s.",
        actor=f.actor,
        visit=f.visit(),
        participant=f.participant,
        status=words.get(status or "", status or "—"),
    )


def _alert_raised(f: _Facts) -> str:
    if f.after.get("severity") == "urgent":
        return _(
            "An answer of %(participant)s to “%(questionnaire)s” raised an urgent alert "
            "(recorded by %(actor)s).",
            participant=f.participant,
            questionnaire=f.alert_questionnaire(),
            actor=f.actor,
        )
    return _(
        "An answer of %(participant)s to “%(questionnaire)s” raised a routine alert "
        "(recorded by %(actor)s).",
        participant=f.participant,
        questionnaire=f.alert_questionnaire(),
        actor=f.actor,
    )


def _alert_acknowledged(f: _Facts) -> str:
    outcome = OUTCOME_LABELS.get(f.after.get("outcome") or "")
    if outcome:
        return _(
            "%(actor)s acknowledged the alert of %(participant)s (“%(questionnaire)s”): "
            "%(outcome)s.",
            actor=f.actor,
            participant=f.participant,
            questionnaire=f.alert_questionnaire(),
            outcome=str(outcome),
        )
    return _(
        "%(actor)s acknowledged the alert of %(participant)s (“%(questionnaire)s”).",
        actor=f.actor,
        participant=f.participant,
        questionnaire=f.alert_questionnaire(),
    )


def _owner_sentence(message: object) -> Callable[[_Facts], str]:
    """A sentence about whoever owns a passkey, link or session (a participant or staff)."""

    def sentence(f: _Facts) -> str:
        owner = f.after.get("owner") or f.before.get("owner")
        return str(message) % {
            "actor": f.actor,
            "owner": f.person(owner) if owner else f.participant,
        }

    return sentence


def _participant_sentence(message: object, own: object | None = None) -> Callable[[_Facts], str]:
    """A sentence about a participant's record; `own` when the participant acted on it."""

    def sentence(f: _Facts) -> str:
        chosen = own if own is not None and f.by_participant else message
        return str(chosen) % {"actor": f.actor, "participant": f.participant}

    return sentence


def _staff_sentence(message: object) -> Callable[[_Facts], str]:
    def sentence(f: _Facts) -> str:
        return str(message) % {"actor": f.actor, "member": f.staff_member()}

    return sentence


def _contact(f: _Facts) -> str:
    """A contact attempt: how, and whether the participant was reached (the note stays out)."""
    channel = CONTACT_CHANNELS.get(f.after.get("channel", ""), f.after.get("channel", ""))
    outcome = CONTACT_OUTCOMES.get(f.after.get("outcome", ""), f.after.get("outcome", ""))
    return _(
        "%(actor)s recorded a contact with %(participant)s (%(channel)s): %(outcome)s.",
        actor=f.actor,
        participant=f.participant,
        channel=channel,
        outcome=outcome,
    )


def _export(f: _Facts) -> str:
    names = {
        "completion.csv": _("Completion report (CSV)"),
        "answers.csv": _("Answers, long format (CSV)"),
        "scores.csv": _("Scores (CSV)"),
        "questionnaire-responses.fhir.json": _("FHIR R4 Bundle (JSON)"),
        "clinical-data.odm.xml": _("CDISC ODM 1.3.2 (XML)"),
    }
    return _(
        "%(actor)s downloaded the export “%(export)s”.",
        actor=f.actor,
        export=names.get(f.event.entity_id, f.event.entity_id),
    )


def _visits_planned(f: _Facts) -> str:
    count = len(f.after.get("visits") or {})
    return ngettext(
        "%(actor)s planned %(num)d visit of %(participant)s.",
        "%(actor)s planned %(num)d visits of %(participant)s.",
        count,
        actor=f.actor,
        participant=f.participant,
    )


def _visit_recomputed(f: _Facts) -> str:
    return _(
        "%(actor)s moved the visit “%(visit)s” of %(participant)s to %(day)s, after day 0 changed.",
        actor=f.actor,
        visit=f.visit(),
        participant=f.participant,
        day=f.day(f.after.get("target_date")),
    )


def _day0_changed(f: _Facts) -> str:
    return _(
        "%(actor)s changed day 0 of %(participant)s from %(before)s to %(after)s.",
        actor=f.actor,
        participant=f.participant,
        before=f.day(f.before.get("day0")),
        after=f.day(f.after.get("day0")),
    )


def _enrolled(f: _Facts) -> str:
    day0 = f.after.get("day0")
    if day0:
        return _(
            "%(actor)s enrolled %(participant)s at %(site)s, day 0 on %(day)s.",
            actor=f.actor,
            participant=f.participant,
            site=f.after.get("site") or "—",
            day=f.day(day0),
        )
    return _(
        "%(actor)s enrolled %(participant)s at %(site)s.",
        actor=f.actor,
        participant=f.participant,
        site=f.after.get("site") or "—",
    )


def _withdrawn(f: _Facts) -> str:
    return _(
        "%(actor)s withdrew %(participant)s from the study.",
        actor=f.actor,
        participant=f.participant,
    )


def _submitted(f: _Facts) -> str:
    if f.by_participant:
        return _(
            "%(participant)s submitted “%(questionnaire)s”.",
            participant=f.participant,
            questionnaire=f.questionnaire(),
        )
    return _(
        "%(actor)s submitted “%(questionnaire)s” for %(participant)s.",
        actor=f.actor,
        questionnaire=f.questionnaire(),
        participant=f.participant,
    )


def _answer_saved(f: _Facts) -> str:
    if f.by_participant:
        return _(
            "%(participant)s answered a question of “%(questionnaire)s”.",
            participant=f.participant,
            questionnaire=f.questionnaire(),
        )
    return _(
        "%(actor)s saved an answer to “%(questionnaire)s” for %(participant)s.",
        actor=f.actor,
        questionnaire=f.questionnaire(),
        participant=f.participant,
    )


def _report_started(f: _Facts) -> str:
    return _(
        "%(actor)s started “%(questionnaire)s”.",
        actor=f.actor,
        questionnaire=visit_label(f.after.get("series")),
    )


def _language_changed(f: _Facts) -> str:
    return _(
        "%(actor)s changed the page language to %(language)s.",
        actor=f.actor,
        language=language_name(f.after.get("language") or ""),
    )


def _passkey_added(f: _Facts) -> str:
    return _(
        "%(actor)s added the passkey “%(passkey)s” for %(owner)s.",
        actor=f.actor,
        passkey=passkey_label(f.after.get("nickname") or ""),
        owner=f.person(f.after.get("owner")),
    )


def _passkey_renamed(f: _Facts) -> str:
    return _(
        "%(actor)s renamed the passkey “%(before)s” to “%(after)s”.",
        actor=f.actor,
        before=passkey_label(f.before.get("nickname") or ""),
        after=passkey_label(f.after.get("nickname") or ""),
    )


def _signin_failed(f: _Facts) -> str:
    owner = f.after.get("owner")
    if owner:
        return _("A sign-in as %(owner)s failed.", owner=f.person(owner))
    return _("A sign-in with a passkey the portal does not know failed.")


def _revoked_all(f: _Facts) -> str:
    return ngettext(
        "%(actor)s signed %(owner)s out everywhere (%(num)d session ended).",
        "%(actor)s signed %(owner)s out everywhere (%(num)d sessions ended).",
        int(f.after.get("count") or 0),
        actor=f.actor,
        owner=f.person(f.event.entity_id),
    )


def _key_rotated(f: _Facts) -> str:
    return ngettext(
        "%(actor)s encrypted %(num)d contact address with a new key.",
        "%(actor)s encrypted %(num)d contact addresses with a new key.",
        int(f.after.get("count") or 0),
        actor=f.actor,
    )


def _alert_mailed(kind: str) -> Callable[[_Facts], str]:
    def sentence(f: _Facts) -> str:
        count = int(f.after.get("sent") or 0)
        if kind == "notified":
            return ngettext(
                "%(actor)s e-mailed %(num)d coordinator about the urgent alert of %(participant)s.",
                "%(actor)s e-mailed %(num)d coordinators about the urgent alert of "
                "%(participant)s.",
                count,
                actor=f.actor,
                participant=f.participant,
            )
        return ngettext(
            "%(actor)s e-mailed %(num)d investigator: the alert of %(participant)s is past "
            "its response target.",
            "%(actor)s e-mailed %(num)d investigators: the alert of %(participant)s is past "
            "its response target.",
            count,
            actor=f.actor,
            participant=f.participant,
        )

    return sentence


def _reminder_email(f: _Facts) -> str:
    if f.by_participant:
        if f.after.get("email"):
            return _(
                "%(participant)s set their reminder e-mail address.", participant=f.participant
            )
        return _(
            "%(participant)s removed their reminder e-mail address.", participant=f.participant
        )
    if f.after.get("email"):
        return _(
            "%(actor)s set the reminder e-mail address of %(participant)s.",
            actor=f.actor,
            participant=f.participant,
        )
    return _(
        "%(actor)s removed the reminder e-mail address of %(participant)s.",
        actor=f.actor,
        participant=f.participant,
    )


# Every kind of event the portal writes has its sentence: tests/staff/test_staff_words.py
# reads every `audit.record` call of the code and fails on a kind missing here.
SENTENCES: dict[str, Callable[[_Facts], str]] = {
    "alert.acknowledged": _alert_acknowledged,
    "alert.escalated": _alert_mailed("escalated"),
    "alert.notified": _alert_mailed("notified"),
    "alert.raised": _alert_raised,
    "answer.saved": _answer_saved,
    "assignments.planned": _participant_sentence(
        _l("%(actor)s planned the questionnaires of %(participant)s.")
    ),
    "calendar_feed.issued": _participant_sentence(
        _l("%(actor)s made a calendar subscription link for %(participant)s."),
        _l("%(participant)s made a calendar subscription link."),
    ),
    "calendar_feed.revoked": _participant_sentence(
        _l("%(actor)s stopped the calendar subscription link of %(participant)s."),
        _l("%(participant)s stopped their calendar subscription link."),
    ),
    "contacts.key_rotated": _key_rotated,
    "enrolment.issued": _owner_sentence(_l("%(actor)s issued an enrolment link for %(owner)s.")),
    "enrolment.revoked": _owner_sentence(_l("%(actor)s stopped an enrolment link of %(owner)s.")),
    "enrolment.used": _owner_sentence(_l("%(actor)s used the enrolment link of %(owner)s.")),
    "export.downloaded": _export,
    "language.changed": _language_changed,
    "participant.day0_changed": _day0_changed,
    "participant.enrolled": _enrolled,
    "participant.withdrawn": _withdrawn,
    "passkey.added": _passkey_added,
    "passkey.notice_dismissed": _participant_sentence(
        _l("%(actor)s put away the “new device added” notice of %(participant)s."),
        _l("%(participant)s put away the “new device added” notice."),
    ),
    "passkey.removed": _owner_sentence(_l("%(actor)s removed a passkey of %(owner)s.")),
    "passkey.renamed": _passkey_renamed,
    "push_subscription.added": _participant_sentence(
        _l("%(actor)s turned on notifications on a phone of %(participant)s."),
        _l("%(participant)s turned on notifications on their phone."),
    ),
    "push_subscription.expired": _participant_sentence(
        _l("%(actor)s found a phone of %(participant)s no longer takes notifications.")
    ),
    "push_subscription.removed": _participant_sentence(
        _l("%(actor)s turned off notifications on a phone of %(participant)s."),
        _l("%(participant)s turned off notifications on their phone."),
    ),
    "questionnaire.submitted": _submitted,
    "reminder.new_device_planned": _participant_sentence(
        _l("%(actor)s planned an e-mail telling %(participant)s that a device was added.")
    ),
    "reminder.test_requested": _participant_sentence(
        _l("%(actor)s checked that reminders reach %(participant)s."),
        _l("%(participant)s checked that reminders reach them."),
    ),
    "contact.recorded": _contact,
    "reminder_email.changed": _reminder_email,
    "reminder_email.verification_sent": _participant_sentence(
        _l("%(actor)s sent %(participant)s a link to confirm their reminder e-mail address."),
        _l("%(participant)s asked for a link to confirm their reminder e-mail address."),
    ),
    "reminder_email.verified": _participant_sentence(
        _l("%(actor)s confirmed the reminder e-mail address of %(participant)s."),
        _l("%(participant)s confirmed their reminder e-mail address."),
    ),
    "reminder_preferences.changed": _participant_sentence(
        _l("%(actor)s changed the reminder settings of %(participant)s."),
        _l("%(participant)s changed their reminder settings."),
    ),
    "reminders.cancelled": _participant_sentence(
        _l("%(actor)s cancelled the reminders of %(participant)s.")
    ),
    "reminders.planned": _participant_sentence(
        _l("%(actor)s planned the reminders of %(participant)s.")
    ),
    "report.started": _report_started,
    "session.ended": _owner_sentence(_l("%(actor)s signed out.")),
    "session.revoked": _owner_sentence(_l("%(actor)s ended a session of %(owner)s.")),
    "session.revoked_all": _revoked_all,
    "signin.failed": _signin_failed,
    "signin.succeeded": _owner_sentence(_l("%(actor)s signed in.")),
    "staff.activated": _staff_sentence(_l("%(actor)s reactivated the account of %(member)s.")),
    "staff.created": _staff_sentence(_l("%(actor)s created a staff account for %(member)s.")),
    "staff.deactivated": _staff_sentence(_l("%(actor)s deactivated the account of %(member)s.")),
    "staff.investigator": _staff_sentence(
        _l("%(actor)s changed whether %(member)s is an investigator.")
    ),
    "staff.updated": _staff_sentence(_l("%(actor)s changed the role or sites of %(member)s.")),
    "visit.appointment_set": _appointment_set,
    "visit.recomputed": _visit_recomputed,
    "visit.status_changed": _visit_status,
    "visits.planned": _visits_planned,
}


def _study_id(stream: str) -> str | None:
    kind, _sep, who = stream.partition(":")
    return who if kind == "participant" else None


def _site_of(study_id: str | None) -> str | None:
    """The site whose study-ID prefix the participant carries (JGH-003 → JGH)."""
    if not study_id:
        return None
    prefix = study_id.rsplit("-", 1)[0]
    return next(
        (code for code, site in get_protocol().sites.items() if site.study_id_prefix == prefix),
        None,
    )


def _staff_named(events: Sequence[AuditEvent]) -> dict[str, StaffUser]:
    """The staff members the events name, by e-mail: one statement for the page."""
    emails = set()
    for event in events:
        for name in (
            event.actor,
            (event.after or {}).get("owner"),
            (event.before or {}).get("owner"),
        ):
            if isinstance(name, str) and name.startswith("staff:"):
                emails.add(name.removeprefix("staff:"))
        if event.entity == "staff":
            emails.add(event.entity_id)
    if not emails:
        return {}
    return {
        member.email: member
        for member in db.session.scalars(sa.select(StaffUser).where(StaffUser.email.in_(emails)))
    }


def _instruments_of(events: Sequence[AuditEvent]) -> dict[int, str]:
    ids = {
        int(event.entity_id)
        for event in events
        if event.entity == "assignment" and event.entity_id.isdigit()
    }
    if not ids:
        return {}
    rows = db.session.execute(
        sa.select(Assignment.id, Assignment.instrument_id).where(Assignment.id.in_(ids))
    )
    return {row.id: row.instrument_id for row in rows}


def _alerts_of(events: Sequence[AuditEvent]) -> dict[int, tuple[str, str | None]]:
    ids = {
        int(event.entity_id)
        for event in events
        if event.entity == "alert" and event.entity_id.isdigit()
    }
    if not ids:
        return {}
    rows = db.session.execute(
        sa.select(Alert.id, Assignment.instrument_id, Alert.severity)
        .outerjoin(Assignment, Assignment.id == Alert.assignment_id)
        .where(Alert.id.in_(ids))
    )
    return {row.id: (row.instrument_id or "", row.severity) for row in rows}


def _reason(reason: str | None) -> str | None:
    """A reason the portal wrote in its own words, translated; a person's words as written."""
    if not reason:
        return None
    system = {
        "no live ceremony": _("the sign-in had expired"),
        "malformed credential": _("the phone sent an unreadable passkey"),
        "unknown credential": _("the passkey is not known to the portal"),
        "account not active": _("the account is not active"),
        "ended by staff": _("ended by the study team"),
        "account deactivated": _("account deactivated"),
        "participant withdrawn": _("participant withdrawn"),
        "new enrolment link": _("a new enrolment link was issued"),
        "revoked with a new enrolment link": _("removed when a new enrolment link was issued"),
        "sign out everywhere": _("signed out everywhere"),
    }
    if reason in system:
        return system[reason]
    if reason.startswith("verification failed"):
        return _("the passkey’s signature did not check out")
    code, _sep, note = reason.partition(": ")
    if code in REPLACEMENT_REASONS:
        label = replacement_reason_label(code)
        return f"{label}: {note}" if note else label
    return reason


def _generic(f: _Facts) -> str:
    # A kind written by code newer than this table: still a sentence, never the raw code.
    return _(
        "%(actor)s changed a record of %(participant)s.", actor=f.actor, participant=f.participant
    )


def event_lines(events: Iterable[AuditEvent]) -> list[EventLine]:
    """The events as sentences in the viewer's language, each with its time to the minute."""
    events = list(events)
    staff = _staff_named(events)
    instruments = _instruments_of(events)
    alerts = _alerts_of(events)
    lines = []
    for event in events:
        study_id = _study_id(event.stream)
        site_code = _site_of(study_id)
        facts = _Facts(
            event=event,
            actor=_person(event.actor, staff),
            participant=study_id or _("no participant"),
            site_code=site_code,
            staff=staff,
            instruments=instruments,
            alerts=alerts,
        )
        sentence = SENTENCES.get(event.action, _generic)(facts)
        lines.append(
            EventLine(
                event,
                _capitalised(sentence),
                site_datetime(event.at, site_code),
                _reason(event.reason),
            )
        )
    return lines
