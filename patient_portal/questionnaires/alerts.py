"""Alerts: raised by an instrument's rules, given a severity and a response target, read by
staff in their own language with the answer that raised them, acknowledged with an outcome.

Rules are evaluated when a questionnaire is submitted and, for instruments that ask for it
(`alerts_on_answer`: the post-infusion diary, symptom reports), as each answer is saved, so an
urgent answer reaches the team before the form is finished. An alert once raised stays raised
if the answer changes afterwards: someone still looks at it. Functions flush, never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from patient_portal import audit, clock
from patient_portal.accounts.models import Participant, StaffUser
from patient_portal.errors import PortalError
from patient_portal.extensions import db
from patient_portal.i18n import format_number
from patient_portal.protocol.services import WorkingHours, get_protocol
from patient_portal.questionnaires.engine import effective_answers
from patient_portal.questionnaires.instrument import AlertRule, Instrument
from patient_portal.questionnaires.loader import get_instruments
from patient_portal.questionnaires.models import ALERT_OUTCOMES, Alert, Assignment
from patient_portal.questionnaires.scoring import evaluate_alerts
from patient_portal.timezones import local_instant

NOTE_MAX = 1000
# How long the participant's home page follows a report or diary entry that raised an alert.
REPORTS_SHOWN_FOR = timedelta(days=14)
# Beyond a year of closed days something is wrong with the configuration, not the alert.
_SEARCH_DAYS = 400

OUTCOME_LABELS = {
    "called": _l("Called the participant"),
    "no_answer": _l("Called, no answer"),
    "advised_emergency": _l("Advised to go to the emergency department"),
    "adverse_event": _l("Reported as an adverse event"),
    "no_action": _l("Reviewed, no action needed"),
}
SEVERITY_LABELS = {"urgent": _l("Urgent"), "routine": _l("Routine")}


# ---------------------------------------------------------------------------------------------
# Response targets in working time


def add_working_time(
    start: datetime, minutes: int, zone: ZoneInfo, hours: WorkingHours
) -> datetime:
    """The instant `minutes` of the site's working time after `start` (UTC, aware).

    Each working day's opening and closing are read on the site's wall clock, so a target
    counted across a DST change or a weekend lands where a person at the site expects it.
    """
    remaining = timedelta(minutes=minutes)
    day: date = start.astimezone(zone).date()
    for _day in range(_SEARCH_DAYS):
        if day.isoweekday() in hours.days:
            opens = local_instant(day, zone, hours.start)
            closes = local_instant(day, zone, hours.end)
            begin = max(start, opens)
            if begin < closes:
                if remaining <= closes - begin:
                    return begin + remaining
                remaining -= closes - begin
        day += timedelta(days=1)
    raise ValueError("the site has no working hours")


def due_at(participant: Participant, severity: str, created_at: datetime) -> datetime:
    """When an alert of this severity must have been seen, by the participant's site's target."""
    protocol = get_protocol()
    site = protocol.site(participant.site_code)
    minutes = protocol.alert_targets[severity].minutes(site.working_hours)
    return add_working_time(created_at, minutes, site.zone, site.working_hours)


# ---------------------------------------------------------------------------------------------
# Raising


def _actual(rule: AlertRule, counted: Mapping[str, Any], scores: Mapping[str, Any]) -> Any:
    return counted.get(rule.item) if rule.item is not None else scores.get(rule.score or "")


def raise_alerts(
    assignment: Assignment,
    instrument: Instrument,
    answers: Mapping[str, Any],
    scores: Mapping[str, Any] | None = None,
    item_id: str | None = None,
    actor: str | None = None,
) -> list[Alert]:
    """Create the alerts whose rules the answers (and scores) meet and that this assignment
    has not raised yet; with `item_id`, only the item rules on that item (at autosave)."""
    now = clock.now()
    counted = effective_answers(instrument, answers)
    already = set(
        db.session.scalars(sa.select(Alert.rule_id).where(Alert.assignment_id == assignment.id))
    )
    met = set(evaluate_alerts(instrument, answers, scores or {}))
    raised = []
    for rule in instrument.alerts:
        if rule.id in already or rule.id not in met:
            continue
        if item_id is not None and rule.item != item_id:
            continue
        actual = _actual(rule, counted, scores or {})
        alert = Alert(
            participant_id=assignment.participant_id,
            assignment_id=assignment.id,
            rule_id=rule.id,
            message_key=rule.message_key,
            severity=rule.severity,
            item_id=rule.item,
            value=actual.isoformat() if isinstance(actual, date) else actual,
            created_at=now,
            due_at=due_at(assignment.participant, rule.severity, now),
        )
        db.session.add(alert)
        raised.append(alert)
    if raised:
        # The home page looks for followed reports only while one may be showing.
        until = now + REPORTS_SHOWN_FOR
        db.session.execute(
            sa.update(Participant)
            .where(
                Participant.id == assignment.participant_id,
                sa.or_(
                    Participant.home_notices_until.is_(None),
                    Participant.home_notices_until < until,
                ),
            )
            .values(home_notices_until=until)
            .execution_options(synchronize_session="fetch")
        )
        db.session.flush()
        for alert in raised:
            audit.record(
                "alert.raised",
                "alert",
                alert.id,
                after={
                    "assignment": assignment.id,
                    "rule": alert.rule_id,
                    "severity": alert.severity,
                    "item": alert.item_id,
                    "value": alert.value,
                    "due_at": alert.due_at,
                },
                actor=actor,
                stream=assignment.participant.audit_stream,
            )
    return raised


# ---------------------------------------------------------------------------------------------
# Reading


def _rule(instrument_id: str | None, rule_id: str) -> tuple[Instrument | None, AlertRule | None]:
    instrument = get_instruments().get(instrument_id) if instrument_id else None
    if instrument is None:
        return None, None
    return instrument, next((r for r in instrument.alerts if r.id == rule_id), None)


def alert_label(instrument_id: str | None, rule_id: str, item_id: str | None, language: str) -> str:
    """What an alert is about, in the reader's language: the rule's label, else the question."""
    instrument, rule = _rule(instrument_id, rule_id)
    if rule is not None and rule.label is not None:
        return rule.label.get(language)
    if instrument is not None and item_id and instrument.has_item(item_id):
        return instrument.item(item_id).text.get(language)
    return _("Alert from the answers")


def answer_text(
    instrument_id: str | None,
    rule_id: str,
    item_id: str | None,
    value: Any,
    language: str,
    locale: str,
) -> str | None:
    """The answer that raised an alert as a person reads it ("7/10", "38.0 to 38.4 °C")."""
    if value is None:
        return None
    instrument, rule = _rule(instrument_id, rule_id)
    if instrument is None or not item_id or not instrument.has_item(item_id):
        return format_number(value, locale, 2) if isinstance(value, float) else str(value)
    item = instrument.item(item_id)
    if item.type == "single_choice":
        option = item.option(value)
        return option.label.get(language) if option else str(value)
    if item.type == "multiple_choice" and isinstance(value, list):
        # The options that met the rule first: "Chest pain", not the whole list of symptoms.
        wanted: tuple = ()
        if rule is not None:
            wanted = rule.value if rule.operator == "in" else (rule.value,)
        hits = [o for o in item.options if o.value in value and o.value in wanted]
        shown = hits or [o for o in item.options if o.value in value]
        return ", ".join(option.label.get(language) for option in shown)
    if item.type == "yes_no":
        return _("Yes") if value else _("No")
    if item.type == "rating_0_10":
        return f"{value}/10"
    if item.type == "vas_0_100":
        return f"{value}/100"
    if item.type == "integer":
        number = format_number(value, locale)
        return f"{number} {item.unit.get(language)}" if item.unit else number
    return str(value)


def open_alerts(participant: Participant) -> list[Alert]:
    """The participant's alerts no coordinator has acknowledged yet, urgent first, oldest first."""
    return list(
        db.session.scalars(
            sa.select(Alert)
            .where(Alert.participant_id == participant.id, Alert.acknowledged_at.is_(None))
            .order_by(Alert.severity.desc(), Alert.created_at, Alert.id)
        )
    )


