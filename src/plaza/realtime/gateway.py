"""`GET /ws`: the one WebSocket endpoint. Authenticates, then reads frames and hands them to handlers.

A connection is two tasks: the reader (frames in, until the client goes) and the session's writer
(frames out, from its bounded queue). Whichever ends first ends the connection. The frames a client
sends are handled one at a time, in order, by its `_Inbox`.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from plaza.accounts.service import User
from plaza.platform.errors import OVERLOADED, SERVICE_DOWN, PlazaError, Unauthorized, unavailable
from plaza.realtime.hub import RealtimeHub
from plaza.realtime.protocol import (
    CLOSE_AUTH_FAILED,
    CLOSE_RESTART,
    CLOSE_TOO_MANY,
    CLOSE_TRY_AGAIN,
    FrameError,
    decode,
    encode,
    error_frame,
    reconnect_frame,
)
from plaza.realtime.session import Session
from plaza.realtime.sessions import TooManyConnections
from plaza.realtime.transport import FRAMES_EXTENSION, payload
from plaza.web.cookies import SESSION_COOKIE, same_origin

__all__ = ["GatewayFastPath", "websocket_endpoint"]

log = structlog.get_logger("plaza.realtime")

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
HANDLER_GRACE_S = 5.0  # a frame being handled when the connection ends may finish (e.g. its commit)
INBOX_PAUSE_AT = 64  # frames waiting their turn when the server stops reading the socket
_PONG = {"type": "pong"}
CLOSE_BAD_ORIGIN = 4403  # authenticated by the session cookie, from another site's page


class _Gone(Exception):
    """The client disconnected."""


# OSError: what the server's own `send` raises for a connection gone (uvicorn: ClientDisconnected).
_CLIENT_GONE = (_Gone, WebSocketDisconnect, WebSocketDisconnected, OSError)


class GatewayFastPath:
    """Serves `/ws` ahead of the app's middleware: a connection lives for hours, and every layer it
    passes stays suspended that long (a coroutine and its closures each), which at 10,000
    connections is hundreds of thousands more objects for each full garbage collection to walk.
    None of those layers applies to a socket: request ids, CSRF and idempotency keys are HTTP's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @property
    def state(self) -> Any:
        return getattr(self.app, "state")  # noqa: B009 (an ASGIApp need not have one)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            scope["app"] = self.app  # where the endpoint finds the services
            await websocket_endpoint(WebSocket(scope, receive, send), receive, send)
        else:
            await self.app(scope, receive, send)


async def websocket_endpoint(websocket: WebSocket, receive: Receive, send: Send) -> None:
    """`receive` and `send` are the server's own: once connected, the reader awaits `receive` and the
    writer `send` directly, without Starlette's state checks around each frame (see `_read`)."""
    hub: RealtimeHub = websocket.app.state.services.realtime
    hub.metrics.ws_connections.inc()
    try:
        await websocket.accept()
        if hub.draining:
            await websocket.send_text(encode(reconnect_frame()))
            await websocket.close(CLOSE_RESTART, "server restart")
            return
        identity = await _authenticate(hub, websocket)
        if identity is not None:
            await _serve(hub, websocket, receive, send, *identity)
    except _CLIENT_GONE:
        pass
    finally:
        hub.metrics.ws_connections.dec()


async def _authenticate(hub: RealtimeHub, websocket: WebSocket) -> tuple[User, str] | None:
    """The user and device, from `?token=` or a first `auth` frame; else the connection is closed."""
    token = websocket.query_params.get("token")
    device_id = websocket.query_params.get("device_id")
    if token is None and websocket.cookies.get(SESSION_COOKIE):
        if not same_origin(websocket.headers):
            await websocket.close(CLOSE_BAD_ORIGIN, "origin not allowed")
            return None
        token = websocket.cookies[SESSION_COOKIE]
    try:
        async with asyncio.timeout(hub.auth_timeout_s):
            if token is None:
                frame = decode(_payload(await websocket.receive()))
                token, device_id = frame.get("token"), frame.get("device_id", device_id)
                if frame["type"] != "auth" or not isinstance(token, str):
                    raise Unauthorized("The first frame must be an auth frame.")
            user = await hub.authenticate(token)
    except (TimeoutError, Unauthorized, FrameError):
        await websocket.close(CLOSE_AUTH_FAILED, "unauthorized")
        return None
    except Exception as exc:
        failure = unavailable(exc, where="websocket auth")
        if failure is None:
            raise
        await websocket.send_text(encode(reconnect_frame()))
        await websocket.close(CLOSE_TRY_AGAIN, failure.code)
        return None
    if not (isinstance(device_id, str) and DEVICE_ID_RE.match(device_id)):
        device_id = uuid.uuid4().hex  # none given, or unusable: `ready` tells the client its id
    return user, device_id


