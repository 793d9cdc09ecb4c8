"""Coordinator dashboard and export benchmark (issue 7): not a test.

    python -m bench.dashboard [--sizes 1000,10000,100000] [--engines sqlite,postgresql]
                              [--answers-for 2000] [--repeat 5]

For each engine and size, seeds that many participants spread over the year (day 0 from a month
ahead to 13 months ago) with their visits and a year of questionnaire assignments (the protocol's
visit questionnaires and the weekly check-in), bulk inserted; submitted answers are seeded for the
first `--answers-for` participants only, enough to measure the export rate. Then measures the
dashboard's server time (GET /staff/dashboard through the app, as an admin, median of --repeat)
cold (figures computed from the database, as after any audited write) and warm (the process's
cached dashboard, same minute, nothing written since), the cold time of a few filtered views, and
the answers CSV export rate (answers per second, streamed to nowhere) and the time of the "Today"
worklist (GET /staff, every site). The seed goes through the
completion tally's and the questionnaire standing's triggers like any write; the standing's first
recount (every participant, as after the seed) is timed, and both are then checked against a
recount. Prints
two lines per size and merges the figures into bench/results.json under "dashboard", per engine
and size, each with the time it was measured.

Targets (issue 7): 10,000 participants < 150 ms, 100,000 < 1.5 s, export ≥ 50,000 answers/s;
(issue 19) at 100,000, cold ≤ 250 ms unfiltered and ≤ 300 ms for each filtered view.
PostgreSQL is the database at BENCH_PGHOST (127.0.0.1) as BENCH_PGUSER (postgres), database
`bench_dashboard` (dropped first). Seeding 100,000 participants writes about 7 million rows and
takes minutes on a small machine: choose the sizes with --sizes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
PG_DATABASE = "bench_dashboard"
TARGETS_MS = {10_000: 150.0, 100_000: 1500.0}
# Issue 19, at 100,000 participants, cold: unfiltered and each filtered view.
COLD_TARGETS_MS = {100_000: (250.0, 300.0)}
EXPORT_TARGET = 50_000
BATCH = 20_000
# Filters a coordinator uses most: one site, who is overdue, who has something open, one visit.
FILTERED_VIEWS = ("site=JGH", "state=missed", "state=open", "visit=M3")


def _pseudo(n: int, salt: str) -> int:
    """A stable pseudo-random number 0–99 for row n (the same data on every run)."""
    return hashlib.blake2b(f"{salt}:{n}".encode(), digest_size=2).digest()[0] % 100


def _next_id(session: Session, table: sa.Table) -> int:
    return (session.scalar(sa.select(sa.func.max(table.c.id))) or 0) + 1


def _insert(session: Session, table: sa.Table, rows: list[dict]) -> None:
    for start in range(0, len(rows), BATCH):
        session.execute(table.insert(), rows[start : start + BATCH])
    rows.clear()


def seed(
    session: Session,
    *,
    participants: int,
    sites: tuple[str, ...] = ("JGH", "CHUM", "SLS"),
    start_number: int = 1,
    answers_for: int = 0,
    now: datetime | None = None,
    commit_batches: bool = False,
) -> dict[str, int]:
    """Bulk insert participants with visits, a year of assignments and some answers; row counts.

    Times are UTC midnights rather than each site's wall clock: the dashboard's queries do not
    care, and zoneinfo for millions of rows would dominate the seeding time. With
    `commit_batches`, each batch is its own transaction, as a live system's writes are: in one
    long transaction every batch adds a version of most completion tally rows, and PostgreSQL
    cannot prune them until the end.
    """
    from patient_portal.accounts.models import AuthSession, Participant
    from patient_portal.protocol.services import get_protocol
    from patient_portal.questionnaires.loader import get_instruments
    from patient_portal.questionnaires.models import Alert, Answer, Assignment, Submission
    from patient_portal.schedule.models import Visit

    protocol = get_protocol()
    instruments = get_instruments()
    now = now or datetime.now(UTC)
    today = now.date()
    tables = {
        "participant": Participant.__table__,
        "visit": Visit.__table__,
        "assignment": Assignment.__table__,
        "submission": Submission.__table__,
        "answer": Answer.__table__,
        "alert": Alert.__table__,
        "auth_session": AuthSession.__table__,
    }
    ids = {
        name: _next_id(session, table) for name, table in tables.items() if name != "auth_session"
    }
    rows: dict[str, list[dict]] = {name: [] for name in tables}
    counts = dict.fromkeys(tables, 0)
    item_ids = {
        key: [item.id for item in instrument.items if item.type == "rating_0_10"][:8]
        or [item.id for item in instrument.items if item.answerable][:1]
        for key, instrument in instruments.items()
    }

    def midnight(day) -> datetime:
        return datetime.combine(day, dtime.min, tzinfo=UTC)

    def queue(name: str, row: dict) -> None:
        rows[name].append(row)
        counts[name] += 1

    def add(name: str, row: dict) -> int:
        """Queue a row under its table's next id (auth_session rows bring their own: queue)."""
        row_id = row["id"] = ids[name]
        ids[name] += 1
        queue(name, row)
        return row_id

    def assignment(pid: int, n: int, number: int, opens: datetime, closes: datetime, **what):
        roll = _pseudo(n * 1000 + number, "a")
        status = "planned"
        if closes <= now and roll < 80:
            status = "completed"
        elif opens <= now < closes and roll < 40:
            status = "in_progress"
        aid = add(
            "assignment",
            {
                "participant_id": pid,
                "occurrence": what.get("occurrence", 0),
                "visit_id": what.get("visit_id"),
                "series_code": what.get("series_code"),
                "visit_key": what["visit_key"],
                "instrument_id": what["instrument"],
                "instrument_version": instruments[what["instrument"]].version,
                "opens_at": opens,
                "closes_at": closes,
                "status": status,
                "started_at": opens + timedelta(hours=5) if status != "planned" else None,
                "created_at": now,
            },
        )
        if status == "completed" and n < start_number + answers_for:
            submitted = opens + timedelta(hours=6)
            values = {item: roll % 11 for item in item_ids[what["instrument"]]}
            add(
                "submission",
                {
                    "assignment_id": aid,
                    "submitted_at": submitted,
                    "language": "fr" if n % 2 else "en",
                    "instrument_version": instruments[what["instrument"]].version,
                    "answers": values,
                    "scores": {},
                    "scorer_versions": {},
                },
            )
            for item, value in values.items():
                add(
                    "answer",
                    {
                        "assignment_id": aid,
                        "item_id": item,
                        "value": value,
                        "answered_at": opens + timedelta(hours=5, minutes=len(rows["answer"]) % 50),
                    },
                )

    for n in range(start_number, start_number + participants):
        site = sites[n % len(sites)]
        days_in = (n * 7919) % 420 - 30  # from a month before day 0 to 13 months after
        day0 = today - timedelta(days=days_in)
        pid = add(
            "participant",
            {
                "study_id": f"{protocol.site(site).study_id_prefix}-{n:06d}",
                "site_code": site,
                "language": "fr" if n % 2 else "en",
                "day0": day0,
                "status": "withdrawn" if _pseudo(n, "w") < 3 else "active",
                "created_at": midnight(day0 - timedelta(days=28)),
            },
        )
        number = 0
        for visit in protocol.visits:
            target = day0 + timedelta(days=visit.day)
            vid = add(
                "visit",
                {
                    "participant_id": pid,
                    "code": visit.code,
                    "kind": visit.kind,
                    "target_date": target,
                    "window_start": target - timedelta(days=visit.window_before),
                    "window_end": target + timedelta(days=visit.window_after),
                    "status": "completed" if target < today else "planned",
                    "sequence": 0,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            opens = midnight(target - timedelta(days=protocol.open_days_before_target))
            closes = midnight(target + timedelta(days=visit.window_after + 1))
            for instrument in visit.questionnaires:
                number += 1
                assignment(
                    pid,
                    n,
                    number,
                    opens,
                    closes,
                    visit_id=vid,
                    visit_key=visit.code,
                    instrument=instrument,
                )
        for series in protocol.series:
            for occurrence, day in enumerate(
                range(series.from_day, series.to_day + 1, series.every_days)
            ):
                number += 1
                opens = midnight(day0 + timedelta(days=day))
                assignment(
                    pid,
                    n,
                    number,
                    opens,
                    opens + timedelta(days=series.open_days),
                    series_code=series.code,
                    visit_key=series.code,
                    occurrence=occurrence,
                    instrument=series.instrument,
                )
        if _pseudo(n, "s") < 70:
            seen = now - timedelta(days=_pseudo(n, "d") % 30)
            queue(
                "auth_session",
                {
                    "id": hashlib.sha256(f"bench-{n}".encode()).hexdigest(),
                    "participant_id": pid,
                    "created_at": seen,
                    "last_seen_at": seen,
                    "expires_at": seen + timedelta(days=14),
                    "revoked_at": seen,
                    "user_agent": "bench",
                    "data": {},
                },
            )
        if n % 50 == 0:
            add(
                "alert",
                {
                    "participant_id": pid,
                    "source": "questionnaire",
                    "assignment_id": ids["assignment"] - 1,
                    "rule_id": "breathing_severe",
                    "created_at": now - timedelta(days=n % 20),
                },
            )
        if len(rows["assignment"]) >= BATCH:
            for name in ("participant", "visit", "assignment", "submission", "answer"):
                _insert(session, tables[name], rows[name])
            if commit_batches:
                session.commit()
    for name in tables:
        _insert(session, tables[name], rows[name])
    if session.get_bind().dialect.name == "postgresql":
        for name, table in tables.items():
            if name in ids:
                session.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"(SELECT coalesce(max(id), 1) FROM {table.name}))"
                    )
                )
    return counts


