"""A small HTTP load client: threads, each with its own keep-alive-capable http.client connection.

Bounded in requests and in time, loopback only. The client shares the machine's cores with the
server, so the figures are a floor for what the server can do, not its ceiling.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Target:
    name: str
    path: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass
class LoadResult:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    def summary(self) -> dict:
        ordered = sorted(self.latencies_ms)

        def percentile(share: float) -> float:
            if not ordered:
                return float("nan")
            return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 2)

        return {
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "requests_per_second": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": percentile(0.50),
            "p95_ms": percentile(0.95),
            "p99_ms": percentile(0.99),
            "mean_ms": round(statistics.fmean(ordered), 2) if ordered else float("nan"),
        }


def run(
    host: str, port: int, target: Target, *, total: int, concurrency: int, max_seconds: float
) -> LoadResult:
    """Send `total` requests from `concurrency` threads, stopping early after `max_seconds`."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the load client only targets the loopback interface")
    lock = threading.Lock()
    remaining = [total]
    latencies: list[float] = []
    errors = [0]
    counts: list[int] = []
    deadline = time.perf_counter() + max_seconds

    def take() -> bool:
        with lock:
            if remaining[0] <= 0 or time.perf_counter() > deadline:
                return False
            remaining[0] -= 1
            return True

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        mine: list[float] = []
        failed = sent = 0
        while take():
            sent += 1
            started = time.perf_counter()
            try:
                connection.request(target.method, target.path, target.body, target.headers)
                response = connection.getresponse()
                response.read()
                if response.status >= 400:
                    failed += 1
                if response.will_close:
                    connection.close()
            except (OSError, http.client.HTTPException):
                failed += 1
                connection.close()
                continue
            mine.append((time.perf_counter() - started) * 1000)
        connection.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed
            counts.append(sent)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return LoadResult(target.name, sum(counts), errors[0], elapsed, latencies)
