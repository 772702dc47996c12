"""One authenticated connection (a device) and its bounded queue of frames on their way out."""

from __future__ import annotations

import asyncio
import contextlib
import time
import types
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any, Final

from plaza.accounts.service import User
from plaza.realtime.protocol import CLOSE_TRY_AGAIN, encode, reconnect_frame

__all__ = ["Session"]

SendText = Callable[[str], Coroutine[Any, Any, None]]
Close = Callable[[int, str], Awaitable[None]]

# A client that fell behind comes back soon: it is one client, not a whole server's worth.
SLOW_CLIENT_RECONNECT_MS = 2_000
_END: Final = object()  # queued last: the writer stops after the frames before it


class _Unfinished:
    """A frame written at once (`Session._write_now`) whose send had to wait: the writer finishes it."""

    def __init__(self, send: Coroutine[Any, Any, None], waiting: Any, since: float | None) -> None:
        self.send, self.waiting, self.since = send, waiting, since


class _Failed:
    """A frame written at once failed (the client is gone): the writer raises it, ending the connection."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


@types.coroutine
def _finish(send: Coroutine[Any, Any, None], waiting: Any) -> Generator[Any, Any, None]:
    """Drive `send`, started elsewhere and now awaiting `waiting`, to its end in the current task:
    the task waits for what the send waits for, and hands back what it hears."""
    while True:
        try:
            yield waiting
        except BaseException as exc:  # cancelled, say: the send hears of it as it would have
            try:
                waiting = send.throw(exc)
            except StopIteration:
                return
            continue
        try:
            waiting = send.send(None)
        except StopIteration:
            return


class Session:
    """Frames to the client are written in order: at once while nothing is queued (the usual case),
    else through one queue, written by `pump()`.

    `push` never waits: deliveries to a client that cannot keep up fill its queue, and it is then told to
    reconnect (and sync) rather than hold the sender or grow without bound. `reply` answers the client's
    own frames and does wait for room, so a client asking for much (a sync) is served at its own pace.
    """

    def __init__(
        self,
        user: User,
        device_id: str,
        *,
        send_text: SendText,
        close: Close,
        queue_size: int,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.user = user
        self.device_id = device_id
        self.busy = False  # a handler is running for one of its frames
        self.heard = time.monotonic()  # when the client last sent a frame (the idle sweep reads it)
        self.closed = (
            asyncio.Event()
        )  # set once the writer is done (close sent, or the client gone)
        self.on_overflow: Callable[[], None] = lambda: None
        self.on_written: Callable[[float], None] = lambda _seconds: None
        self._send_text, self._close = send_text, close
        self._queue: asyncio.Queue[object] = asyncio.Queue(queue_size)
        self._closing: tuple[int, str, str | None] | None = None
        self._idle = False  # the writer waits on an empty queue: a frame may be written at once

    @property
    def closing(self) -> bool:
        return self._closing is not None

    def push(self, text: str, since: float | None = None) -> None:
        """Write an encoded frame, or queue it; a full queue means the client is told to reconnect.

        `since` (wall-clock seconds): when what the frame carries happened, e.g. a message's commit;
        `on_written` hears how long it took to reach the socket.
        """
        if self._closing is not None:
            return
        if self._idle and self._queue.empty():
            self._write_now(text, since)
            return
        try:
            self._queue.put_nowait(text if since is None else (text, since))
        except asyncio.QueueFull:
            self.on_overflow()
            self.close(
                CLOSE_TRY_AGAIN, "too slow", farewell=reconnect_frame(SLOW_CLIENT_RECONNECT_MS)
            )

    async def reply(self, frame: Mapping[str, Any]) -> None:
        """Answer this client's own frame: written at once, else queued, waiting for room if need be."""
        if self._closing is not None:
            return
        if self._idle and self._queue.empty():
            self._write_now(encode(frame), None)
        else:
            await self._queue.put(encode(frame))

    def _write_now(self, text: str, since: float | None) -> None:
        """Write a frame from the caller's own task while the writer has nothing queued: a frame
        through the queue costs a wake-up of the writer, and the new chain its wait builds is one more
        for the garbage collector to walk. The server's `send` returns at once unless the socket's
        buffer is full; if it waits instead, the writer finishes it, and frames queue behind it."""
        send = self._send_text(text)
        try:
            waiting = send.send(None)
        except StopIteration:
            if since is not None:
                self.on_written(time.time() - since)
            return
        except Exception as exc:
            self._idle = False
            self._queue.put_nowait(_Failed(exc))
            return
        self._idle = False
        self._queue.put_nowait(_Unfinished(send, waiting, since))

    def close(
        self,
        code: int,
        reason: str,
        *,
        farewell: Mapping[str, Any] | None = None,
        flush: bool = False,
    ) -> None:
        """Stop: send `farewell` (if any), then close with `code`.

        With `flush`, frames already queued go first when there is room to mark the end after them;
        otherwise they are dropped, as a client that reconnects syncs them anyway.
        """
        if self._closing is not None:
            return
        self._closing = (code, reason, encode(farewell) if farewell is not None else None)
        if not flush or self._queue.full():
            self._discard_queued()
        self._queue.put_nowait(_END)

    async def pump(self) -> None:
        """Write queued frames until `close()`; then the farewell and the close frame."""
        try:
            while True:
                self._idle = self._queue.empty() and self._closing is None
                item = await self._queue.get()
                self._idle = False
                if item is _END:
                    break
                if isinstance(item, str):
                    await self._send_text(item)
                elif isinstance(item, tuple):
                    text, since = item
                    await self._send_text(text)
                    self.on_written(time.time() - since)
                elif isinstance(item, _Unfinished):
                    await _finish(item.send, item.waiting)
                    if item.since is not None:
                        self.on_written(time.time() - item.since)
                else:
                    assert isinstance(item, _Failed)
                    raise item.error
            assert self._closing is not None
            code, reason, farewell = self._closing
            if farewell is not None:
                await self._send_text(farewell)
            await self._close(code, reason)
        finally:
            self._idle = False
            self.abandon()

    def abandon(self) -> None:
        """The connection is over (closed, or the client went away): drop whatever is queued."""
        if self._closing is None:
            self._closing = (1000, "", None)
        self.closed.set()
        self._discard_queued()

    def _discard_queued(self) -> None:
        # Emptying the queue also wakes any `reply` waiting for room; it then returns at once.
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                item = self._queue.get_nowait()
                if isinstance(item, _Unfinished):
                    item.send.close()
