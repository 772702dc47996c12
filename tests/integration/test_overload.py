"""Overload is not an outage: with every database connection busy, requests and frames are told to retry
shortly (`overloaded`, Retry-After 1), and once a connection is free everything works as before.

Both backends have a pool that can run dry: PostgreSQL's holds PLAZA_DATABASE_POOL_SIZE connections,
SQLite's SQLAlchemy's 5 and 10 overflow. The test holds every one of them, whatever their number.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.conftest import register
from tests.integration.test_chat_messaging import conversation, history
from tests.wsclient import connect, online, send_message, token_of

POOL_TIMEOUT_S = 0.2
NEW_LINK = {"long_url": "https://example.com/created-while-busy"}


@contextlib.contextmanager
def every_connection_held(client: Any) -> Iterator[None]:
    """Check out connections from the app's pool until it has none left; give them back after."""
    engine = client.app.state.platform.db.engine

    async def take_all() -> list[AsyncConnection]:
        held: list[AsyncConnection] = []
        while True:
            try:
                held.append(await engine.connect())
            except sa_exc.TimeoutError:
                return held

    held = client.portal.call(take_all)
    assert held
    try:
        yield
    finally:
        for conn in held:
            client.portal.call(conn.close)


def overload_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "plaza.errors" and "overloaded" in r.message]


def test_a_busy_pool_answers_overloaded_then_recovers(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(
        database_pool_size=1, database_pool_timeout_s=POOL_TIMEOUT_S, run_workers=False
    )
    alice, bob = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    code = client.post("/api/v1/shorten", json={"long_url": "https://example.com/busy"}).json()[
        "short_code"
    ]
    assert client.get(f"/{code}", follow_redirects=False).status_code == 302  # now cached
    keyed = {**alice, "Idempotency-Key": "create-1"}
    caplog.set_level(logging.WARNING)
    with online(client, token_of(alice)) as socket:
        with every_connection_held(client):
            listed = client.get("/api/v1/conversations", headers=alice)
            assert listed.status_code == 503
            assert listed.headers["Retry-After"] == "1"
            error = listed.json()["error"]
            assert error["code"] == "overloaded" and error["message"]

            create = client.post("/api/v1/shorten", json=NEW_LINK, headers=keyed)
            assert create.status_code == 503
            assert create.json()["error"]["code"] == "overloaded"

            uncached = client.get(
                "/Unknown1", follow_redirects=False, headers={"Accept": "application/json"}
            )
            assert uncached.status_code == 503
            assert uncached.headers["Retry-After"] == "1"
            assert uncached.json()["error"]["code"] == "overloaded"
            assert client.get(f"/{code}", follow_redirects=False).status_code == 302

            # A frame whose handler needs a pooled connection. (Sends do too on SQLite; on
            # PostgreSQL they are stored on the message writer's own connection, pool or not.)
            socket.send({"type": "sync", "cursors": {cid: 0}})
            frame = socket.expect("error")
            assert (frame["code"], frame["ref"]) == ("overloaded", None)
            socket.send({"type": "ping"})  # the connection stays open
            assert socket.expect("pong") == {"type": "pong"}

            with connect(client, token_of(bob)) as late:  # its token is not cached yet
                assert late.close_code() == 1013
                assert [f["type"] for f in late.skipped] == ["reconnect"]

        # One warning per refused request or frame, and no stack trace: overload is not a bug.
        warnings = overload_warnings(caplog)
        assert len(warnings) == 5
        assert all(r.levelno == logging.WARNING and r.exc_info is None for r in warnings)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

        # A connection is free again: a send is stored, once however often it is retried.
        assert send_message(socket, cid, "hello while busy", "m-1")["seq"] == 1
        assert send_message(socket, cid, "hello while busy", "m-1")["seq"] == 1
    assert [(m["seq"], m["client_msg_id"]) for m in history(client, alice, cid)] == [(1, "m-1")]
    assert client.get("/api/v1/conversations", headers=alice).status_code == 200
    created = client.post("/api/v1/shorten", json=NEW_LINK, headers=keyed)
    assert created.status_code == 201  # the key was never claimed: the retry runs
    again = client.post("/api/v1/shorten", json=NEW_LINK, headers=keyed)
    assert again.json() == created.json()
    mine = client.get("/api/v1/urls", params={"owner": "me"}, headers=alice).json()["items"]
    assert [link["long_url"] for link in mine] == [NEW_LINK["long_url"]]
    assert client.get("/Unknown1", follow_redirects=False).status_code == 404


@pytest.mark.parametrize(
    "pool_timeout_s", [POOL_TIMEOUT_S, 3.0], ids=["pool-gives-up-first", "readiness-gives-up-first"]
)
def test_a_busy_pool_keeps_the_instance_ready(make_client: Any, pool_timeout_s: float) -> None:
    """A load balancer that took busy instances out one after another would turn overload into an
    outage: a database that answers while every connection is busy is `busy`, and ready. Whatever the
    requests' pool timeout (here shorter, then longer than the readiness check's 2 s), the check
    does not queue behind them."""
    client = make_client(
        database_pool_size=1, database_pool_timeout_s=pool_timeout_s, run_workers=False
    )
    assert client.get("/readyz").json()["checks"]["database"] == "ok"
    with every_connection_held(client):
        ready = client.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "ok"
        assert body["checks"].pop("database") == "busy"
        assert set(body["checks"].values()) <= {"ok"}  # Redis, when configured
    assert client.get("/readyz").json()["checks"]["database"] == "ok"
