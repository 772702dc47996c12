"""Durable streams read by consumer groups with acks: a memory adapter (one process) and a Redis
adapter (Redis Streams). Fire-and-forget pub/sub is in pubsub.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import redis.exceptions as redis_errors
import structlog

from plaza.platform.clock import Clock, SystemClock
from plaza.platform.kv import RedisPort, outage_as_unavailable

__all__ = ["MemoryStreams", "NoGroup", "RedisStreams", "StreamEntry", "Streams"]

log = structlog.get_logger("plaza.platform.bus")

# A blocked XREADGROUP is silent on the wire, so each wait must end within the socket timeout.
_BLOCK_SLICE_MS = 500
_FIELD = b"p"  # the one field of a stream entry that carries its payload


@dataclass(frozen=True)
class StreamEntry:
    id: str
    payload: bytes


class NoGroup(LookupError):
    """The stream or consumer group does not exist: call ensure_group first."""


class Streams(Protocol):
    async def add(self, stream: str, payload: bytes, maxlen: int | None = None) -> str:
        """Append; returns the entry id. With maxlen, the oldest entries are trimmed (approximately)."""

    async def ensure_group(self, stream: str, group: str) -> None:
        """Create the group (and stream) if absent; a new group starts at the stream's first entry."""

    async def read(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[StreamEntry]:
        """Entries never delivered to the group, now pending on `consumer`; waits up to block_ms if none.

        block_ms=0 returns at once (unlike Redis's BLOCK 0, which waits forever).
        """

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        """Mark entries done; returns how many were pending."""

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[StreamEntry]:
        """Take over entries pending on any consumer for at least min_idle_ms (e.g. one that crashed)."""

    async def lag(self, stream: str, group: str) -> int:
        """Entries the group has not acked yet: undelivered plus pending."""

    async def trim_acked(self, stream: str) -> int:
        """Delete the entries every group of the stream has read and acked; returns how many.

        A stream without groups is left alone. Acked entries are otherwise kept for ever.
        """

    async def aclose(self) -> None: ...


# --- Streams ------------------------------------------------------------------------------------


class RedisStreams(RedisPort):
    async def add(self, stream: str, payload: bytes, maxlen: int | None = None) -> str:
        with outage_as_unavailable("redis streams"):
            return _text(
                await self._client.xadd(self._key(stream), {_FIELD: payload}, maxlen=maxlen)
            )

    async def ensure_group(self, stream: str, group: str) -> None:
        try:
            with outage_as_unavailable("redis streams"):
                await self._client.xgroup_create(self._key(stream), group, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):  # BUSYGROUP: it exists already, as wanted
                raise

    async def read(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[StreamEntry]:
        _check_count(count)
        deadline = time.monotonic() + block_ms / 1000
        with outage_as_unavailable("redis streams"), _no_group(stream, group):
            while True:
                wait_ms = min(_BLOCK_SLICE_MS, int((deadline - time.monotonic()) * 1000))
                block = wait_ms if wait_ms > 0 else None  # BLOCK 0 would wait forever
                reply = await self._client.xreadgroup(
                    group, consumer, {self._key(stream): ">"}, count, block
                )
                replies = cast(list[tuple[bytes, list[Any]]], reply or [])
                entries = _entries(replies[0][1]) if replies else []
                if entries or block is None:
                    return entries

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        with outage_as_unavailable("redis streams"):
            return int(await self._client.xack(self._key(stream), group, *ids))

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[StreamEntry]:
        _check_count(count)
        with outage_as_unavailable("redis streams"), _no_group(stream, group):
            key = self._key(stream)
            reply = await self._client.xautoclaim(key, group, consumer, min_idle_ms, count=count)
        return _entries(reply[1])

    async def lag(self, stream: str, group: str) -> int:
        key = self._key(stream)
        with outage_as_unavailable("redis streams"), _no_group(stream, group):
            groups = await self._client.xinfo_groups(key)
            info = next((g for g in groups if _text(g["name"]) == group), None)
            if info is None:
                raise NoGroup(f"no group {group!r} on stream {stream!r}")
            undelivered = info.get("lag")
            if undelivered is None:  # Redis cannot always tell (e.g. after XDEL): count instead
                last = _text(info["last-delivered-id"])
                undelivered = len(await self._client.xrange(key, min=f"({last}", max="+") or [])
        return int(undelivered) + int(info["pending"])

    async def trim_acked(self, stream: str) -> int:
        key = self._key(stream)
        with outage_as_unavailable("redis streams"):
            try:
                groups = await self._client.xinfo_groups(key)
            except redis_errors.ResponseError:  # no such stream
                return 0
            if not groups:
                return 0
            floors = []
            for info in groups:
                if int(info["pending"]):
                    summary = await self._client.xpending(key, _text(info["name"]))
                    floors.append(_id_tuple(_text(summary["min"])))  # kept: still pending
                else:
                    ms, seq = _id_tuple(_text(info["last-delivered-id"]))
                    floors.append((ms, seq + 1))  # everything delivered is acked
            ms, seq = min(floors)
            return int(await self._client.xtrim(key, minid=f"{ms}-{seq}", approximate=False))


@dataclass
class _Group:
    next_seq: int  # sequence number (position since the stream began) of the next undelivered entry
    # id -> (consumer, monotonic time of delivery), in id order as Redis's pending entries list
    pending: dict[str, tuple[str, float]] = field(default_factory=dict)


@dataclass
class _Stream:
    ids: deque[str] = field(default_factory=deque)
    payloads: dict[str, bytes] = field(default_factory=dict)
    first_seq: int = 0  # sequence number of ids[0]; grows as entries are trimmed
    last_id: tuple[int, int] = (0, 0)
    groups: dict[str, _Group] = field(default_factory=dict)
    grown: asyncio.Event = field(default_factory=asyncio.Event)  # replaced after each add

    @property
    def end_seq(self) -> int:
        return self.first_seq + len(self.ids)


class MemoryStreams:
    """Redis Streams semantics in one process. Trimming by maxlen is exact rather than approximate."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._streams: defaultdict[str, _Stream] = defaultdict(_Stream)

    async def add(self, stream: str, payload: bytes, maxlen: int | None = None) -> str:
        s = self._streams[stream]
        ms = int(self._clock.time() * 1000)
        # As Redis does, ids keep increasing even if the wall clock steps back.
        s.last_id = (ms, 0) if ms > s.last_id[0] else (s.last_id[0], s.last_id[1] + 1)
        entry_id = f"{s.last_id[0]}-{s.last_id[1]}"
        s.ids.append(entry_id)
        s.payloads[entry_id] = bytes(payload)
        while maxlen is not None and len(s.ids) > maxlen:
            del s.payloads[s.ids.popleft()]
            s.first_seq += 1
        s.grown.set()
        s.grown = asyncio.Event()
        return entry_id

    async def ensure_group(self, stream: str, group: str) -> None:
        s = self._streams[stream]
        s.groups.setdefault(group, _Group(next_seq=s.first_seq))

    async def read(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[StreamEntry]:
        _check_count(count)
        s, g = self._group(stream, group)
        deadline = time.monotonic() + block_ms / 1000
        while not (entries := self._deliver(s, g, consumer, count)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await s.grown.wait()
        return entries

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        s = self._streams.get(stream)
        g = s.groups.get(group) if s else None
        if g is None:
            return 0  # as XACK: nothing was pending there
        return sum(g.pending.pop(entry_id, None) is not None for entry_id in set(ids))

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[StreamEntry]:
        _check_count(count)
        s, g = self._group(stream, group)
        now = self._clock.monotonic()
        claimed: list[StreamEntry] = []
        for entry_id, (_, delivered_at) in list(g.pending.items()):
            if len(claimed) >= count:
                break
            if (now - delivered_at) * 1000 < min_idle_ms:
                continue
            payload = s.payloads.get(entry_id)
            if payload is None:  # trimmed while pending: Redis 7 drops it from the PEL too
                del g.pending[entry_id]
                continue
            g.pending[entry_id] = (consumer, now)  # in place: the PEL keeps id order
            claimed.append(StreamEntry(entry_id, payload))
        return claimed

    async def lag(self, stream: str, group: str) -> int:
        s, g = self._group(stream, group)
        return s.end_seq - max(g.next_seq, s.first_seq) + len(g.pending)

    async def trim_acked(self, stream: str) -> int:
        s = self._streams.get(stream)
        if s is None or not s.groups:
            return 0
        floor = min(
            min((self._seq_of(s, next(iter(g.pending))), g.next_seq)) if g.pending else g.next_seq
            for g in s.groups.values()
        )
        trimmed = 0
        while s.first_seq < floor and s.ids:
            del s.payloads[s.ids.popleft()]
            s.first_seq += 1
            trimmed += 1
        return trimmed

    @staticmethod
    def _seq_of(s: _Stream, entry_id: str) -> int:
        wanted = _id_tuple(entry_id)
        for index, present in enumerate(s.ids):
            if _id_tuple(present) >= wanted:
                return s.first_seq + index
        return s.end_seq

    async def aclose(self) -> None:
        self._streams.clear()

    def _group(self, stream: str, group: str) -> tuple[_Stream, _Group]:
        s = self._streams.get(stream)
        g = s.groups.get(group) if s else None
        if s is None or g is None:
            raise NoGroup(f"no group {group!r} on stream {stream!r}")
        return s, g

    def _deliver(self, s: _Stream, g: _Group, consumer: str, count: int) -> list[StreamEntry]:
        start = max(g.next_seq, s.first_seq)
        end = min(start + count, s.end_seq)
        now = self._clock.monotonic()
        entries = []
        for seq in range(start, end):
            entry_id = s.ids[seq - s.first_seq]
            g.pending[entry_id] = (consumer, now)
            entries.append(StreamEntry(entry_id, s.payloads[entry_id]))
        g.next_seq = max(g.next_seq, end)
        return entries


def _check_count(count: int) -> None:
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(raw: list[Any]) -> list[StreamEntry]:
    return [StreamEntry(_text(entry_id), fields[_FIELD]) for entry_id, fields in raw if fields]


@contextlib.contextmanager
def _no_group(stream: str, group: str) -> Iterator[None]:
    try:
        yield
    except redis_errors.ResponseError as exc:
        if str(exc).startswith("NOGROUP") or str(exc) == "no such key":
            raise NoGroup(f"no group {group!r} on stream {stream!r}") from exc
        raise
