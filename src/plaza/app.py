"""Builds the ASGI application: the redirect fast path in front of the FastAPI app and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import structlog
from fastapi import FastAPI

from plaza import __version__, ops
from plaza.accounts import api as accounts_api
from plaza.bootstrap import (
    Platform,
    Services,
    build_services,
    close_platform,
    close_services,
    open_platform,
)
from plaza.chat import api as chat_api
from plaza.chat.notifier import PUSH_GROUP, PUSH_STALE_MS
from plaza.chat.push import PUSH_STREAM
from plaza.feed import api as feed_api
from plaza.feed.fanout import GROUP as FANOUT_GROUP
from plaza.feed.fanout import STREAM as FANOUT_STREAM
from plaza.feed.fastpath import FeedFastPath
from plaza.links import api as links_api
from plaza.links.analytics import purge_processed_batches, run_consumer
from plaza.links.redirect import RedirectFastPath, Redirector
from plaza.platform.clock import Clock, every
from plaza.platform.consumer import run_consumer as consume
from plaza.platform.errors import install_error_handlers
from plaza.platform.http import RequestContextMiddleware
from plaza.platform.idempotency import IdempotencyMiddleware, purge_expired
from plaza.platform.metrics import Metrics
from plaza.platform.openapi import contract_openapi
from plaza.realtime.gateway import GatewayFastPath
from plaza.realtime.shutdown import drain_on_signals
from plaza.settings import Settings
from plaza.web import auth as web_auth
from plaza.web import pages as web_pages
from plaza.web.csrf import CsrfMiddleware

log = structlog.get_logger("plaza.app")
STOP_GRACE_S = 10.0  # background tasks get this long to finish (e.g. flush clicks) on shutdown


class Background:
    """Tasks that live as long as the app; on stop they are told to finish, then cancelled."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self._graceful: list[asyncio.Task[None]] = []
        self._cancellable: list[asyncio.Task[None]] = []

    def start(self, name: str, work: Coroutine[Any, Any, None], *, graceful: bool = True) -> None:
        task = asyncio.create_task(work, name=name)
        (self._graceful if graceful else self._cancellable).append(task)

    async def close(self) -> None:
        self.stop.set()
        for task in self._cancellable:
            task.cancel()
        if self._graceful:
            _, pending = await asyncio.wait(self._graceful, timeout=STOP_GRACE_S)
            for task in pending:
                task.cancel()
        tasks = [*self._graceful, *self._cancellable]
        if not tasks:
            return
        # Bounded: a task that swallows its cancellation must not hold the process up for ever.
        done, stuck = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        for task in stuck:
            log.error("background task did not stop when cancelled", task=task.get_name())
        await asyncio.gather(*done, return_exceptions=True)  # their failures, retrieved


def start_workers(background: Background, platform: Platform, services: Services) -> None:
    """The stream consumers and periodic jobs (`plaza worker` runs only these)."""
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    background.start(
        "click-consumer",
        run_consumer(
            platform.streams,
            services.aggregator,
            platform.metrics,
            consumer=consumer,
            stop=background.stop,
        ),
    )
    background.start(
        "feed-fanout",
        consume(
            platform.streams,
            platform.metrics,
            services.fanout.handle,
            stream=FANOUT_STREAM,
            group=FANOUT_GROUP,
            consumer=consumer,
            stop=background.stop,
        ),
    )
    background.start("feed-outbox-relay", services.relay.run(background.stop))
    background.start(
        "push-notifier",
        consume(
            platform.streams,
            platform.metrics,
            services.notifier.handle,
            stream=PUSH_STREAM,
            group=PUSH_GROUP,
            consumer=consumer,
            stop=background.stop,
            stale_ms=PUSH_STALE_MS,
        ),
    )
    background.start("sweeper", _sweep_periodically(platform, services, background.stop))


async def _sweep_periodically(platform: Platform, services: Services, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await sweep_once(platform, services)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), platform.settings.expiry_sweep_interval_s)


async def sweep_once(platform: Platform, services: Services) -> dict[str, int]:
    """Every periodic clean-up, each on its own: one failing (an outage) does not stop the others."""
    jobs: dict[str, Callable[[], Awaitable[int]]] = {
        "expired_links": services.links.sweep_expired,
        "idempotency_keys": lambda: purge_expired(platform.db, platform.clock),
        "click_batches": lambda: purge_processed_batches(platform.db),
        "chat_messages": services.chat.retention.purge_due,
        "chat_devices": services.chat.devices.forget_due,
    }
    done: dict[str, int] = {}
    for name, job in jobs.items():
        try:
            done[name] = await job()
        except Exception:  # it runs again next interval
            log.exception("sweep failed", job=name)
    if any(done.values()):
        log.info("swept", **done)
    return done


