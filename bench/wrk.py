"""HTTP load with wrk (Debian's package), one target at a time, figures read back as JSON.

wrk is an event-loop client in C: with one thread and 8 connections it needs a fraction of a
core, so the server keeps the machine's cores, unlike a Python thread client. A Lua script per
target sets the method, headers and body and prints the latency percentiles and errors.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPORT = """
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write("WRK-JSON ", string.format(
    '{"requests": %d, "seconds": %.6f, "p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f,'
    .. ' "connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d,'
    .. ' "non_2xx_3xx": %d}\\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    errors.connect, errors.read, errors.write, errors.timeout, errors.status))
end
"""


@dataclass
class Target:
    name: str
    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid Lua string literal for ASCII text


def script(target: Target) -> str:
    lines = [f"wrk.method = {_lua_string(target.method)}"]
    for name, value in target.headers.items():
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    if target.body is not None:
        lines.append(f"wrk.body = {_lua_string(target.body)}")
    return "\n".join(lines) + "\n" + REPORT


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(
            "bench: wrk is not installed (Debian package wrk; `make bench` installs it)"
        )
    return found


def run(target: Target, *, seconds: float, connections: int, threads: int = 1) -> dict:
    """One wrk run; req/s, latency percentiles in ms, and every kind of error."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script(target))
    try:
        completed = subprocess.run(
            [
                wrk_path(),
                f"--threads={threads}",
                f"--connections={connections}",
                f"--duration={round(seconds)}s",
                "--timeout=10s",
                f"--script={lua.name}",
                target.url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    finally:
        Path(lua.name).unlink()
    line = next(
        (line for line in completed.stdout.splitlines() if line.startswith("WRK-JSON ")), None
    )
    if line is None:
        raise SystemExit(
            f"bench: wrk failed on {target.name}:\n{completed.stderr or completed.stdout}"
        )
    figures = json.loads(line.removeprefix("WRK-JSON "))
    figures["errors"] = sum(
        figures.pop(key)
        for key in ("connect_errors", "read_errors", "write_errors", "timeouts", "non_2xx_3xx")
    )
    figures["requests_per_second"] = round(figures["requests"] / figures["seconds"], 1)
    return figures
