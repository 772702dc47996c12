"""The feed with its timelines on a Redis Cluster (the rest on PostgreSQL + one Redis), through the API."""

from __future__ import annotations

from typing import Any

import redis

from tests.conftest import register
from tests.integration.test_feed_api import contents, eventually, follow, post


def test_feeds_fan_out_and_read_through_a_redis_cluster(
    pg_database_url: str,
    redis_url: str,
    redis_prefix: str,
    redis_cluster_url: str,
    app_factory: Any,
) -> None:
    prefix = redis_prefix  # its keys on the one Redis go afterwards; the cluster lives for the run
    client = app_factory(
        database_url=pg_database_url,
        redis_url=redis_url,
        redis_prefix=prefix,
        feed_redis_cluster_url=redis_cluster_url,
        feed_timeline_slot_groups=8,
    )
    ready = client.get("/readyz").json()
    assert ready["checks"] == {"database": "ok", "redis": "ok", "redis_cluster": "ok"}
    author = register(client, "author")
    readers = [register(client, f"reader{i}") for i in range(12)]
    for reader in readers:
        follow(client, reader, "author")
        assert contents(client, reader) == []  # builds the reader's timeline on the cluster
    first = post(client, author, "to every reader")
    for reader in readers:
        eventually(lambda r=reader: contents(client, r) == ["to every reader"])
    # The timelines are on the cluster's nodes, spread over slots, none on the single Redis.
    cluster = redis.RedisCluster.from_url(redis_cluster_url)
    keys = [k.decode() for k in cluster.scan_iter(match=f"{prefix}tl2:*", count=1000)]
    assert len(keys) == len(readers)  # the author never read a feed: no timeline to push to
    assert len({cluster.keyslot(k) for k in keys}) > 1
    assert not list(redis.Redis.from_url(redis_url).scan_iter(match=f"{prefix}tl2:*"))
    client.delete(f"/api/v1/posts/{first['id']}", headers=author)
    eventually(lambda: all(contents(client, r) == [] for r in readers))
    cluster.close()
