"""Plaza's chat benchmark: N WebSocket users sending at steady rates, beside a bare broadcast baseline.

    .venv/bin/python bench/chat.py [--users 10000] [--group-sizes 2,10] [--rate 30,60,120]
                                   [--duration 20] [--targets plaza-sqlite,plaza-pg,baseline]
                                   [--clients 2] [--connect-rate 500] [--profile] [--no-save] [--keep]

Needs PostgreSQL and Redis as bench/run.py does. Prints a Markdown report and appends it to
bench/RESULTS.md. bench/README.md explains every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import pstats
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import chatload
import chatseed
import report
import targets
from chatseed import Member
from targets import Server

BENCH = Path(__file__).resolve().parent
ALL_TARGETS = ("plaza-sqlite", "plaza-pg", "baseline")
SETTLE_S = 3.0  # after the last connection, before RSS is read
IDLE_S = 5.0  # connected, nobody sending: the server's CPU for heartbeats alone
STEP_LEAD_S = 1.0  # the clients get the step this long before it starts, so they start together
DRAIN_S = 30.0  # after a step, how long late acks and deliveries are waited for
PAUSE_S = 2.0  # between steps
CLIENT_REPLY_S = 600.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Plaza's design targets, printed beside the figures.
DELIVERY_P99_MS = 200.0
CONNECTIONS_PER_SERVER = (50_000, 100_000)


@dataclass
class Connected:
    target: str
    served_by: str
    users: int
    connected: int
    failed: dict[str, int]
    connect_s: float
    rss_before_kb: int
    rss_connected_kb: int
    rss_after_kb: int = 0
    idle_cpu: float = 0.0  # share of a core, connected and quiet
    seed: dict[str, int] = field(default_factory=dict)
    seed_s: float = 0.0

    @property
    def per_connection_kb(self) -> float:
        return (self.rss_connected_kb - self.rss_before_kb) / max(1, self.connected)


@dataclass
class StepResult:
    target: str
    rate: float
    duration: float
    sent: int
    acked: int
    acked_in_window: int
    expected: int
    delivered: int
    delivered_in_window: int
    lat_ms: list[float]
    ack_ms: list[float]
    errors: dict[str, int]
    send_errors: int
    cpu_s: float
    cpu_main_s: float
    client_cpu_s: float  # summed over the client processes, over the step's send loop
    client_cpu_max_s: float  # the busiest client process's
    machine_busy_s: float  # every core's non-idle time over the window (all processes)
    machine_steal_s: float  # time the hypervisor gave this machine's cores to others
    persisted: bool  # the target acknowledges stored messages (Plaza); the baseline stores nothing

    def pct(self, values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


@dataclass
class ChatRun:
    args: argparse.Namespace
    work: Path
    connected: list[Connected] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)

    def step(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- the server process, from /proc -------------------------------------------------------------


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def machine_cpu() -> tuple[float, float]:
    """Seconds of CPU, summed over the cores: (busy, stolen), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def _ticks(stat: str) -> int:
    fields = stat.rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def cpu_s(pid: int) -> tuple[float, float]:
    """(whole process, main thread) user + system CPU seconds so far."""
    total = _ticks(Path(f"/proc/{pid}/stat").read_text())
    main = _ticks(Path(f"/proc/{pid}/task/{pid}/stat").read_text())
    return total / CLK_TCK, main / CLK_TCK


# --- the client processes -----------------------------------------------------------------------


class Clients:
    """`--clients` processes running chatload.main, each with every n-th member."""

    def __init__(self, url: str, members: list[Member], count: int, compression: bool) -> None:
        ctx = mp.get_context("spawn")
        base = url.replace("http://", "ws://")
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        for k in range(count):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=chatload.main,
                args=(theirs, base, members[k::count], compression),
                daemon=True,
            )
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)

    def ask(self, *command: Any) -> list[Any]:
        for pipe in self.pipes:
            pipe.send(command)
        answers = []
        for pipe in self.pipes:
            if not pipe.poll(CLIENT_REPLY_S):
                raise RuntimeError(f"a client process did not answer {command[0]!r}")
            answers.append(pipe.recv())
        return answers

    def close(self) -> None:
        with suppress(OSError, EOFError, RuntimeError):
            self.ask("close")
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


