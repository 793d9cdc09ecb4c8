"""`make bench`: HTTP load against gunicorn on PostgreSQL, and first-load transferred bytes.

    python -m bench [--requests 3000] [--concurrency 32] [--port 8765] [--skip-load]

Creates the database `bench_portal` (dropped first) on the PostgreSQL at BENCH_PGHOST
(127.0.0.1) as BENCH_PGUSER (postgres), migrates it, loads the demo data, signs a demo
participant in by writing a session row as a passkey sign-in would, serves wsgi:app with
gunicorn (2 workers) on the loopback interface, and writes bench/results.json and a table.
Figures are measurements, compared with the targets of issue 8; nothing here is a test.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import platform
import re
import secrets
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import load

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
LOGS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
DATABASE = "bench_portal"
HOST = "127.0.0.1"
TARGETS = {
    "home_p95_ms": 25.0,
    "autosave_p95_ms": 20.0,
    "home_vs_healthz": 0.35,
    "first_load_gzip_bytes": 35 * 1024,
}


def run_command(command: list[str], env: dict[str, str]) -> str:
    completed = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise SystemExit(f"bench: {' '.join(command)} failed:\n{completed.stderr.strip()}")
    return completed.stdout


def redis_answers(url: str) -> bool:
    match = re.match(r"redis://([^:/]+):?(\d+)?", url)
    if not match:
        return False
    try:
        with socket.create_connection((match.group(1), int(match.group(2) or 6379)), 1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def prepare_database(env: dict[str, str]) -> None:
    """A fresh database, migrated, with the demo people."""
    pg = [
        "-h",
        os.environ.get("BENCH_PGHOST", HOST),
        "-U",
        os.environ.get("BENCH_PGUSER", "postgres"),
    ]
    run_command(["dropdb", *pg, "--if-exists", DATABASE], env)
    run_command(["createdb", *pg, DATABASE], env)
    run_command([str(BIN / "flask"), "db", "upgrade"], env)
    run_command([str(BIN / "flask"), "demo", "load"], env)


def participant_session(env: dict[str, str]) -> tuple[str, str]:
    """(study id, session token) for the first demo participant, as a passkey sign-in leaves."""
    import sqlalchemy as sa

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from patient_portal import clock, create_app
        from patient_portal.accounts.models import AuthSession, Participant
        from patient_portal.extensions import db
        from patient_portal.questionnaires.models import Assignment
        from patient_portal.security import SESSION_LIMITS, token_digest

        app = create_app()
        with app.app_context():
            # A demo participant with a questionnaire open now and not yet sent, so that the
            # item page and its autosave can be measured too.
            now = clock.now()
            participant = (
                db.session.scalars(
                    sa.select(Participant)
                    .join(Assignment, Assignment.participant_id == Participant.id)
                    .where(
                        Participant.status != "withdrawn",
                        Assignment.opens_at <= now,
                        Assignment.closes_at > now,
                        Assignment.status.in_(("planned", "in_progress")),
                        ~Assignment.submission.has(),
                    )
                    .order_by(Participant.study_id)
                ).first()
                or db.session.scalars(sa.select(Participant).order_by(Participant.study_id)).first()
            )
            if participant is None:
                raise SystemExit("bench: the demo data has no participant")
            token = secrets.token_urlsafe(32)
            now = clock.now()
            db.session.add(
                AuthSession(
                    id=token_digest(token),
                    participant_id=participant.id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + SESSION_LIMITS["participant"][1],
                    data={},
                    user_agent="bench",
                )
            )
            db.session.commit()
            study_id = participant.study_id
            db.engine.dispose()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return study_id, token


def start_gunicorn(env: dict[str, str], port: int, workers: int) -> subprocess.Popen:
    LOGS.mkdir(exist_ok=True)
    log = (LOGS / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "--workers",
            str(workers),
            "--bind",
            f"{HOST}:{port}",
            "--backlog",
            "512",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"bench: gunicorn stopped, see {LOGS / 'gunicorn.log'}")
        try:
            if get(port, "/healthz")[0] == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("bench: gunicorn did not answer /healthz within 30 s")


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def questionnaire_targets(port: int, cookie: dict[str, str]) -> list[load.Target]:
    """The first open questionnaire item (GET) and its htmx autosave (POST), if one is open."""
    _, listing = get(port, "/questionnaires", cookie)
    assignment = re.search(rb'href="(/questionnaires/\d+)"', listing)
    if not assignment:
        return []
    _, start = get(port, assignment.group(1).decode(), cookie)
    item = re.search(rb'href="(/questionnaires/\d+/items/[^"?]+)', start)
    if not item:
        return []
    path = item.group(1).decode()
    _, page = get(port, path, cookie)
    csrf = re.search(rb'"X-CSRFToken": "([^"]+)"', page)
    value = re.search(rb'<input type="hidden" name="value" value="([^"]+)">', page)
    if not (csrf and value):
        return []
    autosave_headers = {
        **cookie,
        "HX-Request": "true",
        "X-CSRFToken": csrf.group(1).decode(),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return [
        load.Target("item", path, headers=cookie),
        load.Target(
            "autosave",
            path,
            method="POST",
            headers=autosave_headers,
            body=b"value=" + value.group(1),
        ),
    ]


ASSET = re.compile(r'<(?:link rel="stylesheet" href|script src)="(/static/[^"]+)"')


def first_load(port: int, path: str, headers: dict[str, str]) -> dict:
    """Bytes of the page and of the CSS and JS it references: as served, and gzip-compressed."""
    status, page = get(port, path, headers)
    if status != 200:
        raise SystemExit(f"bench: {path} answered {status}")
    parts = {path: page}
    for asset in ASSET.findall(page.decode()):
        asset_status, body = get(port, asset)
        if asset_status == 200:
            parts[asset] = body
    files = {
        name: {"bytes": len(body), "gzip_bytes": len(gzip.compress(body, 6))}
        for name, body in parts.items()
    }
    return {
        "files": files,
        "bytes": sum(f["bytes"] for f in files.values()),
        "gzip_bytes": sum(f["gzip_bytes"] for f in files.values()),
    }


LIGHTHOUSE = ROOT / "node_modules" / ".bin" / "lighthouse"
CHROMIUM = os.environ.get("CHROME_PATH", "/usr/bin/chromium")


def lighthouse(port: int, name: str, path: str, cookie: dict[str, str]) -> dict:
    """Lighthouse 12's mobile defaults (throttled 4G, mid-range phone), signed in by cookie."""
    report = LOGS / f"lighthouse-{name}.json"
    command = [
        str(LIGHTHOUSE),
        f"http://localhost:{port}{path}",
        "--quiet",
        "--output=json",
        f"--output-path={report}",
        "--only-categories=performance,accessibility,best-practices",
        "--chrome-flags=--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage",
        f"--extra-headers={json.dumps(cookie)}",
    ]
    completed = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "CHROME_PATH": CHROMIUM},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if completed.returncode != 0 or not report.exists():
        return {"error": completed.stderr.strip()[-500:]}
    data = json.loads(report.read_text())
    audits = data["audits"]
    scores = {key: category["score"] for key, category in data["categories"].items()}
    return {
        "url": path,
        "final_url": data.get("finalDisplayedUrl"),
        **scores,
        "lcp_ms": round(audits["largest-contentful-paint"]["numericValue"]),
        "tbt_ms": round(audits["total-blocking-time"]["numericValue"]),
        "cls": round(audits["cumulative-layout-shift"]["numericValue"], 4),
        "failed_audits": sorted(
            key
            for key, audit in audits.items()
            if audit.get("score") is not None
            and audit["score"] < 1
            and audit.get("scoreDisplayMode") in ("binary", "metricSavings")
        ),
    }