def _payload(message: Message) -> str | bytes:
    if message["type"] == "websocket.disconnect":
        raise _Gone
    return payload(message)


async def _serve(
    hub: RealtimeHub,
    websocket: WebSocket,
    receive: Receive,
    send: Send,
    user: User,
    device_id: str,
) -> None:
    async def send_text(text: str) -> None:
        await send({"type": "websocket.send", "text": text})

    frames = websocket.scope.get("extensions", {}).get(FRAMES_EXTENSION)
    session = Session(
        user,
        device_id,
        send_text=send_text,
        close=websocket.close,
        queue_size=hub.queue_size,
        write_frame=frames["write"] if frames else None,
    )
    session.on_overflow = hub.metrics.ws_kicked.inc
    session.on_written = hub.metrics.ws_delivery_seconds.observe
    ready = {"type": "ready", "user": user.summary(), "device_id": device_id}
    # Queued before the session is findable, so it is the first frame; written once the registry
    # (other processes included) knows where this user is.
    await session.reply({**ready, "heartbeat_s": hub.heartbeat_s})
    inbox = _Inbox(hub, session, frames.get("pause") if frames else None)
    writer = reader = None
    try:
        try:
            await hub.join(session)
        except TooManyConnections as exc:
            await websocket.send_text(encode(error_frame("too_many_connections", f"{exc}.")))
            await websocket.close(CLOSE_TOO_MANY, "too many connections")
            return
        writer = asyncio.create_task(session.pump(), name="ws-writer")
        if frames:
            frames["listen"](inbox.put)
        reader = asyncio.create_task(_read(receive, inbox), name="ws-reader")
        await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        await _finish(session, writer, reader, inbox)
    finally:
        session.abandon()
        inbox.stop()
        for task in (writer, reader):
            if task is not None and not task.done():
                task.cancel()
        await hub.leave(session)


async def _finish(
    session: Session, writer: asyncio.Task[None], reader: asyncio.Task[None], inbox: _Inbox
) -> None:
    """One side ended: let the other end cleanly, without cutting a handler off mid-transaction."""
    if reader.done():
        if session.closing:  # closed while the reader ended: the writer sends the close frame
            await asyncio.wait({writer}, timeout=HANDLER_GRACE_S)
        else:  # the client went away
            writer.cancel()
    elif session.busy:
        await inbox.finished(HANDLER_GRACE_S)
    inbox.stop()
    await inbox.finished()  # a handler cut off has unwound
    for task in (writer, reader):
        task.cancel()
    # asyncio.wait, not gather: a gather cancelled from outside confuses anyio's cancel scopes
    # (the ASGI server's or a test client's), which then fail to absorb their own cancellation.
    await asyncio.wait({writer, reader})
    for task in (writer, reader):
        error = None if task.cancelled() else task.exception()
        if error is not None and not isinstance(error, _CLIENT_GONE):
            log.warning("websocket connection ended with an error", error=repr(error))


async def _read(receive: Receive, inbox: _Inbox) -> None:
    """Frames in until the client goes, then those it sent before going are handled.

    With the server's `plaza.frames` extension listening, frames reach the inbox as they are parsed
    and `receive` only hears the disconnect. Without it (a test client), they come through here."""
    try:
        while True:
            inbox.put(_payload(await receive()))
    except _Gone:
        await inbox.finished()


