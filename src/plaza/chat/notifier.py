"""Offline push, the delivering side: the `push` stream's consumer.

Each event names a message and its offline recipients; each recipient gets one notification through the
push provider, tried up to `max_attempts` times with exponential backoff while the failure is retryable.
A notification that never went through is kept as a dead letter in SQL (`push_dead_letters`), where an
operator can look at it (and retention purges it with the message it quotes). Recipients of one event
are served concurrently, so one event takes about one notification's retry schedule, not one per user.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

import orjson
import structlog

from plaza.accounts.service import AccountsService
from plaza.chat import store
from plaza.chat.push import decode_event
from plaza.chat.pushers import PushFailed, PushProvider
from plaza.platform.bus import StreamEntry
from plaza.platform.clock import Clock
from plaza.platform.db import AnyRow, Database

__all__ = ["PUSH_GROUP", "PUSH_STALE_MS", "Notifier"]

log = structlog.get_logger("plaza.chat.push")

PUSH_GROUP = "push-notifier"
# An event in hand for this long is presumed lost with its consumer; well above one event's retry
# schedule (0.5 + 1 + 2 + 4 s by default), so a slow provider does not get the same event twice.
PUSH_STALE_MS = 300_000
CONCURRENCY = 32  # notifications of one event in flight at once


class Notifier:
    def __init__(
        self,
        *,
        db: Database,
        accounts: AccountsService,
        provider: PushProvider,
        clock: Clock,
        max_attempts: int,
        retry_base_s: float,
    ) -> None:
        self.db, self.accounts, self.provider, self.clock = db, accounts, provider, clock
        self.max_attempts, self.retry_base_s = max_attempts, retry_base_s
        self._slots = asyncio.Semaphore(CONCURRENCY)

    async def handle(self, entry: StreamEntry) -> None:
        """One event: a notification to each recipient (dead-lettered if it never goes through)."""
        try:
            shared, recipients = decode_event(entry.payload)
        except ValueError as exc:
            log.error("dropping a malformed push event", entry=entry.id, error=str(exc))
            return
        users = await self.accounts.by_ids(recipients)
        notifications = [
            {"type": "message", "recipient": users[user_id].summary(), **shared}
            for user_id in recipients
            if user_id in users
        ]
        await asyncio.gather(*(self._deliver(n) for n in notifications))

    async def _deliver(self, notification: Mapping[str, Any]) -> None:
        async with self._slots:
            for attempt in range(1, self.max_attempts + 1):
                try:
                    await self.provider.send(notification)
                    return
                except PushFailed as exc:
                    if not exc.retryable or attempt == self.max_attempts:
                        await self._dead_letter(notification, attempt, str(exc))
                        return
                await asyncio.sleep(self.retry_base_s * 2 ** (attempt - 1))

    async def _dead_letter(
        self, notification: Mapping[str, Any], attempts: int, error: str
    ) -> None:
        log.warning(
            "push undeliverable; kept as a dead letter",
            recipient=notification["recipient"]["id"],
            message_id=notification["message_id"],
            attempts=attempts,
            error=error,
        )
        async with self.db.write() as conn:
            await store.insert_dead_letter(
                conn,
                recipient_id=int(notification["recipient"]["id"]),
                message_id=int(notification["message_id"]),
                payload=orjson.dumps(notification).decode(),
                attempts=attempts,
                error=error[:1000],
                created_at=dt.datetime.fromtimestamp(self.clock.time(), dt.UTC),
            )

    async def dead_letters(self, limit: int = 100) -> list[AnyRow]:
        """The oldest undeliverable notifications (for operators and tests)."""
        async with self.db.read() as conn:
            return await store.dead_letters(conn, limit)
