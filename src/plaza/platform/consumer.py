"""The one loop every durable-stream consumer runs: read, handle, ack; outages waited out, never fatal.

Entries every group has acked are deleted from the stream every TRIM_EVERY_S: a stream holds what is
still to be done, never the history. Delivery is at least once. An entry is acked only after its handler returned: if the process dies in
between, another consumer claims it once it has been pending for `stale_ms`, so handlers must be
idempotent. A handler that raises leaves its entry pending: it comes back the same way, slowly, without
blocking the entries behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.exc import SQLAlchemyError

from plaza.platform.bus import NoGroup, StreamEntry, Streams
from plaza.platform.kv import PortUnavailable
from plaza.platform.metrics import Metrics

__all__ = ["Handler", "run_consumer"]

log = structlog.get_logger("plaza.consumer")

Handler = Callable[[StreamEntry], Awaitable[None]]

READ_BLOCK_MS = 500  # also bounds how long a stop request waits for the consumer
LAG_EVERY_S = 1.0  # each lag query is a round trip; once a second is plenty for a gauge
TRIM_EVERY_S = 10.0  # how often entries that every group acked are deleted from the stream
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.1, 5.0  # outages: retry soon, then settle at one try per 5 s
OUTAGES = (PortUnavailable, SQLAlchemyError, OSError)


async def run_consumer(
    streams: Streams,
    metrics: Metrics,
    handle: Handler,
    *,
    stream: str,
    group: str,
    consumer: str,
    stop: asyncio.Event,
    stale_ms: int = 30_000,
    read_count: int = 50,
) -> None:
    """Feed the entries of `stream` to `handle`, as member `consumer` of `group`, until `stop` is set."""
    worker = _Consumer(streams, metrics, handle, stream, group, consumer, stale_ms, read_count)
    failures = 0
    while not stop.is_set():
        try:
            await worker.step()
            failures = 0
            continue
        except NoGroup:
            # Redis came back empty (restarted without persistence): the group must be made again.
            log.warning("consumer group vanished; creating it again", stream=stream, group=group)
            worker.group_ready = False
        except OUTAGES as exc:
            log.warning("consumer waiting out an outage", stream=stream, error=str(exc))
        except Exception:
            # A bug, not an outage: the entry stays pending and is claimed again after stale_ms.
            log.exception("stream entry failed", stream=stream, entry=worker.current())
            worker.skip_current()
        failures += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (failures - 1))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


class _Consumer:
    def __init__(
        self,
        streams: Streams,
        metrics: Metrics,
        handle: Handler,
        stream: str,
        group: str,
        name: str,
        stale_ms: int,
        read_count: int,
    ) -> None:
        self.streams, self.handle, self.name = streams, handle, name
        self.stream, self.group, self.stale_ms, self.read_count = (
            stream,
            group,
            stale_ms,
            read_count,
        )
        self.lag_gauge = metrics.stream_lag.labels(stream, group)
        self.backlog: deque[StreamEntry] = deque()  # read or claimed, not acked: retried first
        self.group_ready, self.lag_due, self.trim_due = False, 0.0, 0.0

    def current(self) -> str | None:
        return self.backlog[0].id if self.backlog else None

    def skip_current(self) -> None:
        if self.backlog:
            self.backlog.popleft()

    async def step(self) -> None:
        if not self.group_ready:
            await self.streams.ensure_group(self.stream, self.group)
            self.group_ready = True
        if not self.backlog:
            self.backlog.extend(await self._fetch())
        while self.backlog:
            entry = self.backlog[0]
            await self.handle(entry)
            # Only now: an entry acked before its work committed would be lost if the process died.
            await self.streams.ack(self.stream, self.group, [entry.id])
            self.backlog.popleft()
        if time.monotonic() >= self.lag_due:
            self.lag_gauge.set(await self.streams.lag(self.stream, self.group))
            self.lag_due = time.monotonic() + LAG_EVERY_S
        if time.monotonic() >= self.trim_due:
            await self.streams.trim_acked(self.stream)
            self.trim_due = time.monotonic() + TRIM_EVERY_S

    async def _fetch(self) -> list[StreamEntry]:
        # Entries a crashed consumer took and never acked come first: they are the oldest.
        s, g, n = self.stream, self.group, self.read_count
        stale = await self.streams.claim_stale(s, g, self.name, self.stale_ms, n)
        return stale or await self.streams.read(s, g, self.name, n, READ_BLOCK_MS)
