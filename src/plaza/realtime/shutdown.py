"""Drain WebSocket clients when the process is asked to stop, before the ASGI server closes them.

uvicorn, on SIGTERM or SIGINT, closes every WebSocket with 1012 at once and only then runs the lifespan's
shutdown: too late to tell clients when to come back, so they would all reconnect in the same instant.
Here the signal first drains (a `reconnect` frame with jitter, then 1012), then goes on to the server's
own handler. A second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import structlog

__all__ = ["drain_on_signals"]

log = structlog.get_logger("plaza.realtime")
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def drain_on_signals(drain: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Put `drain` in front of the current SIGTERM/SIGINT handlers; returns what undoes it.

    Only in the main thread, where servers run their loop (and Python allows signal handlers); a test
    client's app thread is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    hook = _DrainFirst(drain, asyncio.get_running_loop())
    for sig in _SIGNALS:
        signal.signal(sig, hook.on_signal)
    return hook.uninstall


class _DrainFirst:
    def __init__(
        self, drain: Callable[[], Awaitable[None]], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._drain, self._loop = drain, loop
        self._previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in _SIGNALS}
        self._signalled = False
        self._draining: asyncio.Task[None] | None = None  # referenced, so it is not collected

    def on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self._signalled:  # asked again: stop without waiting
            self._forward(sig, frame)
            return
        self._signalled = True
        log.info("draining websocket clients before shutdown", signal=sig)
        self._loop.call_soon_threadsafe(self._start, sig, frame)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            if signal.getsignal(sig) == self.on_signal:
                signal.signal(sig, handler)

    def _start(self, sig: int, frame: FrameType | None) -> None:
        self._draining = self._loop.create_task(self._drain_then_forward(sig, frame))

    async def _drain_then_forward(self, sig: int, frame: FrameType | None) -> None:
        try:
            await self._drain()
        except Exception:  # the server must stop whatever happened here
            log.exception("draining websocket clients failed")
        self._forward(sig, frame)

    def _forward(self, sig: int, frame: FrameType | None) -> None:
        handler = self._previous[sig]
        if callable(handler):
            handler(sig, frame)
        elif handler == signal.SIG_DFL:  # no server handler: what the signal would have done
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)
