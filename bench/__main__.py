"""`make bench`: the cost of each request, side by side with bare Flask, and first-load bytes.

    python -m bench [--seconds 10] [--rounds 3] [--connections 8] [--port 8765] [--skip-load]

Creates the database `bench_portal` (dropped first) on the PostgreSQL at BENCH_PGHOST
(127.0.0.1) as BENCH_PGUSER (postgres), migrates it, loads the demo data, signs a demo
participant and a coordinator in by writing session rows as a passkey sign-in would, and serves
three apps with gunicorn the same way (2 sync workers each, loopback, production settings when
Redis answers): the portal, a bare Flask text view and a bare Flask page doing one SQL statement
and rendering a template (bench/reference.py). wrk (one thread, --connections connections)
measures each endpoint for --seconds, in --rounds interleaved rounds; the table gives medians,
the spread of req/s, each page's ratio to both references, statements per request (counted by
an SQLAlchemy event listener, in process) and the workers' resident memory. Results go to
bench/results.json. Figures are measurements, compared with the targets of issue 19; nothing
here is a test.
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
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import wrk

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
LOGS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
DATABASE = "bench_portal"
HOST = "127.0.0.1"
TARGETS = {
    "first_load_gzip_bytes": 35 * 1024,
}
# Issue 19: req/s as a share of the bare DB page's, and statements per request.
RATIO_TARGETS = {
    "landing": 0.6,
    "home": 0.35,
    "visits": 0.35,
    "questionnaires": 0.35,
    "item": 0.35,
    "autosave": 0.35,
}
STATEMENT_TARGETS = {"home": 3, "item": 3, "autosave": 5}
# The session cookie's name: __Host-portal_session under production settings.
SESSION_COOKIE = "portal_session"


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


def signed_in_sessions(env: dict[str, str]) -> tuple[str, str, str]:
    """(study id, participant token, coordinator token): session rows as passkey sign-ins leave."""
    import sqlalchemy as sa

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from patient_portal import clock, create_app
        from patient_portal.accounts.models import Participant, StaffUser
        from patient_portal.extensions import db
        from patient_portal.questionnaires.models import Assignment
        from tests.factories import open_session_for

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
            coordinator = db.session.scalars(
                sa.select(StaffUser).where(StaffUser.role == "coordinator").order_by(StaffUser.id)
            ).first()
            if coordinator is None:
                raise SystemExit("bench: the demo data has no coordinator")
            study_id = participant.study_id
            tokens = open_session_for(participant), open_session_for(coordinator)
            db.engine.dispose()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return study_id, *tokens


def start_gunicorn(
    env: dict[str, str], port: int, workers: int, app: str = "wsgi:app", name: str = "portal"
) -> subprocess.Popen:
    LOGS.mkdir(exist_ok=True)
    log = (LOGS / f"gunicorn-{name}.log").open("w")
    server = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "--workers",
            str(workers),
            "--bind",
            f"{HOST}:{port}",
            "--backlog",
            "512",
            app,
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    probe = "/healthz" if name == "portal" else "/"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"bench: gunicorn stopped, see {LOGS / f'gunicorn-{name}.log'}")
        try:
            if get(port, probe)[0] == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit(f"bench: {name} did not answer {probe} within 30 s")


def worker_rss_mb(server: subprocess.Popen) -> float:
    """The largest resident set of the server's worker processes, in MB."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    sizes = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return round(max(sizes), 1) if sizes else 0.0


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def questionnaire_paths(port: int, cookie: dict[str, str]) -> tuple[str, str, str] | None:
    """(item path, CSRF token, an answer value) of the first open questionnaire item."""
    _, listing = get(port, "/questionnaires", cookie)
    assignment = re.search(rb'href="(/questionnaires/\d+)"', listing)
    if not assignment:
        return None
    _, start = get(port, assignment.group(1).decode(), cookie)
    item = re.search(rb'href="(/questionnaires/\d+/items/[^"?]+)', start)
    if not item:
        return None
    path = item.group(1).decode()
    _, page = get(port, path, cookie)
    csrf = re.search(rb'"X-CSRFToken": "([^"]+)"', page)
    value = re.search(rb'<input type="hidden" name="value" value="([^"]+)">', page)
    if not (csrf and value):
        return None
    return path, csrf.group(1).decode(), value.group(1).decode()


