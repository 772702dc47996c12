"""Time as a port: the system's clocks in production, a fake one that tests move by hand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock", "every"]


async def every(interval_s: float, job: Callable[[], Awaitable[None]]) -> None:
    """Run `job` every `interval_s` seconds (after each sleep, not on the dot), until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        await job()


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards; for measuring intervals."""


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that stands still until told to move."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._wall = start
        self._mono = 0.0

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward together."""
        if seconds < 0:
            raise ValueError("a clock cannot advance backwards; use set() to move wall time")
        self._wall += seconds
        self._mono += seconds

    def set(self, wall: float) -> None:
        """Jump wall time (either way), as an NTP correction would; monotonic time is untouched."""
        self._wall = wall
