"""Demo data for `make run`: a coordinator and an admin, and participants at every site at
different points of their year. Loaded once; `flask demo links` prints fresh enrolment links."""

from __future__ import annotations

from datetime import timedelta

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup

from patient_portal.accounts import services
from patient_portal.accounts.models import Participant, StaffUser
from patient_portal.db import utcnow
from patient_portal.extensions import db

demo_cli = AppGroup("demo", help="Demo data for trying the portal.")

DEMO_COORDINATOR = "coordinator@demo.care-ssc.example"
DEMO_ADMIN = "admin@demo.care-ssc.example"
# (site, language, days since day 0): spread over the year so every page has something to show.
DEMO_PARTICIPANTS = [
    ("JGH", "fr", 2),
    ("JGH", "en", 40),
    ("JGH", "fr", 200),
    ("CHUM", "fr", -10),
    ("CHUM", "en", 95),
    ("SLS", "fr", 27),
    ("SLS", "en", 300),
]


def load_demo() -> bool:
    """Create the demo people unless the database already has staff; True when loaded."""
    if db.session.scalar(sa.select(sa.func.count(StaffUser.id))):
        return False
    coordinator, _ = services.create_staff(
        DEMO_COORDINATOR, "Camille Demo", "coordinator", ["JGH", "CHUM"], None
    )
    services.create_staff(DEMO_ADMIN, "Alex Demo", "admin", [], None)
    today = utcnow().date()
    for site, language, days in DEMO_PARTICIPANTS:
        participant, _ = services.enrol_participant(
            site, language, today - timedelta(days=days), coordinator
        )
        participant.status = "active"
    db.session.flush()
    return True


@demo_cli.command("load")
def load_command() -> None:
    """Load the demo data once (does nothing when staff accounts exist)."""
    loaded = load_demo()
    db.session.commit()
    click.echo("Demo data loaded." if loaded else "Demo data already present.")


@demo_cli.command("links")
def links_command() -> None:
    """Print a fresh single-use enrolment link for the demo coordinator and a demo participant."""
    coordinator = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == DEMO_COORDINATOR))
    participant = db.session.scalar(sa.select(Participant).where(Participant.study_id == "JGH-001"))
    if coordinator is None or participant is None:
        raise click.ClickException("No demo data: run `flask demo load` first.")
    coordinator_link = services.enrolment_url(services.issue_enrolment_link(coordinator, None))
    participant_link = services.enrolment_url(
        services.issue_enrolment_link(participant, coordinator)
    )
    db.session.commit()
    click.echo(f"Coordinator enrolment link: {coordinator_link}")
    click.echo(f"Participant enrolment link: {participant_link}")


def init_app(app: Flask) -> None:
    app.cli.add_command(demo_cli)
