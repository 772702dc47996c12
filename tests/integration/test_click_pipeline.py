"""The click pipeline, buffer -> stream -> consumer -> SQL, on SQLite + in-process streams and on
PostgreSQL + Redis streams. Assertions read the aggregate rows the stats page is built from.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from sqlalchemy import delete, insert, select

from plaza.links.analytics import ClickAggregator, run_consumer
from plaza.links.clicks import ClickBuffer, decode_batch, encode_batch
from plaza.links.geo import GeoLookup
from plaza.links.tables import link_countries, link_daily, link_devices, link_referrers, links
from plaza.platform.bus import MemoryStreams, RedisStreams, Streams
from plaza.platform.db import Database, utcnow
from plaza.platform.kv import redis_client
from plaza.platform.metrics import Metrics

pytestmark = pytest.mark.anyio

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"
DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
TABLET = (
    "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"
)
BOT = "Googlebot/2.1 (+http://www.google.com/bot.html)"
AU_IP, UNKNOWN_IP = "1.2.3.4", "9.9.9.9"
DEAD_REDIS = "redis://127.0.0.1:1/0"
# 2026-03-01 23:59:30Z and 60 s later: one batch spanning two UTC days.
LATE = dt.datetime(2026, 3, 1, 23, 59, 30, tzinfo=dt.UTC).timestamp()
EARLY_NEXT_DAY = LATE + 60


@dataclass
class Pipeline:
    db: Database
    streams: Streams
    metrics: Metrics
    aggregator: ClickAggregator

    def buffer(self, streams: Streams | None = None, **options: Any) -> ClickBuffer:
        return ClickBuffer(streams or self.streams, self.aggregator, self.metrics, **options)

    def consume(
        self, stop: asyncio.Event, consumer: str = "c1", **options: Any
    ) -> asyncio.Task[None]:
        work = run_consumer(
            self.streams, self.aggregator, self.metrics, consumer=consumer, stop=stop, **options
        )
        return asyncio.create_task(work)


@pytest.fixture(scope="module")
def geoip_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    writer = MMDBWriter(database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["1.2.3.0/24"]), {"country": {"iso_code": "AU"}})
    path = tmp_path_factory.mktemp("geo") / "country.mmdb"
    writer.to_db_file(str(path))
    return path


@pytest.fixture(params=["sqlite+memory", "postgresql+redis"])
def servers(request: pytest.FixtureRequest) -> tuple[str, str | None, str]:
    """Database URL, Redis URL (None: in-process streams) and key prefix for one backend.

    Synchronous on purpose: the PostgreSQL fixtures create databases with asyncio.run().
    """
    if request.param == "sqlite+memory":
        return request.getfixturevalue("sqlite_url"), None, ""
    return (
        request.getfixturevalue("pg_database_url"),
        request.getfixturevalue("redis_url"),
        request.getfixturevalue("redis_prefix"),
    )


@pytest.fixture
async def pipeline(servers: tuple[str, str | None, str], geoip_db: Path) -> AsyncIterator[Pipeline]:
    database_url, redis_url, prefix = servers
    db = Database.from_url(database_url)
    client = redis_client(redis_url) if redis_url else None
    streams: Streams = RedisStreams(client, prefix) if client else MemoryStreams()
    geo = GeoLookup(geoip_db)
    metrics = Metrics()
    try:
        yield Pipeline(db, streams, metrics, ClickAggregator(db, geo, metrics))
    finally:
        geo.close()
        await streams.aclose()
        if client is not None:
            await client.aclose()
        await db.dispose()


async def add_link(db: Database, code: str) -> int:
    now = utcnow()
    values = {"code": code, "long_url": f"https://example.com/{code}", "is_custom": True}
    async with db.write() as conn:
        stmt = insert(links).values(**values, created_at=now, updated_at=now).returning(links.c.id)
        return int((await conn.execute(stmt)).scalar_one())


async def stats(db: Database, link_id: int) -> dict[str, Any]:
    """What the stats page would show for a link."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(links.c.clicks, links.c.bot_clicks, links.c.last_clicked_at).where(
                    links.c.id == link_id
                )
            )
        ).one()
        result: dict[str, Any] = {
            "clicks": row.clicks,
            "bot_clicks": row.bot_clicks,
            "last_clicked_at": row.last_clicked_at,
        }
        for name, table, column in (
            ("daily", link_daily, "day"),
            ("referrers", link_referrers, "referrer"),
            ("devices", link_devices, "device"),
            ("countries", link_countries, "country"),
        ):
            rows = await conn.execute(
                select(table.c[column], table.c.clicks).where(table.c.link_id == link_id)
            )
            result[name] = dict(rows.all())
    return result


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def clicks_of(db: Database, link_id: int) -> int:
    return int((await stats(db, link_id))["clicks"])


