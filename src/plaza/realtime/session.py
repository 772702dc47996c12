"""One authenticated connection (a device) and its bounded queue of frames on their way out."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Final

from plaza.accounts.service import User
from plaza.realtime.protocol import CLOSE_TRY_AGAIN, encode, reconnect_frame
from plaza.realtime.transport import text_frame

__all__ = ["Session"]

SendText = Callable[[str], Coroutine[Any, Any, None]]
Close = Callable[[int, str], Awaitable[None]]
WriteFrame = Callable[[bytes], bool]  # the server's `plaza.frames` write (realtime/transport.py)

# A client that fell behind comes back soon: it is one client, not a whole server's worth.
SLOW_CLIENT_RECONNECT_MS = 2_000
_END: Final = object()  # queued last: the writer stops after the frames before it


class _Failed:
    """A frame written at once failed (the client is gone): the writer raises it, ending the connection."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Session:
    """Frames to the client are written in order: at once while nothing is queued (the usual case),
    else through one queue, written by `pump()`.

    Written at once means from the caller's own task, through the server's `plaza.frames` extension
    (`write_frame`, realtime/transport.py): a frame through the queue costs a wake-up of the writer,
    and the new chain its wait builds is one more for the garbage collector to walk. Where the server
    has no such extension (a test client), or the socket's buffer is full, frames go through the
    queue and the server's ASGI `send`.

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
        write_frame: WriteFrame | None = None,
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
        self._send_text, self._close, self._write_frame = send_text, close, write_frame
        self._queue: asyncio.Queue[object] = asyncio.Queue(queue_size)
        self._closing: tuple[int, str, str | None] | None = None
        self._idle = False  # the writer waits on an empty queue: a frame may be written at once

    @property
    def closing(self) -> bool:
        return self._closing is not None

    def push(self, text: str, since: float | None = None, frame: bytes | None = None) -> None:
        """Write an encoded frame, or queue it; a full queue means the client is told to reconnect.

        `since` (wall-clock seconds): when what the frame carries happened, e.g. a message's commit;
        `on_written` hears how long it took to reach the socket. `frame`: `text` as a whole WebSocket
        frame (`text_frame`), if the caller has it: a broadcast encodes it once for every recipient.
        """
        if self._closing is not None:
            return
        if self._written_at_once(text, frame):
            if since is not None:
                self.on_written(time.time() - since)
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
        text = encode(frame)
        if not self._written_at_once(text, None):
            await self._queue.put(text)

    def reply_at_once(self, frame: Mapping[str, Any]) -> bool:
        """Answer now if the answer can be written at once; False: `reply` must, in its turn."""
        return self._closing is None and self._written_at_once(encode(frame), None)

    def _written_at_once(self, text: str, frame: bytes | None) -> bool:
        """Whether the frame went to the socket now; False: it must queue (as must those after it)."""
        if self._write_frame is None or not self._idle or not self._queue.empty():
            return False
        try:
            return self._write_frame(frame if frame is not None else text_frame(text.encode()))
        except Exception as exc:  # the client is gone: the writer raises it, ending the connection
            self._idle = False
            self._queue.put_nowait(_Failed(exc))
            return False

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
                self._queue.get_nowait()
