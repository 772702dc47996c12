"""The WebSocket gateway through the real app: authentication, heartbeats, bad frames, idling, draining."""

from __future__ import annotations

import threading
from typing import Any

from tests.conftest import register
from tests.wsclient import connect, online, token_of


def test_auth_by_query_token_or_first_frame_then_ready(client: Any) -> None:
    token = token_of(register(client, "alice"))
    with connect(client, token, device_id="phone-1") as socket:
        ready = socket.recv()
        assert ready["type"] == "ready"
        assert ready["user"]["username"] == "alice"
        assert set(ready["user"]) == {"id", "username", "display_name"}
        assert ready["device_id"] == "phone-1"
        assert ready["heartbeat_s"] == 10
    with connect(client, token) as socket:
        assert len(socket.recv()["device_id"]) == 32  # a fresh one when none is given
    with connect(client) as socket:  # or by a first frame, which keeps the token out of URLs
        socket.send({"type": "auth", "token": token, "device_id": "laptop"})
        ready = socket.recv()
        assert ready["type"] == "ready"
        assert ready["device_id"] == "laptop"
        socket.send({"type": "auth", "token": token})
        assert socket.recv()["code"] == "already_authenticated"
        socket.send({"type": "ping"})
        assert socket.recv() == {"type": "pong"}


def test_failed_auth_closes_4401_before_any_ready(client: Any) -> None:
    first_frames = [
        {"type": "auth", "token": "not-a-token"},
        {"type": "auth"},
        {"type": "ping"},
        "not json",
    ]
    for first in first_frames:
        with connect(client) as socket:
            if isinstance(first, str):
                socket.send_raw(first)
            else:
                socket.send(first)
            assert socket.close_code() == 4401, first
            assert socket.skipped == []
    with connect(client, "bogus") as socket:
        assert socket.close_code() == 4401
        assert socket.skipped == []


def test_silence_closes_4401_before_auth_and_4408_after(make_client: Any) -> None:
    client = make_client(ws_auth_timeout_s=0.3, ws_idle_timeout_s=0.6)
    with connect(client) as socket:
        assert socket.close_code(timeout_s=3) == 4401
    with online(client, token_of(register(client, "alice"))) as socket:
        socket.send({"type": "ping"})  # a heartbeat keeps it open ...
        assert socket.recv() == {"type": "pong"}
        assert socket.close_code(timeout_s=3) == 4408  # ... silence does not


def test_connections_arriving_together_each_get_their_own_user(client: Any) -> None:
    """A reconnect wave: tokens are looked up together, and each answer goes to its own socket."""
    names = [f"user{i}" for i in range(12)]
    tokens = {name: token_of(register(client, name)) for name in names}
    tokens["nobody"] = "not-a-token"
    outcomes: dict[str, Any] = {}

    def arrive(name: str) -> None:
        with connect(client, tokens[name]) as socket:
            if name == "nobody":
                outcomes[name] = socket.close_code()
            else:
                outcomes[name] = socket.recv()["user"]["username"]

    threads = [threading.Thread(target=arrive, args=(name,)) for name in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outcomes == {**{name: name for name in names}, "nobody": 4401}


def test_one_user_holds_a_bounded_number_of_connections(make_client: Any) -> None:
    client = make_client(ws_max_connections_per_user=2)
    alice, bob = (token_of(register(client, n)) for n in ("alice", "bob"))
    with online(client, alice), online(client, alice):
        with connect(client, alice) as third:
            error = third.recv()
            assert error["type"] == "error" and error["code"] == "too_many_connections"
            assert third.close_code() == 4429
        with online(client, bob) as other:  # the limit is per user
            other.send({"type": "ping"})
            assert other.recv() == {"type": "pong"}
    with online(client, alice) as again:  # closed connections make room
        again.send({"type": "ping"})
        assert again.recv() == {"type": "pong"}


def test_bad_frames_get_error_frames_and_the_connection_stays(client: Any) -> None:
    with online(client, token_of(register(client, "alice"))) as socket:
        cases: list[tuple[str, str]] = [
            ("{not json", "invalid_json"),
            ("[1, 2]", "invalid_frame"),
            ('{"seq": 1}', "missing_type"),
            ('{"type": 7}', "unknown_type"),
            ('{"type": "teleport"}', "unknown_type"),
            ('{"type": "ping", "pad": "' + "x" * 70_000 + '"}', "frame_too_large"),
            ('{"type": "send", "client_msg_id": "m-1"}', "missing_field"),
            ('{"type": "read", "conversation_id": "1", "seq": -1}', "invalid_field"),
            ('{"type": "typing", "conversation_id": "1", "state": "maybe"}', "invalid_field"),
        ]
        for raw, code in cases:
            socket.send_raw(raw)
            error = socket.recv()
            assert error["type"] == "error", raw
            assert error["code"] == code, raw
            assert error["message"]
        socket.send_raw('{"type": "send", "client_msg_id": "m-1"}')
        assert socket.recv()["ref"] == "m-1"  # errors about a send name its client_msg_id
        socket.send({"type": "ping"})
        assert socket.recv() == {"type": "pong"}


def test_shutdown_tells_clients_to_reconnect_then_closes_1012(client: Any) -> None:
    token = token_of(register(client, "alice"))
    with online(client, token) as first, online(client, token) as second:
        hub = client.app.state.services.realtime
        client.portal.call(hub.drain)  # what the lifespan does on shutdown
        for socket in (first, second):
            assert socket.close_code() == 1012
            (reconnect,) = socket.skipped
            assert reconnect["type"] == "reconnect"
            assert 0 <= reconnect["after_ms"] <= 10_000
    with connect(client, token) as late:  # while draining, newcomers are sent away at once
        assert late.recv()["type"] == "reconnect"
        assert late.close_code() == 1012