async def _start_background(platform: Platform, services: Services) -> Background:
    """What runs as long as the app: buffers, cache invalidation, the realtime relay, and workers."""
    background = Background()
    background.start("click-flusher", services.clicks.run(background.stop))
    background.start(
        "cache-invalidation", services.cache.listen_for_invalidations(), graceful=False
    )
    background.start("feed-invalidation", services.feed.listen(), graceful=False)
    background.start("token-invalidation", services.accounts.listen(), graceful=False)
    for name, work in (await services.realtime.start()).items():
        background.start(name, work, graceful=False)
    if platform.settings.run_workers:
        start_workers(background, platform, services)
    return background


NEVER = 2**31 - 1  # a collector threshold that is never reached


def _settle_garbage_collector(young_threshold: int, full_every_s: float) -> None:
    """Move everything built at start-up out of the collector's reach, and collect the young less
    often.

    A full collection walks every long-lived object: the app, its schemas and SQLAlchemy's caches
    (60-80 ms pauses under redirect load, the whole of the p99, until frozen here), and every open
    WebSocket's objects (1.5-1.7 s at 10,000 connections, every ~12 s under chat load). What makes
    full collections frequent is young objects that happen to be alive when a young collection runs
    (a request in flight): they are promoted, and once promotions reach a quarter of the old
    generation a full collection follows. Collecting the young every `young_threshold` allocations
    (PLAZA_GC_YOUNG_THRESHOLD) rather than CPython's 700 lets most of them die first.

    That is not enough under many WebSockets: every frame a connection receives builds its awaiting
    chain anew, so the chains of all connections keep being promoted, and CPython's own rule (a
    quarter of the old generation promoted since the last one) brought a full collection, about a
    second at 10,000 connections, every 20-30 s. With PLAZA_GC_FULL_EVERY_S, full collections run on
    that timer instead (`_collect_fully`); cycles that live long enough to reach the old
    generation wait for it, so memory may hold that long's worth of them.

    Nor does the allocation count bound a young collection's work under many WebSockets. CPython
    counts allocations less deallocations, and the deallocations include old objects: each frame a
    connection receives frees the awaiting chain its previous frame built (promoted long ago) while
    it builds a new one. At 10,000 connections the count hardly moves while 150,000 young objects
    pile up, and the collection that finally comes walks them all: 50-150 ms, the whole p99 of chat
    delivery. So young collections also run on a timer, PLAZA_GC_YOUNG_EVERY_S (0.1 s), each then
    walking a tenth of a second's worth of objects, once (`_collect_young`).
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, NEVER if full_every_s > 0 else old)


async def _collect_young() -> None:
    """A young collection (see `_settle_garbage_collector`): the youngest two generations together.
    Collected alone, the youngest would hand its survivors to the middle one, whose collection walks
    them a second time; together, a survivor is walked once, then is old."""
    gc.collect(1)


async def _collect_fully() -> None:
    """A full collection, on PLAZA_GC_FULL_EVERY_S's timer (see `_settle_garbage_collector`)."""
    started = time.perf_counter()
    collected = gc.collect()
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    log.info("full garbage collection", collected=collected, duration_ms=elapsed_ms)


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> RedirectFastPath:
    settings = settings or Settings()
    metrics = Metrics()
    front: RedirectFastPath

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        platform = await open_platform(settings, clock=clock, metrics=metrics)
        services = build_services(platform)
        app.state.platform, app.state.services = platform, services
        background = await _start_background(platform, services)
        undo_signals = drain_on_signals(services.realtime.drain)
        _settle_garbage_collector(settings.gc_young_threshold, settings.gc_full_every_s)
        if settings.gc_young_every_s > 0:
            background.start(
                "gc-young", every(settings.gc_young_every_s, _collect_young), graceful=False
            )
        if settings.gc_full_every_s > 0:
            background.start(
                "gc-full", every(settings.gc_full_every_s, _collect_fully), graceful=False
            )
        front.redirector = Redirector(
            cache=services.cache,
            clicks=services.clicks,
            db=platform.db,
            metrics=platform.metrics,
            status=settings.redirect_status,
        )
        try:
            yield
        finally:
            front.redirector = None
            undo_signals()
            await services.realtime.drain()  # clients are told when to reconnect, then closed
            await background.close()
            await close_services(services)
            await close_platform(platform)
            Metrics.process_exited()

    api = FastAPI(
        title="Plaza",
        version=__version__,
        lifespan=lifespan,
        description="Short links, real-time chat and a news feed.",
    )
    install_error_handlers(api)
    api.include_router(ops.router)
    api.include_router(accounts_api.router)
    api.include_router(links_api.router)
    api.include_router(chat_api.router)
    api.include_router(feed_api.router)
    api.include_router(web_auth.router)
    api.include_router(web_pages.router)
    api.mount("/static", web_pages.static_files(), name="static")
    api.router.routes.insert(0, links_api.ShortenFastPath(api.router))
    api.add_middleware(IdempotencyMiddleware)
    api.add_middleware(CsrfMiddleware)  # inside the request context, before a key is claimed
    api.add_middleware(
        RequestContextMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes
    )
    api.openapi = lambda: contract_openapi(api)  # type: ignore[method-assign]
    feed = FeedFastPath(api, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    front = RedirectFastPath(GatewayFastPath(feed))
    return front
