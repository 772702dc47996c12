"""Accounts' SQL. Every function runs inside the caller's connection or transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from plaza.accounts.tables import auth_tokens, users
from plaza.platform.db import AnyRow


class UsernameTaken(Exception):
    pass


async def insert_user(
    conn: AsyncConnection, *, username: str, display_name: str, password_hash: str, now: dt.datetime
) -> int:
    try:
        async with conn.begin_nested():
            result = await conn.execute(
                insert(users)
                .values(
                    username=username,
                    display_name=display_name,
                    password_hash=password_hash,
                    created_at=now,
                )
                .returning(users.c.id)
            )
    except IntegrityError as exc:
        raise UsernameTaken(username) from exc
    return int(result.scalar_one())


async def user_by_username(conn: AsyncConnection, username: str) -> AnyRow | None:
    query = select(users).where(users.c.username == username.lower())
    return (await conn.execute(query)).one_or_none()


async def users_by_usernames(conn: AsyncConnection, usernames: list[str]) -> list[AnyRow]:
    if not usernames:
        return []
    query = select(users).where(users.c.username.in_([name.lower() for name in usernames]))
    return list((await conn.execute(query)).all())


async def users_by_ids(conn: AsyncConnection, ids: list[int]) -> list[AnyRow]:
    if not ids:
        return []
    return list((await conn.execute(select(users).where(users.c.id.in_(ids)))).all())


async def insert_token(
    conn: AsyncConnection,
    *,
    token_hash: str,
    user_id: int,
    now: dt.datetime,
    expires_at: dt.datetime,
) -> None:
    await conn.execute(
        insert(auth_tokens).values(
            token_hash=token_hash, user_id=user_id, created_at=now, expires_at=expires_at
        )
    )


async def users_for_tokens(
    conn: AsyncConnection, token_hashes: Collection[str], now: dt.datetime
) -> dict[str, tuple[AnyRow, dt.datetime]]:
    """The user and expiry of each live (unrevoked, unexpired) token among these, by hash."""
    query = (
        select(users, auth_tokens.c.token_hash, auth_tokens.c.expires_at)
        .join(auth_tokens, auth_tokens.c.user_id == users.c.id)
        .where(
            auth_tokens.c.token_hash.in_(sorted(token_hashes)),
            auth_tokens.c.revoked_at.is_(None),
            auth_tokens.c.expires_at > now,
        )
    )
    return {row.token_hash: (row, row.expires_at) for row in await conn.execute(query)}


async def revoke_token(conn: AsyncConnection, token_hash: str, now: dt.datetime) -> bool:
    result = await conn.execute(
        update(auth_tokens)
        .where(auth_tokens.c.token_hash == token_hash, auth_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount)
