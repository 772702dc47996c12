"""Running a consumer group on a durable stream: read, handle, ack; outages waited out, never fatal.

Delivery is at least once: an entry is acked only after its handler returns, so a consumer that dies
in between leaves it pending, and another (or the same, restarted) takes it over after `stale_ms`.
Handlers must therefore be idempotent, or accept the odd repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from sqlalchemy.exc import SQLAlchemyError

from plaza.platform.bus import NoGroup, StreamEntry, Streams
from plaza.platform.kv import PortUnavailable
from plaza.platform.metrics import Metrics

__all__ = ["ConsumerGroup", "Handler", "run_stream_consumer"]

log = structlog.get_logger("plaza.consumer")

READ_BLOCK_MS = 500  # also bounds how long a stop request waits for the consumer
LAG_EVERY_S = 1.0  # each lag query is a round trip; once a second is plenty for a gauge
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.1, 5.0  # outages: retry soon, then settle at one try per 5 s

Handler = Callable[[StreamEntry], Awaitable[None]]


@dataclass(frozen=True)
class ConsumerGroup:
    stream: str
    group: str
    consumer: str  # this process's name within the group
    read_count: int = 50
    stale_ms: int = 30_000  # pending this long on a consumer: it is presumed dead


async def run_stream_consumer(
    streams: Streams,
    metrics: Metrics,
    where: ConsumerGroup,
    handle: Handler,
    *,
    stop: asyncio.Event,
) -> None:
    """Handle entries until `stop` is set."""
    worker = _Consumer(streams, metrics, where, handle)
    failures = 0
    while not stop.is_set():
        try:
            await worker.step()
            failures = 0
            continue
        except NoGroup:
            # Redis came back empty (restarted without persistence): the group must be made again.
            log.warning("consumer group vanished; creating it again", stream=where.stream)
            worker.group_ready = False
        except (PortUnavailable, SQLAlchemyError, OSError) as exc:
            log.warning("consumer waiting out an outage", stream=where.stream, error=str(exc))
        except Exception:
            # A bug, not an outage. The entry stays pending (unacked) and comes back through
            # claim_stale after stale_ms: retried slowly, never lost, never blocking the others.
            log.exception("stream entry failed", stream=where.stream, entry=worker.current())
            worker.skip_current()
        failures += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (failures - 1))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


class _Consumer:
    def __init__(
        self, streams: Streams, metrics: Metrics, where: ConsumerGroup, handle: Handler
    ) -> None:
        self.streams, self.where, self.handle = streams, where, handle
        self.lag_gauge = metrics.stream_lag.labels(where.stream, where.group)
        self.backlog: deque[StreamEntry] = deque()  # read or claimed, not acked: retried first
        self.group_ready, self.lag_due = False, 0.0

    async def step(self) -> None:
        w = self.where
        if not self.group_ready:
            await self.streams.ensure_group(w.stream, w.group)
            self.group_ready = True
        if not self.backlog:
            self.backlog.extend(await self._fetch())
        while self.backlog:
            entry = self.backlog[0]
            await self.handle(entry)
            # Only now: an entry acked before its work is done would be lost if the process died.
            await self.streams.ack(w.stream, w.group, [entry.id])
            self.backlog.popleft()
        if time.monotonic() >= self.lag_due:
            self.lag_gauge.set(await self.streams.lag(w.stream, w.group))
            self.lag_due = time.monotonic() + LAG_EVERY_S

    def current(self) -> str | None:
        return self.backlog[0].id if self.backlog else None

    def skip_current(self) -> None:
        if self.backlog:
            self.backlog.popleft()

    async def _fetch(self) -> list[StreamEntry]:
        # Entries a crashed consumer took and never acked come first: they are the oldest.
        w = self.where
        stale = await self.streams.claim_stale(
            w.stream, w.group, w.consumer, w.stale_ms, w.read_count
        )
        return stale or await self.streams.read(
            w.stream, w.group, w.consumer, w.read_count, READ_BLOCK_MS
        )
