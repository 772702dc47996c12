"""The realtime hub: what contexts see of the WebSocket layer.

Contexts register a handler per frame type they answer, and push frames to users with `deliver`. The hub
knows nothing of what the frames mean. A context that keeps state per device hears which devices are
connected (`on_devices_seen`), so it can tell devices in use from devices that never came back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from typing import Any

import structlog

from plaza.accounts.service import User
from plaza.platform.clock import every
from plaza.platform.errors import unavailable
from plaza.platform.metrics import Metrics
from plaza.realtime.presence import Audience, Presence
from plaza.realtime.protocol import CLOSE_IDLE, CLOSE_RESTART, reconnect_frame
from plaza.realtime.session import Session
from plaza.realtime.sessions import Sessions
from plaza.settings import Settings

__all__ = ["DevicesSeen", "Handler", "RealtimeHub"]

log = structlog.get_logger("plaza.realtime")

Handler = Callable[[Session, dict[str, Any]], Awaitable[None]]
Authenticate = Callable[[str], Awaitable[User]]
DevicesSeen = Callable[[Collection[tuple[int, str]]], Awaitable[None]]  # (user id, device id) each

# Frame types the gateway answers itself.
GATEWAY_TYPES = frozenset({"auth", "ping"})
DRAIN_GRACE_S = 5.0  # on shutdown, connections get this long to receive their reconnect frame
# Connected devices are reported again this often: a connection open for days is a device in use.
DEVICES_SEEN_EVERY_S = 3600.0
IDLE_SWEEP_MAX_S = 5.0


class RealtimeHub:
    def __init__(
        self,
        *,
        sessions: Sessions,
        presence: Presence,
        authenticate: Authenticate,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self.sessions, self.presence = sessions, presence
        self.authenticate = authenticate
        self.metrics = metrics
        self.auth_timeout_s = settings.ws_auth_timeout_s
        self.heartbeat_s = settings.ws_heartbeat_s
        self.idle_timeout_s = settings.ws_idle_timeout_s
        self.queue_size = settings.ws_send_queue
        self.max_connections_per_user = settings.ws_max_connections_per_user
        self.draining = False
        self._handlers: dict[str, Handler] = {}
        self._devices_seen: DevicesSeen | None = None
        self._reports: set[asyncio.Task[None]] = set()

    def register(self, frame_type: str, handler: Handler) -> None:
        """Answer client frames of this type with `handler(session, frame)`."""
        if frame_type in GATEWAY_TYPES or frame_type in self._handlers:
            raise ValueError(f"frame type {frame_type!r} already has a handler")
        self._handlers[frame_type] = handler

    def set_audience(self, audience: Audience) -> None:
        """Who hears of a user's presence: `audience(user_id)` names them (e.g. chat's contacts)."""
        self.presence.audience = audience

    def on_devices_seen(self, seen: DevicesSeen) -> None:
        """`seen(devices)` hears of each device as it connects, and of every device connected to this
        process every DEVICES_SEEN_EVERY_S."""
        self._devices_seen = seen

    async def join(self, session: Session) -> None:
        """A connection is authenticated: findable from any process, and its user online."""
        if await self.sessions.add(session, limit=self.max_connections_per_user):
            await self.presence.arrived(session.user)
        if self._devices_seen is not None:  # in the background: `ready` does not wait for it
            report = asyncio.create_task(self._report({(session.user.id, session.device_id)}))
            self._reports.add(report)
            report.add_done_callback(self._reports.discard)

    async def report_devices(self) -> None:
        """Tell `on_devices_seen` of every device connected to this process."""
        await self._report({(s.user.id, s.device_id) for s in self.sessions.all()})

    async def _report(self, devices: Collection[tuple[int, str]]) -> None:
        if self._devices_seen is None or not devices:
            return
        try:
            await self._devices_seen(devices)
        except Exception as exc:  # a device still connected is told of again next time
            if unavailable(exc, where="devices seen") is None:
                log.exception("devices seen failed", devices=len(devices))

    async def close_idle(self) -> None:
        """Close the connections silent for `idle_timeout_s`. One sweep for all of them, where a timer
        per received frame would be four more young objects per frame per connection for the garbage
        collector to walk."""
        silent_since = time.monotonic() - self.idle_timeout_s
        for session in self.sessions.all():
            if session.heard < silent_since:
                session.close(CLOSE_IDLE, "idle")  # does nothing to one already closing

    async def leave(self, session: Session) -> None:
        if self.sessions.remove(session):
            self.presence.departed(session.user)
            await self.sessions.unregister(session.user.id)

    def handler_for(self, frame_type: str) -> Handler | None:
        return self._handlers.get(frame_type)

    async def deliver(
        self,
        user_ids: Collection[int],
        frame: Mapping[str, Any],
        *,
        exclude: str | None = None,
        since: float | None = None,
    ) -> None:
        """Push a frame to every connection of these users, on any process, except session `exclude`.

        `since`: when the event it carries happened (wall clock), measured until the frame is written.
        """
        await self.sessions.deliver(user_ids, frame, exclude=exclude, since=since)

    def has_local(self, user_id: int) -> bool:
        """Whether the user has a connection on this process."""
        return self.sessions.has_local(user_id)

    async def connected(self, user_ids: Collection[int]) -> set[int]:
        """Which of these users have at least one connection, on any process."""
        return await self.sessions.connected(user_ids)

    async def start(self) -> dict[str, Coroutine[Any, Any, None]]:
        """Join the session registry; returns the work to run in the background, by name."""
        await self.sessions.start()
        return {
            "realtime-relay": self.sessions.listen(),
            "realtime-registry": self.sessions.refresh(self.heartbeat_s),
            "realtime-presence": self.presence.run(self.heartbeat_s),
            "realtime-devices": every(DEVICES_SEEN_EVERY_S, self.report_devices),
            # A silent connection is closed within a quarter of the timeout after it (5 s at most).
            "realtime-idle": every(min(self.idle_timeout_s / 4, IDLE_SWEEP_MAX_S), self.close_idle),
        }

    async def drain(self) -> None:
        """Shutdown: every client is told to reconnect (at a random moment within 10 s), then closed."""
        self.draining = True
        sessions = self.sessions.all()
        for session in sessions:
            session.close(CLOSE_RESTART, "server restart", farewell=reconnect_frame(), flush=True)
        if sessions:
            waiters = [asyncio.create_task(s.closed.wait()) for s in sessions]
            _, late = await asyncio.wait(waiters, timeout=DRAIN_GRACE_S)
            for waiter in late:
                waiter.cancel()
        if self._reports:
            await asyncio.wait(set(self._reports), timeout=DRAIN_GRACE_S)
        await self.sessions.stop()
