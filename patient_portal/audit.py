"""Append-only audit trail, hash-chained (21 CFR 11.10(e), ICH E6(R3)).

Each event carries the hash of the one before it, and its own hash over its content and that
link. Altering, removing or inserting a row breaks the chain at that row, which
`flask audit verify` reports. The unique index on prev_hash stops two writers from forking the
chain; on PostgreSQL an advisory lock makes them queue instead of failing, and a trigger refuses
UPDATE and DELETE on the table.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask, has_request_context
from flask.cli import AppGroup
from flask_login import current_user
from sqlalchemy.orm import Mapped, mapped_column

from patient_portal import clock
from patient_portal.db import UTCDateTime
from patient_portal.extensions import db

GENESIS_HASH = "0" * 64
# Any constant works; it only has to be the same for every writer of the chain.
_ADVISORY_LOCK_KEY = 7_230_412


class AuditEvent(db.Model):
    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.wall_time, index=True)
    actor: Mapped[str] = mapped_column(sa.String(120))
    action: Mapped[str] = mapped_column(sa.String(60), index=True)
    entity: Mapped[str] = mapped_column(sa.String(60))
    entity_id: Mapped[str] = mapped_column(sa.String(60))
    before: Mapped[dict | None] = mapped_column(sa.JSON)
    after: Mapped[dict | None] = mapped_column(sa.JSON)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    prev_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    hash: Mapped[str] = mapped_column(sa.String(64), unique=True)

    __table_args__ = (sa.Index("ix_audit_event_entity", "entity", "entity_id"),)


def _jsonable(value: Any) -> Any:
    """Dates and other values as the JSON the hash is computed over."""
    if value is None:
        return None
    return json.loads(json.dumps(value, sort_keys=True, default=_json_default))


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def event_hash(event: AuditEvent) -> str:
    """The SHA-256 of an event's content and the hash it links to."""
    content = {
        "at": event.at.isoformat(timespec="microseconds"),
        "actor": event.actor,
        "action": event.action,
        "entity": event.entity,
        "entity_id": event.entity_id,
        "before": event.before,
        "after": event.after,
        "reason": event.reason,
        "prev_hash": event.prev_hash,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def current_actor() -> str:
    """Who is acting: the signed-in person, or the system for commands and jobs."""
    if has_request_context() and current_user.is_authenticated:
        return current_user.audit_name
    return "system"


def record(
    action: str,
    entity: str,
    entity_id: object,
    *,
    before: dict | None = None,
    after: dict | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> AuditEvent:
    """Append an audit event to the current transaction; it commits or rolls back with the change."""
    session = db.session
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_LOCK_KEY)))
    last_hash = session.scalar(sa.select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1))
    # Microseconds survive both engines, so the hash read back equals the hash written.
    event = AuditEvent(
        at=clock.wall_time(),
        actor=actor or current_actor(),
        action=action,
        entity=entity,
        entity_id=str(entity_id),
        before=_jsonable(before),
        after=_jsonable(after),
        reason=reason,
        prev_hash=last_hash or GENESIS_HASH,
    )
    event.hash = event_hash(event)
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    problem: str


def verify_chain(batch_size: int = 5000) -> ChainBreak | None:
    """Walk the chain in order; return the first event that does not hold, or None."""
    expected_prev = GENESIS_HASH
    last_id = 0
    while True:
        events = db.session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.id > last_id)
            .order_by(AuditEvent.id)
            .limit(batch_size)
        ).all()
        if not events:
            return None
        for event in events:
            if event.prev_hash != expected_prev:
                return ChainBreak(
                    event.id, "does not link to the event before it (removed or inserted rows)"
                )
            if event_hash(event) != event.hash:
                return ChainBreak(event.id, "content does not match its hash (altered row)")
            expected_prev = event.hash
            last_id = event.id
        db.session.expunge_all()


audit_cli = AppGroup("audit", help="Audit trail commands.")


@audit_cli.command("verify")
def verify_command() -> None:
    """Check the audit chain; exit 1 naming the first broken event."""
    broken = verify_chain()
    count = db.session.scalar(sa.select(sa.func.count(AuditEvent.id)))
    if broken is not None:
        click.echo(f"Audit chain broken at event {broken.event_id}: {broken.problem}", err=True)
        raise SystemExit(1)
    click.echo(f"Audit chain intact: {count} events.")


def init_app(app: Flask) -> None:
    app.cli.add_command(audit_cli)