# --- measuring ---------------------------------------------------------------------------------


def _database_url(engine: str, directory: Path) -> str:
    if engine == "sqlite":
        return f"sqlite:///{directory / 'bench_dashboard.sqlite3'}"
    host = os.environ.get("BENCH_PGHOST", "127.0.0.1")
    user = os.environ.get("BENCH_PGUSER", "postgres")
    for command in ("dropdb", "createdb"):
        args = [command, "-h", host, "-U", user]
        args += ["--if-exists", PG_DATABASE] if command == "dropdb" else [PG_DATABASE]
        subprocess.run(args, check=True, capture_output=True)
    return f"postgresql+psycopg://{user}@{host}/{PG_DATABASE}"


def _app(url: str):
    from patient_portal import create_app

    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "bench-secret-key-long-enough-for-the-checks-0123",
            "RATELIMIT_STORAGE_URI": "memory://",
            "RATELIMIT_ENABLED": False,
        }
    )


def _admin_client(app):
    """A test client signed in as an admin, by a session row as a passkey sign-in leaves."""
    import secrets

    from patient_portal.accounts.models import AuthSession, StaffUser
    from patient_portal.extensions import db
    from patient_portal.security import SESSION_LIMITS, token_digest

    admin = StaffUser(email="bench-admin@example.org", name="Bench", role="admin", language="en")
    db.session.add(admin)
    db.session.flush()
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    db.session.add(
        AuthSession(
            id=token_digest(token),
            staff_id=admin.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + SESSION_LIMITS["staff"][1],
            data={},
        )
    )
    db.session.commit()
    client = app.test_client()
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], token, domain="localhost")
    return client


