"""Timelines: capped lists of post ids, newest first, as a port: in process memory, or Redis sorted sets.

A timeline is a home feed (`home:<user id>`) or a celebrity's recent posts (`author:<user id>`). Each
holds the newest `max_len` ids it was given, and at most `trim_slack` more: a push that takes it past
`max_len + trim_slack` trims it back to `max_len` (approximate trimming, as Redis's `XADD MAXLEN ~`).
On full timelines, which take most pushes, that is a trim every `trim_slack` pushes instead of each
time: half of a push's cost in Redis (bench/feed.py). Ids are Snowflake ids below 2**53, so a
sorted-set score (a double) holds them exactly and the score alone orders them.

A timeline exists only once it was built (from SQL, by the reader that found it missing). Pushes go only
to timelines that exist: a follower whose timeline expired (inactive for `ttl_s`) or was never built
costs the fan-out nothing, and gets a complete one rebuilt when they come back. A timeline also knows
whether it is complete, that is whether it ever dropped ids or was built from a cut-off list: a reader
who reaches the end of a complete timeline has seen everything, of an incomplete one must go on in SQL.

An incomplete timeline is exact only down to its floor, the lowest id it kept when it was last trimmed
or built: below the floor only SQL knows what is missing. An older id that arrives later (a follow's
backfill, a late fan-out) may still land in it, so reads never go below the floor.

Reads that arrive while a read is in flight share the next round trip (one Lua call per set of
arguments and hash tag), as group commit does for writes.

In Redis each timeline is one sorted set of the ids scored minus themselves, so the newest id is the
first member: a push inserts and a read starts at the head of the skip list instead of walking to its
tail, a quarter less of Redis's work a push (bench/feed.py). Its last member is a marker, "~", scored
0 while the timeline is complete and its floor once it is not. Pushes run as one Lua call per batch of
timelines. Lua would print a number of 16 digits in 14 (`%.14g`), so ids and floors travel as the
strings Redis and Python wrote. Key names carry the layout (`tl2:`): timelines of an earlier one are
never read, and expire unread.

On a Redis Cluster a Lua call may only touch keys of one hash slot, so timeline keys carry a hash tag,
one of `slot_groups` (`tl2:{7}:home:42`): a batch is split by tag, each part one call, the parts run
side by side on their nodes. Fewer groups mean fewer, larger calls; more spread memory more evenly.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from plaza.platform.batching import Batcher
from plaza.platform.clock import Clock, SystemClock
from plaza.platform.kv import outage_as_unavailable

__all__ = ["MemoryTimelines", "RedisTimelines", "Timelines", "Window"]

TRIM_SLACK_SHARE = (
    25  # by default a timeline may run 1/25 over max_len (32 ids over 800) before a trim
)


def default_trim_slack(max_len: int) -> int:
    return max_len // TRIM_SLACK_SHARE


class Window(NamedTuple):  # a tuple: a read of 20 celebrities makes 20 of them
    ids: list[int]  # newest first, all below the `before` asked for
    complete: bool  # the timeline never dropped an id: nothing older exists beyond `ids`' end


class Timelines(Protocol):
    max_len: int  # the ids a timeline keeps when it is trimmed
    trim_slack: int  # how many more it may hold before it is

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

# KEYS: timelines; ARGV: the item, max_len, trim_slack. Pushes into those that exist (a timeline always
# holds its marker, so ZCARD is 0 only for one that does not). Past max_len + trim_slack ids, the oldest
# go, and the marker, always the last member, is scored the new floor: the oldest id kept.
_PUSH = """
local n = 0
local max = tonumber(ARGV[2])
local limit = max + tonumber(ARGV[3])
local item = ARGV[1]
local score = '-' .. item
for _, key in ipairs(KEYS) do
  local size = redis.call('ZCARD', key)
  if size > 0 then
    size = size + redis.call('ZADD', key, score, item)
    if size - 1 > limit then
      redis.call('ZREMRANGEBYRANK', key, max, -2)
      redis.call('ZADD', key, redis.call('ZRANGE', key, max - 1, max - 1)[1], '~')
    end
    n = n + 1
  end
