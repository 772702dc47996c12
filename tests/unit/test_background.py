"""The app's background tasks on shutdown: the graceful finish their work, none holds the process up."""

from __future__ import annotations

import asyncio
import time

import pytest

from plaza import app as app_module
from plaza.app import Background

pytestmark = pytest.mark.anyio


async def test_graceful_tasks_finish_their_work_and_the_others_are_cancelled() -> None:
    background, flushed, cancelled = Background(), [], []

    async def flusher() -> None:
        await background.stop.wait()
        await asyncio.sleep(0.05)  # e.g. writing the last clicks
        flushed.append(True)

    async def poller() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    background.start("flusher", flusher())
    background.start("poller", poller(), graceful=False)
    await asyncio.sleep(0)
    await background.close()
    assert (flushed, cancelled) == ([True], [True])


async def test_a_task_that_ignores_cancellation_does_not_hold_shutdown_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "STOP_GRACE_S", 0.2)
    background, release = Background(), asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # swallowed: the kind of bug this guards against

    background.start("stubborn", stubborn(), graceful=False)
    await asyncio.sleep(0)
    started = time.monotonic()
    closing = asyncio.create_task(background.close())
    await asyncio.wait({closing}, timeout=5)
    closed_in = time.monotonic() - started
    release.set()
    (task,) = background._cancellable
    task.cancel()  # now it lets itself end, and a close() still waiting with it
    await asyncio.wait({task, closing}, timeout=1)
    assert closed_in < 2, "close() waited for a task that ignores cancellation"
