"""Two app instances sharing PostgreSQL and Redis: an edit or delete on one is seen at once by the other."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import register


def location(client: Any, code: str) -> str | int:
    response = client.get(f"/{code}", follow_redirects=False)
    return response.headers["location"] if response.status_code == 302 else response.status_code


def eventually(predicate: Any, timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_edits_and_deletes_reach_every_process(
    app_factory: Any, pg_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    shared = {"database_url": pg_database_url, "redis_url": redis_url, "redis_prefix": redis_prefix}
    one, two = app_factory(**shared), app_factory(**shared)
    owner = register(one, "owner")
    created = one.post(
        "/api/v1/shorten",
        json={"long_url": "https://example.com/v1", "custom_alias": "shared"},
        headers=owner,
    )
    assert created.status_code == 201
    assert location(two, "shared") == "https://example.com/v1"  # now in two's LRU

    edit = one.patch(
        "/api/v1/urls/shared", json={"long_url": "https://example.com/v2"}, headers=owner
    )
    assert edit.status_code == 200
    assert eventually(lambda: location(two, "shared") == "https://example.com/v2")

    assert one.delete("/api/v1/urls/shared", headers=owner).status_code == 204
    assert eventually(lambda: location(two, "shared") == 404)


def test_a_code_first_seen_as_unknown_works_once_created_elsewhere(
    app_factory: Any, pg_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    shared = {"database_url": pg_database_url, "redis_url": redis_url, "redis_prefix": redis_prefix}
    one, two = app_factory(**shared), app_factory(**shared)
    assert location(two, "later") == 404  # cached as unknown in two's LRU and in Redis
    assert (
        one.post(
            "/api/v1/shorten", json={"long_url": "https://example.com/l", "custom_alias": "later"}
        ).status_code
        == 201
    )
    assert eventually(lambda: location(two, "later") == "https://example.com/l")
