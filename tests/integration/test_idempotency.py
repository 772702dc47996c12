"""Idempotency keys never stay stuck: a claim whose request died is taken over once its lease lapses.

A process that dies between claiming a key and storing the response leaves the key's row claimed and
without a response; so does one that cannot release the claim after a 5xx. Most tests here leave that
row as the dead process would (inserted in SQL, claimed some time ago); one kills a real server
mid-request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from sqlalchemy import insert, select, update
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from plaza.platform.clock import FakeClock
from plaza.platform.db import Database
from plaza.platform.idempotency import (
    CLAIM_LEASE,
    IdempotencyMiddleware,
    caller_of,
    request_digest,
)
from plaza.platform.tables import idempotency_keys
from tests.conftest import post_together, register
from tests.server import Server, backend_env

PATH = "/api/v1/shorten"
BODY = orjson.dumps({"long_url": "https://example.com/once"})
LAPSED = CLAIM_LEASE + dt.timedelta(seconds=1)
AGE_CLAIMS = (
    "UPDATE idempotency_keys SET created_at = created_at - "
    f"interval '{LAPSED.total_seconds()} seconds'"
)


def keyed_post(client: Any, headers: dict[str, str], body: bytes = BODY) -> Any:
    return client.post(PATH, content=body, headers=_keyed(headers))


def _keyed(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Idempotency-Key": "retry-1", "Content-Type": "application/json"}


def leave_claim(client: Any, headers: dict[str, str], *, age: dt.timedelta) -> None:
    """The row a process leaves when it dies `age` after claiming the key for BODY."""
    caller = caller_of({"headers": [(b"authorization", headers["Authorization"].encode())]})
    row = {
        "caller": caller,
        "key": "retry-1",
        "request_hash": request_digest(PATH, b"", BODY),
        "created_at": dt.datetime.now(dt.UTC) - age,
    }

    async def claim() -> None:
        async with client.app.state.platform.db.write() as conn:
            await conn.execute(insert(idempotency_keys).values(**row))

    client.portal.call(claim)


def links_of(client: Any, headers: dict[str, str]) -> list[str]:
    listed = client.get("/api/v1/urls", params={"owner": "me"}, headers=headers)
    return [link["long_url"] for link in listed.json()["items"]]


def test_an_abandoned_claim_is_taken_over_after_its_lease_and_runs_once(client: Any) -> None:
    alice = register(client, "alice")
    leave_claim(client, alice, age=LAPSED)
    first = keyed_post(client, alice)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = keyed_post(client, alice)
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["idempotent-replayed"] == "true"
    assert links_of(client, alice) == ["https://example.com/once"]


def test_within_its_lease_a_claim_is_still_in_progress(client: Any) -> None:
    alice = register(client, "alice")
    leave_claim(client, alice, age=CLAIM_LEASE - dt.timedelta(seconds=5))
    duplicate = keyed_post(client, alice)
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "idempotency_in_progress"
    assert links_of(client, alice) == []


def test_an_abandoned_claim_is_not_taken_over_by_a_different_body(client: Any) -> None:
    alice = register(client, "alice")
    leave_claim(client, alice, age=LAPSED)
    other = keyed_post(client, alice, orjson.dumps({"long_url": "https://example.com/other"}))
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert links_of(client, alice) == []


def test_racing_retries_after_the_lease_run_once(client: Any) -> None:
    alice = register(client, "alice")
    leave_claim(client, alice, age=LAPSED)
    retries = [{"content": BODY, "headers": _keyed(alice)}] * 8
    responses = client.portal.call(post_together, client.app, PATH, retries)
    ran = [r for r in responses if "idempotent-replayed" not in r.headers and r.status_code == 201]
    assert len(ran) == 1
    for response in responses:
        if response is ran[0]:
            continue
        if response.status_code == 409:  # raced the winner while it ran
            assert response.json()["error"]["code"] == "idempotency_in_progress"
        else:  # came after it had answered
            assert response.headers["idempotent-replayed"] == "true"
            assert response.json() == ran[0].json()
    assert links_of(client, alice) == ["https://example.com/once"]


def test_a_completed_key_is_never_taken_over(client: Any) -> None:
    alice = register(client, "alice")
    first = keyed_post(client, alice)
    assert first.status_code == 201

    async def age_every_key() -> None:  # past the lease, well within the key's 24 h
        async with client.app.state.platform.db.write() as conn:
            claimed = dt.datetime.now(dt.UTC) - LAPSED
            await conn.execute(update(idempotency_keys).values(created_at=claimed))

    client.portal.call(age_every_key)
    again = keyed_post(client, alice)
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["idempotent-replayed"] == "true"
    assert links_of(client, alice) == ["https://example.com/once"]


# --- A request that outlives its lease ----------------------------------------------------------


@pytest.fixture(params=["sqlite_url", "pg_database_url"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


@pytest.mark.anyio
@pytest.mark.parametrize("late_status", [201, 500])
async def test_a_request_past_its_lease_does_not_settle_its_successors_key(
    database_url: str, late_status: int
) -> None:
    """The first request hangs past the lease, a retry takes the key over and answers; when the first
    finally answers (stored or failed), the key keeps the retry's response."""
    db = Database.from_url(database_url)
    clock = FakeClock(start=time.time())
    first_may_answer = asyncio.Event()
    runs: list[int] = []

    async def operation(_: Request) -> Response:
        runs.append(len(runs) + 1)
        run = runs[-1]
        if run == 1:
            await first_may_answer.wait()
            return JSONResponse({"run": run}, status_code=late_status)
        return JSONResponse({"run": run}, status_code=201)

    app = Starlette(
        routes=[Route("/operation", operation, methods=["POST"])],
        middleware=[Middleware(IdempotencyMiddleware)],
    )
    app.state.platform = SimpleNamespace(db=db, clock=clock)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:

            async def post() -> httpx.Response:
                return await http.post(
                    "/operation", content=b"{}", headers={"Idempotency-Key": "k"}
                )

            first = asyncio.create_task(post())
            for _ in range(500):
                if runs:
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the first request never ran")
            assert (await post()).status_code == 409  # in progress, within the lease
            clock.advance(LAPSED.total_seconds())
            second = await post()
            assert (second.status_code, second.json()) == (201, {"run": 2})
            first_may_answer.set()
            assert (await first).status_code == late_status  # its client still gets its answer
            replayed = await post()
            assert (replayed.status_code, replayed.json()) == (201, {"run": 2})
            assert replayed.headers["idempotent-replayed"] == "true"
    finally:
        await db.dispose()
    assert runs == [1, 2]


