"""Graceful degradation: Redis down keeps links working from SQL; database down keeps cached redirects."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from plaza.platform.db import IDLE_PING_S
from tests.conftest import post_together, register
from tests.integration.test_chat_messaging import conversation, history
from tests.integration.test_overload import every_connection_held
from tests.tcp_proxy import TcpProxy
from tests.wsclient import online, send_message, token_of

DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_redis_down_links_work_from_sql(app_factory: Any, sqlite_url: str) -> None:
    client = app_factory(database_url=sqlite_url, redis_url=DEAD_REDIS)
    created = client.post("/api/v1/shorten", json={"long_url": "https://example.com/r"})
    assert created.status_code == 201
    code = created.json()["short_code"]
    assert client.get(f"/{code}", follow_redirects=False).status_code == 302
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "redis" in ready.json()["error"]["message"]
    assert ready.json()["checks"]["database"] == "ok"
    # Clicks still reach the stats: the buffer applies them to SQL when the stream is down.
    deadline = time.monotonic() + 5
    while client.get(f"/api/v1/stats/{code}").json()["clicks"] < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.get(f"/api/v1/stats/{code}").json()["clicks"] == 1


@pytest.mark.parametrize("database", ["sqlite_url", "pg_database_url"])
def test_redis_down_creates_arriving_together_all_succeed(
    app_factory: Any, request: pytest.FixtureRequest, database: str
) -> None:
    """The rate limiter fails open: a burst of creates with Redis down gets every link stored."""
    client = app_factory(
        database_url=request.getfixturevalue(database), redis_url=DEAD_REDIS, create_rate="3/hour"
    )
    requests = [{"json": {"long_url": f"https://example.com/down/{i}"}} for i in range(10)]
    responses = client.portal.call(post_together, client.app, "/api/v1/shorten", requests)
    assert [r.status_code for r in responses] == [201] * 10
    for i, response in enumerate(responses):
        location = client.get(f"/{response.json()['short_code']}", follow_redirects=False)
        assert location.headers["location"] == f"https://example.com/down/{i}"


@pytest.fixture
def pg_proxy(pg_database_url: str) -> Iterator[tuple[TcpProxy, str]]:
    parts = urlsplit(pg_database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    proxied = pg_database_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    yield proxy, proxied
    proxy.close()


@pytest.mark.parametrize("with_redis", [True, False], ids=["redis", "memory"])
def test_database_down_cached_redirects_work_and_writes_get_503(
    app_factory: Any,
    pg_proxy: tuple[TcpProxy, str],
    request: pytest.FixtureRequest,
    with_redis: bool,
) -> None:
    proxy, database_url = pg_proxy
    extra: dict[str, Any] = {}
    if with_redis:
        extra = {
            "redis_url": request.getfixturevalue("redis_url"),
            "redis_prefix": request.getfixturevalue("redis_prefix"),
        }
    client = app_factory(database_url=database_url, **extra)
    code = client.post("/api/v1/shorten", json={"long_url": "https://example.com/db"}).json()[
        "short_code"
    ]
    assert client.get(f"/{code}", follow_redirects=False).status_code == 302  # now cached

    proxy.stop()
    assert client.get(f"/{code}", follow_redirects=False).status_code == 302
    create = client.post("/api/v1/shorten", json={"long_url": "https://example.com/down"})
    assert create.status_code == 503
    assert int(create.headers["Retry-After"]) > 0
    assert create.json()["error"]["code"] == "database_unavailable"
    uncached = client.get(
        "/Unknown1", follow_redirects=False, headers={"Accept": "application/json"}
    )
    assert uncached.status_code == 503
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_database_down_while_every_connection_is_busy_is_not_ready(
    app_factory: Any, pg_proxy: tuple[TcpProxy, str]
) -> None:
    """An exhausted pool is not taken for a busy database: readiness asks on a connection of its own."""
    proxy, database_url = pg_proxy
    client = app_factory(
        database_url=database_url,
        database_pool_size=1,
        database_pool_timeout_s=0.2,
        run_workers=False,
    )
    with every_connection_held(client):
        assert client.get("/readyz").json()["checks"]["database"] == "busy"
        proxy.stop()
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["message"] == "Unavailable: database."
        assert ready.json()["checks"]["database"].startswith("error")
        proxy.start()


def test_database_down_a_send_gets_an_error_and_the_next_one_after_is_stored(
    app_factory: Any, pg_proxy: tuple[TcpProxy, str]
) -> None:
    """Chat's writer keeps its own connection: cut, it is replaced, and no seq is skipped."""
    proxy, database_url = pg_proxy
    client = app_factory(database_url=database_url)
    alice, bob = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a, online(client, token_of(bob)) as b:
        assert send_message(a, cid, "before")["seq"] == 1
        proxy.stop()
        a.send(
            {
                "type": "send",
                "client_msg_id": "lost",
                "conversation_id": cid,
                "content": "during",
                "message_type": "text",
            }
        )
        error = a.expect("error")
        assert (error["code"], error["ref"]) == ("service_unavailable", "lost")
        proxy.start()
        assert send_message(a, cid, "after")["seq"] == 2
        delivered = b.expect("message", where=lambda f: f["message"]["content"] == "after")
        assert delivered["message"]["seq"] == 2
        a.settle()
    # The request pool's connections died with the outage, used less than IDLE_PING_S before it, so
    # not pinged: the first to be used fails (503), and SQLAlchemy then replaces them all.
    path = f"/api/v1/conversations/{cid}/messages"
    if client.get(path, headers=bob).status_code == 503:
        assert client.get(path, headers=bob).status_code == 200
    assert [(m["seq"], m["content"]) for m in history(client, bob, cid)] == [
        (1, "before"),
        (2, "after"),
    ]


def test_database_back_after_an_outage_the_first_request_is_answered(
    app_factory: Any, pg_proxy: tuple[TcpProxy, str]
) -> None:
    """The pool's connections died with the outage, unused: the first request after it does not
    get one of them (it would answer 503)."""
    proxy, database_url = pg_proxy
    client = app_factory(database_url=database_url, database_pool_size=2, run_workers=False)
    alice = register(client, "alice")
    path = "/api/v1/users/alice/posts"
    both = client.portal.call(post_together, client.app, path, [{"headers": alice}] * 4, "GET")
    assert [r.status_code for r in both] == [200] * 4  # both pooled connections used
    proxy.stop()
    proxy.start()
    time.sleep(IDLE_PING_S + 0.1)
    assert [client.get(path, headers=alice).status_code for _ in range(3)] == [200, 200, 200]
