"""Devices: chat's delivered cursor per device and conversation (`device_cursors`), and forgetting the
devices that never come back.

Sync uses a device's cursors for the conversations its `sync` frame names no cursor for. A device not
seen for PLAZA_CHAT_DEVICE_TTL_DAYS loses them, a batch at a time: one that does come back with its old
device id then syncs as a new device does (every conversation from its first message still kept), and
what members have read is not touched (those cursors are per member). A device is seen when it confirms
a delivery (the cursor write), when it connects, and every hour while it stays connected (the realtime
hub reports both), so a device in use is never forgotten, however quiet its conversations.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Collection, Sequence

from plaza.chat import device_store
from plaza.platform.batching import Batcher
from plaza.platform.clock import Clock
from plaza.platform.db import Database

__all__ = ["Devices"]

# Rows per delete transaction, as retention's: each holds the write lock (SQLite) or its row locks for
# milliseconds, so cursor writes wait at most that long while a backlog is forgotten.
FORGET_BATCH = 1000
# A device seen again rewrites only cursors older than this: one that reconnects often costs no writes.
# With the hourly report, a connected device's cursors are never older than 13 h, under the shortest
# TTL (1 day).
SEEN_REWRITE_AFTER = dt.timedelta(hours=12)


class Devices:
    def __init__(self, *, db: Database, clock: Clock, ttl_days: int) -> None:
        self.db, self.clock, self.ttl_days = db, clock, ttl_days
        # A reconnect wave (a restart) marks its devices seen in a few transactions, not one each.
        self._seen: Batcher[tuple[int, str], None] = Batcher(self._mark_seen)

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)

    async def seen(self, devices: Collection[tuple[int, str]]) -> None:
        """These devices (user id, device id) are in use: their cursors are kept."""
        await asyncio.gather(*(self._seen.submit(device) for device in devices))

    async def _mark_seen(self, devices: Sequence[tuple[int, str]]) -> list[None]:
        now = self.now()
        async with self.db.write() as conn:
            await device_store.touch_devices(
                conn, sorted(set(devices)), now, now - SEEN_REWRITE_AFTER
            )
        return [None] * len(devices)

    async def forget_due(self) -> int:
        """The periodic job: forget devices unseen for the configured TTL (0 days: keep all)."""
        if self.ttl_days <= 0:
            return 0
        return await self.forget_before(self.now() - dt.timedelta(days=self.ttl_days))

    async def forget_before(self, cutoff: dt.datetime) -> int:
        """Delete device cursors last written before `cutoff`, in batches; how many were deleted."""
        total = 0
        while True:
            async with self.db.write() as conn:
                deleted = await device_store.delete_device_cursors_before(
                    conn, cutoff, FORGET_BATCH
                )
            total += deleted
            if deleted < FORGET_BATCH:
                return total
            await asyncio.sleep(0)  # other writers get their turn between batches
