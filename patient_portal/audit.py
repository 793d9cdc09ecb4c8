"""Append-only audit trail: keyed chains, one per stream, and signed checkpoints (21 CFR 11.10(e),
ICH E6(R3)). The design and what it does and does not protect against: docs/audit.md.

Each event belongs to a stream (a participant's, or `staff` for staff and system events) and
carries its position in it (seq), the MAC of the event before it, and its own MAC: HMAC-SHA256
over its content, stream, position and that link, with a key derived from `PORTAL_AUDIT_KEY`,
which the database never holds. A stream's head row (`audit_stream`) is the one thing two
writers of the same stream contend for: the append updates it first, so its row lock (PostgreSQL)
or the database's write lock (SQLite) makes them queue, while two participants' writes never
wait for each other. A trigger on the event table then sets the head to the new event's MAC.

`flask audit checkpoint` writes a signed Merkle tree head over every stream's (id, count, head)
to a file outside the database; `flask audit verify` checks every MAC and link, every head row,
and that every stream still reaches the last checkpoint's count with its head at that position:
deleted tails, truncation, rewriting and forged appends all break one of those.

Events written before the keyed chains (the `legacy` stream, converted by the migration) keep
their unkeyed SHA-256 links; from the first checkpoint on, that chain is pinned there.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask, current_app, has_request_context
from flask.cli import AppGroup
from flask_login import current_user
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from patient_portal import clock
from patient_portal.db import UTCDateTime
from patient_portal.extensions import db

GENESIS_HASH = "0" * 64
# Staff accounts, exports, failed sign-ins of unknown people and system jobs: rare writes, so
# one stream is enough; everything about a participant goes to that participant's stream.
STAFF_STREAM = "staff"
# The unkeyed global chain written before keyed streams existed; nothing may append to it.
LEGACY_STREAM = "legacy"
# Room for a staff e-mail (254 characters, the staff column) with its "staff:" prefix.
NAME_LENGTH = 320
STREAM_LENGTH = 80
CHECKPOINT_VERSION = 1


def participant_stream(study_id: str) -> str:
    """The stream of everything about one participant."""
    return f"participant:{study_id}"


class AuditEvent(db.Model):
    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    stream: Mapped[str] = mapped_column(sa.String(STREAM_LENGTH))
    seq: Mapped[int]
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.wall_time, index=True)
    actor: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    action: Mapped[str] = mapped_column(sa.String(60), index=True)
    entity: Mapped[str] = mapped_column(sa.String(60))
    entity_id: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    before: Mapped[dict | None] = mapped_column(sa.JSON)
    after: Mapped[dict | None] = mapped_column(sa.JSON)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))

    __table_args__ = (
        sa.UniqueConstraint("stream", "seq"),
        sa.Index("ix_audit_event_entity", "entity", "entity_id"),
    )


class AuditStream(db.Model):
    """A stream's head: how many events it has and the MAC of the last one."""

    __tablename__ = "audit_stream"

    stream: Mapped[str] = mapped_column(sa.String(STREAM_LENGTH), primary_key=True)
    seq: Mapped[int]
    head_hash: Mapped[str] = mapped_column(sa.String(64))


