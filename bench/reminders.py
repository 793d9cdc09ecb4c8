"""Reminder planning and dispatch on PostgreSQL: plan about 100,000 reminders, then dispatch them
through the no-op channel with 1 and with 4 dispatcher processes, counting duplicates.

    python -m bench.reminders [--reminders 100000] [--batch 500]

Creates the database `bench_reminders` (dropped first) on BENCH_PGHOST (127.0.0.1) as
BENCH_PGUSER (postgres) and migrates it. Participants are planned through the registered
planners (visits, questionnaires, reminders) with push, e-mail and in-app on and no quiet
hours, over a 400-day horizon. Before each dispatch run every reminder is made due now (its
moment an hour ahead). Figures are printed and merged into bench/results.json under
"reminders"; the target of issue 6 is 2,000 reminders per second with 4 dispatchers and no
duplicate. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any, cast

from patient_portal.reminders.channels import Channel, Message, Outcome, Target

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
DATABASE = "bench_reminders"
TARGET_PER_SECOND = 2000


def database_url() -> str:
    user = os.environ.get("BENCH_PGUSER", "postgres")
    host = os.environ.get("BENCH_PGHOST", "127.0.0.1")
    return f"postgresql://{user}@{host}/{DATABASE}"


def bench_environment() -> None:
    os.environ.update(
        DATABASE_URL=database_url(),
        PORTAL_ENV="development",
        SECRET_KEY="bench-" + "x" * 40,
        PORTAL_SMTP_HOST="smtp.invalid",  # never contacted: the no-op channel sends nothing
        PORTAL_REMINDER_HORIZON_DAYS="400",
        RATELIMIT_STORAGE_URI="memory://",
    )


def fresh_database() -> None:
    pg = [
        "-h",
        os.environ.get("BENCH_PGHOST", "127.0.0.1"),
        "-U",
        os.environ.get("BENCH_PGUSER", "postgres"),
    ]
    subprocess.run(["dropdb", *pg, "--if-exists", DATABASE], check=True)
    subprocess.run(["createdb", *pg, DATABASE], check=True)


def plan(target: int) -> dict:
    """Enrol participants and plan their year until `target` reminders exist."""
    import sqlalchemy as sa
    from flask_migrate import upgrade

    from patient_portal import clock, create_app
    from patient_portal.accounts.models import Participant
    from patient_portal.extensions import db
    from patient_portal.planning import plan_year
    from patient_portal.reminders import channels
    from patient_portal.reminders.models import PushSubscription, Reminder, ReminderPreference

    app = create_app()
    with app.app_context():
        upgrade()
        key = "B" + "A" * 86  # a well-formed p256dh; nothing is ever sent to it
        email = channels.encrypt_contact(app, "bench@example.org")
        sites = ["JGH", "CHUM", "SLS"]
        planned, participants, seconds = 0, 0, 0.0
        while planned < target:
            batch = []
            for _ in range(20):
                site = sites[participants % 3]
                participant = Participant(
                    study_id=f"{site}-{participants + 1:05d}",
                    site_code=site,
                    language="fr" if participants % 2 else "en",
                    day0=date.today() + timedelta(days=30),
                    status="active",
                )
                db.session.add(participant)
                db.session.flush()
                db.session.add(
                    ReminderPreference(
                        participant_id=participant.id,
                        channels={
                            k: ["push", "email", "inapp"]
                            for k in ("infusion", "visit", "questionnaire")
                        },
                        quiet_start=None,
                        quiet_end=None,
                        email_encrypted=email,
                        # Confirmed, as a participant's address must be before it is used.
                        email_verified_at=clock.now(),
                    )
                )
                db.session.add(
                    PushSubscription(
                        participant_id=participant.id,
                        endpoint=f"https://push.invalid/{participant.id}",
                        endpoint_hash=f"{participant.id:064d}",
                        p256dh=key,
                        auth="A" * 22,
                    )
                )
                batch.append(participant)
                participants += 1
            db.session.commit()
            start = time.perf_counter()
            for participant in batch:
                plan_year(participant)
            db.session.commit()
            seconds += time.perf_counter() - start
            planned = db.session.execute(sa.select(sa.func.count(Reminder.id))).scalar_one()
        db.engine.dispose()
    return {
        "participants": participants,
        "reminders": planned,
        "seconds": round(seconds, 2),
        "reminders_per_second": round(planned / seconds),
    }


def make_all_due() -> int:
    """Every reminder back to planned and due now, with an hour to go; no attempt on record."""
    import sqlalchemy as sa

    from patient_portal import clock, create_app
    from patient_portal.extensions import db
    from patient_portal.reminders.models import Reminder, ReminderAttempt

    app = create_app()
    with app.app_context():
        now = clock.now()
        db.session.execute(sa.delete(ReminderAttempt))
        result = db.session.execute(
            sa.update(Reminder).values(
                status="planned",
                attempts=0,
                claimed_by=None,
                claimed_at=None,
                sent_at=None,
                last_error=None,
                next_attempt_at=now - timedelta(seconds=1),
                expires_at=now + timedelta(hours=1),
            )
        )
        # An UPDATE answers a CursorResult, whose rowcount Session.execute's type does not show.
        count = cast(sa.CursorResult[Any], result).rowcount
        db.session.commit()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("VACUUM ANALYZE reminder"))
        db.engine.dispose()
    return count


class NoopChannel(Channel):
    """Accepts everything and sends nothing: the benchmark measures the dispatcher itself."""

    def __init__(self, name: str):
        self.name = name
        self.calls = 0  # how many times it was asked to send: the benchmark counts duplicates

    def send(self, message: Message, target: Target) -> Outcome:
        self.calls += 1
        return Outcome("sent")


def noop_channels() -> dict[str, NoopChannel]:
    return {name: NoopChannel(name) for name in ("push", "email", "inapp")}


def _dispatcher(name: str, batch: int, start, results) -> None:
    bench_environment()
    from patient_portal import create_app
    from patient_portal.extensions import db
    from patient_portal.reminders.dispatch import Dispatcher

    app = create_app()
    with app.app_context():
        noop = noop_channels()
        dispatcher = Dispatcher(channels=noop, name=name, batch_size=batch)
        start.wait()
        began = time.perf_counter()
        counts = dispatcher.run_once()
        elapsed = time.perf_counter() - began
        calls = sum(channel.calls for channel in noop.values())
        db.engine.dispose()
    results.put({"name": name, "claimed": counts.claimed, "calls": calls, "seconds": elapsed})


def dispatch(processes: int, batch: int, expected: int) -> dict:
    """Run `processes` dispatchers at once until nothing is due; duplicates from the channels'
    own count and from the attempt log."""
    import sqlalchemy as sa

    from patient_portal import create_app
    from patient_portal.extensions import db
    from patient_portal.reminders.models import Reminder, ReminderAttempt

    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes + 1)
    results = context.Queue()
    workers = [
        context.Process(target=_dispatcher, args=(f"bench-{i}", batch, start, results))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    reports = [results.get() for _ in workers]
    wall = time.perf_counter() - began
    for worker in workers:
        worker.join()
    app = create_app()
    with app.app_context():
        sent = db.session.execute(
            sa.select(sa.func.count(Reminder.id)).where(Reminder.status == "sent")
        ).scalar_one()
        sent_twice = db.session.scalar(
            sa.select(sa.func.count()).select_from(
                sa.select(ReminderAttempt.reminder_id)
                .where(ReminderAttempt.outcome == "sent")
                .group_by(ReminderAttempt.reminder_id)
                .having(sa.func.count() > 1)
                .subquery()
            )
        )
        db.engine.dispose()
    calls = sum(r["calls"] for r in reports)
    return {
        "dispatchers": processes,
        "batch": batch,
        "reminders": expected,
        "sent": sent,
        "channel_calls": calls,
        "duplicates": (calls - sent) + sent_twice,
        "seconds": round(wall, 2),
        "reminders_per_second": round(sent / wall),
        "per_dispatcher": {
            r["name"]: r["claimed"] for r in sorted(reports, key=lambda r: r["name"])
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reminders", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--reminders", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="rows claimed at a time")
    args = parser.parse_args()
    bench_environment()
    fresh_database()
    planning = plan(args.reminders)
    print(
        f"Planned {planning['reminders']} reminders for {planning['participants']} participants "
        f"in {planning['seconds']} s ({planning['reminders_per_second']}/s)"
    )
    runs = {}
    for processes in (1, 4):
        expected = make_all_due()
        run = dispatch(processes, args.batch, expected)
        runs[str(processes)] = run
        print(
            f"{processes} dispatcher(s): {run['sent']} sent in {run['seconds']} s, "
            f"{run['reminders_per_second']}/s, duplicates {run['duplicates']}"
        )
    four = runs["4"]
    summary: dict[str, Any] = {
        "database": f"PostgreSQL, database {DATABASE}",
        "channel": "no-op (bench.reminders.NoopChannel)",
        "machine_cpus": os.cpu_count(),
        "planning": planning,
        "dispatch": runs,
        "target": {
            "reminders_per_second_4_dispatchers": f">= {TARGET_PER_SECOND}",
            "duplicates": "0",
            "met": four["reminders_per_second"] >= TARGET_PER_SECOND
            and all(run["duplicates"] == 0 for run in runs.values()),
        },
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["reminders"] = summary
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    mark = "met" if summary["target"]["met"] else "NOT met"
    print(f"Target (issue 6): >= {TARGET_PER_SECOND}/s with 4 dispatchers, 0 duplicates: {mark}")
    print(f"Merged into {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
