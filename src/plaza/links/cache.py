"""Where a code leads: a bounded per-process LRU (short TTL) in front of the kv cache (1 h) in front of SQL.

Unknown codes are cached too (negatively), so scanning codes cannot hammer the database. Edits, deletes
and creates invalidate the entry everywhere: the kv entry is deleted and every process drops its LRU
entry on a pub/sub message.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

import orjson
import structlog

from plaza.links import store
from plaza.platform.clock import Clock
from plaza.platform.db import Database
from plaza.platform.kv import KV, PortUnavailable
from plaza.platform.metrics import Metrics
from plaza.platform.pubsub import PubSub, listen

log = structlog.get_logger("plaza.links.cache")
INVALIDATION_CHANNEL = "links:invalidate"
_NEGATIVE: Final = b"-"  # kv value of a code known not to exist


@dataclass(frozen=True, slots=True)
class Target:
    link_id: int
    long_url: str
    expires_at: float | None  # epoch seconds
    max_clicks: int | None

    def encode(self) -> bytes:
        return orjson.dumps([self.link_id, self.long_url, self.expires_at, self.max_clicks])

    @classmethod
    def decode(cls, raw: bytes) -> Target:
        link_id, long_url, expires_at, max_clicks = orjson.loads(raw)
        return cls(link_id, long_url, expires_at, max_clicks)


class Missing:
    """Marker: the code is known not to lead anywhere."""


MISSING: Final = Missing()


class RedirectCache:
    def __init__(
        self,
        *,
        db: Database,
        kv: KV,
        pubsub: PubSub,
        clock: Clock,
        metrics: Metrics,
        lru_size: int,
        lru_ttl_s: float,
        kv_ttl_s: int,
        negative_ttl_s: int,
    ) -> None:
        self._db, self._kv, self._pubsub, self._clock = db, kv, pubsub, clock
        self._lru: OrderedDict[str, tuple[Target | Missing, float]] = OrderedDict()
        self._lru_size, self._lru_ttl_s = lru_size, lru_ttl_s
        self._kv_ttl_s, self._negative_ttl_s = kv_ttl_s, negative_ttl_s
        events = metrics.cache_events
        self._lru_hit, self._lru_miss = events.labels("lru", "hit"), events.labels("lru", "miss")
        self._kv_hit, self._kv_miss = events.labels("kv", "hit"), events.labels("kv", "miss")
        self._kv_negative = events.labels("kv", "negative_hit")

    def local(self, code: str) -> Target | Missing | None:
        """The LRU's answer, without awaiting anything; None when the LRU does not know."""
        entry = self._lru.get(code)
        if entry is not None and self._clock.monotonic() - entry[1] < self._lru_ttl_s:
            self._lru.move_to_end(code)
            self._lru_hit.inc()
            return entry[0]
        self._lru_miss.inc()
        return None

    async def lookup(self, code: str) -> Target | Missing:
        """The kv cache, then SQL; fills both caches. Raises when SQL is needed and down."""
        found = await self._from_kv(code)
        if found is None:
            found = await self._from_sql(code)
            await self._to_kv(code, found)
        self._remember(code, found)
        return found

    def _remember(self, code: str, found: Target | Missing) -> None:
        if self._lru_size == 0:
            return
        self._lru[code] = (found, self._clock.monotonic())
        self._lru.move_to_end(code)
        while len(self._lru) > self._lru_size:
            self._lru.popitem(last=False)

    async def _from_kv(self, code: str) -> Target | Missing | None:
        try:
            raw = await self._kv.get(f"link:{code}")
        except PortUnavailable:
            return None
        if raw is None:
            self._kv_miss.inc()
            return None
        if raw == _NEGATIVE:
            self._kv_negative.inc()
            return MISSING
        self._kv_hit.inc()
        return Target.decode(raw)

    async def _from_sql(self, code: str) -> Target | Missing:
        async with self._db.read() as conn:
            row = await store.link_by_code(conn, code)
        if row is None or row.deleted_at is not None:
            return MISSING
        expires = row.expires_at.timestamp() if row.expires_at is not None else None
        return Target(int(row.id), row.long_url, expires, row.max_clicks)

    async def _to_kv(self, code: str, found: Target | Missing) -> None:
        try:
            if isinstance(found, Target):
                await self._kv.set(f"link:{code}", found.encode(), ttl_s=self._kv_ttl_s)
            else:
                await self._kv.set(f"link:{code}", _NEGATIVE, ttl_s=self._negative_ttl_s)
        except PortUnavailable:
            pass

    async def invalidate(self, code: str) -> None:
        """Forget the code here at once, in the kv cache, and (via pub/sub) in every other process."""
        self._lru.pop(code, None)
        try:
            await self._kv.delete(f"link:{code}")
            await self._pubsub.publish(INVALIDATION_CHANNEL, code.encode())
        except PortUnavailable:
            log.warning("cache invalidation not broadcast: kv/pubsub unavailable", code=code)

    async def listen_for_invalidations(self) -> None:
        """Drop LRU entries that other processes invalidate (those missed during an outage age
        out within the LRU's TTL); runs until cancelled."""
        await listen(
            self._pubsub, INVALIDATION_CHANNEL, lambda code: self._lru.pop(code.decode(), None)
        )
