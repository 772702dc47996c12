"""Post views, and the cache they are read through: one multi-get per page of a feed.

A cached view is the whole post as clients see it, counters included; every change to a post (a like, a
reply, a repost, its deletion) deletes its entry after the commit, so the next read takes it from SQL.
A deleted post leaves a tombstone for as long as any view of it could be cached: a reader that filled
the cache from a read made just before the delete cannot bring the post back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any

import orjson
import structlog

from plaza.accounts.service import AccountsService
from plaza.feed import store
from plaza.platform.db import AnyRow, Database
from plaza.platform.kv import KV, PortUnavailable

__all__ = ["PostCache", "PostView", "author_of", "view_of"]

log = structlog.get_logger("plaza.feed")

PostView = dict[str, Any]
CACHE_TTL_S = 600.0
TOMBSTONE = b"-"


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
        found: dict[int, PostView] = {}
        missing: list[int] = []
        try:
            cached = await self.kv.get_many([_key(i) for i in ids])
        except PortUnavailable:
            cached = [None] * len(ids)
        for post_id, raw in zip(ids, cached, strict=True):
            if raw is None:
                missing.append(post_id)
            elif raw != TOMBSTONE:
                found[post_id] = orjson.loads(raw)
        if missing:
            fresh = await self._load(missing)
            found.update(fresh)
            await self._fill(fresh)
        return found

    async def _load(self, ids: Collection[int]) -> dict[int, PostView]:
        async with self.db.read() as conn:
            rows = await store.posts_by_ids(conn, ids)
        return await self.render(rows)

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
        with contextlib.suppress(PortUnavailable):  # the next read goes to SQL again
            await self.kv.set_many(
                {_key(i): orjson.dumps(v) for i, v in views.items()}, ttl_s=CACHE_TTL_S
            )

    async def forget(self, *ids: int) -> None:
        """After a commit that changed these posts: the next read takes them from SQL."""
        await self._drop([_key(i) for i in ids], None)

    async def bury(self, *ids: int) -> None:
        """After a commit that deleted these posts."""
        await self._drop([], {_key(i): TOMBSTONE for i in ids})

    async def _drop(self, keys: list[str], tombstones: dict[str, bytes] | None) -> None:
        try:
            if keys:
                await self.kv.delete(*keys)
            if tombstones:
                await self.kv.set_many(tombstones, ttl_s=CACHE_TTL_S * 2)
        except PortUnavailable:
            log.warning("post cache unreachable; views may be stale until they expire")
