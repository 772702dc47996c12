"""Click analytics off the hot path: the stream consumer and the aggregator that folds batches into SQL.

Delivery is at least once (a consumer may crash between commit and ack, the buffer may fall back to SQL after
a write that did reach Redis), so each batch carries an id recorded in `processed_batches` in the same
transaction as its counts: a batch seen twice is counted once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import structlog
from sqlalchemy import Table, bindparam, case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError
from sqlalchemy.ext.asyncio import AsyncConnection

from plaza.links.clicks import CountedClick, MalformedBatch, checked_click, decode_batch
from plaza.links.geo import GeoLookup
from plaza.links.tables import link_countries, link_daily, link_devices, link_referrers, links
from plaza.links.useragents import classify
from plaza.platform.bus import StreamEntry, Streams
from plaza.platform.consumer import run_consumer as consume
from plaza.platform.db import Database, UTCDateTime, utcnow
from plaza.platform.metrics import Metrics
from plaza.platform.tables import processed_batches

__all__ = ["ClickAggregator", "run_consumer"]

log = structlog.get_logger("plaza.clicks")

DIRECT = "direct"  # the referrer of a click without a usable Referer header
REFERRER_MAX = 255  # link_referrers.referrer is VARCHAR(255)
# Rows handled per step (checked and tallied, or bound to one statement); the event loop serves
# redirects between steps, so no step holds it for more than a millisecond or two.
EXECUTE_CHUNK = 250
READ_COUNT = 50  # entries per read; each holds up to a buffer batch (5,000 clicks)

_Key = tuple[int, Any]
_T = TypeVar("_T")


@dataclass
class _Tally:
    """One batch folded into the increments it makes, per table."""

    humans: Counter[int] = field(default_factory=Counter)
    bots: Counter[int] = field(default_factory=Counter)
    newest: dict[int, float] = field(default_factory=dict)
    daily: Counter[_Key] = field(default_factory=Counter)
    referrers: Counter[_Key] = field(default_factory=Counter)
    devices: Counter[_Key] = field(default_factory=Counter)
    countries: Counter[_Key] = field(default_factory=Counter)

    def counts(self) -> tuple[int, int]:
        return self.humans.total(), self.bots.total()


@functools.lru_cache(maxsize=1024)  # popular pages repeat; a Referer can be 8 KB
def referrer_host(referrer: str | None) -> str:
    """The Referer's host, lower case; `direct` when there is none worth keeping."""
    if not referrer:
        return DIRECT
    try:
        host = urlsplit(referrer.strip()).hostname
    except ValueError:
        return DIRECT
    # NUL is the one character PostgreSQL text refuses; such a host is garbage anyway.
    if not host or "\x00" in host:
        return DIRECT
    return host[:REFERRER_MAX]


class ClickAggregator:
    def __init__(self, db: Database, geo: GeoLookup, metrics: Metrics) -> None:
        self.db, self.geo = db, geo
        self._recorded = metrics.clicks_recorded

    async def apply(self, batch_id: str, clicks: Sequence[Sequence[Any]]) -> bool:
        """Count a batch once; False (and nothing changed) when this batch id was counted before.

        Raises MalformedBatch, before anything is written, when a click is not one we could count.
        """
        tally = _Tally()
        for start in range(0, len(clicks), EXECUTE_CHUNK):
            self._tally([checked_click(c) for c in clicks[start : start + EXECUTE_CHUNK]], tally)
            await asyncio.sleep(0)
        async with self.db.write() as conn:
            if not await _claim_batch(conn, batch_id):
                return False
            existing = await _lock_links(conn, sorted(tally.newest))
            _forget_missing(tally, existing)
            await _add_to_links(conn, tally)
            await _increment(conn, link_daily, "day", tally.daily)
            await _increment(conn, link_referrers, "referrer", tally.referrers)
            await _increment(conn, link_devices, "device", tally.devices)
            await _increment(conn, link_countries, "country", tally.countries)
        humans, bots = tally.counts()
        self._recorded.labels(kind="human").inc(humans)
        self._recorded.labels(kind="bot").inc(bots)
        return True

    def _tally(self, clicks: list[CountedClick], tally: _Tally) -> None:
        """Add clicks to the tally; the sixth element is how many identical clicks each stands for."""
        countries = dict[str | None, str | None]()
        for link_id, ts, referrer, user_agent, ip, n in clicks:
            device = classify(user_agent)
            tally.devices[link_id, device] += n
            if ts > tally.newest.get(link_id, -1.0):
                tally.newest[link_id] = ts
            if device == "bot":  # bots show only in bot_clicks and under device "bot"
                tally.bots[link_id] += n
                continue
            tally.humans[link_id] += n
            tally.daily[link_id, dt.datetime.fromtimestamp(ts, dt.UTC).date()] += n
            tally.referrers[link_id, referrer_host(referrer)] += n
            if ip not in countries:
                countries[ip] = self.geo.country(ip) if ip else None
            if (country := countries[ip]) is not None:
                tally.countries[link_id, country] += n


async def _claim_batch(conn: AsyncConnection, batch_id: str) -> bool:
    """Record the batch id; False when it was there already (the caller then changes nothing)."""
    stmt = (
        _dialect_insert(conn, processed_batches)
        .values(batch_id=batch_id, processed_at=utcnow())
        .on_conflict_do_nothing()
        .returning(processed_batches.c.batch_id)
    )
    return (await conn.execute(stmt)).first() is not None


