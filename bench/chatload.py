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
app does (the server closes a connection silent for 30 s). A step's report includes this process's
own CPU (getrusage) from the start of its sends to their end, so the load generator can be seen.

The connections are a minimal RFC 6455 client of its own, `WebSocket` below: an `asyncio.Protocol`
(on uvloop) per connection, the HTTP/1.1 Upgrade handshake, then frames parsed in `data_received`.
On a 2-core machine the clients' CPU is taken from the server being measured, and the `websockets`
library's asyncio client costs more per frame: its per-connection reader tasks, futures and sans-I/O
parser against one callback here (see bench/README.md for the figures). With compression on (the
default), it offers permessage-deflate as browsers do (`permessage-deflate; client_max_window_bits`,
RFC 7692), inflates every compressed frame the server sends, and compresses its own sends too (per
connection, with context takeover unless the server asks otherwise), so the server inflates what it
receives and deflates what it sends, as it would with a browser.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import resource
import struct
import time
import uuid
import zlib
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
import uvloop
from chatseed import Member

try:
    from websockets.speedups import apply_mask  # the websockets package's C helper
except ImportError:  # pure Python: XOR as one big integer

    def apply_mask(data: bytes | bytearray | memoryview, mask: bytes | bytearray) -> bytes:
        n = len(data)
        masks = (mask * (n // 4 + 1))[:n]
        return (int.from_bytes(data, "big") ^ int.from_bytes(masks, "big")).to_bytes(n, "big")


PING = b'{"type":"ping"}'
PING_TICK_S = 0.1
SEND_TICK_S = 0.002
READY_TIMEOUT_S = 60.0
CLOSE_TIMEOUT_S = 5.0


def cpu_now() -> float:
    """This process's user + system CPU seconds so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_nofile() -> int:
    """Open files up to the hard limit (a connection is a file); returns the new soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --- the WebSocket client ---------------------------------------------------------------------

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, for Sec-WebSocket-Accept
OP_CONTINUATION, OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x8, 0x9, 0xA
FIN, RSV1, MASKED = 0x80, 0x40, 0x80
# RFC 7692: stripped from the end of each compressed message, put back to inflate it
DEFLATE_TAIL = b"\x00\x00\xff\xff"
CLOSE_NO_STATUS = 1005


class HandshakeError(Exception):
    pass


def client_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """One final frame, masked as a client's must be (a fresh random 4-byte mask each)."""
    n = len(payload)
    b0 = FIN | (RSV1 if rsv1 else 0) | opcode
    if n < 126:
        head = bytes((b0, MASKED | n))
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, MASKED | 126, n)
    else:
        head = struct.pack("!BBQ", b0, MASKED | 127, n)
    mask = os.urandom(4)
    return head + mask + apply_mask(payload, mask)


def deflate_params(header: str | None) -> dict[str, str] | None:
    """The server's permessage-deflate parameters (name -> value, "" if none), or None if absent."""
    for extension in (header or "").split(","):
        name, *params = (part.strip() for part in extension.split(";"))
        if name == "permessage-deflate":
            pairs = (param.partition("=") for param in params)
            return {k.strip(): v.strip().strip('"') for k, _, v in pairs}
    return None


class WebSocket(asyncio.Protocol):
    """One client connection: the Upgrade handshake, then server frames parsed in `data_received`.

    `first` resolves with the first message (or fails if the handshake does, or the connection is
    lost before it); every later message goes to `on_message`. Pings are answered with pongs, a close
    frame with a close frame. Sends are never awaited: the transport buffers them.
    """

    def __init__(self, url: str, compression: bool, on_message: Callable[[bytes], None]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.key = base64.b64encode(os.urandom(16))
        self.request = (
            f"GET {parts.path or '/'}{'?' if parts.query else ''}{parts.query} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self.key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
            + (
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                if compression
                else ""
            )
            + "\r\n"
        ).encode()
        self.compression, self.on_message = compression, on_message
        loop = asyncio.get_running_loop()
        self.first: asyncio.Future[bytes] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.open = False  # upgraded, and no close frame sent or received
        self.close_code: int | None = None  # the server's, from its close frame
        self.fragments: list[bytes] = []  # of a message that came in more than one frame
        self.compressed = False  # the message being received has RSV1 set
        # permessage-deflate, once agreed: the server's sends (inflate) and ours (deflate)
        self.deflate = False
        self.inflater: Any = None
        self.inflate_reset = False  # server_no_context_takeover: a fresh decompressobj per message
        self.deflater: Any = None
        self.deflate_bits = 15
        self.deflate_flush = zlib.Z_SYNC_FLUSH  # Z_FULL_FLUSH under client_no_context_takeover

    async def connect(self) -> bytes:
        """Open the connection; returns the first message."""
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, self.host, self.port)
        return await self.first

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's: not a subclass
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if not self.first.done():
            reason = f"closed {self.close_code}" if self.close_code else "connection lost"
            self.first.set_exception(ConnectionError(f"{reason} before the first message"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.buffer:  # the rest of a frame (or of the handshake) that came in pieces
            data = bytes(self.buffer) + data
            self.buffer.clear()
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buffer += data
                return
            head, data = data[:end].decode("latin-1"), data[end + 4 :]
            try:
                self._upgrade(head)
            except HandshakeError as exc:
                self.first.set_exception(exc)
                self.abort()
                return
        pos, size = 0, len(data)
        while size - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length, at = b1 & 0x7F, pos + 2
            if length == 126:
                if size - at < 2:
                    break
                length, at = int.from_bytes(data[at : at + 2], "big"), at + 2
            elif length == 127:
                if size - at < 8:
                    break
                length, at = int.from_bytes(data[at : at + 8], "big"), at + 8
            if size - at < length:
                break
            if b1 & MASKED:  # a server's frames are never masked (RFC 6455 5.1)
                self._fail(1002)
                return
            self._frame(b0, data[at : at + length])
            pos = at + length
        if pos < size:
            self.buffer += data[pos:]

    # --- the handshake and frames

    def _upgrade(self, head: str) -> None:
        status, *lines = head.split("\r\n")
        code = status.split(" ", 2)[1] if status.count(" ") else status
        if code != "101":
            raise HandshakeError(f"status {code}")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            headers[name] = (
                f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
            )
        accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            raise HandshakeError("wrong Sec-WebSocket-Accept")
        params = deflate_params(headers.get("sec-websocket-extensions"))
        if params is not None:
            if not self.compression:
                raise HandshakeError("permessage-deflate not offered")
            self.deflate = True
            self.inflate_reset = "server_no_context_takeover" in params
            self.deflate_bits = int(params.get("client_max_window_bits") or 15)
            if "client_no_context_takeover" in params:
                self.deflate_flush = zlib.Z_FULL_FLUSH
        self.upgraded = self.open = True

    def _frame(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        if opcode == OP_PING:
            self._write(client_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.close_code = (
                int.from_bytes(payload[:2], "big") if len(payload) >= 2 else CLOSE_NO_STATUS
            )
            if self.open:  # theirs first: answer it; ours first, this is the answer
                self.open = False
                self._write(client_frame(OP_CLOSE, payload[:2]))
            if self.transport is not None:
                self.transport.close()
        elif opcode < OP_CLOSE:  # text, binary or continuation; pongs are ignored
            if opcode != OP_CONTINUATION:  # a message's first frame: only it carries RSV1
                self.fragments.clear()
                self.compressed = bool(b0 & RSV1)
            if not b0 & FIN:
                self.fragments.append(payload)
                return
            if self.fragments:
                payload = b"".join(self.fragments) + payload
                self.fragments.clear()
            message = self._inflate(payload) if self.compressed else payload
            if self.first.done():
                self.on_message(message)
            else:
                self.first.set_result(message)

    def _inflate(self, message: bytes) -> bytes:
        if self.inflater is None or self.inflate_reset:
            self.inflater = zlib.decompressobj(wbits=-15)
        data: bytes = self.inflater.decompress(message + DEFLATE_TAIL)
        return data

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _fail(self, code: int) -> None:
        if self.open:
            self.open = False
            self._write(client_frame(OP_CLOSE, code.to_bytes(2, "big")))
        if self.transport is not None:
            self.transport.close()

    # --- for the client

    def send(self, message: bytes) -> None:
        """A text message, compressed if permessage-deflate was agreed."""
        if not self.open or self.transport is None or self.transport.is_closing():
            raise ConnectionError("the connection is closed")
        if not self.deflate:
            self.transport.write(client_frame(OP_TEXT, message))
            return
        if self.deflater is None:  # made on first use: most connections send little
            self.deflater = zlib.compressobj(wbits=-self.deflate_bits, memLevel=5)
        data = self.deflater.compress(message) + self.deflater.flush(self.deflate_flush)
        self.transport.write(client_frame(OP_TEXT, data[:-4], rsv1=True))

    async def close(self, code: int = 1000) -> None:
        """The closing handshake: a close frame, then wait for the server's and for it to hang up."""
        if self.open:
            self.open = False
            self._write(client_frame(OP_CLOSE, code.to_bytes(2, "big")))
        try:
            await asyncio.wait_for(asyncio.shield(self.lost), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.abort()


# --- the load ---------------------------------------------------------------------------------


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
    cpu_start: float = 0.0  # this process's user + system CPU when the send loop starts
    cpu_end: float | None = None  # ... and when it ends (start_at + duration)


@dataclass
class Conn:
    member: Member
    ws: WebSocket


class Client:
    def __init__(self, base: str, members: list[Member], compression: bool) -> None:
        self.base, self.members, self.compression = base, members, compression
        self.conns: list[Conn] = []
        self.steps: dict[int, Step] = {}
        self.current: Step = Step()  # frames that belong to no step (connect time) count here
        self.heartbeat_s = 10.0
        self.tasks: set[asyncio.Task[None]] = set()

    # --- connecting ---------------------------------------------------------------------------

    async def connect_all(self, rate: float, concurrency: int) -> dict[str, Any]:
        limit = asyncio.Semaphore(concurrency)
        failures: Counter[str] = Counter()
        started = time.time()

        async def one(i: int, member: Member) -> None:
            await asyncio.sleep(max(0.0, started + i / rate - time.time()))
            ws = WebSocket(f"{self.base}/ws?token={member.token}", self.compression, self._on_text)
            async with limit:
                try:
                    ready = orjson.loads(await asyncio.wait_for(ws.connect(), READY_TIMEOUT_S))
                except Exception as exc:
                    failures[
                        str(exc) if isinstance(exc, HandshakeError) else type(exc).__name__
                    ] += 1
                    ws.abort()
                    return
            if ready.get("type") != "ready":
                failures[f"first frame {ready.get('type')}"] += 1
                await ws.close()
                return
            self.heartbeat_s = float(ready.get("heartbeat_s", self.heartbeat_s))
            self.conns.append(Conn(member, ws))

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

    def _on_text(self, raw: bytes) -> None:
        """Every message after a connection's first (`ready`), of every connection."""
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
                if conn.ws.open:
                    conn.ws.send(PING)

    # --- sending ------------------------------------------------------------------------------

    def start_step(self, sid: int, rate: float, start_at: float, duration: float) -> None:
        self.current = self.steps[sid] = Step()
        self._spawn(self._send(sid, self.current, rate, start_at, duration))

    async def _send(
        self, sid: int, step: Step, rate: float, start_at: float, duration: float
    ) -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        step.cpu_start = cpu_now()
        end, done = start_at + duration, 0
        rng = random.Random()
        while (now := time.time()) < end:
            due = int((now - start_at) * rate)
            while done < due:
                done += 1
                conn = rng.choice(self.conns)
                if not conn.ws.open:
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
                    conn.ws.send(orjson.dumps(frame))
                except ConnectionError:
                    step.send_errors += 1
                    continue
                step.sent += 1
                step.expected += conn.member.size - 1
            await asyncio.sleep(SEND_TICK_S)
        step.cpu_end = cpu_now()

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
        closed = Counter(
            f"closed {c.ws.close_code or 'no close frame'}" for c in self.conns if not c.ws.open
        )
        return self.status(sid) | {
            "acked_in_window": sum(1 for t in step.ack_at if t <= window_end),
            "delivered_in_window": sum(1 for t in step.recv_at if t <= window_end),
            "lat_ms": step.lat_ms.tolist(),
            "ack_ms": step.ack_ms.tolist(),
            "send_errors": step.send_errors,
            "errors": dict(step.errors + closed),
            "open": sum(1 for c in self.conns if c.ws.open),
            # the send loop's span, start_at to start_at + duration (now, if it has not ended)
            "cpu_s": (cpu_now() if step.cpu_end is None else step.cpu_end) - step.cpu_start,
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
