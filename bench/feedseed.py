"""The feed benchmark's world, written straight into PostgreSQL with COPY: users, follows, posts, tokens.

Seeding through the API would take longer than the measurements; what is measured (fan-out, reads)
runs through Plaza's own code on these rows. Every row is one the API could have written: follow
counts match the follows, post ids are Snowflake ids of the past day, tokens are stored as SHA-256.

User ids, in order:
- 1..followers: the followers of the fan-out authors (fanout author k is followed by the first
  `fanout_sizes[k]` of them), and of the celebrities (CELEBRITY_FANS each, overlapping windows);
- the fan-out authors, one per follower count;
- FRIENDS authors with FRIEND_POSTS posts each: the "full timeline" readers follow them all, and
  FRIENDS * FRIEND_POSTS > 800 fills those readers' timelines;
- CELEBRITIES authors with CELEBRITY_POSTS posts each, above the celebrity threshold;
- the readers: `readers` who follow the friends, then `readers` who follow the celebrities.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field

import asyncpg

from plaza.platform.ids import SnowflakeIds

FRIENDS, FRIEND_POSTS = 50, 40  # 2,000 posts: a full (800-id) timeline and SQL below it
CELEBRITIES, CELEBRITY_POSTS = 20, 50
CELEBRITY_FANS = 10_000  # the default celebrity threshold (PLAZA_FEED_CELEBRITY_THRESHOLD)
SEED_NODE = 15  # Snowflake node bits of seeded posts; a running Plaza leases 0 first
PASSWORD_HASH = "!"  # matches no password: seeded users log in only with their seeded tokens


@dataclass
class World:
    followers: int
    fanout_sizes: list[int]
    readers: int
    fanout_authors: list[int] = field(default_factory=list)
    friends: list[int] = field(default_factory=list)
    celebrities: list[int] = field(default_factory=list)
    full_readers: list[int] = field(default_factory=list)
    celebrity_readers: list[int] = field(default_factory=list)
    tokens: dict[int, str] = field(default_factory=dict)  # reader id -> bearer token

    def __post_init__(self) -> None:
        next_id = self.followers + 1

        def take(n: int) -> list[int]:
            nonlocal next_id
            ids = list(range(next_id, next_id + n))
            next_id += n
            return ids

        self.fanout_authors = take(len(self.fanout_sizes))
        self.friends = take(FRIENDS)
        self.celebrities = take(CELEBRITIES)
        self.full_readers = take(self.readers)
        self.celebrity_readers = take(self.readers)
        self.last_id = next_id - 1

    def follows(self) -> list[tuple[int, int]]:
        """(follower, followee) pairs."""
        pairs = [
            (f, author)
            for author, size in zip(self.fanout_authors, self.fanout_sizes, strict=True)
            for f in range(1, size + 1)
        ]
        stride = max(1, (self.followers - CELEBRITY_FANS) // max(1, CELEBRITIES - 1))
        for k, celebrity in enumerate(self.celebrities):
            start = min(k * stride, max(0, self.followers - CELEBRITY_FANS))
            last = min(self.followers, start + CELEBRITY_FANS)
            pairs += [(f, celebrity) for f in range(start + 1, last + 1)]
        pairs += [(r, friend) for r in self.full_readers for friend in self.friends]
        pairs += [(r, c) for r in self.celebrity_readers for c in self.celebrities]
        return pairs


def _snowflakes(count: int, start: float) -> list[int]:
    """`count` time-ordered ids, one per millisecond from `start` (a Unix time)."""
    clock = iter(start + i / 1000 for i in range(count))
    ids = SnowflakeIds(SEED_NODE, lambda: next(clock))
    return [ids.next() for _ in range(count)]


async def seed(dsn: str, world: World) -> dict[str, int]:
    """Write the world into an empty, migrated database; returns row counts by table."""
    now = dt.datetime.now(dt.UTC)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            users = [
                (i, f"u{i}", f"User {i}", PASSWORD_HASH, now) for i in range(1, world.last_id + 1)
            ]
            await conn.copy_records_to_table(
                "users",
                records=users,
                columns=["id", "username", "display_name", "password_hash", "created_at"],
            )
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('users', 'id'), $1)", world.last_id
            )
            pairs = world.follows()
            await conn.copy_records_to_table(
                "follows",
                records=[(a, b, now) for a, b in pairs],
                columns=["follower_id", "followee_id", "created_at"],
            )
            await conn.execute(
                "INSERT INTO follow_counts (user_id, followers, following) "
                "SELECT u.id, "
                "(SELECT count(*) FROM follows WHERE followee_id = u.id), "
                "(SELECT count(*) FROM follows WHERE follower_id = u.id) FROM users u"
            )
            posts = _posts(world, now)
            await conn.copy_records_to_table(
                "posts", records=posts, columns=["id", "author_id", "content", "created_at"]
            )
            world.tokens = {r: secrets.token_urlsafe(32) for r in _readers(world)}
            tokens = [
                (hashlib.sha256(t.encode()).hexdigest(), r, now, now + dt.timedelta(days=1))
                for r, t in world.tokens.items()
            ]
            await conn.copy_records_to_table(
                "auth_tokens",
                records=tokens,
                columns=["token_hash", "user_id", "created_at", "expires_at"],
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return {"users": len(users), "follows": len(pairs), "posts": len(posts), "tokens": len(tokens)}


def _readers(world: World) -> list[int]:
    return world.full_readers + world.celebrity_readers


def _posts(world: World, now: dt.datetime) -> list[tuple[int, int, str, dt.datetime]]:
    authors = [(a, FRIEND_POSTS) for a in world.friends]
    authors += [(c, CELEBRITY_POSTS) for c in world.celebrities]
    total = sum(n for _, n in authors)
    ids = _snowflakes(total, now.timestamp() - 86400)  # over the past day, oldest first
    posts, at = [], 0
    for round_ in range(max(n for _, n in authors)):  # interleaved, as authors post in turn
        for author, n in authors:
            if round_ < n:
                post_id = ids[at]
                at += 1
                created = dt.datetime.fromtimestamp(SnowflakeIds.timestamp_of(post_id), dt.UTC)
                posts.append((post_id, author, f"Post {round_} by user {author}", created))
    return posts
