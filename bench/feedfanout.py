"""Plaza's fan-out measured in process, through its own code, on PostgreSQL + Redis; and timeline memory.

For each follower count the followers' home timelines are made to exist first (fan-out skips timelines
that do not): one is built with RedisTimelines.build from `fill` seeded post ids and copied to every
follower with DUMP/RESTORE, which makes the same sorted set far faster than building each. Then, per
repetition, with a new post each time:

- `FanOut.post`: the fan-out consumer's work for one post, called directly (the post inserted in SQL
  first, with no outbox row): follower pages from SQL, one Lua push per 1,000 timelines, the
  hide-check query and the (here empty) WebSocket delivery per page.
- `RedisTimelines.push`: the raw Lua push of one id into the same timelines, nothing else.
- end to end: `FeedService.create_post` (SQL transaction + outbox row), the outbox relay, the `posts`
  stream and the consumer loop, as `plaza serve` runs them, until the last follower's timeline
  (read with `RedisTimelines.window`, polled every millisecond) shows the post.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import text

from plaza.accounts.service import User
from plaza.app import Background
from plaza.bootstrap import Platform, Services, build_services, close_platform, open_platform
from plaza.feed import store
from plaza.feed.fanout import GROUP, STREAM
from plaza.feed.service import home_key
from plaza.feed.timelines import RedisTimelines
from plaza.platform.consumer import run_consumer
from plaza.settings import Settings

POLL_S = 0.001
RESTORE_BATCH = 500
MEMORY_SAMPLE = 200  # full timelines built per encoding: MEMORY USAGE of each, then pushes to all
MEMORY_PUSHES = 5
E2E_TIMEOUT_S = 120.0
SETTLE_MAX_S = 30.0


@dataclass
class Trials:
    """Repeated measurements of one thing: seconds and how many timeline inserts each made."""

    seconds: list[float] = field(default_factory=list)
    inserts: list[int] = field(default_factory=list)

    def add(self, seconds: float, inserts: int) -> None:
        self.seconds.append(seconds)
        self.inserts.append(inserts)

    @property
    def rates(self) -> list[float]:
        return [n / s for n, s in zip(self.inserts, self.seconds, strict=True)]

    def median_rate(self) -> float:
        return statistics.median(self.rates)

    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000


@dataclass
class FanoutRow:
    followers: int
    fill: int
    fanout: Trials = field(default_factory=Trials)  # FanOut.post
    push: Trials = field(default_factory=Trials)  # RedisTimelines.push
    e2e: Trials = field(default_factory=Trials)  # create_post -> last follower's window
    prebuild_s: float = 0.0
    redis_mb: float = 0.0  # used_memory with these timelines in place, above the start


def settings_for(database_url: str, redis_url: str, prefix: str) -> Settings:
    # Push fan-out at every size: with the default threshold (10,000) these authors would be pulled
    # at read time instead, and there would be nothing to measure.
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        env="production",
        secret_key="plaza-feed-bench-not-a-secret",
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=prefix,
        feed_celebrity_threshold=10_000_000,
        auto_migrate=True,
        log_level="WARNING",
    )


@asynccontextmanager
async def plaza(settings: Settings) -> AsyncIterator[tuple[Platform, Services]]:
    platform = await open_platform(settings)
    try:
        yield platform, build_services(platform)
    finally:
        await close_platform(platform)


def _tl(platform: Platform, key: str) -> str:
    timelines = platform.timelines
    assert isinstance(timelines, RedisTimelines)
    return timelines.redis_key(key)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def prebuild(platform: Platform, users: list[int], ids: list[int], ttl_s: float) -> None:
    """Make every user's home timeline exist, holding `ids`.

    Full timelines (800 ids or more) are trimmed approximately: in steady state their sizes spread
    evenly over 800-832, and a push trims the 1 in 33 that pass 832. So full ones hold 0-32 older ids
    beyond `ids` too, user by user in turn, and each push here trims as many as it would in a
    running system.
    """
    client = platform.redis
    assert client is not None
    timelines = platform.timelines
    full = len(ids) >= timelines.max_len
    extras = range(timelines.trim_slack + 1) if full else range(1)
    payloads = []
    for extra in extras:
        template = f"bench:template:{extra}"
        await timelines.build(template, ids, complete=not full, ttl_s=None)
        older = [min(ids) - 1 - k for k in range(extra)]
        if older:
            await timelines.extend(template, older)  # within the slack: nothing trimmed
        payloads.append(await client.dump(_tl(platform, template)))
        await timelines.drop(template)
    keys = [_tl(platform, home_key(u)) for u in users]
    for chunk_at in range(0, len(keys), RESTORE_BATCH):
        async with client.pipeline(transaction=False) as pipe:
            for at in range(chunk_at, min(chunk_at + RESTORE_BATCH, len(keys))):
                payload = payloads[at % len(payloads)]
                pipe.restore(keys[at], int(ttl_s * 1000), payload, replace=True)
            await pipe.execute()


async def drop_homes(platform: Platform, users: list[int]) -> None:
    client = platform.redis
    assert client is not None
    for chunk in _chunks([_tl(platform, home_key(u)) for u in users], 1000):
        await client.unlink(*chunk)


async def settle(client: aioredis.Redis) -> None:
    """Wait for Redis to finish freeing what UNLINK handed its background thread: on 2 cores that
    thread would otherwise take CPU from the next measurement."""
    for _ in range(int(SETTLE_MAX_S / POLL_S / 10)):
        if not int((await client.info("memory")).get("lazyfree_pending_objects", 0)):
            return
        await asyncio.sleep(POLL_S * 10)


async def _used_mb(client: aioredis.Redis) -> float:
    return int((await client.info("memory"))["used_memory"]) / 2**20


async def _inserts(platform: Platform) -> float:
    return float(platform.metrics.feed_timeline_inserts._value.get())


async def _new_post(platform: Platform, services: Services, author: int) -> int:
    post_id = services.feed.ids.next()
    async with platform.db.write() as conn:
        await store.insert_post(
            conn,
            id=post_id,
            author_id=author,
            content="fan-out bench",
            created_at=services.feed.now(),
        )
    return post_id


async def _shows(platform: Platform, user: int, post_id: int) -> bool:
    window = await platform.timelines.window(home_key(user), None, 1)
    return window is not None and bool(window.ids) and window.ids[0] == post_id


async def measure(
    platform: Platform,
    services: Services,
    author: int,
    followers: list[int],
    fill_ids: list[int],
    repeat: int,
) -> FanoutRow:
    assert platform.redis is not None
    row = FanoutRow(len(followers), len(fill_ids))
    before = await _used_mb(platform.redis)
    started = time.perf_counter()
    ttl_s = services.feed.timeline_ttl_s
    await prebuild(platform, [*followers, author], fill_ids, ttl_s)
    row.prebuild_s = time.perf_counter() - started
    row.redis_mb = await _used_mb(platform.redis) - before
    last = followers[-1]
    keys = [home_key(f) for f in followers]
    # A first post, not timed (the peer gets one too): a process's first fan-out opens its pools'
    # connections (asyncpg's type introspection included) and loads the Lua scripts.
    await services.fanout.post(author, await _new_post(platform, services, author))
    for _ in range(repeat):
        post_id = await _new_post(platform, services, author)
        counted = await _inserts(platform)
        started = time.perf_counter()
        await services.fanout.post(author, post_id)
        row.fanout.add(time.perf_counter() - started, int(await _inserts(platform) - counted))
        assert await _shows(platform, last, post_id), "FanOut.post missed the last follower"

        raw_id = services.feed.ids.next()  # an id no post has: the push does not care
        started = time.perf_counter()
        pushed = await platform.timelines.push(keys, raw_id)
        row.push.add(time.perf_counter() - started, pushed)
    async with consuming(platform, services):
        author_user = (await services.accounts.by_ids([author]))[author]
        for _ in range(repeat):
            row.e2e.add(*await _end_to_end(platform, services, author_user, last, len(followers)))
    await drop_homes(platform, [*followers, author])
    await settle(platform.redis)
    return row


async def _end_to_end(
    platform: Platform, services: Services, author: User, last: int, followers: int
) -> tuple[float, int]:
    started = time.perf_counter()
    view = await services.feed.create_post(author, "fan-out bench, end to end", [], None)
    post_id = int(view["id"])
    async with asyncio.timeout(E2E_TIMEOUT_S):
        while not await _shows(platform, last, post_id):
            await asyncio.sleep(POLL_S)
    return time.perf_counter() - started, followers + 1  # and the author's own timeline


@asynccontextmanager
async def consuming(platform: Platform, services: Services) -> AsyncIterator[None]:
    """The outbox relay and the fan-out consumer, as `plaza serve` starts them."""
    background = Background()
    background.start(
        "feed-fanout",
        run_consumer(
            platform.streams,
            platform.metrics,
            services.fanout.handle,
            stream=STREAM,
            group=GROUP,
            consumer="feed-bench",
            stop=background.stop,
        ),
    )
    background.start("feed-outbox-relay", services.relay.run(background.stop))
    try:
        yield
    finally:
        await background.close()


async def clear_outbox(platform: Platform) -> None:
    async with platform.db.write() as conn:
        await conn.execute(text("DELETE FROM feed_outbox"))


async def memory_per_timeline(
    platform: Platform, ids: list[int], entries: list[int]
) -> list[dict[str, Any]]:
    """MEMORY USAGE of MEMORY_SAMPLE full timelines built with each `zset-max-listpack-entries`."""
    client = platform.redis
    assert client is not None
    timelines = platform.timelines
    assert isinstance(timelines, RedisTimelines)
    old = (await client.config_get("zset-max-listpack-entries"))["zset-max-listpack-entries"]
    results = []
    try:
        for value in entries:
            await client.config_set("zset-max-listpack-entries", value)
            keys = [f"bench:mem:{value}:{i}" for i in range(MEMORY_SAMPLE)]
            for i, key in enumerate(keys):
                # each timeline its own 800 ids, as followers of different people have
                await timelines.build(key, ids[i : i + 800], complete=False, ttl_s=3600)
            sizes = [await client.memory_usage(_tl(platform, k), samples=0) for k in keys]
            encoding = await client.object("encoding", _tl(platform, keys[0]))
            count = await client.zcard(_tl(platform, keys[0]))
            push = Trials()
            for n in range(MEMORY_PUSHES):
                started = time.perf_counter()
                pushed = await timelines.push(keys, max(ids) + 1 + n)
                push.add(time.perf_counter() - started, pushed)
            await timelines.drop(*keys)
            await settle(client)
            results.append(
                {
                    "entries": value,
                    "encoding": encoding.decode() if isinstance(encoding, bytes) else encoding,
                    "members": int(count) - 1,
                    "bytes": statistics.median(sizes),
                    "min": min(sizes),
                    "max": max(sizes),
                    "push": push,
                }
            )
    finally:
        await client.config_set("zset-max-listpack-entries", old)
    return results
