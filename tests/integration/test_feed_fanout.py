"""Fan-out under failure: a consumer killed mid-batch, and Redis going away under the feed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from plaza.accounts.service import User
from plaza.bootstrap import Platform, Services, build_services, close_platform, open_platform
from plaza.feed import fanout
from plaza.feed.fanout import GROUP, STREAM, FanOut
from plaza.feed.service import home_key
from plaza.feed.timelines import Timelines
from plaza.platform.consumer import run_consumer
from plaza.settings import Settings
from tests.conftest import register
from tests.integration.test_feed_api import contents, eventually, follow, post
from tests.tcp_proxy import TcpProxy

FOLLOWERS = 7


class Killed(BaseException):
    """The consumer process dying: nothing after this point of the batch runs, nothing is acked."""


class DiesAfter:
    """Timelines that let `pushes` batches through, then kill their consumer."""

    def __init__(self, inner: Timelines, pushes: int) -> None:
        self.inner, self.left, self.max_len = inner, pushes, inner.max_len

    async def push(self, keys: Sequence[str], item: int) -> int:
        if self.left == 0:
            raise Killed
        self.left -= 1
        return await self.inner.push(keys, item)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
async def system(backend: dict[str, str]) -> AsyncIterator[tuple[Platform, Services]]:
    settings = Settings(_env_file=None, env="test", run_workers=False, **backend)  # type: ignore[call-arg]
    platform = await open_platform(settings)
    services = build_services(platform)
    yield platform, services
    await close_platform(platform)


@pytest.fixture
async def paged_followers(
    system: tuple[Platform, Services], monkeypatch: pytest.MonkeyPatch
) -> tuple[User, list[User]]:
    """An author and FOLLOWERS followers, each with the timeline fan-out writes to, in pages of 2."""
    monkeypatch.setattr(fanout, "FOLLOWER_PAGE", 2)  # 7 followers: four pages
    accounts, feed = system[1].accounts, system[1].feed
    author = await accounts.register("author", "correct horse", None)
    followers = [
        await accounts.register(f"fan{i}", "correct horse", None) for i in range(FOLLOWERS)
    ]
    for user in followers:
        await feed.follow(user, "author", on=True)
    for user in [author, *followers]:
        await feed.feed(user, 20, None, "chronological")  # builds the timeline
    return author, followers


@pytest.mark.anyio
async def test_a_consumer_killed_mid_batch_loses_no_follower(
    system: tuple[Platform, Services], paged_followers: tuple[User, list[User]]
) -> None:
    platform, services = system
    feed = services.feed
    author, followers = paged_followers
    made = await feed.create_post(author, "hello", [], None)
    assert await services.relay.step() == 1  # outbox -> stream
    post_id = int(made["id"])

    # The first consumer writes two pages, then dies holding the entry, unacked.
    doomed = FanOut(feed, platform.db, platform.metrics)
    real_timelines = feed.timelines
    feed.timelines = DiesAfter(real_timelines, pushes=3)  # type: ignore[assignment]
    await platform.streams.ensure_group(STREAM, GROUP)
    [entry] = await platform.streams.read(STREAM, GROUP, "doomed", 10, 0)
    with pytest.raises(Killed):
        await doomed.handle(entry)
    feed.timelines = real_timelines
    reached = [
        u
        for u in followers
        if post_id in (await feed.timelines.window(home_key(u.id), None, 5)).ids  # type: ignore[union-attr]
    ]
    assert 0 < len(reached) < FOLLOWERS

    # Another consumer claims the stale entry and finishes it: everyone, once each.
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_consumer(
            platform.streams,
            platform.metrics,
            services.fanout.handle,
            stream=STREAM,
            group=GROUP,
            consumer="survivor",
            stop=stop,
            stale_ms=100,
        )
    )
    everyone = [author, *followers]
    try:
        for _ in range(200):
            windows = [await feed.timelines.window(home_key(u.id), None, 10) for u in everyone]
            if all(w is not None and post_id in w.ids for w in windows):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    for user in everyone:
        window = await feed.timelines.window(home_key(user.id), None, 10)
        assert window is not None and window.ids == [post_id], user.username
        page = await feed.feed(user, 20, None, "chronological")
        assert [p["id"] for p in page.items] == [made["id"]]


def test_redis_going_away_keeps_the_feed_correct_from_sql(
    app_factory: Any, pg_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    host, port = redis_url.split("//")[1].split("/")[0].split(":")
    proxy = TcpProxy(host, int(port))
    proxy.start()
    proxied = redis_url.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}")
    client = app_factory(database_url=pg_database_url, redis_url=proxied, redis_prefix=redis_prefix)
    try:
        alice, bob = register(client, "alice"), register(client, "bob")
        follow(client, alice, "bob")
        post(client, bob, "before")
        assert contents(client, alice) == ["before"]

        proxy.stop()
        post(client, bob, "during")  # committed with its outbox row; fan-out waits for Redis
        assert contents(client, alice) == ["during", "before"]
        assert contents(client, alice, mode="ranked") == ["during", "before"]

        proxy.start()  # back: the outbox drains, fan-out catches up, the cache serves again
        post(client, bob, "after")
        eventually(lambda: contents(client, alice) == ["after", "during", "before"], 10)
    finally:
        proxy.close()


@pytest.mark.anyio
async def test_a_post_deleted_before_its_fan_out_reaches_no_follower(
    system: tuple[Platform, Services],
) -> None:
    platform, services = system
    accounts, feed = services.accounts, services.feed
    author = await accounts.register("author", "correct horse", None)
    fan = await accounts.register("fan", "correct horse", None)
    await feed.follow(fan, "author", on=True)
    await feed.feed(fan, 20, None, "chronological")  # builds the timeline fan-out writes to
    kept = await feed.create_post(author, "kept", [], None)
    gone = await feed.create_post(author, "gone", [], None)
    await feed.delete_post(author, gone["id"])
    frames: list[dict[str, Any]] = []

    class Recorder:
        async def deliver(self, user_ids: Sequence[int], frame: dict[str, Any], **_: Any) -> None:
            frames.extend(frame for _ in user_ids)

    feed.pusher = Recorder()
    fan_out = FanOut(feed, platform.db, platform.metrics)
    await fan_out.post(author.id, int(gone["id"]))  # its delete's own fan-out is not run
    await fan_out.post(author.id, int(kept["id"]))
    window = await feed.timelines.window(home_key(fan.id), None, 10)
    assert window is not None and window.ids == [int(kept["id"])]
    assert [f["post"]["id"] for f in frames] == [kept["id"]]


@pytest.mark.anyio
@pytest.mark.parametrize(("waiting_max", "reached"), [(None, FOLLOWERS), (4, 4)])
async def test_a_slow_post_view_holds_up_pushes_only_past_a_bound_and_every_frame_goes(
    system: tuple[Platform, Services],
    paged_followers: tuple[User, list[User]],
    monkeypatch: pytest.MonkeyPatch,
    waiting_max: int | None,
    reached: int,
) -> None:
    """Pushes go on while the frame's view loads, until that many followers wait for their frame."""
    platform, services = system
    feed = services.feed
    author, followers = paged_followers
    if waiting_max is not None:
        monkeypatch.setattr(fanout, "FRAMES_WAITING_MAX", waiting_max)
    made = await feed.create_post(author, "hello", [], None)
    post_id = int(made["id"])
    view_ready = asyncio.Event()
    real_views = feed.post_views

    async def slow_views(ids: Sequence[int]) -> dict[int, Any]:
        await view_ready.wait()
        return await real_views(ids)

    delivered: list[int] = []

    class Recorder:
        async def deliver(self, user_ids: Sequence[int], frame: dict[str, Any], **_: Any) -> None:
            assert frame["post"]["id"] == made["id"]
            delivered.extend(user_ids)

    monkeypatch.setattr(feed, "post_views", slow_views)
    feed.pusher = Recorder()
    fan_out = asyncio.create_task(
        FanOut(feed, platform.db, platform.metrics).post(author.id, post_id)
    )

    async def having_it() -> int:
        windows = [await feed.timelines.window(home_key(u.id), None, 5) for u in followers]
        return sum(1 for w in windows if w is not None and post_id in w.ids)

    for _ in range(50):
        await asyncio.sleep(0.01)
    assert await having_it() == reached and not fan_out.done() and delivered == []
    view_ready.set()
    await fan_out
    assert await having_it() == FOLLOWERS
    assert sorted(delivered) == sorted(u.id for u in followers)
