"""Schemathesis over /openapi.json against a real server: no 5xx, and every response fits its schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.server import Server, backend_env

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)
# Everything but the stateful phase, whose generated sequences take minutes; positive and negative data.
PHASES = "examples,coverage,fuzzing"


def _token(server: Server) -> str:
    with httpx.Client(base_url=server.url) as client:
        client.post("/api/v1/users", json={"username": "fuzzer", "password": "fuzzing-pass"})
        client.post(
            "/api/v1/shorten", json={"long_url": "https://example.com", "custom_alias": "known"}
        )
        token = client.post(
            "/api/v1/auth/token", json={"username": "fuzzer", "password": "fuzzing-pass"}
        )
    return str(token.json()["access_token"])


def test_api_never_fails_or_breaks_its_schema(backend: dict[str, str], tmp_path: Path) -> None:
    server = Server(backend_env(backend), tmp_path / "server.log")
    server.start()
    try:
        command = [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{server.url}/openapi.json",
            "--checks", CHECKS,
            "--phases", PHASES,
            "--max-examples", "30",
            "--generation-deterministic",
            "-H", f"Authorization: Bearer {_token(server)}",
            "--no-color",
        ]  # fmt: skip
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path
        )
    finally:
        server.stop()
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
