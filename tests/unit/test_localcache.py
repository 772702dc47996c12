"""The per-process cache that any process can invalidate: what a reader sees across two processes."""

from __future__ import annotations

import asyncio

import pytest

from plaza.platform.clock import FakeClock
from plaza.platform.localcache import LocalCache
from plaza.platform.pubsub import MemoryPubSub

pytestmark = pytest.mark.anyio


def pair(bus: MemoryPubSub, clock: FakeClock) -> tuple[LocalCache[int, str], ...]:
    return tuple(
        LocalCache[int, str](channel="test", parse=int, pubsub=bus, clock=clock, size=3, ttl_s=10.0)
        for _ in range(2)
    )


async def settle(condition: object, *, rounds: int = 200) -> None:
    for _ in range(rounds):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("not within a second")


async def test_entries_expire_and_the_least_recently_stored_goes_first() -> None:
    clock = FakeClock()
    cache, _ = pair(MemoryPubSub(), clock)
    for key in (1, 2, 3, 4):
        cache.put(key, f"v{key}", cache.generation)
    assert [cache.get(k) for k in (1, 2, 3, 4)] == [None, "v2", "v3", "v4"]
    clock.advance(10.0)
    assert cache.get(4) is None


async def test_a_read_that_raced_an_invalidation_is_not_stored() -> None:
    cache, _ = pair(MemoryPubSub(), FakeClock())
    generation = cache.generation  # a reader starts reading the old value...
    cache.forget([7])  # ...a change commits and is announced meanwhile
    cache.put(7, "old", generation)
    assert cache.get(7) is None
    cache.put(7, "new", cache.generation)
    assert cache.get(7) == "new"


async def test_invalidations_reach_the_other_process() -> None:
    bus = MemoryPubSub()
    here, there = pair(bus, FakeClock())
    listening = asyncio.create_task(there.listen())
    try:
        await asyncio.sleep(0.01)  # subscribed
        for cache in (here, there):
            for key in (1, 2):
                cache.put(key, f"v{key}", cache.generation)
        await here.invalidate([1])
        assert here.get(1) is None
        await settle(lambda: there.get(1) is None)
        assert there.get(2) == "v2"
        await here.invalidate_all()
        await settle(lambda: there.get(2) is None)
    finally:
        listening.cancel()
