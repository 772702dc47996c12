"""The news feed's SQL. Every function runs inside the caller's connection or transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from plaza.feed.tables import blocks, feed_outbox, follow_counts, follows, likes, mutes, posts
from plaza.platform.db import AnyRow


def _insert(conn: AsyncConnection, table: Any) -> Any:
    """INSERT with the dialect's ON CONFLICT clauses (both dialects spell them the same way)."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


# --- posts -----------------------------------------------------------------------------------------


async def insert_post(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(posts).values(**values))


async def post(conn: AsyncConnection, post_id: int, *, lock: bool = False) -> AnyRow | None:
    query = select(posts).where(posts.c.id == post_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return (await conn.execute(query)).one_or_none()


async def posts_by_ids(conn: AsyncConnection, ids: Collection[int]) -> list[AnyRow]:
    if not ids:
        return []
    return list((await conn.execute(select(posts).where(posts.c.id.in_(list(ids))))).all())


# Built once: every feed read runs it, and building a statement costs more than running a cached one.
_COUNTERS = select(posts.c.id, posts.c.like_count, posts.c.repost_count, posts.c.reply_count).where(
    posts.c.id.in_(bindparam("ids", expanding=True))
)


async def counters(conn: AsyncConnection, ids: Collection[int]) -> list[AnyRow]:
    """Id and counters of those of these posts that exist."""
    if not ids:
        return []
    return list((await conn.execute(_COUNTERS, {"ids": list(ids)})).all())


async def repost_by(conn: AsyncConnection, author_id: int, original_id: int) -> AnyRow | None:
    query = select(posts).where(posts.c.author_id == author_id, posts.c.repost_of == original_id)
    return (await conn.execute(query)).one_or_none()


async def reposts_of(conn: AsyncConnection, post_id: int) -> list[AnyRow]:
    query = select(posts.c.id, posts.c.author_id).where(posts.c.repost_of == post_id)
    return list((await conn.execute(query)).all())


async def delete_posts(conn: AsyncConnection, ids: Collection[int]) -> None:
    if ids:
        await conn.execute(delete(posts).where(posts.c.id.in_(list(ids))))


async def bump(conn: AsyncConnection, post_id: int, column: str, delta: int) -> None:
    """Add `delta` to one of a post's counters, in SQL: concurrent bumps never lose one."""
    counter = posts.c[column]
    await conn.execute(
        update(posts).where(posts.c.id == post_id).values({column: func.max(counter + delta, 0)})
        if conn.dialect.name == "sqlite"
        else update(posts)
        .where(posts.c.id == post_id)
        .values({column: func.greatest(counter + delta, 0)})
    )


_RECENT = (
    select(posts.c.id)
    .where(posts.c.author_id.in_(bindparam("authors", expanding=True)))
    .where(posts.c.id < bindparam("before"))
    .order_by(posts.c.id.desc())
    .limit(bindparam("count"))
)


async def recent_post_ids(
    conn: AsyncConnection, authors: Collection[int], before: int | None, count: int
) -> list[int]:
    """The newest post ids by these authors below `before`, newest first: the feed's source of truth."""
    if not authors or count <= 0:
        return []
    params = {"authors": list(authors), "before": 2**63 - 1 if before is None else before}
    rows = await conn.execute(_RECENT, params | {"count": count})
    return [int(i) for i in rows.scalars()]


async def posts_of(
    conn: AsyncConnection, author_id: int, before: int | None, count: int
) -> list[AnyRow]:
    query = select(posts).where(posts.c.author_id == author_id)
    if before is not None:
        query = query.where(posts.c.id < before)
    return list((await conn.execute(query.order_by(posts.c.id.desc()).limit(count))).all())


# --- likes -----------------------------------------------------------------------------------------


async def add_like(
    conn: AsyncConnection, post_id: int, user_id: int, author_id: int, now: dt.datetime
) -> bool:
    stmt = (
        _insert(conn, likes)
        .values(post_id=post_id, user_id=user_id, author_id=author_id, created_at=now)
        .on_conflict_do_nothing()
    )
    return bool((await conn.execute(stmt)).rowcount)


async def remove_like(conn: AsyncConnection, post_id: int, user_id: int) -> bool:
    stmt = delete(likes).where(likes.c.post_id == post_id, likes.c.user_id == user_id)
    return bool((await conn.execute(stmt)).rowcount)


async def affinity(
    conn: AsyncConnection, reader_id: int, authors: Collection[int], since: dt.datetime
) -> dict[int, int]:
    """How often the reader liked or replied to each of these authors since `since`."""
    if not authors:
        return {}
    wanted = list(authors)
    liked_q = select(likes.c.author_id.label("author"), func.count().label("n")).where(
        likes.c.user_id == reader_id, likes.c.author_id.in_(wanted), likes.c.created_at >= since
    )
    parent = posts.alias("parent")
    replied_q = (
        select(parent.c.author_id.label("author"), func.count().label("n"))
        .select_from(posts.join(parent, posts.c.reply_to == parent.c.id))
        .where(
            posts.c.author_id == reader_id,
            parent.c.author_id.in_(wanted),
            posts.c.created_at >= since,
        )
    )
    totals: dict[int, int] = {}
    for query in (liked_q.group_by(likes.c.author_id), replied_q.group_by(parent.c.author_id)):
        for author, n in (await conn.execute(query)).all():
            totals[int(author)] = totals.get(int(author), 0) + int(n)
    return totals


# --- the follow graph, mutes and blocks --------------------------------------------------------------


async def add_follow(
    conn: AsyncConnection, follower_id: int, followee_id: int, now: dt.datetime
) -> int:
    """The followee's follower count, this follow included; 0 if it was there already."""
    stmt = (
        _insert(conn, follows)
        .values(follower_id=follower_id, followee_id=followee_id, created_at=now)
        .on_conflict_do_nothing()
    )
    if not (await conn.execute(stmt)).rowcount:
        return 0
    followers = await _count(conn, followee_id, "followers", 1)
    await _count(conn, follower_id, "following", 1)
    return followers


async def remove_follow(conn: AsyncConnection, follower_id: int, followee_id: int) -> bool:
    stmt = delete(follows).where(
        follows.c.follower_id == follower_id, follows.c.followee_id == followee_id
    )
    if not (await conn.execute(stmt)).rowcount:
        return False
    await _count(conn, followee_id, "followers", -1)
    await _count(conn, follower_id, "following", -1)
    return True


async def _count(conn: AsyncConnection, user_id: int, column: str, delta: int) -> int:
    """Moves the user's count by `delta`; returns the new count (each transaction its own: the
    row is locked until commit)."""
    stmt = _insert(conn, follow_counts).values(
        {"user_id": user_id, "followers": 0, "following": 0, column: max(delta, 0)}
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=[follow_counts.c.user_id],
        set_={column: follow_counts.c[column] + delta},
    ).returning(follow_counts.c[column])
    return int((await conn.execute(upsert)).scalar_one())


async def counts(conn: AsyncConnection, user_id: int) -> tuple[int, int]:
    """(followers, following)."""
    query = select(follow_counts.c.followers, follow_counts.c.following).where(
        follow_counts.c.user_id == user_id
    )
    row = (await conn.execute(query)).one_or_none()
    return (int(row.followers), int(row.following)) if row else (0, 0)


async def audience(
    conn: AsyncConnection, reader_id: int, threshold: int
) -> tuple[set[int], set[int], set[int]]:
    """Whom the reader follows, whom they never see (muted or blocked, either way), and which of the
    followed are celebrities: one round trip, on every feed read."""
    f, m, b, c = follows.c, mutes.c, blocks.c, follow_counts.c
    query = union_all(
        select(literal("f"), f.followee_id).where(f.follower_id == reader_id),
        select(literal("h"), m.target_id).where(m.user_id == reader_id),
        select(literal("h"), b.target_id).where(b.user_id == reader_id),
        select(literal("h"), b.user_id).where(b.target_id == reader_id),
        select(literal("c"), f.followee_id)
        .join(follow_counts, c.user_id == f.followee_id)
        .where(f.follower_id == reader_id, c.followers >= threshold),
    )
    found: dict[str, set[int]] = {"f": set(), "h": set(), "c": set()}
    for kind, user_id in (await conn.execute(query)).all():
        found[kind].add(int(user_id))
    return found["f"], found["h"], found["c"]


async def follower_ids_after(
    conn: AsyncConnection, followee_id: int, after: int, count: int
) -> list[int]:
    """A page of the user's followers, in id order after `after`: how fan-out walks them."""
    query = (
        select(follows.c.follower_id)
        .where(follows.c.followee_id == followee_id, follows.c.follower_id > after)
        .order_by(follows.c.follower_id)
        .limit(count)
    )
    return [int(i) for i in (await conn.execute(query)).scalars()]


async def follow_page(
    conn: AsyncConnection,
    user_id: int,
    *,
    followers: bool,
    before: tuple[dt.datetime, int] | None,
    count: int,
) -> list[tuple[int, dt.datetime]]:
    """Followers (or followees) of a user, most recent follow first: (user id, followed at)."""
    mine, theirs = (
        (follows.c.followee_id, follows.c.follower_id)
        if followers
        else (follows.c.follower_id, follows.c.followee_id)
    )
    query = select(theirs, follows.c.created_at).where(mine == user_id)
    if before is not None:
        at, other = before
        query = query.where(
            or_(follows.c.created_at < at, and_(follows.c.created_at == at, theirs < other))
        )
    query = query.order_by(follows.c.created_at.desc(), theirs.desc()).limit(count)
    return [(int(i), at) for i, at in (await conn.execute(query)).all()]


async def relationship(conn: AsyncConnection, user_id: int, other_id: int) -> dict[str, bool]:
    """How `user_id` stands towards `other_id`, in one round trip."""

    def exists(table: Any, a: Any, b: Any, x: int, y: int) -> Any:
        return select(literal(1)).where(a == x, b == y).select_from(table).exists()

    f, m, b = follows.c, mutes.c, blocks.c
    query = select(
        exists(follows, f.follower_id, f.followee_id, user_id, other_id).label("following"),
        exists(follows, f.follower_id, f.followee_id, other_id, user_id).label("followed_by"),
        exists(mutes, m.user_id, m.target_id, user_id, other_id).label("muting"),
        exists(blocks, b.user_id, b.target_id, user_id, other_id).label("blocking"),
        exists(blocks, b.user_id, b.target_id, other_id, user_id).label("blocked_by"),
    )
    row = (await conn.execute(query)).one()
    return {k: bool(v) for k, v in row._mapping.items()}


async def set_flag(
    conn: AsyncConnection, table: Any, user_id: int, target_id: int, now: dt.datetime, on: bool
) -> bool:
    """Mute/block (on) or undo it; True if that changed anything."""
    if on:
        stmt = (
            _insert(conn, table)
            .values(user_id=user_id, target_id=target_id, created_at=now)
            .on_conflict_do_nothing()
        )
    else:
        stmt = delete(table).where(table.c.user_id == user_id, table.c.target_id == target_id)
    return bool((await conn.execute(stmt)).rowcount)


async def hiders(conn: AsyncConnection, author_id: int) -> set[int]:
    """Everyone who hides the author (mutes or blocks them, or is blocked by them): fan-out sends
    them no frame. One query per post, however many pages of followers follow."""
    query = union(
        select(mutes.c.user_id).where(mutes.c.target_id == author_id),
        select(blocks.c.user_id).where(blocks.c.target_id == author_id),
        select(blocks.c.target_id).where(blocks.c.user_id == author_id),
    )
    return {int(i) for i in (await conn.execute(query)).scalars()}


# --- the outbox ------------------------------------------------------------------------------------


async def enqueue(conn: AsyncConnection, payload: bytes, now: dt.datetime) -> None:
    await conn.execute(insert(feed_outbox).values(payload=payload, created_at=now))


async def outbox_pending(conn: AsyncConnection) -> bool:
    query = select(feed_outbox.c.id).limit(1)
    return (await conn.execute(query)).first() is not None


async def outbox_take(conn: AsyncConnection, count: int) -> list[AnyRow]:
    """The oldest events; on PostgreSQL locked, skipping those another relay holds."""
    query = select(feed_outbox.c.id, feed_outbox.c.payload).order_by(feed_outbox.c.id).limit(count)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list((await conn.execute(query)).all())


async def outbox_done(conn: AsyncConnection, ids: Sequence[int]) -> None:
    await conn.execute(delete(feed_outbox).where(feed_outbox.c.id.in_(list(ids))))