def measure(engine: str, sizes: list[int], answers_for: int, repeat: int) -> dict:
    from flask_migrate import upgrade

    from patient_portal.extensions import db
    from patient_portal.staff import standing, tally

    results: dict = {}
    with tempfile.TemporaryDirectory() as directory:
        url = _database_url(engine, Path(directory))
        app = _app(url)
        with app.app_context():
            upgrade()
            client = _admin_client(app)
            seeded = 0
            for size in sorted(sizes):
                started = time.perf_counter()
                counts = seed(
                    db.session(),  # the scoped session's current Session
                    participants=size - seeded,
                    start_number=seeded + 1,
                    answers_for=max(0, answers_for - seeded),
                    commit_batches=True,
                )
                db.session.commit()
                seed_seconds = time.perf_counter() - started
                # The seed's inserts marked every participant's questionnaire standing due; its
                # first recount is what the background worker's first pass pays once after a
                # bulk load.
                began = time.perf_counter()
                recounted = standing.bring_up_to_date(datetime.now(UTC))
                standing_seconds = time.perf_counter() - began
                db.session.commit()  # its probe's read transaction, which VACUUM FULL would wait on
                if engine == "postgresql":
                    with db.engine.connect().execution_options(
                        isolation_level="AUTOCOMMIT"
                    ) as connection:
                        # Each 20,000-row batch of the seed rewrote most tally rows at once, and
                        # the first recount every standing row; live, a submission changes a row
                        # or two and autovacuum keeps them near their live size, as VACUUM FULL
                        # leaves them here.
                        connection.execute(sa.text("VACUUM FULL completion_tally"))
                        connection.execute(sa.text("VACUUM FULL questionnaire_standing"))
                        connection.execute(sa.text("VACUUM ANALYZE"))
                else:
                    db.session.execute(sa.text("ANALYZE"))
                    db.session.commit()
                seeded = size
                client.get("/staff/dashboard")  # warm the database's own caches
                cold, warm = [], []
                for _ in range(repeat):
                    # Cold: the figures computed from the database, as after any audited write.
                    app.extensions["workspace_dashboards"].clear()
                    began = time.perf_counter()
                    response = client.get("/staff/dashboard")
                    cold.append((time.perf_counter() - began) * 1000)
                    assert response.status_code == 200, response.status_code
                    # Warm: the same dashboard again within the minute, nothing written since.
                    began = time.perf_counter()
                    client.get("/staff/dashboard")
                    warm.append((time.perf_counter() - began) * 1000)
                filtered = {}
                for query in FILTERED_VIEWS:
                    times = []
                    for _ in range(repeat):
                        app.extensions["workspace_dashboards"].clear()
                        began = time.perf_counter()
                        response = client.get(f"/staff/dashboard?{query}")
                        times.append((time.perf_counter() - began) * 1000)
                        assert response.status_code == 200, (query, response.status_code)
                    filtered[query] = round(statistics.median(times), 1)
                # The "Today" worklist (issue 18): the staff landing page, every site (admin).
                worklist_times = []
                for _ in range(repeat):
                    began = time.perf_counter()
                    response = client.get("/staff")
                    worklist_times.append((time.perf_counter() - began) * 1000)
                    assert response.status_code == 200, response.status_code
                # The tally the triggers kept while seeding, against a recount of the rows.
                disagreements, _ = tally.differences()
                standing_differences = standing.differences(datetime.now(UTC))
                answers = db.session.scalar(sa.text("SELECT count(*) FROM answer"))
                began = time.perf_counter()
                response = client.get("/staff/exports/answers.csv")
                size_bytes = sum(len(chunk) for chunk in response.response)
                export_seconds = time.perf_counter() - began
                target = TARGETS_MS.get(size)
                results[str(size)] = {
                    "dashboard_cold_ms_median": round(statistics.median(cold), 1),
                    "dashboard_cold_ms_max": round(max(cold), 1),
                    "dashboard_warm_ms_median": round(statistics.median(warm), 1),
                    "dashboard_target_ms": target,
                    "dashboard_cold_met": statistics.median(cold) < target if target else None,
                    "dashboard_warm_met": statistics.median(warm) < target if target else None,
                    "dashboard_filtered_cold_ms_median": filtered,
                    "cold_targets_ms": COLD_TARGETS_MS.get(size),
                    "cold_targets_met": (
                        statistics.median(cold) <= COLD_TARGETS_MS[size][0]
                        and max(filtered.values()) <= COLD_TARGETS_MS[size][1]
                    )
                    if size in COLD_TARGETS_MS
                    else None,
                    "worklist_ms_median": round(statistics.median(worklist_times), 1),
                    "tally_rows": db.session.scalar(
                        sa.text("SELECT count(*) FROM completion_tally")
                    ),
                    "tally_agrees_with_recount": disagreements == 0,
                    "standing_first_recount_s": round(standing_seconds, 1),
                    "standing_rows_recounted": recounted,
                    "standing_agrees_with_recount": not standing_differences,
                    "answers_exported": answers,
                    "export_bytes": size_bytes,
                    "export_answers_per_s": round(answers / export_seconds) if answers else None,
                    "export_met": answers / export_seconds >= EXPORT_TARGET if answers else None,
                    "seed_seconds": round(seed_seconds, 1),
                    "rows_added": counts,
                }
                print(
                    f"{engine:<11} {size:>7} participants: dashboard median cold "
                    f"{results[str(size)]['dashboard_cold_ms_median']:>8.1f} ms, warm "
                    f"{results[str(size)]['dashboard_warm_ms_median']:>6.1f} ms, export "
                    f"{results[str(size)]['export_answers_per_s'] or 0:>8} answers/s "
                    f"({answers} answers), seeded in {seed_seconds:.0f} s",
                    flush=True,
                )
                print(
                    " " * 20
                    + "filtered, cold: "
                    + ", ".join(f"{query} {ms:.1f} ms" for query, ms in filtered.items())
                    + f"; worklist {statistics.median(worklist_times):.1f} ms"
                    + f"; tally {'agrees with' if not disagreements else 'DIFFERS from'} a recount"
                    + f"; standing {'agrees with' if not standing_differences else 'DIFFERS from'}"
                    + f" a recount (first recount of {recounted} rows {standing_seconds:.1f} s)",
                    flush=True,
                )
            db.engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dashboard", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="participant counts, comma-separated"
    )
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--answers-for", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size]
    sys.path.insert(0, str(ROOT))
    measured_at = datetime.now(UTC).isoformat(timespec="seconds")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    dashboard = results.setdefault("dashboard", {})
    # Figures are kept per engine and size, each with when it was measured, so a quick run of
    # the small sizes does not erase the last 100,000-participant figures.
    earlier = {
        key: dashboard.pop(key) for key in ("measured_at", "answers_seeded_for") if key in dashboard
    }
    for engine in args.engines.split(","):
        figures = measure(engine, sizes, args.answers_for, args.repeat)
        for size, row in figures.items():
            row.update(measured_at=measured_at, answers_seeded_for=args.answers_for)
            dashboard.setdefault(engine, {})[size] = row
    for rows in dashboard.values():
        for row in rows.values():
            for key, value in earlier.items():
                row.setdefault(key, value)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"Merged into {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
