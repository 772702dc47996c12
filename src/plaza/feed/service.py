"""The news feed's logic: posts and reactions, the follow graph, and reading home feeds.

Writes commit to SQL with an outbox row where followers' timelines must change; fan-out (fanout.py)
takes it from there. Reads merge the reader's cached home timeline with the recent posts of the
celebrities they follow, continue in SQL below what the caches hold, and filter at read time: deleted
posts, muted and blocked authors, and authors the reader no longer follows never show, whatever a
timeline still holds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import contextlib
import datetime as dt
import heapq
import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import orjson
import structlog
from sqlalchemy.exc import IntegrityError

from plaza.accounts.service import AccountsService, User
from plaza.feed import store
from plaza.feed.posts import PostCache, PostView, author_of
from plaza.feed.ranking import AFFINITY_WINDOW, rank
from plaza.feed.tables import blocks, mutes
from plaza.feed.timelines import Timelines, Window
from plaza.platform.clock import Clock
from plaza.platform.db import Database
from plaza.platform.errors import BadRequest, Forbidden, NotFound
from plaza.platform.ids import SnowflakeIds
from plaza.platform.kv import PortUnavailable
from plaza.platform.localcache import LocalCache
from plaza.platform.pubsub import PubSub
from plaza.settings import Settings

__all__ = ["FeedPage", "FeedService", "Pusher", "author_key", "home_key"]

log = structlog.get_logger("plaza.feed")

Mode = Literal["ranked", "chronological"]
CONTENT_MAX = 5000
MEDIA_MAX, MEDIA_URL_MAX = 4, 2048
BACKFILL = 200  # a new follow brings this many of the followee's recent posts into the timeline
RANK_CANDIDATES = 200
REBUILD_RECHECK = 50  # newest posts read again after a rebuild, for fan-outs that raced it
# Per process: each feed read needs it. Relationship changes, and an author becoming a celebrity,
# reach every process through pub/sub at once; the TTL bounds what an outage loses.
AUDIENCE_TTL_S, AUDIENCE_CACHE_SIZE = 60.0, 10_000
GATHER_ROUNDS = 5  # a page short of visible posts (all filtered) reads on this many times at most
# Per process, each celebrity's newest ids: every follower's read merges them, so a read of 20
# celebrities would otherwise fetch and parse 20 windows from Redis. A celebrity's post or delete
# reaches every process through pub/sub once it is in their timeline; the TTL bounds an outage.
RECENT_IDS, RECENT_TTL_S, RECENT_CACHE_SIZE = 200, 5.0, 10_000


class Pusher(Protocol):
    async def deliver(
        self, user_ids: Sequence[int], frame: dict[str, Any], *, exclude: str | None = None
    ) -> None: ...


def home_key(user_id: int) -> str:
    return f"home:{user_id}"


def author_key(user_id: int) -> str:
    return f"author:{user_id}"


@dataclass(frozen=True)
class FeedPage:
    items: list[PostView]
    next_cursor: str | None
    mode: Mode


@dataclass(frozen=True)
class _Cursor:
    before: int | None = None  # chronological: posts older than this id
    offset: int = 0  # ranked: where in the ranked candidates the page starts
    top: int | None = None  # ranked: the candidates are those up to this id

    def encode(self) -> str:
        raw = f"r{self.offset}:{self.top}" if self.top is not None else f"c{self.before}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str | None) -> _Cursor:
        if not text:
            return cls()
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            if raw.startswith("c"):
                return cls(before=_bounded(int(raw[1:])))
            if raw.startswith("r"):
                offset, top = raw[1:].split(":")
                return cls(offset=_bounded(int(offset)), top=_bounded(int(top)))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            pass
        raise BadRequest(
            "This cursor is not one we gave out.", code="invalid_cursor", field="cursor"
        )


def _bounded(value: int) -> int:
    if not 0 <= value < 2**62:
        raise ValueError("out of range")
    return value


def _clean_media(urls: Sequence[str]) -> list[str]:
    if len(urls) > MEDIA_MAX:
        raise BadRequest(
            f"At most {MEDIA_MAX} media URLs.", code="too_many_media", field="media_urls"
        )
    for url in urls:
        parts = urlsplit(url)
        if len(url) > MEDIA_URL_MAX or parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadRequest(
                "Media URLs are http or https URLs of at most 2048 characters.",
                code="invalid_media_url",
                field="media_urls",
            )
    return list(urls)


def _parse_id(text: str, what: str = "post") -> int:
    if not text.isdigit() or len(text) > 18:
        raise NotFound(f"No such {what}.", code=f"{what}_not_found")
    return int(text)


class FeedService:
    def __init__(
        self,
        *,
        db: Database,
        timelines: Timelines,
        cache: PostCache,
        accounts: AccountsService,
        pusher: Pusher,
        pubsub: PubSub,
        ids: SnowflakeIds,
        clock: Clock,
        settings: Settings,
    ) -> None:
        self.db, self.timelines, self.cache, self.accounts = db, timelines, cache, accounts
        self.pusher, self.ids, self.clock = pusher, ids, clock
        self.celebrity_threshold = settings.feed_celebrity_threshold
        self.timeline_ttl_s = settings.feed_active_days * 86400.0
        self.rank_budget_s = settings.feed_rank_budget_ms / 1000
        self.outbox_kick: asyncio.Event | None = None  # set by the relay of this process
        self._audiences = LocalCache[int, _Audience](
            channel="feed:audience",
            parse=int,
            pubsub=pubsub,
            clock=clock,
            size=AUDIENCE_CACHE_SIZE,
            ttl_s=AUDIENCE_TTL_S,
        )
        self._recent = LocalCache[int, Window](
            channel="feed:celebrity",
            parse=int,
            pubsub=pubsub,
            clock=clock,
            size=RECENT_CACHE_SIZE,
            ttl_s=RECENT_TTL_S,
        )

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)

    def _announce(self) -> None:
        if self.outbox_kick is not None:
            self.outbox_kick.set()

    # --- posts -------------------------------------------------------------------------------------

    async def create_post(
        self, user: User, content: str, media_urls: Sequence[str], reply_to: str | None
    ) -> PostView:
        if not content.strip() or len(content) > CONTENT_MAX:
            raise BadRequest(
                f"Posts are 1-{CONTENT_MAX} characters.", code="invalid_content", field="content"
            )
        media = _clean_media(media_urls)
        parent_id = None
        if reply_to is not None:
            if not reply_to.isdigit() or len(reply_to) > 18:
                raise BadRequest(
                    "No such post to reply to.", code="invalid_reply_to", field="reply_to"
                )
            parent_id = int(reply_to)
        post_id, now = self.ids.next(), self.now()
        async with self.db.write() as conn:
            if parent_id is not None:
                parent = await store.post(conn, parent_id, lock=True)
                if parent is None:
                    raise BadRequest(
                        "No such post to reply to.", code="invalid_reply_to", field="reply_to"
                    )
                await store.bump(conn, parent_id, "reply_count", 1)
            await store.insert_post(
                conn,
                id=post_id,
                author_id=user.id,
                content=content,
                media_urls=orjson.dumps(media).decode(),
                reply_to=parent_id,
                created_at=now,
            )
            await self._enqueue(conn, "post", user.id, [post_id], now)
        if parent_id is not None:
            await self.cache.changed([parent_id])
        self._announce()
        await self._show_to_author(user.id, post_id)
        return (await self.post_views([post_id]))[post_id]

    async def repost(self, user: User, post_id: str) -> tuple[PostView, bool]:
        """The caller's repost of a post (made once: asking again answers it); True if new."""
        target = _parse_id(post_id)
        now = self.now()
        async with self.db.write() as conn:
            original = await store.post(conn, target, lock=True)
            if original is None:
                raise NotFound("No such post.", code="post_not_found")
            if original.repost_of is not None:  # reposting a repost reposts what it shows
                original = await store.post(conn, int(original.repost_of), lock=True)
                if original is None:
                    raise NotFound("No such post.", code="post_not_found")
            existing = await store.repost_by(conn, user.id, int(original.id))
            if existing is not None:
                return (await self.post_views([int(existing.id)]))[int(existing.id)], False
            repost_id = self.ids.next()
            try:
                async with conn.begin_nested():
                    await store.insert_post(
                        conn,
                        id=repost_id,
                        author_id=user.id,
                        content="",
                        repost_of=int(original.id),
                        created_at=now,
                    )
            except IntegrityError:  # a concurrent repost of the same post won
                won = await store.repost_by(conn, user.id, int(original.id))
                assert won is not None
                repost_id, created = int(won.id), False
            else:
                created = True
                await store.bump(conn, int(original.id), "repost_count", 1)
                await self._enqueue(conn, "post", user.id, [repost_id], now)
        if created:
            await self.cache.changed([int(original.id)])
            self._announce()
            await self._show_to_author(user.id, repost_id)
        return (await self.post_views([repost_id]))[repost_id], created

    async def post(self, post_id: str) -> PostView:
        target = _parse_id(post_id)
        views = await self.post_views([target])
        if target not in views:
            raise NotFound("No such post.", code="post_not_found")
        return views[target]

    async def delete_post(self, user: User, post_id: str) -> None:
        target = _parse_id(post_id)
        async with self.db.write() as conn:
            row = await store.post(conn, target, lock=True)
            if row is None:
                raise NotFound("No such post.", code="post_not_found")
            if int(row.author_id) != user.id:
                raise Forbidden("Only its author can delete a post.", code="not_author")
            reposts = await store.reposts_of(conn, target)
            if row.reply_to is not None:
                await store.bump(conn, int(row.reply_to), "reply_count", -1)
            if row.repost_of is not None:
                await store.bump(conn, int(row.repost_of), "repost_count", -1)
            await store.delete_posts(conn, [target, *(int(r.id) for r in reposts)])
            now = self.now()
            await self._enqueue(conn, "delete", user.id, [target], now)
            for r in reposts:  # a post's reposts go with it, from their authors' followers' feeds
                await self._enqueue(conn, "delete", int(r.author_id), [int(r.id)], now)
        counted = [int(i) for i in (row.reply_to, row.repost_of) if i is not None]
        await self.cache.changed([target, *(int(r.id) for r in reposts), *counted])
        self._announce()

    async def like(self, user: User, post_id: str, *, on: bool) -> PostView:
        target = _parse_id(post_id)
        async with self.db.write() as conn:
            row = await store.post(conn, target, lock=True)
            if row is None:
                raise NotFound("No such post.", code="post_not_found")
            if on:
                changed = await store.add_like(
                    conn, target, user.id, int(row.author_id), self.now()
                )
            else:
                changed = await store.remove_like(conn, target, user.id)
            if changed:
                await store.bump(conn, target, "like_count", 1 if on else -1)
        if changed:
            await self.cache.changed([target])
        return (await self.post_views([target]))[target]

    async def _show_to_author(self, author_id: int, post_id: int) -> None:
        """The author's own feed shows the post at once; fan-out, moments later, changes nothing."""
        with contextlib.suppress(PortUnavailable):  # fan-out will, once Redis is back
            await self.timelines.push([home_key(author_id), author_key(author_id)], post_id)

    async def _enqueue(
        self, conn: Any, kind: str, author_id: int, post_ids: list[int], now: dt.datetime
    ) -> None:
        payload = {"kind": kind, "author_id": author_id, "post_ids": post_ids}
        await store.enqueue(conn, orjson.dumps(payload), now)

    async def post_views(self, ids: Sequence[int]) -> dict[int, PostView]:
        """Views with what a repost shows (`reposted`) attached; deleted posts are absent."""
        views = await self.cache.views(ids)
        originals = {int(v["repost_of"]) for v in views.values() if v["repost_of"]}
        if not originals:
            return views  # cached views carry `"reposted": None` already
        shown = await self.cache.views(sorted(originals))
        out: dict[int, PostView] = {}
        for post_id, view in views.items():
            if view["repost_of"]:
                original = shown.get(int(view["repost_of"]))
                if original is None:
                    continue  # what it reposted is gone, and the repost with it
                shows = {k: v for k, v in original.items() if k != "reposted"}  # a PostBase
                view = view | {"reposted": shows}
            out[post_id] = view
        return out

    async def user_posts(
        self, username: str, limit: int, cursor: str | None
    ) -> tuple[list[PostView], str | None]:
        user = await self.accounts.by_username(username)
        before = _Cursor.decode(cursor).before
        async with self.db.read() as conn:
            rows = await store.posts_of(conn, user.id, before, limit + 1)
        views = await self.post_views([int(r.id) for r in rows[:limit]])
        items = [views[int(r.id)] for r in rows[:limit] if int(r.id) in views]
        more = len(rows) > limit
        return items, _Cursor(before=int(rows[limit - 1].id)).encode() if more else None

    # --- the follow graph --------------------------------------------------------------------------

    async def _other(self, user: User, username: str) -> User:
        other = await self.accounts.by_username(username)
        if other.id == user.id:
            raise BadRequest("That is you.", code="self_relationship", field="username")
        return other

    async def follow(self, user: User, username: str, *, on: bool) -> dict[str, bool]:
        other = await self._other(user, username)
        followers = 0
        async with self.db.write() as conn:
            if on:
                standing = await store.relationship(conn, user.id, other.id)
                if standing["blocked_by"] or standing["blocking"]:
                    raise Forbidden(
                        "You cannot follow a user you block or who blocks you.", code="blocked"
                    )
                followers = await store.add_follow(conn, user.id, other.id, self.now())
                changed = followers > 0
            else:
                changed = await store.remove_follow(conn, user.id, other.id)
            standing = await store.relationship(conn, user.id, other.id)
        if followers == self.celebrity_threshold:
            # A celebrity now: their posts are no longer pushed, and every reader who follows them
            # must merge them at read time. Exactly one follow reaches the threshold.
            await self._audiences.invalidate_all()
        else:
            await self._audiences.invalidate([user.id, other.id])
        if changed:
            await self._reshape_timeline(user.id, other.id, added=on)
        return standing

    async def _reshape_timeline(self, reader_id: int, author_id: int, *, added: bool) -> None:
        """A follow brings the author's recent posts in; an unfollow takes them out.

        Reads filter by who the reader follows anyway: this keeps the timeline's window full.
        """
        try:
            async with self.db.read() as conn:
                followers, _ = await store.counts(conn, author_id)
                if added and followers >= self.celebrity_threshold:
                    return  # a celebrity's posts are merged at read time
                ids = await store.recent_post_ids(
                    conn, [author_id], None, BACKFILL if added else self.timelines.max_len
                )
            if added:
                await self.timelines.extend(home_key(reader_id), ids)
                if len(ids) == BACKFILL:  # there may be older ones the timeline does not hold
                    await self._mark_incomplete(reader_id)
            else:
                await self.timelines.remove([home_key(reader_id)], ids)
        except PortUnavailable:
            # The timeline cannot be trusted to have the change: rebuild it from SQL on next read.
            log.warning("timeline unreachable after a follow change", user=reader_id)

    async def _mark_incomplete(self, reader_id: int) -> None:
        window = await self.timelines.window(home_key(reader_id), None, self.timelines.max_len)
        if window is not None and window.complete:
            await self.timelines.build(
                home_key(reader_id), window.ids, complete=False, ttl_s=self.timeline_ttl_s
            )

    async def mute(self, user: User, username: str, *, on: bool) -> dict[str, bool]:
        other = await self._other(user, username)
        async with self.db.write() as conn:
            await store.set_flag(conn, mutes, user.id, other.id, self.now(), on)
            standing = await store.relationship(conn, user.id, other.id)
        await self._audiences.invalidate([user.id])
        return standing

    async def block(self, user: User, username: str, *, on: bool) -> dict[str, bool]:
        """Blocking also ends follows both ways; unblocking does not bring them back."""
        other = await self._other(user, username)
        async with self.db.write() as conn:
            await store.set_flag(conn, blocks, user.id, other.id, self.now(), on)
            if on:
                await store.remove_follow(conn, user.id, other.id)
                await store.remove_follow(conn, other.id, user.id)
            standing = await store.relationship(conn, user.id, other.id)
        await self._audiences.invalidate([user.id, other.id])
        if on:
            await self._reshape_timeline(user.id, other.id, added=False)
            await self._reshape_timeline(other.id, user.id, added=False)
        return standing

    async def relationship(self, user: User, username: str) -> dict[str, bool]:
        other = await self._other(user, username)
        async with self.db.read() as conn:
            return await store.relationship(conn, user.id, other.id)

    async def counts(self, user_id: int) -> tuple[int, int]:
        async with self.db.read() as conn:
            return await store.counts(conn, user_id)

    async def follow_list(
        self, username: str, *, followers: bool, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, str]], str | None]:
        user = await self.accounts.by_username(username)
        before = _follow_cursor(cursor)
        async with self.db.read() as conn:
            rows = await store.follow_page(
                conn, user.id, followers=followers, before=before, count=limit + 1
            )
        users = await self.accounts.by_ids([i for i, _ in rows[:limit]])
        items = [users[i].summary() for i, _ in rows[:limit] if i in users]
        if len(rows) <= limit:
            return items, None
        last_id, last_at = rows[limit - 1]
        raw = f"{last_at.isoformat()}|{last_id}".encode()
        return items, base64.urlsafe_b64encode(raw).decode().rstrip("=")

    # --- the home feed -----------------------------------------------------------------------------

    async def feed(self, reader: User, limit: int, cursor: str | None, mode: Mode) -> FeedPage:
        position = _Cursor.decode(cursor)
        audience = await self._audience(reader.id)
        if mode == "ranked" and position.before is None:
            ranked = await self._ranked(reader, audience, position, limit)
            if ranked is not None:
                return ranked
            position = _Cursor(before=position.top + 1 if position.top is not None else None)
        items, more = await self._gather(audience, position.before, limit)
        after = _Cursor(before=int(items[-1]["id"])).encode() if more and items else None
        return FeedPage(items, after, "chronological")

    async def _audience(self, reader_id: int) -> _Audience:
        """Whom the reader follows and hides: asked of SQL at most once per AUDIENCE_TTL_S per
        process, and again at once after a relationship of theirs changed in any process."""
        cached = self._audiences.get(reader_id)
        if cached is not None:
            return cached
        generation = self._audiences.generation
        async with self.db.read() as conn:
            followees, hidden, celebrities = await store.audience(
                conn, reader_id, self.celebrity_threshold
            )
        audience = _Audience(reader_id, followees | {reader_id}, hidden, celebrities)
        self._audiences.put(reader_id, audience, generation)
        return audience

    async def listen(self) -> None:
        """Forget cached audiences and posts that other processes changed; runs until cancelled."""
        await asyncio.gather(self._audiences.listen(), self.cache.listen(), self._recent.listen())

    async def celebrity_changed(self, author: int) -> None:
        """A celebrity's timeline took or lost posts: every process reads it afresh."""
        await self._recent.invalidate([author])

    async def _ranked(
        self, reader: User, audience: _Audience, position: _Cursor, limit: int
    ) -> FeedPage | None:
        """A page of the newest candidates in ranked order; None: serve chronologically instead."""
        top = position.top
        candidates, more = await self._gather(
            audience, None if top is None else top + 1, RANK_CANDIDATES
        )
        if not candidates:
            return FeedPage([], None, "ranked")
        top = int(candidates[0]["id"]) if top is None else top
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.rank_budget_s):
                async with self.db.read() as conn:
                    affinity = await store.affinity(
                        conn,
                        reader.id,
                        {author_of(v) for v in candidates},
                        self.now() - AFFINITY_WINDOW,
                    )
            ordered = rank(candidates, affinity, self.now())
            if time.perf_counter() - started > self.rank_budget_s:
                raise TimeoutError
        except Exception as exc:  # a slow or failing ranker never costs the reader their feed
            log.warning("ranking abandoned; serving chronologically", error=repr(exc))
            return None
        start = position.offset
        page = ordered[start : start + limit]
        if start + limit < len(ordered):
            after: str | None = _Cursor(offset=start + limit, top=top).encode()
        elif more:
            after = _Cursor(before=int(candidates[-1]["id"])).encode()
        else:
            after = None
        return FeedPage(page, after, "ranked")

    async def _gather(
        self, audience: _Audience, before: int | None, limit: int
    ) -> tuple[list[PostView], bool]:
        """Up to `limit` visible posts below `before`, newest first; and whether more may follow."""
        out: list[PostView] = []
        for _ in range(GATHER_ROUNDS):
            want = limit - len(out)
            ids, exhausted = await self._candidates(audience, before, want + want // 2 + 5)
            views = await self.post_views(ids)
            for post_id in ids:
                view = views.get(post_id)
                if view is not None and audience.sees(view):
                    out.append(view)
                    if len(out) == limit:
                        return out, not (exhausted and post_id == ids[-1])
            if exhausted or not ids:
                return out, False
            before = ids[-1]
        return out, True

    async def _candidates(
        self, audience: _Audience, before: int | None, count: int
    ) -> tuple[list[int], bool]:
        """Post ids below `before`, newest first, from the caches and then SQL; and if none remain."""
        try:
            windows = await self._windows(audience, before, count)
        except PortUnavailable:
            log.warning("timelines unreachable; reading the feed from SQL", user=audience.reader)
            ids = await self._from_sql(audience.authors, before, count)
            return ids, len(ids) < count
        # Each window is exact down to its `floor`; below the highest floor only SQL knows.
        floor = 0
        for window in windows:
            if len(window.ids) >= count or not window.complete:
                bottom = window.ids[-1] if window.ids else before
                floor = max(floor, bottom if bottom is not None else 2**63)
        merged: list[int] = []  # the newest `count` ids at or above the floor, each once
        for post_id in heapq.merge(*(w.ids for w in windows), reverse=True):  # each newest first
            if post_id < floor or len(merged) == count:
                break
            if not merged or merged[-1] != post_id:
                merged.append(post_id)
        if len(merged) >= count:
            return merged, False
        if floor == 0:
            return merged, True
        rest = await self._from_sql(
            audience.authors, None if floor >= 2**63 else floor, count - len(merged)
        )
        return merged + rest, len(rest) < count - len(merged)

    async def _windows(self, audience: _Audience, before: int | None, count: int) -> list[Window]:
        """The reader's home timeline and each followed celebrity's, read in one round trip."""
        reader, celebrities = audience.reader, audience.celebrities
        windows, remote = [], []
        copies = self._recent.get_many(celebrities)
        for celebrity in celebrities:
            copy = copies.get(celebrity)
            window = None if copy is None else _recent_window(copy, before, count)
            if window is not None:
                windows.append(window)
            else:
                remote.append(celebrity)
        if remote:
            await self._remember_recent(remote)
        keys = [home_key(reader), *(author_key(c) for c in remote)]
        found = await self.timelines.windows(keys, before, count, ttl_s=self.timeline_ttl_s)
        for at, (key, window) in enumerate(zip(keys, found, strict=True)):
            if window is None:  # never built, expired while unread, or Redis lost it
                # Whose posts it holds, worked out only here: a reader may follow thousands.
                authors = audience.authors - celebrities if at == 0 else {remote[at - 1]}
                await self._build(key, authors)
                window = await self.timelines.window(key, before, count)
            if window is not None:
                windows.append(window)
        return windows

    async def _remember_recent(self, celebrities: list[int]) -> None:
        """Copy these celebrities' newest ids from their timelines (those that exist)."""
        generation = self._recent.generation
        keys = [author_key(c) for c in celebrities]
        found = await self.timelines.windows(keys, None, RECENT_IDS, ttl_s=self.timeline_ttl_s)
        for celebrity, window in zip(celebrities, found, strict=True):
            if window is not None:
                self._recent.put(celebrity, window, generation)

    async def _build(self, key: str, authors: set[int]) -> None:
        size = self.timelines.max_len
        ids = await self._from_sql(authors, None, size)
        await self.timelines.build(key, ids, complete=len(ids) < size, ttl_s=self.timeline_ttl_s)
        # A fan-out that pushed between our read and our build was overwritten: read the newest
        # again. Anything committed after this read is pushed after it, into the built timeline.
        await self.timelines.extend(key, await self._from_sql(authors, None, REBUILD_RECHECK))

    async def _from_sql(self, authors: set[int], before: int | None, count: int) -> list[int]:
        async with self.db.read() as conn:
            return await store.recent_post_ids(conn, authors, before, count)


@dataclass(frozen=True)
class _Audience:
    reader: int
    authors: set[int]  # whom the reader follows, and the reader
    hidden: set[int]  # muted or blocked, either way
    celebrities: set[int]  # followed authors whose posts are merged at read time

    def sees(self, view: PostView) -> bool:
        author = author_of(view)
        if author not in self.authors or author in self.hidden:
            return False
        shown = view.get("reposted")
        return shown is None or author_of(shown) not in self.hidden


def _recent_window(recent: Window, before: int | None, count: int) -> Window | None:
    """The window of a celebrity's timeline from this process's copy of its newest ids, when the
    copy can tell."""
    ids = recent.ids
    if before is not None:
        ids = ids[bisect.bisect_right(ids, -before, key=operator.neg) :]
    if len(ids) < count and len(recent.ids) == RECENT_IDS:  # and the timeline holds more
        return None
    # Exact down to its last id, however many of them the read takes.
    return recent if before is None else Window(ids, recent.complete)


def _follow_cursor(text: str | None) -> tuple[dt.datetime, int] | None:
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        at, user_id = raw.split("|")
        return dt.datetime.fromisoformat(at), _bounded(int(user_id))
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError) as exc:
        raise BadRequest(
            "This cursor is not one we gave out.", code="invalid_cursor", field="cursor"
        ) from exc
