"""Post views, read through a cache of their unchanging parts: one multi-get per page of a feed.

A post's content, author, media and links never change, so their rendering is cached (`post:<id>`)
without any invalidation. What does change, the counters and whether the post still exists, is read
from SQL for the whole page in one primary-key query: counts are exact the moment a like commits, and a
deleted post is gone from every read at once. (Invalidating cached counters instead would race: a read
that filled the cache just before a like's commit would keep the old count there.)
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from typing import Any

import orjson

from plaza.accounts.service import AccountsService
from plaza.feed import store
from plaza.platform.db import AnyRow, Database
from plaza.platform.kv import KV, PortUnavailable

__all__ = ["PostCache", "PostView", "author_of", "view_of"]

PostView = dict[str, Any]
CACHE_TTL_S = 3600.0  # bounds how long a changed display name shows in old posts
COUNTERS = ("like_count", "repost_count", "reply_count")


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    }


def author_of(view: PostView) -> int:
    return int(view["author"]["id"])


def _key(post_id: int) -> str:
    return f"post:{post_id}"


class PostCache:
    def __init__(self, db: Database, kv: KV, accounts: AccountsService) -> None:
        self.db, self.kv, self.accounts = db, kv, accounts

    async def views(self, ids: Sequence[int]) -> dict[int, PostView]:
        """The views of the posts that exist, by id; deleted and unknown ids are simply absent."""
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
                found[post_id] = orjson.loads(raw) | _counts(live[post_id])
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
