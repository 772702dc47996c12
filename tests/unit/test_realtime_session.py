"""A session's bounded send queue, against a fake socket whose writes we hold back at will; and the
frames written straight to the socket, read back by the `websockets` library's own parser."""

from __future__ import annotations

import asyncio
import datetime as dt

import orjson
import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from plaza.accounts.service import User
from plaza.realtime.protocol import FrameError, decode, encode
from plaza.realtime.session import Session
from plaza.realtime.transport import text_frame

pytestmark = pytest.mark.anyio
USER = User(1, "alice", "Alice", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


def parse_frame(data: bytes) -> Frame:
    """One whole frame, as a client reads it (server frames are not masked)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        assert not reader.buffer  # nothing left over
        return frame
    raise AssertionError("incomplete frame")


class FakeSocket:
    """The server's ASGI `send` (`send_text`), and its `plaza.frames` write (`write_frame`)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []
        self.at_once = 0  # frames taken by write_frame
        self.closed_with: int | None = None
        self.open = asyncio.Event()  # writes wait for this: a client that does not read
        self.open.set()
        self.gone = False

    async def send_text(self, text: str) -> None:
        await self.open.wait()
        self.sent.append(orjson.loads(text))

    def write_frame(self, data: bytes) -> bool:
        if self.gone:
            raise ConnectionResetError("client gone")
        if not self.open.is_set():
            return False  # the socket's buffer is full: `send_text` would wait
        frame = parse_frame(data)
        assert frame.opcode is Opcode.TEXT and frame.fin
        self.sent.append(orjson.loads(frame.data))
        self.at_once += 1
        return True

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = code


def session_on(socket: FakeSocket, queue_size: int = 3, *, at_once: bool = True) -> Session:
    return Session(
        USER,
        "phone",
        send_text=socket.send_text,
        close=socket.close,
        queue_size=queue_size,
        write_frame=socket.write_frame if at_once else None,
    )


async def test_a_client_that_falls_behind_is_told_to_reconnect() -> None:
    socket = FakeSocket()
    socket.open.clear()
    session = session_on(socket)
    overflowed: list[bool] = []
    session.on_overflow = lambda: overflowed.append(True)
    writer = asyncio.create_task(session.pump())
    session.push(encode({"type": "message", "n": 0}))
    await asyncio.sleep(0.01)  # the writer takes it, and waits on the client
    for i in range(1, 10):
        session.push(encode({"type": "message", "n": i}))
    socket.open.set()
    await asyncio.wait_for(writer, 1)
    # The frame being written when the queue overflowed, then straight to the farewell.
    assert [f["type"] for f in socket.sent] == ["message", "reconnect"]
    assert 0 <= int(socket.sent[-1]["after_ms"]) <= 10_000  # type: ignore[call-overload]
    assert socket.closed_with == 1013
    assert overflowed == [True]
    assert session.closed.is_set()


async def test_frames_are_written_at_once_while_nothing_is_queued() -> None:
    socket = FakeSocket()
    session = session_on(socket)
    written: list[float] = []
    session.on_written = written.append
    writer = asyncio.create_task(session.pump())
    await asyncio.sleep(0.01)  # the writer waits for frames
    text = encode({"type": "message", "n": 0})
    session.push(text, since=0.0, frame=text_frame(text.encode()))
    await session.reply({"type": "ack", "n": 1})
    # Written before the pushing task yielded once: no hand-over to the writer.
    assert [f["n"] for f in socket.sent] == [0, 1] and socket.at_once == 2
    assert len(written) == 1 and written[0] > 0
    session.close(1000, "bye")
    await asyncio.wait_for(writer, 1)
    assert socket.closed_with == 1000


async def test_without_the_servers_frame_writer_frames_go_through_the_writer() -> None:
    socket = FakeSocket()
    session = session_on(socket, at_once=False)
    writer = asyncio.create_task(session.pump())
    await asyncio.sleep(0.01)
    session.push(encode({"type": "message", "n": 0}))
    await session.reply({"type": "ack", "n": 1})
    assert socket.sent == []  # not yet: the writer has not run
    await asyncio.sleep(0.01)
    assert [f["n"] for f in socket.sent] == [0, 1] and socket.at_once == 0
    session.close(1000, "bye")
    await asyncio.wait_for(writer, 1)


async def test_frames_the_socket_cannot_take_now_are_written_by_the_writer_in_order() -> None:
    socket = FakeSocket()
    session = session_on(socket, queue_size=10)
    writer = asyncio.create_task(session.pump())
    await asyncio.sleep(0.01)
    socket.open.clear()  # the socket's buffer is full: the frame writer declines
    session.push(encode({"type": "message", "n": 0}))
    session.push(encode({"type": "message", "n": 1}))
    await session.reply({"type": "ack", "n": 2})
    await asyncio.sleep(0.01)
    assert socket.sent == []
    socket.open.set()  # drained: the writer's awaited sends go out, and after them, at once again
    session.push(encode({"type": "message", "n": 3}))  # still behind the queued ones
    await asyncio.sleep(0.01)
    assert [f["n"] for f in socket.sent] == [0, 1, 2, 3]
    session.push(encode({"type": "message", "n": 4}))  # idle again: at once
    assert [f["n"] for f in socket.sent] == [0, 1, 2, 3, 4]
    session.close(1000, "bye")
    await asyncio.wait_for(writer, 1)


async def test_a_write_at_once_to_a_client_gone_ends_the_writer() -> None:
    socket = FakeSocket()
    session = session_on(socket)
    writer = asyncio.create_task(session.pump())
    await asyncio.sleep(0.01)
    socket.gone = True
    session.push(encode({"type": "message", "n": 0}))  # the deliverer hears nothing of it
    session.push(encode({"type": "message", "n": 1}))
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(writer, 1)
    assert session.closed.is_set() and socket.sent == []


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 200_000])
def test_frames_encoded_once_are_read_back_whole(size: int) -> None:
    payload = ("é" * size).encode()[:size]  # lengths on each side of RFC 6455's 7/16/64-bit bounds
    frame = parse_frame(text_frame(payload))
    assert frame.opcode is Opcode.TEXT and frame.fin and frame.data == payload