def sample_batch(link_id: int) -> list[list[Any]]:
    return [
        [link_id, LATE, "https://News.Example/a?x=1", PHONE, AU_IP],
        [link_id, LATE, None, DESKTOP, UNKNOWN_IP],
        [link_id, EARLY_NEXT_DAY, "not a url", TABLET, None],
        [link_id, EARLY_NEXT_DAY, "https://news.example/b", DESKTOP, AU_IP],
        [link_id, EARLY_NEXT_DAY + 5, "https://bots.example/", BOT, AU_IP],
    ]


SAMPLE_STATS = {
    "clicks": 4,
    "bot_clicks": 1,
    "last_clicked_at": dt.datetime.fromtimestamp(EARLY_NEXT_DAY + 5, dt.UTC),
    "daily": {dt.date(2026, 3, 1): 2, dt.date(2026, 3, 2): 2},
    "referrers": {"news.example": 2, "direct": 2},
    "devices": {"mobile": 1, "desktop": 2, "tablet": 1, "bot": 1},
    "countries": {"AU": 2},
}


async def test_batch_counts_humans_and_breaks_them_down(pipeline: Pipeline) -> None:
    link_id = await add_link(pipeline.db, "batch")
    assert await pipeline.aggregator.apply("b1", sample_batch(link_id))
    assert await stats(pipeline.db, link_id) == SAMPLE_STATS
    recorded = pipeline.metrics.registry.get_sample_value
    assert recorded("plaza_clicks_recorded_total", {"kind": "human"}) == 4
    assert recorded("plaza_clicks_recorded_total", {"kind": "bot"}) == 1

    # A later batch adds to the same rows; an older click does not move last_clicked_at back.
    assert await pipeline.aggregator.apply("b2", [[link_id, LATE - 3600, None, PHONE, AU_IP]])
    after = await stats(pipeline.db, link_id)
    assert after["clicks"] == 5 and after["last_clicked_at"] == SAMPLE_STATS["last_clicked_at"]
    assert after["daily"][dt.date(2026, 3, 1)] == 3
    assert after["referrers"]["direct"] == 3 and after["devices"]["mobile"] == 2


async def test_a_batch_applied_twice_counts_once(pipeline: Pipeline) -> None:
    link_id = await add_link(pipeline.db, "twice")
    assert await pipeline.aggregator.apply("same", sample_batch(link_id))
    assert not await pipeline.aggregator.apply("same", sample_batch(link_id))
    assert await stats(pipeline.db, link_id) == SAMPLE_STATS


async def test_a_stream_entry_delivered_twice_counts_once(pipeline: Pipeline) -> None:
    link_id = await add_link(pipeline.db, "redeliver")
    payload = encode_batch(uuid.uuid4().hex, sample_batch(link_id))
    await pipeline.streams.ensure_group("clicks", "click-aggregator")
    await pipeline.streams.add("clicks", payload)
    await pipeline.streams.add("clicks", payload)
    stop = asyncio.Event()
    task = pipeline.consume(stop)
    await eventually(lambda: lag_is_zero(pipeline.streams))
    stop.set()
    await asyncio.wait_for(task, 3)
    assert await stats(pipeline.db, link_id) == SAMPLE_STATS


async def lag_is_zero(streams: Streams) -> bool:
    return await streams.lag("clicks", "click-aggregator") == 0


