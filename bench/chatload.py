"""The chat benchmark's client: one process holding a share of the connections, driven over a pipe.

`chat.py` starts a few of these (multiprocessing, spawn) and sends each command to all of them:
- `("connect", rate, concurrency)`: open every connection (`/ws?token=`), at most `rate` new ones per
  second and `concurrency` handshakes at once, each counted once its `ready` frame came;
- `("step", sid, rate, start_at, duration)`: from wall-clock `start_at`, send `rate` messages per second
  for `duration` s, each from a random connection of this process into its conversation;
- `("status", sid)`, `("report", sid, window_end)`, `("close",)`.

Every message's content starts with its step and its send time (`time.time()`, shared by the processes
of one machine): a receiver records receive time - send time for each `message` frame (the baseline
relays the `send` frame itself, which counts the same), and the sender counts its `ack`s, which Plaza
sends once the message is committed. Every connection pings at the server's `heartbeat_s`, as the web
app does (the server closes a connection silent for 30 s).
"""

from __future__ import annotations

import asyncio
import random
import resource
import time
import uuid
from array import array
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import orjson
import uvloop
from chatseed import Member
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

PING = '{"type":"ping"}'
PING_TICK_S = 0.1
SEND_TICK_S = 0.002
READY_TIMEOUT_S = 60.0


