"""`flask workspace tally [--repair]`: check the dashboard's completion tally and questionnaire
standing against a recount.

Both are kept by triggers (see models.py); a check is for a monitor who wants to see that the
dashboard's figures are the records' figures, or after a restore that wrote one table only.
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from patient_portal import clock
from patient_portal.extensions import db
from patient_portal.staff import standing, tally

workspace_cli = AppGroup("workspace", help="Coordinator workspace: the completion tally.")


@workspace_cli.command("tally")
@click.option(
    "--repair", is_flag=True, help="Rebuild the tally and recount the standing from the records."
)
def tally_command(repair: bool) -> None:
    """Compare the completion tally and the questionnaire standing with the assignments."""
    if repair:
        rows = tally.rebuild()
        marked = standing.mark_all_due()
        db.session.commit()
        standing.bring_up_to_date(clock.now())
        click.echo(f"Completion tally rebuilt from the assignments: {rows} rows.")
        click.echo(f"Questionnaire standing recounted for {marked} participants.")
        return
    count, first = tally.differences()
    off = standing.differences(clock.now())
    if not count and not off:
        click.echo(
            "The completion tally and the questionnaire standing agree with the assignments."
        )
        return
    if count:
        click.echo(f"The completion tally and the assignments disagree on {count} key(s):")
        for *key, tallied, counted in first:
            click.echo(f"  {' / '.join(map(str, key))}: tally {tallied}, recount {counted}")
    if off:
        click.echo(f"The questionnaire standing is off for {len(off)} participant(s), e.g.:")
        for participant, stored, counted in off[:20]:
            click.echo(f"  participant {participant}: stored {stored}, recount {counted}")
    click.echo("Run `flask workspace tally --repair` to rebuild them.")
    raise SystemExit(1)


def init_app(app: Flask) -> None:
    app.cli.add_command(workspace_cli)
