"""Fan-out: the outbox relay and the consumer that writes posts into followers' timelines.

The relay moves outbox rows (written in the transactions of the changes they announce) to the `posts`
stream and deletes them; the consumer (a group on that stream, any number of processes) handles each
event at least once, and every step of it is idempotent: a timeline holds an id once, removing an
absent id does nothing, and a frame sent twice carries the same post.

- A post by an author below the celebrity threshold is pushed into the author's own timeline and those
  of their followers, a page of FOLLOWER_PAGE at a time, one Lua call per page; followers whose timeline
  does not exist (inactive, never read) cost nothing. A celebrity's post goes only into their own
  recent-posts timeline, which readers merge.
- Either way, followers connected to any process get a `feed` frame, except those who mute or block
  the author (or are blocked by them).
- A delete takes the ids out of the same timelines (reads have filtered them out from the commit on).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson
import structlog
from sqlalchemy.exc import SQLAlchemyError

from plaza.feed import store
from plaza.feed.posts import PostView
from plaza.feed.service import FeedService, author_key, home_key
from plaza.platform.bus import StreamEntry, Streams
from plaza.platform.db import Database
from plaza.platform.kv import PortUnavailable
from plaza.platform.metrics import Metrics

__all__ = ["FOLLOWER_PAGE", "STREAM", "FanOut", "OutboxRelay"]

log = structlog.get_logger("plaza.feed")

STREAM, GROUP = "posts", "feed-fanout"
FOLLOWER_PAGE = 1000
# Followers whose frame may wait for the post's view while pushes go on; past them, pushes wait too.
FRAMES_WAITING_MAX = 10 * FOLLOWER_PAGE
RELAY_BATCH = 100
RELAY_POLL_S = 0.5  # how often the relay looks for rows another process committed
BACKOFF_MAX_S = 5.0


class OutboxRelay:
    """Moves fan-out events from the SQL outbox to the stream: at once when this process wrote them
    (the service kicks it), within RELAY_POLL_S otherwise."""

    def __init__(self, db: Database, streams: Streams) -> None:
        self.db, self.streams = db, streams
        self.kick = asyncio.Event()

    async def step(self) -> int:
        async with self.db.read() as conn:
            if not await store.outbox_pending(conn):
                return 0
        async with self.db.write() as conn:
            rows = await store.outbox_take(conn, RELAY_BATCH)
            for row in rows:
                await self.streams.add(STREAM, bytes(row.payload))
            if rows:
                await store.outbox_done(conn, [int(r.id) for r in rows])
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            self.kick.clear()
            try:
                if await self.step() == RELAY_BATCH:
                    continue
                failures = 0
                delay = RELAY_POLL_S
            except (PortUnavailable, SQLAlchemyError, OSError) as exc:
                failures += 1
                delay = min(BACKOFF_MAX_S, RELAY_POLL_S * 2**failures)
                log.warning("feed outbox relay waiting out an outage", error=str(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    kicked = asyncio.ensure_future(self.kick.wait())
                    stopped = asyncio.ensure_future(stop.wait())
                    try:
                        await asyncio.wait({kicked, stopped}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        kicked.cancel()
                        stopped.cancel()


class FanOut:
    def __init__(self, feed: FeedService, db: Database, metrics: Metrics) -> None:
        self.feed, self.db, self.metrics = feed, db, metrics

    async def handle(self, entry: StreamEntry) -> None:
        try:
            event: dict[str, Any] = orjson.loads(entry.payload)
            kind, author = event["kind"], int(event["author_id"])
            post_ids = [int(i) for i in event["post_ids"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.error("dropping a malformed fan-out event", entry=entry.id, error=str(exc))
            return
        started = time.perf_counter()
        if kind == "post":
            for post_id in post_ids:
                await self.post(author, post_id)
        elif kind == "delete":
            await self.delete(author, post_ids)
        self.metrics.feed_fanout_seconds.labels(kind).observe(time.perf_counter() - started)

    async def _author(self, author: int, post_id: int) -> tuple[bool, bool, set[int]]:
        """Whether the post still exists, whether its author is a celebrity, and who hides them
        (mutes or blocks, either way)."""
        async with self.db.read() as conn:
            live = bool(await store.counters(conn, [post_id]))
            followers, _ = await store.counts(conn, author)
            hiders = await store.hiders(conn, author)
        return live, followers >= self.feed.celebrity_threshold, hiders

    async def post(self, author: int, post_id: int) -> None:
        # The first page of followers and the post's view (for the frames) are read while the post
        # and its author are looked up, so the pushes start as soon as the post is known to stand.
        first = asyncio.ensure_future(self._page(author, 0))
        views = asyncio.ensure_future(self.feed.post_views([post_id]))
        pushing: asyncio.Future[int] | None = None
        try:
            live, celebrity, hiders = await self._author(author, post_id)
            if not live:
                return  # deleted before its fan-out ran
            timelines = self.feed.timelines
            inserted = 0
            own = [author_key(author) if celebrity else home_key(author)]
            if celebrity:
                inserted += await timelines.push(own, post_id)
                await self.feed.celebrity_changed(author)
            # A page's push runs in Redis while the next page is read and keyed here; the author's
            # own timeline goes with the first. Frames go out once the view is in, never holding up
            # a push.
            frame: dict[str, Any] | None = None
            waiting: list[int] = []  # followers whose frame waits for the view
            async with contextlib.aclosing(self._followers(author, first)) as pages:
                async for page in pages:
                    if not celebrity:
                        previous = pushing
                        pushing = asyncio.ensure_future(
                            timelines.push([*own, *(home_key(f) for f in page)], post_id)
                        )
                        own = []
                        if previous is not None:
                            inserted += await previous
                    waiting += (f for f in page if f not in hiders)
                    if frame is None and (views.done() or len(waiting) >= FRAMES_WAITING_MAX):
                        frame = _frame(await views, post_id)
                        if frame is None:
                            break  # deleted meanwhile: its delete takes out what was pushed
                    if frame is not None:
                        await self.feed.pusher.deliver(waiting, frame)
                        waiting = []
            if pushing is not None:
                inserted += await pushing
                pushing = None
            if waiting and frame is None and (frame := _frame(await views, post_id)) is not None:
                await self.feed.pusher.deliver(waiting, frame)
            if own and not celebrity:  # no followers
                inserted += await timelines.push(own, post_id)
        finally:  # on a failure the consumer retries the whole post
            _abandon(first, views, pushing)
        self.metrics.feed_timeline_inserts.inc(inserted)

    async def delete(self, author: int, post_ids: list[int]) -> None:
        timelines = self.feed.timelines
        await timelines.remove([home_key(author), author_key(author)], post_ids)
        await self.feed.celebrity_changed(author)
        async for page in self._followers(author):
            await timelines.remove([home_key(f) for f in page], post_ids)

    async def _page(self, author: int, after: int) -> list[int]:
        async with self.db.read() as conn:
            return await store.follower_ids_after(conn, author, after, FOLLOWER_PAGE)

    async def _followers(
        self, author: int, first: asyncio.Future[list[int]] | None = None
    ) -> AsyncGenerator[list[int]]:
        """The author's followers, a page at a time (from `first`, the first page's read if started
        already); the next page is read while this one is used."""
        upcoming = first if first is not None else asyncio.ensure_future(self._page(author, 0))
        try:
            while page := await upcoming:
                if len(page) == FOLLOWER_PAGE:
                    upcoming = asyncio.ensure_future(self._page(author, page[-1]))
                else:
                    upcoming = asyncio.ensure_future(asyncio.sleep(0, []))
                yield page
        finally:
            upcoming.cancel()


def _frame(views: dict[int, PostView], post_id: int) -> dict[str, Any] | None:
    view = views.get(post_id)
    return None if view is None else {"type": "feed", "post": view}


def _abandon(*futures: asyncio.Future[Any] | None) -> None:
    """Cancel what is still running; a failure of what already ended was handled elsewhere."""
    for future in futures:
        if future is not None and not future.cancel() and not future.cancelled():
            future.exception()  # retrieved: it would be reported as never retrieved otherwise
