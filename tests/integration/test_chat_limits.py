"""Send floods and typing that never stops, through the real app and WebSocket, on both backends."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from plaza.chat import activity
from tests.conftest import register
from tests.integration.test_chat_messaging import conversation, history
from tests.wsclient import online, send_message, token_of


def test_a_flood_of_sends_gets_rate_limited_errors_and_stores_nothing(make_client: Any) -> None:
    client = make_client(chat_send_rate=1, chat_send_burst=3)
    alice, _ = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a:
        for i in range(3):
            send_message(a, cid, f"burst {i}")
        flood = uuid.uuid4().hex
        a.send({"type": "send", "client_msg_id": flood, "conversation_id": cid, "content": "x"})
        error = a.expect("error")
        assert (error["code"], error["ref"]) == ("rate_limited", flood)
        time.sleep(1.1)  # a token comes back every second; the socket stayed open
        assert send_message(a, cid, "after a pause")["seq"] == 4
    assert [m["content"] for m in history(client, alice, cid)] == [
        "burst 0", "burst 1", "burst 2", "after a pause",
    ]  # fmt: skip


def test_typing_stops_by_itself_when_the_client_goes_quiet(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(activity, "TYPING_AUTO_STOP_S", 0.5)
    alice, bob = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a, online(client, token_of(bob)) as b:
        a.send({"type": "typing", "conversation_id": cid, "state": "start"})
        assert b.expect("typing")["state"] == "start"
        started = time.monotonic()
        stop = b.expect("typing", timeout_s=3)
        assert stop["state"] == "stop" and stop["user"]["username"] == "alice"
        assert time.monotonic() - started >= 0.4
        # An explicit stop cancels the automatic one: exactly one stop arrives.
        a.send({"type": "typing", "conversation_id": cid, "state": "start"})
        assert b.expect("typing")["state"] == "start"
        a.send({"type": "typing", "conversation_id": cid, "state": "stop"})
        assert b.expect("typing")["state"] == "stop"
        assert [f for f in b.frames(quiet_s=1.0) if f["type"] == "typing"] == []
