"""A bounded per-process cache (LRU, TTL) whose entries any process can invalidate everywhere.

For what every request reads and few change: a hit costs a dict lookup where the shared cache costs a
round trip. A change is announced on a pub/sub channel after it commits, and every process forgets the
entries named. A value read before a change but stored after its announcement arrived would bring the
old value back; so a reader takes `generation` before it reads, and `put` stores only if no
invalidation arrived meanwhile. Whatever pub/sub loses (an outage) lives at most `ttl_s`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import structlog

from plaza.platform.clock import Clock
from plaza.platform.kv import PortUnavailable
from plaza.platform.pubsub import PubSub, listen

__all__ = ["LocalCache"]

log = structlog.get_logger("plaza.platform.localcache")

K = TypeVar("K", int, str)
V = TypeVar("V")
_ALL = b"*"


class LocalCache(Generic[K, V]):
    def __init__(
        self,
        *,
        channel: str,
        parse: Callable[[str], K],
        pubsub: PubSub,
        clock: Clock,
        size: int,
        ttl_s: float,
    ) -> None:
        self.channel, self._pubsub, self._clock = channel, pubsub, clock
        self._parse: Callable[[str], K] = parse
        self.size, self.ttl_s = size, ttl_s
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self.generation = 0  # moves on every invalidation, here or announced

    def get(self, key: K) -> V | None:
        return self._live(key, self._clock.monotonic())

    def get_many(self, keys: Iterable[K]) -> dict[K, V]:
        """The live entries among these keys, in their order (the clock is read once)."""
        now = self._clock.monotonic()
        return {key: value for key in keys if (value := self._live(key, now)) is not None}

    def _live(self, key: K, now: float) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if found[0] <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)  # least recently used goes first
        return found[1]

    def put(self, key: K, value: V, generation: int) -> None:
        """Keep `value`, read when `generation` was current, unless an invalidation came since."""
        if generation != self.generation:
            return
        self._entries[key] = (self._clock.monotonic() + self.ttl_s, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def forget(self, keys: Iterable[K] | None) -> None:
        """Drop these entries (None: all) in this process only."""
        self.generation += 1
        if keys is None:
            self._entries.clear()
        for key in keys or ():
            self._entries.pop(key, None)

    async def invalidate(self, keys: Iterable[K]) -> None:
        """Drop these entries here at once, and (via pub/sub) in every other process."""
        keys = list(keys)
        await self._announce(keys, ",".join(map(str, keys)).encode())

    async def invalidate_all(self) -> None:
        await self._announce(None, _ALL)

    async def _announce(self, keys: list[K] | None, payload: bytes) -> None:
        self.forget(keys)
        try:
            await self._pubsub.publish(self.channel, payload)
        except PortUnavailable:
            log.warning("invalidation not broadcast: pub/sub unavailable", channel=self.channel)

    def _heard(self, payload: bytes) -> None:
        keys = None if payload == _ALL else [self._parse(k) for k in payload.decode().split(",")]
        self.forget(keys)

    async def listen(self) -> None:
        """Forget what other processes invalidate; runs until cancelled."""
        await listen(self._pubsub, self.channel, self._heard)
