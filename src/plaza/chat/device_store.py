"""The SQL of device cursors: what each device has been delivered, per conversation. Every function
runs inside the caller's connection or transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, case, delete, select, tuple_, update
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


_DEVICE_ROW = (
    device_cursors.c.user_id,
    device_cursors.c.device_id,
    device_cursors.c.conversation_id,
)


def _unlocked_device_rows(*where: Any, limit: int | None = None) -> Any:
    """Keys of the device cursors matching `where` that no other transaction is writing. Skipped rows
    are being written (so they are in use), and the statements using this never wait for a lock, so
    they cannot deadlock with cursor writes, which lock several rows each (PostgreSQL; SQLite
    serialises writers)."""
    return select(*_DEVICE_ROW).where(*where).limit(limit).with_for_update(skip_locked=True)


_TOUCH_DEVICES = (
    update(device_cursors)
    .where(
        tuple_(*_DEVICE_ROW).in_(
            _unlocked_device_rows(
                tuple_(device_cursors.c.user_id, device_cursors.c.device_id).in_(
                    bindparam("devices", expanding=True)
                ),
                device_cursors.c.updated_at < bindparam("stale"),
            )
        )
    )
    .values(updated_at=bindparam("now"))
)


async def touch_devices(
    conn: AsyncConnection,
    devices: Sequence[tuple[int, str]],
    now: dt.datetime,
    stale: dt.datetime,
) -> None:
    """Devices (user, device) were seen `now`: their cursors last written before `stale` say so."""
    if devices:
        await conn.execute(_TOUCH_DEVICES, {"devices": list(devices), "now": now, "stale": stale})


async def delete_device_cursors_before(
    conn: AsyncConnection, cutoff: dt.datetime, limit: int
) -> int:
    """Delete up to `limit` device cursors last written before `cutoff`; how many went.

    No index on `updated_at`: every delivery confirmation rewrites it, and would then rewrite an
    index entry too; the job scans the table once per sweep instead."""
    stale = _unlocked_device_rows(device_cursors.c.updated_at < cutoff, limit=limit)
    result = await conn.execute(delete(device_cursors).where(tuple_(*_DEVICE_ROW).in_(stale)))
    return int(result.rowcount or 0)
