"""Load client, run by bench/run.py as a separate process: seed links, warm caches, measure creates.

    python bench/load.py seed    --url URL --api plaza|liteshort --count N --out CODES_FILE
    python bench/load.py warm    --url URL --codes CODES_FILE [--check-location]
    python bench/load.py creates --url URL --api plaza|liteshort --duration S

Each prints one JSON object on stdout. Line i of a codes file is the code of `long_url(i)`, so the
same line (the same popularity rank in zipf.lua) points at the same destination on every target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

from rawhttp import Connection, Response

REQUEST_TIMEOUT_S = (
    10.0  # wrk's default is 2 s; creates on a busy SQLite may legitimately queue longer
)
SEED_ATTEMPTS = 3


def long_url(i: int) -> str:
    return f"https://example.com/articles/{i:05d}?utm_source=plaza-bench"


async def create(conn: Connection, api: str, long: str) -> tuple[Response, str | None]:
    """Create one link through the target's own API; return the response and the new code."""
    if api == "plaza":
        body = json.dumps({"long_url": long}).encode()
        headers = {"Content-Type": "application/json"}
        response = await conn.request("POST", "/api/v1/shorten", body, headers)
        ok = response.status == 201
        return response, json.loads(response.body)["short_code"] if ok else None
    # liteshort: the web form's POST, answered as JSON when the client accepts only JSON
    body = urlencode({"long": long}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    response = await conn.request("POST", "/", body, headers)
    reply = json.loads(response.body) if response.status == 200 else {}
    ok = reply.get("success") is True
    return response, reply["result"].rsplit("/", 1)[1] if ok else None


async def run_workers(
    url: str, workers: int, work: Callable[[Connection], Awaitable[None]]
) -> None:
    async def worker() -> None:
        conn = Connection(url)
        try:
            await work(conn)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(workers)))


async def seed(args: argparse.Namespace) -> dict[str, object]:
    codes: list[str | None] = [None] * args.count
    todo = iter(range(args.count))
    errors = Counter[str]()

    async def work(conn: Connection) -> None:
        for i in todo:
            for _ in range(SEED_ATTEMPTS):
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT_S):
                        response, codes[i] = await create(conn, args.api, long_url(i))
                except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                    errors[type(exc).__name__] += 1
                    continue
                if codes[i]:
                    break
                errors[str(response.status)] += 1

    started = time.perf_counter()
    await run_workers(args.url, args.workers, work)
    seconds = time.perf_counter() - started
    missing = sum(code is None for code in codes)
    if not missing:
        Path(args.out).write_text("".join(f"{code}\n" for code in codes))
    return {
        "created": args.count - missing,
        "missing": missing,
        "errors": errors,
        "seconds": seconds,
    }


async def warm(args: argparse.Namespace) -> dict[str, object]:
    """GET every code once: fills the caches and checks each answer's status and Location."""
    codes = Path(args.codes).read_text().split()
    todo = iter(enumerate(codes))
    statuses = Counter[str]()
    wrong_location = 0

    async def work(conn: Connection) -> None:
        nonlocal wrong_location
        for i, code in todo:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    response = await conn.request("GET", f"/{code}")
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                statuses[type(exc).__name__] += 1
                continue
            statuses[str(response.status)] += 1
            if args.check_location and response.headers.get("location") != long_url(i):
                wrong_location += 1

    started = time.perf_counter()
    await run_workers(args.url, args.workers, work)
    seconds = time.perf_counter() - started
    return {
        "requests": len(codes),
        "statuses": statuses,
        "wrong_location": wrong_location,
        "seconds": seconds,
    }


async def creates(args: argparse.Namespace) -> dict[str, object]:
    """Create links from `workers` connections for `duration` seconds."""
    latencies: list[float] = []
    errors = Counter[str]()
    deadline = time.perf_counter() + args.duration
    prefix = f"https://example.com/new/{os.getpid()}"

    async def work(conn: Connection) -> None:
        n = 0
        while (started := time.perf_counter()) < deadline:
            n += 1
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    response, code = await create(conn, args.api, f"{prefix}/{id(conn)}/{n}")
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1
                continue
            if code:
                latencies.append(time.perf_counter() - started)
            else:
                errors[str(response.status)] += 1

    started = time.perf_counter()
    await run_workers(args.url, args.workers, work)
    seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "creates": len(latencies),
        "errors": errors,
        "seconds": seconds,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("seed", "warm", "creates"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--url", required=True)
        cmd.add_argument("--workers", type=int, default=32)
        cmd.add_argument("--api", choices=["plaza", "liteshort"], default="plaza")
    sub.choices["seed"].add_argument("--count", type=int, default=10_000)
    sub.choices["seed"].add_argument("--out", required=True)
    sub.choices["warm"].add_argument("--codes", required=True)
    sub.choices["warm"].add_argument("--check-location", action="store_true")
    sub.choices["creates"].add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    command = {"seed": seed, "warm": warm, "creates": creates}[args.command]
    print(json.dumps(asyncio.run(command(args))))


if __name__ == "__main__":
    main()
