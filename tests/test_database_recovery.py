"""Connections the database dropped (a restart, an administrator, an idle timeout) are replaced
before a request uses them, without a ping at every checkout."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from patient_portal.extensions import db


@pytest.mark.commits
def test_the_next_request_after_the_database_dropped_its_connections_succeeds(
    app, make_app, make_participant, sign_in
):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server connections to drop")
    # Its connections carry a name, so that only they are dropped, not the test's own.
    options = {"pool_recycle": 3600, "connect_args": {"application_name": "recovery_test"}}
    portal = make_app(
        {**app.config, "PORTAL_DB_PING_AFTER": 1, "SQLALCHEMY_ENGINE_OPTIONS": options}
    )
    participant = make_participant()
    client = portal.test_client()
    sign_in(client, participant)
    assert client.get("/home").status_code == 200  # the pool now holds a live connection

    admin = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    with admin.connect() as connection:
        dropped = connection.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'recovery_test'"
            ),
        ).scalar()
    admin.dispose()
    assert dropped >= 1

    time.sleep(1.2)  # idle for longer than PORTAL_DB_PING_AFTER: the pool checks it first
    assert client.get("/home").status_code == 200
    assert client.get("/questionnaires").status_code == 200
