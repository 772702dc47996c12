"""The chat benchmark's users and conversations: the layout every target shares, and its rows in SQL.

Creating 10,000 users through the API would hash 10,000 passwords with argon2 (minutes); the rows are
written straight into a migrated database instead, through Plaza's own table definitions, in seconds.
Every row is one the API could have written: a direct conversation per pair (with its `direct_key`), a
group per larger set, members with nothing read yet, a bearer token per user stored as SHA-256.

Layout: users 1..N are split evenly between the group sizes, in order; each share is cut into
conversations of that size (a short remainder joins the share's last conversation). Every user is in
exactly one conversation, so a send from user u reaches the size - 1 others of u's conversation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from plaza.accounts.tables import auth_tokens, users
from plaza.chat.tables import conversation_members, conversations

PASSWORD_HASH = "!"  # matches no password: seeded users connect only with their seeded tokens
ROWS_PER_INSERT = 5_000


@dataclass(frozen=True)
class Member:
    """One connection of the benchmark: a user, its token, its conversation and that one's size."""

    user_id: int
    token: str
    conversation_id: int
    size: int


def groups(users_n: int, sizes: list[int]) -> list[list[int]]:
    """User ids (1..users_n) grouped into conversations, sizes taken in turn over equal shares."""
    share, out = users_n // len(sizes), []
    start = 1
    for k, size in enumerate(sizes):
        stop = users_n + 1 if k == len(sizes) - 1 else start + share
        ids = list(range(start, stop))
        chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
        if len(chunks) > 1 and len(chunks[-1]) < size:
            chunks[-2].extend(chunks.pop())
        out.extend(c for c in chunks if len(c) >= 2)
        start = stop
    return out


def layout(users_n: int, sizes: list[int], *, tokens: bool) -> list[Member]:
    """Every user's connection; conversation ids are 1.. in the order of `groups`.

    With `tokens`, each gets a fresh random bearer token; without (the baseline), the user id is its token.
    """
    members = []
    for cid, ids in enumerate(groups(users_n, sizes), start=1):
        for uid in ids:
            token = secrets.token_urlsafe(32) if tokens else str(uid)
            members.append(Member(uid, token, cid, len(ids)))
    return members


def _chunks(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [rows[i : i + ROWS_PER_INSERT] for i in range(0, len(rows), ROWS_PER_INSERT)]


async def seed(database_url: str, members: list[Member]) -> dict[str, int]:
    """Write users, tokens, conversations and members into an empty, migrated database."""
    now = dt.datetime.now(dt.UTC)
    by_conv: dict[int, list[int]] = {}
    for m in members:
        by_conv.setdefault(m.conversation_id, []).append(m.user_id)
    user_rows = [
        {
            "id": m.user_id,
            "username": f"u{m.user_id}",
            "display_name": f"User {m.user_id}",
            "password_hash": PASSWORD_HASH,
            "created_at": now,
        }
        for m in members
    ]
    token_rows = [
        {
            "token_hash": hashlib.sha256(m.token.encode()).hexdigest(),
            "user_id": m.user_id,
            "created_at": now,
            "expires_at": now + dt.timedelta(days=1),
        }
        for m in members
    ]
    conv_rows = []
    for cid, ids in by_conv.items():
        direct = len(ids) == 2
        conv_rows.append(
            {
                "id": cid,
                "kind": "direct" if direct else "group",
                "name": None if direct else f"Group {cid}",
                "direct_key": f"{min(ids)}:{max(ids)}" if direct else None,
                "created_by": ids[0],
                "last_seq": 0,
                "created_at": now,
                "last_activity_at": now,
            }
        )
    member_rows = [
        {
            "conversation_id": cid,
            "user_id": uid,
            "joined_at": now,
            "left_at": None,
            "read_seq": 0,
            "delivered_seq": 0,
        }
        for cid, ids in by_conv.items()
        for uid in ids
    ]
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            for table, rows in (
                (users, user_rows),
                (auth_tokens, token_rows),
                (conversations, conv_rows),
                (conversation_members, member_rows),
            ):
                for chunk in _chunks(rows):
                    await conn.execute(table.insert(), chunk)
            if engine.dialect.name == "postgresql":
                for table in ("users", "conversations"):
                    await conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))"
                        )
                    )
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
            await conn.commit()
    finally:
        await engine.dispose()
    return {
        "users": len(user_rows),
        "tokens": len(token_rows),
        "conversations": len(conv_rows),
        "members": len(member_rows),
    }