def targets(
    port: int, references: dict[str, int], origin: str, participant: str, staff: str
) -> list[wrk.Target]:
    """Every endpoint measured: the two references, then the portal's pages."""
    base = f"http://{HOST}:{port}"
    as_participant = {"Cookie": f"{SESSION_COOKIE}={participant}"}
    found = [
        wrk.Target("bare text", f"http://{HOST}:{references['text']}/"),
        wrk.Target("bare DB page", f"http://{HOST}:{references['page']}/"),
        wrk.Target("healthz", base + "/healthz"),
        wrk.Target("landing", base + "/"),
        wrk.Target("home", base + "/home", headers=as_participant),
        wrk.Target("visits", base + "/visits", headers=as_participant),
        wrk.Target("questionnaires", base + "/questionnaires", headers=as_participant),
    ]
    item = questionnaire_paths(port, as_participant)
    if item:
        path, csrf, value = item
        found.append(wrk.Target("item", base + path, headers=as_participant))
        found.append(
            wrk.Target(
                "autosave",
                base + path,
                method="POST",
                headers={
                    **as_participant,
                    "HX-Request": "true",
                    "X-CSRFToken": csrf,
                    "Origin": origin,
                    "Content-Type": "application/x-www-form-urlencoded",
                },
                body=f"value={value}",
            )
        )
    found.append(
        wrk.Target(
            "dashboard", base + "/staff/dashboard", headers={"Cookie": f"{SESSION_COOKIE}={staff}"}
        )
    )
    return found


def statements_per_request(env: dict[str, str], target_list: list[wrk.Target]) -> dict[str, int]:
    """Statements each portal endpoint sends to the database, counted in process with an
    SQLAlchemy event listener (the session bookkeeping's own connection included)."""
    import sqlalchemy as sa

    saved = dict(os.environ)
    os.environ.update(env)
    counts: dict[str, int] = {}
    try:
        from patient_portal import create_app
        from patient_portal.extensions import db

        app = create_app()
        with app.app_context():
            engine = db.engine
        seen: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
        # Each request in an app context of its own, as under gunicorn: nothing cached in `g`
        # or in the database session carries over from one request to the next.
        for target in target_list:
            if target.name in ("bare text", "bare DB page"):
                continue
            path = target.url.split("/", 3)[3]
            headers = dict(target.headers)
            cookie = headers.pop("Cookie", "")
            client = app.test_client()
            if cookie:
                name, value = cookie.split("=", 1)
                client.set_cookie(name, value, domain="localhost")
            for _ in range(2):  # the second request is the steady state
                seen.clear()
                answer = client.open(
                    "/" + path,
                    method=target.method,
                    headers=headers,
                    data=target.body,
                    base_url=env["PORTAL_ORIGIN"],
                )
            if answer.status_code >= 400 or answer.status_code in (301, 302):
                raise SystemExit(f"bench: {target.name} answered {answer.status_code}")
            counts[target.name] = len(seen)
        engine.dispose()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return counts


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
    origin = f"https://localhost:{args.port}"
    env.update(
        FLASK_APP="wsgi.py",
        DATABASE_URL=f"postgresql://{os.environ.get('BENCH_PGUSER', 'postgres')}@"
        f"{os.environ.get('BENCH_PGHOST', HOST)}/{DATABASE}",
        SECRET_KEY=secrets.token_urlsafe(48),
        PORTAL_AUDIT_KEY=secrets.token_urlsafe(48),
        PORTAL_ORIGIN=origin,
        PORTAL_RP_ID="localhost",
        # Production settings need Redis for the rate-limit counters; without it, development.
        PORTAL_ENV="production" if production else "development",
        RATELIMIT_STORAGE_URI=redis_url if production else "memory://",
    )
    prepare_database(env)
    study_id, participant, staff = signed_in_sessions(env)
    global SESSION_COOKIE
    SESSION_COOKIE = "__Host-portal_session" if production else "portal_session"
    cookie = {"Cookie": f"{SESSION_COOKIE}={participant}"}
    references = {"text": args.port + 1, "page": args.port + 2}
    servers = {"portal": start_gunicorn(env, args.port, args.workers)}
    try:
        for name, port in references.items():
            servers[name] = start_gunicorn(
                env, port, args.workers, app=f"bench.reference:{name}", name=name
            )
        for path, headers in [("/home", cookie), ("/", {})]:
            status, _ = get(args.port, path, headers)  # plans the visits on the first visit
            if status != 200:
                raise SystemExit(f"bench: {path} answered {status}, see {LOGS}")
        results: dict = {
            "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": run_command(["git", "rev-parse", "--short", "HEAD"], env).strip(),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "setup": {
                "servers": f"gunicorn, {args.workers} sync workers each, {HOST}",
                "database": f"PostgreSQL, database {DATABASE}, demo data",
                "portal_env": env["PORTAL_ENV"],
                "participant": study_id,
                "client": f"wrk, 1 thread, {args.connections} connections, {args.seconds} s per "
                f"figure, {args.rounds} interleaved rounds, medians",
            },
            "first_load": {
                "landing": first_load(args.port, "/", {"Accept-Language": "fr"}),
                "home": first_load(args.port, "/home", cookie),
            },
        }
        target_list = targets(args.port, references, origin, participant, staff)
        item = next((t for t in target_list if t.name == "item"), None)
        if args.lighthouse and LIGHTHOUSE.exists() and Path(CHROMIUM).exists():
            pages = {"home": "/home", "timeline": "/visits"}
            if item:
                pages["item"] = item.url.split(str(args.port), 1)[1]
            results["lighthouse"] = {
                name: lighthouse(args.port, name, path, cookie) for name, path in pages.items()
            }
        if not args.skip_load:
            results["load"] = load_rounds(args, target_list)
            results["load"]["portal_worker_rss_mb"] = worker_rss_mb(servers["portal"])
            results["load"]["bare_page_worker_rss_mb"] = worker_rss_mb(servers["page"])
        results["statements"] = statements_per_request(env, target_list)
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(timeout=30)
    results["targets"] = check_targets(results)
    return results


