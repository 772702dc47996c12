"""Plaza's feed benchmark: fan-out against stream-framework-plus, feed reads over HTTP, timeline memory.

    .venv/bin/python bench/feed.py [--fanout 10000:800,10000:50,100000:50] [--repeat 3]
                                   [--readers 1000] [--duration 10] [--connections 8,16,64]
                                   [--only fanout|reads|memory] [--no-peer] [--no-save] [--keep]

Needs PostgreSQL and Redis as bench/run.py does, and wrk. Prints a Markdown report and appends it to
bench/RESULTS.md. bench/README.md explains every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import feedfanout
import feedpeer
import feedreads
import feedreport
import report
import targets
from feedfanout import FanoutRow, Trials
from feedseed import World, seed

BENCH = Path(__file__).resolve().parent
LISTPACK_ENTRIES = [128, 1024]  # Redis's default, and one above the 800-id cap


@dataclass
class FeedRun:
    args: argparse.Namespace
    work: Path
    prefix: str
    world: World
    seeded: dict[str, int] = field(default_factory=dict)
    seed_s: float = 0.0
    fanout: list[FanoutRow] = field(default_factory=list)
    peer: dict[tuple[int, int], Trials | str] = field(default_factory=dict)
    memory: list[dict[str, Any]] = field(default_factory=list)
    reads: list[feedreads.Reads] = field(default_factory=list)

    def step(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _fill_ids(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return [int(r[0]) for r in await conn.fetch("SELECT id FROM posts ORDER BY id DESC")]
    finally:
        await conn.close()


async def _in_process(run: FeedRun, database_url: str) -> None:
    """Migrate, seed, then memory and fan-out through Plaza's own objects in this process."""
    args, world = run.args, run.world
    settings = feedfanout.settings_for(database_url, targets.REDIS_URL, run.prefix)
    async with feedfanout.plaza(settings) as (platform, services):
        run.step(f"seeding {world.last_id:,} users, their follows, posts and tokens (COPY)")
        started = time.perf_counter()
        run.seeded = await seed(_plain_dsn(database_url), world)
        run.seed_s = time.perf_counter() - started
        ids = await _fill_ids(_plain_dsn(database_url))
        if args.memory:
            run.step("memory per 800-id timeline, zset-max-listpack-entries 128 and 1024")
            run.memory = await feedfanout.memory_per_timeline(platform, ids, LISTPACK_ENTRIES)
        if not args.fanout:
            return
        authors = dict(zip(world.fanout_sizes, world.fanout_authors, strict=True))
        for size, fill in args.fanout_rows:
            run.step(f"fan-out to {size:,} followers holding {fill} ids, {args.repeat} times")
            followers = list(range(1, size + 1))
            row = await feedfanout.measure(
                platform, services, authors[size], followers, ids[:fill], args.repeat
            )
            run.fanout.append(row)
            if args.peer:
                # in a thread of its own: the peer is synchronous, and this loop waits idle meanwhile
                run.peer[(size, fill)] = await asyncio.to_thread(
                    _peer, run, database_url, authors[size], followers, fill
                )
                assert platform.redis is not None
                await feedfanout.settle(platform.redis)
        await feedfanout.clear_outbox(platform)


def _peer(
    run: FeedRun, database_url: str, author: int, followers: list[int], fill: int
) -> Trials | str:
    if feedpeer.MISSING:
        return f"not installed ({feedpeer.MISSING})"
    run.step(f"{feedpeer.NAME}: fan-out to {len(followers):,} followers, {run.args.repeat} times")
    return feedpeer.measure(
        targets.REDIS_URL,
        run.prefix,
        _plain_dsn(database_url),
        author,
        followers,
        fill,
        run.args.repeat,
    )


def _reads(run: FeedRun, database_url: str) -> None:
    args, world = run.args, run.world
    with targets.plaza(
        run.work / "serve", database_url, targets.REDIS_URL, redis_prefix=run.prefix
    ) as server:
        kinds = {
            "full": [world.tokens[r] for r in world.full_readers],
            "celebrities": [world.tokens[r] for r in world.celebrity_readers],
        }
        for kind, tokens in kinds.items():
            run.step(f"reads ({kind}): warm pass over {len(tokens):,} readers")
            warmed = feedreads.warm(server.url, tokens)
            for connections in args.connections:
                run.step(f"reads ({kind}): wrk, {connections} connections, {args.duration} s")
                run.reads.append(
                    feedreads.measure(
                        server.url,
                        server.pid,
                        kind,
                        tokens,
                        work=run.work,
                        duration_s=args.duration,
                        connections=connections,
                        threads=args.threads,
                        warmed=warmed,
                    )
                )


def execute(run: FeedRun) -> None:
    with targets.postgres_database(f"plaza_feedbench_{os.getpid()}") as database_url:
        try:
            asyncio.run(_in_process(run, database_url))
            if run.args.reads:
                _reads(run, database_url)
        finally:
            targets.delete_redis_keys(targets.REDIS_URL, run.prefix)


def _fanout_rows(text: str) -> list[tuple[int, int]]:
    rows = []
    for item in text.split(","):
        followers, _, fill = item.strip().partition(":")
        rows.append((int(followers), int(fill or 800)))
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fanout",
        dest="fanout_rows",
        type=_fanout_rows,
        default=_fanout_rows("10000:800,10000:50,100000:50"),
        help="comma list of FOLLOWERS:IDS (ids each follower's timeline holds beforehand)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each fan-out")
    parser.add_argument("--readers", type=int, default=1000, help="readers of each kind")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument(
        "--connections",
        type=lambda s: [int(c) for c in s.split(",")],
        default=[8, 16, 64],
        help="wrk connections; a comma list runs each (8: light load; 16: near saturation, where "
        "the read target is checked; 64: saturated, where latency is queueing)",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--only", choices=["fanout", "reads", "memory"])
    parser.add_argument("--no-peer", dest="peer", action="store_false")
    parser.add_argument("--no-save", dest="save", action="store_false", help="print only")
    parser.add_argument("--keep", action="store_true", help="keep bench/.work/feed-PID")
    args = parser.parse_args(argv)
    args.fanout = args.only in (None, "fanout")
    args.reads = args.only in (None, "reads")
    args.memory = args.only in (None, "memory")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report.stop_on_signals()
    pid = os.getpid()
    sizes = sorted({size for size, _ in args.fanout_rows}) if args.fanout else []
    world = World(followers=max(sizes, default=10_000), fanout_sizes=sizes, readers=args.readers)
    run = FeedRun(args, BENCH / ".work" / f"feed-{pid}", f"plaza-feedbench-{pid}:", world)
    report.run_in(
        run.work,
        "feed benchmark",
        lambda: execute(run),
        lambda head, seconds: feedreport.render(run, head, seconds),
        save=args.save,
        keep=args.keep,
    )


if __name__ == "__main__":
    main()
