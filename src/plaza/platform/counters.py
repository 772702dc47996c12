"""Named counters in SQL, advanced atomically: one row update, whichever process asks."""

from __future__ import annotations

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from plaza.platform.tables import counters


async def advance(conn: AsyncConnection, name: str, by: int) -> int:
    """Add `by` to the counter (created at 0 when missing) and return its new value."""
    bump = (
        update(counters)
        .where(counters.c.name == name)
        .values(value=counters.c.value + by)
        .returning(counters.c.value)
    )
    value = (await conn.execute(bump)).scalar_one_or_none()
    if value is None:
        try:
            async with conn.begin_nested():
                await conn.execute(insert(counters).values(name=name, value=0))
        except IntegrityError:
            pass  # another process created it first
        value = (await conn.execute(bump)).scalar_one()
    return int(value)