class _Inbox:
    """A client's frames, handled one at a time in the order sent.

    A ping that finds nothing ahead of it is answered at once, from the reading code itself, when its
    pong can be written at once: most frames are heartbeats, and they then cost no task and no
    wake-up. Any other frame is handled by a task that runs while frames wait, then ends. With
    INBOX_PAUSE_AT frames waiting, the server stops reading the client's socket until they are done,
    so a client that sends faster than it is answered is held back by TCP, not queued in memory."""

    def __init__(
        self, hub: RealtimeHub, session: Session, pause: Callable[[bool], None] | None
    ) -> None:
        self._hub, self._session, self._pause = hub, session, pause
        self._frames: deque[dict[str, Any] | FrameError] = deque()
        self._task: asyncio.Task[None] | None = None
        self._paused = False

    def put(self, raw: str | bytes) -> None:
        session = self._session
        if session.closing:
            return
        session.heard = time.monotonic()  # silence is the hub's idle sweep's to judge
        try:
            frame: dict[str, Any] | FrameError = decode(raw)
        except FrameError as exc:
            frame = exc  # answered in its turn, like any frame
        if self._task is None:
            if isinstance(frame, dict) and frame["type"] == "ping" and session.reply_at_once(_PONG):
                self._hub.metrics.ws_frame("in", "ping").inc()
                return
            self._task = asyncio.create_task(self._handle_all(), name="ws-frames")
        self._frames.append(frame)
        if self._pause is not None and not self._paused and len(self._frames) >= INBOX_PAUSE_AT:
            self._paused = True
            self._pause(True)

    async def _handle_all(self) -> None:
        session, frames = self._session, self._frames
        try:
            while frames and not session.closing:
                if self._paused and self._pause is not None and len(frames) < INBOX_PAUSE_AT // 2:
                    self._paused = False
                    self._pause(False)
                session.busy = True
                try:
                    await _dispatch(self._hub, session, frames.popleft())
                finally:
                    session.busy = False
        finally:
            self._task = None

    async def finished(self, timeout_s: float | None = None) -> None:
        """Wait until the frames received so far are handled (at most `timeout_s`)."""
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=timeout_s)

    def stop(self) -> None:
        """The connection is over: drop what waits, and cut off a handler still running."""
        self._frames.clear()
        if self._task is not None:
            self._task.cancel()


async def _dispatch(hub: RealtimeHub, session: Session, frame: dict[str, Any] | FrameError) -> None:
    ref: str | None = None
    kind = "invalid"
    try:
        if isinstance(frame, FrameError):
            raise frame
        ref = _ref(frame)
        handler = hub.handler_for(frame["type"])
        kind = frame["type"] if handler is not None or frame["type"] == "ping" else "unknown"
        hub.metrics.ws_frame("in", kind).inc()
        if frame["type"] == "ping":
            await session.reply(_PONG)
        elif frame["type"] == "auth":
            raise FrameError(
                "This connection is authenticated already.", code="already_authenticated"
            )
        elif handler is None:
            raise FrameError(
                f"Unknown frame type {frame['type'][:64]!r}.", code="unknown_type", field="type"
            )
        else:
            await handler(session, frame)
    except PlazaError as exc:
        await session.reply(error_frame(exc.code, exc.message, ref=ref, field=exc.field))
    except Exception as exc:
        await session.reply(_unexpected(exc, kind, ref))


def _ref(frame: dict[str, Any]) -> str | None:
    ref = frame.get("client_msg_id")
    return ref[:64] if isinstance(ref, str) else None


def _unexpected(exc: Exception, kind: str, ref: str | None) -> dict[str, Any]:
    failure = unavailable(exc, where=f"websocket {kind} frame")
    if failure is not None:
        # Frames name any outage service_unavailable; overload is told apart, as over HTTP.
        answer = OVERLOADED if failure is OVERLOADED else SERVICE_DOWN
        return error_frame(answer.code, answer.message, ref=ref)
    log.exception("frame handler failed", type=kind, exc_info=exc)
    return error_frame("internal_error", "Something went wrong on our side.", ref=ref)
