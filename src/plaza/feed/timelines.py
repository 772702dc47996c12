"""Timelines: capped lists of post ids, newest first, as a port: in process memory, or Redis sorted sets.

A timeline is a home feed (`home:<user id>`) or a celebrity's recent posts (`author:<user id>`). Each
holds at most `max_len` ids; pushing more drops the oldest. Ids are Snowflake ids below 2**53, so a
sorted-set score (a double) holds them exactly and the score alone orders them.

A timeline exists only once it was built (from SQL, by the reader that found it missing). Pushes go only
to timelines that exist: a follower whose timeline expired (inactive for `ttl_s`) or was never built
costs the fan-out nothing, and gets a complete one rebuilt when they come back. A timeline also knows
whether it is complete, that is whether it ever dropped ids or was built from a cut-off list: a reader
who reaches the end of a complete timeline has seen everything, of an incomplete one must go on in SQL.

In Redis each timeline is one sorted set whose lowest member is a marker, "~", scored 0 while the
timeline is complete and -1 once it is not; pushes run as one Lua call per batch of timelines.

On a Redis Cluster a Lua call may only touch keys of one hash slot, so timeline keys carry a hash tag,
one of `slot_groups` (`tl:{7}:home:42`): a batch is split by tag, each part one call, the parts run
side by side on their nodes. Fewer groups mean fewer, larger calls; more spread memory more evenly.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from plaza.platform.clock import Clock, SystemClock
from plaza.platform.kv import outage_as_unavailable

__all__ = ["MemoryTimelines", "RedisTimelines", "Timelines", "Window"]

MARKER = b"~"


@dataclass(frozen=True)
class Window:
    ids: list[int]  # newest first, all below the `before` asked for
    complete: bool  # the timeline never dropped an id: nothing older exists beyond `ids`' end


class Timelines(Protocol):
    max_len: int

    async def push(self, keys: Sequence[str], item: int) -> int:
        """Add `item` to each of these timelines that exists; returns how many had it added."""

    async def extend(self, key: str, items: Sequence[int]) -> bool:
        """Add `items` to one timeline if it exists (a follow's backfill); False if it does not."""

    async def remove(self, keys: Sequence[str], items: Sequence[int]) -> None:
        """Take `items` out of these timelines (where present)."""

    async def build(
        self, key: str, items: Sequence[int], *, complete: bool, ttl_s: float | None
    ) -> None:
        """Replace the timeline with `items` (the newest `max_len` are kept)."""

    async def window(
        self, key: str, before: int | None, count: int, *, ttl_s: float | None = None
    ) -> Window | None:
        """Up to `count` ids below `before` (all, if None), newest first; None if it does not exist.

        With `ttl_s`, reading also keeps the timeline alive that much longer.
        """

    async def windows(
        self, keys: Sequence[str], before: int | None, count: int, *, ttl_s: float | None = None
    ) -> list[Window | None]:
        """`window` of each of these timelines, in their order, in one round trip."""

    async def drop(self, *keys: str) -> None: ...


# --- Redis -----------------------------------------------------------------------------------------

# KEYS: timelines; ARGV: the item, max_len. Pushes into those that exist, trims, marks trimmed ones.
# A full timeline is already marked (-1): not marking it again saves a call per push, ~25% of the
# script's time in Redis on full timelines (bench/feed.py).
_PUSH = """
local n = 0
local max = tonumber(ARGV[2])
local item = ARGV[1]
for _, key in ipairs(KEYS) do
  local marker = redis.call('ZSCORE', key, '~')
  if marker then
    redis.call('ZADD', key, item, item)
    local extra = redis.call('ZCARD', key) - 1 - max
    if extra > 0 then
      redis.call('ZREMRANGEBYRANK', key, 1, extra)
      if marker ~= '-1' then redis.call('ZADD', key, -1, '~') end
    end
    n = n + 1
  end
end
return n
"""

# KEYS: one timeline; ARGV: max_len, then the items.
_EXTEND = """
if not redis.call('ZSCORE', KEYS[1], '~') then return 0 end
local max = tonumber(ARGV[1])
for i = 2, #ARGV, 500 do
  local args = {}
  for j = i, math.min(i + 499, #ARGV) do
    args[#args + 1] = ARGV[j]
    args[#args + 1] = ARGV[j]
  end
  redis.call('ZADD', KEYS[1], unpack(args))
end
local extra = redis.call('ZCARD', KEYS[1]) - 1 - max
if extra > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 1, extra)
  redis.call('ZADD', KEYS[1], -1, '~')
end
return 1
"""

KEYS_PER_CALL = 1000  # one Lua call per this many timelines: long enough to amortise, short enough not to stall Redis

# KEYS: one timeline; ARGV: marker score, ttl ms (0: none), then score/member pairs. Atomic, so a push
# racing a rebuild is never lost between its DEL and ZADD (a cluster has no MULTI across our calls).
_BUILD = """
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[1], '~')
for i = 3, #ARGV, 1000 do
  redis.call('ZADD', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""
CLUSTER_CALLS_AT_ONCE = 16  # slot groups pushed side by side

# KEYS: timelines; ARGV: the top score ("(id" or "+inf"), count, ttl ms (0: none). Per timeline, {}
# when it does not exist, else its marker's score then up to `count` ids below the top, newest first.
# One call, where a pipeline would be three commands a timeline to send and parse (a feed read's
# largest cost in redis-py).
_WINDOWS = """
local out = {}
local count = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  local marker = redis.call('ZSCORE', key, '~')
  if marker then
    local found = redis.call('ZREVRANGEBYSCORE', key, ARGV[1], 1, 'LIMIT', 0, count)
    table.insert(found, 1, marker)
    if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
    out[i] = found
  else
    out[i] = {}
  end
end
return out
"""


class RedisTimelines:
    """Timelines in one Redis, or spread over a Redis Cluster (keys tagged by slot group)."""

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        prefix: str,
        *,
        max_len: int = 800,
        slot_groups: int = 16,
    ) -> None:
        self._client, self._prefix, self.max_len = client, prefix, max_len
        self._groups = slot_groups if isinstance(client, RedisCluster) else 1
        if self._groups > 1 and "{" in prefix:
            raise ValueError("a Redis Cluster prefix must not hold '{': it would be the hash tag")
        self._push = client.register_script(_PUSH)
        self._extend = client.register_script(_EXTEND)
        self._build = client.register_script(_BUILD)
        self._windows = client.register_script(_WINDOWS)

    def _tag(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self._groups if self._groups > 1 else 0

    def _key(self, key: str, tag: int | None = None) -> str:
        if self._groups == 1:
            return f"{self._prefix}tl:{key}"
        return f"{self._prefix}tl:{{{self._tag(key) if tag is None else tag}}}:{key}"

    def _calls(self, keys: Sequence[str]) -> list[list[str]]:
        """The keys as Lua calls: grouped by hash tag (one slot each), at most KEYS_PER_CALL each."""
        groups: dict[int, list[str]]
        if self._groups == 1:
            groups = {0: [self._key(key) for key in keys]}
        else:
            groups = {}
            for key in keys:
                tag = self._tag(key)
                groups.setdefault(tag, []).append(self._key(key, tag))
        return [
            names[at : at + KEYS_PER_CALL]
            for names in groups.values()
            for at in range(0, len(names), KEYS_PER_CALL)
        ]

    async def push(self, keys: Sequence[str], item: int) -> int:
        calls = self._calls(keys)
        with outage_as_unavailable("redis timelines"):
            if self._groups == 1:
                return sum(
                    [int(await self._push(keys=c, args=[item, self.max_len])) for c in calls]
                )
            room = asyncio.Semaphore(CLUSTER_CALLS_AT_ONCE)

            async def call(names: list[str]) -> int:
                async with room:
                    return int(await self._push(keys=names, args=[item, self.max_len]))

            return sum(await asyncio.gather(*(call(c) for c in calls)))

    async def extend(self, key: str, items: Sequence[int]) -> bool:
        if not items:
            return await self.window(key, None, 0) is not None
        with outage_as_unavailable("redis timelines"):
            return bool(await self._extend(keys=[self._key(key)], args=[self.max_len, *items]))

    async def remove(self, keys: Sequence[str], items: Sequence[int]) -> None:
        if not keys or not items:
            return
        with outage_as_unavailable("redis timelines"):
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.zrem(self._key(key), *items)
                await pipe.execute()

    async def build(
        self, key: str, items: Sequence[int], *, complete: bool, ttl_s: float | None
    ) -> None:
        newest = sorted(set(items), reverse=True)
        complete = complete and len(newest) <= self.max_len
        pairs = [str(i) for i in newest[: self.max_len] for _ in (0, 1)]  # score, member
        with outage_as_unavailable("redis timelines"):
            await self._build(
                keys=[self._key(key)], args=[0 if complete else -1, _ttl_ms(ttl_s), *pairs]
            )

    async def window(
        self, key: str, before: int | None, count: int, *, ttl_s: float | None = None
    ) -> Window | None:
        return (await self.windows([key], before, count, ttl_s=ttl_s))[0]

    async def windows(
        self, keys: Sequence[str], before: int | None, count: int, *, ttl_s: float | None = None
    ) -> list[Window | None]:
        args: list[str | int] = [
            f"({before}" if before is not None else "+inf",
            count,
            _ttl_ms(ttl_s),
        ]
        by_tag: dict[int, list[int]] = {}  # the keys' positions, by hash tag
        for at, key in enumerate(keys):
            by_tag.setdefault(self._tag(key), []).append(at)
        groups = list(
            by_tag.values()
        )  # one on a single Redis; a call per node's slot group on a cluster
        with outage_as_unavailable("redis timelines"):
            replies = await asyncio.gather(
                *(self._windows(keys=[self._key(keys[at]) for at in g], args=args) for g in groups)
            )
        out: list[Window | None] = [None] * len(keys)
        for positions, found in zip(groups, replies, strict=True):
            for at, reply in zip(positions, cast(list[list[bytes]], found), strict=True):
                if reply:
                    out[at] = Window([int(i) for i in reply[1:]], float(reply[0]) == 0)
        return out

    async def drop(self, *keys: str) -> None:
        if keys:
            with outage_as_unavailable("redis timelines"):
                await self._client.delete(
                    *[self._key(k) for k in keys]
                )  # split by slot on a cluster


def _ttl_ms(ttl_s: float | None) -> int:
    return 0 if ttl_s is None else math.ceil(ttl_s * 1000)


# --- Memory ----------------------------------------------------------------------------------------


@dataclass
class _Timeline:
    ids: list[int] = field(default_factory=list)  # ascending, for bisect
    complete: bool = True
    expires_at: float | None = None


class MemoryTimelines:
    """The same semantics in a dict, for the embedded default (and lost with the process, like a cache)."""

    def __init__(self, *, max_len: int = 800, clock: Clock | None = None) -> None:
        self.max_len = max_len
        self._clock = clock or SystemClock()
        self._data: dict[str, _Timeline] = {}

    def _get(self, key: str) -> _Timeline | None:
        timeline = self._data.get(key)
        expires_at = None if timeline is None else timeline.expires_at
        if expires_at is not None and self._clock.monotonic() >= expires_at:
            del self._data[key]
            return None
        return timeline

    def _add(self, timeline: _Timeline, item: int) -> None:
        at = bisect.bisect_left(timeline.ids, item)
        if at < len(timeline.ids) and timeline.ids[at] == item:
            return
        timeline.ids.insert(at, item)
        if len(timeline.ids) > self.max_len:
            del timeline.ids[: len(timeline.ids) - self.max_len]
            timeline.complete = False

    async def push(self, keys: Sequence[str], item: int) -> int:
        added = 0
        for key in keys:
            timeline = self._get(key)
            if timeline is not None:
                self._add(timeline, item)
                added += 1
        return added

    async def extend(self, key: str, items: Sequence[int]) -> bool:
        timeline = self._get(key)
        if timeline is None:
            return False
        for item in items:
            self._add(timeline, item)
        return True

    async def remove(self, keys: Sequence[str], items: Sequence[int]) -> None:
        gone = set(items)
        for key in keys:
            timeline = self._get(key)
            if timeline is not None:
                timeline.ids = [i for i in timeline.ids if i not in gone]

    async def build(
        self, key: str, items: Sequence[int], *, complete: bool, ttl_s: float | None
    ) -> None:
        ids = sorted(set(items))
        self._data[key] = _Timeline(
            ids[-self.max_len :] if self.max_len else [],
            complete and len(ids) <= self.max_len,
            self._expiry(ttl_s),
        )

    async def window(
        self, key: str, before: int | None, count: int, *, ttl_s: float | None = None
    ) -> Window | None:
        timeline = self._get(key)
        if timeline is None:
            return None
        if ttl_s is not None:
            timeline.expires_at = self._expiry(ttl_s)
        end = len(timeline.ids) if before is None else bisect.bisect_left(timeline.ids, before)
        return Window(timeline.ids[max(0, end - count) : end][::-1], timeline.complete)

    async def windows(
        self, keys: Sequence[str], before: int | None, count: int, *, ttl_s: float | None = None
    ) -> list[Window | None]:
        return [await self.window(key, before, count, ttl_s=ttl_s) for key in keys]

    async def drop(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    def _expiry(self, ttl_s: float | None) -> float | None:
        return None if ttl_s is None else self._clock.monotonic() + ttl_s
