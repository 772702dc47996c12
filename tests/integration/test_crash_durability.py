"""Acknowledged means durable: links created right before a SIGKILL are all there after a restart."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.server import Server, backend_env

LINKS = 200


def test_sigkill_after_acknowledged_creates_loses_nothing(
    backend: dict[str, str], tmp_path: Path
) -> None:
    server = Server(backend_env(backend), tmp_path / "server.log")
    server.start()
    try:

        def create(i: int) -> tuple[str, str]:
            url = f"https://example.com/durable/{i}"
            response = httpx.post(
                f"{server.url}/api/v1/shorten", json={"long_url": url}, timeout=10
            )
            assert response.status_code == 201, response.text
            return response.json()["short_code"], url

        with ThreadPoolExecutor(max_workers=8) as pool:
            created = list(pool.map(create, range(LINKS)))
    finally:
        server.kill()  # right after the last 201: no graceful shutdown

    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for code, url in created:
                redirect = client.get(f"/{code}")
                assert redirect.status_code == 302, (code, redirect.text)
                assert redirect.headers["location"] == url
            # The counter lease survived too: new codes never repeat old ones.
            fresh = client.post("/api/v1/shorten", json={"long_url": "https://example.com/after"})
            assert fresh.json()["short_code"] not in {code for code, _ in created}
    finally:
        server.stop()
