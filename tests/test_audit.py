"""The audit trail: written with the change, one keyed chain per stream, signed checkpoints kept
outside the database, and `flask audit verify` finding every kind of tampering the review tried:
altered rows, removed tails, truncation, rewriting with recomputed hashes and forged appends."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.exc import DBAPIError

from patient_portal import audit
from patient_portal.accounts.services import create_staff, withdraw_participant
from patient_portal.audit import AuditEvent, AuditStream, verify_chain
from patient_portal.extensions import db

ANN = audit.participant_stream("JGH-001")
BOB = audit.participant_stream("JGH-002")


def _write_events(count: int, stream: str = ANN) -> list[AuditEvent]:
    events = [
        audit.record(
            "answer.saved",
            "assignment",
            n,
            before={"item": "pain", "value": 2},
            after={"item": "pain", "value": 3},
            reason="test",
            stream=stream,
        )
        for n in range(count)
    ]
    db.session.commit()
    return events


def _tamper(*statements: str) -> None:
    """What a database owner can do: on PostgreSQL, set the audit triggers aside first."""
    postgresql = db.engine.dialect.name == "postgresql"
    with db.engine.begin() as connection:
        for table in ("audit_event", "audit_stream"):
            if postgresql:
                connection.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for statement in statements:
            connection.exec_driver_sql(statement)
        for table in ("audit_event", "audit_stream"):
            if postgresql:
                connection.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    db.session.expire_all()


def _truncate() -> str:
    if db.engine.dialect.name == "postgresql":
        return "TRUNCATE audit_event, audit_stream"
    return "DELETE FROM audit_event; DELETE FROM audit_stream"


@pytest.fixture
def checkpoints(app, tmp_path) -> Path:
    path = tmp_path / "audit-checkpoints.jsonl"
    app.config["PORTAL_AUDIT_CHECKPOINT_FILE"] = str(path)
    return path


def _verify(runner, *options: str):
    return runner.invoke(args=["audit", "verify", *options])


def _checkpoint(runner) -> None:
    result = runner.invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 0, result.output


# Chains


def test_each_participant_has_a_chain_of_their_own(app):
    ann_first, ann_second = _write_events(2, ANN)
    (bob_first,) = _write_events(1, BOB)
    assert (ann_first.seq, ann_second.seq, bob_first.seq) == (1, 2, 1)
    assert ann_first.prev_hash == bob_first.prev_hash == audit.GENESIS_HASH
    assert ann_second.prev_hash == ann_first.hash
    heads = audit.stream_heads()
    assert heads[ANN] == (2, ann_second.hash)
    assert heads[BOB] == (1, bob_first.hash)
    assert verify_chain() is None


def test_events_about_a_participant_join_their_stream_whoever_acts(app, make_participant):
    participant = make_participant(study_id="JGH-007")
    staff, _ = create_staff("a@example.org", "A", "coordinator", ["JGH"], None)
    withdraw_participant(participant, staff, "moved away")
    db.session.commit()
    events = db.session.execute(sa.select(AuditEvent.action, AuditEvent.actor, AuditEvent.stream))
    streams = {action: (actor, stream) for action, actor, stream in events}
    assert streams["staff.created"] == ("system", audit.STAFF_STREAM)
    assert streams["participant.withdrawn"] == ("staff:a@example.org", "participant:JGH-007")
    assert participant.audit_stream == "participant:JGH-007"


def test_the_mac_needs_the_key(app):
    (event,) = _write_events(1)
    assert event.hash != audit.legacy_hash(event)
    app.config["PORTAL_AUDIT_KEY"] = "another-key-of-at-least-thirty-two-chars"
    assert audit.event_mac(event) != event.hash


def test_an_event_rolls_back_with_the_change_it_records(app, make_participant):
    participant = make_participant()
    events_before = db.session.scalar(sa.select(sa.func.count(AuditEvent.id)))
    participant.language = "en"
    audit.record("participant.language", "participant", participant.id)
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id))) == events_before
    assert verify_chain() is None


def test_the_legacy_chain_is_closed(app):
    with pytest.raises(ValueError, match="closed"):
        audit.record("x", "y", 1, stream=audit.LEGACY_STREAM)


def test_a_staff_email_of_any_allowed_length_is_audited(app):
    email = "a" * 64 + "@" + "b" * 177 + ".example.org"
    assert len(email) == 254
    staff, _ = create_staff(email, "Long Address", "admin", [], None)
    audit.record("staff.updated", "staff", staff.email, actor=staff.audit_name)
    db.session.commit()
    stored = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.entity == "staff")).all()
    assert {event.entity_id for event in stored} == {email}
    assert stored[-1].actor == f"staff:{email}"
    assert verify_chain() is None


# Verify: the chains


def test_verify_passes_on_an_intact_trail(app, runner, checkpoints):
    _write_events(3)
    _write_events(2, BOB)
    result = _verify(runner)
    assert result.exit_code == 0
    assert "5 events in 2 streams" in result.output
    assert "No checkpoint" in result.output


def test_verify_names_an_altered_event(app, runner):
    _, second, _ = _write_events(3)
    _tamper(
        f'UPDATE audit_event SET after = \'{{"item": "pain", "value": 0}}\' WHERE id = {second.id}'
    )
    result = _verify(runner)
    assert result.exit_code == 1
    assert f"event {second.id}" in result.output
    assert "does not match its MAC" in result.output


def test_verify_names_a_removed_event(app, runner):
    _, second, third = _write_events(3)
    _tamper(f"DELETE FROM audit_event WHERE id = {second.id}")
    result = _verify(runner)
    assert result.exit_code == 1
    assert f"event {third.id}" in result.output


def test_verify_finds_a_removed_tail_from_the_head_row(app, runner):
    _, _, third = _write_events(3)
    _tamper(f"DELETE FROM audit_event WHERE id = {third.id}")
    result = _verify(runner)
    assert result.exit_code == 1
    assert f"stream {ANN}" in result.output and "events removed" in result.output


def test_verify_finds_a_chain_rewritten_with_recomputed_unkeyed_hashes(app, runner):
    """The review's attack: change an answer, then recompute every later hash with the public
    function, heads included. Without the key, the MACs cannot be recomputed."""
    events = _write_events(3)
    prev = events[0].hash
    statements = []
    with db.session.no_autoflush:
        for event in events[1:]:
            event.after = {"item": "pain", "value": 0}
            event.prev_hash = prev
            forged = audit.legacy_hash(event)
            statements.append(
                f"UPDATE audit_event SET after = '{json.dumps(event.after)}', prev_hash = '{prev}',"
                f" hash = '{forged}' WHERE id = {event.id}"
            )
            prev = forged
    db.session.rollback()
    statements.append(f"UPDATE audit_stream SET head_hash = '{prev}' WHERE stream = '{ANN}'")
    _tamper(*statements)
    result = _verify(runner)
    assert result.exit_code == 1
    assert f"event {events[1].id}" in result.output
    assert "does not match its MAC" in result.output


def test_verify_finds_a_forged_append(app, runner):
    (last,) = _write_events(1)
    _tamper(
        "INSERT INTO audit_event (stream, seq, at, actor, action, entity, entity_id, prev_hash,"
        f" hash) VALUES ('{ANN}', 2, '2026-11-20 15:00:00', 'intruder', 'answer.saved',"
        f" 'assignment', '1', '{last.hash}', '{'e' * 64}')",
        f"UPDATE audit_stream SET seq = 2, head_hash = '{'e' * 64}' WHERE stream = '{ANN}'",
    )
    result = _verify(runner)
    assert result.exit_code == 1
    assert "#2" in result.output and "does not match its MAC" in result.output


# Verify: the checkpoint


def test_checkpoint_appends_a_signed_line(app, runner, checkpoints):
    _write_events(2)
    _write_events(1, BOB)
    _checkpoint(runner)
    _write_events(1, BOB)
    _checkpoint(runner)
    lines = checkpoints.read_text().splitlines()
    assert len(lines) == 2
    last = json.loads(lines[-1])
    assert last["streams"] == [
        [ANN, 2, audit.stream_heads()[ANN][1]],
        [BOB, 2, audit.stream_heads()[BOB][1]],
    ]
    assert (last["tree_size"], last["events"]) == (2, 4)
    assert set(last) == {"version", "at", "tree_size", "events", "root", "signature", "streams"}


def test_verify_holds_with_events_after_the_checkpoint(app, runner, checkpoints):
    _write_events(2)
    _checkpoint(runner)
    _write_events(2)
    _write_events(1, BOB)
    result = _verify(runner, "--require-checkpoint")
    assert result.exit_code == 0, result.output
    assert "The last checkpoint" in result.output and "holds" in result.output


def test_verify_can_require_a_checkpoint(app, runner, checkpoints):
    _write_events(1)
    result = _verify(runner, "--require-checkpoint")
    assert result.exit_code == 1
    assert "no checkpoint" in result.output


def test_verify_finds_a_removed_tail_and_rewound_head(app, runner, checkpoints):
    """Deleting the last events and setting the head back leaves a consistent chain: only the
    checkpoint outside the database still knows there were more."""
    first, second, third = _write_events(3)
    _checkpoint(runner)
    _tamper(
        f"DELETE FROM audit_event WHERE id IN ({second.id}, {third.id})",
        f"UPDATE audit_stream SET seq = 1, head_hash = '{first.hash}' WHERE stream = '{ANN}'",
    )
    assert verify_chain() is None
    result = _verify(runner)
    assert result.exit_code == 1
    assert f"stream {ANN}" in result.output
    assert "had 3 events" in result.output and "now 1" in result.output


def test_verify_finds_truncation(app, runner, checkpoints):
    _write_events(2)
    _write_events(2, BOB)
    _checkpoint(runner)
    _tamper(*_truncate().split("; "))
    result = _verify(runner)
    assert result.exit_code == 1
    assert "events removed" in result.output
    assert "intact" not in result.output


def test_verify_finds_a_rewrite_by_someone_holding_the_key(app, runner, checkpoints):
    """With the key a chain can be recomputed, but not the checkpoint already written out."""
    _, second = _write_events(2)
    _checkpoint(runner)
    with db.session.no_autoflush:
        second.after = {"item": "pain", "value": 0}
        rewritten, mac, event_id = json.dumps(second.after), audit.event_mac(second), second.id
    db.session.rollback()
    _tamper(
        f"UPDATE audit_event SET after = '{rewritten}', hash = '{mac}' WHERE id = {event_id}",
        f"UPDATE audit_stream SET head_hash = '{mac}' WHERE stream = '{ANN}'",
    )
    assert verify_chain() is None
    result = _verify(runner)
    assert result.exit_code == 1
    assert "chain rewritten" in result.output


def test_verify_finds_a_forged_checkpoint(app, runner, checkpoints):
    _write_events(3)
    _checkpoint(runner)
    line = json.loads(checkpoints.read_text())
    line["streams"][0][1] = 2
    line["events"] = 2
    line["root"] = audit.merkle_root([audit._leaf_data(*leaf) for leaf in line["streams"]])
    checkpoints.write_text(json.dumps(line) + "\n")
    result = _verify(runner)
    assert result.exit_code == 1
    assert "signature does not match" in result.output


def test_verify_finds_an_edited_checkpoint_leaf(app, runner, checkpoints):
    _write_events(3)
    _checkpoint(runner)
    line = json.loads(checkpoints.read_text())
    line["streams"][0][1] = 2
    checkpoints.write_text(json.dumps(line) + "\n")
    result = _verify(runner)
    assert result.exit_code == 1
    assert "Merkle root" in result.output


def _legacy_rows(count: int) -> None:
    """Events as the migration leaves those written before keyed chains: stream `legacy`,
    unkeyed SHA-256 links."""
    prev = audit.GENESIS_HASH
    for seq in range(1, count + 1):
        event = AuditEvent(
            stream=audit.LEGACY_STREAM,
            seq=seq,
            at=audit.clock.wall_time(),
            actor="system",
            action="participant.enrolled",
            entity="participant",
            entity_id=str(seq),
            prev_hash=prev,
        )
        event.hash = prev = audit.legacy_hash(event)
        db.session.add(event)
    db.session.add(AuditStream(stream=audit.LEGACY_STREAM, seq=count, head_hash=prev))
    db.session.commit()


def test_the_legacy_chain_verifies_and_is_pinned_by_the_checkpoint(app, runner, checkpoints):
    _legacy_rows(2)
    _write_events(1)
    assert _verify(runner).exit_code == 0
    _checkpoint(runner)
    head = audit.stream_heads()[audit.LEGACY_STREAM][1]
    event = AuditEvent(
        stream=audit.LEGACY_STREAM,
        seq=3,
        at=audit.clock.wall_time(),
        actor="intruder",
        action="participant.enrolled",
        entity="participant",
        entity_id="3",
        prev_hash=head,
    )
    event.hash = audit.legacy_hash(event)
    db.session.add(event)
    db.session.flush()
    db.session.execute(
        sa.update(AuditStream)
        .where(AuditStream.stream == audit.LEGACY_STREAM)
        .values(seq=3, head_hash=event.hash)
    )
    db.session.commit()
    assert verify_chain() is None
    result = _verify(runner)
    assert result.exit_code == 1
    assert "closed legacy chain" in result.output


def test_merkle_root_follows_rfc_9162():
    def leaf(data: bytes) -> bytes:
        return hashlib.sha256(b"\x00" + data).digest()

    def node(left: bytes, right: bytes) -> bytes:
        return hashlib.sha256(b"\x01" + left + right).digest()

    a, b, c = b"a", b"b", b"c"
    assert audit.merkle_root([]) == hashlib.sha256(b"").hexdigest()
    assert audit.merkle_root([a]) == leaf(a).hex()
    # Three leaves split 2 + 1: the largest power of two below the size goes left.
    assert audit.merkle_root([a, b, c]) == node(node(leaf(a), leaf(b)), leaf(c)).hex()


# Concurrency


def _append_in_threads(app, streams: list[str], per_thread: int) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(streams))

    def append(stream: str) -> None:
        with app.app_context():
            try:
                start.wait()
                for n in range(per_thread):
                    audit.record("answer.saved", "assignment", n, stream=stream)
                    db.session.commit()
            except BaseException as error:
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=append, args=(stream,)) for stream in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.commits
def test_concurrent_writers_of_one_stream_queue_and_keep_the_chain(app):
    errors = _append_in_threads(app, [ANN, ANN, ANN, BOB], per_thread=15)
    assert errors == []
    seqs = db.session.scalars(
        sa.select(AuditEvent.seq).where(AuditEvent.stream == ANN).order_by(AuditEvent.seq)
    ).all()
    assert seqs == list(range(1, 46))
    assert audit.stream_heads()[BOB][0] == 15
    assert verify_chain() is None


@pytest.mark.commits
def test_postgresql_two_participants_append_at_the_same_time(app):
    """Two participants' appends open at once, neither waiting; a second append to the same
    participant's stream waits for the first (and here gives up after its lock timeout)."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time by design; PostgreSQL has row locks")
    _write_events(1, ANN)
    _write_events(1, BOB)
    db.session.remove()
    appended = {ANN: threading.Event(), BOB: threading.Event()}
    release = threading.Event()
    outcome: dict[str, str] = {}

    def append(stream: str, key: str, hold: bool) -> None:
        with app.app_context():
            try:
                db.session.execute(sa.text("SET lock_timeout = '2s'"))
                audit.record("answer.saved", "assignment", 1, stream=stream)
                outcome[key] = "appended"
                if hold:
                    appended[stream].set()
                    release.wait(30)
                db.session.commit()
            except DBAPIError as error:
                outcome[key] = type(error.orig).__name__
            finally:
                db.session.remove()

    ann = threading.Thread(target=append, args=(ANN, "ann", True))
    bob = threading.Thread(target=append, args=(BOB, "bob", True))
    ann.start()
    assert appended[ANN].wait(20)
    bob.start()
    # Bob's append went through while Ann's transaction is still open and uncommitted.
    assert appended[BOB].wait(20)
    second_ann = threading.Thread(target=append, args=(ANN, "ann again", False))
    second_ann.start()
    second_ann.join()
    release.set()
    ann.join()
    bob.join()
    assert outcome == {"ann": "appended", "bob": "appended", "ann again": "LockNotAvailable"}
    assert audit.stream_heads()[ANN][0] == audit.stream_heads()[BOB][0] == 2
    assert verify_chain() is None


