"""The click buffer: the redirect appends a tuple and returns; a background task ships batches to the stream.

Redirects must never wait on Redis or SQL, so `record` only appends to a bounded deque. `run` flushes it every
`flush_interval_s` as stream entries of up to `batch_size` clicks each, which the aggregator consumes. When the
stream is down the buffer applies a batch straight to SQL (same batch id, so a batch that did reach the stream
is still counted once); when SQL is down too, the clicks wait in the buffer for the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol, TypeAlias

import orjson
import structlog
from sqlalchemy.exc import SQLAlchemyError

from plaza.platform.bus import Streams
from plaza.platform.kv import PortUnavailable
from plaza.platform.metrics import Metrics

__all__ = [
    "BatchSink",
    "Click",
    "ClickBuffer",
    "CountedClick",
    "MalformedBatch",
    "checked_click",
    "decode_batch",
    "encode_batch",
]

log = structlog.get_logger("plaza.clicks")

# (link_id, epoch seconds, Referer header, User-Agent header, client IP): raw, parsed only by the consumer.
Click: TypeAlias = tuple[int, float, str | None, str | None, str | None]
# The same, and how many identical clicks it stands for (see `collapse`).
CountedClick: TypeAlias = tuple[int, float, str | None, str | None, str | None, int]
MAX_COUNT = 10_000_000  # far above one batch's size; a larger count is not a batch we wrote

MAX_LINK_ID = 2**63 - 1  # a BIGINT; anything larger could never match a link
MAX_TS = 253_402_300_799.0  # 9999-12-31T23:59:59Z, the last instant a datetime can hold

_ROUTES = {
    "stream": "clicks flow to the stream",
    "sql": "click stream unavailable; applying clicks to SQL directly",
    "held": "click stream and database unavailable; holding clicks in memory",
}


class BatchSink(Protocol):
    """Where a batch goes when the stream is down (the aggregator, writing to SQL)."""

    async def apply(self, batch_id: str, clicks: Sequence[Sequence[Any]]) -> bool: ...


class MalformedBatch(ValueError):
    """A stream entry that is not a click batch; retrying it can never succeed."""


def encode_batch(batch_id: str, clicks: Sequence[Click | CountedClick]) -> bytes:
    return orjson.dumps({"id": batch_id, "clicks": clicks})


def decode_batch(payload: bytes) -> tuple[str, list[Any]]:
    """The batch id and its clicks, each still to be checked by `checked_click`.

    The consumer checks clicks a chunk at a time (thousands of them would hold the event loop for
    milliseconds), before it writes anything: a batch with one bad click is refused whole.
    """
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedBatch(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedBatch("not an object")
    batch_id, clicks = data.get("id"), data.get("clicks")
    if not isinstance(batch_id, str) or not 0 < len(batch_id) <= 64:
        raise MalformedBatch("bad batch id")
    if not isinstance(clicks, list):
        raise MalformedBatch("clicks is not a list")
    return batch_id, clicks


def checked_click(click: Any) -> CountedClick:
    """A click as the aggregator may use it, so that nothing downstream can choke on a value."""
    if not isinstance(click, list | tuple) or len(click) not in (5, 6):
        raise MalformedBatch("a click is not a list of five or six")
    link_id, ts, referrer, user_agent, ip, *rest = click
    count = rest[0] if rest else 1
    if type(count) is not int or not 0 < count <= MAX_COUNT:
        raise MalformedBatch("bad count")
    if type(link_id) is not int or not 0 < link_id <= MAX_LINK_ID:
        raise MalformedBatch("bad link id")
    if type(ts) not in (int, float) or not (math.isfinite(ts) and 0 <= ts <= MAX_TS):
        raise MalformedBatch("bad timestamp")
    for text in (referrer, user_agent, ip):
        if text is not None and not isinstance(text, str):
            raise MalformedBatch("bad referrer, user agent or ip")
    return link_id, float(ts), referrer, user_agent, ip, count


class ClickBuffer:
    def __init__(
        self,
        streams: Streams,
        aggregator: BatchSink,
        metrics: Metrics,
        *,
        stream: str = "clicks",
        max_size: int = 200_000,
        flush_interval_s: float = 0.5,
        batch_size: int = 5_000,
    ) -> None:
        self._streams, self._sink, self._stream = streams, aggregator, stream
        self._max_size, self._interval, self._batch_size = max_size, flush_interval_s, batch_size
        # Clicks since the last flush, identical ones (same link, second, referrer, agent, address)
        # counted on one row: a link clicked thousands of times a second costs a few rows.
        self._counts: dict[Click, int] = {}
        # Rows on their way out: a flush moves the counts here, a failed delivery puts them back.
        self._pending: deque[CountedClick] = deque()
        self._dropped = metrics.clicks_dropped
        self._buffered = metrics.clicks_buffered
        # A batch that failed to deliver goes back to the front with its id, so the retry sends the
        # very same batch: if the failed attempt did land somewhere, the retry is deduplicated.
        self._retry: tuple[str, int] | None = None
        self._lock = asyncio.Lock()
        self._route, self._stream_error = "stream", ""

    def __len__(self) -> int:
        """Clicks held, not yet delivered."""
        return sum(self._counts.values()) + sum(row[5] for row in self._pending)

    def record(
        self,
        link_id: int,
        ts: float,
        referrer: str | None,
        user_agent: str | None,
        ip: str | None,
    ) -> None:
        """Called on the redirect path: no parsing, no awaiting, no I/O. Times keep whole seconds."""
        key = (link_id, float(int(ts)), referrer, user_agent, ip)
        held = self._counts.get(key)
        if held is not None:
            self._counts[key] = held + 1
        elif len(self._counts) + len(self._pending) < self._max_size:
            self._counts[key] = 1
        else:
            self._dropped.inc()

    async def flush(self) -> int:
        """Ship what is buffered now; returns how many clicks left the buffer for good."""
        async with self._lock:
            counts, self._counts = self._counts, {}
            self._pending.extend((*click, n) for click, n in counts.items())
            shipped, budget, stream_up = 0, len(self._pending), True
            # Only what was there at the start: clicks arriving meanwhile wait for the next tick,
            # so a steady stream of redirects cannot keep one flush going forever.
            while budget > 0 and self._pending:
                batch_id, batch = self._take()
                try:
                    # Once the stream failed, the rest of this flush goes to SQL without asking
                    # it again: a black-holed Redis would cost a connect timeout per batch.
                    stream_up = stream_up and await self._add_to_stream(batch_id, batch)
                    if not stream_up and not await self._apply_directly(batch_id, batch):
                        self._put_back(batch_id, batch)
                        break
                except Exception:
                    self._dropped.inc(len(batch))  # a bug, not an outage: retrying would not help
                    raise
                shipped += sum(row[5] for row in batch)
                budget -= len(batch)
            self._buffered.set(len(self))
            return shipped

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every interval until `stop` is set, then once more so shutdown loses nothing."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
            await self._flush_logged()
        await self._flush_logged()  # also when stop was set before this task first ran
        if self._pending or self._counts:
            log.warning("clicks left in the buffer at shutdown", clicks=len(self))

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception:  # a bug in one batch must not stop every later click
            log.exception("click flush failed")

    def _take(self) -> tuple[str, list[CountedClick]]:
        batch_id, size = uuid.uuid4().hex, self._batch_size
        if self._retry is not None:
            batch_id, size = self._retry
            self._retry = None
        return batch_id, [self._pending.popleft() for _ in range(min(size, len(self._pending)))]

    def _put_back(self, batch_id: str, batch: list[CountedClick]) -> None:
        self._pending.extendleft(reversed(batch))
        overflow = len(self._pending) - self._max_size
        # Newest first, as `record` does when full; the batch at the front keeps its shape and id.
        for _ in range(max(overflow, 0)):
            self._pending.pop()
        if overflow > 0:
            self._dropped.inc(overflow)
        self._retry = (batch_id, len(batch)) if len(self._pending) >= len(batch) else None

    async def _add_to_stream(self, batch_id: str, batch: list[CountedClick]) -> bool:
        try:
            await self._streams.add(self._stream, encode_batch(batch_id, batch))
        except PortUnavailable as exc:
            self._stream_error = str(exc)
            return False
        self._note("stream")
        return True

    async def _apply_directly(self, batch_id: str, batch: list[CountedClick]) -> bool:
        try:
            await self._sink.apply(batch_id, batch)
        except (SQLAlchemyError, OSError) as exc:
            self._note("held", error=str(exc), held=len(self) + sum(row[5] for row in batch))
            return False
        self._note("sql", error=self._stream_error)
        return True

    def _note(self, route: str, **details: Any) -> None:
        """Log where clicks go when that changes, not once per batch through a long outage."""
        if route != self._route:
            self._route = route
            (log.info if route == "stream" else log.warning)(_ROUTES[route], **details)
