"""Plaza's benchmark: redirects against nginx, Plaza on two backends and a peer; creates per second.

    .venv/bin/python bench/run.py [--duration 10] [--links 10000] [--only redirects|creates]
                                  [--targets nginx,plaza-sqlite,plaza-pg,plaza-pg-worker,plaza-pg-2,liteshort] [--no-save]
    .venv/bin/python bench/run.py --only feed [bench/feed.py's options]
    .venv/bin/python bench/run.py --only chat [bench/chat.py's options]

The feed and chat benchmarks (bench/feed.py, bench/chat.py) run only when asked for: each takes
several minutes of its own.

Prints a Markdown report and appends it to bench/RESULTS.md. bench/README.md explains the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import report
import targets
from report import Redirects
from targets import Server
from wrkrun import run_wrk

BENCH = Path(__file__).resolve().parent
LOAD = BENCH / "load.py"
ALL_TARGETS = ("nginx", "plaza-sqlite", "plaza-pg", "plaza-pg-worker", "plaza-pg-2", "liteshort")
SETTLE_S = 2.0  # lets the click buffer of the redirect run flush before creates are measured
BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class Run:
    args: argparse.Namespace
    work: Path
    redirects: list[Redirects] = field(default_factory=list)
    creates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def step(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def load(command: str, *args: str, timeout: float) -> dict[str, Any]:
    """Run bench/load.py in its own process and return the JSON it prints."""
    cmd = [sys.executable, str(LOAD), command, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load.py {command} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def seed(run: Run, server: Server, api: str, name: str) -> tuple[Path, dict[str, Any]]:
    codes = run.work / f"codes-{name}.txt"
    run.step(f"{name}: seeding {run.args.links} links through its API")
    args = ["--url", server.url, "--api", api, "--count", str(run.args.links), "--out", str(codes)]
    result = load("seed", *args, timeout=600)
    if result["missing"]:
        raise RuntimeError(f"{name}: {result['missing']} links could not be created: {result}")
    return codes, result


def redirects(
    run: Run, name: str, served_by: str, server: Server, codes: Path, **extra: Any
) -> None:
    run.step(f"{name}: warm pass (one GET per link)")
    check = ["--check-location"] if "seed" in extra else []
    warm = load("warm", "--url", server.url, "--codes", str(codes), *check, timeout=300)
    run.step(f"{name}: wrk for {run.args.duration} s")
    result = run_wrk(
        server.url,
        codes,
        duration_s=run.args.duration,
        log=run.work / f"wrk-{name}.log",
        connections=run.args.connections,
        threads=run.args.threads,
        zipf_s=run.args.zipf_s,
    )
    run.redirects.append(Redirects(name, served_by, result, warm, **extra))


def creates(run: Run, name: str, server: Server) -> None:
    time.sleep(SETTLE_S)
    run.step(f"{name}: creates for {run.args.duration} s, {run.args.create_workers} workers")
    args = ["--url", server.url, "--workers", str(run.args.create_workers)]
    args += ["--duration", str(run.args.duration)]
    run.creates.append((name, load("creates", *args, timeout=run.args.duration + 120)))


def bench_nginx(run: Run) -> None:
    if not run.args.redirects:
        return
    rng = random.Random(62)
    codes = run.work / "codes-nginx.txt"
    fake = ("".join(rng.choices(BASE62, k=7)) for _ in range(run.args.links))
    codes.write_text("".join(f"{code}\n" for code in fake))
    with targets.nginx(run.work / "nginx", "1") as server:
        redirects(run, "nginx", "nginx `return 302`, 1 worker", server, codes)
    if run.args.nginx_auto:
        with targets.nginx(run.work / "nginx-auto", "auto") as server:
            workers = f"{len(os.sched_getaffinity(0))} workers (auto)"
            redirects(run, "nginx-auto", f"nginx `return 302`, {workers}", server, codes)


def bench_plaza(
    run: Run,
    name: str,
    served_by: str,
    database_url: str,
    redis: str | None,
    *,
    split: bool = False,
    processes: int = 1,
) -> None:
    with targets.plaza(
        run.work / name, database_url, redis, separate_worker=split, processes=processes
    ) as server:
        if run.args.redirects:
            codes, seeded = seed(run, server, "plaza", name)
            redirects(run, name, served_by, server, codes, seed=seeded)
        if run.args.creates:
            creates(run, name, server)


def bench_plaza_sqlite(run: Run) -> None:
    url = f"sqlite+aiosqlite:///{run.work / 'plaza-sqlite' / 'plaza.db'}"
    bench_plaza(run, "plaza-sqlite", "plaza serve, 1 process, SQLite + in-process cache", url, None)


def bench_plaza_pg(run: Run) -> None:
    with targets.postgres_database(f"plaza_bench_{os.getpid()}") as url:
        served_by = "plaza serve, 1 process, PostgreSQL + Redis"
        bench_plaza(run, "plaza-pg", served_by, url, targets.REDIS_URL)


def bench_plaza_pg_worker(run: Run) -> None:
    """The production shape: click aggregation in `plaza worker`, off the serving process."""
    with targets.postgres_database(f"plaza_bench_w_{os.getpid()}") as url:
        served_by = "plaza serve --no-background, 1 process, + `plaza worker`; PostgreSQL + Redis"
        bench_plaza(run, "plaza-pg-worker", served_by, url, targets.REDIS_URL, split=True)


def bench_plaza_pg_2(run: Run) -> None:
    """`--workers 2`: one process per core of this machine (which wrk shares)."""
    with targets.postgres_database(f"plaza_bench_2_{os.getpid()}") as url:
        served_by = "plaza serve --workers 2; PostgreSQL + Redis"
        bench_plaza(run, "plaza-pg-2", served_by, url, targets.REDIS_URL, processes=2)


def bench_liteshort(run: Run) -> None:
    if not run.args.redirects:
        return
    run.step("liteshort: starting (installs the peer venv on first use)")
    with targets.liteshort(run.work / "liteshort") as server:
        codes, seeded = seed(run, server, "liteshort", "liteshort")
        served_by = (
            f"liteshort 1.3.0, gunicorn 1 process gthread, {targets.LITESHORT_THREADS} threads"
        )
        redirects(run, "liteshort", served_by, server, codes, seed=seeded)


BENCHES = {
    "nginx": bench_nginx,
    "plaza-sqlite": bench_plaza_sqlite,
    "plaza-pg": bench_plaza_pg,
    "plaza-pg-worker": bench_plaza_pg_worker,
    "plaza-pg-2": bench_plaza_pg_2,
    "liteshort": bench_liteshort,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--links", type=int, default=10_000, help="links seeded per target")
    parser.add_argument(
        "--only",
        choices=["redirects", "creates", "feed", "chat"],
        help="feed, chat: bench/feed.py, bench/chat.py (first, with their own options after)",
    )
    parser.add_argument("--targets", default=",".join(ALL_TARGETS), help="comma list")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--zipf-s", type=float, default=1.0, help="Zipf exponent of popularity")
    parser.add_argument("--create-workers", type=int, default=32)
    parser.add_argument("--no-nginx-auto", dest="nginx_auto", action="store_false")
    parser.add_argument("--no-save", dest="save", action="store_false", help="print only")
    parser.add_argument("--keep", action="store_true", help="keep bench/.work/run-PID")
    args = parser.parse_args()
    args.redirects = args.only in (None, "redirects")
    args.creates = args.only in (None, "creates")
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(ALL_TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {', '.join(ALL_TARGETS)}")
    return args


def main() -> None:
    if sys.argv[1:3] == ["--only", "feed"] or sys.argv[1:2] == ["--only=feed"]:
        import feed

        feed.main(sys.argv[3:] if sys.argv[1] == "--only" else sys.argv[2:])
        return
    if sys.argv[1:3] == ["--only", "chat"] or sys.argv[1:2] == ["--only=chat"]:
        import chat

        chat.main(sys.argv[3:] if sys.argv[1] == "--only" else sys.argv[2:])
        return
    args = parse_args()
    report.stop_on_signals()
    run = Run(args, BENCH / ".work" / f"run-{os.getpid()}")

    def measure() -> None:
        for name in args.targets:
            BENCHES[name](run)

    report.run_in(
        run.work,
        "benchmark",
        measure,
        lambda head, seconds: report.render(args, head, run.redirects, run.creates, seconds),
        save=args.save,
        keep=args.keep,
    )


if __name__ == "__main__":
    main()
