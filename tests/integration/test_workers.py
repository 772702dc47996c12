"""`plaza serve --workers N`: several processes behind one port answer as one server."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.server import Server, backend_env

HEALTHZ_COUNT = re.compile(
    r'^plaza_http_request_duration_seconds_count\{[^}]*route="/healthz"[^}]*\} (\S+)$', re.M
)


def healthz_count(url: str) -> float:
    """Requests to /healthz that /metrics reports, from whichever process answers it."""
    body = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(n) for n in HEALTHZ_COUNT.findall(body))


def test_metrics_count_the_requests_of_every_worker(
    pg_database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = backend_env(
        {"database_url": pg_database_url, "redis_url": redis_url, "redis_prefix": redis_prefix}
    )
    server = Server(env, tmp_path / "server.log", workers=2)
    server.start()
    try:
        before = healthz_count(server.url)
        for _ in range(40):  # a connection each: the kernel spreads them over the processes
            assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        # Every answer, whichever process gives it, counts all 40.
        assert [healthz_count(server.url) - before for _ in range(6)] == [40.0] * 6
    finally:
        server.stop()
