"""Questionnaire use cases: planning assignments, saving answers, submitting, assisted entry.

Windows are enforced here, on the server, whatever the page showed: nothing is answered before
an assignment opens or after it closes, except one already started, which may be finished
during the protocol's grace period. Every answer written is audited; a refused value leaves
the earlier answer untouched. Functions flush and never commit: the view commits once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

import sqlalchemy as sa
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction, joinedload, selectinload

from patient_portal import audit, clock
from patient_portal.accounts.models import Participant, StaffUser
from patient_portal.errors import PortalError
from patient_portal.extensions import db
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires import alerts
from patient_portal.questionnaires.engine import (
    effective_answers,
    missing_required,
    validate_answer,
)
from patient_portal.questionnaires.instrument import Instrument
from patient_portal.questionnaires.loader import get_instrument
from patient_portal.questionnaires.models import Alert, Answer, Assignment, Submission
from patient_portal.questionnaires.scoring import score, scorer_versions
from patient_portal.schedule.models import Visit
from patient_portal.timezones import local_instant

# How far ahead the participant's list shows what is coming.
DUE_SOON = timedelta(days=7)
DONE_SHOWN = 10


class QuestionnaireError(PortalError):
    """An action the assignment's state does not allow. `code` is translated by the web layer,
    which knows the assignment (its closing day) and words the refusal with it.

    Codes: not_open_yet, closed, withdrawn, submitted (409), incomplete (422).
    """

    def __init__(self, code: str, status: int = 409, missing: list[str] | None = None):
        super().__init__(code, status)
        self.code = code
        self.missing = missing or []


Actor = Participant | StaffUser


def grace() -> timedelta:
    """How long after closing an assignment already started may still be finished."""
    return timedelta(hours=get_protocol().grace_hours)


def site_zone(participant: Participant):
    return get_protocol().site(participant.site_code).zone


def state_of(assignment: Assignment, now: datetime | None = None) -> str:
    """upcoming, open, in_progress, completed, missed or withdrawn, now."""
    return assignment.state(now or clock.now(), grace())


# ---------------------------------------------------------------------------------------------
# Planning


@dataclass(frozen=True)
class _Planned:
    key: tuple
    instrument_id: str
    opens_at: datetime
    closes_at: datetime
    visit: Visit | None = None
    series_code: str | None = None
    occurrence: int = 0
    withdrawn: bool = False


def _wanted(participant: Participant) -> list[_Planned]:
    """Every assignment the protocol and the participant's visits call for."""
    protocol = get_protocol()
    zone = site_zone(participant)
    wanted: list[_Planned] = []
    visits = list(
        db.session.scalars(sa.select(Visit).where(Visit.participant_id == participant.id))
    )
    wanted += _visit_series_wanted(participant, visits)
    for visit in visits:
        definition = next((v for v in protocol.visits if v.code == visit.code), None)
        if definition is None:
            continue
        opens_on = visit.target_date - timedelta(days=protocol.open_days_before_target)
        for instrument_id in definition.questionnaires:
            wanted.append(
                _Planned(
                    key=("visit", visit.id, instrument_id),
                    instrument_id=instrument_id,
                    opens_at=local_instant(opens_on, zone),
                    closes_at=local_instant(visit.window_end + timedelta(days=1), zone),
                    visit=visit,
                    withdrawn=visit.status == "cancelled",
                )
            )
    if participant.day0 is not None:
        for series in protocol.series:
            occurrence = 0
            day = series.from_day
            while day <= series.to_day:
                start = participant.day0 + timedelta(days=day)
                wanted.append(
                    _Planned(
                        key=("series", series.code, occurrence, series.instrument),
                        instrument_id=series.instrument,
                        opens_at=local_instant(start, zone),
                        closes_at=local_instant(start + timedelta(days=series.open_days), zone),
                        series_code=series.code,
                        occurrence=occurrence,
                    )
                )
                occurrence += 1
                day += series.every_days
    return wanted


def _actual_date(visit: Visit) -> dt.date | None:
    """The day a visit took place: its appointment's day on the site's calendar, or the target
    day of one marked done without an appointment; None while neither is known."""
    if visit.scheduled_at is not None:
        return visit.scheduled_at.astimezone(visit.zone).date()
    if visit.status == "completed":
        return visit.target_date
    return None


