"""The RateLimiter contract: token buckets that both adapters fill, drain and refill alike."""

from __future__ import annotations

import asyncio
import time

import anyio
import pytest
import redis.asyncio as aioredis

from plaza.platform.clock import FakeClock
from plaza.platform.kv import PortUnavailable, redis_client
from plaza.platform.ratelimit import Decision, MemoryRateLimiter, RateLimiter, RedisRateLimiter
from plaza.settings import Rate
from tests.contract.conftest import Rig

pytestmark = pytest.mark.anyio

FIVE_PER_MINUTE = Rate(capacity=5, period_s=60)  # a token every 12 s


async def test_a_burst_up_to_capacity_then_denial_with_retry_after(
    limiter: Rig[RateLimiter],
) -> None:
    decisions = [await limiter.port.hit("k", FIVE_PER_MINUTE) for _ in range(6)]
    assert decisions[:5] == [Decision(True, left, 0) for left in (4, 3, 2, 1, 0)]
    assert decisions[5] == Decision(False, 0, 12)


async def test_tokens_refill_over_time(limiter: Rig[RateLimiter]) -> None:
    rate = Rate(capacity=5, period_s=1)  # a token every 200 ms
    for _ in range(5):
        assert (await limiter.port.hit("k", rate)).allowed
    denied = await limiter.port.hit("k", rate)
    assert not denied.allowed and denied.retry_after_s == 1
    await limiter.elapse(0.25)
    assert (await limiter.port.hit("k", rate)).allowed
    assert not (await limiter.port.hit("k", rate)).allowed


async def test_peek_consumes_nothing(limiter: Rig[RateLimiter]) -> None:
    rate = Rate(capacity=2, period_s=60)
    for _ in range(5):
        assert await limiter.port.peek("k", rate) == Decision(True, 2, 0)
    assert await limiter.port.hit("k", rate) == Decision(True, 1, 0)
    assert await limiter.port.peek("k", rate) == Decision(True, 1, 0)
    assert await limiter.port.hit("k", rate) == Decision(True, 0, 0)
    assert await limiter.port.peek("k", rate) == Decision(False, 0, 30)
    assert await limiter.port.peek("k", rate) == Decision(False, 0, 30)


async def test_keys_are_independent_and_reset_refills(limiter: Rig[RateLimiter]) -> None:
    for _ in range(5):
        await limiter.port.hit("a", FIVE_PER_MINUTE)
    assert not (await limiter.port.hit("a", FIVE_PER_MINUTE)).allowed
    assert await limiter.port.hit("b", FIVE_PER_MINUTE) == Decision(True, 4, 0)
    await limiter.port.reset("a")
    assert await limiter.port.hit("a", FIVE_PER_MINUTE) == Decision(True, 4, 0)
    await limiter.port.reset("never-used")


async def test_a_cost_takes_several_tokens_or_none(limiter: Rig[RateLimiter]) -> None:
    rate = Rate(capacity=10, period_s=60)  # a token every 6 s
    assert await limiter.port.hit("k", rate, cost=4) == Decision(True, 6, 0)
    assert await limiter.port.hit("k", rate, cost=4) == Decision(True, 2, 0)
    assert await limiter.port.hit("k", rate, cost=4) == Decision(False, 2, 12)
    assert await limiter.port.peek("k", rate, cost=2) == Decision(True, 2, 0)
    assert await limiter.port.hit("k", rate, cost=2) == Decision(True, 0, 0)


async def test_a_cost_outside_one_to_capacity_is_refused(limiter: Rig[RateLimiter]) -> None:
    for cost in (0, -1, 11):
        with pytest.raises(ValueError):
            await limiter.port.hit("k", Rate(capacity=10, period_s=60), cost=cost)


async def test_concurrent_hits_never_exceed_capacity(limiter: Rig[RateLimiter]) -> None:
    rate = Rate(capacity=10, period_s=3600)
    decisions: list[Decision] = []

    async def hit() -> None:
        decisions.append(await limiter.port.hit("k", rate))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(hit)
    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))


async def test_calls_made_together_each_get_their_own_decision(
    limiter: Rig[RateLimiter],
) -> None:
    """Hits and peeks on several buckets at once (the Redis adapter runs them in one script)
    decide as if made one after another, each on its own bucket and cost."""
    small, large = Rate(capacity=2, period_s=60), Rate(capacity=100, period_s=60)
    calls = [
        *(limiter.port.hit("small", small) for _ in range(3)),
        limiter.port.peek("large", large, cost=100),
        limiter.port.hit("large", large, cost=40),
        limiter.port.hit("large", large, cost=70),
        limiter.port.hit("other", small, cost=2),
    ]
    decisions = await asyncio.gather(*calls)
    assert decisions == [
        Decision(True, 1, 0),
        Decision(True, 0, 0),
        Decision(False, 0, 30),
        Decision(True, 100, 0),
        Decision(True, 60, 0),
        Decision(False, 60, 6),
        Decision(True, 0, 0),
    ]


async def test_redis_buckets_expire_once_they_would_be_full(
    redis_url: str, redis_prefix: str
) -> None:
    client = redis_client(redis_url)
    try:
        await RedisRateLimiter(client, redis_prefix).hit(
            "k", Rate(capacity=10, period_s=60), cost=3
        )
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
        assert len(keys) == 1
        assert 17_000 < await client.pttl(keys[0]) <= 18_001  # 3 tokens at 6 s each
    finally:
        await client.aclose()


async def test_a_dead_redis_hit_raises_port_unavailable(dead_redis: aioredis.Redis) -> None:
    started = time.monotonic()
    with pytest.raises(PortUnavailable):
        await RedisRateLimiter(dead_redis, "p:").hit("k", FIVE_PER_MINUTE)
    assert time.monotonic() - started < 3


async def test_a_dead_redis_fails_every_call_made_together(dead_redis: aioredis.Redis) -> None:
    limiter = RedisRateLimiter(dead_redis, "p:")
    calls = [limiter.hit(f"k{n}", FIVE_PER_MINUTE) for n in range(5)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(outcome, PortUnavailable) for outcome in outcomes)


async def test_memory_limiter_forgets_buckets_that_refilled() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    for n in range(100):
        await limiter.hit(f"k{n}", FIVE_PER_MINUTE)
    clock.advance(30)
    await limiter.hit("fresh", FIVE_PER_MINUTE)
    assert len(limiter) == 101  # all full again (12 s per token), but no sweep is due yet
    clock.advance(31)
    await limiter.hit("fresh", FIVE_PER_MINUTE)
    assert len(limiter) == 1
