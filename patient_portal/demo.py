"""Demo data for `make run`: a coordinator and an admin, and participants at every site at
different points of their year, with questionnaires answered, one missed, an alert waiting and
one participant withdrawn. Loaded once; `flask demo links` prints fresh enrolment links."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup

from patient_portal import clock
from patient_portal.accounts import services
from patient_portal.accounts.models import AuthSession, Participant, StaffUser
from patient_portal.extensions import db
from patient_portal.questionnaires import services as questionnaires
from patient_portal.questionnaires.engine import is_enabled
from patient_portal.questionnaires.instrument import Instrument
from patient_portal.questionnaires.loader import get_instrument
from patient_portal.questionnaires.models import Assignment

demo_cli = AppGroup("demo", help="Demo data for trying the portal.")

DEMO_COORDINATOR = "coordinator@demo.care-ssc.example"
DEMO_ADMIN = "admin@demo.care-ssc.example"
# (site, language, days since day 0, how much they answer): spread over the year so every page
# has something to show. "all" answers everything due; "some" skips every third questionnaire
# (missed ones on the dashboard); "none" never answers; "withdrawn" answers, then withdraws.
DEMO_PARTICIPANTS = [
    ("JGH", "fr", 2, "all"),
    ("JGH", "en", 40, "some"),
    ("JGH", "fr", 200, "all"),
    ("JGH", "en", 120, "none"),
    ("CHUM", "fr", -10, "all"),
    ("CHUM", "en", 95, "some"),
    ("CHUM", "fr", 300, "withdrawn"),
    ("SLS", "fr", 27, "some"),
    ("SLS", "en", 300, "all"),
    ("SLS", "fr", 160, "some"),
]
# A severe breathing score on the weekly check-in raises an alert for the coordinators.
ALERT_ANSWERS = {"breathing": 8}


@contextmanager
def as_of(moment: datetime) -> Iterator[None]:
    """Run services as if it were `moment` (demo and benchmark data only).

    Audit events keep the real time (clock.wall_time), which is when the rows were written.
    """
    with clock.stopped_at(moment):
        yield


def typical_answers(instrument: Instrument, level: int, extra: dict | None = None) -> dict:
    """Plausible answers to every item that applies: `level` (0–10) sets how bad things are."""
    answers: dict[str, Any] = {}
    extra = extra or {}
    for item in instrument.items:
        if not item.answerable or not is_enabled(instrument, item, answers):
            continue
        if item.id in extra:
            answers[item.id] = extra[item.id]
        elif item.type == "single_choice":
            answers[item.id] = item.options[min(level // 4, len(item.options) - 1)].value
        elif item.type == "multiple_choice":
            answers[item.id] = [item.options[-1].value]
        elif item.type == "rating_0_10":
            answers[item.id] = level
        elif item.type == "vas_0_100":
            answers[item.id] = level * 10
        elif item.type == "integer":
            answers[item.id] = item.min or 0
        elif item.type == "yes_no":
            answers[item.id] = level >= 6
        elif item.type == "text" and item.required:
            answers[item.id] = "—"
    return answers


def answer_and_submit(
    assignment: Assignment, actor, moment: datetime, level: int, extra: dict | None = None
) -> None:
    """Answer and submit an assignment through the real services, as if at `moment`."""
    instrument = get_instrument(assignment.instrument_id)
    with as_of(moment):
        for item_id, value in typical_answers(instrument, level, extra).items():
            questionnaires.save_answer(assignment, item_id, value, actor)
        questionnaires.submit(assignment, actor, assignment.participant.language)


def answer_due(participant: Participant, habit: str, now: datetime) -> None:
    """Answer the questionnaires that have opened, following the participant's habit."""
    due = db.session.scalars(
        sa.select(Assignment)
        .where(Assignment.participant_id == participant.id, Assignment.opens_at <= now)
        .order_by(Assignment.opens_at, Assignment.id)
    ).all()
    # What is still open is left for the participant: whoever signs in with the demo link
    # has this week's questionnaires to answer.
    answered = [
        (number, assignment)
        for number, assignment in enumerate(due)
        if assignment.closes_at <= now
        and habit != "none"
        and not (habit == "some" and number % 3 == 2)
    ]
    last_seen = None
    for position, (number, assignment) in enumerate(answered):
        moment = assignment.opens_at + timedelta(hours=20)
        if moment >= assignment.closes_at:
            continue
        last = position == len(answered) - 1
        extra = ALERT_ANSWERS if last and habit == "all" else None
        answer_and_submit(assignment, participant, moment, level=2 + number % 4, extra=extra)
        last_seen = moment
    if last_seen is not None:
        # The portal session they answered in, long since signed out: their last activity.
        db.session.add(
            AuthSession(
                id=secrets.token_hex(32),
                participant_id=participant.id,
                created_at=last_seen,
                last_seen_at=last_seen,
                expires_at=last_seen + timedelta(days=14),
                revoked_at=last_seen,
                user_agent="demo",
            )
        )


def load_demo() -> bool:
    """Create the demo people unless the database already has staff; True when loaded."""
    if db.session.scalar(sa.select(sa.func.count(StaffUser.id))):
        return False
    coordinator, _ = services.create_staff(
        DEMO_COORDINATOR, "Camille Demo", "coordinator", ["JGH", "CHUM"], None
    )
    services.create_staff(DEMO_ADMIN, "Alex Demo", "admin", [], None)
    now = clock.now()
    today = now.date()
    for site, language, days, habit in DEMO_PARTICIPANTS:
        participant, _ = services.enrol_participant(
            site, language, today - timedelta(days=days), coordinator
        )
        participant.status = "active"
        # Enrolled at screening, three weeks before day 0 (or today for the newest).
        participant.created_at = min(now, now - timedelta(days=days + 21))
        db.session.flush()
        answer_due(participant, habit, now)
        if habit == "withdrawn":
            services.withdraw_participant(participant, coordinator, "Participant's own decision")
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
