"""CPU per batch of chat's message writer on PostgreSQL: `chatwriter.py [--sizes 1,5,20,100]`.

The writer stores every batch of sends in one transaction (chat/writer.py); its cost is mostly round
trips, each a few hundred microseconds of CPU on a small virtual machine. This calls it directly, on a
fresh database seeded as the chat benchmark seeds it (10,000 users in conversations of 2 and 10), with
batches of random members' sends of each size in turn, and prints the process's CPU time (user +
system, the driver's share of each round trip included) and the wall time per batch.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import os
import random
import tempfile
import time
from pathlib import Path

import chatseed
import targets

from plaza.chat.writer import Draft, MessageWriter
from plaza.platform.db import Database
from plaza.platform.ids import SnowflakeIds

USERS = 10_000
BATCHES = 2_000  # sends per size, at least 20 batches


async def measure(url: str, members: list[chatseed.Member], sizes: list[int]) -> None:
    db = Database.from_url(url)
    writer = MessageWriter(db, SnowflakeIds(1), lambda: dt.datetime.now(dt.UTC))
    counter = itertools.count()

    def batch(size: int) -> list[Draft]:
        picks = random.choices(members, k=size)
        return [
            Draft(m.user_id, m.conversation_id, f"c{next(counter)}", "hello " * 8, "text")
            for m in picks
        ]

    try:
        for size in sizes:
            reps = max(20, BATCHES // size)
            for _ in range(5):  # warm: connections opened, statements prepared
                await writer._write(batch(size))
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(reps):
                outcomes = await writer._write(batch(size))
                assert not any(isinstance(o, Exception) for o in outcomes), outcomes
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(
                f"batch of {size:4d}: CPU {1000 * cpu / reps:6.2f} ms a batch, "
                f"{1000 * cpu / reps / size:6.3f} ms a send; wall {1000 * wall / reps:6.2f} ms a batch",
                flush=True,
            )
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,5,20,100,1,5,20,100")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with targets.postgres_database(f"plaza_writerbench_{os.getpid()}") as url:
        with tempfile.TemporaryDirectory() as scratch:
            targets.migrate(url, Path(scratch) / "migrate.log")
        members = chatseed.layout(USERS, [2, 10], tokens=True)
        asyncio.run(chatseed.seed(url, members))
        asyncio.run(measure(url, members, sizes))


if __name__ == "__main__":
    main()
