"""Shared test plumbing: where the real PostgreSQL and Redis are, and a fresh namespace in each per test.

Outside CI an unreachable server skips the tests that need it; with `CI=true` the whole run fails at once,
saying which server is missing and how to start it.
"""

from __future__ import annotations

import asyncio
import gc
import io
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.rediscluster import redis_cluster

REDIS_URL = os.environ.get("PLAZA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get(
    "PLAZA_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

_START_HINTS = {
    "redis": 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
}


def _redis_problem() -> str | None:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _pg_problem() -> str | None:
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""), timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


_PROBLEMS: dict[str, str | None] = {}


def server_problem(name: str) -> str | None:
    """Why the named real server cannot be used (None when it answers); probed once per run."""
    if name not in _PROBLEMS:
        _PROBLEMS[name] = _redis_problem() if name == "redis" else _pg_problem()
    return _PROBLEMS[name]


def pytest_sessionstart(session: pytest.Session) -> None:
    if not IN_CI:
        return
    for name in ("postgresql", "redis"):
        problem = server_problem(name)
        if problem:
            pytest.exit(
                f"CI=true but {name} is unreachable ({problem}). Start it with: {_START_HINTS[name]}",
                returncode=1,
            )


def require_server(name: str) -> None:
    problem = server_problem(name)
    if problem:
        if IN_CI:
            pytest.fail(f"{name} unreachable under CI: {problem}")
        pytest.skip(f"{name} unreachable ({problem}); start it with: {_START_HINTS[name]}")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def redis_url() -> str:
    require_server("redis")
    return REDIS_URL


@pytest.fixture
def pg_url() -> str:
    require_server("postgresql")
    return PG_URL


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis Cluster of three nodes of this run's own (redis-server from the machine)."""
    require_server("redis")  # the same binary; where it is missing, so is this
    try:
        with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as url:
            yield url
    except RuntimeError as exc:
        if IN_CI:
            pytest.fail(f"could not start a Redis Cluster under CI: {exc}")
        pytest.skip(f"could not start a Redis Cluster: {exc}")


_PREFIXES_USED: set[str] = set()


def _delete_keys(redis_url: str, prefixes: set[str]) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        for prefix in prefixes:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"plaza-test:{uuid.uuid4().hex[:12]}:"
    _PREFIXES_USED.add(prefix)
    yield prefix
    _delete_keys(redis_url, {prefix})


@pytest.fixture(scope="session", autouse=True)
def _sweep_redis_prefixes() -> Iterator[None]:
    """An app that a test asked for before its prefix is closed after the prefix's keys are deleted,
    and may write more as it closes (its last clicks): the run's prefixes are swept again at its end."""
    yield
    if _PREFIXES_USED:
        _delete_keys(REDIS_URL, _PREFIXES_USED)


# --- Databases: a migrated template per run, copied for each test --------------------------------


async def _migrate(url: str) -> None:
    from plaza.platform.db import Database
    from plaza.platform.migrate import upgrade

    db = Database.from_url(url)
    try:
        await upgrade(db)
    finally:
        await db.dispose()


