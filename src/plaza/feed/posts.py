"""Post views, read through two caches: whole views in each process, their unchanging parts in the kv.

A post's content, author, media and links never change, so their rendering is cached (`post:<id>`)
without any invalidation. What does change, the counters and whether the post still exists, is read
from SQL for the posts a process does not hold, in one primary-key query. Each process keeps whole
views a short while (LocalCache): a like, repost, reply or delete invalidates the post's view in every
process once it commits (`changed`), and a read that raced the change does not store what it read.
The process that made the change answers with the new counts at once; the others within a pub/sub
message's delay.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from typing import Any

import orjson

from plaza.accounts.service import AccountsService
from plaza.feed import store
from plaza.platform.clock import Clock
from plaza.platform.db import AnyRow, Database
from plaza.platform.kv import KV, PortUnavailable
from plaza.platform.localcache import LocalCache
from plaza.platform.pubsub import PubSub

__all__ = ["PostCache", "PostView", "author_of", "view_of"]

PostView = dict[str, Any]
CACHE_TTL_S = 3600.0  # bounds how long a changed display name shows in old posts
LOCAL_SIZE, LOCAL_TTL_S = 20_000, 30.0  # views per process; the TTL bounds a lost invalidation
COUNTERS = ("like_count", "repost_count", "reply_count")


def _iso(value: dt.datetime) -> str:
    """RFC 3339 in UTC, as pydantic writes it (no fraction when there is none)."""
    return value.astimezone(dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ" if value.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    )


def view_of(row: AnyRow, author: dict[str, str]) -> PostView:
    return {
        "id": str(row.id),
        "author": author,
        "content": row.content,
        "media_urls": orjson.loads(row.media_urls),
        "created_at": _iso(row.created_at),
        "like_count": int(row.like_count),
        "repost_count": int(row.repost_count),
        "reply_count": int(row.reply_count),
        "reply_to": None if row.reply_to is None else str(row.reply_to),
        "repost_of": None if row.repost_of is None else str(row.repost_of),
        "reposted": None,  # what a repost shows: FeedService.post_views attaches it
    }


def author_of(view: PostView) -> int:
    return int(view["author"]["id"])


def _key(post_id: int) -> str:
    return f"post:{post_id}"


class PostCache:
    def __init__(
        self, db: Database, kv: KV, accounts: AccountsService, pubsub: PubSub, clock: Clock
    ) -> None:
        self.db, self.kv, self.accounts = db, kv, accounts
        self._local = LocalCache[int, PostView](
            channel="feed:posts",
            parse=int,
            pubsub=pubsub,
            clock=clock,
            size=LOCAL_SIZE,
            ttl_s=LOCAL_TTL_S,
        )

    async def views(self, ids: Sequence[int]) -> dict[int, PostView]:
        """The views of the posts that exist, by id, in the order asked; deleted and unknown ids are
        simply absent. The views are shared: copy one before changing it."""
        held = self._local.get_many(ids)
        if len(held) == len(ids):
            return held  # in the order asked: get_many keeps it
        generation = self._local.generation
        loaded = await self._load([i for i in ids if i not in held])
        for post_id, view in loaded.items():
            self._local.put(post_id, view, generation)
        return {i: v for i in ids if (v := held.get(i) or loaded.get(i)) is not None}

    async def changed(self, ids: Sequence[int]) -> None:
        """After a commit that changed these posts' counters or deleted them: every process reads
        them from SQL again."""
        await self._local.invalidate(ids)

    async def listen(self) -> None:
        """Forget the views other processes changed; runs until cancelled."""
        await self._local.listen()

    async def _load(self, ids: Sequence[int]) -> dict[int, PostView]:
        if not ids:
            return {}
        async with self.db.read() as conn:
            live = {int(r.id): r for r in await store.counters(conn, ids)}
        if not live:
            return {}
        wanted = [i for i in ids if i in live]
        try:
            cached = await self.kv.get_many([_key(i) for i in wanted])
        except PortUnavailable:
            cached = [None] * len(wanted)
        found: dict[int, PostView] = {}
        missing: list[int] = []
        for post_id, raw in zip(wanted, cached, strict=True):
            if raw is None:
                missing.append(post_id)
            else:
                view = orjson.loads(raw)
                view.setdefault("reposted", None)  # a body cached before views carried it
                found[post_id] = view | _counts(live[post_id])
        if missing:
            async with self.db.read() as conn:
                rows = await store.posts_by_ids(conn, missing)
            fresh = await self.render(rows)
            found.update(fresh)
            await self._fill(fresh)
        return found

    async def render(self, rows: Sequence[AnyRow]) -> dict[int, PostView]:
        users = await self.accounts.by_ids(sorted({int(r.author_id) for r in rows}))
        return {
            int(r.id): view_of(r, users[int(r.author_id)].summary())
            for r in rows
            if int(r.author_id) in users
        }

    async def _fill(self, views: dict[int, PostView]) -> None:
        if not views:
            return
        bodies = {
            _key(i): orjson.dumps({k: v for k, v in view.items() if k not in COUNTERS})
            for i, view in views.items()
        }
        with contextlib.suppress(PortUnavailable):  # the next read renders them again
            await self.kv.set_many(bodies, ttl_s=CACHE_TTL_S)


def _counts(row: AnyRow) -> dict[str, int]:
    return {name: int(getattr(row, name)) for name in COUNTERS}
