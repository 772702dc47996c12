"""The timelines contract: capped, newest first, pushed only where built, and honest about completeness."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from plaza.feed.timelines import RedisTimelines, Timelines, Window
from plaza.platform.kv import PortUnavailable
from tests.contract.conftest import Rig

pytestmark = pytest.mark.anyio

BIG = 2**53 - 1  # the largest Snowflake id: a double must hold it exactly


async def test_a_timeline_that_was_never_built_does_not_exist(timelines: Rig[Timelines]) -> None:
    tl = timelines.port
    assert await tl.window("home:1", None, 10) is None
    assert await tl.push(["home:1"], 7) == 0
    assert await tl.extend("home:1", [1, 2]) is False
    assert await tl.window("home:1", None, 10) is None


async def test_an_empty_built_timeline_exists_and_is_complete(timelines: Rig[Timelines]) -> None:
    await timelines.port.build("home:1", [], complete=True, ttl_s=None)
    window = await timelines.port.window("home:1", None, 10)
    assert window is not None
    assert (window.ids, window.complete) == ([], True)


async def test_pushes_reach_built_timelines_only_newest_first(timelines: Rig[Timelines]) -> None:
    tl = timelines.port
    await tl.build("home:1", [10, 30], complete=True, ttl_s=None)
    await tl.build("home:2", [], complete=True, ttl_s=None)
    assert await tl.push(["home:1", "home:2", "home:3"], 20) == 2
    assert await tl.push(["home:1"], BIG) == 1
    window = await tl.window("home:1", None, 10)
    assert window is not None and window.ids == [BIG, 30, 20, 10]
    assert (await tl.window("home:2", None, 10)) is not None
    assert await tl.window("home:3", None, 10) is None


async def test_pushing_twice_keeps_one(timelines: Rig[Timelines]) -> None:
    tl = timelines.port
    await tl.build("home:1", [1], complete=True, ttl_s=None)
    await tl.push(["home:1"], 2)
    await tl.push(["home:1"], 2)
    window = await tl.window("home:1", None, 10)
    assert window is not None and window.ids == [2, 1]


async def test_windows_page_below_a_cursor(timelines: Rig[Timelines]) -> None:
    tl = timelines.port
    await tl.build("home:1", [1, 2, 3, 4, 5], complete=True, ttl_s=None)
    first = await tl.window("home:1", None, 2)
    assert first is not None and first.ids == [5, 4]
    second = await tl.window("home:1", 4, 2)
    assert second is not None and second.ids == [3, 2]
    last = await tl.window("home:1", 2, 2)
    assert last is not None and (last.ids, last.complete) == ([1], True)
    assert (await tl.window("home:1", 1, 2)) == Window([], True)


async def test_many_windows_at_once_answer_as_each_would_alone(timelines: Rig[Timelines]) -> None:
    tl = timelines.port
    await tl.build("home:1", [1, 2, 3, 4, 5], complete=True, ttl_s=None)
    await tl.build("author:9", range(1, 9), complete=True, ttl_s=0.3)
    keys = ["home:1", "home:404", "author:9"]
    many = await tl.windows(keys, 5, 2, ttl_s=0.3)
    assert many == [await tl.window(k, 5, 2) for k in keys]
    assert many == [Window([4, 3], True), None, Window([4], False)]  # max_len 5 kept 4-8
    assert await tl.windows([], None, 2) == []
    await timelines.elapse(0.2)
    await tl.windows(["author:9"], None, 1, ttl_s=0.3)  # reading keeps it, as window does
    await timelines.elapse(0.2)
    assert await tl.window("author:9", None, 1) is not None


async def test_past_max_len_and_its_slack_the_oldest_go_and_completeness_is_lost(
    timelines: Rig[Timelines],
) -> None:
    tl = timelines.port  # max_len 5, trim_slack 2 in these tests: up to 7 ids, trimmed back to 5
    await tl.build("home:1", [1, 2, 3, 4], complete=True, ttl_s=None)
    for item in (5, 6, 7):
        await tl.push(["home:1"], item)
    full = await tl.window("home:1", None, 10)
    assert full is not None and (full.ids, full.complete) == ([7, 6, 5, 4, 3, 2, 1], True)
    await tl.push(["home:1"], 8)
    trimmed = await tl.window("home:1", None, 10)
    assert trimmed is not None and (trimmed.ids, trimmed.complete) == ([8, 7, 6, 5, 4], False)
    assert await tl.extend("home:1", [9, 10])  # 7 ids: within the slack
    extended = await tl.window("home:1", None, 10)
    assert extended is not None and extended.ids == [10, 9, 8, 7, 6, 5, 4]
    assert await tl.extend("home:1", [11, 12, 13, 14])  # one trim, after all of them are in
    extended = await tl.window("home:1", None, 10)
    assert extended is not None and (extended.ids, extended.complete) == (
        [14, 13, 12, 11, 10],
        False,
    )


async def test_an_incomplete_timeline_is_read_down_to_its_floor_only(
    timelines: Rig[Timelines],
) -> None:
    """Below the lowest id kept, only SQL knows what is missing: a late or backfilled older id that
    lands there must not be read, or a reader paging on would skip what lies between."""
    tl = timelines.port  # max_len 5, trim_slack 2
    await tl.build("home:1", range(10, 18), complete=True, ttl_s=None)  # cut off: keeps 13-17
    assert await tl.extend("home:1", [2, 11])
    cut = await tl.window("home:1", None, 10)
    assert cut is not None and (cut.ids, cut.complete) == ([17, 16, 15, 14, 13], False)
    assert await tl.window("home:1", 13, 10) == Window([], False)
    await tl.build("home:2", [20, 21, 22, 23], complete=True, ttl_s=None)
    for item in (24, 25, 26, 27):  # the last push trims to 23-27
        await tl.push(["home:2"], item)
    assert await tl.push(["home:2"], 5) == 1  # a late fan-out of an old post
    late = await tl.window("home:2", None, 10)
    assert late is not None and (late.ids, late.complete) == ([27, 26, 25, 24, 23], False)
    many = await tl.windows(["home:1", "home:2"], 24, 10)
    assert many == [Window([17, 16, 15, 14, 13], False), Window([23], False)]


async def test_building_from_a_long_or_cut_off_list(timelines: Rig[Timelines]) -> None:
    tl = timelines.port
    await tl.build("home:1", range(1, 9), complete=True, ttl_s=None)
    long = await tl.window("home:1", None, 10)
    assert long is not None and (long.ids, long.complete) == ([8, 7, 6, 5, 4], False)
    await tl.build("home:1", [1, 2], complete=False, ttl_s=None)
    cut = await tl.window("home:1", None, 10)
    assert cut is not None and (cut.ids, cut.complete) == ([2, 1], False)


async def test_remove_takes_items_out_of_many_timelines(timelines: Rig[Timelines]) -> None:
    tl = timelines.port
    await tl.build("home:1", [1, 2, 3], complete=True, ttl_s=None)
    await tl.build("author:9", [2, 3], complete=True, ttl_s=None)
    await tl.remove(["home:1", "author:9", "home:404"], [2, 3, 99])
    one = await tl.window("home:1", None, 10)
    nine = await tl.window("author:9", None, 10)
    assert one is not None and one.ids == [1]
    assert nine is not None and nine.ids == []
    await tl.drop("home:1")
    assert await tl.window("home:1", None, 10) is None


async def test_unread_timelines_expire_and_reading_keeps_them(timelines: Rig[Timelines]) -> None:
    tl = timelines.port
    await tl.build("home:1", [1], complete=True, ttl_s=0.3)
    await tl.build("home:2", [1], complete=True, ttl_s=0.3)
    await timelines.elapse(0.2)
    assert await tl.window("home:1", None, 1, ttl_s=0.3) is not None
    await timelines.elapse(0.2)
    assert await tl.window("home:1", None, 1) is not None
    assert await tl.window("home:2", None, 1) is None
    assert await tl.push(["home:2"], 5) == 0


async def test_a_push_batch_larger_than_one_call(timelines: Rig[Timelines]) -> None:
    tl = timelines.port
    keys = [f"home:{i}" for i in range(2500)]
    for key in keys[::2]:
        await tl.build(key, [], complete=True, ttl_s=None)
    assert await tl.push(keys, 42) == 1250
    window = await tl.window("home:2498", None, 1)
    assert window is not None and window.ids == [42]


async def test_an_unreachable_redis_raises_port_unavailable(dead_redis: aioredis.Redis) -> None:
    tl = RedisTimelines(dead_redis, "x:")
    with pytest.raises(PortUnavailable):
        await tl.push(["home:1"], 1)
    with pytest.raises(PortUnavailable):
        await tl.window("home:1", None, 1)


async def test_reads_made_together_each_get_the_windows_they_asked_for(
    timelines: Rig[Timelines],
) -> None:
    """Reads that arrive together share a round trip in Redis; each still gets its own answer."""
    tl = timelines.port
    await tl.build("home:1", [10, 20, 30], complete=True, ttl_s=None)
    await tl.build("home:2", [15, 25], complete=True, ttl_s=None)
    got = await asyncio.gather(
        tl.windows(["home:1", "home:2"], None, 2),
        tl.window("home:2", None, 10),
        tl.windows(["home:9", "home:1"], 30, 10),
        tl.window("home:1", 20, 1),
    )
    assert got == [
        [Window([30, 20], True), Window([25, 15], True)],
        Window([25, 15], True),
        [None, Window([20, 10], True)],
        Window([10], True),
    ]
