"""Presence: who is online, announced to the users who may see it, without flapping.

A user is online while any of their connections, on any process, is open. In kv: `pr:on:<id>` exists
while they are online (a TTL of PLAZA_PRESENCE_TTL_S, renewed every heartbeat by each process holding
a connection of theirs, so it lapses by itself if that process dies) and `pr:seen:<id>` holds when they
were last seen (kept without TTL).

- A user's first connection on a process sets `pr:on` if absent (SET NX): only the call that created it
  announces `online`. A reconnect, here or on another process, within the grace period finds it set.
- When a user's last connection on a process closes, going offline is decided PLAZA_PRESENCE_GRACE_S
  later, and only if by then no connection of theirs is open anywhere (the session registry says):
  then `pr:on` is deleted, `pr:seen` set to when they left, and `offline` announced.
- Who hears: the users an `audience` callback names (chat: those sharing a conversation); realtime
  knows nothing of why. With kv down, presence is silent and messages still deliver.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import structlog

from plaza.accounts.service import User
from plaza.platform.clock import Clock
from plaza.platform.kv import KV, PortUnavailable
from plaza.realtime.sessions import Sessions

__all__ = ["Audience", "Presence", "Status"]

log = structlog.get_logger("plaza.realtime")

Audience = Callable[[int], Awaitable[Collection[int]]]
SWEEP_S = 0.25  # how often departures whose grace ran out are looked at


@dataclass(frozen=True)
class Status:
    online: bool
    last_seen: str | None

    def view(self) -> dict[str, Any]:
        return {"status": "online" if self.online else "offline", "last_seen": self.last_seen}


def _on_key(user_id: int) -> str:
    return f"pr:on:{user_id}"


def _seen_key(user_id: int) -> str:
    return f"pr:seen:{user_id}"


class Presence:
    def __init__(
        self, sessions: Sessions, kv: KV, clock: Clock, *, ttl_s: float, grace_s: float
    ) -> None:
        self.sessions, self.kv, self.clock = sessions, kv, clock
        self.ttl_s, self.grace_s = ttl_s, grace_s
        self.audience: Audience | None = None
        self._leaving: dict[int, tuple[float, User, float]] = {}  # user -> (due, user, left at)

    def _iso(self, at: float) -> str:
        return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def arrived(self, user: User) -> None:
        """The user's first connection on this process is open."""
        self._leaving.pop(user.id, None)
        now = self._iso(self.clock.time())
        try:
            fresh = await self.kv.add(_on_key(user.id), b"1", ttl_s=self.ttl_s)
            await self.kv.set(_seen_key(user.id), now.encode())
        except PortUnavailable:
            log.warning("presence unavailable: arrival not recorded", user=user.id)
            return
        if fresh:
            await self._announce(user, Status(True, now))

    def departed(self, user: User) -> None:
        """The user's last connection on this process closed: decide after the grace period."""
        self._leaving[user.id] = (self.clock.monotonic() + self.grace_s, user, self.clock.time())

    async def sweep(self) -> None:
        """Announce the departures whose grace ran out and that no connection came back for."""
        now = self.clock.monotonic()
        for user_id, (due, user, left_at) in list(self._leaving.items()):
            if due > now:
                continue
            del self._leaving[user_id]
            try:
                if self.sessions.has_local(user_id) or await self.sessions.connected([user_id]):
                    continue
                await self.kv.delete(_on_key(user_id))
                await self.kv.set(_seen_key(user_id), self._iso(left_at).encode())
            except PortUnavailable as exc:  # `pr:on` lapses with its TTL: lost, not wrong
                log.warning("presence unavailable; departure not announced", error=str(exc))
                continue
            await self._announce(user, Status(False, self._iso(left_at)))

    async def renew(self) -> None:
        """Every heartbeat: this process's connected users stay online."""
        users = self.sessions.local_users()
        if not users:
            return
        seen = self._iso(self.clock.time()).encode()
        entries = {_on_key(u): b"1" for u in users}
        try:
            await self.kv.set_many(entries, ttl_s=self.ttl_s)
            await self.kv.set_many({_seen_key(u): seen for u in users})
        except PortUnavailable:
            log.warning("presence unavailable; renewing next beat")

    async def run(self, heartbeat_s: float) -> None:
        """Sweep departures often and renew arrivals every heartbeat; until cancelled."""
        next_renewal = self.clock.monotonic() + heartbeat_s
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await self.sweep()
                if self.clock.monotonic() >= next_renewal:
                    next_renewal = self.clock.monotonic() + heartbeat_s
                    await self.renew()
            except Exception:  # presence never takes the process down
                log.exception("presence sweep failed")

    async def lookup(self, user_ids: list[int]) -> dict[int, Status]:
        if not user_ids:
            return {}
        try:
            on = await self.kv.get_many([_on_key(u) for u in user_ids])
            seen = await self.kv.get_many([_seen_key(u) for u in user_ids])
        except PortUnavailable:
            # Unknown is shown as offline: true enough while Redis is down, and never an error.
            return {u: Status(self.sessions.has_local(u), None) for u in user_ids}
        return {
            u: Status(flag is not None, None if last is None else last.decode())
            for u, flag, last in zip(user_ids, on, seen, strict=True)
        }

    async def _announce(self, user: User, status: Status) -> None:
        if self.audience is None:
            return
        try:
            audience = set(await self.audience(user.id)) - {user.id}
        except Exception:  # the database may be down: presence is not worth an error
            log.warning("presence audience unavailable", user=user.id)
            return
        if audience:
            frame = {"type": "presence", "user": user.summary(), **status.view()}
            await self.sessions.deliver(audience, frame)
