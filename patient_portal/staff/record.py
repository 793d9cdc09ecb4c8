"""One participant's record as their coordinator reads it: questionnaires and their states,
submitted answers, alerts, and the audit events about them and their records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from patient_portal import clock
from patient_portal.accounts.models import EnrolmentToken, Participant, PasskeyCredential
from patient_portal.audit import AuditEvent
from patient_portal.contacts.models import ContactAttempt
from patient_portal.contacts.services import contacts_of
from patient_portal.extensions import db
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires.models import Alert, Assignment
from patient_portal.questionnaires.states import state_expression, visit_key_expression
from patient_portal.schedule.models import Visit
from patient_portal.schedule.services import timeline
from patient_portal.timezones import local_instant, local_today


def participant_assignments(participant: Participant, now: datetime | None = None) -> list[dict]:
    """The participant's questionnaires (not the weekly ones still to come), with their state."""
    now = now or clock.now()
    state = state_expression(now).label("state")
    rows = db.session.execute(
        sa.select(Assignment, visit_key_expression().label("visit"), state)
        .outerjoin(Visit, Visit.id == Assignment.visit_id)
        .where(Assignment.participant_id == participant.id)
        .where(sa.or_(Assignment.visit_id.is_not(None), Assignment.opens_at <= now))
        .order_by(Assignment.opens_at, Assignment.id)
    ).all()
    return [{"assignment": a, "visit": v, "state": s} for a, v, s in rows]


def participant_alerts(participant: Participant) -> list[Alert]:
    """All of the participant's alerts, unacknowledged first, then the most recent."""
    return list(
        db.session.scalars(
            sa.select(Alert)
            .where(Alert.participant_id == participant.id)
            .order_by(Alert.acknowledged_at.is_not(None), Alert.created_at.desc(), Alert.id)
        )
    )


def participant_audit_history(participant: Participant, limit: int = 200) -> list[AuditEvent]:
    """The audit events about this participant and their records, newest first."""
    as_text = sa.String(60)
    own = [
        (
            "assignment",
            sa.select(sa.cast(Assignment.id, as_text)).where(
                Assignment.participant_id == participant.id
            ),
        ),
        (
            "visit",
            sa.select(sa.cast(Visit.id, as_text)).where(Visit.participant_id == participant.id),
        ),
        (
            "alert",
            sa.select(sa.cast(Alert.id, as_text)).where(Alert.participant_id == participant.id),
        ),
        (
            "contact_attempt",
            sa.select(sa.cast(ContactAttempt.id, as_text)).where(
                ContactAttempt.participant_id == participant.id
            ),
        ),
        # Links issued and passkeys added: who could sign in as the participant, and why.
        (
            "enrolment_token",
            sa.select(sa.cast(EnrolmentToken.id, as_text)).where(
                EnrolmentToken.participant_id == participant.id
            ),
        ),
        (
            "passkey",
            sa.select(sa.cast(PasskeyCredential.id, as_text)).where(
                PasskeyCredential.participant_id == participant.id
            ),
        ),
    ]
    conditions = [
        sa.and_(
            AuditEvent.entity == "participant",
            AuditEvent.entity_id.in_(
                [participant.study_id, str(participant.id), participant.audit_name]
            ),
        ),
        AuditEvent.actor == participant.audit_name,
        *[
            sa.and_(AuditEvent.entity == entity, AuditEvent.entity_id.in_(ids))
            for entity, ids in own
        ],
    ]
    return list(
        db.session.scalars(
            sa.select(AuditEvent)
            .where(sa.or_(*conditions))
            .order_by(AuditEvent.id.desc())
            .limit(limit)
        )
    )


@dataclass(frozen=True)
class Summary:
    """What a coordinator needs first about a participant, at the top of their page."""

    next_visit: Visit | None
    overdue_visits: list[Visit]
    open_alerts: int
    urgent_alerts: int
    last_contact: ContactAttempt | None
    closed_this_month: int
    completed_this_month: int

    @property
    def completion(self) -> float | None:
        if not self.closed_this_month:
            return None
        return self.completed_this_month / self.closed_this_month


def participant_summary(participant: Participant, now: datetime | None = None) -> Summary:
    """Next visit, open alerts, last contact and this month's completion of one participant."""
    now = now or clock.now()
    zone = get_protocol().site(participant.site_code).zone
    month_starts = local_instant(local_today(zone, now).replace(day=1), zone)
    alerts = db.session.execute(
        sa.select(Alert.severity, sa.func.count(Alert.id))
        .where(Alert.participant_id == participant.id, Alert.acknowledged_at.is_(None))
        .group_by(Alert.severity)
    ).all()
    by_severity = dict(alerts)
    closed, completed = db.session.execute(
        sa.select(
            sa.func.count(Assignment.id),
            sa.func.sum(sa.case((Assignment.status == "completed", 1), else_=0)),
        ).where(
            Assignment.participant_id == participant.id,
            Assignment.status != "withdrawn",
            Assignment.closes_at >= month_starts,
            Assignment.closes_at <= now,
        )
    ).one()
    latest = contacts_of(participant, limit=1)
    entries = timeline(participant, now)
    return Summary(
        next_visit=next((e.visit for e in entries if e.state == "next"), None),
        # Planned, and its day or window is behind us: nobody said what happened.
        overdue_visits=[e.visit for e in entries if e.state == "past"],
        open_alerts=sum(by_severity.values()),
        urgent_alerts=by_severity.get("urgent", 0),
        last_contact=latest[0] if latest else None,
        closed_this_month=closed or 0,
        completed_this_month=int(completed or 0),
    )