async def _pg_admin(*statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _pg_url_for(name: str) -> str:
    return PG_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return str(path)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    require_server("postgresql")
    name = f"plaza_tpl_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(_migrate(_pg_url_for(name)))
        yield name
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(sqlite_template: str, tmp_path: os.PathLike[str]) -> str:
    import shutil

    target = os.path.join(tmp_path, "plaza.db")
    shutil.copyfile(sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_url(request: pytest.FixtureRequest) -> str:
    """A migrated database of this test's own, once on SQLite and once on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_database_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def pg_database_url(pg_template: str) -> Iterator[str]:
    """A migrated PostgreSQL database of this test's own, dropped afterwards."""
    name = f"plaza_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    try:
        yield _pg_url_for(name)
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["embedded", "server"])
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings overrides for one backend: SQLite + in-process, or PostgreSQL + Redis."""
    if request.param == "embedded":
        return {"database_url": request.getfixturevalue("sqlite_url")}
    return {
        "database_url": request.getfixturevalue("pg_database_url"),
        "redis_url": request.getfixturevalue("redis_url"),
        "redis_prefix": request.getfixturevalue("redis_prefix"),
    }


# --- The app, through its real ASGI stack -------------------------------------------------------


@pytest.fixture
def app_factory() -> Iterator[Any]:
    """Builds TestClients (lifespan running) of the real app with the given settings; closes them after."""
    from starlette.testclient import TestClient

    from plaza.app import create_app
    from plaza.settings import Settings

    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        values: dict[str, Any] = {"env": "test", "base_url": "http://testserver", **overrides}
        app = create_app(Settings(_env_file=None, **values))
        client = TestClient(app, raise_server_exceptions=True)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        _shut_down(client)


APP_SHUTDOWN_TIMEOUT_S = 60.0


def _shut_down(client: Any) -> None:
    """Close a TestClient (its app's lifespan shutdown); one that has not shut down within
    APP_SHUTDOWN_TIMEOUT_S fails the test, naming the app's tasks that were still waiting, and where,
    instead of hanging the run."""
    failure: list[BaseException] = []

    def close() -> None:
        try:
            client.__exit__(None, None, None)
        except BaseException as exc:  # re-raised in the test's thread
            failure.append(exc)

    closing = threading.Thread(target=close, name="app-shutdown", daemon=True)
    closing.start()
    closing.join(APP_SHUTDOWN_TIMEOUT_S)
    if closing.is_alive():
        pytest.fail(
            f"the app did not shut down within {APP_SHUTDOWN_TIMEOUT_S:g} s; tasks still "
            f"waiting:\n{_waiting_tasks()}"
        )
    if failure:
        raise failure[0]


def _waiting_tasks() -> str:
    """Each pending task, and the chain of coroutines it waits in, innermost last."""
    out = io.StringIO()
    # asyncio's registry of tasks, whatever their loop: gc.get_objects() misses what the app froze.
    for task in list(getattr(asyncio.tasks, "_all_tasks", ())):
        if not task.done():
            out.write(f"{task.get_name()}:\n")
            awaiting: Any = task.get_coro()
            for _ in range(100):  # a chain, not a cycle; bounded all the same
                if awaiting is None:
                    break
                frame = next(
                    (getattr(awaiting, a) for a in _FRAMES if getattr(awaiting, a, None)), None
                )
                if frame is None:  # an async generator's asend/athrow: the generator is inside
                    inner = [o for o in gc.get_referents(awaiting) if hasattr(o, "ag_frame")]
                    awaiting = inner[0] if inner else None
                    continue
                code = frame.f_code
                out.write(f"  {code.co_filename}:{frame.f_lineno} {code.co_qualname}\n")
                awaiting = next(
                    (getattr(awaiting, a) for a in _AWAITS if getattr(awaiting, a, None)), None
                )
    return out.getvalue()


_FRAMES = ("cr_frame", "gi_frame", "ag_frame")
_AWAITS = ("cr_await", "gi_yieldfrom", "ag_await")


@pytest.fixture
def make_client(backend: dict[str, str], app_factory: Any) -> Any:
    """Like app_factory, on this test's backend (SQLite + in-process, or PostgreSQL + Redis)."""
    return lambda **overrides: app_factory(**{**backend, **overrides})


@pytest.fixture
def client(make_client: Any) -> Any:
    return make_client()


def register(client: Any, username: str, password: str = "correct horse") -> dict[str, str]:
    """Registers a user and returns headers carrying a fresh bearer token."""
    assert (
        client.post("/api/v1/users", json={"username": username, "password": password}).status_code
        == 201
    )
    token = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


async def post_together(
    app: Any, path: str, requests: list[dict[str, Any]], method: str = "POST"
) -> list[httpx.Response]:
    """Send every request at once (POST unless told) through the app's ASGI stack, on the app's own
    event loop."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return list(await asyncio.gather(*(http.request(method, path, **r) for r in requests)))
