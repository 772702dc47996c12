"""A Redis that hangs (accepts, never answers) costs one timeout, then calls fail at once for a while."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest

from plaza.platform.breaker import Breaker
from plaza.platform.kv import SOCKET_TIMEOUT_S, PortUnavailable, RedisKV, redis_client
from plaza.platform.ratelimit import RedisRateLimiter
from plaza.settings import Rate

pytestmark = pytest.mark.anyio


class FakeRedis:
    """A TCP server on a free port that behaves as a broken Redis would (`_serve`)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.done = asyncio.Event()  # set when the test ends: handlers still waiting return

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"


S = TypeVar("S", bound=FakeRedis)


@asynccontextmanager
async def serving(fake: S) -> AsyncIterator[S]:
    fake.server = await asyncio.start_server(fake._serve, "127.0.0.1", 0)
    try:
        yield fake
    finally:
        fake.done.set()
        fake.server.close()


class HungServer(FakeRedis):
    """Accepts TCP connections and never says a word."""

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.read()  # until the client gives up
        writer.close()


async def test_after_one_timeout_calls_fail_at_once_until_the_cooldown_ends() -> None:
    async with serving(HungServer()) as hung:
        now = [0.0]
        client = redis_client(hung.url, breaker=Breaker(cooldown_s=1.0, clock=lambda: now[0]))
        kv, limiter = RedisKV(client, "x:"), RedisRateLimiter(client, "x:")
        with pytest.raises(PortUnavailable):
            await kv.get("a")  # waits out the socket timeout: the server never answers
        tried = hung.connections
        for _ in range(20):  # every port on this client: not one goes near the server
            with pytest.raises(PortUnavailable):
                await kv.set("a", b"1")
            with pytest.raises(PortUnavailable):
                await limiter.hit("k", Rate(capacity=1, period_s=1.0))
        await asyncio.sleep(0.05)
        assert hung.connections == tried
        now[0] += 1.5  # the cooldown is over: the next call tries the server again
        with pytest.raises(PortUnavailable):
            await kv.get("a")
        await asyncio.sleep(0.05)
        assert hung.connections > tried
        await client.aclose()


async def test_a_healthy_redis_is_not_held_back(redis_url: str) -> None:
    breaker = Breaker()
    client = redis_client(redis_url, breaker=breaker)
    kv = RedisKV(client, "x-breaker:")
    await kv.set("a", b"1", ttl_s=5)
    assert await kv.get("a") == b"1"
    assert not breaker.open
    await kv.delete("a")
    await client.aclose()


_REPLIES = {b"PING": b"+PONG\r\n", b"HELLO": b"-ERR unknown command 'HELLO'\r\n"}  # RESP2, then


class DeafServer(FakeRedis):
    """Answers the client's handshake, then stops reading: a large write fills the socket's buffers."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            for command in data.split(b"*")[1:]:  # the handshake's commands, a reply each
                name = command.split(b"\r\n")[2]
                if name == b"SET":  # the command under test: never read the rest
                    await self.done.wait()
                    writer.close()
                    return
                writer.write(_REPLIES.get(name, b"+OK\r\n"))


async def test_a_write_the_server_never_takes_fails_within_the_socket_timeout() -> None:
    async with serving(DeafServer()) as deaf:
        breaker = Breaker()
        client = redis_client(deaf.url, breaker=breaker)
        kv = RedisKV(client, "x:")
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(PortUnavailable):
            await kv.set("big", b"x" * 64_000_000)  # far more than the sockets' buffers hold
        assert loop.time() - started < SOCKET_TIMEOUT_S + 1
        assert breaker.open  # the pool's other calls fail at once for a while
        await client.aclose()