# PostgreSQL: triggers and the app role


def test_postgresql_refuses_update_delete_and_truncate(app):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the triggers exist on PostgreSQL only")
    _write_events(1)
    for statement in (
        "UPDATE audit_event SET actor = 'x'",
        "DELETE FROM audit_event",
        "TRUNCATE audit_event",
        "DELETE FROM audit_stream",
        "TRUNCATE audit_stream",
    ):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as connection:
            connection.exec_driver_sql(statement)


def test_the_app_role_may_only_insert_and_select_audit_events(app, runner, make_participant):
    """The owner grants a throwaway app role; as that role the app works, but UPDATE, DELETE,
    TRUNCATE and DISABLE TRIGGER on the audit table are refused. The roles vanish with the
    test's transaction."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("roles and privileges are PostgreSQL's; SQLite has none")
    owner, app_role = "portal_owner_test", "portal_app_test"
    connection = db.session.connection()
    connection.exec_driver_sql(f"CREATE ROLE {owner} NOLOGIN")
    connection.exec_driver_sql(f"CREATE ROLE {app_role} NOLOGIN")
    # As after migrations run by the owner role: it owns the schema and every table.
    connection.exec_driver_sql(f"ALTER SCHEMA public OWNER TO {owner}")
    for table in sa.inspect(connection).get_table_names():
        connection.exec_driver_sql(f"ALTER TABLE {table} OWNER TO {owner}")
    connection.exec_driver_sql(f"SET ROLE {owner}")
    # Granted by hand before: the command leaves the role with the app's privileges only.
    connection.exec_driver_sql(f"GRANT ALL ON audit_event TO {app_role}")
    result = runner.invoke(args=["database", "grant-app-role", app_role])
    assert result.exit_code == 0, result.output
    connection.exec_driver_sql(f"SET ROLE {app_role}")
    try:
        # The app's everyday writes: a participant enrolled with visits, assignments and
        # reminders planned, every step audited.
        participant = make_participant()
        participant.language = "en"
        audit.record("participant.language", "participant", participant.id)
        connection.exec_driver_sql("DELETE FROM webauthn_ceremony")
        db.session.commit()
        assert verify_chain() is None
        for statement in (
            "UPDATE audit_event SET actor = 'x'",
            "DELETE FROM audit_event",
            "TRUNCATE audit_event",
            "ALTER TABLE audit_event DISABLE TRIGGER USER",
            "DELETE FROM audit_stream",
            "TRUNCATE audit_stream",
        ):
            with (
                pytest.raises(DBAPIError, match=r"permission denied|must be owner"),
                db.engine.begin() as savepoint,
            ):
                savepoint.exec_driver_sql(statement)
    finally:
        connection.exec_driver_sql("RESET ROLE")


def test_grant_refuses_a_role_that_owns_the_tables(app, runner):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("roles and privileges are PostgreSQL's; SQLite has none")
    result = runner.invoke(args=["database", "grant-app-role", "postgres"])
    assert result.exit_code == 1
    assert "superuser" in result.output


def test_grant_says_sqlite_has_no_roles(app, runner):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL has roles: see the tests above")
    result = runner.invoke(args=["database", "grant-app-role", "portal_app"])
    assert result.exit_code == 1
    assert "PostgreSQL" in result.output


# The migration

KEYED_STREAMS_REVISION = "3f6a2d9c1b47"


@pytest.fixture
def fresh_database_url(database_url: str, tmp_path) -> Iterator[str]:
    """An empty database of the run's engine, dropped after the test."""
    if not database_url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    url = sa.engine.make_url(database_url)
    name = f"{url.database}_migration_test"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        engine.dispose()


