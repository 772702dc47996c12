"""The run's Markdown: a header naming the machine and command, then tables; appended to RESULTS.md."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wrkrun import WrkResult

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def _proc_field(path: str, field: str) -> str:
    for line in Path(path).read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == field:
            return value.strip()
    return "unknown"


def machine() -> str:
    u = os.uname()
    cores = len(os.sched_getaffinity(0))
    mem_gib = int(_proc_field("/proc/meminfo", "MemTotal").split()[0]) / 2**20
    cpu = _proc_field("/proc/cpuinfo", "model name")
    return f"{u.sysname} {u.release} {u.machine}, nproc {cores}, {cpu}, {mem_gib:.1f} GiB RAM"


def command() -> str:
    python = (
        os.path.relpath(sys.executable)
        if sys.executable.startswith(os.getcwd())
        else sys.executable
    )
    line = shlex.join([python, *sys.argv])
    via_make = " (via make)" if "MAKELEVEL" in os.environ else ""
    return f"`{line}` in `{os.getcwd()}`{via_make}"


def header() -> list[str]:
    """Taken when the run starts: its time and load average describe the start."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"## {now}",
        "",
        f"- machine: {machine()}",
        f"- command: {command()}",
        f"- load average at start: {load}",
    ]


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def append(text: str) -> None:
    with RESULTS.open("a", encoding="utf-8") as out:
        if out.tell() == 0:
            out.write("# Benchmark results\n\nAppended by `bench/run.py`; see bench/README.md.\n")
        out.write("\n" + text.rstrip() + "\n")


@dataclass(frozen=True)
class Redirects:
    target: str
    served_by: str
    wrk: WrkResult
    warm: dict[str, Any]  # load.py warm's answer
    seed: dict[str, Any] | None = (
        None  # load.py seed's answer, for targets seeded through their API
    )


