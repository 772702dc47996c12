"""A WebSocket client for tests, over Starlette's TestClient (the real app, lifespan included).

TestClient's own `receive()` waits forever; every read here has a deadline, so a frame that never comes
fails the test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anyio
from starlette.testclient import TestClient, WebSocketTestSession

DEFAULT_TIMEOUT_S = 5.0


class Closed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed with {code} {reason!r}")
        self.code, self.reason = code, reason


class Socket:
    def __init__(self, session: WebSocketTestSession) -> None:
        self.session = session
        self.skipped: list[dict[str, Any]] = []  # frames passed over by expect()

    def send(self, frame: dict[str, Any]) -> None:
        self.session.send_json(frame)

    def send_raw(self, text: str) -> None:
        self.session.send_text(text)

    def recv(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        message = self._next(timeout_s)
        if message["type"] == "websocket.close":
            raise Closed(message.get("code", 1000), message.get("reason") or "")
        return dict(json.loads(message["text"]))

    def expect(
        self,
        kind: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> dict[str, Any]:
        """The next frame of this type (that satisfies `where`); others are kept in `skipped`."""
        deadline = time.monotonic() + timeout_s
        while True:
            frame = self.recv(max(0.01, deadline - time.monotonic()))
            if frame["type"] == kind and where(frame):
                return frame
            self.skipped.append(frame)

    def settle(self) -> None:
        """Wait until the server has handled every frame sent so far (they are handled in order).

        Needed before leaving a socket's block: the test client cancels the app on disconnect,
        where a real server would let the last frames finish.
        """
        self.send({"type": "ping"})
        self.expect("pong")

    def frames(self, quiet_s: float = 0.3) -> list[dict[str, Any]]:
        """Every frame until none has come for `quiet_s`."""
        found = []
        with contextlib.suppress(TimeoutError):
            while True:
                found.append(self.recv(quiet_s))
        return found

    def close_code(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
        """Read until the server closes; the close code (frames before it land in `skipped`)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.skipped.append(self.recv(max(0.01, deadline - time.monotonic())))
            except Closed as closed:
                return closed.code

    def _next(self, timeout_s: float) -> Any:
        async def receive() -> Any:
            with anyio.fail_after(timeout_s):
                # The session's private stream: its public receive() cannot be given a deadline.
                return await self.session._send_rx.receive()

        return self.session.portal.call(receive)


@contextlib.contextmanager
def connect(client: TestClient, token: str | None = None, **params: str) -> Iterator[Socket]:
    """A socket to /ws, authenticated by `?token=` when one is given."""
    query = {**({"token": token} if token else {}), **params}
    url = "/ws" + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    with client.websocket_connect(url) as session:
        yield Socket(session)


@contextlib.contextmanager
def online(client: TestClient, token: str, **params: str) -> Iterator[Socket]:
    """An authenticated socket whose `ready` frame has been read."""
    with connect(client, token, **params) as socket:
        ready = socket.recv()
        assert ready["type"] == "ready", ready
        yield socket


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def send_message(
    socket: Socket, conversation_id: str, content: str, client_msg_id: str | None = None
) -> dict[str, Any]:
    """Send a text message and return its ack's message."""
    client_msg_id = client_msg_id or uuid.uuid4().hex
    socket.send(
        {
            "type": "send",
            "client_msg_id": client_msg_id,
            "conversation_id": conversation_id,
            "content": content,
            "message_type": "text",
        }
    )
    ack = socket.expect("ack", where=lambda f: f["client_msg_id"] == client_msg_id)
    return dict(ack["message"])
