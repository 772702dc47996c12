"""Short links' SQL. Every function runs inside the caller's connection or transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from plaza.links.tables import link_countries, link_daily, link_devices, link_referrers, links
from plaza.platform.counters import advance
from plaza.platform.db import AnyRow

CODE_COUNTER = "link_codes"
LinkRow = AnyRow


async def lease_block(conn: AsyncConnection, size: int) -> int:
    """Reserve `size` consecutive counter values; returns the first. One row update per block."""
    return await advance(conn, CODE_COUNTER, size) - size


# Built once per dialect: constructing an INSERT per call was a tenth of a create's CPU. A taken code
# skips its row instead of failing the statement, so the other links of the batch still go in.
_INSERT_LINKS = {
    name: dialect.insert(links)
    .on_conflict_do_nothing(index_elements=[links.c.code])
    .returning(links.c.code, links.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


async def insert_links(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> list[int | None]:
    """Insert links in one statement; each row's new id, or None where its code was taken already
    (by a stored link, or by an earlier row of `rows`)."""
    first: dict[str, int] = {}
    for i, row in enumerate(rows):
        first.setdefault(row["code"], i)
    fresh = [rows[i] for i in first.values()]
    result = await conn.execute(_INSERT_LINKS[conn.dialect.name], fresh)
    ids = {code: int(link_id) for code, link_id in result}
    return [ids.get(row["code"]) if first[row["code"]] == i else None for i, row in enumerate(rows)]


async def link_by_code(conn: AsyncConnection, code: str) -> LinkRow | None:
    return (await conn.execute(select(links).where(links.c.code == code))).one_or_none()


async def update_link(conn: AsyncConnection, link_id: int, **values: Any) -> None:
    await conn.execute(update(links).where(links.c.id == link_id).values(**values))


async def reserve_redirect(conn: AsyncConnection, link_id: int) -> bool:
    """Take one of a max_clicks link's redirects; False when none is left (or the link is gone)."""
    result = await conn.execute(
        update(links)
        .where(
            links.c.id == link_id,
            links.c.deleted_at.is_(None),
            links.c.redirects_served < links.c.max_clicks,
        )
        .values(redirects_served=links.c.redirects_served + 1)
    )
    return bool(result.rowcount)


async def has_redirects_left(conn: AsyncConnection, link_id: int) -> bool:
    query = select(links.c.id).where(
        links.c.id == link_id,
        links.c.deleted_at.is_(None),
        or_(links.c.max_clicks.is_(None), links.c.redirects_served < links.c.max_clicks),
    )
    return (await conn.execute(query)).first() is not None


async def links_of_owner(
    conn: AsyncConnection, owner_id: int, *, before_id: int | None, limit: int, query: str | None
) -> list[LinkRow]:
    conditions = [links.c.owner_id == owner_id, links.c.deleted_at.is_(None)]
    if before_id is not None:
        conditions.append(links.c.id < before_id)
    if query:
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(
            or_(
                links.c.code.ilike(pattern, escape="\\"),
                links.c.long_url.ilike(pattern, escape="\\"),
            )
        )
    stmt = select(links).where(and_(*conditions)).order_by(links.c.id.desc()).limit(limit)
    return list((await conn.execute(stmt)).all())


async def daily_clicks(
    conn: AsyncConnection, link_id: int, since: dt.date
) -> list[tuple[dt.date, int]]:
    stmt = (
        select(link_daily.c.day, link_daily.c.clicks)
        .where(link_daily.c.link_id == link_id, link_daily.c.day >= since)
        .order_by(link_daily.c.day)
    )
    return [(row.day, int(row.clicks)) for row in await conn.execute(stmt)]


async def top_breakdown(
    conn: AsyncConnection, kind: str, link_id: int, limit: int
) -> list[tuple[str, int]]:
    table, column = {
        "referrer": (link_referrers, link_referrers.c.referrer),
        "device": (link_devices, link_devices.c.device),
        "country": (link_countries, link_countries.c.country),
    }[kind]
    stmt = (
        select(column, table.c.clicks)
        .where(table.c.link_id == link_id)
        .order_by(table.c.clicks.desc(), column)
        .limit(limit)
    )
    return [(str(row[0]), int(row[1])) for row in await conn.execute(stmt)]


async def newly_expired(conn: AsyncConnection, now: dt.datetime, limit: int) -> list[LinkRow]:
    stmt = (
        select(links.c.id, links.c.code)
        .where(
            links.c.expires_at <= now,
            links.c.expired_swept_at.is_(None),
            links.c.deleted_at.is_(None),
        )
        .order_by(links.c.expires_at)
        .limit(limit)
    )
    return list((await conn.execute(stmt)).all())


async def mark_swept(conn: AsyncConnection, ids: list[int], now: dt.datetime) -> None:
    await conn.execute(update(links).where(links.c.id.in_(ids)).values(expired_swept_at=now))