def _visit_series_wanted(participant: Participant, visits: list[Visit]) -> list[_Planned]:
    """The daily questionnaires on the days after each visit a visit series follows.

    They are planned from the visit's appointment (each opens the morning after it, so only
    once the appointment has passed) or from the day it was marked done; a visit cancelled or
    missed withdraws them. Every participant gets the same, whatever they receive.
    """
    protocol = get_protocol()
    zone = site_zone(participant)
    by_code = {visit.code: visit for visit in visits}
    wanted = []
    for series in protocol.visit_series:
        opening = dt.time(series.open_hour)
        for code in series.after_visits:
            visit = by_code.get(code)
            actual = _actual_date(visit) if visit is not None else None
            if visit is None or actual is None:
                continue
            series_code = series.occurrence_code(code)
            for day in range(1, series.days + 1):
                opens_on = actual + timedelta(days=day)
                wanted.append(
                    _Planned(
                        key=("series", series_code, day - 1, series.instrument),
                        instrument_id=series.instrument,
                        opens_at=local_instant(opens_on, zone, opening),
                        closes_at=local_instant(opens_on + timedelta(days=1), zone, opening),
                        series_code=series_code,
                        occurrence=day - 1,
                        withdrawn=visit.status in ("cancelled", "missed"),
                    )
                )
    return wanted


def _key(assignment: Assignment) -> tuple:
    if assignment.visit_id is not None:
        return ("visit", assignment.visit_id, assignment.instrument_id)
    return ("series", assignment.series_code, assignment.occurrence, assignment.instrument_id)


def close_for_withdrawal(participant: Participant, **_: object) -> dict[str, int]:
    """Withdraw the questionnaires the participant could still answer; returns how many.

    Only what could still be answered closes: one already missed stays missed, so the
    completion record before the withdrawal is not rewritten.
    """
    now = clock.now()
    result = db.session.execute(
        sa.update(Assignment)
        .where(
            Assignment.participant_id == participant.id,
            Assignment.status.in_(("planned", "in_progress")),
            sa.or_(
                Assignment.closes_at > now,
                sa.and_(Assignment.status == "in_progress", Assignment.closes_at > now - grace()),
            ),
        )
        .values(status="withdrawn")
        .execution_options(synchronize_session="fetch")
    )
    return {"questionnaires_closed": cast(sa.CursorResult, result).rowcount}


def plan_assignments(participant: Participant, actor: str | None = None) -> int:
    """Create or update the participant's assignments from the protocol and their visits.

    Idempotent: call it after anything that changes the visits (planning, day 0, a visit
    cancelled). Completed assignments are never touched; the others follow their visit's
    dates; those of a cancelled visit or of a withdrawn participant are withdrawn (and come
    back if that is undone). Series occurrences no longer wanted (day 0 moved) are withdrawn.
    Returns how many assignments were created or changed.
    """
    existing = {
        _key(a): a
        for a in db.session.scalars(
            sa.select(Assignment).where(Assignment.participant_id == participant.id)
        )
    }
    participant_out = participant.status == "withdrawn"
    created, changed = 0, []
    wanted_keys = set()
    for plan in _wanted(participant):
        wanted_keys.add(plan.key)
        instrument = get_instrument(plan.instrument_id)
        assignment = existing.get(plan.key)
        withdrawn = plan.withdrawn or participant_out
        if assignment is None:
            assignment = Assignment(
                participant_id=participant.id,
                visit_id=plan.visit.id if plan.visit else None,
                series_code=plan.series_code,
                visit_key=plan.series_code or (plan.visit.code if plan.visit else None),
                occurrence=plan.occurrence,
                instrument_id=plan.instrument_id,
                instrument_version=instrument.version,
                opens_at=plan.opens_at,
                closes_at=plan.closes_at,
                status="withdrawn" if withdrawn else "planned",
            )
            db.session.add(assignment)
            existing[plan.key] = assignment
            created += 1
            continue
        if _update(assignment, plan, instrument, withdrawn):
            changed.append(assignment)
    unscheduled = get_protocol().unscheduled
    for key, assignment in existing.items():
        if unscheduled is not None and assignment.series_code == unscheduled.code:
            # Started by the participant, not planned: the protocol never calls for them.
            continue
        if key not in wanted_keys and assignment.status in ("planned", "in_progress"):
            assignment.status = "withdrawn"
            changed.append(assignment)
    db.session.flush()
    if created or changed:
        audit.record(
            "assignments.planned",
            "participant",
            participant.id,
            after={
                "created": created,
                "changed": [
                    {
                        "assignment": a.id,
                        "status": a.status,
                        "opens_at": a.opens_at,
                        "closes_at": a.closes_at,
                    }
                    for a in changed
                ],
            },
            actor=actor,
            stream=participant.audit_stream,
        )
    return created + len(changed)


