"""The WebSocket protocol `plaza serve` runs: uvicorn's, plus a way to write frames encoded beforehand.

A message to a conversation of ten goes to nine sockets. Through ASGI, each of those writes is a
`websocket.send` event: two coroutines, the text encoded again, and a frame object built and
serialised by `websockets`, nine times over for the same bytes. So the protocol offers one ASGI
extension, `plaza.frames`, whose `write(frame)` puts a whole frame, encoded once for every recipient
(`text_frame`), straight on the transport, from the caller's own code, without awaiting anything.
It writes only what uvicorn's `send` would write at that moment, and declines (returns False) when
`send` would have to wait for the socket to drain, so the caller queues and awaits `send` instead,
keeping the frames in order.

The same extension reads: after `listen(on_frame)`, each whole data frame the client sends is handed
to `on_frame` as it is parsed, instead of being queued for `receive`. Through `receive`, every frame
(a ping from every client every heartbeat) costs the waiting reader a wake-up and builds its awaiting
chain anew (two coroutines and a future), young objects for the garbage collector to walk, and
uvicorn stops and restarts reading the socket around each one. `receive` then only hears the
disconnect; `pause(True)` stops reading while the listener is behind, `pause(False)` resumes it.
Connections that agreed to permessage-deflate are not offered the extension: their frames are
compressed, each its own way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

__all__ = ["FRAMES_EXTENSION", "FrameWriterProtocol", "text_frame"]

FRAMES_EXTENSION = "plaza.frames"
_TEXT_FIN = 0x81  # FIN, opcode 1 (text); a server's frames are not masked (RFC 6455 5.1)


def text_frame(payload: bytes) -> bytes:
    """A whole, unfragmented, unmasked text frame carrying `payload` (UTF-8)."""
    size = len(payload)
    if size < 126:
        return bytes((_TEXT_FIN, size)) + payload
    if size < 1 << 16:
        return bytes((_TEXT_FIN, 126)) + size.to_bytes(2, "big") + payload
    return bytes((_TEXT_FIN, 127)) + size.to_bytes(8, "big") + payload


OnFrame = Callable[[str | bytes], None]


def payload(message: Mapping[str, Any]) -> str | bytes:
    """A `websocket.receive` message's data: its text, else its bytes."""
    text = message.get("text")
    return text if text is not None else message.get("bytes") or b""


class FrameWriterProtocol(WebSocketsSansIOProtocol):
    _on_frame: OnFrame | None = None
    _listener_paused = False

    async def run_asgi(self) -> None:
        if not self.conn.extensions:  # negotiated by now (handle_connect answered the handshake)
            extensions: dict[str, Any] = self.scope["extensions"]
            extensions[FRAMES_EXTENSION] = {
                "write": self.write_frame,
                "listen": self.listen,
                "pause": self.pause,
            }
        await super().run_asgi()

    def listen(self, on_frame: OnFrame) -> None:
        """Hand every data frame to `on_frame` from now on, those already queued first, in order."""
        queued = []
        while not self.queue.empty():
            queued.append(self.queue.get_nowait())
        self._on_frame = on_frame
        for message in queued:
            if message["type"] == "websocket.receive":
                on_frame(payload(message))
            else:  # the disconnect, for `receive`
                self.queue.put_nowait(message)
        if self.read_paused:  # uvicorn stopped reading until `receive` took what it queued
            self.read_paused = False
            self._resume()

    def pause(self, paused: bool) -> None:
        """Stop reading the socket (the listener has frames enough to handle), or start again."""
        self._listener_paused = paused
        if not paused:
            self._resume()
        elif not self.transport.is_closing():
            self.transport.pause_reading()

    def _resume(self) -> None:
        if not (self._listener_paused or self.read_paused or self.transport.is_closing()):
            self.transport.resume_reading()

    def send_receive_event_to_app(self) -> None:
        on_frame = self._on_frame
        if on_frame is None or self.close_sent:
            super().send_receive_event_to_app()  # which drops it after close_sent, as it should
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.curr_msg_data_type != "text":
            on_frame(bytes(data))
            return
        try:
            text = data.decode()
        except UnicodeDecodeError:  # as uvicorn answers it: close with 1007
            self.logger.exception("Invalid UTF-8 sequence received from client.")
            self.conn.send_close(1007)
            self.handle_parser_exception()
            return
        on_frame(text)

    def write_frame(self, frame: bytes) -> bool:
        """Write a whole encoded frame now; False if the socket's buffer is full (await `send`).

        Raises ClientDisconnected, as `send` does, once the connection is closed or closing."""
        if self.disconnected or self.close_sent or self.conn.state is not State.OPEN:
            raise ClientDisconnected
        if not self.handshake_complete or not self.writable.is_set():
            return False
        self.transport.write(frame)
        return True
