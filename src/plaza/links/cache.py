"""Where a code leads: a bounded per-process LRU (short TTL) in front of the kv cache (1 h) in front of SQL.

Unknown codes are cached too (negatively), so scanning codes cannot hammer the database. Edits, deletes
and creates invalidate the entry everywhere: the kv entry is deleted and every process drops its LRU
entry on a pub/sub message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson
import structlog

from plaza.links import store
from plaza.platform.clock import Clock
from plaza.platform.db import Database
from plaza.platform.kv import KV, PortUnavailable
from plaza.platform.localcache import LocalCache
from plaza.platform.metrics import Metrics
from plaza.platform.pubsub import PubSub

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
        self._db, self._kv = db, kv
        self._lru = LocalCache[str, Target | Missing](
            channel=INVALIDATION_CHANNEL,
            parse=str,
            pubsub=pubsub,
            clock=clock,
            size=lru_size,
            ttl_s=lru_ttl_s,
        )
        self._kv_ttl_s, self._negative_ttl_s = kv_ttl_s, negative_ttl_s
        events = metrics.cache_events
        self._lru_hit, self._lru_miss = events.labels("lru", "hit"), events.labels("lru", "miss")
        self._kv_hit, self._kv_miss = events.labels("kv", "hit"), events.labels("kv", "miss")
        self._kv_negative = events.labels("kv", "negative_hit")

    def local(self, code: str) -> Target | Missing | None:
        """The LRU's answer, without awaiting anything; None when the LRU does not know."""
        found = self._lru.get(code)
        (self._lru_miss if found is None else self._lru_hit).inc()
        return found

    async def lookup(self, code: str) -> Target | Missing:
        """The kv cache, then SQL; fills both caches. Raises when SQL is needed and down."""
        generation = self._lru.generation
        found = await self._from_kv(code)
        if found is None:
            found = await self._from_sql(code)
            await self._to_kv(code, found)
        self._lru.put(code, found, generation)
        return found

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
        """Forget the code in the kv cache, then here and (via pub/sub) in every other process."""
        try:
            await self._kv.delete(f"link:{code}")
        except PortUnavailable:
            log.warning("cache entry not deleted: kv unavailable", code=code)
        await self._lru.invalidate([code])

    async def listen_for_invalidations(self) -> None:
        """Drop LRU entries that other processes invalidate (those missed during an outage age
        out within the LRU's TTL); runs until cancelled."""
        await self._lru.listen()
