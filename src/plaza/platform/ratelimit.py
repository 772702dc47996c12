"""Token-bucket rate limiting, as a port: in process memory, or one atomic Lua script in Redis.

A bucket holds up to `rate.capacity` tokens and refills evenly over `rate.period_s`; an unseen key is full.
Both adapters do the same float arithmetic, so they agree to the token.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis

from plaza.platform.batching import Batcher
from plaza.platform.clock import Clock, SystemClock
from plaza.platform.kv import outage_as_unavailable
from plaza.settings import Rate

__all__ = ["Decision", "MemoryRateLimiter", "RateLimiter", "RedisRateLimiter"]

SWEEP_INTERVAL_S = 60.0  # how often MemoryRateLimiter forgets buckets that are full again
_EPSILON = 1e-9  # absorbs float error, so a bucket refilled to exactly `cost` tokens allows it


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int  # whole tokens left in the bucket after this call
    retry_after_s: int  # 0 when allowed; else whole seconds (>= 1) until `cost` tokens are there


class RateLimiter(Protocol):
    async def hit(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        """Take `cost` tokens if the bucket has them; otherwise take nothing and deny."""

    async def peek(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        """What hit() would decide, taking nothing."""

    async def reset(self, key: str) -> None:
        """Refill the bucket."""


def _check_cost(rate: Rate, cost: int) -> None:
    if not 1 <= cost <= rate.capacity:
        raise ValueError(f"cost must be between 1 and the capacity {rate.capacity}, got {cost}")


# The Lua twin of MemoryRateLimiter._decide, for every call of a batch in turn: KEYS[i] is call i's
# bucket, and the i-th group of four numbers in ARGV[1] its capacity, period, cost and consume flag (one
# argument for the batch: the client packs each argument separately, and most calls share their
# numbers). Times are the Redis server's, in microseconds, so the clocks of app processes do not
# matter. Numbers are formatted explicitly because Lua's default number-to-string keeps only 14 digits.
_SCRIPT = """
local epsilon = 1e-9
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local decisions = {}
local i = 0
for capacity, period_us, cost, consume in string.gmatch(ARGV[1], '(%d+) (%d+) (%d+) (%d)') do
  i = i + 1
  local key = KEYS[i]
  capacity, period_us, cost = tonumber(capacity), tonumber(period_us), tonumber(cost)
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = capacity
  if state[1] then
    local elapsed = math.max(0, now - tonumber(state[2]))
    tokens = math.min(capacity, tonumber(state[1]) + elapsed * capacity / period_us)
  end
  if tokens + epsilon < cost then
    local wait_s = (cost - tokens) * period_us / capacity / 1000000
    decisions[i] = {0, math.floor(tokens + epsilon), math.max(1, math.ceil(wait_s - epsilon))}
  else
    if consume == '1' then
      tokens = math.max(0, tokens - cost)
      local full_in_ms = math.ceil((capacity - tokens) * period_us / capacity / 1000)
      redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'ts', string.format('%d', now))
      redis.call('PEXPIRE', key, math.max(1, full_in_ms))
    end
    decisions[i] = {1, math.floor(tokens + epsilon), 0}
  end
end
return decisions
"""


@dataclass(frozen=True)
class _Call:
    key: str
    spec: str  # the script's four numbers for it: capacity, period (µs), cost, consume


class RedisRateLimiter:
    """Buckets are hashes under `prefix` + "rl:", expiring once they would be full again.

    The calls made while one script runs share the next run (one round trip for all of them), so the
    client must be a single Redis, not a cluster: a batch's keys may hash to any slot.
    """

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix + "rl:"
        self._script = client.register_script(_SCRIPT)
        self._calls: Batcher[_Call, Decision] = Batcher(self._run)

    async def hit(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        return await self._calls.submit(_Call(self._prefix + key, _spec(rate, cost, True)))

    async def peek(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        return await self._calls.submit(_Call(self._prefix + key, _spec(rate, cost, False)))

    async def reset(self, key: str) -> None:
        with outage_as_unavailable("redis rate limiter"):
            await self._client.delete(self._prefix + key)

    async def _run(self, calls: Sequence[_Call]) -> list[Decision]:
        specs = " ".join([call.spec for call in calls])
        with outage_as_unavailable("redis rate limiter"):
            replies = await self._script(keys=[call.key for call in calls], args=[specs])
        return [Decision(bool(allowed), int(left), int(wait)) for allowed, left, wait in replies]


@functools.lru_cache(maxsize=256)
def _spec(rate: Rate, cost: int, consume: bool) -> str:
    _check_cost(rate, cost)
    return f"{rate.capacity} {round(rate.period_s * 1_000_000)} {cost} {int(consume)}"


@dataclass
class _Bucket:
    tokens: float
    updated_at: float  # monotonic
    full_at: float  # monotonic; from then on the bucket is as good as absent


class MemoryRateLimiter:
    """Buckets in a dict; a sweep every SWEEP_INTERVAL_S drops the full ones, bounding memory."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._buckets: dict[str, _Bucket] = {}
        self._next_sweep = self._clock.monotonic() + SWEEP_INTERVAL_S

    async def hit(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        return self._decide(key, rate, cost, consume=True)

    async def peek(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        return self._decide(key, rate, cost, consume=False)

    async def reset(self, key: str) -> None:
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)

    def _decide(self, key: str, rate: Rate, cost: int, *, consume: bool) -> Decision:
        _check_cost(rate, cost)
        now = self._clock.monotonic()
        self._sweep_if_due(now)
        tokens = self._tokens(key, rate, now)
        if tokens + _EPSILON < cost:
            wait_s = (cost - tokens) * rate.period_s / rate.capacity
            return Decision(
                False, math.floor(tokens + _EPSILON), max(1, math.ceil(wait_s - _EPSILON))
            )
        if consume:
            tokens = max(0.0, tokens - cost)
            full_at = now + (rate.capacity - tokens) * rate.period_s / rate.capacity
            self._buckets[key] = _Bucket(tokens, now, full_at)
        return Decision(True, math.floor(tokens + _EPSILON), 0)

    def _tokens(self, key: str, rate: Rate, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return float(rate.capacity)
        elapsed = max(0.0, now - bucket.updated_at)
        return min(float(rate.capacity), bucket.tokens + elapsed * rate.capacity / rate.period_s)

    def _sweep_if_due(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL_S
        full = [key for key, bucket in self._buckets.items() if bucket.full_at <= now]
        for key in full:
            del self._buckets[key]