def _update(
    assignment: Assignment, plan: _Planned, instrument: Instrument, withdrawn: bool
) -> bool:
    """Bring one assignment in line with its plan; True if anything changed."""
    if assignment.status == "completed":
        return False
    before = (assignment.opens_at, assignment.closes_at, assignment.status)
    assignment.opens_at = plan.opens_at
    assignment.closes_at = plan.closes_at
    if withdrawn:
        assignment.status = "withdrawn"
    elif assignment.status == "withdrawn":
        assignment.status = "in_progress" if assignment.started_at else "planned"
    if assignment.status == "planned":
        # Not started: it may as well be answered with the instrument as loaded now.
        assignment.instrument_version = instrument.version
    return before != (assignment.opens_at, assignment.closes_at, assignment.status)


# ---------------------------------------------------------------------------------------------
# Reading


def answers_of(assignment: Assignment, instrument: Instrument | None = None) -> dict[str, Any]:
    """The stored answers as typed values (dates back from their ISO text)."""
    instrument = instrument or get_instrument(assignment.instrument_id)
    answers: dict[str, Any] = {}
    for answer in assignment.answers:
        value = answer.value
        if value is None:
            continue
        if (
            instrument.has_item(answer.item_id)
            and instrument.item(answer.item_id).type == "date"
            and isinstance(value, str)
        ):
            value = dt.date.fromisoformat(value)
        answers[answer.item_id] = value
    return answers


