"""Start and always stop the servers under test: nginx, `plaza serve`, liteshort; and their databases.

Every server runs in its own session (process group) on a free 127.0.0.1 port, logs to a file in the
run's scratch directory, and is stopped with SIGTERM to the whole group (SIGKILL after a grace period)
when its `with` block ends, whatever happened inside.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import redis

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PLAZA = REPO / ".venv" / "bin" / "plaza"
PEER_VENV = BENCH / ".work" / "peer-venv"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
READY_TIMEOUT_S = 60.0  # PostgreSQL migrations on a cold start take a few seconds
STOP_GRACE_S = 20.0  # plaza drains for up to 15 s (SHUTDOWN_GRACE_S in plaza.cli)
# One process, like one `plaza serve`. gthread, not gunicorn's default sync worker: the sync worker
# closes the connection after every response, and wrk's connections are keep-alive.
LITESHORT_THREADS = 4
PEER_PACKAGES = [
    "liteshort==1.3.0",
    "gunicorn==27.0.1",
]  # the versions these figures were taken with
LITESHORT_CONFIG = """\
disable_api: true       # the admin API needs a password; creating links does not use it
secret_key: "plaza-bench-not-a-secret"
database_name: "urls"
"""


@dataclass(frozen=True)
class Server:
    url: str
    log: Path
    pid: int = 0  # the process started (for `plaza serve`, the one serving)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status < 500
    except OSError:
        return False
    finally:
        conn.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        print(
            f"  pid {proc.pid} ignored SIGTERM for {STOP_GRACE_S:.0f} s; killing", file=sys.stderr
        )
    with suppress(ProcessLookupError):  # the leader has gone; its workers may not have
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextmanager
def serving(
    cmd: list[str], *, port: int, log: Path, cwd: Path, env: dict[str, str], ready_path: str = "/"
) -> Iterator[Server]:
    """Run `cmd` until the block ends; yield once `ready_path` answers below 500."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _answers(port, ready_path):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{cmd[0]} did not come up on port {port}:\n{tail}")
            time.sleep(0.2)
        yield Server(url=f"http://127.0.0.1:{port}", log=log, pid=proc.pid)
    finally:
        _stop(proc)


@contextmanager
def running(
    cmd: list[str], log: Path, cwd: Path, env: dict[str, str], wanted: bool
) -> Iterator[None]:
    """A helper process with no port (such as `plaza worker`) for the duration of the block."""
    if not wanted:
        yield
        return
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield
    finally:
        _stop(proc)


def _clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any PLAZA_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAZA_")}
    return env | extra


@contextmanager
def nginx(work: Path, workers: str) -> Iterator[Server]:
    work.mkdir(parents=True)
    port = free_port()
    template = (BENCH / "nginx.conf").read_text()
    conf = work / "nginx.conf"
    conf.write_text(
        template.replace("@PORT@", str(port))
        .replace("@WORKERS@", workers)
        .replace("@WORK@", str(work))
    )
    cmd = ["/usr/sbin/nginx", "-p", str(work), "-e", str(work / "error.log"), "-c", str(conf)]
    with serving(cmd, port=port, log=work / "stdout.log", cwd=work, env=_clean_env()) as server:
        yield server


