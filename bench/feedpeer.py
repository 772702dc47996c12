"""The peer: stream-framework-plus fanning one activity out to the same followers, on the same Redis.

Installed into Plaza's venv for the benchmark only (see bench/README.md):
    .venv/bin/pip install stream-framework-plus celery

Its Redis backend as documented: a `RedisFeed` per follower (a sorted set of activity ids, here with
max_length 800 like Plaza's timelines), the activity itself in its sharded activity hash, and a
`Manager` whose `add_user_activity` stores the activity, adds it to the author's own feed and
creates one Celery fan-out task per `fanout_chunk_size` (100) followers. Celery runs with
`task_always_eager`, so every task runs at once, in this process, one after another: no broker or
worker latency is counted against the peer, only its own work, which includes pickling each task's
arguments (Celery 5 serializes eager tasks too; pickle, since the tasks carry classes). Its followers come from the same
PostgreSQL `follows` table, in one query per post (Plaza pages them 1,000 at a time).

Every key is under the run's prefix, and the followers' feeds exist beforehand with the same number
of ids as Plaza's timelines (made like Plaza's: one built with the peer's own `add_many`, copied
with DUMP/RESTORE).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import asyncpg
import redis
from feedfanout import RESTORE_BATCH, Trials

try:
    from celery import Celery
    from stream_framework.activity import Activity
    from stream_framework.feed_managers.base import FanoutPriority, Manager
    from stream_framework.feeds.redis import RedisFeed
    from stream_framework.storage.redis.activity_storage import RedisActivityStorage
    from stream_framework.verbs.base import Add
except ImportError as exc:  # the peer is optional: the report says how to install it
    MISSING: str | None = str(exc)
else:
    MISSING = None

NAME = "stream-framework-plus"


def version() -> str:
    from importlib.metadata import version as dist_version

    return dist_version("stream-framework-plus")


_followers_db: dict[str, Any] = {}  # the loop and connection get_user_follower_ids queries

if MISSING is None:
    # Module-level classes: Celery pickles the manager and feed classes into every task, and
    # pickle finds classes by name. `configure` sets their keys.

    class PeerActivities(RedisActivityStorage):  # type: ignore[misc]
        key = "sfp:activities"

        def get_key(self) -> str:
            return self.key

    class PeerFeed(RedisFeed):  # type: ignore[misc]
        key_format = "sfp:feed:%(user_id)s"
        max_length = 800
        activity_storage_class = PeerActivities

    class PeerUserFeed(PeerFeed):
        key_format = "sfp:user_feed:%(user_id)s"
        max_length = 10**6

    class PeerManager(Manager):  # type: ignore[misc]
        feed_classes = {"normal": PeerFeed}
        user_feed_class = PeerUserFeed

        def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
            loop, conn = _followers_db["loop"], _followers_db["conn"]
            rows = loop.run_until_complete(
                conn.fetch("SELECT follower_id FROM follows WHERE followee_id = $1", user_id)
            )
            return {FanoutPriority.HIGH: [int(r[0]) for r in rows]}


def configure(prefix: str, dsn: str) -> None:
    """Keys under `prefix`, followers from `dsn`, Celery eager (pickle, as the peer needs)."""
    app = Celery("plaza-feed-bench", broker="memory://", backend="cache+memory://")
    app.conf.update(
        task_always_eager=True,
        task_eager_propagates=True,
        task_serializer="pickle",
        result_serializer="pickle",
        accept_content=["pickle"],
    )
    app.set_default()
    PeerActivities.key = f"{prefix}sfp:activities"
    PeerFeed.key_format = f"{prefix}sfp:feed:%(user_id)s"
    PeerUserFeed.key_format = f"{prefix}sfp:user_feed:%(user_id)s"
    loop = asyncio.new_event_loop()
    _followers_db.update(loop=loop, conn=loop.run_until_complete(asyncpg.connect(dsn)))


def unconfigure() -> None:
    loop, conn = _followers_db.pop("loop"), _followers_db.pop("conn")
    loop.run_until_complete(conn.close())
    loop.close()


def _activity(author: int, n: int) -> Any:
    return Activity(author, Add, n, time=dt.datetime.now(dt.UTC).replace(tzinfo=None))


def measure(
    redis_url: str,
    prefix: str,
    dsn: str,
    author: int,
    followers: list[int],
    fill: int,
    repeat: int,
) -> Trials:
    """Seconds per `add_user_activity` of one new activity, and the timeline inserts it made."""
    configure(prefix, dsn)
    feed, manager = PeerFeed, PeerManager()
    client = redis.Redis.from_url(redis_url)
    trials = Trials()
    try:
        template = feed("template")
        template.add_many([_activity(author, 10**9 - i) for i in range(fill)], trim=False)
        payload = client.dump(template.key)
        keys = [feed(f).key for f in followers]
        for start in range(0, len(keys), RESTORE_BATCH):
            with client.pipeline(transaction=False) as pipe:
                for key in keys[start : start + RESTORE_BATCH]:
                    pipe.restore(key, 0, payload, replace=True)
                pipe.execute()
        client.delete(template.key)
        last = feed(followers[-1])
        manager.add_user_activity(author, _activity(author, repeat + 1))  # not timed, as ours
        for n in range(repeat):
            activity = _activity(author, n + 1)
            started = time.perf_counter()
            manager.add_user_activity(author, activity)
            trials.add(time.perf_counter() - started, len(followers) + 1)
            if client.zscore(last.key, str(activity.serialization_id)) is None:
                raise RuntimeError(f"{NAME} did not reach the last follower")
    finally:
        for start in range(0, len(followers), 1000):
            client.unlink(*[feed(f).key for f in followers[start : start + 1000]])
        client.close()
        unconfigure()
    return trials
