"""A loopback TCP proxy that a test can cut, to take a real database or Redis "down" and back up."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from tests.server import free_port


class TcpProxy:
    """While down, the port stays bound (so no other socket, an outgoing connection's ephemeral port
    say, can take it) and every connection is reset as soon as it is accepted."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._up = False
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._up = True
        if self._listener is None:
            listener = socket.create_server(("127.0.0.1", self.port))
            listener.settimeout(0.2)
            self._listener = listener
            threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and break every open one."""
        self._up = False
        with self._lock:
            live, self._live = self._live, set()
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        """Down for good: the port is released too."""
        self.stop()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._up:  # down: reset at once, as a dead server's port would
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._live |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