@dataclass(frozen=True)
class Targets:
    """Plaza's stated goals, checked in the tables."""

    share_of_nginx: float = 0.30
    p99_ms: float = 5.0
    pg_creates_per_s: float = 2000.0


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP unwind through every `with`: servers stop, scratch data is dropped."""

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)


def run_in(
    work: Path,
    name: str,
    measure: Callable[[], None],
    render: Callable[[list[str], float], str],
    *,
    save: bool,
    keep: bool,
) -> None:
    """Measure with `work` as scratch folder, then print what `render(header, seconds)` makes of it,
    appended to RESULTS.md with `save`. The folder is kept when asked, or when the run fails."""
    work.mkdir(parents=True)
    head, started = header(), time.monotonic()
    try:
        measure()
    except BaseException:
        print(f"{name} failed; logs kept in {work}", file=sys.stderr)
        raise
    text = render(head, time.monotonic() - started)
    print(text)
    if save:
        append(text)
        print(f"appended to {RESULTS}", file=sys.stderr)
    if not keep:
        shutil.rmtree(work)


def _warm_cell(row: Redirects) -> str:
    counts = ", ".join(f"{status} x{n}" for status, n in sorted(row.warm["statuses"].items()))
    return f"{counts} in {row.warm['seconds']:.1f} s"


def _flags(row: Redirects) -> list[str]:
    flags = [f"answers {s}, not 302" for s in sorted(row.warm["statuses"]) if s != "302"]
    if row.warm["wrong_location"]:
        flags.append(f"wrong Location x{row.warm['wrong_location']}")
    if row.wrk.errors["status"]:
        flags.append(f"{row.wrk.errors['status']} responses >= 400 under load")
    if row.wrk.socket_errors:
        flags.append(f"{row.wrk.socket_errors} socket errors")
    return flags


def _redirect_check(row: Redirects, share: float | None, goals: Targets) -> str:
    flags = _flags(row)
    if row.target.startswith("plaza") and share is not None:
        if share < goals.share_of_nginx:
            flags.append(f"below {goals.share_of_nginx:.0%} of nginx")
        if row.wrk.p99_ms >= goals.p99_ms:
            flags.append(f"p99 not < {goals.p99_ms:g} ms")
        if not flags:
            return "target met"
    return "**" + "; ".join(flags) + "**" if flags else "ok"


def redirect_table(rows: Sequence[Redirects], goals: Targets) -> list[str]:
    base = next((r.wrk.rps for r in rows if r.target == "nginx"), None)
    columns = ["target", "served by", "req/s", "p50 ms", "p99 ms", "non-2xx/3xx", "socket errors"]
    columns += ["warm pass (statuses)", "vs nginx", "check"]
    lines = []
    for row in rows:
        share = row.wrk.rps / base if base else None
        lines.append(
            [
                row.target,
                row.served_by,
                f"{row.wrk.rps:,.0f}",
                f"{row.wrk.p50_ms:.2f}",
                f"{row.wrk.p99_ms:.2f}",
                str(row.wrk.errors["status"]),
                str(row.wrk.socket_errors),
                _warm_cell(row),
                f"{share:.0%}" if share is not None else "n/a",
                _redirect_check(row, share, goals),
            ]
        )
    return table(columns, lines)


def create_table(rows: Sequence[tuple[str, dict[str, Any]]], goals: Targets) -> list[str]:
    columns = ["target", "creates/s", "p50 ms", "p99 ms", "errors", "check"]
    lines = []
    for name, result in rows:
        rate = result["creates"] / result["seconds"]
        errors = sum(result["errors"].values())
        detail = ", ".join(f"{kind} x{n}" for kind, n in result["errors"].items())
        check = "n/a"
        if name.startswith("plaza-pg"):
            met = rate >= goals.pg_creates_per_s and not errors
            check = "target met" if met else f"**below {goals.pg_creates_per_s:,.0f}/s or errors**"
        lines.append(
            [
                name,
                f"{rate:,.0f}",
                f"{result['p50_ms']:.1f}",
                f"{result['p99_ms']:.1f}",
                f"{errors} ({detail})" if errors else "0",
                check,
            ]
        )
    return table(columns, lines)


def _notes(args: Any, rows: Sequence[Redirects], goals: Targets) -> list[str]:
    harmonic = sum(1 / k**args.zipf_s for k in range(1, args.links + 1))
    notes = [
        f"Plaza's targets: cached redirects at least {goals.share_of_nginx:.0%} of nginx (1 worker) "
        f"req/s with p99 < {goals.p99_ms:g} ms; at least {goals.pg_creates_per_s:,.0f} creates/s "
        "on PostgreSQL.",
        f"Redirects: wrk, {args.threads} threads, {args.connections} connections, {args.duration} s "
        f"per target, targets one after another in this run. Each request picks one of {args.links:,} "
        f"links with Zipf popularity (s = {args.zipf_s:g}: the top link gets "
        f"{1 / harmonic:.1%} of requests), bench/zipf.lua.",
        "Warm pass: before wrk, each target got one GET per link (bench/load.py, 64 connections), "
        "which fills Plaza's caches; its status counts and Location checks are the column above. "
        "Plaza's figures are therefore cached redirects.",
        "Every Plaza redirect of a GET counts a click (buffered in memory, written in batches): "
        "the Plaza rows include click counting; there is no variant without it.",
        "nginx runs worker_processes 1 against one plaza process; nginx-auto has one worker per "
        "core. wrk shares the cores with the server, so nginx's figure is partly wrk's own limit.",
    ]
    seeds = [
        f"{r.target} {r.seed['created']:,} in {r.seed['seconds']:.1f} s "
        f"({r.seed['created'] / r.seed['seconds']:,.0f}/s)"
        for r in rows
        if r.seed
    ]
    if seeds:
        notes.append(
            "Seeding through each target's create API, 32 connections: " + "; ".join(seeds) + "."
        )
    if args.creates:
        notes.append(
            f"Creates: bench/load.py in its own process, {args.create_workers} connections POSTing "
            f"/api/v1/shorten back to back for {args.duration} s (after the redirect run and a short "
            "pause); p50/p99 over successful creates; errors are non-201 answers and timeouts."
        )
    return ["- " + note for note in notes]


def render(
    args: Any,
    head: Sequence[str],
    redirects: Sequence[Redirects],
    creates: Sequence[tuple[str, dict[str, Any]]],
    elapsed_s: float,
    goals: Targets = Targets(),
) -> str:
    lines = list(head)
    if redirects:
        lines += ["", "### Redirects (GET /{code} -> 302)", "", *redirect_table(redirects, goals)]
    if creates:
        lines += ["", "### Creates (POST /api/v1/shorten)", "", *create_table(creates, goals)]
    lines += ["", *_notes(args, redirects, goals), f"- The whole run took {elapsed_s:.0f} s.", ""]
    return "\n".join(lines)
