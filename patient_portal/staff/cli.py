"""`flask workspace tally [--repair]`: check the dashboard's completion tally against a recount.

The tally is kept by triggers (see models.py); a check is for a monitor who wants to see that
the dashboard's figures are the records' figures, or after a restore that wrote one table only.
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from patient_portal.extensions import db
from patient_portal.staff import tally

workspace_cli = AppGroup("workspace", help="Coordinator workspace: the completion tally.")


@workspace_cli.command("tally")
@click.option("--repair", is_flag=True, help="Replace the tally with a recount of the records.")
def tally_command(repair: bool) -> None:
    """Compare the completion tally with a recount of the assignments."""
    if repair:
        rows = tally.rebuild()
        db.session.commit()
        click.echo(f"Completion tally rebuilt from the assignments: {rows} rows.")
        return
    count, first = tally.differences()
    if not count:
        click.echo("The completion tally agrees with the assignments.")
        return
    click.echo(f"The completion tally and the assignments disagree on {count} key(s):")
    for *key, tallied, counted in first:
        click.echo(f"  {' / '.join(map(str, key))}: tally {tallied}, recount {counted}")
    click.echo("Run `flask workspace tally --repair` to rebuild it.")
    raise SystemExit(1)


def init_app(app: Flask) -> None:
    app.cli.add_command(workspace_cli)
