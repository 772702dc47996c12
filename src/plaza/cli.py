"""`plaza serve | worker | migrate`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator
from typing import Annotated

import typer
import uvicorn

from plaza.platform.logs import configure_logging
from plaza.platform.metrics import MULTIPROC_DIR
from plaza.settings import Settings

cli = typer.Typer(help="Plaza: short links, real-time chat and a news feed.", no_args_is_help=True)
SHUTDOWN_GRACE_S = 15  # in-flight requests and the final click flush get this long on SIGTERM
# A frame over 64 KiB is answered with an error frame; one this large closes the socket (1009) before
# it is buffered whole: uvicorn's default, 16 MiB, is a lot of memory per connection.
WS_MAX_MESSAGE_BYTES = 1024 * 1024


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes (more than 1 needs Redis)")
    ] = 1,
    background: Annotated[
        bool | None,
        typer.Option(
            "--background/--no-background",
            help="Also run consumers and periodic jobs (default: PLAZA_RUN_WORKERS, true)",
        ),
    ] = None,
) -> None:
    """Serve the API, the redirects and the web app."""
    settings = Settings()
    if workers > 1 and not settings.redis_url:
        raise typer.BadParameter(
            "several processes share caches and events through Redis: set PLAZA_REDIS_URL",
            param_hint="--workers",
        )
    configure_logging(settings)
    if settings.should_migrate_on_start:
        asyncio.run(_migrate(settings))
    if background is not None:  # the worker processes read their settings from the environment
        os.environ["PLAZA_RUN_WORKERS"] = "true" if background else "false"
    with _metrics_shared_by(workers):
        _serve(host, port, workers, compression=settings.ws_compression)


@contextlib.contextmanager
def _metrics_shared_by(workers: int) -> Iterator[None]:
    """Several processes: their metrics go to files in a directory of this run's own (unless one is
    given), so that /metrics answers for all of them (prometheus_client's multiprocess mode)."""
    if workers == 1 or os.environ.get(MULTIPROC_DIR):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="plaza-metrics-") as directory:
        os.environ[MULTIPROC_DIR] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROC_DIR]


def _serve(host: str, port: int, workers: int, *, compression: bool) -> None:
    from plaza.realtime.transport import FrameWriterProtocol

    uvicorn.run(
        "plaza.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        ws=FrameWriterProtocol,  # uvicorn's, plus frames encoded once per broadcast
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        ws_per_message_deflate=compression,
        # Dead connections are found by the gateway's idle timeout (clients ping every heartbeat_s):
        # protocol pings as well would be 500 frames/s more at 10,000 connections, for nothing.
        ws_ping_interval=None,
    )


@cli.command()
def worker() -> None:
    """Run only the background consumers and periodic jobs."""
    settings = Settings()
    configure_logging(settings)
    asyncio.run(_run_worker(settings))


@cli.command()
def migrate() -> None:
    """Apply the database migrations."""
    settings = Settings()
    configure_logging(settings)
    asyncio.run(_migrate(settings))
    typer.echo("migrated")


async def _migrate(settings: Settings) -> None:
    from plaza.platform.db import Database
    from plaza.platform.migrate import upgrade

    db = Database.from_url(settings.database_url)
    try:
        await upgrade(db)
    finally:
        await db.dispose()


async def _run_worker(settings: Settings) -> None:
    from plaza.app import Background, start_workers
    from plaza.bootstrap import build_services, close_platform, close_services, open_platform

    platform = await open_platform(settings)
    services = build_services(platform)
    background = Background()
    start_workers(background, platform, services)
    # Fan-out renders post views: they must drop what other processes change, as served ones do.
    background.start("feed-invalidation", services.feed.listen(), graceful=False)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await background.close()
    await close_services(services)
    await close_platform(platform)


def main() -> None:
    cli()
