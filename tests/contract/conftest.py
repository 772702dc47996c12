"""Each port's contract suite runs once per adapter: in memory with a fake clock, and on a real Redis.

A `Rig` bundles the adapter under test with `elapse(seconds)`, which lets time pass the way that adapter
sees it: the fake clock moves for memory adapters; for Redis, whose TTLs run on the server, we sleep.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from plaza.feed.timelines import MemoryTimelines, RedisTimelines, Timelines
from plaza.platform.bus import MemoryStreams, RedisStreams, Streams
from plaza.platform.clock import FakeClock
from plaza.platform.kv import KV, MemoryKV, RedisKV, redis_client, redis_cluster_client
from plaza.platform.pubsub import MemoryPubSub, PubSub, RedisPubSub
from plaza.platform.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter

P = TypeVar("P")

DEAD_REDIS_URL = "redis://127.0.0.1:1/0"  # port 1: nothing listens, the connection is refused


@dataclass
class Rig(Generic[P]):
    kind: str
    port: P
    elapse: Callable[[float], Awaitable[None]]


@pytest.fixture(params=["memory", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def redis_conn(
    kind: str, request: pytest.FixtureRequest
) -> AsyncIterator[aioredis.Redis | None]:
    """A client of the real Redis for the redis variant (None for memory), closed afterwards."""
    if kind != "redis":
        yield None
        return
    client = redis_client(request.getfixturevalue("redis_url"))
    yield client
    await client.aclose()


@pytest.fixture
def prefix(kind: str, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("redis_prefix")) if kind == "redis" else ""


def _elapse(clock: FakeClock, real: bool) -> Callable[[float], Awaitable[None]]:
    async def elapse(seconds: float) -> None:
        if real:
            await anyio.sleep(seconds)
        else:
            clock.advance(seconds)

    return elapse


@pytest.fixture
async def kv(
    kind: str, redis_conn: aioredis.Redis | None, prefix: str, clock: FakeClock
) -> AsyncIterator[Rig[KV]]:
    port: KV = MemoryKV(clock=clock) if redis_conn is None else RedisKV(redis_conn, prefix)
    yield Rig(kind, port, _elapse(clock, real=redis_conn is not None))
    await port.aclose()


@pytest.fixture
async def streams(
    kind: str, redis_conn: aioredis.Redis | None, prefix: str, clock: FakeClock
) -> AsyncIterator[Rig[Streams]]:
    port: Streams = (
        MemoryStreams(clock=clock) if redis_conn is None else RedisStreams(redis_conn, prefix)
    )
    yield Rig(kind, port, _elapse(clock, real=redis_conn is not None))
    await port.aclose()


@pytest.fixture
def pubsub(kind: str, redis_conn: aioredis.Redis | None, prefix: str) -> PubSub:
    return MemoryPubSub() if redis_conn is None else RedisPubSub(redis_conn, prefix)


@pytest.fixture
def limiter(
    kind: str, redis_conn: aioredis.Redis | None, prefix: str, clock: FakeClock
) -> Rig[RateLimiter]:
    port: RateLimiter = (
        MemoryRateLimiter(clock=clock)
        if redis_conn is None
        else RedisRateLimiter(redis_conn, prefix)
    )
    return Rig(kind, port, _elapse(clock, real=redis_conn is not None))


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def timelines(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[Rig[Timelines]]:
    """Timelines in memory, in one Redis, and spread over a Redis Cluster (slot-grouped calls)."""
    kind = str(request.param)
    if kind == "memory":
        yield Rig(
            kind, MemoryTimelines(max_len=5, trim_slack=2, clock=clock), _elapse(clock, real=False)
        )
        return
    client: aioredis.Redis | RedisCluster
    if kind == "redis":
        client = redis_client(request.getfixturevalue("redis_url"))
        port = RedisTimelines(
            client, request.getfixturevalue("redis_prefix"), max_len=5, trim_slack=2
        )
    else:
        client = redis_cluster_client(request.getfixturevalue("redis_cluster_url"))
        port = RedisTimelines(
            client, f"t{uuid.uuid4().hex[:8]}:", max_len=5, trim_slack=2, slot_groups=4
        )
    yield Rig(kind, port, _elapse(clock, real=True))
    await client.aclose()


@pytest.fixture
async def dead_redis() -> AsyncIterator[aioredis.Redis]:
    client = redis_client(DEAD_REDIS_URL)
    yield client
    await client.aclose()
