"""A key-value cache with TTLs, as a port: in process memory, or Redis.

Values are bytes. Both adapters keep TTLs at millisecond precision, as Redis does, and raise ValueError
where Redis would refuse a command (a non-positive TTL, INCR of a value that is not an integer).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Protocol, cast

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster
from redis.driver_info import DriverInfo

from plaza.platform.breaker import Breaker, guarded
from plaza.platform.clock import Clock, SystemClock

__all__ = [
    "KV",
    "MemoryKV",
    "PortUnavailable",
    "RedisKV",
    "RedisPort",
    "outage_as_unavailable",
    "redis_client",
    "redis_cluster_client",
]

SOCKET_TIMEOUT_S = 1.0  # an outage should answer within a request's budget, not hang it
HEALTH_CHECK_INTERVAL_S = 5  # idle pooled connections are PINGed before reuse: a restart kills them
SWEEP_INTERVAL_S = 60.0  # how often MemoryKV scans for expired keys that nobody has read again
_INT64 = (-(2**63), 2**63 - 1)
_INTEGER_RE = re.compile(rb"-?(0|[1-9][0-9]*)")  # the only spellings Redis INCR accepts


class PortUnavailable(Exception):
    """A backing service did not answer."""


_OUTAGES = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.MasterDownError,
    redis_errors.SlotNotCoveredError,
    TimeoutError,
    OSError,
)


@contextmanager
def outage_as_unavailable(service: str) -> Iterator[None]:
    """Re-raise Redis connection failures and timeouts as PortUnavailable, the one error callers catch."""
    try:
        yield
    except _OUTAGES as exc:
        raise PortUnavailable(f"{service} unavailable: {exc}") from exc


def redis_client(url: str, breaker: Breaker | None = None) -> aioredis.Redis:
    """A client whose calls fail within about a second when Redis is down, rather than hang, and
    at once while its circuit breaker is open (for a second after a failure).

    Commands are not retried by redis-py: INCR, XADD and rate-limit hits are not idempotent.
    """
    pool = aioredis.ConnectionPool.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        # Given once: without it, every new connection reads redis-py's version from the installed
        # packages' metadata (a scan of site-packages), a 0.5-40 ms stall of the event loop each.
        driver_info=DriverInfo(),
    )
    pool.connection_class = guarded(pool.connection_class, breaker or Breaker())
    return aioredis.Redis.from_pool(pool)


def redis_cluster_client(url: str) -> RedisCluster:
    """A Redis Cluster client (any node's URL finds the rest) with the same timeouts."""
    return RedisCluster.from_url(
        url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
    )


def _ttl_ms(ttl_s: float | None) -> int | None:
    """A TTL as Redis takes it: whole milliseconds, rounded up so a tiny TTL is not zero."""
    if ttl_s is None:
        return None
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be positive, got {ttl_s!r}")
    return math.ceil(ttl_s * 1000)


class KV(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values in the order of `keys`, None where absent."""

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None: ...

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float | None = None) -> None: ...

    async def add(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        """Set only if absent; True when this call set it."""

    async def delete(self, *keys: str) -> int:
        """How many of the keys existed."""

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        """Add to an integer value (absent counts as 0); the TTL applies only if this call creates it."""

    async def ttl(self, key: str) -> float | None:
        """Seconds left to live; None if the key is absent or has no TTL."""

    async def ping(self) -> None:
        """Raise PortUnavailable unless the backing service answers."""

    async def aclose(self) -> None: ...


class RedisPort:
    """Names live under `prefix`. The client is the caller's: aclose() leaves it open."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def _key(self, name: str) -> str:
        return self._prefix + name

    async def aclose(self) -> None:
        """Nothing to release: the client belongs to whoever built it."""


# KEYS: the keys; ARGV: the TTL in ms ('' for none), then a value per key.
_SET_MANY = """
local px = ARGV[1]
for i, key in ipairs(KEYS) do
  if px == '' then
    redis.call('SET', key, ARGV[i + 1])
  else
    redis.call('SET', key, ARGV[i + 1], 'PX', px)
  end
end
return #KEYS
"""
SET_MANY_CHUNK = 1000


class RedisKV(RedisPort):
    """Keys live under `prefix`. The client is the caller's: aclose() leaves it open."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        super().__init__(client, prefix)
        self._set_many = client.register_script(_SET_MANY)

    async def get(self, key: str) -> bytes | None:
        with outage_as_unavailable("redis kv"):
            value = await self._client.get(self._prefix + key)
        return cast(bytes | None, value)  # str only with decode_responses, which we never set

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        with outage_as_unavailable("redis kv"):
            values = await self._client.mget([self._prefix + k for k in keys])
        return cast(list[bytes | None], values)

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        px = _ttl_ms(ttl_s)
        with outage_as_unavailable("redis kv"):
            await self._client.set(self._prefix + key, value, px=px)

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float | None = None) -> None:
        """One Lua call per SET_MANY_CHUNK keys (each atomic): a heartbeat renews every connected
        user's keys, and 10,000 SETs packed one by one cost the event loop a few hundred ms."""
        px = str(_ttl_ms(ttl_s) or "")
        pairs = list(items.items())
        with outage_as_unavailable("redis kv"):
            for at in range(0, len(pairs), SET_MANY_CHUNK):
                chunk = pairs[at : at + SET_MANY_CHUNK]
                await self._set_many(
                    keys=[self._prefix + key for key, _ in chunk],
                    args=[px, *(value for _, value in chunk)],
                )

    async def add(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        px = _ttl_ms(ttl_s)
        with outage_as_unavailable("redis kv"):
            return bool(await self._client.set(self._prefix + key, value, px=px, nx=True))

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        with outage_as_unavailable("redis kv"):
            return int(await self._client.delete(*[self._prefix + k for k in keys]))

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        px = _ttl_ms(ttl_s)
        name = self._prefix + key
        try:
            with outage_as_unavailable("redis kv"):
                if px is None:
                    return int(await self._client.incrby(name, amount))
                # Creating the key as 0 with its TTL, then adding, in one transaction: the TTL is set
                # only by the call that creates the key, never extended by later ones.
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.set(name, b"0", px=px, nx=True)
                    pipe.incrby(name, amount)
                    _, value = await pipe.execute()
                return int(value)
        except redis_errors.ResponseError as exc:
            raise ValueError(f"cannot increment {key!r}: {exc}") from exc

    async def ttl(self, key: str) -> float | None:
        with outage_as_unavailable("redis kv"):
            left = int(await self._client.pttl(self._prefix + key))
        return left / 1000 if left >= 0 else None  # -2: no key, -1: no TTL

    async def ping(self) -> None:
        with outage_as_unavailable("redis kv"):
            await self._client.ping()


class MemoryKV:
    """A dict with TTLs. Expired keys vanish when read, and in a sweep every SWEEP_INTERVAL_S.

    With `max_keys`, the least recently written key is evicted to make room, as Redis would under an
    allkeys eviction policy: a cache, not a store.
    """

    def __init__(self, clock: Clock | None = None, max_keys: int | None = None) -> None:
        self._clock = clock or SystemClock()
        self._max_keys = max_keys
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._next_sweep = self._clock.monotonic() + SWEEP_INTERVAL_S

    async def get(self, key: str) -> bytes | None:
        item = self._live(key)
        return None if item is None else item[0]

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [await self.get(key) for key in keys]

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        self._store(key, value, self._expiry(ttl_s))

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float | None = None) -> None:
        expires_at = self._expiry(ttl_s)
        for key, value in items.items():
            self._store(key, value, expires_at)

    async def add(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        expires_at = self._expiry(ttl_s)
        if self._live(key) is not None:
            return False
        self._store(key, value, expires_at)
        return True

    async def delete(self, *keys: str) -> int:
        deleted = 0
        for key in keys:
            if self._live(key) is not None:
                del self._data[key]
                deleted += 1
        return deleted

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        expires_at = self._expiry(ttl_s)
        item = self._live(key)
        if item is not None:
            if not _INTEGER_RE.fullmatch(item[0]):
                raise ValueError(f"cannot increment {key!r}: value is not an integer")
            current, expires_at = int(item[0]), item[1]
        else:
            current = 0
        value = current + amount
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"cannot increment {key!r}: would overflow 64 bits")
        self._store(key, str(value).encode(), expires_at)
        return value

    async def ttl(self, key: str) -> float | None:
        item = self._live(key)
        if item is None or item[1] is None:
            return None
        return item[1] - self._clock.monotonic()

    async def ping(self) -> None:
        """Always answers: the memory is this process's own."""

    async def aclose(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def _expiry(self, ttl_s: float | None) -> float | None:
        px = _ttl_ms(ttl_s)
        return None if px is None else self._clock.monotonic() + px / 1000

    def _live(self, key: str) -> tuple[bytes, float | None] | None:
        item = self._data.get(key)
        if item is not None and item[1] is not None and item[1] <= self._clock.monotonic():
            del self._data[key]
            return None
        return item

    def _store(self, key: str, value: bytes, expires_at: float | None) -> None:
        self._data[key] = (bytes(value), expires_at)
        self._data.move_to_end(key)  # insertion order is write order: the eviction order
        self._sweep_if_due()
        if self._max_keys is not None:
            while len(self._data) > self._max_keys:
                self._data.popitem(last=False)

    def _sweep_if_due(self) -> None:
        now = self._clock.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL_S
        expired = [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]
        for key in expired:
            del self._data[key]