@contextmanager
def clients(url: str, members: list[Member], args: argparse.Namespace) -> Iterator[Clients]:
    pool = Clients(url, members, args.clients, args.compression)
    try:
        yield pool
    finally:
        pool.close()


# --- one target ---------------------------------------------------------------------------------


def measure(run: ChatRun, name: str, served_by: str, server: Server, members: list[Member]) -> None:
    args, pid = run.args, server.pid
    persisted = name != "baseline"
    rss_before = rss_kb(pid)
    with clients(server.url, members, args) as pool:
        run.step(f"{name}: connecting {len(members):,} users, {args.connect_rate}/s")
        n = args.clients
        answers = pool.ask("connect", args.connect_rate / n, max(1, args.connect_concurrency // n))
        failed: Counter[str] = Counter()
        for a in answers:
            failed.update(a["failed"])
        conn = Connected(
            name,
            served_by,
            len(members),
            sum(a["connected"] for a in answers),
            dict(failed),
            max(a["seconds"] for a in answers),
            rss_before,
            0,
        )
        run.step(f"{name}: {conn.connected:,} connected in {conn.connect_s:.1f} s; failed {failed}")
        time.sleep(SETTLE_S)
        conn.rss_connected_kb = rss_kb(pid)
        idle0 = cpu_s(pid)[0]
        time.sleep(IDLE_S)
        conn.idle_cpu = (cpu_s(pid)[0] - idle0) / IDLE_S
        run.connected.append(conn)
        for sid, rate in enumerate(args.rates):
            run.step(f"{name}: {rate:g} sends/s for {args.duration} s")
            start = time.time() + STEP_LEAD_S
            pool.ask("step", sid, rate / n, start, args.duration)
            time.sleep(max(0.0, start - time.time()))
            cpu0, machine0 = cpu_s(pid), machine_cpu()
            if args.profile and persisted:
                os.kill(pid, signal.SIGUSR1)
            time.sleep(max(0.0, start + args.duration - time.time()))
            cpu1, machine1 = cpu_s(pid), machine_cpu()
            if args.profile and persisted:
                os.kill(pid, signal.SIGUSR2)
            machine = (machine1[0] - machine0[0], machine1[1] - machine0[1])
            _drain(run, pool, sid, persisted)
            reports = pool.ask("report", sid, start + args.duration)
            run.steps.append(
                _merge(name, rate, args.duration, reports, cpu0, cpu1, machine, persisted)
            )
            if _check(run.steps[-1]) != "target met" and not args.every_step:
                run.step(f"{name}: past its knee; its higher rates are not run")
                break
            time.sleep(PAUSE_S)
        conn.rss_after_kb = rss_kb(pid)


def _drain(run: ChatRun, pool: Clients, sid: int, persisted: bool) -> None:
    deadline = time.monotonic() + DRAIN_S
    while time.monotonic() < deadline:
        totals: Counter[str] = Counter()
        for status in pool.ask("status", sid):
            totals.update(status)
        if totals["delivered"] >= totals["expected"] and (
            not persisted or totals["acked"] >= totals["sent"]
        ):
            return
        time.sleep(0.5)
    run.step(f"  still missing after {DRAIN_S:.0f} s: {dict(totals)}")


def _merge(
    name: str,
    rate: float,
    duration: float,
    reports: list[dict[str, Any]],
    cpu0: tuple[float, float],
    cpu1: tuple[float, float],
    machine: tuple[float, float],
    persisted: bool,
) -> StepResult:
    errors: Counter[str] = Counter()
    for r in reports:
        errors.update(r["errors"])

    def total(key: str) -> int:
        return sum(int(r[key]) for r in reports)

    return StepResult(
        target=name,
        rate=rate,
        duration=duration,
        sent=total("sent"),
        acked=total("acked"),
        acked_in_window=total("acked_in_window"),
        expected=total("expected"),
        delivered=total("delivered"),
        delivered_in_window=total("delivered_in_window"),
        lat_ms=sorted(x for r in reports for x in r["lat_ms"]),
        ack_ms=sorted(x for r in reports for x in r["ack_ms"]),
        errors=dict(errors),
        send_errors=total("send_errors"),
        cpu_s=cpu1[0] - cpu0[0],
        cpu_main_s=cpu1[1] - cpu0[1],
        client_cpu_s=sum(float(r["cpu_s"]) for r in reports),
        client_cpu_max_s=max(float(r["cpu_s"]) for r in reports),
        machine_busy_s=machine[0],
        machine_steal_s=machine[1],
        persisted=persisted,
    )


def _seeded_plaza(
    run: ChatRun, name: str, served_by: str, database_url: str, redis_url: str | None
) -> None:
    work = run.work / name
    work.mkdir(parents=True)
    targets.migrate(database_url, work / "migrate.log")
    members = chatseed.layout(run.args.users, run.args.group_sizes, tokens=True)
    run.step(f"{name}: seeding {len(members):,} users, tokens and conversations in SQL")
    started = time.perf_counter()
    seeded = asyncio.run(chatseed.seed(database_url, members))
    seed_s = time.perf_counter() - started
    launcher = None
    if run.args.profile:
        launcher = [sys.executable, str(BENCH / "chatprofile.py"), str(work / "profile.prof")]
    with targets.plaza(
        work / "serve",
        database_url,
        redis_url,
        redis_prefix=f"plaza-chatbench-{os.getpid()}:",
        launcher=launcher,
    ) as server:
        measure(run, name, served_by, server, members)
    run.connected[-1].seed, run.connected[-1].seed_s = seeded, seed_s
    if run.args.profile:
        run.profile += profile_summary(name, work / "profile.prof", run.steps)


def bench_plaza_sqlite(run: ChatRun) -> None:
    url = f"sqlite+aiosqlite:///{run.work / 'plaza-sqlite' / 'plaza.db'}"
    served_by = "plaza serve, 1 process, SQLite + in-process cache and bus"
    _seeded_plaza(run, "plaza-sqlite", served_by, url, None)


def bench_plaza_pg(run: ChatRun) -> None:
    with targets.postgres_database(f"plaza_chatbench_{os.getpid()}") as url:
        served_by = "plaza serve, 1 process, PostgreSQL + Redis"
        _seeded_plaza(run, "plaza-pg", served_by, url, targets.REDIS_URL)


def bench_baseline(run: ChatRun) -> None:
    members = chatseed.layout(run.args.users, run.args.group_sizes, tokens=False)
    sizes = ",".join(str(s) for s in run.args.group_sizes)
    with targets.broadcast(run.work / "baseline", run.args.users, sizes) as server:
        served_by = "bench/peer_broadcast.py: bare Starlette WebSocket relay, uvicorn, 1 process"
        measure(run, "baseline", served_by, server, members)


BENCHES = {
    "plaza-sqlite": bench_plaza_sqlite,
    "plaza-pg": bench_plaza_pg,
    "baseline": bench_baseline,
}


# --- where the CPU goes ---------------------------------------------------------------------------

CATEGORIES = [  # first match wins; matched against "file:function" of each profiled function
    ("SQL layer (SQLAlchemy, asyncpg, aiosqlite, sqlite3)", ("sqlalchemy", "asyncpg", "sqlite")),
    ("Redis client", ("redis",)),
    ("JSON (orjson, json)", ("orjson", "/json/", "json.")),
    ("pydantic (frame parsing)", ("pydantic",)),
    (
        "WebSocket + ASGI (uvicorn, websockets, starlette, zlib)",
        ("uvicorn", "websockets", "starlette", "zlib"),
    ),
    ("logging, metrics (structlog, prometheus)", ("structlog", "logging", "prometheus")),
    ("event loop (asyncio, uvloop, sockets)", ("asyncio", "uvloop", "socket", "selectors")),
    ("Plaza's own code", ("/plaza/",)),
]
KEY_FUNCTIONS = [  # inclusive time of these heartbeat tasks, as a share of the profiled time
    ("realtime/presence.py", "renew"),  # every heartbeat: all connected users at once
    ("realtime/sessions.py", "refresh"),  # the session registry's heartbeat, likewise
]


def _category(path: str, func: str) -> str:
    where = f"{path}:{func}"
    for name, needles in CATEGORIES:
        if any(n in where for n in needles):
            return name
    return "other (builtins, uuid, hashing, ...)"


def profile_summary(name: str, path: Path, steps: list[StepResult]) -> list[str]:
    if not path.exists():
        return [f"{name}: no profile written"]
    stats: Any = pstats.Stats(str(path)).stats
    total = sum(v[2] for v in stats.values()) or 1e-9
    by_cat: Counter[str] = Counter()
    for (file, _, func), (_, _, tottime, _, _) in stats.items():
        by_cat[_category(file, func)] += tottime
    sends = sum(s.acked_in_window for s in steps if s.target == name)
    lines = [
        f"{name}: {total:.1f} s of main-thread CPU profiled (cProfile, which slows Python calls) "
        f"over {sends:,} acked sends, {total * 1000 / max(1, sends):.2f} ms per send. "
        "Self time by layer: "
        + ", ".join(
            f"{cat} {t / total:.0%}" for cat, t in by_cat.most_common() if t / total >= 0.01
        )
        + "."
    ]
    for file_end, func in KEY_FUNCTIONS:  # background tasks: not re-entered, so inclusive is fair
        ct = sum(v[3] for (f, _, fn), v in stats.items() if f.endswith(file_end) and fn == func)
        lines.append(f"{name}: `{func}` (inclusive) {ct / total:.0%}.")
    top = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:8]
    lines.append(
        f"{name}: top functions by self time: "
        + "; ".join(
            f"`{Path(f).name}:{fn}` {v[2] / total:.1%}"
            if f != "~"
            else f"`{fn}` {v[2] / total:.1%}"
            for (f, _, fn), v in top
        )
        + "."
    )
    return lines


# --- the report ---------------------------------------------------------------------------------


def _mb(kb: float) -> str:
    return f"{kb / 1024:,.0f} MB"


def connection_table(rows: list[Connected]) -> list[str]:
    columns = ["target", "served by", "connected", "connect time", "server RSS before"]
    columns += ["RSS connected", "per connection", "idle server CPU", "100,000 connections"]
    lines = []
    for c in rows:
        failed = f" ({sum(c.failed.values())} failed: {c.failed})" if c.failed else ""
        lines.append(
            [
                c.target,
                c.served_by,
                f"{c.connected:,} of {c.users:,}{failed}",
                f"{c.connect_s:.1f} s ({c.connected / max(c.connect_s, 1e-9):,.0f}/s)",
                _mb(c.rss_before_kb),
                _mb(c.rss_connected_kb),
                f"{c.per_connection_kb:.1f} KB",
                f"{c.idle_cpu:.0%} of a core",
                f"~{c.per_connection_kb * 100_000 / 2**20:.1f} GB RSS (extrapolated)",
            ]
        )
    return report.table(columns, lines)


def _check(s: StepResult) -> str:
    flags = []
    p99 = s.pct(s.lat_ms, 0.99)
    if not p99 < DELIVERY_P99_MS:
        flags.append(f"p99 not < {DELIVERY_P99_MS:g} ms")
    if s.delivered < s.expected:
        flags.append(f"{s.expected - s.delivered:,} not delivered within {DRAIN_S:.0f} s")
    if s.persisted and s.acked_in_window < 0.95 * s.rate * s.duration:
        flags.append("persisted < 95% of offered")
    if s.errors or s.send_errors:
        flags.append("errors")
    return "**" + "; ".join(flags) + "**" if flags else "target met"


def _deliveries(s: StepResult) -> float:
    return s.delivered_in_window / s.duration


def against_baseline(rows: list[StepResult]) -> list[str]:
    """Issue 3's target, from one run: each Plaza target's most deliveries/s in a step that met every
    check, against the baseline's most with p99 under the same bound (and its most at any latency).
    Only a baseline pushed past its knee (a step that failed a check) has a most worth comparing."""
    baseline = [s for s in rows if s.target == "baseline"]
    plaza_targets = dict.fromkeys(s.target for s in rows if s.target != "baseline")
    if not baseline or not plaza_targets:
        return []
    if all(_check(s) == "target met" for s in baseline):
        return [
            "Against the baseline: the baseline met every check at every step, so its most is "
            "not known from this run; raise --rate until one of its steps fails."
        ]
    fast = [_deliveries(s) for s in baseline if _check(s) == "target met"]
    most_fast = max(fast, default=0.0)
    most_any = max(_deliveries(s) for s in baseline)
    lines = []
    for target in plaza_targets:
        met = [_deliveries(s) for s in rows if s.target == target and _check(s) == "target met"]
        best = max(met, default=0.0)
        lines.append(
            f"Against the baseline: {target}'s most deliveries/s in a step that met every check, "
            f"{best:,.0f}, is {best / most_fast:.0%} of the baseline's most with p99 < "
            f"{DELIVERY_P99_MS:g} ms ({most_fast:,.0f}) and {best / most_any:.0%} of its most at any "
            f"latency ({most_any:,.0f}); Plaza's target is at least 50%."
            if most_fast
            else f"Against the baseline: no baseline step met every check; {target}'s best was "
            f"{best:,.0f} deliveries/s."
        )
    return lines


def step_table(rows: list[StepResult]) -> list[str]:
    columns = ["target", "offered sends/s", "sent/s", "persisted sends/s", "deliveries/s"]
    columns += ["delivery p50 ms", "p99 ms", "max ms", "ack p50 / p99 ms", "errors"]
    columns += ["server CPU", "CPU per send", "client CPU", "machine CPU", "check"]
    lines = []
    for s in rows:
        errors = dict(s.errors) | ({"send failed": s.send_errors} if s.send_errors else {})
        per_send = s.cpu_s * 1000 / max(1, s.acked_in_window if s.persisted else s.sent)
        lines.append(
            [
                s.target,
                f"{s.rate:,.0f}",
                f"{s.sent / s.duration:,.0f}",
                f"{s.acked_in_window / s.duration:,.0f}" if s.persisted else "n/a (no storage)",
                f"{_deliveries(s):,.0f}",
                f"{s.pct(s.lat_ms, 0.5):,.1f}",
                f"{s.pct(s.lat_ms, 0.99):,.1f}",
                f"{s.lat_ms[-1]:,.0f}" if s.lat_ms else "n/a",
                f"{s.pct(s.ack_ms, 0.5):,.1f} / {s.pct(s.ack_ms, 0.99):,.1f}"
                if s.persisted
                else "n/a",
                str(errors) if errors else "0",
                f"{s.cpu_s / s.duration:.0%} of a core ({s.cpu_main_s / s.duration:.0%} main thread)",
                f"{per_send:.2f} ms",
                f"{s.client_cpu_s / s.duration:.0%} of a core "
                f"(busiest process {s.client_cpu_max_s / s.duration:.0%})",
                f"{s.machine_busy_s / s.duration:.0%} of {100 * (os.cpu_count() or 1)}%"
                f" (stolen {s.machine_steal_s / s.duration:.0%})",
                _check(s),
            ]
        )
    return report.table(columns, lines)


def render(run: ChatRun, head: list[str], elapsed_s: float) -> str:
    args = run.args
    sizes = " and ".join(str(s) for s in args.group_sizes)
    lines = list(head)
    lines += ["", "### Chat: connections and server memory", "", *connection_table(run.connected)]
    lines += ["", "### Chat: steady sends", "", *step_table(run.steps)]
    versus = against_baseline(run.steps)
    if versus:
        lines += ["", *("- " + line for line in versus)]
    fanout = sum(s - 1 for s in args.group_sizes) / len(args.group_sizes)
    notes = [
        f"Plaza's design targets: delivery to online users < {DELIVERY_P99_MS:g} ms (checked on "
        f"p99); {CONNECTIONS_PER_SERVER[0]:,}-{CONNECTIONS_PER_SERVER[1]:,} connections per server "
        "(the last column extrapolates the measured RSS per connection; this machine's open-file "
        "limit and 2 cores keep the run itself at the given count).",
        f"{args.users:,} users, one connection each, split evenly between conversations of {sizes} "
        "members (each user in one conversation), seeded straight into SQL "
        "(bench/chatseed.py); the baseline uses the same layout. "
        + "; ".join(
            f"{c.target} seeded {c.seed} in {c.seed_s:.1f} s" for c in run.connected if c.seed
        )
        + ".",
        f"Load: bench/chatload.py in {args.clients} separate processes (a minimal asyncio "
        "WebSocket client of its own on uvloop, "
        + (
            "offering permessage-deflate as browsers do and compressing its sends too"
            if args.compression
            else "without permessage-deflate"
        )
        + f"), connecting "
        f"at {args.connect_rate}/s, at most {args.connect_concurrency} handshakes at once; every "
        "connection pings once per `heartbeat_s` (10 s) as the web app does, so "
        f"{args.users / 10:,.0f} pings/s run throughout. Each step sends at a steady rate for "
        f"{args.duration} s from random users (a send reaches {fanout:g} others on average), "
        "then waits up to "
        f"{DRAIN_S:.0f} s for late acks and deliveries; the steps run in order on the same connections.",
        "sent/s and persisted sends/s: sends made and `ack`s received (Plaza acks after the "
        "commit) within the step's window, over its length; deliveries/s likewise for `message` "
        "frames. Latencies cover every frame of the step, late ones included: delivery is send -> "
        "`message` frame at another member, ack is send -> `ack` at the sender, by wall clock.",
        "Server CPU: user + system time of the serving process over the window (/proc), all "
        "threads (aiosqlite runs SQLite in a thread of its own), and its main thread; CPU per send "
        "is that over persisted sends (the baseline: sent). PostgreSQL's and Redis's CPU are not "
        "counted. RSS per connection: VmRSS after connecting (and a 3 s pause) minus before, over "
        "connections; idle CPU: 5 s connected with only pings.",
        f"Client CPU: user + system time of the {args.clients} client processes (getrusage in "
        "each, from the start of the step's sends to the end of its window), summed, as a share "
        "of one core, and the busiest process's share: it covers their sends, pings and every "
        "frame they receive. The server and the clients share the machine's cores: when this "
        "plus the server's CPU nears the number of cores, or the busiest process nears a whole "
        "core, the load generator is the limit, not the server.",
        "Per-user send limit (PLAZA_CHAT_SEND_RATE 20/s, burst 50) left at its default: random "
        f"senders among {args.users:,} users send {max(args.rates) / args.users:.2f}/s each on "
        "average at the highest rate, far under it. Every other setting is the default.",
        f"The machine has {os.cpu_count()} cores shared by the server, the clients, PostgreSQL "
        "and Redis. Machine CPU: every core's busy time over the window (/proc/stat: all "
        "processes, ours and any other work), as a share of one core, and the time the "
        "hypervisor gave those cores to other machines (steal). Near the number of cores, the "
        "server waits for a core as well. Read the rows as where the knee is, not as precise "
        "rates.",
    ]
    if args.profile:
        notes.append(
            "**Profiled run** (--profile): plaza serve ran under cProfile during each step, "
            "which slows it; its rows are not comparable with unprofiled ones."
        )
        notes += run.profile
    lines += ["", *("- " + note for note in notes), f"- The whole run took {elapsed_s:.0f} s.", ""]
    return "\n".join(lines)


# --- entry point --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000, help="connected users, one each")
    parser.add_argument(
        "--group-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[2, 10],
        help="members per conversation; users split evenly between the sizes",
    )
    parser.add_argument(
        "--rate",
        dest="rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[
            1000,
            2000,
            3000,
            3250,
            3500,
            3750,
            4000,
            4500,
            5000,
            5500,
            6000,
            6500,
            7000,
            8000,
        ],
        help="sends/s; a comma list runs one step per rate, in order, on the same connections, "
        "until a step fails a check",
    )
    parser.add_argument(
        "--every-step",
        action="store_true",
        help="run every rate, even after a step failed a check",
    )
    parser.add_argument("--duration", type=int, default=20, help="seconds of each step")
    parser.add_argument("--targets", default=",".join(ALL_TARGETS), help="comma list")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--connect-rate", type=int, default=500, help="new connections per second")
    parser.add_argument("--connect-concurrency", type=int, default=100, help="handshakes at once")
    parser.add_argument("--no-compression", dest="compression", action="store_false")
    parser.add_argument("--profile", action="store_true", help="plaza serve under cProfile")
    parser.add_argument("--no-save", dest="save", action="store_false", help="print only")
    parser.add_argument("--keep", action="store_true", help="keep bench/.work/chat-PID")
    args = parser.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(ALL_TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {', '.join(ALL_TARGETS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report.stop_on_signals()
    limit = chatload.raise_nofile()  # inherited by the servers and the clients
    if limit < args.users + 1000:
        sys.exit(f"the open-file limit ({limit}) is too low for {args.users:,} connections")
    run = ChatRun(args, BENCH / ".work" / f"chat-{os.getpid()}")

    def measure() -> None:
        for name in args.targets:
            BENCHES[name](run)

    report.run_in(
        run.work,
        "chat benchmark",
        measure,
        lambda head, seconds: render(run, head, seconds),
        save=args.save,
        keep=args.keep,
    )


if __name__ == "__main__":
    main()