async def test_a_waiting_write_is_dropped_cleanly_when_the_connection_ends() -> None:
    socket = FakeSocket()
    session = session_on(socket)
    writer = asyncio.create_task(session.pump())
    await asyncio.sleep(0.01)
    socket.open.clear()
    session.push(encode({"type": "message", "n": 0}))
    await asyncio.sleep(0.01)  # the writer waits on the client for it
    writer.cancel()
    await asyncio.wait({writer})
    assert socket.sent == [] and session.closed.is_set()
    socket.open.set()
    await asyncio.sleep(0.01)
    assert socket.sent == []  # the cancelled write never completes later


async def test_closing_with_flush_sends_what_was_queued_first() -> None:
    socket = FakeSocket()
    session = session_on(socket, queue_size=10)
    for i in range(3):
        session.push(encode({"type": "message", "n": i}))
    session.close(1012, "restart", farewell={"type": "reconnect", "after_ms": 5}, flush=True)
    session.push(encode({"type": "message", "n": 99}))  # too late: ignored
    await asyncio.wait_for(session.pump(), 1)
    assert [f.get("n", f["type"]) for f in socket.sent] == [0, 1, 2, "reconnect"]
    assert socket.closed_with == 1012


async def test_replies_wait_for_room_instead_of_failing() -> None:
    socket = FakeSocket()
    session = session_on(socket, queue_size=2)
    replies = asyncio.create_task(_reply_many(session, 6))
    await asyncio.sleep(0.01)
    assert not replies.done()  # blocked on the full queue, the client not reading yet
    writer = asyncio.create_task(session.pump())
    await asyncio.wait_for(replies, 1)
    session.close(1000, "bye", flush=True)
    await asyncio.wait_for(writer, 1)
    assert [f["n"] for f in socket.sent] == list(range(6))


async def test_a_reply_waiting_for_room_returns_when_the_session_ends() -> None:
    session = session_on(FakeSocket(), queue_size=2)
    replies = asyncio.create_task(_reply_many(session, 5))
    await asyncio.sleep(0.01)
    session.abandon()
    await asyncio.wait_for(replies, 1)


async def _reply_many(session: Session, count: int) -> None:
    for n in range(count):
        await session.reply({"type": "message", "n": n})


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\xff", "invalid_json"),
        ("null", "invalid_frame"),
        ('{"type": null}', "missing_type"),
        ('{"type": ["x"]}', "unknown_type"),
        ("é" * 40_000, "frame_too_large"),  # 40,000 characters, 80,000 bytes of UTF-8
    ],
)
def test_frames_are_checked(raw: str | bytes, code: str) -> None:
    with pytest.raises(FrameError) as error:
        decode(raw)
    assert error.value.code == code


def test_frames_write_utc_times_with_z() -> None:
    moment = dt.datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=dt.UTC)
    assert encode({"at": moment}) == '{"at":"2026-11-22T10:00:00.123000Z"}'
