"""A circuit breaker for one Redis connection pool.

A Redis that is down but not refusing (a hung server, a partition that drops packets) costs every
command its full socket timeout. Through a request that makes several calls (rate limit, registry,
presence), each would wait seconds before degrading. Instead, once a connect or a read of the pool
failed, or a write timed out, every connection of the pool fails at once for `cooldown_s`; commands
after that try again (and a failure opens it again).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as redis_errors

__all__ = ["Breaker", "guarded"]

COOLDOWN_S = (
    1.0  # as long as one timed-out call: an outage costs a second, then nothing until it ends
)


class Breaker:
    def __init__(self, cooldown_s: float = COOLDOWN_S, clock: Callable[[], float] = time.monotonic):
        self.cooldown_s, self._clock = cooldown_s, clock
        self._open_until = 0.0

    @property
    def open(self) -> bool:
        return self._clock() < self._open_until

    def check(self) -> None:
        if self.open:
            raise redis_errors.ConnectionError("Redis failed a moment ago; not trying again yet")

    def trip(self) -> None:
        self._open_until = self._clock() + self.cooldown_s

    def reset(self) -> None:
        self._open_until = 0.0


_FAILURES = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError, TimeoutError)


def guarded(
    base: type[aioredis.connection.AbstractConnection], breaker: Breaker
) -> type[aioredis.connection.AbstractConnection]:
    """A subclass of the pool's connection class whose connects, sends and reads obey `breaker`."""

    class GuardedConnection(base):  # type: ignore[misc,valid-type]
        async def connect(self) -> None:
            breaker.check()
            try:
                await super().connect()
            except _FAILURES:
                breaker.trip()
                raise
            breaker.reset()  # it answered the handshake: whatever failed before is over

        async def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
            if breaker.open:
                await self.disconnect(nowait=True)  # a pooled connection to a hung server
                breaker.check()
            try:
                await super().send_packed_command(*args, **kwargs)
            except (redis_errors.TimeoutError, TimeoutError):
                breaker.trip()  # a server that takes no writes is hung, as one that never answers
                raise

        async def read_response(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return await super().read_response(*args, **kwargs)
            except _FAILURES:
                breaker.trip()
                raise

    GuardedConnection.__name__ = GuardedConnection.__qualname__ = f"Guarded{base.__name__}"
    return GuardedConnection
