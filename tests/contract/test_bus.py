"""The Streams and PubSub contracts: Redis semantics (groups, pending, claims; lossy fan-out) in both adapters."""

from __future__ import annotations

import asyncio
import re
import time

import anyio
import orjson
import pytest
import redis.asyncio as aioredis

from plaza.platform import pubsub as pubsub_module
from plaza.platform.bus import NoGroup, RedisStreams, Streams
from plaza.platform.kv import PortUnavailable, redis_client
from plaza.platform.pubsub import Message, PubSub, RedisPubSub
from tests.contract.conftest import Rig
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.anyio

PAYLOAD = orjson.dumps({"code": "abc", "ts": 1.5, "ua": "Mozilla/5.0 ☃"}) + b"\x00\xff"


def _order(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


async def _payloads(streams: Streams, group: str, consumer: str, count: int = 1000) -> list[bytes]:
    return [e.payload for e in await streams.read("s", group, consumer, count=count, block_ms=0)]


# --- Streams ------------------------------------------------------------------------------------


async def test_ids_are_increasing_ms_seq_strings(streams: Rig[Streams]) -> None:
    ids = [await streams.port.add("s", b"%d" % n) for n in range(20)]
    assert all(re.fullmatch(r"\d+-\d+", i) for i in ids)
    assert [_order(i) for i in ids] == sorted({_order(i) for i in ids})


async def test_a_new_group_sees_existing_entries_in_order(streams: Rig[Streams]) -> None:
    ids = [await streams.port.add("s", p) for p in (b"a", PAYLOAD, b"c")]
    await streams.port.ensure_group("s", "g")
    await streams.port.ensure_group("s", "g")  # idempotent: must not rewind or fail
    entries = await streams.port.read("s", "g", "c1", count=10, block_ms=0)
    assert [(e.id, e.payload) for e in entries] == list(
        zip(ids, [b"a", PAYLOAD, b"c"], strict=True)
    )
    assert await streams.port.read("s", "g", "c1", count=10, block_ms=0) == []


async def test_each_entry_goes_to_one_consumer_of_a_group(streams: Rig[Streams]) -> None:
    await streams.port.ensure_group("s", "g")
    for p in (b"1", b"2", b"3", b"4"):
        await streams.port.add("s", p)
    assert await _payloads(streams.port, "g", "c1", count=2) == [b"1", b"2"]
    assert await _payloads(streams.port, "g", "c2") == [b"3", b"4"]
    assert await _payloads(streams.port, "g", "c1") == []


async def test_every_group_gets_every_entry(streams: Rig[Streams]) -> None:
    await streams.port.ensure_group("s", "clicks")
    await streams.port.ensure_group("s", "audit")
    await streams.port.add("s", b"1")
    await streams.port.add("s", b"2")
    assert await _payloads(streams.port, "clicks", "c") == [b"1", b"2"]
    assert await _payloads(streams.port, "audit", "c") == [b"1", b"2"]


async def test_lag_counts_undelivered_and_pending_until_acked(streams: Rig[Streams]) -> None:
    ids = [await streams.port.add("s", b"%d" % n) for n in range(5)]
    await streams.port.ensure_group("s", "g")
    assert await streams.port.lag("s", "g") == 5
    await streams.port.read("s", "g", "c", count=2, block_ms=0)
    assert await streams.port.lag("s", "g") == 5
    assert await streams.port.ack("s", "g", ids[:2]) == 2
    assert await streams.port.lag("s", "g") == 3
    assert await streams.port.ack("s", "g", ids[:2]) == 0  # already acked
    assert await streams.port.ack("s", "g", [ids[4]]) == 0  # never delivered
    assert await streams.port.ack("s", "g", []) == 0


async def test_read_waits_up_to_block_ms_when_empty(streams: Rig[Streams]) -> None:
    await streams.port.ensure_group("s", "g")
    started = time.monotonic()
    assert await streams.port.read("s", "g", "c", count=1, block_ms=150) == []
    assert 0.1 <= time.monotonic() - started < 1.0


async def test_a_blocked_read_wakes_on_add_even_after_a_long_wait(streams: Rig[Streams]) -> None:
    """The wait outlasts the client's 1 s socket timeout, which the Redis adapter must not trip."""
    await streams.port.ensure_group("s", "g")
    got: list[bytes] = []

    async def reader() -> None:
        got.extend(await _blocking_payloads(streams.port))

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.sleep(1.2)
        await streams.port.add("s", b"late")
    assert got == [b"late"]
    assert time.monotonic() - started < 2.5


async def _blocking_payloads(streams: Streams) -> list[bytes]:
    entries = await streams.read("s", "g", "c", count=10, block_ms=5000)
    return [e.payload for e in entries]


async def test_stale_pending_entries_are_claimed_by_another_consumer(streams: Rig[Streams]) -> None:
    await streams.port.ensure_group("s", "g")
    ids = [await streams.port.add("s", p) for p in (b"1", b"2", b"3")]
    await streams.port.read("s", "g", "crashed", count=2, block_ms=0)
    assert await streams.port.claim_stale("s", "g", "rescuer", min_idle_ms=5000, count=10) == []
    await streams.elapse(0.1)
    claimed = await streams.port.claim_stale("s", "g", "rescuer", min_idle_ms=50, count=10)
    assert [(e.id, e.payload) for e in claimed] == [(ids[0], b"1"), (ids[1], b"2")]
    # Claiming restarts the idle time, so a third consumer cannot take them at once.
    assert await streams.port.claim_stale("s", "g", "third", min_idle_ms=50, count=10) == []
    assert await streams.port.ack("s", "g", ids[:2]) == 2
    await streams.elapse(0.1)
    assert await streams.port.claim_stale("s", "g", "third", min_idle_ms=50, count=10) == []
    assert await streams.port.lag("s", "g") == 1


async def test_claim_stale_takes_at_most_count(streams: Rig[Streams]) -> None:
    await streams.port.ensure_group("s", "g")
    for n in range(5):
        await streams.port.add("s", b"%d" % n)
    await streams.port.read("s", "g", "crashed", count=5, block_ms=0)
    await streams.elapse(0.1)
    first = await streams.port.claim_stale("s", "g", "r", min_idle_ms=50, count=2)
    assert [e.payload for e in first] == [b"0", b"1"]


async def test_maxlen_trims_the_oldest_entries(streams: Rig[Streams]) -> None:
    for n in range(300):
        await streams.port.add("s", b"%d" % n, maxlen=10)
    await streams.port.ensure_group("s", "g")
    kept = await _payloads(streams.port, "g", "c")
    # Redis trims whole internal nodes (~), so more than maxlen may stay, but always the newest.
    assert 10 <= len(kept) < 300
    assert kept == [b"%d" % n for n in range(300 - len(kept), 300)]
    assert await streams.port.lag("s", "g") == len(kept)


async def test_trim_acked_deletes_only_what_every_group_acked(streams: Rig[Streams]) -> None:
    s = streams.port
    assert await s.trim_acked("nothing") == 0
    ids = [await s.add("st", f"e{i}".encode()) for i in range(6)]
    assert await s.trim_acked("st") == 0  # no group: nobody has said what they are done with
    await s.ensure_group("st", "a")
    await s.ensure_group("st", "b")
    read_a = await s.read("st", "a", "ca", 4, 0)
    await s.ack("st", "a", [read_a[0].id, read_a[1].id, read_a[3].id])  # e2 stays pending
    read_b = await s.read("st", "b", "cb", 2, 0)
    await s.ack("st", "b", [e.id for e in read_b])
    assert await s.trim_acked("st") == 2  # e0, e1: acked by both groups
    assert await s.lag("st", "a") == 3  # e2 pending, e4 and e5 undelivered: all still there
    assert await s.lag("st", "b") == 4
    await s.ack("st", "a", [read_a[2].id])
    assert await s.trim_acked("st") == 0  # b has not read e2 yet
    rest_b = await s.read("st", "b", "cb", 10, 0)
    assert [e.payload for e in rest_b] == [b"e2", b"e3", b"e4", b"e5"]
    await s.ack("st", "b", [e.id for e in rest_b])
    assert await s.trim_acked("st") == 2  # e2, e3; a has not read e4, e5
    rest_a = await s.read("st", "a", "ca", 10, 0)
    assert [e.id for e in rest_a] == ids[4:]


async def test_a_missing_group_is_an_error_not_an_empty_read(streams: Rig[Streams]) -> None:
    with pytest.raises(NoGroup):
        await streams.port.read("nowhere", "g", "c", count=1, block_ms=0)
    await streams.port.ensure_group("s", "g")
    with pytest.raises(NoGroup):
        await streams.port.read("s", "other", "c", count=1, block_ms=0)
    with pytest.raises(NoGroup):
        await streams.port.claim_stale("s", "other", "c", min_idle_ms=0, count=1)
    with pytest.raises(NoGroup):
        await streams.port.lag("s", "other")
    with pytest.raises(NoGroup):
        await streams.port.lag("nowhere", "g")
    assert await streams.port.ack("s", "other", ["1-0"]) == 0


async def test_a_dead_redis_stream_add_raises_port_unavailable(dead_redis: aioredis.Redis) -> None:
    started = time.monotonic()
    with pytest.raises(PortUnavailable):
        await RedisStreams(dead_redis, "p:").add("s", b"x")
    assert time.monotonic() - started < 3


# --- Pub/sub ------------------------------------------------------------------------------------


async def test_a_subscriber_receives_what_is_published_after_it_subscribed(pubsub: PubSub) -> None:
    await pubsub.publish("news", b"before")
    async with pubsub.subscribe("news") as subscription:
        await pubsub.publish("news", PAYLOAD)
        with anyio.fail_after(2):
            assert await anext(subscription) == Message("news", PAYLOAD)


async def test_only_subscribed_channels_arrive_in_publish_order(pubsub: PubSub) -> None:
    async with pubsub.subscribe("a", "b") as subscription:
        for channel, payload in (("c", b"0"), ("a", b"1"), ("b", b"2"), ("a", b"3")):
            await pubsub.publish(channel, payload)
        with anyio.fail_after(2):
            got = [await anext(subscription) for _ in range(3)]
    assert got == [Message("a", b"1"), Message("b", b"2"), Message("a", b"3")]


async def test_every_subscriber_gets_each_message(pubsub: PubSub) -> None:
    async with pubsub.subscribe("x") as first, pubsub.subscribe("x") as second:
        await pubsub.publish("x", b"hello")
        with anyio.fail_after(2):
            assert (await anext(first)).payload == b"hello"
            assert (await anext(second)).payload == b"hello"


async def test_aclose_ends_iteration_in_another_task(pubsub: PubSub) -> None:
    subscription = pubsub.subscribe("x")
    got: list[Message] = []

    async def consume() -> None:
        async for message in subscription:
            got.append(message)

    async with subscription:
        with anyio.fail_after(2):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await pubsub.publish("x", b"1")
                while not got:
                    await anyio.sleep(0.01)
                await subscription.aclose()
    assert got == [Message("x", b"1")]
    await pubsub.publish("x", b"after")  # nobody listens: not an error


async def test_a_full_buffer_drops_the_oldest_messages(
    pubsub: PubSub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pubsub_module, "SUBSCRIPTION_BUFFER", 3)
    async with pubsub.subscribe("x") as subscription:
        for n in range(10):
            await pubsub.publish("x", b"%d" % n)
        await anyio.sleep(0.2)  # let the Redis reader take in all ten
        with anyio.fail_after(2):
            got = [(await anext(subscription)).payload for _ in range(3)]
        assert got == [b"7", b"8", b"9"]
        with anyio.move_on_after(0.2):
            extra = await anext(subscription)
            pytest.fail(f"only three messages fit, got also {extra}")


async def test_redis_subscription_survives_a_connection_loss(
    redis_url: str, redis_prefix: str
) -> None:
    proxy = TcpProxy("127.0.0.1", 6379)
    proxy.start()
    through_proxy, direct = (
        redis_client(f"redis://127.0.0.1:{proxy.port}/0"),
        redis_client(redis_url),
    )
    try:
        publisher = RedisPubSub(direct, redis_prefix)
        async with RedisPubSub(through_proxy, redis_prefix).subscribe("x") as subscription:
            proxy.stop()
            await anyio.sleep(0.3)  # the reader notices, fails to reconnect, backs off
            proxy.start()
            with anyio.fail_after(8):
                while True:
                    await publisher.publish("x", b"again")
                    with anyio.move_on_after(0.2):
                        assert await anext(subscription) == Message("x", b"again")
                        break
    finally:
        proxy.close()
        await through_proxy.aclose()
        await direct.aclose()


async def test_a_task_cancelled_while_it_closes_a_redis_subscription_is_cancelled(
    redis_url: str, redis_prefix: str
) -> None:
    """Shutdown cancels listeners; one that the cancel finds closing its subscription must still end,
    not carry on as if nothing had asked it to stop (and hold the shutdown up for ever)."""
    client = redis_client(redis_url)
    try:
        subscription = RedisPubSub(client, redis_prefix).subscribe("x")
        await subscription.__aenter__()
        closing = asyncio.create_task(subscription.aclose())
        await asyncio.sleep(0)  # it now waits for the subscription's reader to end
        assert closing.cancel()
        with anyio.fail_after(2), pytest.raises(asyncio.CancelledError):
            await closing
    finally:
        await client.aclose()


async def test_subscribing_to_a_dead_redis_raises_port_unavailable(
    dead_redis: aioredis.Redis,
) -> None:
    started = time.monotonic()
    with pytest.raises(PortUnavailable):
        async with RedisPubSub(dead_redis, "p:").subscribe("x"):
            pass
    with pytest.raises(PortUnavailable):
        await RedisPubSub(dead_redis, "p:").publish("x", b"1")
    assert time.monotonic() - started < 3
