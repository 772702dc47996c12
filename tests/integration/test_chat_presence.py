"""Presence through the real app and WebSocket: online at once, offline only after the grace period.

The grace period runs on the app's clock: a fake one here, moved by the test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from plaza.app import create_app
from plaza.platform.clock import FakeClock
from plaza.settings import Settings
from tests.conftest import register
from tests.integration.test_chat_messaging import conversation
from tests.wsclient import Socket, online, send_message, token_of

GRACE_S = 15.0
SERVER_CATCH_UP_S = 0.3  # real time for the server to handle a closed socket before the clock moves


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(backend: dict[str, str], clock: FakeClock) -> Iterator[TestClient]:
    settings = Settings(_env_file=None, env="test", base_url="http://testserver", **backend)  # type: ignore[arg-type]
    with TestClient(create_app(settings, clock=clock)) as client:
        yield client


def presence_frames(socket: Socket, quiet_s: float = 0.6) -> list[dict[str, Any]]:
    return [f for f in socket.frames(quiet_s) if f["type"] == "presence"]


def lookup(client: TestClient, headers: dict[str, str], users: str) -> dict[str, Any]:
    response = client.get("/api/v1/presence", params={"users": users}, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_online_at_once_offline_after_the_grace_period_without_flapping(
    client: TestClient, clock: FakeClock
) -> None:
    alice, bob, carol = (
        register(client, "alice"),
        register(client, "bob"),
        register(client, "carol"),
    )
    conversation(client, alice, "bob")
    assert lookup(client, alice, "bob")["bob"] == {"status": "offline", "last_seen": None}
    with online(client, token_of(alice)) as a, online(client, token_of(carol)) as c:
        with online(client, token_of(bob)) as b:
            [arrival] = presence_frames(a)
            assert arrival["user"]["username"] == "bob" and arrival["status"] == "online"
            with online(client, token_of(bob), device_id="tablet"):
                assert presence_frames(a, 0.3) == []  # a second device changes nothing
            b.settle()
        assert lookup(client, alice, "bob")["bob"]["status"] == "online"

        # Gone, and back within the grace period: nobody hears anything.
        time.sleep(SERVER_CATCH_UP_S)
        clock.advance(GRACE_S - 5)
        assert presence_frames(a) == []
        with online(client, token_of(bob)):
            assert presence_frames(a) == []
        left_at = clock.time()
        time.sleep(SERVER_CATCH_UP_S)  # the server sees the socket close at this fake time
        clock.advance(GRACE_S - 1)
        assert presence_frames(a) == []
        assert lookup(client, alice, "bob")["bob"]["status"] == "online"

        clock.advance(2)  # the grace period is over
        [departure] = presence_frames(a)
        assert departure["user"]["username"] == "bob" and departure["status"] == "offline"
        assert departure["last_seen"] is not None
        seen = lookup(client, alice, "bob")["bob"]
        assert seen["status"] == "offline" and seen["last_seen"] == departure["last_seen"]
        assert abs(_epoch(seen["last_seen"]) - left_at) < 2

        # Carol shares no conversation with bob: she heard nothing and may not ask.
        assert presence_frames(c, 0.1) == []
        assert lookup(client, carol, "bob") == {}
    assert lookup(client, alice, "alice,bob,nobody,carol") == {
        "alice": lookup(client, alice, "alice")["alice"],
        "bob": seen,
    }
    for bad in ("", " , ", ",".join(f"u{i}" for i in range(101))):
        response = client.get("/api/v1/presence", params={"users": bad}, headers=alice)
        assert response.status_code == 400, bad


def _epoch(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_with_redis_down_messages_still_deliver_and_presence_answers(
    app_factory: Any, sqlite_url: str
) -> None:
    client = app_factory(database_url=sqlite_url, redis_url="redis://127.0.0.1:1/0")
    alice, bob = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a, online(client, token_of(bob)) as b:
        sent = send_message(a, cid, "still here")
        assert b.expect("message")["message"] == sent
        a.send({"type": "typing", "conversation_id": cid, "state": "start"})
        assert b.expect("typing")["state"] == "start"
        answer = lookup(client, alice, "bob")
        assert answer["bob"]["status"] in ("online", "offline")
