"""Two `plaza serve` processes sharing PostgreSQL and Redis; one is SIGKILLed while a client sends.

The client reconnects to the survivor, resends what was never acked (same client_msg_id), syncs, and
must then hold every acked message exactly once, in seq order, as must the other member.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.server import backend_env, running_server

SENDS = 60


class Device:
    """A chat client as an app would be: it keeps messages by seq and its unacked sends."""

    def __init__(self, base_url: str, token: str, device_id: str) -> None:
        self.token, self.device_id = token, device_id
        self.held: dict[int, dict[str, Any]] = {}  # seq -> message
        self.acked: dict[str, dict[str, Any]] = {}  # client_msg_id -> message
        self.unacked: dict[str, dict[str, Any]] = {}  # client_msg_id -> send frame
        self.limited: set[str] = set()  # sends refused for the flood limit: sent again later
        self.sockets = contextlib.ExitStack()
        self.socket = self.open(base_url)

    def open(self, base_url: str) -> ClientConnection:
        url = (
            base_url.replace("http://", "ws://")
            + f"/ws?token={self.token}&device_id={self.device_id}"
        )
        socket = self.sockets.enter_context(connect(url, open_timeout=10))
        assert json.loads(socket.recv(timeout=10))["type"] == "ready"
        return socket

    def take(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "error":
            # A reconnect resends a burst's worth at once: the flood limit may refuse some, which a
            # client sends again after a pause. Any other error is a failure.
            assert frame["code"] == "rate_limited", frame
            self.limited.add(frame["ref"])
            return
        if frame["type"] == "ack":
            self.acked[frame["client_msg_id"]] = frame["message"]
            self.unacked.pop(frame["client_msg_id"], None)
            frame = {"message": frame["message"]}
        if "message" in frame:
            message = frame["message"]
            assert self.held.setdefault(message["seq"], message) == message  # one seq, one message

    def send_later(self, conversation_id: str, content: str) -> None:
        """Queue a send while offline: it goes out with the unacked on reconnect."""
        self._queue(conversation_id, content)

    def send(self, conversation_id: str, content: str) -> None:
        self.socket.send(json.dumps(self._queue(conversation_id, content)))

    def _queue(self, conversation_id: str, content: str) -> dict[str, Any]:
        client_msg_id = uuid.uuid4().hex
        frame = {
            "type": "send",
            "client_msg_id": client_msg_id,
            "conversation_id": conversation_id,
            "content": content,
            "message_type": "text",
        }
        self.unacked[client_msg_id] = frame
        return frame

    def pump(self, until: float, stop: threading.Event | None = None) -> None:
        """Take frames until `until` (monotonic), or `stop`, or the connection breaks (raises)."""
        while (left := until - time.monotonic()) > 0 and not (stop and stop.is_set()):
            try:
                self.take(json.loads(self.socket.recv(timeout=min(left, 0.1))))
            except TimeoutError:
                continue

    def resume(self, base_url: str, conversation_id: str) -> None:
        """Reconnect elsewhere and resend the unacked (same client_msg_id), then sync."""
        self.socket = self.open(base_url)
        for frame in list(self.unacked.values()):
            self.socket.send(json.dumps(frame))
        self.sync(conversation_id)

    def sync(self, conversation_id: str) -> None:
        """Ask for everything after the last seq held without a gap; wait for acks and `synced`."""
        cursor = 0
        while cursor + 1 in self.held:
            cursor += 1
        self.socket.send(json.dumps({"type": "sync", "cursors": {conversation_id: cursor}}))
        deadline, synced = time.monotonic() + 30, False
        while self.unacked or not synced:
            assert time.monotonic() < deadline, "sync or the resent sends did not finish"
            try:
                frame = json.loads(self.socket.recv(timeout=0.5))
            except TimeoutError:  # quiet: the flood limit has refilled a little
                for ref in self.limited & self.unacked.keys():
                    self.socket.send(json.dumps(self.unacked[ref]))
                self.limited.clear()
                continue
            synced = synced or frame["type"] == "synced"
            self.take(frame)


def test_a_killed_process_loses_no_acked_message(
    pg_database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = backend_env(
        {"database_url": pg_database_url, "redis_url": redis_url, "redis_prefix": redis_prefix}
    )
    with (
        running_server(env, tmp_path / "one.log") as one,
        running_server(env, tmp_path / "two.log") as two,
    ):
        tokens = {}
        for name in ("alice", "bob"):
            assert (
                httpx.post(
                    f"{one.url}/api/v1/users", json={"username": name, "password": "correct horse"}
                ).status_code
                == 201
            )
            tokens[name] = httpx.post(
                f"{one.url}/api/v1/auth/token",
                json={"username": name, "password": "correct horse"},
            ).json()["access_token"]
        created = httpx.post(
            f"{one.url}/api/v1/conversations",
            json={"members": ["bob"]},
            headers={"Authorization": f"Bearer {tokens['alice']}"},
        )
        cid = created.json()["id"]

        alice = Device(one.url, tokens["alice"], "alice-phone")
        bob = Device(two.url, tokens["bob"], "bob-phone")
        bob_done = threading.Event()
        bob_reader = threading.Thread(target=bob.pump, args=(time.monotonic() + 60, bob_done))
        bob_reader.start()

        killer = threading.Timer(0.4, one.kill)  # mid-burst
        killer.start()
        try:
            for i in range(SENDS):
                alice.send(cid, f"message {i}")
                alice.pump(time.monotonic() + 0.02)
            alice.pump(time.monotonic() + 2)
        except (ConnectionClosed, OSError):
            # The process died under the client, as it would under a phone. The rest of the burst
            # is what the user typed meanwhile: queued, unacked, sent on reconnect.
            for j in range(i + 1, SENDS):
                alice.send_later(cid, f"message {j}")
        else:
            raise AssertionError("the burst outlived the kill: nothing was tested")
        killer.join()
        assert one.process is not None and one.process.poll() is not None
        acked_before = dict(alice.acked)
        assert len(acked_before) > 0

        # Sends the client made before the crash and never saw acked are retried; then it syncs.
        alice.resume(two.url, cid)
        bob_done.set()
        bob_reader.join()
        bob.sync(cid)  # what the dead process acked but never relayed, bob gets from SQL
        alice.sockets.close()
        bob.sockets.close()

    for device in (alice, bob):
        seqs = sorted(device.held)
        assert seqs == list(range(1, len(seqs) + 1)), device.device_id  # no gap, no repeat
    held_ids = {m["client_msg_id"] for m in alice.held.values()}
    assert set(acked_before) <= held_ids  # every message acked before the crash survived it
    assert {m["content"] for m in alice.held.values()} == {f"message {i}" for i in range(SENDS)}
    assert len(alice.held) == SENDS  # each once: retries stored nothing new
    assert bob.held == alice.held  # the other member, on the surviving process, agrees
