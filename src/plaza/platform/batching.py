"""Batching: callers that arrive while one batch runs share the next one (group commit for writes,
one query for many callers for reads)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")

# What a batch gives back for each item: its result, or the exception that caller should see.
Apply = Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]


class Batcher(Generic[T, R]):
    """Runs `apply` on everything submitted since the previous run started, one run at a time.

    A lone caller waits no longer than for its own write: a run starts on the next turn of the
    event loop. Under load, one transaction serves every caller that queued behind the last one,
    so the cost per item (round trips, commits, the writer lock) falls as the load rises.
    """

    def __init__(self, apply: Apply[T, R], *, max_batch: int = 1000) -> None:
        self._apply, self._max = apply, max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                try:
                    results = await self._apply([item for item, _ in batch])
                except Exception as exc:  # the whole write failed: every caller in it hears why
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except asyncio.CancelledError:
                    for _, future in batch:
                        future.cancel()
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its caller gave up (a closed connection)
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._runner = None
            for _, future in self._pending:  # only when cancelled: nobody is left to run them
                future.cancel()
            self._pending = []