async def test_clicks_flow_from_buffer_to_stats(pipeline: Pipeline) -> None:
    link_id = await add_link(pipeline.db, "e2e")
    buffer = pipeline.buffer(
        flush_interval_s=60, batch_size=7
    )  # never ticks: only explicit flushes
    consumer_stop, buffer_stop = asyncio.Event(), asyncio.Event()
    consumer = pipeline.consume(consumer_stop)
    for i in range(20):
        buffer.record(link_id, time.time(), f"https://site{i % 2}.example/", DESKTOP, AU_IP)
    assert await buffer.flush() == 20
    assert len(buffer) == 0
    await eventually(lambda: has_clicks(pipeline.db, link_id, 20))

    # Shutdown: run() flushes what is left even though its interval never came round.
    flusher = asyncio.create_task(buffer.run(buffer_stop))
    await asyncio.sleep(0)  # let it start waiting for an interval that never comes
    for _ in range(5):
        buffer.record(link_id, time.time(), None, PHONE, None)
    buffer_stop.set()
    await asyncio.wait_for(flusher, 3)
    assert len(buffer) == 0
    await eventually(lambda: has_clicks(pipeline.db, link_id, 25))

    consumer_stop.set()
    await asyncio.wait_for(consumer, 3)
    seen = await stats(pipeline.db, link_id)
    assert seen["referrers"] == {"site0.example": 10, "site1.example": 10, "direct": 5}
    assert seen["devices"] == {"desktop": 20, "mobile": 5} and seen["countries"] == {"AU": 20}


async def has_clicks(db: Database, link_id: int, expected: int) -> bool:
    clicks = await clicks_of(db, link_id)
    assert clicks <= expected, "counted twice"
    return clicks == expected


async def test_an_entry_a_crashed_consumer_never_acked_is_claimed_once(pipeline: Pipeline) -> None:
    link_id = await add_link(pipeline.db, "claimed")
    streams = pipeline.streams
    await streams.ensure_group("clicks", "click-aggregator")
    await streams.add("clicks", encode_batch("orphan", [(link_id, LATE, None, PHONE, None)]))
    taken = await streams.read("clicks", "click-aggregator", "crashed", 10, 0)
    assert len(taken) == 1  # ... and "crashed" dies here, without applying or acking

    stop = asyncio.Event()
    rescuer = pipeline.consume(stop, consumer="rescuer", stale_ms=50)
    await eventually(lambda: has_clicks(pipeline.db, link_id, 1))
    await eventually(lambda: lag_is_zero(streams))
    stop.set()
    await asyncio.wait_for(rescuer, 3)
    assert await clicks_of(pipeline.db, link_id) == 1
    # Had "crashed" come back to life and applied its copy, it would still count once.
    assert not await pipeline.aggregator.apply("orphan", [(link_id, LATE, None, PHONE, None)])


async def test_malformed_entries_are_skipped_not_retried_forever(pipeline: Pipeline) -> None:
    link_id = await add_link(pipeline.db, "poison")
    streams = pipeline.streams
    await streams.ensure_group("clicks", "click-aggregator")
    for payload in (
        b"not json",
        orjson.dumps({"id": "x", "clicks": [["not an id", 1.0, None, None, None]]}),
        orjson.dumps([1, 2, 3]),
        # Checked a chunk at a time, but refused whole: the good clicks before the bad one count not.
        orjson.dumps(
            {"id": "y", "clicks": [[link_id, LATE, None, DESKTOP, None]] * 600 + [[link_id, "?"]]}
        ),
        encode_batch("good", [(link_id, LATE, None, DESKTOP, None)]),
    ):
        await streams.add("clicks", payload)
    stop = asyncio.Event()
    task = pipeline.consume(stop)
    await eventually(lambda: lag_is_zero(streams))
    stop.set()
    await asyncio.wait_for(task, 3)
    assert await clicks_of(pipeline.db, link_id) == 1


