"""The SQL layer: one SQLAlchemy Core engine on aiosqlite (WAL) or asyncpg, and the column types we share."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from typing import Any, Literal, TypeAlias

import asyncpg
from sqlalchemy import BigInteger, DateTime, Integer, MetaData, Row, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def unmanaged(names: Iterable[str]) -> None:
    """Mark schema objects that migrations build with raw DDL (e.g. full-text indexes), which these
    Tables cannot describe: comparisons of the database to the metadata pass over them."""
    metadata.info.setdefault("unmanaged", set()).update(names)


def is_managed(name: str | None) -> bool:
    return name not in metadata.info.get("unmanaged", ())


AnyRow: TypeAlias = Row[*tuple[Any, ...]]

# Integer on SQLite so the column is the rowid alias (autoincrement); 64-bit elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")

SQLITE_BUSY_TIMEOUT_MS = 10_000  # a writer waits this long for another process's write to finish
# A request that waited this long for a free connection is answered 503 `overloaded` rather than
# kept waiting: its client may retry, or go elsewhere.
POOL_TIMEOUT_S = 5.0
# Readiness waits this long for a pooled connection, not the requests' POOL_TIMEOUT_S: a free one is
# handed over at once, and one that does not come this soon means every connection is busy serving
# requests (a connection frees as soon as any of them ends: well within this under ordinary load).
READY_POOL_WAIT_S = 0.5
# A pooled PostgreSQL connection unused this long is pinged before it is handed out: one that died
# meanwhile (a database restart, a cut network) is replaced then, instead of failing the request that
# got it. A busy pool's connections come back within milliseconds and are never pinged.
IDLE_PING_S = 1.0


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out, whatever the dialect stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Database:
    """Owns the engine. `write()` for transactions that change data, `read()` for the rest."""

    def __init__(self, engine: AsyncEngine, unpooled: AsyncEngine) -> None:
        self.engine = engine
        self._unpooled = unpooled  # readiness's own way in while every pooled connection is busy
        self._kept: list[KeptConnection] = []
        self.dialect = engine.dialect.name
        # On SQLite a write transaction takes the write lock at BEGIN: a deferred one that reads
        # first could fail to upgrade (SQLITE_BUSY without waiting) when another writer got in between.
        self._writer = engine.execution_options(plaza_write=True)
        # Reads on PostgreSQL run outside a transaction: under READ COMMITTED each statement sees its
        # own snapshot anyway, and BEGIN and ROLLBACK would be two more round trips per read. On
        # SQLite a read transaction is what gives several statements one snapshot: kept.
        self._reader = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.dialect == "postgresql"
            else engine
        )

    @classmethod
    def from_url(
        cls, url: str, *, pool_size: int = 20, pool_timeout_s: float = POOL_TIMEOUT_S
    ) -> Database:
        """`pool_size` applies to PostgreSQL; SQLite keeps SQLAlchemy's pool (5, and 10 overflow:
        opening a file is cheap). On both, a wait for a connection longer than `pool_timeout_s`
        fails with sqlalchemy.exc.TimeoutError, answered as overload (platform/errors.py). A second,
        unpooled engine lets readiness() reach the database while the pool is exhausted."""
        pool: dict[str, Any] = {"pool_timeout": pool_timeout_s}
        if url.startswith("sqlite"):
            connect_args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        else:
            connect_args = {"timeout": 3, "command_timeout": 15}
            # No overflow: a connection opened past the pool is closed on return, and opening one
            # (TCP, TLS negotiation, auth, type introspection) costs more than waiting for a free one.
            pool |= {"pool_size": pool_size, "max_overflow": 0, "pool_recycle": 1800}
        engine = create_async_engine(url, connect_args=connect_args, **pool)
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine)
        else:
            _ping_idle_connections(engine)
        unpooled = create_async_engine(url, connect_args=connect_args, poolclass=NullPool)
        return cls(engine, unpooled)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self._writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def write_alone(self) -> AsyncIterator[AsyncConnection]:
        """For a write that is one statement on PostgreSQL (or statements each atomic by itself):
        there it runs outside a transaction, its own, without BEGIN and COMMIT round trips. On
        SQLite it is a write transaction, as `write()`."""
        if self.dialect != "postgresql":
            async with self.write() as conn:
                yield conn
            return
        async with self._reader.connect() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self._reader.connect() as conn:
            yield conn

    async def readiness(self) -> Literal["ok", "busy"]:
        """Whether the database answers: "ok" on a pooled connection, "busy" when every pooled
        connection is in use and it answers on a connection of the probe's own; raises when it does
        not answer.

        A probe that queued behind the requests for a pooled connection would read overload as an
        outage, and a load balancer would take busy instances out of rotation one after another; so
        the pool is waited on for READY_POOL_WAIT_S only. With none free, "busy" is not assumed: a
        database that went away while its connections were checked out keeps the pool exhausted (by
        statements and connects waiting on their timeouts) as long as requests keep coming, so a
        connection opened outside the pool, and closed after, tells a busy database from a dead one.
        """
        answer: Literal["ok", "busy"] = "ok"
        try:
            async with asyncio.timeout(READY_POOL_WAIT_S):
                conn = await self.engine.connect()
        except (TimeoutError, sa_exc.TimeoutError):  # ours, or the pool's when that is shorter
            conn, answer = await self._unpooled.connect(), "busy"
        try:
            await conn.execute(text("SELECT 1"))
        finally:
            await conn.close()
        return answer

    def kept(self) -> KeptConnection:
        """A connection of its own, outside the pool (whose size is what requests share), for one
        owner that drives it through the driver (PostgreSQL only); closed with the Database."""
        if self.dialect != "postgresql":
            raise ValueError("kept connections are PostgreSQL's")
        kept = KeptConnection(self._unpooled.execution_options(isolation_level="AUTOCOMMIT"))
        self._kept.append(kept)
        return kept

    async def dispose(self) -> None:
        for kept in self._kept:
            await kept.close()
        await self.engine.dispose()
        await self._unpooled.dispose()


# What leaves a connection unusable: the driver's own errors (it was closed, or lost mid-statement),
# the server's class 08 and 57 (shutting down, cannot connect now), the socket's, and timeouts.
_CONNECTION_LOST = (
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    OSError,
    TimeoutError,
)


class KeptConnection:
    """A PostgreSQL connection that its owner keeps, running one statement at a time on it through
    asyncpg itself, outside any transaction: for the hottest write (chat's batch of sends, one
    statement a batch), where checking a connection out and in and SQLAlchemy's execution around a
    statement cost several times what asyncpg does (bench/chatwriter.py). It is opened outside the
    pool, with the pool's settings, so that it takes no connection requests wait for.

    Errors come out as SQLAlchemy's, as from any other connection: a unique or foreign key violation
    as IntegrityError, a connection lost or a database going away as OperationalError (the connection
    is then dropped, and the next statement opens a new one).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        # Unpooled: a connection it opens is closed, not kept, when given back.
        self._engine = engine
        self._held: AsyncConnection | None = None
        self._driver: Any = None  # the asyncpg connection under `_held`
        self._lock = asyncio.Lock()  # one statement at a time, whoever asks

    async def fetch(self, statement: str, *args: Any) -> list[Any]:
        async with self._lock:
            if self._held is None:
                held = await self._engine.connect()
                self._driver = (await held.get_raw_connection()).driver_connection
                self._held = held
            try:
                return list(await self._driver.fetch(statement, *args))
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise sa_exc.IntegrityError(statement, None, exc) from exc
            except _CONNECTION_LOST as exc:
                await self._drop()
                raise sa_exc.OperationalError(
                    statement, None, exc, connection_invalidated=True
                ) from exc
            except asyncpg.PostgresError as exc:  # the statement's own error: the session goes on
                raise sa_exc.DBAPIError(statement, None, exc) from exc
            except BaseException:  # cancelled with the statement in flight: its outcome is unknown
                await self._drop()
                raise

    async def _drop(self, *, broken: bool = True) -> None:
        """Let the connection go: invalidated first when `broken`, as it may be in any state."""
        held, self._held, self._driver = self._held, None, None
        if held is not None:
            with suppress(Exception):
                if broken:
                    await held.invalidate()
                await held.close()

    async def close(self) -> None:
        async with self._lock:
            await self._drop(broken=False)


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """See IDLE_PING_S. SQLAlchemy's `pool_pre_ping` would ping at every checkout: a round trip more
    for every request."""
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_S:
            return
        try:
            sync_engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            # The pool drops this connection and checks out another (a new one, if need be).
            raise sa_exc.DisconnectionError(f"an idle connection died: {exc!r}") from exc


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below); the driver's implicit transactions would get in the way.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (the case we promise); only power loss may
        # drop the last commits.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("plaza_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
