"""The production shape: `plaza serve --no-background` answers, a separate `plaza worker` fans out.

A post made through the server reaches a follower's cached feed and the follower's WebSocket, both
through the worker process, which holds no connection of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

from tests.server import backend_env, running_server


def test_a_separate_worker_fans_out_and_pushes_frames(
    pg_database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = backend_env(
        {"database_url": pg_database_url, "redis_url": redis_url, "redis_prefix": redis_prefix}
    )
    serve_env = {**env, "PLAZA_RUN_WORKERS": "false"}
    with (
        contextlib.ExitStack() as stack,
        running_server(serve_env, tmp_path / "serve.log") as server,
    ):
        with (tmp_path / "worker.log").open("ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "plaza", "worker"],
                env={**os.environ, **env, "PLAZA_LOG_FORMAT": "json"},
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            api = stack.enter_context(httpx.Client(base_url=server.url, timeout=10))
            headers = {}
            for name in ("alice", "bob"):
                body = {"username": name, "password": "correct horse"}
                assert api.post("/api/v1/users", json=body).status_code == 201
                token = api.post("/api/v1/auth/token", json=body).json()["access_token"]
                headers[name] = {"Authorization": f"Bearer {token}"}
            assert api.post("/api/v1/users/bob/follow", headers=headers["alice"]).status_code == 200
            assert api.get("/api/v1/feed", headers=headers["alice"]).json()["items"] == []

            ws_url = server.url.replace("http://", "ws://") + "/ws?token="
            ws_url += headers["alice"]["Authorization"].removeprefix("Bearer ")
            with connect(ws_url, open_timeout=10) as socket:
                assert json.loads(socket.recv(timeout=10))["type"] == "ready"
                time.sleep(0.5)  # the registry entry is written; the worker looks it up
                made = api.post(
                    "/api/v1/posts", json={"content": "via the worker"}, headers=headers["bob"]
                )
                assert made.status_code == 201
                deadline = time.monotonic() + 10
                while True:
                    frame = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
                    if frame["type"] == "feed":
                        break
                assert frame["post"]["id"] == made.json()["id"]
            feed = api.get("/api/v1/feed", headers=headers["alice"]).json()
            assert [p["content"] for p in feed["items"]] == ["via the worker"]
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=20)
