"""Fixtures: an app per test on a database migrated once per session and emptied after each test.

DATABASE_URL picks the engine (PostgreSQL in CI's second run); without it, an SQLite file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from patient_portal import clock, create_app
from patient_portal.extensions import db, limiter

pytest_plugins = ["tests.factories"]

ROOT = Path(__file__).resolve().parent.parent


def _test_settings(database_url: str) -> dict:
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": "test-secret-key-that-is-long-enough-for-the-checks",
        "PORTAL_ORIGIN": "http://localhost:5000",
        "PORTAL_RP_ID": "localhost",
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
    }


def _normalise(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database with every migration applied, once for the whole run."""
    url = _normalise(os.environ.get("DATABASE_URL", ""))
    if url:
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.execute(sa.text("DROP SCHEMA public CASCADE"))
            connection.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'portal.sqlite3'}"
    app = create_app(_test_settings(url))
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


def _empty_tables() -> None:
    tables = [t.name for t in db.metadata.sorted_tables]
    if db.engine.dialect.name == "postgresql":
        # TRUNCATE is not an UPDATE or DELETE: the audit trigger rightly does not see it.
        db.session.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    else:
        for table in reversed(tables):
            db.session.execute(sa.text(f"DELETE FROM {table}"))
    db.session.commit()


class FreshContextClient(FlaskClient):
    """A test client whose every request runs in its own app context, as in production.

    The `app` fixture keeps a context open for factories; without this, requests would share
    its `g` (and so a cached locale or signed-in user) and its database session.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture
def settings(database_url: str) -> dict:
    """The test configuration; a test may change it before asking for `app`."""
    return _test_settings(database_url)


@pytest.fixture
def app(settings: dict) -> Iterator[Flask]:
    app = create_app(settings)
    app.test_client_class = FreshContextClient
    with app.app_context():
        # With Redis the counters outlive an app: every test starts with a full budget.
        limiter.reset()
        yield app
        db.session.rollback()
        _empty_tables()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def make_app():
    """make_app(config) -> a further app (production settings, broken database...), disposed after."""
    made: list[Flask] = []

    def make(config: dict | None = None) -> Flask:
        extra = create_app(config)
        extra.test_client_class = FreshContextClient
        made.append(extra)
        return extra

    yield make
    for extra in made:
        with extra.app_context():
            db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


CSRF_PATTERN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token_for(client: FlaskClient, path: str = "/") -> str:
    """The CSRF token of the client's session, read from a page as a browser would."""
    page = client.get(path).get_data(as_text=True)
    match = CSRF_PATTERN.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


@pytest.fixture
def csrf_token():
    return csrf_token_for


class StoppedClock:
    """The portal's clock, stopped at a moment the test moves: now() reads it, now(moment) or
    now.set(moment) moves it."""

    def __call__(self, moment: datetime | None = None) -> datetime:
        if moment is not None:
            self.set(moment)
        return clock.now()

    def set(self, moment: datetime) -> None:
        clock.set_to(moment)


@pytest.fixture
def now() -> Iterator[StoppedClock]:
    """The clock stopped at 20 November 2026, 15:00 UTC, until the test moves it."""
    stopped = StoppedClock()
    stopped.set(datetime(2026, 11, 20, 15, 0, tzinfo=UTC))
    yield stopped
    clock.set_to(None)
