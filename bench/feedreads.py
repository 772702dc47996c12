"""Feed reads over HTTP: one `plaza serve` process on PostgreSQL + Redis, wrk with a pool of tokens.

Two kinds of reader, `--readers` of each, seeded by feedseed.py:
- full: follows 50 authors with 2,000 posts between them, so their home timeline holds 800 ids (the
  cap) and the page is read from it;
- celebrities: follows 20 celebrities (authors above the celebrity threshold), whose posts are not
  pushed but merged at read time from each one's recent-posts timeline.

Before wrk, a warm pass (this process, asyncio, 16 connections) reads every reader's first page once:
that builds their timelines, fills the post and token caches, and checks each answer (200, a full
page). Then wrk GETs /api/v1/feed?limit=20 (chronological, the default) cycling through the tokens.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rawhttp import Connection
from wrkrun import WrkResult, run_script

FEED_LUA = Path(__file__).resolve().parent / "feed.lua"
FEED_PATH = "/api/v1/feed?limit=20"
PAGE = 20
WARM_CONNECTIONS = 16


@dataclass
class Reads:
    kind: str
    readers: int
    connections: int
    wrk: WrkResult
    warm: dict[str, Any]
    cpu_s: float  # CPU time the serving process used during the wrk run

    @property
    def cpu_ms_per_read(self) -> float:
        return self.cpu_s * 1000 / max(1, self.wrk.requests)

    @property
    def busy(self) -> float:
        """The share of one core the serving process used."""
        return self.cpu_s / self.wrk.seconds


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _warm(url: str, tokens: list[str]) -> dict[str, Any]:
    statuses, short_pages, todo = Counter[str](), 0, iter(tokens)

    async def work() -> None:
        nonlocal short_pages
        conn = Connection(url)
        try:
            for token in todo:
                headers = {"Authorization": f"Bearer {token}"}
                response = await conn.request("GET", FEED_PATH, headers=headers)
                statuses[str(response.status)] += 1
                if response.status == 200 and len(json.loads(response.body)["items"]) < PAGE:
                    short_pages += 1
        finally:
            conn.close()

    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(work() for _ in range(WARM_CONNECTIONS)))
    return {
        "statuses": dict(statuses),
        "short_pages": short_pages,
        "seconds": loop.time() - started,
    }


def warm(url: str, tokens: list[str]) -> dict[str, Any]:
    return asyncio.run(_warm(url, tokens))


def measure(
    url: str,
    pid: int,
    kind: str,
    tokens: list[str],
    *,
    work: Path,
    duration_s: int,
    connections: int,
    threads: int,
    warmed: dict[str, Any],
) -> Reads:
    tokens_file = work / f"tokens-{kind}.txt"
    tokens_file.write_text("".join(f"{t}\n" for t in tokens))
    cpu_before = cpu_seconds(pid)
    result = run_script(
        url,
        FEED_LUA,
        [str(tokens_file), FEED_PATH],
        duration_s=duration_s,
        log=work / f"wrk-feed-{kind}-c{connections}.log",
        connections=connections,
        threads=threads,
    )
    return Reads(kind, len(tokens), connections, result, warmed, cpu_seconds(pid) - cpu_before)
