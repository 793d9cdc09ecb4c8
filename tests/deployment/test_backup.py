"""Backup and restore as docs/deployment.md describes them, on PostgreSQL: deploy/backup.sh, a
new database, deploy/restore.sh (which grants the app role again and checks the audit trail and
the tallies), then the restored portal shows the participant's answers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from tests.deployment.conftest import APP_ROLE, OWNER_ROLE, ROOT, Deployment, portal_on


@pytest.fixture
def restored_database(deployment: Deployment) -> Iterator[str]:
    """A new, empty database owned by the migration owner, as the restore needs; its URL."""
    owner_url = sa.make_url(deployment.owner_env["DATABASE_URL"])
    name = f"{owner_url.database}_restored"
    admin = sa.create_engine(
        owner_url.set(drivername="postgresql+psycopg", username="postgres", database="postgres")
    )
    with admin.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}" OWNER "{OWNER_ROLE}"'))
    yield owner_url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _answered_participant(deployment: Deployment) -> tuple[str, str]:
    """A JGH participant whose first infusion is today and who has answered the overall-health
    question with 7; their study ID and the coordinator's e-mail."""
    from patient_portal.accounts import services as accounts
    from patient_portal.extensions import db
    from patient_portal.questionnaires import services as questionnaires
    from patient_portal.questionnaires.models import Assignment

    with portal_on(deployment.owner_env["DATABASE_URL"], deployment):
        coordinator, _ = accounts.create_staff(
            "backup.desk@jgh.example", "Backup Desk", "coordinator", ["JGH"], None
        )
        today = datetime.now(ZoneInfo("America/Toronto")).date()
        participant, _ = accounts.enrol_participant("JGH", "en", today, coordinator)
        assignment = db.session.scalars(
            sa.select(Assignment).where(
                Assignment.participant_id == participant.id,
                Assignment.instrument_id == "patient_global",
            )
        ).first()
        assert assignment is not None
        questionnaires.save_answer(assignment, "global", "7", participant)
        questionnaires.submit(assignment, participant, "en")
        db.session.commit()
        return participant.study_id, coordinator.email


def _run(*command: str, env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_backup_restores_into_a_verified_portal(
    deployment: Deployment, restored_database, tmp_path
):
    study_id, coordinator_email = _answered_participant(deployment)
    # The hourly checkpoint (care-ssc-hourly.timer), then the nightly backup.
    _run(str(ROOT / ".venv/bin/flask"), "audit", "checkpoint", env=deployment.owner_env)
    backup = tmp_path / "care-ssc.dump"
    _run(
        str(ROOT / "deploy/backup.sh"),
        deployment.owner_env["DATABASE_URL"],
        str(backup),
        env=deployment.owner_env,
    )
    output = _run(
        str(ROOT / "deploy/restore.sh"),
        str(backup),
        restored_database,
        APP_ROLE,
        env=deployment.owner_env,
    )
    assert "Audit" in output and "verified" in output

    # The restored database, as the app role sees it: the coordinator's page shows the answer.
    app_url = sa.make_url(restored_database).set(username=APP_ROLE)
    with portal_on(app_url.render_as_string(hide_password=False), deployment) as app:
        from patient_portal.accounts.models import StaffUser
        from patient_portal.extensions import db
        from tests.factories import open_session_for

        staff = db.session.scalars(
            sa.select(StaffUser).where(StaffUser.email == coordinator_email)
        ).one()
        client = app.test_client()
        client.set_cookie("portal_session", open_session_for(staff), domain="localhost")
        page = client.get(f"/staff/participants/{study_id}")
        assert page.status_code == 200
        text = page.get_data(as_text=True)
        # In the coordinator's language (French, the portal's default).
        assert "Votre santé en général" in text
        assert "En tenant compte de tout cela" in text