def test_upgrade_keeps_earlier_events_as_the_verifiable_legacy_chain(
    make_app, settings, fresh_database_url
):
    """Events written before the keyed chains become the `legacy` stream, still checked by
    their unkeyed hashes; new events start keyed streams beside it."""
    from flask_migrate import downgrade, upgrade

    migrated = make_app({**settings, "SQLALCHEMY_DATABASE_URI": fresh_database_url})
    scripts = ScriptDirectory(str(Path(migrated.root_path).parent / "migrations"))
    before_keyed_streams = scripts.get_revision(KEYED_STREAMS_REVISION).down_revision
    with migrated.app_context():
        upgrade(revision=before_keyed_streams)
        prev = audit.GENESIS_HASH
        for n in range(3):
            event = AuditEvent(
                at=audit.clock.wall_time(),
                actor="system",
                action="participant.enrolled",
                entity="participant",
                entity_id=str(n),
                before=None,
                after={"site": "JGH"},
                reason=None,
                prev_hash=prev,
            )
            event.hash = audit.legacy_hash(event)
            db.session.execute(
                sa.text(
                    "INSERT INTO audit_event (at, actor, action, entity, entity_id, after,"
                    " prev_hash, hash) VALUES (:at, 'system', 'participant.enrolled',"
                    " 'participant', :entity_id, :after, :prev_hash, :hash)"
                ),
                {
                    "at": event.at.replace(tzinfo=None),
                    "entity_id": event.entity_id,
                    "after": json.dumps(event.after),
                    "prev_hash": prev,
                    "hash": event.hash,
                },
            )
            prev = event.hash
        db.session.commit()
        upgrade()
        assert audit.stream_heads() == {audit.LEGACY_STREAM: (3, prev)}
        assert verify_chain() is None
        audit.record("answer.saved", "assignment", 1, stream=ANN)
        db.session.commit()
        assert audit.stream_heads()[ANN][0] == 1
        assert verify_chain() is None
        # Down and up again: every event back in one unkeyed chain, then all of it legacy.
        db.session.remove()
        downgrade(revision=before_keyed_streams)
        upgrade()
        assert list(audit.stream_heads()) == [audit.LEGACY_STREAM]
        assert audit.stream_heads()[audit.LEGACY_STREAM][0] == 4
        assert verify_chain() is None
        db.session.remove()
