"""A real `plaza serve` and WebSocket clients: compression as configured; told to stop (SIGTERM),
clients hear when to come back, then 1012."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.server import Server, backend_env


def _token(server: Server) -> str:
    with httpx.Client(base_url=server.url) as client:
        body = {"username": "alice", "password": "correct horse"}
        assert client.post("/api/v1/users", json=body).status_code == 201
        return str(client.post("/api/v1/auth/token", json=body).json()["access_token"])


@pytest.mark.slow
def test_sigterm_sends_reconnect_then_closes_1012(sqlite_url: str, tmp_path: Path) -> None:
    server = Server(backend_env({"database_url": sqlite_url}), tmp_path / "server.log")
    server.start()
    stopping = threading.Thread(target=server.stop)
    try:
        ws_url = server.url.replace("http", "ws") + f"/ws?token={_token(server)}"
        with connect(ws_url, open_timeout=5) as socket:
            assert json.loads(socket.recv(timeout=5))["type"] == "ready"
            stopping.start()  # SIGTERM, then waits for the process to exit
            reconnect = json.loads(socket.recv(timeout=10))
            assert reconnect["type"] == "reconnect"
            assert 0 <= reconnect["after_ms"] <= 10_000
            with pytest.raises(ConnectionClosed) as closed:
                socket.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    finally:
        if stopping.ident is not None:
            stopping.join(timeout=30)
        else:
            server.stop()
    assert server.process is not None and server.process.returncode is not None


@pytest.mark.slow
@pytest.mark.parametrize("compression", [None, "true"])
def test_frames_are_compressed_only_when_configured(
    compression: str | None, sqlite_url: str, tmp_path: Path
) -> None:
    env = backend_env({"database_url": sqlite_url})
    if compression is not None:
        env["PLAZA_WS_COMPRESSION"] = compression
    server = Server(env, tmp_path / "server.log")
    server.start()
    try:
        ws_url = server.url.replace("http", "ws") + f"/ws?token={_token(server)}"
        with connect(ws_url, open_timeout=5, compression="deflate") as socket:  # offered
            agreed = socket.response.headers.get("Sec-WebSocket-Extensions") or ""
            assert ("permessage-deflate" in agreed) == (compression is not None), agreed
            assert json.loads(socket.recv(timeout=5))["type"] == "ready"
            socket.send(json.dumps({"type": "ping"}))
            assert json.loads(socket.recv(timeout=5))["type"] == "pong"
    finally:
        server.stop()