def urgent_raised(assignment: Assignment) -> bool:
    """True once an answer of this questionnaire has raised an urgent alert."""
    return bool(
        db.session.scalar(
            sa.select(sa.func.count(Alert.id)).where(
                Alert.assignment_id == assignment.id, Alert.severity == "urgent"
            )
        )
    )


def reports_seen(
    participant: Participant, since: datetime
) -> list[tuple[Assignment, datetime | None]]:
    """The participant's questionnaires with alerts since `since`, newest first, each with the
    time the team first acknowledged one of its alerts (None: not seen yet)."""
    rows = db.session.execute(
        sa.select(
            Assignment,
            sa.func.min(Alert.acknowledged_at),
            sa.func.count(Alert.id) - sa.func.count(Alert.acknowledged_at),
        )
        .join(Alert, Alert.assignment_id == Assignment.id)
        .where(Alert.participant_id == participant.id, Alert.created_at >= since)
        .group_by(Assignment.id)
        .order_by(sa.func.max(Alert.created_at).desc())
    ).all()
    # Seen once no alert of it waits any longer: the time is when the last was acknowledged.
    return [(assignment, seen if waiting == 0 else None) for assignment, seen, waiting in rows]


# ---------------------------------------------------------------------------------------------
# Acknowledging


def acknowledge(alert: Alert, staff: StaffUser, outcome: str, note: str | None) -> bool:
    """Record that a person dealt with the alert, how (`outcome`) and an optional note;
    False if it was already acknowledged."""
    if outcome not in ALERT_OUTCOMES:
        raise PortalError(_("Choose what was done about this alert."), 422, field="outcome")
    if alert.acknowledged_at is not None:
        return False
    note = (note or "").strip()[:NOTE_MAX] or None
    alert.acknowledged_at = clock.now()
    alert.acknowledged_by_id = staff.id
    alert.outcome = outcome
    alert.note = note
    db.session.flush()
    audit.record(
        "alert.acknowledged",
        "alert",
        alert.id,
        before={"acknowledged_at": None},
        after={"acknowledged_at": alert.acknowledged_at, "outcome": outcome, "note": note},
        actor=staff.audit_name,
        stream=alert.participant.audit_stream,
    )
    return True
