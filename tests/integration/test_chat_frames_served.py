"""Client frames in a real `plaza serve`, where its own WebSocket protocol hands each frame to the
gateway as it is parsed (realtime/transport.py) rather than through ASGI `receive`, as the test
client does: frames sent without waiting are all answered, in order, and a send whose client left
at once is still stored."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.server import Server, backend_env, running_server

pytestmark = pytest.mark.slow


@pytest.fixture
def served(backend: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    env = {**backend_env(backend), "PLAZA_CHAT_SEND_BURST": "1000"}
    with running_server(env, tmp_path / "server.log") as server:
        yield server


def _token(http: httpx.Client, username: str) -> str:
    body = {"username": username, "password": "correct horse"}
    assert http.post("/api/v1/users", json=body).status_code == 201
    return str(http.post("/api/v1/auth/token", json=body).json()["access_token"])


@contextlib.contextmanager
def _conversation(server: Server) -> Iterator[tuple[httpx.Client, str, int]]:
    """A client signed in as alice, her token, and her conversation with bob."""
    with httpx.Client(base_url=server.url, timeout=10) as http:
        _token(http, "bob")
        token = _token(http, "alice")
        http.headers["Authorization"] = f"Bearer {token}"
        created = http.post("/api/v1/conversations", json={"members": ["bob"]})
        assert created.status_code == 201, created.text
        yield http, token, int(created.json()["id"])


@contextlib.contextmanager
def _open(server: Server, token: str) -> Iterator[ClientConnection]:
    with connect(f"{server.url.replace('http', 'ws')}/ws?token={token}", open_timeout=5) as socket:
        assert json.loads(socket.recv(timeout=5))["type"] == "ready"
        yield socket


def _send(conversation: int, n: int) -> str:
    return json.dumps(
        {
            "type": "send",
            "conversation_id": str(conversation),
            "client_msg_id": f"m{n}",
            "content": f"message {n}",
        }
    )


def test_frames_sent_without_waiting_are_each_answered_in_order(served: Server) -> None:
    with _conversation(served) as (http, token, conversation):
        rounds = 100  # 400 frames: far more than the gateway lets wait before it stops reading
        with _open(served, token) as socket:
            for n in range(rounds):
                socket.send(json.dumps({"type": "ping"}))
                socket.send(_send(conversation, n))
                socket.send("not json")
                socket.send(json.dumps({"type": "no-such-type"}))
            answers: list[dict[str, Any]] = [
                json.loads(socket.recv(timeout=10)) for _ in range(4 * rounds)
            ]
        for n in range(rounds):
            pong, ack, bad_json, unknown = answers[4 * n : 4 * n + 4]
            assert pong == {"type": "pong"}
            assert ack["type"] == "ack" and ack["client_msg_id"] == f"m{n}"
            assert ack["message"]["seq"] == n + 1  # stored in the order sent
            assert bad_json["code"] == "invalid_json"
            assert unknown["code"] == "unknown_type"
        history = http.get(f"/api/v1/conversations/{conversation}/messages", params={"limit": 100})
        assert [m["content"] for m in history.json()["items"]] == [
            f"message {n}" for n in range(rounds)
        ]


def test_a_send_from_a_client_that_left_at_once_is_stored(served: Server) -> None:
    with _conversation(served) as (http, token, conversation):
        with _open(served, token) as socket:
            socket.send(_send(conversation, 1))
        # Closed at once: the send is being handled, or not yet read, when the client goes.
        deadline = time.monotonic() + 10
        while True:
            history = http.get(f"/api/v1/conversations/{conversation}/messages").json()["items"]
            if history or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [(m["client_msg_id"], m["seq"]) for m in history] == [("m1", 1)]
