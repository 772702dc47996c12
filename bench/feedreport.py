"""The feed benchmark's Markdown: fan-out against the peer, memory per timeline, reads; with the checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import feedpeer
from feedfanout import FanoutRow, Trials
from feedreads import Reads
from report import table

if TYPE_CHECKING:
    from feed import FeedRun


@dataclass(frozen=True)
class Goals:
    inserts_per_s: float = 200_000.0
    peer_ratio: float = 10.0
    reach_ms: float = 100.0  # for 10,000 followers
    reach_followers: int = 10_000
    reads_per_s: float = 5_000.0
    read_p99_ms: float = 10.0


def _rate(trials: Trials) -> str:
    rates = trials.rates
    return f"{trials.median_rate():,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"


def _ms(trials: Trials) -> str:
    ms = [s * 1000 for s in trials.seconds]
    return f"{trials.median_ms():,.1f} ({min(ms):,.1f}-{max(ms):,.1f})"


def _fanout_check(row: FanoutRow, peer: Trials | str | None, goals: Goals) -> str:
    flags = []
    if row.fanout.median_rate() < goals.inserts_per_s:
        flags.append(f"below {goals.inserts_per_s:,.0f} inserts/s")
    if (
        isinstance(peer, Trials)
        and row.fanout.median_rate() < goals.peer_ratio * peer.median_rate()
    ):
        flags.append(f"below {goals.peer_ratio:g}x the peer")
    if row.followers == goals.reach_followers and row.e2e.median_ms() >= goals.reach_ms:
        flags.append(f"last follower not reached in < {goals.reach_ms:g} ms")
    return "**" + "; ".join(flags) + "**" if flags else "targets met"


def fanout_table(
    rows: Sequence[FanoutRow], peers: dict[Any, Trials | str], goals: Goals
) -> list[str]:
    columns = ["followers", "ids per timeline before", "FanOut.post inserts/s", "FanOut.post ms"]
    columns += ["RedisTimelines.push inserts/s", "post -> last follower's feed ms"]
    columns += [f"{feedpeer.NAME} inserts/s", "ours / peer", "check"]
    lines = []
    for row in rows:
        peer = peers.get((row.followers, row.fill))
        if isinstance(peer, Trials):
            peer_cell = _rate(peer)
            ratio = f"{row.fanout.median_rate() / peer.median_rate():.1f}x"
        else:
            peer_cell, ratio = peer or "not run", "n/a"
        lines.append(
            [
                f"{row.followers:,}",
                str(row.fill),
                _rate(row.fanout),
                _ms(row.fanout),
                _rate(row.push),
                _ms(row.e2e),
                peer_cell,
                ratio,
                _fanout_check(row, peer, goals),
            ]
        )
    return table(columns, lines)


def memory_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns = ["zset-max-listpack-entries", "encoding", "ids", "MEMORY USAGE bytes (median)"]
    columns += ["range", "bytes per id", "push into these, inserts/s"]
    lines = [
        [
            str(r["entries"]),
            r["encoding"],
            str(r["members"]),
            f"{r['bytes']:,.0f}",
            f"{r['min']:,}-{r['max']:,}",
            f"{r['bytes'] / max(1, r['members']):.1f}",
            _rate(r["push"]),
        ]
        for r in rows
    ]
    return table(columns, lines)


def _read_check(row: Reads, goals: Goals) -> str:
    flags = []
    if row.wrk.rps < goals.reads_per_s:
        flags.append(f"below {goals.reads_per_s:,.0f}/s")
    if row.wrk.p99_ms >= goals.read_p99_ms:
        flags.append(f"p99 not < {goals.read_p99_ms:g} ms")
    if row.wrk.errors["status"] or row.wrk.socket_errors:
        flags.append("errors")
    bad_warm = {s: n for s, n in row.warm["statuses"].items() if s != "200"}
    if bad_warm or row.warm["short_pages"]:
        flags.append(f"warm pass: {bad_warm or ''} {row.warm['short_pages']} short pages")
    return "**" + "; ".join(flags) + "**" if flags else "target met"


def reads_table(rows: Sequence[Reads], goals: Goals) -> list[str]:
    columns = ["readers", "wrk connections", "reads/s", "p50 ms", "p99 ms", "errors"]
    columns += ["server CPU per read", "warm pass", "check"]
    kinds = {"full": "full timeline (800 ids)", "celebrities": "following 20 celebrities"}
    lines = [
        [
            f"{r.readers:,} {kinds.get(r.kind, r.kind)}",
            str(r.connections),
            f"{r.wrk.rps:,.0f}",
            f"{r.wrk.p50_ms:.2f}",
            f"{r.wrk.p99_ms:.2f}",
            f"{r.wrk.errors['status']} status, {r.wrk.socket_errors} socket",
            f"{r.cpu_ms_per_read:.2f} ms ({r.busy:.0%} of a core)",
            f"{r.warm['statuses']} in {r.warm['seconds']:.1f} s",
            _read_check(r, goals),
        ]
        for r in rows
    ]
    return table(columns, lines)


def _notes(run: FeedRun, goals: Goals) -> list[str]:
    args, world = run.args, run.world
    seeded = ", ".join(f"{n:,} {what}" for what, n in run.seeded.items())
    notes = [
        f"Plaza's targets: fan-out at least {goals.inserts_per_s:,.0f} timeline inserts/s and "
        f"{goals.peer_ratio:g}x {feedpeer.NAME}; {goals.reach_followers:,} followers' feeds show a "
        f"post within {goals.reach_ms:g} ms; feed reads at least {goals.reads_per_s:,.0f}/s with "
        f"p99 < {goals.read_p99_ms:g} ms from one `plaza serve` process.",
        f"Seeded with COPY in {run.seed_s:.1f} s: {seeded}. PostgreSQL database and Redis key "
        f"prefix of this run's own, dropped and deleted afterwards.",
    ]
    if run.fanout:
        notes += [
            f"Fan-out: figures are the median of {args.repeat} repetitions (min-max in brackets), "
            "each a new post, one after another on a 2-core machine that others may be using, after "
            "one post not timed (for the peer too): a process's first fan-out opens its connections "
            "and loads its scripts. "
            "Inserts are the timelines that took the post (followers + the author's own). Before "
            "them, every follower's timeline held the given number of seeded ids (built once with "
            "RedisTimelines.build, copied with DUMP/RESTORE); full ones also 0-32 older ids, follower "
            "by follower in turn, as approximately trimmed timelines hold in steady state, so that "
            "each push trims the 1 in 33 that pass 832 ids.",
            "FanOut.post: the consumer's whole handling of one post (follower pages from SQL, 1,000 "
            "timelines per Lua call, the mute/block query and the WebSocket delivery per page), "
            "called directly. RedisTimelines.push: the Lua pushes alone, same timelines. "
            "post -> last follower's feed: from FeedService.create_post (SQL + outbox) through the "
            "outbox relay, the posts stream and the consumer loop until RedisTimelines.window of "
            "the follower with the highest id shows the post (polled every 1 ms).",
            "Authors are pushed to at every size here (PLAZA_FEED_CELEBRITY_THRESHOLD raised for "
            "this part): with the default threshold of 10,000 both would be celebrities, pulled at "
            "read time.",
            f"{feedpeer.NAME} {_peer_version()}: RedisFeed with max_length 800, its Manager's "
            "add_user_activity (activity hash, author's feed, one fan-out task per 100 followers), "
            "Celery with task_always_eager: tasks run at once in this process, no broker; its "
            "followers from the same SQL table, one query. Its feeds held the same number of ids.",
        ]
        notes += [
            "Redis memory taken by the prebuilt timelines: "
            + "; ".join(
                f"{r.followers:,} x {r.fill} ids: {r.redis_mb:,.0f} MB (built in {r.prebuild_s:.1f} s)"
                for r in run.fanout
            )
            + "."
        ]
    if run.memory:
        notes.append(
            "Memory: MEMORY USAGE (SAMPLES 0) of 200 timelines of 800 ids each, built with "
            "RedisTimelines.build after CONFIG SET zset-max-listpack-entries (the old value is put "
            "back afterwards); then 5 pushes of one id into all 200 (805 ids: within the slack of 32, no trim)."
        )
    if run.reads:
        notes.append(
            f"Reads: wrk, {args.threads} threads, {args.duration} s per row, GET "
            f"/api/v1/feed?limit=20 (chronological) with the bearer token of one of {world.readers:,} "
            "readers, in turn (bench/feed.lua); one `plaza serve` process (PostgreSQL + Redis, "
            "default settings). wrk shares the 2 cores with the server. The warm pass read each "
            "reader once first (builds timelines, fills post and token caches). Server CPU per "
            "read: the serving process's user + system CPU time during the wrk run (/proc) over "
            "the reads it answered; near 100% of a core, the figure is what one read costs."
        )
    return ["- " + n for n in notes]


def _peer_version() -> str:
    try:
        return feedpeer.version()
    except Exception:  # not installed
        return "(not installed)"


def render(run: FeedRun, head: Sequence[str], elapsed_s: float, goals: Goals = Goals()) -> str:
    lines = [*head]
    if run.fanout:
        lines += ["", "### Feed fan-out of one post (PostgreSQL + Redis)", ""]
        lines += fanout_table(run.fanout, run.peer, goals)
    if run.memory:
        lines += ["", "### Redis memory per 800-id timeline", "", *memory_table(run.memory)]
    if run.reads:
        lines += ["", "### Feed reads (GET /api/v1/feed, one plaza serve process)", ""]
        lines += reads_table(run.reads, goals)
    lines += ["", *_notes(run, goals), f"- The whole run took {elapsed_s:.0f} s.", ""]
    return "\n".join(lines)
