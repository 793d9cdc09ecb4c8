"""Declarative base, the schema's naming convention, a UTC datetime column type, and the
connection pool's checks."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

# One convention for every constraint, so migrations name things the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.types.TypeDecorator):
    """Aware datetimes in and out, stored as UTC on every engine.

    SQLite has no time zone type and PostgreSQL's timestamptz converts on the session's zone;
    storing naive UTC everywhere and re-attaching UTC on the way out gives one behaviour.
    """

    impl = sa.DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a time zone first")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def set_sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """Foreign keys on, WAL for concurrent readers, and a busy timeout instead of instant errors."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def ping_connections_idle_for(engine: sa.Engine, seconds: float) -> None:
    """Check a pooled connection with `SELECT 1` only when it has sat unused for `seconds`.

    A connection taken again within moments of its last request is alive; pinging it (as
    `pool_pre_ping` does at every checkout) costs a round trip per request for nothing. One that
    waited longer may have been closed by a database restart or an idle timeout: it is pinged,
    and if the ping fails the pool discards it and connects again before the request sees it
    (SQLAlchemy's "pessimistic" recipe, raising DisconnectionError at checkout).
    """

    @sa.event.listens_for(engine, "checkin")
    def remember_when(dbapi_connection, record) -> None:
        record.info["returned_at"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection, record, proxy) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is None or time.monotonic() - returned_at <= seconds:
            return
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        except Exception as error:
            raise sa.exc.DisconnectionError() from error
        finally:
            with contextlib.suppress(Exception):  # a dead connection may refuse even that
                cursor.close()
