"""`flask reminders dispatch [--loop]`, `flask reminders plan` and
`flask reminders rotate-contact-key`.

Run the dispatcher as its own service (systemd, a container) with `--loop`, or from cron without
it; several may run at once on PostgreSQL. The loop also re-plans everyone every hour, so the
planning horizon moves with the clock for participants who do not open the portal, and at each
pass tells the other features the time (`signals.worker_pass`).
"""

from __future__ import annotations

import signal
import time

import click
from flask import Flask
from flask.cli import AppGroup

from patient_portal import clock, signals
from patient_portal.extensions import db
from patient_portal.reminders.dispatch import DispatchCounts, Dispatcher
from patient_portal.reminders.planning import plan_everyone
from patient_portal.reminders.preferences import rotate_contact_key

reminders_cli = AppGroup("reminders", help="Reminders: planning and dispatch.")


def _summary(counts: DispatchCounts) -> str:
    parts = ", ".join(f"{key} {value}" for key, value in sorted(counts.outcomes.items()))
    return f"claimed {counts.claimed}" + (f": {parts}" if parts else "")


@reminders_cli.command("plan")
def plan_command() -> None:
    """Plan the reminders of every participant not withdrawn, up to the horizon."""
    changed = plan_everyone()
    click.echo(f"Reminders planned: {changed} rows created, moved or cancelled.")


@reminders_cli.command("rotate-contact-key")
def rotate_contact_key_command() -> None:
    """Re-encrypt every stored e-mail address with the first key of PORTAL_CONTACT_KEY."""
    count = rotate_contact_key()
    db.session.commit()
    click.echo(f"Contact details re-encrypted: {count} addresses.")


@reminders_cli.command("dispatch")
@click.option("--loop", is_flag=True, help="Keep running; stop with SIGTERM or Ctrl-C.")
@click.option("--interval", default=15.0, show_default=True, help="Seconds between passes.")
@click.option(
    "--plan-every", default=3600.0, show_default=True, help="Seconds between re-planning runs."
)
def dispatch_command(loop: bool, interval: float, plan_every: float) -> None:
    """Send the reminders that are due, each exactly once, through their channels."""
    dispatcher = Dispatcher()
    if not loop:
        click.echo(_summary(dispatcher.run_once()))
        return
    stopping = {"now": False}

    def stop(_signum, _frame):
        stopping["now"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"Reminder dispatcher {dispatcher.name} running; SIGTERM stops it.")
    last_plan = 0.0
    while not stopping["now"]:
        try:
            if time.monotonic() - last_plan >= plan_every:
                plan_everyone()
                last_plan = time.monotonic()
            counts = dispatcher.run_once()
            signals.worker_pass.send(clock.now())
            # No transaction left open between passes: an idle one would hold back vacuum.
            db.session.rollback()
            if counts.claimed:
                click.echo(f"{clock.now():%Y-%m-%d %H:%M:%S}Z {_summary(counts)}")
        except Exception as error:  # the database restarting must not stop the service
            db.session.rollback()
            click.echo(f"dispatch pass failed: {type(error).__name__}: {error}", err=True)
        deadline = time.monotonic() + interval
        while not stopping["now"] and time.monotonic() < deadline:
            time.sleep(min(0.5, interval))
    click.echo("Reminder dispatcher stopped.")


def init_app(app: Flask) -> None:
    app.cli.add_command(reminders_cli)
