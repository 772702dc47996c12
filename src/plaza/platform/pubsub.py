"""Fire-and-forget pub/sub: a memory adapter (one process) and a Redis adapter (Redis Pub/Sub).

Messages published while nobody listens are gone; subscribers that fall behind lose the oldest.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, cast

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
import structlog

from plaza.platform.kv import SOCKET_TIMEOUT_S, PortUnavailable, RedisPort, outage_as_unavailable

__all__ = ["MemoryPubSub", "Message", "PubSub", "RedisPubSub", "Subscription", "listen"]

log = structlog.get_logger("plaza.platform.pubsub")

SUBSCRIPTION_BUFFER = 10_000  # per subscriber; beyond it the oldest messages are dropped
_POLL_S = 5.0  # each idle pub/sub read lets redis-py PING the connection, noticing a dead one
_RECONNECT_FIRST_S = 0.1
_RECONNECT_MAX_S = 5.0  # a restarted Redis is found again within this, without hammering a dead one
_RESUBSCRIBE_DELAY_S = 1.0


@dataclass(frozen=True)
class Message:
    channel: str
    payload: bytes


class Subscription(Protocol):
    """Messages published after entering; iteration ends when aclose() is called."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    def __aiter__(self) -> Self: ...

    async def __anext__(self) -> Message: ...

    async def aclose(self) -> None: ...


class PubSub(Protocol):
    async def publish(self, channel: str, payload: bytes) -> None: ...

    def subscribe(self, *channels: str) -> Subscription: ...


class _BufferedSubscription:
    """A subscriber's bounded queue; when full the oldest message is dropped, since pub/sub is lossy."""

    def __init__(self, channels: Sequence[str]) -> None:
        if not channels:
            raise ValueError("subscribe to at least one channel")
        self.channels = tuple(dict.fromkeys(channels))
        self._buffer: deque[Message] = deque(maxlen=SUBSCRIPTION_BUFFER)
        self._ready = asyncio.Event()
        self._opened = self._closed = False
        self._failure: BaseException | None = None

    async def __aenter__(self) -> Self:
        await self._ensure_open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        await self._ensure_open()
        while not self._buffer or self._closed:
            if self._closed:
                raise StopAsyncIteration
            if self._failure is not None:
                raise PortUnavailable("subscription failed") from self._failure
            self._ready.clear()
            await self._ready.wait()
        return self._buffer.popleft()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready.set()
        if self._opened:
            await self._stop()

    def _push(self, message: Message) -> None:
        self._buffer.append(message)
        self._ready.set()

    async def _ensure_open(self) -> None:
        if not self._opened and not self._closed:
            await self._start()
            self._opened = True

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError


class MemoryPubSub:
    def __init__(self) -> None:
        self._subscribers: defaultdict[str, set[_MemorySubscription]] = defaultdict(set)

    async def publish(self, channel: str, payload: bytes) -> None:
        message = Message(channel, bytes(payload))
        for subscriber in self._subscribers.get(channel, ()):
            subscriber._push(message)

    def subscribe(self, *channels: str) -> Subscription:
        return _MemorySubscription(self._subscribers, channels)


class _MemorySubscription(_BufferedSubscription):
    def __init__(
        self, registry: dict[str, set[_MemorySubscription]], channels: Sequence[str]
    ) -> None:
        super().__init__(channels)
        self._registry = registry

    async def _start(self) -> None:
        for channel in self.channels:
            self._registry.setdefault(channel, set()).add(self)

    async def _stop(self) -> None:
        for channel in self.channels:
            self._registry[channel].discard(self)
            if not self._registry[channel]:
                del self._registry[channel]


class RedisPubSub(RedisPort):
    """Each subscription holds a connection of its own."""

    async def publish(self, channel: str, payload: bytes) -> None:
        with outage_as_unavailable("redis pubsub"):
            await self._client.publish(self._key(channel), payload)

    def subscribe(self, *channels: str) -> Subscription:
        return _RedisSubscription(self._client, self._prefix, channels)


class _RedisSubscription(_BufferedSubscription):
    """Reads in a background task, so that aclose() ends iteration at once by cancelling it.

    If the connection drops (a Redis restart), the task reconnects with capped exponential backoff and
    redis-py subscribes again; messages published meanwhile are lost, as pub/sub promises nothing more.
    """

    def __init__(self, client: aioredis.Redis, prefix: str, channels: Sequence[str]) -> None:
        super().__init__(channels)
        self._prefix = prefix
        self._pubsub = client.pubsub()
        self._reader: asyncio.Task[None] | None = None

    async def _start(self) -> None:
        try:
            with outage_as_unavailable("redis pubsub"):
                await self._pubsub.subscribe(*(self._prefix + c for c in self.channels))
                await self._await_confirmations()
        except BaseException:
            await _close(self._pubsub)
            raise
        self._reader = asyncio.create_task(self._read_forever(), name="plaza-pubsub-reader")

    async def _await_confirmations(self) -> None:
        # Until Redis confirms, a message published from another connection could be missed.
        waiting = len(self.channels)
        while waiting:
            raw = await self._pubsub.get_message(timeout=SOCKET_TIMEOUT_S)
            if raw is None:
                raise PortUnavailable("redis pubsub did not confirm the subscription")
            if raw["type"] == "subscribe":
                waiting -= 1
            self._take(raw)

    async def _read_forever(self) -> None:
        delay = _RECONNECT_FIRST_S
        while True:
            try:
                raw = await self._pubsub.get_message(True, timeout=_POLL_S)
            except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
                log.warning("pubsub connection lost; reconnecting", error=str(exc), delay_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)
                continue
            except Exception as exc:
                log.exception("pubsub reader failed")
                self._failure = exc
                self._ready.set()
                return
            delay = _RECONNECT_FIRST_S
            if raw is not None:
                self._take(raw)

    def _take(self, raw: dict[str, Any]) -> None:
        if raw["type"] == "message":
            channel = _text(raw["channel"]).removeprefix(self._prefix)
            self._push(Message(channel, raw["data"]))

    async def _stop(self) -> None:
        try:
            if self._reader is not None:
                self._reader.cancel()
                # Not `await self._reader`: a cancel of the caller meanwhile is passed on to the
                # reader, and would come back as the reader's own CancelledError, easy to swallow.
                await asyncio.wait({self._reader})
        finally:
            await _close(self._pubsub)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _close(pubsub: aioredis.client.PubSub) -> None:
    close = cast(Callable[[], Awaitable[None]], pubsub.aclose)  # redis-py leaves it unannotated
    await close()


async def listen(pubsub: PubSub, channel: str, handle: Callable[[bytes], object]) -> None:
    """Hand every message on `channel` to `handle`, resubscribing after an outage; runs until
    cancelled. For invalidations: what is missed while unsubscribed must age out of the cache."""
    while True:
        try:
            async with pubsub.subscribe(channel) as subscription:
                async for message in subscription:
                    handle(message.payload)
        except PortUnavailable:
            log.warning("subscription lost; resubscribing", channel=channel)
            await asyncio.sleep(_RESUBSCRIBE_DELAY_S)
