"""The KV contract: both adapters store bytes with millisecond TTLs and refuse what Redis refuses."""

from __future__ import annotations

import time

import orjson
import pytest
import redis.asyncio as aioredis

from plaza.platform.clock import FakeClock
from plaza.platform.kv import KV, MemoryKV, PortUnavailable, RedisKV, redis_client
from tests.contract.conftest import Rig

pytestmark = pytest.mark.anyio

PAYLOAD = orjson.dumps({"id": 7, "url": "https://example.org/ä", "n": None}) + b"\x00\xff"


async def test_values_round_trip_as_exact_bytes(kv: Rig[KV]) -> None:
    assert await kv.port.get("k") is None
    await kv.port.set("k", PAYLOAD)
    assert await kv.port.get("k") == PAYLOAD
    await kv.port.set("k", b"")
    assert await kv.port.get("k") == b""


async def test_a_value_expires_after_its_ttl(kv: Rig[KV]) -> None:
    await kv.port.set("short", b"v", ttl_s=0.1)
    await kv.port.set("long", b"v", ttl_s=30)
    assert await kv.port.get("short") == b"v"
    await kv.elapse(0.15)
    assert await kv.port.get("short") is None
    assert await kv.port.ttl("short") is None
    assert await kv.port.get("long") == b"v"


async def test_ttl_reports_seconds_left_or_none(kv: Rig[KV]) -> None:
    await kv.port.set("t", b"v", ttl_s=10)
    await kv.port.set("forever", b"v")
    left = await kv.port.ttl("t")
    assert left is not None and 9 < left <= 10
    assert await kv.port.ttl("forever") is None
    assert await kv.port.ttl("absent") is None


async def test_set_without_ttl_drops_an_earlier_ttl(kv: Rig[KV]) -> None:
    await kv.port.set("k", b"1", ttl_s=0.1)
    await kv.port.set("k", b"2")
    await kv.elapse(0.15)
    assert await kv.port.get("k") == b"2"
    assert await kv.port.ttl("k") is None


async def test_get_many_answers_in_key_order(kv: Rig[KV]) -> None:
    await kv.port.set_many({"a": b"1", "c": b"3"}, ttl_s=None)
    assert await kv.port.get_many(["c", "b", "a", "c"]) == [b"3", None, b"1", b"3"]
    assert await kv.port.get_many([]) == []


async def test_set_many_applies_the_ttl_to_every_key(kv: Rig[KV]) -> None:
    await kv.port.set_many({"a": b"1", "b": PAYLOAD}, ttl_s=0.1)
    assert await kv.port.get_many(["a", "b"]) == [b"1", PAYLOAD]
    await kv.elapse(0.15)
    assert await kv.port.get_many(["a", "b"]) == [None, None]
    await kv.port.set_many({}, ttl_s=None)


async def test_add_sets_only_an_absent_key(kv: Rig[KV]) -> None:
    assert await kv.port.add("lock", b"first", ttl_s=0.1) is True
    assert await kv.port.add("lock", b"second", ttl_s=0.1) is False
    assert await kv.port.get("lock") == b"first"
    await kv.elapse(0.15)
    assert await kv.port.add("lock", b"third") is True
    assert await kv.port.get("lock") == b"third"


async def test_delete_counts_the_keys_that_existed(kv: Rig[KV]) -> None:
    await kv.port.set_many({"a": b"1", "b": b"2"}, ttl_s=None)
    await kv.port.set("gone", b"x", ttl_s=0.05)
    await kv.elapse(0.1)
    assert await kv.port.delete("a", "b", "gone", "never") == 2
    assert await kv.port.get_many(["a", "b"]) == [None, None]
    assert await kv.port.delete() == 0


async def test_incr_counts_from_zero_and_stores_decimal_text(kv: Rig[KV]) -> None:
    assert await kv.port.incr("n") == 1
    assert await kv.port.incr("n", 5) == 6
    assert await kv.port.incr("n", -10) == -4
    assert await kv.port.get("n") == b"-4"
    await kv.port.set("m", b"41")
    assert await kv.port.incr("m") == 42


async def test_incr_ttl_is_set_only_when_the_key_is_created(kv: Rig[KV]) -> None:
    assert await kv.port.incr("window", ttl_s=0.2) == 1
    assert await kv.port.incr("window", ttl_s=60) == 2
    left = await kv.port.ttl("window")
    assert left is not None and left <= 0.2
    await kv.elapse(0.25)
    assert await kv.port.incr("window", ttl_s=60) == 1
    await kv.port.set("plain", b"1")
    await kv.port.incr("plain", ttl_s=60)
    assert await kv.port.ttl("plain") is None


async def test_incr_refuses_a_value_that_is_not_an_integer(kv: Rig[KV]) -> None:
    for bad in (b"abc", b"1.5", b" 1", b"01", b""):
        await kv.port.set("x", bad)
        with pytest.raises(ValueError):
            await kv.port.incr("x")
        assert await kv.port.get("x") == bad
    await kv.port.set("big", str(2**63 - 1).encode())
    with pytest.raises(ValueError):
        await kv.port.incr("big")


async def test_a_ttl_must_be_positive(kv: Rig[KV]) -> None:
    for ttl in (0, -1.0):
        with pytest.raises(ValueError):
            await kv.port.set("k", b"v", ttl_s=ttl)
        with pytest.raises(ValueError):
            await kv.port.add("k", b"v", ttl_s=ttl)
        with pytest.raises(ValueError):
            await kv.port.incr("k", ttl_s=ttl)
    assert await kv.port.get("k") is None


async def test_ping_answers(kv: Rig[KV]) -> None:
    await kv.port.ping()


async def test_redis_keys_live_under_the_prefix(redis_url: str, redis_prefix: str) -> None:
    client = redis_client(redis_url)
    try:
        kv = RedisKV(client, redis_prefix)
        await kv.set("k", b"v")
        assert await client.get(f"{redis_prefix}k") == b"v"
        assert await RedisKV(client, redis_prefix + "other:").get("k") is None
    finally:
        await client.aclose()


async def test_a_dead_redis_raises_port_unavailable_quickly(dead_redis: aioredis.Redis) -> None:
    kv = RedisKV(dead_redis, "p:")
    calls = [
        lambda: kv.get("k"),
        lambda: kv.set("k", b"v"),
        lambda: kv.set_many({"k": b"v"}, ttl_s=1),
        lambda: kv.incr("k", ttl_s=1),
        kv.ping,
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(PortUnavailable):
            await call()
        assert time.monotonic() - started < 3


async def test_memory_kv_evicts_the_least_recently_written_key_beyond_max_keys() -> None:
    kv = MemoryKV(clock=FakeClock(), max_keys=3)
    for key in ("a", "b", "c"):
        await kv.set(key, b"1")
    await kv.set("a", b"2")
    await kv.set("d", b"1")
    assert await kv.get_many(["a", "b", "c", "d"]) == [b"2", None, b"1", b"1"]
    assert len(kv) == 3


async def test_memory_kv_sweeps_expired_keys_nobody_reads() -> None:
    clock = FakeClock()
    kv = MemoryKV(clock=clock)
    for n in range(100):
        await kv.set(f"k{n}", b"v", ttl_s=1)
    clock.advance(120)
    await kv.set("trigger", b"v")
    assert len(kv) == 1
