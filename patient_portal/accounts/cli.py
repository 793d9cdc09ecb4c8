"""`flask staff create`: the first accounts of a new installation, with their enrolment links;
`flask sessions purge`: the scheduled clean-up of ended sessions."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from patient_portal import clock, security
from patient_portal.accounts import services
from patient_portal.errors import PortalError
from patient_portal.extensions import db

staff_cli = AppGroup("staff", help="Staff accounts.")
sessions_cli = AppGroup("sessions", help="Sign-in sessions.")


@staff_cli.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(["coordinator", "admin"]), required=True)
@click.option(
    "--site", "sites", multiple=True, help="Site code (JGH, CHUM, SLS); repeat for several."
)
def create_staff_command(email: str, name: str, role: str, sites: tuple[str, ...]) -> None:
    """Create a staff account and print its one-time enrolment link."""
    try:
        _staff, raw = services.create_staff(email, name, role, list(sites), issued_by=None)
    except PortalError as error:
        db.session.rollback()
        raise click.ClickException(error.message) from None
    db.session.commit()
    click.echo(f"Enrolment link (single use, valid 72 hours): {services.enrolment_url(raw)}")


@sessions_cli.command("purge")
def purge_sessions_command() -> None:
    """Delete ended sessions and expired passkey ceremonies (run hourly from a timer)."""
    sessions, ceremonies = security.purge_ended_sessions(clock.now())
    db.session.commit()
    click.echo(f"Purged {sessions} ended sessions and {ceremonies} expired ceremonies.")


def init_app(app: Flask) -> None:
    app.cli.add_command(staff_cli)
    app.cli.add_command(sessions_cli)
