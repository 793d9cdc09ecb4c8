"""The audit trail: written with the change, chained, and checked by `flask audit verify`."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from patient_portal import audit
from patient_portal.audit import AuditEvent, verify_chain
from patient_portal.extensions import db


def _write_events(count: int) -> list[AuditEvent]:
    events = [
        audit.record(
            "participant.updated",
            "participant",
            n,
            before={"day0": None},
            after={"day0": "2026-12-01"},
            reason="test",
        )
        for n in range(count)
    ]
    db.session.commit()
    return events


def test_events_link_to_the_one_before(app):
    first, second, _ = _write_events(3)
    assert first.prev_hash == audit.GENESIS_HASH
    assert second.prev_hash == first.hash
    assert verify_chain() is None


def test_an_event_rolls_back_with_the_change_it_records(app, make_participant):
    participant = make_participant()
    events_before = db.session.scalar(sa.select(sa.func.count(AuditEvent.id)))
    participant.language = "en"
    audit.record("participant.language", "participant", participant.id)
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id))) == events_before


def test_verify_passes_on_an_intact_chain(app, runner):
    _write_events(3)
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0
    assert "3 events" in result.output


def _raw(sql: str) -> None:
    with db.engine.begin() as connection:
        connection.execute(sa.text(sql))


@pytest.mark.parametrize(
    ("tamper", "broken_id"),
    [
        ("UPDATE audit_event SET reason = 'nothing happened' WHERE id = 2", 2),
        ("DELETE FROM audit_event WHERE id = 2", 3),
    ],
)
def test_verify_names_the_first_broken_event(app, runner, tamper, broken_id):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL refuses the tampering itself; see the trigger test")
    _write_events(4)
    _raw(tamper)
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert f"event {broken_id}" in result.output


def test_verify_detects_an_inserted_event(app, runner):
    _write_events(2)
    first = db.session.get(AuditEvent, 1)
    forged = AuditEvent(
        at=first.at,
        actor="intruder",
        action="x",
        entity="y",
        entity_id="1",
        prev_hash="f" * 64,
        hash="e" * 64,
    )
    db.session.add(forged)
    db.session.commit()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert f"event {forged.id}" in result.output


def test_postgresql_refuses_update_and_delete(app):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the trigger exists on PostgreSQL only")
    _write_events(1)
    for statement in ("UPDATE audit_event SET actor = 'x'", "DELETE FROM audit_event"):
        with pytest.raises(DBAPIError, match="append-only"):
            _raw(statement)