def _jsonable(value: Any) -> Any:
    """Dates and other values as the JSON the MAC is computed over."""
    if value is None:
        return None
    return json.loads(json.dumps(value, sort_keys=True, default=_json_default))


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _canonical(content: Any) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _content(event: AuditEvent) -> dict:
    return {
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


def _subkey(purpose: str) -> bytes:
    """A key for one purpose, derived from PORTAL_AUDIT_KEY: a chain MAC can never pass for a
    checkpoint signature or the other way round."""
    key = current_app.config["PORTAL_AUDIT_KEY"].encode()
    return hmac.new(key, f"care-ssc audit {purpose} v1".encode(), hashlib.sha256).digest()


def event_mac(event: AuditEvent, key: bytes | None = None) -> str:
    """The HMAC-SHA256 of an event's content, stream, position and link, under the chain key."""
    content = {**_content(event), "stream": event.stream, "seq": event.seq}
    return hmac.new(key or _subkey("chain"), _canonical(content), hashlib.sha256).hexdigest()


def legacy_hash(event: AuditEvent) -> str:
    """The unkeyed SHA-256 of the events written before the keyed chains."""
    return hashlib.sha256(_canonical(_content(event))).hexdigest()


def current_actor() -> str:
    """Who is acting: the signed-in person, or the system for commands and jobs."""
    if has_request_context() and current_user.is_authenticated:
        return current_user.audit_name
    return "system"


def _current_stream() -> str:
    if has_request_context() and current_user.is_authenticated:
        return current_user.audit_stream
    return STAFF_STREAM


def _claim(session, stream: str) -> tuple[int, str]:
    """Take the next position in the stream and the MAC it links to, holding the head's lock
    until the transaction ends. The update comes before any read of the head: it is the write
    that makes a second writer of the same stream wait (PostgreSQL's row lock, SQLite's write
    lock), so the head it then reads is the one the first writer left."""
    advance = (
        sa.update(AuditStream)
        .where(AuditStream.stream == stream)
        .values(seq=AuditStream.seq + 1)
        .returning(AuditStream.seq, AuditStream.head_hash)
        .execution_options(synchronize_session=False)
    )
    row = session.execute(advance).one_or_none()
    if row is None:
        insert = (
            postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        )
        # A first event: the head is created; a writer racing to create it waits for ours.
        session.execute(
            insert(AuditStream)
            .values(stream=stream, seq=0, head_hash=GENESIS_HASH)
            .on_conflict_do_nothing()
        )
        row = session.execute(advance).one()
    return row.seq, row.head_hash


def record(
    action: str,
    entity: str,
    entity_id: object,
    *,
    before: dict | None = None,
    after: dict | None = None,
    reason: str | None = None,
    actor: str | None = None,
    stream: str | None = None,
) -> AuditEvent:
    """Append an audit event to the current transaction; it commits or rolls back with the change.

    `stream` is whose chain it joins (`participant.audit_stream` for anything about a
    participant); by default the signed-in person's, else the staff and system stream.
    """
    stream = stream or _current_stream()
    if stream == LEGACY_STREAM:
        raise ValueError("the legacy audit chain is closed")
    session = db.session
    seq, prev_hash = _claim(session, stream)
    # Microseconds survive both engines, so the MAC read back equals the MAC written.
    event = AuditEvent(
        stream=stream,
        seq=seq,
        at=clock.wall_time(),
        actor=actor or current_actor(),
        action=action,
        entity=entity,
        entity_id=str(entity_id),
        before=_jsonable(before),
        after=_jsonable(after),
        reason=reason,
        prev_hash=prev_hash,
    )
    event.hash = event_mac(event)
    session.add(event)
    # The insert's trigger writes this MAC into the head row (migration 5d8e2f1a9c63): the
    # head moves in the same statement as the event, one round trip fewer per answer.
    session.flush()
    return event


# Verification


@dataclass(frozen=True)
class ChainBreak:
    """The first thing found wrong: where (an event, a stream, the checkpoint) and what."""

    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


def _events_in_order(batch_size: int) -> Iterator[AuditEvent]:
    """Every event, stream by stream in position order, read in batches (keyset pages)."""
    after: tuple[str, int] | None = None
    while True:
        query = sa.select(AuditEvent).order_by(AuditEvent.stream, AuditEvent.seq)
        if after is not None:
            query = query.where(sa.tuple_(AuditEvent.stream, AuditEvent.seq) > sa.tuple_(*after))
        events = db.session.scalars(query.limit(batch_size)).all()
        if not events:
            return
        yield from events
        after = (events[-1].stream, events[-1].seq)
        db.session.expunge_all()


def stream_heads() -> dict[str, tuple[int, str]]:
    """Every stream's head row: {stream: (count, head MAC)}."""
    rows = db.session.execute(sa.select(AuditStream.stream, AuditStream.seq, AuditStream.head_hash))
    return {stream: (seq, head) for stream, seq, head in rows}


def _check_event(event: AuditEvent, expected_seq: int, expected_prev: str, key: bytes) -> str:
    if event.seq != expected_seq:
        return f"is at position {event.seq}, expected {expected_seq} (events removed)"
    if event.prev_hash != expected_prev:
        return "does not link to the event before it (removed, inserted or rewritten events)"
    expected = legacy_hash(event) if event.stream == LEGACY_STREAM else event_mac(event, key)
    if not hmac.compare_digest(expected, event.hash):
        return "content does not match its MAC (altered, or written without the key)"
    return ""


def verify_chain(batch_size: int = 5000) -> ChainBreak | None:
    """Walk every stream in order; return the first event or head that does not hold, or None.

    The heads are read before the walk: each was committed with its events, so the walk must
    reach every head's position and find the head's MAC there. Events appended meanwhile lie
    beyond the heads read, and their MACs and links are checked like the others.
    """
    key = _subkey("chain")
    heads = stream_heads()
    reached: dict[str, int] = {}
    stream, expected_seq, expected_prev = "", 1, GENESIS_HASH
    for event in _events_in_order(batch_size):
        if event.stream != stream:
            stream, expected_seq, expected_prev = event.stream, 1, GENESIS_HASH
        if problem := _check_event(event, expected_seq, expected_prev, key):
            return ChainBreak(f"event {event.id} (stream {event.stream}, #{event.seq})", problem)
        head = heads.get(stream)
        if head is not None and head[0] == event.seq and head[1] != event.hash:
            return ChainBreak(
                f"stream {stream}", f"its head row does not name event #{event.seq} (head altered)"
            )
        reached[stream] = event.seq
        expected_seq, expected_prev = event.seq + 1, event.hash
    for name, (count, _) in sorted(heads.items()):
        if reached.get(name, 0) < count:
            return ChainBreak(
                f"stream {name}",
                f"its head row says {count} events but the chain ends at"
                f" #{reached.get(name, 0)} (events removed)",
            )
    if headless := sorted(set(reached) - set(heads)):
        # Streams begun during the walk have a head by now.
        heads = stream_heads()
        for name in headless:
            if name not in heads:
                return ChainBreak(f"stream {name}", "has events but no head row (head removed)")
    return None


# Checkpoints: a Merkle tree over the stream heads (RFC 9162, section 2.1)


def _leaf_data(stream: str, count: int, head: str) -> bytes:
    return _canonical([stream, count, head])


def merkle_root(leaves: Sequence[bytes]) -> str:
    """RFC 9162's Merkle tree hash: leaves hashed with 0x00, nodes with 0x01, split at the
    largest power of two below the size."""

    def tree_hash(items: Sequence[bytes]) -> bytes:
        if not items:
            return hashlib.sha256(b"").digest()
        if len(items) == 1:
            return hashlib.sha256(b"\x00" + items[0]).digest()
        split = 1 << ((len(items) - 1).bit_length() - 1)
        left, right = tree_hash(items[:split]), tree_hash(items[split:])
        return hashlib.sha256(b"\x01" + left + right).digest()

    return tree_hash(leaves).hex()


def _tree_head(checkpoint: dict) -> bytes:
    """What the signature covers: the tree head, as a transparency log signs it. The streams
    listed beside it are bound to it through the root."""
    signed = ("version", "at", "tree_size", "events", "root")
    return _canonical({name: checkpoint.get(name) for name in signed})


def make_checkpoint() -> dict:
    """A signed tree head over every stream's committed head, with the leaves it covers."""
    heads = stream_heads()
    streams = [(name, count, head) for name, (count, head) in sorted(heads.items()) if count > 0]
    checkpoint: dict[str, Any] = {
        "version": CHECKPOINT_VERSION,
        "at": clock.wall_time().astimezone(UTC).isoformat(timespec="seconds"),
        "tree_size": len(streams),
        "events": sum(count for _, count, _ in streams),
        "root": merkle_root([_leaf_data(*leaf) for leaf in streams]),
    }
    checkpoint["signature"] = hmac.new(
        _subkey("checkpoint"), _tree_head(checkpoint), hashlib.sha256
    ).hexdigest()
    checkpoint["streams"] = streams
    return checkpoint


def checkpoint_path() -> Path:
    return Path(current_app.config["PORTAL_AUDIT_CHECKPOINT_FILE"])


def write_checkpoint(checkpoint: dict, path: Path) -> None:
    """Append one JSON line and make it durable before saying so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        file.write(json.dumps(checkpoint, separators=(",", ":")) + "\n")
        file.flush()
        os.fsync(file.fileno())


def last_checkpoint(path: Path) -> str | None:
    """The file's last line, or None when there is no checkpoint yet."""
    if not path.exists():
        return None
    with path.open("rb") as file:
        # Read backwards from the end: the file grows by a line every run, for years.
        file.seek(0, os.SEEK_END)
        position, tail = file.tell(), b""
        while position > 0 and b"\n" not in tail.rstrip(b"\n"):
            step = min(65536, position)
            position -= step
            file.seek(position)
            tail = file.read(step) + tail
    lines = tail.decode("utf-8", errors="replace").strip().splitlines()
    return lines[-1] if lines else None


def _events_at(positions: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """The MACs of the events at these (stream, position)s, a batch at a time."""
    found: dict[tuple[str, int], str] = {}
    for start in range(0, len(positions), 500):
        batch = positions[start : start + 500]
        rows = db.session.execute(
            sa.select(AuditEvent.stream, AuditEvent.seq, AuditEvent.hash).where(
                sa.tuple_(AuditEvent.stream, AuditEvent.seq).in_(batch)
            )
        )
        found.update({(stream, seq): mac for stream, seq, mac in rows})
    return found


def verify_checkpoint(line: str) -> ChainBreak | None:
    """Check a checkpoint line's signature and root, then that every stream still reaches its
    checkpointed count with the checkpointed MAC at that position. Run after verify_chain: the
    chains then vouch for every event before those positions."""
    where = "last checkpoint"
    try:
        checkpoint = json.loads(line)
        streams = [(str(s), int(c), str(h)) for s, c, h in checkpoint["streams"]]
        signature = str(checkpoint["signature"])
    except (ValueError, KeyError, TypeError):
        return ChainBreak(where, "is not a checkpoint line (file damaged)")
    where = f"checkpoint of {checkpoint.get('at')}"
    expected = hmac.new(_subkey("checkpoint"), _tree_head(checkpoint), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return ChainBreak(where, "signature does not match (forged, or made with another key)")
    root = merkle_root([_leaf_data(*leaf) for leaf in streams])
    if (
        root != checkpoint["root"]
        or checkpoint["tree_size"] != len(streams)
        or checkpoint["events"] != sum(count for _, count, _ in streams)
    ):
        return ChainBreak(where, "its streams do not recompute its signed Merkle root (edited)")
    heads = stream_heads()
    found = _events_at([(stream, count) for stream, count, _ in streams])
    for stream, count, head in streams:
        now_count = heads.get(stream, (0, ""))[0]
        if now_count < count or (stream, count) not in found:
            return ChainBreak(
                f"stream {stream}",
                f"had {count} events at the {where}, now {now_count} (events removed)",
            )
        if not hmac.compare_digest(found[stream, count], head):
            return ChainBreak(
                f"stream {stream}",
                f"event #{count} is not the one of the {where} (chain rewritten)",
            )
        if stream == LEGACY_STREAM and now_count != count:
            return ChainBreak(f"stream {stream}", "events appended to the closed legacy chain")
    return None


audit_cli = AppGroup("audit", help="Audit trail commands.")


@audit_cli.command("verify")
@click.option(
    "--require-checkpoint",
    is_flag=True,
    help="Fail when there is no checkpoint (production, once checkpoints run on a schedule).",
)
def verify_command(require_checkpoint: bool) -> None:
    """Check every chain, every head and the last checkpoint; exit 1 naming the first problem."""
    broken = verify_chain()
    path = checkpoint_path()
    line = last_checkpoint(path) if broken is None else None
    if broken is None and line is not None:
        broken = verify_checkpoint(line)
    if broken is None and line is None and require_checkpoint:
        broken = ChainBreak(str(path), "no checkpoint (file missing or empty)")
    if broken is not None:
        click.echo(f"Audit trail broken at {broken}", err=True)
        raise SystemExit(1)
    heads = stream_heads()
    events = sum(count for count, _ in heads.values())
    click.echo(f"Audit trail intact: {events} events in {len(heads)} streams.")
    if line is None:
        click.echo(
            f"No checkpoint in {path}: removed tails and truncation cannot be detected"
            " until `flask audit checkpoint` runs.",
            err=True,
        )
    else:
        click.echo(f"The last checkpoint ({json.loads(line)['at']}) holds.")


@audit_cli.command("checkpoint")
def checkpoint_command() -> None:
    """Append a signed checkpoint of every stream's head to PORTAL_AUDIT_CHECKPOINT_FILE."""
    checkpoint = make_checkpoint()
    path = checkpoint_path()
    write_checkpoint(checkpoint, path)
    click.echo(
        f"Checkpoint {checkpoint['at']}: {checkpoint['events']} events in"
        f" {checkpoint['tree_size']} streams, root {checkpoint['root']}, written to {path}."
    )


def init_app(app: Flask) -> None:
    app.cli.add_command(audit_cli)