async def test_redis_down_the_buffer_writes_clicks_to_sql(pipeline: Pipeline) -> None:
    link_id = await add_link(pipeline.db, "noredis")
    dead = redis_client(DEAD_REDIS)
    try:
        buffer = pipeline.buffer(RedisStreams(dead, "plaza-test:dead:"))
        for _ in range(3):
            buffer.record(link_id, LATE, "https://a.example/", PHONE, AU_IP)
        assert await buffer.flush() == 3
    finally:
        await dead.aclose()
    seen = await stats(pipeline.db, link_id)
    assert seen["clicks"] == 3 and seen["countries"] == {"AU": 3}


class FlakySink:
    """The aggregator behind a database that is down for the first `failures` calls."""

    def __init__(self, aggregator: ClickAggregator, failures: int) -> None:
        self.aggregator, self.failures = aggregator, failures
        self.batch_ids: list[str] = []

    async def apply(self, batch_id: str, clicks: Sequence[Sequence[Any]]) -> bool:
        self.batch_ids.append(batch_id)
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("database down")
        return await self.aggregator.apply(batch_id, clicks)


async def test_redis_and_sql_down_the_buffer_keeps_clicks_for_later(pipeline: Pipeline) -> None:
    link_id = await add_link(pipeline.db, "nothing")
    dead, sink = redis_client(DEAD_REDIS), FlakySink(pipeline.aggregator, failures=1)
    try:
        buffer = ClickBuffer(RedisStreams(dead, "plaza-test:dead:"), sink, pipeline.metrics)
        for _ in range(3):
            buffer.record(link_id, LATE, None, PHONE, None)
        assert await buffer.flush() == 0
        assert len(buffer) == 3
        assert await buffer.flush() == 3
    finally:
        await dead.aclose()
    assert await clicks_of(pipeline.db, link_id) == 3
    # The retry is the same batch, so a first attempt that did land would not count twice.
    assert len(set(sink.batch_ids)) == 1


async def test_clicks_on_a_missing_link_do_not_break_the_batch(pipeline: Pipeline) -> None:
    kept, gone = await add_link(pipeline.db, "kept"), await add_link(pipeline.db, "gone")
    async with pipeline.db.write() as conn:
        await conn.execute(delete(links).where(links.c.id == gone))
    batch = [
        [gone, LATE, None, PHONE, AU_IP],
        [kept, LATE, "https://x.example/", PHONE, AU_IP],
        [gone + 1000, LATE, None, BOT, None],
    ]
    assert await pipeline.aggregator.apply("mixed", batch)
    seen = await stats(pipeline.db, kept)
    assert seen["clicks"] == 1 and seen["countries"] == {"AU": 1}
    async with pipeline.db.read() as conn:
        orphans = await conn.execute(select(link_daily).where(link_daily.c.link_id != kept))
        assert orphans.all() == []


def test_a_full_buffer_drops_and_counts_instead_of_growing() -> None:
    metrics = Metrics()
    never_called = FlakySink(aggregator=None, failures=0)  # type: ignore[arg-type]
    buffer = ClickBuffer(MemoryStreams(), never_called, metrics, max_size=3)
    for client in range(5):
        buffer.record(1, 0.0, None, None, f"192.0.2.{client}")
    for _ in range(10):  # identical clicks share a row: counted, never dropped
        buffer.record(1, 0.0, None, None, "192.0.2.0")
    assert len(buffer) == 13
    assert metrics.registry.get_sample_value("plaza_clicks_dropped_total") == 2


async def test_identical_clicks_travel_as_one_counted_row(pipeline: Pipeline) -> None:
    link_id = await add_link(pipeline.db, "hot")
    buffer = pipeline.buffer()
    for i in range(1_000):
        buffer.record(link_id, LATE + (i % 2) * 0.4, None, PHONE, AU_IP)  # all within one second
    buffer.record(link_id, LATE + 1, None, PHONE, AU_IP)
    assert len(buffer) == 1_001
    await pipeline.streams.ensure_group("clicks", "probe")
    assert await buffer.flush() == 1_001
    entries = await pipeline.streams.read("clicks", "probe", "c", count=10, block_ms=0)
    batch_id, rows = decode_batch(entries[0].payload)
    assert sorted(row[5] for row in rows) == [1, 1_000]
    assert await pipeline.aggregator.apply(batch_id, rows)
    assert await clicks_of(pipeline.db, link_id) == 1_001