@pytest.mark.anyio
async def test_the_answer_goes_out_only_once_the_key_holds_it(database_url: str) -> None:
    """A client that repeats its request the moment it has the answer must get the replay, not 409
    `idempotency_in_progress`: the key stores the response before the response is sent."""
    db = Database.from_url(database_url)

    async def operation(_: Request) -> Response:
        return JSONResponse({"done": True}, status_code=201)

    app = Starlette(
        routes=[Route("/operation", operation, methods=["POST"])],
        middleware=[Middleware(IdempotencyMiddleware)],
    )
    app.state.platform = SimpleNamespace(db=db, clock=FakeClock(start=time.time()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/operation",
        "raw_path": b"/operation",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"idempotency-key", b"k"), (b"content-length", b"2")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    held_when_answered: list[tuple[int | None, bytes | None]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            async with db.read() as conn:
                row = (
                    await conn.execute(
                        select(idempotency_keys.c.status_code, idempotency_keys.c.body)
                    )
                ).one()
            held_when_answered.append((row.status_code, row.body))

    try:
        await app(scope, receive, send)
    finally:
        await db.dispose()
    assert held_when_answered == [(201, b'{"done":true}')]


# --- A real crash -------------------------------------------------------------------------------


def test_a_key_claimed_by_a_killed_server_is_taken_over_after_the_lease(
    pg_database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """SIGKILL between the claim and the response. PostgreSQL only: there the test can hold the
    request after its claim (a lock on `links`) until the server is dead; SQLite's one write lock
    would hold the claim back too."""
    backend = {
        "database_url": pg_database_url,
        "redis_url": redis_url,
        "redis_prefix": redis_prefix,
    }
    server = Server(backend_env(backend), tmp_path / "server.log")
    pg_url = pg_database_url.replace("+asyncpg", "")
    server.start()
    try:
        asyncio.run(_kill_mid_request(server, pg_url))
        server.start()
        with httpx.Client(base_url=server.url, timeout=10) as http:
            within = http.post(PATH, content=BODY, headers=_keyed({}))
            assert within.status_code == 409
            assert within.json()["error"]["code"] == "idempotency_in_progress"
            asyncio.run(_pg(pg_url, AGE_CLAIMS))
            first = http.post(PATH, content=BODY, headers=_keyed({}))
            assert first.status_code == 201, first.text
            again = http.post(PATH, content=BODY, headers=_keyed({}))
            assert (again.json(), again.headers["idempotent-replayed"]) == (first.json(), "true")
    finally:
        server.stop()
    count = "SELECT count(*) FROM links WHERE long_url = 'https://example.com/once'"
    assert asyncio.run(_pg(pg_url, count)) == 1


async def _kill_mid_request(server: Server, pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE links IN SHARE MODE")  # inserts wait; reads do not
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                request = asyncio.create_task(http.post(PATH, content=BODY, headers=_keyed({})))
                for _ in range(500):
                    if await conn.fetchval("SELECT count(*) FROM idempotency_keys"):
                        break
                    await asyncio.sleep(0.02)
                else:
                    pytest.fail("the request never claimed its key")
                server.kill()
                with pytest.raises(httpx.TransportError):
                    await request
    finally:
        await conn.close()


async def _pg(url: str, statement: str) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(statement)
    finally:
        await conn.close()