def measure(args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    production = redis_answers(redis_url)
    env.update(
        FLASK_APP="wsgi.py",
        DATABASE_URL=f"postgresql://{os.environ.get('BENCH_PGUSER', 'postgres')}@"
        f"{os.environ.get('BENCH_PGHOST', HOST)}/{DATABASE}",
        SECRET_KEY=secrets.token_urlsafe(48),
        PORTAL_ORIGIN=f"http://localhost:{args.port}",
        PORTAL_RP_ID="localhost",
        # Production settings need Redis for the rate-limit counters; without it, development.
        PORTAL_ENV="production" if production else "development",
        RATELIMIT_STORAGE_URI=redis_url if production else "memory://",
    )
    prepare_database(env)
    study_id, token = participant_session(env)
    cookie = {"Cookie": f"portal_session={token}"}
    server = start_gunicorn(env, args.port, args.workers)
    try:
        for path, headers in [("/home", cookie), ("/", {})]:
            status, _ = get(args.port, path, headers)  # plans the visits on the first visit
            if status != 200:
                raise SystemExit(f"bench: {path} answered {status}, see {LOGS / 'gunicorn.log'}")
        results: dict = {
            "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "setup": {
                "server": f"gunicorn, {args.workers} sync workers, {HOST}:{args.port}",
                "database": f"PostgreSQL, database {DATABASE}, demo data",
                "portal_env": env["PORTAL_ENV"],
                "participant": study_id,
                "client": f"{args.concurrency} threads (http.client) on the same machine",
                "compression": "none by the app (WhiteNoise has no .gz files); gzip -6 computed",
            },
            "first_load": {
                "landing": first_load(args.port, "/", {"Accept-Language": "fr"}),
                "home": first_load(args.port, "/home", cookie),
            },
        }
        questionnaire = questionnaire_targets(args.port, cookie)
        if args.lighthouse and LIGHTHOUSE.exists() and Path(CHROMIUM).exists():
            pages = {"home": "/home", "timeline": "/visits"}
            if questionnaire:
                pages["item"] = questionnaire[0].path
            results["lighthouse"] = {
                name: lighthouse(args.port, name, path, cookie) for name, path in pages.items()
            }
        if not args.skip_load:
            targets = [
                load.Target("healthz", "/healthz"),
                load.Target("home", "/home", headers=cookie),
                *questionnaire,
            ]
            loads = {}
            for target in targets:
                load.run(
                    HOST, args.port, target, total=100, concurrency=args.concurrency, max_seconds=10
                )
                loads[target.name] = load.run(
                    HOST,
                    args.port,
                    target,
                    total=args.requests,
                    concurrency=args.concurrency,
                    max_seconds=args.max_seconds,
                ).summary()
            ceiling = loads["healthz"]["requests_per_second"]
            for summary in loads.values():
                summary["vs_healthz"] = round(summary["requests_per_second"] / ceiling, 3)
            results["load"] = {"concurrency": args.concurrency, "endpoints": loads}
    finally:
        server.terminate()
        server.wait(timeout=30)
    results["targets"] = check_targets(results)
    return results


