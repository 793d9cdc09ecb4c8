"""Fixtures: one app for the whole run, on a database migrated once, and each test inside a
transaction that is rolled back at its end; the test's and the views' commits only release
savepoints.

A test marked `commits` (its data must be seen by other connections: threads, processes, a
restarted server) or one that changes `settings` before asking for `app` gets an app of its own
and commits for real; every table is emptied after it.

DATABASE_URL picks the engine (PostgreSQL in CI's second run); without it, an SQLite file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy.session import Session

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
        "PORTAL_AUDIT_KEY": "test-audit-key-fixed-so-that-every-app-of-the-run-agrees",
        # Never a developer's instance/ file: a test that checkpoints points this at its tmp_path.
        "PORTAL_AUDIT_CHECKPOINT_FILE": os.devnull,
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


RESTART_SEQUENCES = (
    "SELECT setval((quote_ident(schemaname) || '.' || quote_ident(sequencename))::regclass, 1,"
    " false) FROM pg_sequences WHERE schemaname = current_schema()"
)


def _empty_tables() -> None:
    tables = [t.name for t in db.metadata.sorted_tables]
    if db.engine.dialect.name == "postgresql":
        # The audit tables' triggers refuse TRUNCATE; the tests' superuser sets them aside.
        db.session.execute(sa.text("SET LOCAL session_replication_role = replica"))
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


class JoinedSession(Session):
    """Flask-SQLAlchemy's session, except that where it picks an engine that a test has joined
    to a connection, it takes that connection. (Flask-SQLAlchemy 3 picks the app's engine before
    SQLAlchemy would look at a session's `bind`, and other apps of the test keep their own.)"""

    joined: dict[sa.Engine, sa.Connection] = {}

    def get_bind(self, *args, **kwargs):
        bind = super().get_bind(*args, **kwargs)
        return self.joined.get(bind, bind)

    def close(self) -> None:
        # Closing rolls back to the session's savepoint, and with it whatever was written inside
        # it: also the session bookkeeping that db.engine.begin() wrote in the meantime, which in
        # production has a connection of its own. A session that wrote nothing releases its
        # savepoint instead, the same outcome for its own work, and leaves its objects loaded
        # as closing does.
        if self.joined and self.in_transaction() and isinstance(self.get_bind(), sa.Connection):
            wrote = self.info.get("wrote") or self.new or self.dirty or self.deleted
            if not wrote:
                expire_on_commit, self.expire_on_commit = self.expire_on_commit, False
                try:
                    self.commit()
                finally:
                    self.expire_on_commit = expire_on_commit
        super().close()


@sa.event.listens_for(JoinedSession, "after_flush")
def _flushed(session: Session, context) -> None:
    session.info["wrote"] = True


@sa.event.listens_for(JoinedSession, "do_orm_execute")
def _executed(state: sa.orm.ORMExecuteState) -> None:
    if not state.is_select:
        state.session.info["wrote"] = True


@sa.event.listens_for(JoinedSession, "after_transaction_end")
def _ended(session: Session, transaction: sa.orm.SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop("wrote", None)


@pytest.fixture(scope="session")
def shared_app(database_url: str) -> Iterator[Flask]:
    """The app of every test that keeps the default settings and needs no real commit."""
    db.session.session_factory.class_ = JoinedSession
    # Only matters where the bind is a connection: a commit then releases a savepoint.
    db.session.session_factory.configure(join_transaction_mode="create_savepoint")
    app = create_app(_test_settings(database_url))
    app.test_client_class = FreshContextClient
    yield app
    with app.app_context():
        db.engine.dispose()


@contextmanager
def _state_restored(app: Flask) -> Iterator[None]:
    """The shared app's settings and registries as they were: tests change app.config, add to
    hook lists, and fill caches (dashboards) that must not answer the next test."""
    config = dict(app.config)
    extensions = dict(app.extensions)
    dicts = {name: dict(value) for name, value in extensions.items() if isinstance(value, dict)}
    lists = {name: list(value) for name, value in extensions.items() if isinstance(value, list)}
    try:
        yield
    finally:
        app.config.clear()
        app.config.update(config)
        app.extensions.clear()
        app.extensions.update(extensions)
        # In place: other objects (WhiteNoise's manifest) hold the same dict or list.
        for name, items in dicts.items():
            extensions[name].clear()
            extensions[name].update(items)
        for name, elements in lists.items():
            extensions[name][:] = elements


@contextmanager
def _rolled_back(app: Flask) -> Iterator[None]:
    """Every session of the test, and db.engine.begin(), on one connection whose transaction is
    rolled back at the end; a commit only releases a savepoint (SQLAlchemy's recipe for joining
    a session into an external transaction)."""
    engine = db.engine
    connection = engine.connect()
    outer = connection.begin()
    sqlite = connection.connection.driver_connection if engine.dialect.name == "sqlite" else None
    if sqlite is not None:
        # Python 3.11's sqlite3 opens a transaction only before a write, so the first SAVEPOINT
        # would open it instead, and releasing that savepoint would commit. The driver stands
        # aside and the outer transaction is an explicit BEGIN (SQLAlchemy's pysqlite recipe).
        isolation_level = sqlite.isolation_level
        sqlite.isolation_level = None
        connection.exec_driver_sql("BEGIN")

    @contextmanager
    def begin() -> Iterator[sa.Connection]:
        with connection.begin_nested():
            yield connection

    JoinedSession.joined[engine] = connection
    try:
        with _state_restored(app), pytest.MonkeyPatch.context() as patch:
            # Session bookkeeping writes through db.engine.begin(), outside the request's session.
            patch.setattr(engine, "begin", begin)
            yield
    finally:
        db.session.remove()
        del JoinedSession.joined[engine]
        outer.rollback()
        if sqlite is not None:
            sqlite.isolation_level = isolation_level
        else:
            # Sequences ignore rollbacks: the next test numbers its rows from 1, as after
            # TRUNCATE ... RESTART IDENTITY.
            with connection.begin():
                connection.exec_driver_sql(RESTART_SEQUENCES)
        connection.close()


@contextmanager
def _committed() -> Iterator[None]:
    """Real commits; every table emptied after the test, and the app's connections closed."""
    try:
        yield
    finally:
        db.session.rollback()
        _empty_tables()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def settings(database_url: str) -> dict:
    """The test configuration; a test may change it before asking for `app`."""
    return _test_settings(database_url)


@pytest.fixture
def app(request: pytest.FixtureRequest, settings: dict, database_url: str) -> Iterator[Flask]:
    commits = request.node.get_closest_marker("commits") is not None
    if settings == _test_settings(database_url) and not commits:
        app = request.getfixturevalue("shared_app")
        isolation = _rolled_back(app)
    else:
        app = create_app(settings)
        app.test_client_class = FreshContextClient
        isolation = _committed()
    with app.app_context(), isolation:
        # With Redis the counters outlive an app: every test starts with a full budget.
        limiter.reset()
        yield app


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
