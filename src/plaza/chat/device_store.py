"""The SQL of device cursors: what each device has been delivered, per conversation. Every function
runs inside the caller's connection or transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from plaza.chat.tables import device_cursors


def _advance_devices(dialect: Any) -> Any:
    stmt = dialect.insert(device_cursors)
    current = device_cursors.c.delivered_seq
    return stmt.on_conflict_do_update(
        index_elements=["user_id", "device_id", "conversation_id"],
        set_={
            "delivered_seq": case(
                (stmt.excluded.delivered_seq > current, stmt.excluded.delivered_seq),
                else_=current,
            ),
            "updated_at": stmt.excluded.updated_at,
        },
    )


_ADVANCE_DEVICES = {"postgresql": _advance_devices(postgresql), "sqlite": _advance_devices(sqlite)}


async def advance_devices(
    conn: AsyncConnection, cursors: Sequence[tuple[int, str, int, int]], now: dt.datetime
) -> None:
    """Record that devices have every message up to a seq (never moving back): (user, device,
    conversation, seq) each."""
    if not cursors:
        return
    stmt = _ADVANCE_DEVICES[conn.dialect.name]
    rows = [
        {
            "user_id": u,
            "device_id": d,
            "conversation_id": c,
            "delivered_seq": seq,
            "updated_at": now,
        }
        for u, d, c, seq in sorted(cursors)
    ]
    await conn.execute(stmt, rows)


async def device_positions(conn: AsyncConnection, user_id: int, device_id: str) -> dict[int, int]:
    query = select(device_cursors.c.conversation_id, device_cursors.c.delivered_seq).where(
        device_cursors.c.user_id == user_id, device_cursors.c.device_id == device_id
    )
    return {int(row[0]): int(row[1]) for row in await conn.execute(query)}