end
return n
"""

# KEYS: one timeline; ARGV: max_len, trim_slack, then the items. Trims as _PUSH does.
_EXTEND = """
if not redis.call('ZSCORE', KEYS[1], '~') then return 0 end
local max = tonumber(ARGV[1])
for i = 3, #ARGV, 500 do
  local args = {}
  for j = i, math.min(i + 499, #ARGV) do
    args[#args + 1] = '-' .. ARGV[j]
    args[#args + 1] = ARGV[j]
  end
  redis.call('ZADD', KEYS[1], unpack(args))
end
local size = redis.call('ZCARD', KEYS[1])
if size - 1 > max + tonumber(ARGV[2]) then
  redis.call('ZREMRANGEBYRANK', KEYS[1], max, -2)
  redis.call('ZADD', KEYS[1], redis.call('ZRANGE', KEYS[1], max - 1, max - 1)[1], '~')
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
# Calls in flight at once: on a cluster, slot groups pushed side by side; on one Redis, the next call
# is on its way while Redis runs the one before.
CALLS_AT_ONCE = 16

# KEYS: timelines; ARGV: the lowest score ("(-id", for ids below that one, or "-inf"), count, ttl ms
# (0: none). Per timeline, {} when it does not exist, else its marker's score then up to `count` ids
# below the id asked for and not below its floor, newest first.
# One call, where a pipeline would be three commands a timeline to send and parse (a feed read's
# largest cost in redis-py). Ids go back as integers (exact: below 2**53), which hiredis turns into
# Python ints itself; the marker's score stays a string.
_WINDOWS = """
local out = {}
local count = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  local marker = redis.call('ZSCORE', key, '~')
  if marker then
    local floor = -1
    if marker ~= '0' then floor = '-' .. marker end
    local found = redis.call('ZRANGEBYSCORE', key, ARGV[1], floor, 'LIMIT', 0, count)
    for j, id in ipairs(found) do found[j] = tonumber(id) end
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
        trim_slack: int | None = None,
        slot_groups: int = 16,
    ) -> None:
        self._client, self._prefix, self.max_len = client, prefix, max_len
        self.trim_slack = default_trim_slack(max_len) if trim_slack is None else trim_slack
        self._groups = slot_groups if isinstance(client, RedisCluster) else 1
        if self._groups > 1 and "{" in prefix:
            raise ValueError("a Redis Cluster prefix must not hold '{': it would be the hash tag")
        self._push = client.register_script(_PUSH)
        self._extend = client.register_script(_EXTEND)
        self._build = client.register_script(_BUILD)
        self._windows = client.register_script(_WINDOWS)
        # Concurrent reads share a round trip: redis-py's own work for one call costs a feed read as
        # much as the rest of it (bench/feed.py).
        self._reads: Batcher[_Read, list[Window | None]] = Batcher(self._read)

    def _tag(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self._groups if self._groups > 1 else 0

    def _key(self, key: str, tag: int | None = None) -> str:
        if self._groups == 1:
            return f"{self._prefix}tl2:{key}"
        return f"{self._prefix}tl2:{{{self._tag(key) if tag is None else tag}}}:{key}"

    def redis_key(self, key: str) -> str:
        """The Redis key that timeline `key` lives under."""
        return self._key(key)

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
        args = [item, self.max_len, self.trim_slack]
        room = asyncio.Semaphore(CALLS_AT_ONCE)

        async def call(names: list[str]) -> int:
            async with room:
                return int(await self._push(keys=names, args=args))

        with outage_as_unavailable("redis timelines"):
            return sum(await asyncio.gather(*(call(c) for c in self._calls(keys))))

    async def extend(self, key: str, items: Sequence[int]) -> bool:
        if not items:
            return await self.window(key, None, 0) is not None
        with outage_as_unavailable("redis timelines"):
            return bool(
                await self._extend(
                    keys=[self._key(key)], args=[self.max_len, self.trim_slack, *items]
                )
            )

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
        kept = newest[: self.max_len]
        pairs = [str(v) for i in kept for v in (-i, i)]  # score, member
        marker = 0 if complete else (kept[-1] if kept else 1)
        with outage_as_unavailable("redis timelines"):
            await self._build(keys=[self._key(key)], args=[marker, _ttl_ms(ttl_s), *pairs])

    async def window(
        self, key: str, before: int | None, count: int, *, ttl_s: float | None = None
    ) -> Window | None:
        return (await self.windows([key], before, count, ttl_s=ttl_s))[0]

    async def windows(
        self, keys: Sequence[str], before: int | None, count: int, *, ttl_s: float | None = None
    ) -> list[Window | None]:
        return await self._reads.submit(_Read(keys, before, count, _ttl_ms(ttl_s)))

    async def _read(self, reads: Sequence[_Read]) -> list[list[Window | None]]:
        """The reads that queued behind the last round trip, in one: a Lua call per hash tag and set
        of arguments (one call on a single Redis while readers ask alike, as first pages do)."""
        groups: dict[tuple[str, int, int, int], list[tuple[int, int]]] = {}  # -> (read, key)
        for r, read in enumerate(reads):
            bound = f"(-{read.before}" if read.before is not None else "-inf"
            for k, key in enumerate(read.keys):
                args = (bound, read.wanted, read.ttl_ms, self._tag(key))
                groups.setdefault(args, []).append((r, k))
        calls = [
            self._windows(
                keys=[self._key(reads[r].keys[k], args[3]) for r, k in at], args=list(args[:3])
            )
            for args, at in groups.items()
        ]
        with outage_as_unavailable("redis timelines"):
            # Awaited as it is when alone: a task per call would cost more than its parsing.
            replies = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls)
        out: list[list[Window | None]] = [[None] * len(read.keys) for read in reads]
        for at, found in zip(groups.values(), replies, strict=True):
            for (r, k), reply in zip(at, cast(list[list[Any]], found), strict=True):
                if reply:
                    out[r][k] = Window(reply[1:], float(reply[0]) == 0)
        return out

    async def drop(self, *keys: str) -> None:
        if keys:
            with outage_as_unavailable("redis timelines"):
                await self._client.delete(
                    *[self._key(k) for k in keys]
                )  # split by slot on a cluster


class _Read(NamedTuple):
    keys: Sequence[str]
    before: int | None
    wanted: int  # ids from each timeline
    ttl_ms: int


def _ttl_ms(ttl_s: float | None) -> int:
    return 0 if ttl_s is None else math.ceil(ttl_s * 1000)


# --- Memory ----------------------------------------------------------------------------------------


@dataclass
class _Timeline:
    ids: list[int] = field(default_factory=list)  # ascending, for bisect
    complete: bool = True
    floor: int = 0  # incomplete: ids below it are not read
    expires_at: float | None = None


class MemoryTimelines:
    """The same semantics in a dict, for the embedded default (and lost with the process, like a cache)."""

    def __init__(
        self, *, max_len: int = 800, trim_slack: int | None = None, clock: Clock | None = None
    ) -> None:
        self.max_len = max_len
        self.trim_slack = default_trim_slack(max_len) if trim_slack is None else trim_slack
        self._clock = clock or SystemClock()
        self._data: dict[str, _Timeline] = {}

    def _get(self, key: str) -> _Timeline | None:
        timeline = self._data.get(key)
        expires_at = None if timeline is None else timeline.expires_at
        if expires_at is not None and self._clock.monotonic() >= expires_at:
            del self._data[key]
            return None
        return timeline

    def _add(self, timeline: _Timeline, items: Sequence[int]) -> None:
        for item in items:
            at = bisect.bisect_left(timeline.ids, item)
            if at == len(timeline.ids) or timeline.ids[at] != item:
                timeline.ids.insert(at, item)
        if len(timeline.ids) > self.max_len + self.trim_slack:
            del timeline.ids[: len(timeline.ids) - self.max_len]
            timeline.complete, timeline.floor = False, timeline.ids[0]

    async def push(self, keys: Sequence[str], item: int) -> int:
        added = 0
        for key in keys:
            timeline = self._get(key)
            if timeline is not None:
                self._add(timeline, [item])
                added += 1
        return added

    async def extend(self, key: str, items: Sequence[int]) -> bool:
        timeline = self._get(key)
        if timeline is None:
            return False
        self._add(timeline, items)
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
        kept = ids[-self.max_len :] if self.max_len else []
        complete = complete and len(ids) <= self.max_len
        floor = 0 if complete or not kept else kept[0]
        self._data[key] = _Timeline(kept, complete, floor, self._expiry(ttl_s))

    async def window(
        self, key: str, before: int | None, count: int, *, ttl_s: float | None = None
    ) -> Window | None:
        timeline = self._get(key)
        if timeline is None:
            return None
        if ttl_s is not None:
            timeline.expires_at = self._expiry(ttl_s)
        ids = timeline.ids
        end = len(ids) if before is None else bisect.bisect_left(ids, before)
        start = max(bisect.bisect_left(ids, timeline.floor), end - count, 0)
        return Window(ids[start:end][::-1], timeline.complete)

    async def windows(
        self, keys: Sequence[str], before: int | None, count: int, *, ttl_s: float | None = None
    ) -> list[Window | None]:
        return [await self.window(key, before, count, ttl_s=ttl_s) for key in keys]

    async def drop(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    def _expiry(self, ttl_s: float | None) -> float | None:
        return None if ttl_s is None else self._clock.monotonic() + ttl_s