def raise_nofile() -> int:
    """Open files up to the hard limit (a connection is a file); returns the new soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclass
class Step:
    sent: int = 0
    expected: int = 0  # deliveries the sends of this process should cause (size - 1 each)
    send_errors: int = 0
    ack_ms: array[float] = field(default_factory=lambda: array("d"))
    ack_at: array[float] = field(default_factory=lambda: array("d"))
    lat_ms: array[float] = field(default_factory=lambda: array("d"))
    recv_at: array[float] = field(default_factory=lambda: array("d"))
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Conn:
    member: Member
    ws: ClientConnection
    open: bool = True


class Client:
    def __init__(self, base: str, members: list[Member], compression: bool) -> None:
        self.base, self.members, self.compression = base, members, compression
        self.conns: list[Conn] = []
        self.steps: dict[int, Step] = {}
        self.current: Step = Step()  # frames that belong to no step (connect time) count here
        self.heartbeat_s = 10.0
        self.closed: Counter[str] = Counter()
        self.tasks: set[asyncio.Task[None]] = set()

    # --- connecting ---------------------------------------------------------------------------

    async def connect_all(self, rate: float, concurrency: int) -> dict[str, Any]:
        limit = asyncio.Semaphore(concurrency)
        failures: Counter[str] = Counter()
        started = time.time()

        async def one(i: int, member: Member) -> None:
            await asyncio.sleep(max(0.0, started + i / rate - time.time()))
            async with limit:
                try:
                    ws = await connect(
                        f"{self.base}/ws?token={member.token}",
                        compression="deflate" if self.compression else None,
                        ping_interval=None,  # the server pings (uvicorn); the app pings below
                        open_timeout=READY_TIMEOUT_S,
                        proxy=None,
                    )
                    ready = orjson.loads(await asyncio.wait_for(ws.recv(), READY_TIMEOUT_S))
                except Exception as exc:
                    failures[type(exc).__name__] += 1
                    return
            if ready.get("type") != "ready":
                failures[f"first frame {ready.get('type')}"] += 1
                await ws.close()
                return
            self.heartbeat_s = float(ready.get("heartbeat_s", self.heartbeat_s))
            conn = Conn(member, ws)
            self.conns.append(conn)
            self._spawn(self._receive(conn))

        # Connections opened first must keep pinging while the rest connect (10,000 take over a
        # minute), or the server closes them as idle after 30 s.
        self._spawn(self._pinger())
        await asyncio.gather(*(one(i, m) for i, m in enumerate(self.members)))
        return {
            "connected": len(self.conns),
            "failed": dict(failures),
            "seconds": time.time() - started,
        }

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- receiving ----------------------------------------------------------------------------

    def _step_of(self, content: str) -> tuple[Step | None, float]:
        sid, sent_at, _ = content.split(" ", 2)
        return self.steps.get(int(sid)), float(sent_at)

    async def _receive(self, conn: Conn) -> None:
        try:
            async for raw in conn.ws:
                now = time.time()
                frame = orjson.loads(raw)
                kind = frame.get("type")
                if kind == "message" or kind == "send":  # the baseline relays the send frame
                    content = frame["message"]["content"] if kind == "message" else frame["content"]
                    step, sent_at = self._step_of(content)
                    if step is not None:
                        step.lat_ms.append((now - sent_at) * 1000)
                        step.recv_at.append(now)
                elif kind == "ack":
                    step, sent_at = self._step_of(frame["message"]["content"])
                    if step is not None:
                        step.ack_ms.append((now - sent_at) * 1000)
                        step.ack_at.append(now)
                elif kind == "error" or kind == "reconnect":
                    self.current.errors[f"{kind} {frame.get('code', '')}".strip()] += 1
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else "no close frame"
            self.closed[f"closed {code}"] += 1
        finally:
            conn.open = False

    async def _pinger(self) -> None:
        """Each connection pings once per heartbeat, the pings spread evenly over it."""
        budget, at = 0.0, 0
        while True:
            await asyncio.sleep(PING_TICK_S)
            budget += len(self.conns) * PING_TICK_S / self.heartbeat_s
            while budget >= 1 and self.conns:
                budget -= 1
                conn = self.conns[at % len(self.conns)]
                at += 1
                if conn.open:
                    try:
                        await conn.ws.send(PING)
                    except ConnectionClosed:
                        conn.open = False

    # --- sending ------------------------------------------------------------------------------

    def start_step(self, sid: int, rate: float, start_at: float, duration: float) -> None:
        self.current = self.steps[sid] = Step()
        self._spawn(self._send(sid, self.current, rate, start_at, duration))

    async def _send(
        self, sid: int, step: Step, rate: float, start_at: float, duration: float
    ) -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        end, done = start_at + duration, 0
        rng = random.Random()
        while (now := time.time()) < end:
            due = int((now - start_at) * rate)
            while done < due:
                done += 1
                conn = rng.choice(self.conns)
                if not conn.open:
                    step.send_errors += 1
                    continue
                frame = {
                    "type": "send",
                    "client_msg_id": uuid.uuid4().hex,
                    "conversation_id": str(conn.member.conversation_id),
                    "content": f"{sid} {time.time():.6f} hello from the chat benchmark",
                    "message_type": "text",
                }
                try:
                    await conn.ws.send(orjson.dumps(frame).decode())
                except ConnectionClosed:
                    conn.open = False
                    step.send_errors += 1
                    continue
                step.sent += 1
                step.expected += conn.member.size - 1
            await asyncio.sleep(SEND_TICK_S)

    # --- reporting ----------------------------------------------------------------------------

    def status(self, sid: int) -> dict[str, int]:
        step = self.steps[sid]
        return {
            "sent": step.sent,
            "acked": len(step.ack_ms),
            "expected": step.expected,
            "delivered": len(step.lat_ms),
        }

    def report(self, sid: int, window_end: float) -> dict[str, Any]:
        step = self.steps[sid]
        return self.status(sid) | {
            "acked_in_window": sum(1 for t in step.ack_at if t <= window_end),
            "delivered_in_window": sum(1 for t in step.recv_at if t <= window_end),
            "lat_ms": step.lat_ms.tolist(),
            "ack_ms": step.ack_ms.tolist(),
            "send_errors": step.send_errors,
            "errors": dict(step.errors + self.closed),
            "open": sum(1 for c in self.conns if c.open),
        }

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*(c.ws.close() for c in self.conns), return_exceptions=True)


async def _serve(pipe: Connection, client: Client) -> None:
    loop = asyncio.get_running_loop()
    while True:
        command, *args = await loop.run_in_executor(None, pipe.recv)
        result: Any = None
        if command == "connect":
            result = await client.connect_all(*args)
        elif command == "step":
            client.start_step(*args)
        elif command == "status":
            result = client.status(*args)
        elif command == "report":
            result = client.report(*args)
        elif command == "close":
            await client.close()
            pipe.send(None)
            return
        pipe.send(result)


def main(pipe: Connection, base: str, members: list[Member], compression: bool) -> None:
    """A client process's entry point (multiprocessing target)."""
    raise_nofile()
    uvloop.run(_serve(pipe, Client(base, members, compression)))