@contextmanager
def plaza(
    work: Path,
    database_url: str,
    redis_url: str | None = None,
    *,
    separate_worker: bool = False,
    redis_prefix: str | None = None,
    extra_env: dict[str, str] | None = None,
    launcher: list[str] | None = None,
    processes: int = 1,
) -> Iterator[Server]:
    """`plaza serve` (`--workers processes`); with `separate_worker`, consumers run in their own
    `plaza worker` process.

    Its Redis keys (under `redis_prefix`, by default one of this run's own) are deleted afterwards.
    `launcher` replaces the `plaza` executable (e.g. a Python script that profiles it), `extra_env`
    adds settings.
    """
    work.mkdir(parents=True)
    port = free_port()
    env = _clean_env(
        PLAZA_DATABASE_URL=database_url,
        PLAZA_BASE_URL=f"http://127.0.0.1:{port}",
        PLAZA_CREATE_RATE="100000000/hour",  # the benchmark is one client IP
        PLAZA_AUTO_MIGRATE="true",
    )
    env |= extra_env or {}
    if redis_url:
        prefix = redis_prefix or f"plaza-bench-{os.getpid()}:"
        env |= {"PLAZA_REDIS_URL": redis_url, "PLAZA_REDIS_PREFIX": prefix}
    cmd = [*(launcher or [str(PLAZA)]), "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(processes)]
    if separate_worker:
        cmd.append("--no-background")
    try:
        with (
            serving(
                cmd, port=port, log=work / "plaza.log", cwd=work, env=env, ready_path="/healthz"
            ) as server,
            running([str(PLAZA), "worker"], work / "worker.log", work, env, separate_worker),
        ):
            yield server
    finally:
        if redis_url:
            delete_redis_keys(redis_url, env["PLAZA_REDIS_PREFIX"])


def delete_redis_keys(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])
    finally:
        client.close()


@contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """A fresh, empty database for one run; yields its SQLAlchemy URL and drops it afterwards."""

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def install_liteshort() -> Path:
    """The peer lives in its own venv; installed on first use."""
    gunicorn = PEER_VENV / "bin" / "gunicorn"
    if not gunicorn.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        pip = [str(PEER_VENV / "bin" / "pip"), "install", "--quiet", *PEER_PACKAGES]
        subprocess.run(pip, check=True, timeout=600)
    return gunicorn


@contextmanager
def liteshort(work: Path) -> Iterator[Server]:
    gunicorn = install_liteshort()
    (work / "config" / "liteshort").mkdir(parents=True)
    (work / "config" / "liteshort" / "config.yml").write_text(LITESHORT_CONFIG)
    (work / "data").mkdir()
    port = free_port()
    env = _clean_env(
        XDG_CONFIG_HOME=str(work / "config"),
        XDG_CONFIG_DIRS=str(work / "config"),
        XDG_DATA_HOME=str(work / "data"),
    )
    cmd = [str(gunicorn), "--pythonpath", str(BENCH), "--bind", f"127.0.0.1:{port}"]
    cmd += ["--workers", "1", "--worker-class", "gthread", "--threads", str(LITESHORT_THREADS)]
    cmd += ["--no-control-socket", "peer_liteshort:app"]
    with serving(cmd, port=port, log=work / "gunicorn.log", cwd=work, env=env) as server:
        yield server


def migrate(database_url: str, log: Path) -> None:
    """`plaza migrate` on a database (a fresh one, before it is seeded directly in SQL)."""
    with log.open("wb") as out:
        subprocess.run(
            [str(PLAZA), "migrate"],
            env=_clean_env(PLAZA_DATABASE_URL=database_url),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=READY_TIMEOUT_S,
        )


@contextmanager
def broadcast(work: Path, users: int, group_sizes: str) -> Iterator[Server]:
    """The chat baseline (peer_broadcast.py) under uvicorn, with `plaza serve`'s uvicorn options."""
    work.mkdir(parents=True)
    port = free_port()
    env = _clean_env(CHAT_BENCH_USERS=str(users), CHAT_BENCH_GROUP_SIZES=group_sizes)
    cmd = [str(REPO / ".venv" / "bin" / "uvicorn"), "--app-dir", str(BENCH), "peer_broadcast:app"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools"]
    cmd += ["--no-access-log", "--ws-max-size", str(1024 * 1024)]
    # As plaza serve by default: no protocol pings (clients ping), no permessage-deflate.
    cmd += ["--ws-ping-interval", "0", "--ws-per-message-deflate", "false"]
    with serving(cmd, port=port, log=work / "uvicorn.log", cwd=work, env=env) as server:
        yield server