def _stored(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


@dataclass
class Overview:
    """What the participant sees: open now, opening soon, done recently."""

    open: list[Assignment] = field(default_factory=list)
    due_soon: list[Assignment] = field(default_factory=list)
    done: list[Assignment] = field(default_factory=list)


def participant_questionnaires(participant: Participant, now: datetime | None = None) -> Overview:
    """Open (soonest closing first), opening within a week, and the last ones done."""
    now = now or clock.now()
    overview = Overview()
    assignments = db.session.scalars(
        _overview_statement(),
        {
            "participant_id": participant.id,
            "shown_until": now + DUE_SOON,
            "finishable_after": now - grace(),
        },
    ).all()
    for assignment in assignments:
        state = state_of(assignment, now)
        if state in ("open", "in_progress"):
            overview.open.append(assignment)
        elif state == "upcoming":
            overview.due_soon.append(assignment)
        elif state == "completed":
            overview.done.append(assignment)
    overview.due_soon.sort(key=lambda a: (a.opens_at, a.id))
    overview.done.sort(key=lambda a: a.submission.submitted_at if a.submission else a.closes_at)
    overview.done = list(reversed(overview.done))[:DONE_SHOWN]
    return overview


@cache
def _overview_statement() -> sa.Select:
    """The participant's questionnaires that can show: not closed (or still finishable), and the
    last ones done. A participant late in the year has sixty behind them; building each as an
    object, and building this statement, were a fifth of the home page's time (issue 19): the
    statement is built once, with the participant and the times as parameters."""
    last_done = (
        sa.select(Assignment.id)
        .outerjoin(Submission, Submission.assignment_id == Assignment.id)
        .where(
            Assignment.participant_id == sa.bindparam("participant_id"),
            Assignment.status == "completed",
        )
        # Newest done first, as the list shows them: by the date sent (the closing date for
        # one marked done without a submission), then the later window.
        .order_by(
            sa.func.coalesce(Submission.submitted_at, Assignment.closes_at).desc(),
            Assignment.closes_at.desc(),
            Assignment.id.desc(),
        )
        .limit(DONE_SHOWN)
        .correlate(None)
    )
    return (
        sa.select(Assignment)
        .where(Assignment.participant_id == sa.bindparam("participant_id"))
        .where(Assignment.status != "withdrawn")
        .where(Assignment.opens_at <= sa.bindparam("shown_until"))
        .where(
            sa.or_(
                Assignment.closes_at > sa.bindparam("finishable_after"),
                Assignment.id.in_(last_done),
            )
        )
        .order_by(Assignment.closes_at, Assignment.id)
        # The submission's date in the same statement (an outer join: at most one per
        # questionnaire), not one query per questionnaire done, nor its answers.
        .options(joinedload(Assignment.submission).load_only(Submission.submitted_at))
    )


# ---------------------------------------------------------------------------------------------
# Writing


# Assignments this transaction has locked: the set lives as long as the transaction.
_LOCKED = "locked_assignments"


def locked_assignment(assignment_id: int) -> Assignment | None:
    """The assignment read afresh and locked on PostgreSQL (FOR UPDATE of its row only), with
    its submission and answers in the same statement, so answers and submit queue per
    assignment."""
    assignment = db.session.get(
        Assignment,
        assignment_id,
        options=[joinedload(Assignment.submission), joinedload(Assignment.answers)],
        with_for_update={"of": Assignment},
        populate_existing=True,
    )
    if assignment is not None:
        db.session.info.setdefault(_LOCKED, set()).add(assignment.id)
    return assignment


def _lock(assignment: Assignment) -> Assignment:
    """The assignment, locked for the rest of the transaction (read again unless it already is)."""
    if assignment.id in db.session.info.get(_LOCKED, ()):
        return assignment
    locked = locked_assignment(assignment.id)
    assert locked is not None  # the caller holds the loaded row
    return locked


@sa.event.listens_for(Session, "after_transaction_end")
def _forget_locks(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_LOCKED, None)


def _check_writable(assignment: Assignment, now: datetime) -> None:
    state = state_of(assignment, now)
    if assignment.submission is not None or state == "completed":
        raise QuestionnaireError("submitted")
    if state == "upcoming":
        raise QuestionnaireError("not_open_yet")
    if state == "withdrawn":
        raise QuestionnaireError("withdrawn")
    if state == "missed":
        raise QuestionnaireError("closed")


def _on_behalf(assignment: Assignment, actor: Actor) -> tuple[int | None, str | None]:
    """(staff id, audit reason) when staff enter answers for the participant; else (None, None)."""
    if isinstance(actor, StaffUser):
        return actor.id, f"entered on behalf of participant:{assignment.participant.study_id}"
    if actor.id != assignment.participant_id:
        # Views load assignments through their owner; reaching here is a programming error.
        raise PermissionError("a participant may only answer their own questionnaires")
    return None, None


def save_answer(assignment: Assignment, item_id: str, raw_value: object, actor: Actor) -> Any:
    """Validate and store one answer (last write wins), audited; returns the typed value.

    Raises QuestionnaireError outside the window or after submission, and the engine's
    AnswerError for a bad value; either way nothing is written.
    """
    now = clock.now()
    assignment = _lock(assignment)
    _check_writable(assignment, now)
    instrument = get_instrument(assignment.instrument_id)
    answers = answers_of(assignment, instrument)
    today = now.astimezone(site_zone(assignment.participant)).date()
    value = validate_answer(instrument, item_id, raw_value, answers=answers, today=today)
    staff_id, reason = _on_behalf(assignment, actor)
    row = next((a for a in assignment.answers if a.item_id == item_id), None)
    before = None if row is None else {"value": row.value}
    if row is None:
        row = Answer(assignment=assignment, item_id=item_id)
        db.session.add(row)
    row.value = _stored(value)
    row.answered_at = now
    row.entered_by_staff_id = staff_id
    if assignment.status == "planned":
        assignment.status = "in_progress"
        assignment.started_at = now
    db.session.flush()
    audit.record(
        "answer.saved",
        "assignment",
        assignment.id,
        before=before and {"item": item_id, **before},
        after={"item": item_id, "value": _stored(value)},
        reason=reason,
        actor=actor.audit_name,
        stream=assignment.participant.audit_stream,
    )
    if instrument.alerts_on_answer:
        answers[item_id] = value
        alerts.raise_alerts(
            assignment, instrument, answers, item_id=item_id, actor=actor.audit_name
        )
    return value


def submit(assignment: Assignment, actor: Actor, language: str) -> tuple[Submission, bool]:
    """Submit once: (the submission, True if this call created it).

    A retry or a second tab gets the existing submission back. Scores, scorer versions and
    alerts are computed from the effective answers; the answers are locked afterwards.
    """
    now = clock.now()
    assignment = _lock(assignment)
    if assignment.submission is not None:
        return assignment.submission, False
    _check_writable(assignment, now)
    instrument = get_instrument(assignment.instrument_id)
    answers = answers_of(assignment, instrument)
    missing = missing_required(instrument, answers)
    if missing:
        raise QuestionnaireError("incomplete", status=422, missing=missing)
    staff_id, reason = _on_behalf(assignment, actor)
    scores = score(instrument, answers)
    counted = {k: _stored(v) for k, v in effective_answers(instrument, answers).items()}
    submission = Submission(
        assignment_id=assignment.id,
        submitted_at=now,
        language=language if language in ("fr", "en") else assignment.participant.language,
        instrument_version=instrument.version,
        answers=counted,
        scores=scores,
        scorer_versions=scorer_versions(instrument),
        entered_by_staff_id=staff_id,
    )
    try:
        with db.session.begin_nested():
            db.session.add(submission)
    except IntegrityError:
        # Another request submitted between our read and our write (SQLite has no row lock).
        db.session.expire(assignment)
        return db.session.scalars(
            sa.select(Submission).where(Submission.assignment_id == assignment.id)
        ).one(), False
    # The loaded row knows its submission too: a second submit in this transaction finds it.
    assignment.submission = submission
    assignment.status = "completed"
    if assignment.started_at is None:
        assignment.started_at = now
    db.session.flush()
    alerts.raise_alerts(assignment, instrument, answers, scores, actor=actor.audit_name)
    raised = [alert.rule_id for alert in alerts_of(assignment)]
    audit.record(
        "questionnaire.submitted",
        "assignment",
        assignment.id,
        after={
            "instrument": instrument.id,
            "version": instrument.version,
            "language": submission.language,
            "answers": counted,
            "scores": scores,
            "alerts": raised,
        },
        reason=reason,
        actor=actor.audit_name,
        stream=assignment.participant.audit_stream,
    )
    return submission, True


def alerts_of(assignment: Assignment) -> list[Alert]:
    """The alerts an assignment's submission raised."""
    return list(
        db.session.scalars(
            sa.select(Alert).where(Alert.assignment_id == assignment.id).order_by(Alert.id)
        )
    )


def submissions_of(participant: Participant, with_answers: bool = False) -> list[Assignment]:
    """The participant's completed assignments, most recent submission first (staff views);
    `with_answers` loads every answer too, in one more statement, for pages that show them."""
    query = (
        sa.select(Assignment)
        .join(Submission, Submission.assignment_id == Assignment.id)
        .where(Assignment.participant_id == participant.id)
        .order_by(Submission.submitted_at.desc(), Assignment.id.desc())
    )
    if with_answers:
        query = query.options(selectinload(Assignment.answers))
    return list(db.session.scalars(query))


# ---------------------------------------------------------------------------------------------
# Unscheduled reports ("report a symptom")


def start_report(participant: Participant) -> Assignment:
    """Open an unscheduled symptom report now, or give back the one left unfinished.

    A report is an assignment of the protocol's unscheduled series, numbered in the order
    they were started; it stays open for the protocol's `open_hours`.
    """
    unscheduled = get_protocol().unscheduled
    if unscheduled is None:
        raise PortalError(_("This study does not take symptom reports here."), 404)
    if participant.status == "withdrawn":
        raise QuestionnaireError("withdrawn")
    now = clock.now()
    mine = sa.select(Assignment).where(
        Assignment.participant_id == participant.id,
        Assignment.series_code == unscheduled.code,
    )
    unfinished = db.session.scalars(
        mine.where(
            Assignment.status.in_(("planned", "in_progress")), Assignment.closes_at > now
        ).order_by(Assignment.id.desc())
    ).first()
    if unfinished is not None:
        return unfinished
    last = db.session.scalar(
        sa.select(sa.func.max(Assignment.occurrence)).where(
            Assignment.participant_id == participant.id,
            Assignment.series_code == unscheduled.code,
        )
    )
    instrument = get_instrument(unscheduled.instrument)
    report = Assignment(
        participant_id=participant.id,
        series_code=unscheduled.code,
        visit_key=unscheduled.code,
        occurrence=0 if last is None else last + 1,
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        opens_at=now,
        closes_at=now + timedelta(hours=unscheduled.open_hours),
        status="planned",
        created_at=now,
    )
    try:
        with db.session.begin_nested():
            db.session.add(report)
    except IntegrityError:
        # A second tap started the same report number at the same moment: use that one.
        return db.session.scalars(mine.order_by(Assignment.id.desc())).first()  # type: ignore[return-value]
    audit.record(
        "report.started",
        "assignment",
        report.id,
        after={"series": report.series_code, "occurrence": report.occurrence},
        actor=participant.audit_name,
        stream=participant.audit_stream,
    )
    return report