def load_rounds(args: argparse.Namespace, target_list: list[wrk.Target]) -> dict:
    """Each target in turn, round after round, so that a slow minute of the machine touches
    every figure alike; medians and the spread of req/s."""
    for target in target_list:  # warm every worker, pool and cache
        wrk.run(target, seconds=2, connections=args.connections)
    runs: dict[str, list[dict]] = {target.name: [] for target in target_list}
    for _ in range(args.rounds):
        for target in target_list:
            runs[target.name].append(
                wrk.run(target, seconds=args.seconds, connections=args.connections)
            )
    endpoints = {}
    for name, measured in runs.items():
        rates = [run["requests_per_second"] for run in measured]
        endpoints[name] = {
            "requests_per_second": statistics.median(rates),
            "spread": [min(rates), max(rates)],
            "p50_ms": statistics.median(run["p50_ms"] for run in measured),
            "p95_ms": statistics.median(run["p95_ms"] for run in measured),
            "p99_ms": statistics.median(run["p99_ms"] for run in measured),
            "errors": sum(run["errors"] for run in measured),
        }
    text = endpoints["bare text"]["requests_per_second"]
    page = endpoints["bare DB page"]["requests_per_second"]
    for figures in endpoints.values():
        figures["vs_bare_text"] = round(figures["requests_per_second"] / text, 3)
        figures["vs_bare_page"] = round(figures["requests_per_second"] / page, 3)
    return {"connections": args.connections, "seconds": args.seconds, "endpoints": endpoints}


def check_targets(results: dict) -> dict:
    figures: dict[str, tuple[float, float, str]] = {
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
    endpoints = results.get("load", {}).get("endpoints", {})
    for name, target in RATIO_TARGETS.items():
        if name in endpoints:
            figures[f"{name} × bare DB page"] = (endpoints[name]["vs_bare_page"], target, ">=")
    for name, target in STATEMENT_TARGETS.items():
        if name in results["statements"]:
            figures[f"{name} statements"] = (results["statements"][name], target, "<=")
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
        load = results["load"]
        print(
            f"\nHTTP, wrk 1 thread × {load['connections']} connections, {load['seconds']} s,"
            " medians of the rounds"
        )
        print(
            f"{'endpoint':<15} {'req/s':>8} {'spread':>15} {'p50':>6} {'p95':>6} {'p99':>6} "
            f"{'err':>4} {'×text':>6} {'×page':>6} {'stmts':>5}"
        )
        for name, s in load["endpoints"].items():
            spread = f"{s['spread'][0]:.0f}–{s['spread'][1]:.0f}"
            statements = results["statements"].get(name, "")
            print(
                f"{name:<15} {s['requests_per_second']:>8.0f} {spread:>15} {s['p50_ms']:>6.1f} "
                f"{s['p95_ms']:>6.1f} {s['p99_ms']:>6.1f} {s['errors']:>4} "
                f"{s['vs_bare_text']:>6.2f} {s['vs_bare_page']:>6.2f} {statements!s:>5}"
            )
        print(
            f"worker RSS: portal {load['portal_worker_rss_mb']} MB, "
            f"bare DB page {load['bare_page_worker_rss_mb']} MB"
        )
    else:
        print("\nStatements per request:", results["statements"])
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
    print("\nTargets (issue 19, and issue 8's first load)")
    for name, figure in results["targets"].items():
        mark = "met" if figure["met"] else "NOT met"
        print(f"{name:<32} {figure['value']:>10} {figure['target']:>10}  {mark}")
    print(f"\nWritten to {RESULTS.relative_to(ROOT)} (commit {results['commit']})")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="seconds per figure")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--skip-load", action="store_true", help="no HTTP load")
    parser.add_argument(
        "--no-lighthouse", dest="lighthouse", action="store_false", help="no Lighthouse runs"
    )
    args = parser.parse_args()
    results = measure(args)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    # bench.dashboard and bench.reminders keep their figures in the same file.
    RESULTS.write_text(json.dumps({**previous, **results}, indent=2, ensure_ascii=False) + "\n")
    print_table(results)


if __name__ == "__main__":
    main()
