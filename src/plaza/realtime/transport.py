"""The WebSocket protocol `plaza serve` runs: uvicorn's, plus a way to write frames encoded beforehand.

A message to a conversation of ten goes to nine sockets. Through ASGI, each of those writes is a
`websocket.send` event: two coroutines, the text encoded again, and a frame object built and
serialised by `websockets`, nine times over for the same bytes. So the protocol offers one ASGI
extension, `plaza.frames`, whose `write(frame)` puts a whole frame, encoded once for every recipient
(`text_frame`), straight on the transport, from the caller's own code, without awaiting anything.
It writes only what uvicorn's `send` would write at that moment, and declines (returns False) when
`send` would have to wait for the socket to drain, so the caller queues and awaits `send` instead,
keeping the frames in order. Connections that agreed to permessage-deflate are not offered it: their
frames are compressed, each its own way.
"""

from __future__ import annotations

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


class FrameWriterProtocol(WebSocketsSansIOProtocol):
    async def run_asgi(self) -> None:
        if not self.conn.extensions:  # negotiated by now (handle_connect answered the handshake)
            extensions: dict[str, Any] = self.scope["extensions"]
            extensions[FRAMES_EXTENSION] = {"write": self.write_frame}
        await super().run_asgi()

    def write_frame(self, frame: bytes) -> bool:
        """Write a whole encoded frame now; False if the socket's buffer is full (await `send`).

        Raises ClientDisconnected, as `send` does, once the connection is closed or closing."""
        if self.disconnected or self.close_sent or self.conn.state is not State.OPEN:
            raise ClientDisconnected
        if not self.handshake_complete or not self.writable.is_set():
            return False
        self.transport.write(frame)
        return True
