"""The audit viewer's query (admins): one page of the audit trail, filtered."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from patient_portal import clock
from patient_portal.audit import AuditEvent
from patient_portal.extensions import db
from patient_portal.staff.filters import PAGE_SIZE, AuditFilters


def audit_events(filters: AuditFilters) -> tuple[list[AuditEvent], bool]:
    """One page of audit events, newest first, and whether there is a next page."""
    query = sa.select(AuditEvent)
    if filters.actor:
        query = query.where(AuditEvent.actor.contains(filters.actor, autoescape=True))
    if filters.action:
        query = query.where(AuditEvent.action.startswith(filters.action, autoescape=True))
    if filters.entity:
        query = query.where(AuditEvent.entity == filters.entity)
    if filters.start:
        query = query.where(
            AuditEvent.at
            >= datetime.combine(filters.start, datetime.min.time(), clock.now().tzinfo)
        )
    if filters.end:
        query = query.where(
            AuditEvent.at
            < datetime.combine(
                filters.end + timedelta(days=1), datetime.min.time(), clock.now().tzinfo
            )
        )
    rows = db.session.scalars(
        query.order_by(AuditEvent.id.desc())
        .limit(PAGE_SIZE + 1)
        .offset((filters.page - 1) * PAGE_SIZE)
    ).all()
    return list(rows[:PAGE_SIZE]), len(rows) > PAGE_SIZE