def check_targets(results: dict) -> dict:
    figures = {
        "first_load_gzip_bytes (home)": (
            results["first_load"]["home"]["gzip_bytes"],
            TARGETS["first_load_gzip_bytes"],
            "<=",
        ),
        "first_load_gzip_bytes (landing)": (
            results["first_load"]["landing"]["gzip_bytes"],
            TARGETS["first_load_gzip_bytes"],
            "<=",
        ),
    }
    for page, report in results.get("lighthouse", {}).items():
        if "error" in report:
            continue
        figures[f"lighthouse {page} performance"] = (report["performance"], 0.98, ">=")
        figures[f"lighthouse {page} accessibility"] = (report["accessibility"], 1.0, ">=")
        figures[f"lighthouse {page} best practices"] = (report["best-practices"], 1.0, ">=")
    if "load" in results:
        home = results["load"]["endpoints"]["home"]
        figures["home p95 ms"] = (home["p95_ms"], TARGETS["home_p95_ms"], "<=")
        figures["home vs healthz"] = (home["vs_healthz"], TARGETS["home_vs_healthz"], ">=")
        autosave = results["load"]["endpoints"].get("autosave")
        if autosave:
            figures["autosave p95 ms"] = (autosave["p95_ms"], TARGETS["autosave_p95_ms"], "<=")
    return {
        name: {
            "value": value,
            "target": f"{sign} {target}",
            "met": value <= target if sign == "<=" else value >= target,
        }
        for name, (value, target, sign) in figures.items()
    }


def print_table(results: dict) -> None:
    if "load" in results:
        print(f"\nHTTP load, {results['load']['concurrency']} concurrent clients")
        print(
            f"{'endpoint':<10} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
            f"{'errors':>7} {'×healthz':>9}"
        )
        for name, s in results["load"]["endpoints"].items():
            print(
                f"{name:<10} {s['requests_per_second']:>8} {s['p50_ms']:>8} {s['p95_ms']:>8} "
                f"{s['p99_ms']:>8} {s['errors']:>7} {s['vs_healthz']:>9}"
            )
    if "lighthouse" in results:
        print("\nLighthouse (mobile)")
        print(
            f"{'page':<10} {'perf':>5} {'a11y':>5} {'bp':>5} {'LCP ms':>7} {'TBT ms':>7} {'CLS':>6}"
        )
        for name, r in results["lighthouse"].items():
            if "error" in r:
                print(f"{name:<10} failed: {r['error'][:60]}")
                continue
            print(
                f"{name:<10} {r['performance']:>5} {r['accessibility']:>5} "
                f"{r['best-practices']:>5} {r['lcp_ms']:>7} {r['tbt_ms']:>7} {r['cls']:>6}"
            )
    print("\nFirst load (HTML + CSS + JS)")
    print(f"{'page':<10} {'bytes':>9} {'gzip':>9}")
    for name, figures in results["first_load"].items():
        print(f"{name:<10} {figures['bytes']:>9} {figures['gzip_bytes']:>9}")
    print("\nTargets (issue 8)")
    for name, figure in results["targets"].items():
        mark = "met" if figure["met"] else "NOT met"
        print(f"{name:<32} {figure['value']:>10} {figure['target']:>10}  {mark}")
    print(f"\nWritten to {RESULTS.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per endpoint")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-seconds", type=float, default=60, help="time limit per endpoint")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--skip-load", action="store_true", help="no HTTP load")
    parser.add_argument(
        "--no-lighthouse", dest="lighthouse", action="store_false", help="no Lighthouse runs"
    )
    args = parser.parse_args()
    results = measure(args)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print_table(results)


if __name__ == "__main__":
    main()