_LOCK_LINKS = (
    select(links.c.id)
    .where(links.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(links.c.id)
    # NO KEY UPDATE: other transactions may still insert aggregate rows referencing the link.
    .with_for_update(key_share=True)
)


async def _lock_links(conn: AsyncConnection, link_ids: list[int]) -> set[int]:
    """The ids that still exist, row-locked in id order so concurrent consumers never deadlock.

    A chunk at a time, in order (the ids come sorted): one statement with thousands of ids would
    take the event loop milliseconds to render.
    """
    existing = set[int]()
    for start in range(0, len(link_ids), EXECUTE_CHUNK):
        chunk = link_ids[start : start + EXECUTE_CHUNK]
        existing.update((await conn.execute(_LOCK_LINKS, {"ids": chunk})).scalars())
        await asyncio.sleep(0)
    return existing


def _forget_missing(tally: _Tally, existing: set[int]) -> None:
    """Drop clicks on links that are gone, so that the rest of the batch still counts."""
    for link_id in set(tally.newest) - existing:
        del tally.newest[link_id]
        tally.humans.pop(link_id, None)
        tally.bots.pop(link_id, None)
    for counter in (tally.daily, tally.referrers, tally.devices, tally.countries):
        for key in [key for key in counter if key[0] not in existing]:
            del counter[key]


async def _add_to_links(conn: AsyncConnection, tally: _Tally) -> None:
    if not tally.newest:
        return
    newest = bindparam("b_newest", type_=UTCDateTime())
    stmt = (
        update(links)
        .where(links.c.id == bindparam("b_id"))
        .values(
            clicks=links.c.clicks + bindparam("b_humans"),
            bot_clicks=links.c.bot_clicks + bindparam("b_bots"),
            last_clicked_at=case(
                (or_(links.c.last_clicked_at.is_(None), links.c.last_clicked_at < newest), newest),
                else_=links.c.last_clicked_at,
            ),
        )
    )

    def row(item: tuple[int, float]) -> dict[str, Any]:
        link_id, ts = item
        return {
            "b_id": link_id,
            "b_humans": tally.humans[link_id],
            "b_bots": tally.bots[link_id],
            "b_newest": dt.datetime.fromtimestamp(ts, dt.UTC),
        }

    await _execute_in_chunks(conn, stmt, sorted(tally.newest.items()), row)


async def _increment(
    conn: AsyncConnection, table: Table, column: str, counts: Counter[_Key]
) -> None:
    """Add `counts` to the (link_id, column) rows of an aggregate table, creating missing rows.

    The one place that knows the dialects' upsert syntax. Rows go in key order so that two consumers
    touching the same rows lock them in the same order (no deadlock on PostgreSQL).
    """
    if not counts:
        return
    stmt = _dialect_insert(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.link_id, table.c[column]],
        set_={"clicks": table.c.clicks + stmt.excluded.clicks},
    )

    def row(item: tuple[_Key, int]) -> dict[str, Any]:
        (link_id, value), n = item
        return {"link_id": link_id, column: value, "clicks": n}

    await _execute_in_chunks(conn, stmt, sorted(counts.items()), row)


async def _execute_in_chunks(
    conn: AsyncConnection, stmt: Any, items: list[_T], row: Callable[[_T], dict[str, Any]]
) -> None:
    """Run `stmt` for the rows of `items` a chunk at a time, in order, in the caller's transaction.

    Building and binding thousands of parameter sets is CPU work on the event loop; in chunks, the
    redirects this process serves wait for one chunk at most, not for the whole batch.
    """
    for start in range(0, len(items), EXECUTE_CHUNK):
        await conn.execute(stmt, [row(item) for item in items[start : start + EXECUTE_CHUNK]])
        await asyncio.sleep(0)


def _dialect_insert(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """INSERT with the dialect's ON CONFLICT clauses (both dialects spell them the same way)."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


# --- The consumer ----------------------------------------------------------------------------------


async def run_consumer(
    streams: Streams,
    aggregator: ClickAggregator,
    metrics: Metrics,
    *,
    consumer: str,
    stop: asyncio.Event,
    stream: str = "clicks",
    group: str = "click-aggregator",
    stale_ms: int = 30_000,
) -> None:
    """Apply click batches from the stream until `stop` is set."""

    async def handle(entry: StreamEntry) -> None:
        try:
            batch_id, clicks = decode_batch(entry.payload)
            await aggregator.apply(batch_id, clicks)
        except MalformedBatch as exc:
            log.error("dropping a malformed click batch", entry=entry.id, error=str(exc))
        except DataError as exc:  # the database refuses these values; retrying would loop forever
            log.error("dropping a click batch the database refused", entry=entry.id, error=str(exc))

    await consume(
        streams,
        metrics,
        handle,
        stream=stream,
        group=group,
        consumer=consumer,
        stop=stop,
        stale_ms=stale_ms,
        read_count=READ_COUNT,
    )


# A redelivered batch arrives within minutes (a consumer's stale claim); a week leaves ample margin.
PROCESSED_BATCH_RETENTION = dt.timedelta(days=7)


async def purge_processed_batches(db: Database) -> int:
    """Forget batch ids old enough that no stream can deliver their batch again."""
    cutoff = utcnow() - PROCESSED_BATCH_RETENTION
    async with db.write() as conn:
        result = await conn.execute(
            processed_batches.delete().where(processed_batches.c.processed_at < cutoff)
        )
    return int(result.rowcount or 0)
