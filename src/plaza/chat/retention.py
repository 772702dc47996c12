"""Retention: messages older than PLAZA_CHAT_RETENTION_DAYS are deleted, a batch at a time.

Conversations keep their `last_seq` and members their cursors, so seqs never restart and clients that
hold purged messages keep them; history and sync simply start later. Search follows on its own (the
FTS5 triggers on SQLite; the index on PostgreSQL). Dead-letter pushes quote messages, so they go too.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from plaza.chat import store
from plaza.platform.clock import Clock
from plaza.platform.db import Database

__all__ = ["Retention"]

# Rows per delete transaction: each holds the write lock (SQLite) or its row locks for milliseconds,
# so senders wait at most that long while a large backlog is purged.
RETENTION_BATCH = 1000


class Retention:
    def __init__(self, *, db: Database, clock: Clock, days: int) -> None:
        self.db, self.clock, self.days = db, clock, days

    async def purge_due(self) -> int:
        """The periodic job: purge what the configured retention says is due (0 days: keep all)."""
        if self.days <= 0:
            return 0
        now = dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)
        return await self.purge_before(now - dt.timedelta(days=self.days))

    async def purge_before(self, cutoff: dt.datetime) -> int:
        """Delete messages created before `cutoff`, in batches; how many were deleted."""
        total = 0
        while True:
            async with self.db.write() as conn:
                deleted = await store.delete_messages_before(conn, cutoff, RETENTION_BATCH)
            total += deleted
            if deleted < RETENTION_BATCH:
                break
            await asyncio.sleep(0)  # other writers get their turn between batches
        async with self.db.write() as conn:
            await store.delete_dead_letters_before(conn, cutoff)
        return total
