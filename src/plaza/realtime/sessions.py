"""Where users are connected: sessions on this process, and through kv and pub/sub, on every other one.

Each process claims a slot `rt:slot:<k>` (k < MAX_NODES) in kv, and writes `rt:user:<user id>:<k>` for each
user connected to it, with a TTL that heartbeats refresh: so a process that dies is forgotten within
`registry_ttl_s`. To deliver, a process writes to its own sessions, looks up recipients in the slots of
the other live processes (none in the embedded single process: no lookup at all), and publishes the
encoded frame once per process that holds some of them, on that process's channel `rt:node:<node id>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Collection, Mapping
from typing import Any

import orjson
import structlog

from plaza.platform.clock import every
from plaza.platform.kv import KV, PortUnavailable
from plaza.platform.metrics import Metrics
from plaza.platform.pubsub import Message, PubSub, Subscription
from plaza.realtime.protocol import encode
from plaza.realtime.session import Session
from plaza.realtime.transport import text_frame

__all__ = ["MAX_NODES", "Sessions", "TooManyConnections"]

log = structlog.get_logger("plaza.realtime")

MAX_NODES = 64  # processes sharing one Redis; each lookup reads every slot, so keep it modest
# How stale the list of other processes may get; a process announces itself when it starts and stops,
# so this only bounds the damage of a lost announcement.
PEERS_TTL_S = 5.0
NODES_CHANNEL = "rt:nodes"
_RESUBSCRIBE_DELAY_S = 1.0


def _slot_key(slot: int) -> str:
    return f"rt:slot:{slot}"


def _user_key(user_id: int, slot: int) -> str:
    return f"rt:user:{user_id}:{slot}"


class TooManyConnections(Exception):
    """A user opened more connections than one process holds for one user."""


class Sessions:
    def __init__(self, kv: KV, pubsub: PubSub, metrics: Metrics, *, registry_ttl_s: float) -> None:
        self.node_id = uuid.uuid4().hex[:16]
        self._kv, self._pubsub, self._metrics = kv, pubsub, metrics
        self._ttl_s = registry_ttl_s
        self._by_user: dict[int, dict[str, Session]] = {}
        self._slot: int | None = None
        self._peers: dict[int, str] = {}  # slot -> node id, of the other live processes
        self._peers_until = 0.0
        self._subscription: Subscription | None = None

    @property
    def channel(self) -> str:
        return f"rt:node:{self.node_id}"

    def all(self) -> list[Session]:
        return [s for sessions in self._by_user.values() for s in sessions.values()]

    # --- this process's sessions ----------------------------------------------------------------

    def has_local(self, user_id: int) -> bool:
        return user_id in self._by_user

    def local_users(self) -> list[int]:
        return list(self._by_user)

    async def add(self, session: Session, *, limit: int | None = None) -> bool:
        """Register a session; True if it is its user's first on this process.

        Raises TooManyConnections if the user holds `limit` sessions here already."""
        local = self._by_user.setdefault(session.user.id, {})
        if limit is not None and len(local) >= limit:
            raise TooManyConnections(f"at most {limit} connections per user")
        first = not local
        local[session.id] = session
        if first:
            await self._announce([session.user.id])
        return first

    def remove(self, session: Session) -> bool:
        """Forget a session at once; True if it was its user's last on this process (then call
        `unregister`). Synchronous, so a cancelled caller cannot leave it half done."""
        user_id = session.user.id
        local = self._by_user.get(user_id)
        if local is None or local.pop(session.id, None) is None or local:
            return False
        del self._by_user[user_id]
        return True

    async def unregister(self, user_id: int) -> None:
        """Take a user who has no session here any more out of the registry."""
        if self._slot is not None:
            with contextlib.suppress(PortUnavailable):  # else the entry expires with its TTL
                await self._kv.delete(_user_key(user_id, self._slot))
            if user_id in self._by_user:  # reconnected while we deleted: announce again
                await self._announce([user_id])

    # --- delivery -------------------------------------------------------------------------------

    async def deliver(
        self,
        user_ids: Collection[int],
        frame: Mapping[str, Any],
        *,
        exclude: str | None = None,
        since: float | None = None,
    ) -> None:
        """Send a frame to every connection of these users, wherever it is, but not to `exclude`.

        `since`: wall-clock time of the event the frame carries, for the delivery latency metric.
        """
        text = encode(frame)  # once, whatever the number of recipients
        kind = str(frame.get("type"))
        self.deliver_local(user_ids, text, exclude, kind, since)
        peers = await self._live_peers()
        if not peers or not user_ids:
            return
        by_node = await self._locate(user_ids, peers)
        for node, users in by_node.items():
            payload = orjson.dumps({"u": users, "f": text, "x": exclude, "t": kind, "s": since})
            try:
                await self._pubsub.publish(f"rt:node:{node}", payload)
            except PortUnavailable:
                log.warning("frame not relayed: pubsub unavailable", node=node, type=kind)

    def deliver_local(
        self,
        user_ids: Collection[int],
        text: str,
        exclude: str | None,
        kind: str,
        since: float | None = None,
    ) -> None:
        count = 0
        frame: bytes | None = None  # encoded once, for every session written to at once
        for user_id in user_ids:
            for session in self._by_user.get(user_id, {}).values():
                if session.id != exclude:
                    if frame is None:
                        frame = text_frame(text.encode())
                    session.push(text, since, frame)
                    count += 1
        if count:
            self._metrics.ws_frame("out", kind).inc(count)

    async def connected(self, user_ids: Collection[int]) -> set[int]:
        """Which of these users have a connection on some process, as far as the registry knows.

        With the registry unreachable, only this process's connections are known.
        """
        found = {user_id for user_id in user_ids if user_id in self._by_user}
        elsewhere = [user_id for user_id in user_ids if user_id not in found]
        peers = await self._live_peers() if elsewhere else {}
        if peers:
            for users in (await self._locate(elsewhere, peers)).values():
                found.update(users)
        return found

    async def _locate(
        self, user_ids: Collection[int], peers: dict[int, str]
    ) -> dict[str, list[int]]:
        """The other processes holding some of these users, with those users."""
        pairs = [(user_id, slot) for user_id in user_ids for slot in peers]
        try:
            found = await self._kv.get_many([_user_key(u, s) for u, s in pairs])
        except PortUnavailable:
            log.warning("session registry unavailable; delivering on this process only")
            return {}
        by_node: dict[str, list[int]] = {}
        for (user_id, _), node in zip(pairs, found, strict=True):
            if node is not None and node.decode() != self.node_id:
                by_node.setdefault(node.decode(), []).append(user_id)
        return by_node

    async def _live_peers(self) -> dict[int, str]:
        if time.monotonic() < self._peers_until:
            return self._peers
        slots = range(MAX_NODES)
        try:
            owners = await self._kv.get_many([_slot_key(k) for k in slots])
        except PortUnavailable:
            owners = [None] * MAX_NODES
        self._peers = {
            k: owner.decode()
            for k, owner in zip(slots, owners, strict=True)
            if owner is not None and owner.decode() != self.node_id
        }
        self._peers_until = time.monotonic() + PEERS_TTL_S
        return self._peers

    # --- the registry in kv, and the channel ----------------------------------------------------

    async def start(self) -> None:
        """Claim a slot and subscribe; with Redis down this process still serves its own clients."""
        try:
            await self._claim_slot()
            self._subscription = await self._subscribe()
            await self._pubsub.publish(NODES_CHANNEL, b"hello")
        except PortUnavailable:
            log.warning("session registry unavailable at start; retrying in the background")

    async def listen(self) -> None:
        """Frames other processes relay to this one's users; runs until stop()."""
        while True:
            try:
                if self._subscription is None:
                    self._subscription = await self._subscribe()
                async for message in self._subscription:
                    self._on_message(message)
                return  # stop() closed the subscription
            except PortUnavailable:
                log.warning("realtime subscription lost; resubscribing")
                await self._drop_subscription()
                await asyncio.sleep(_RESUBSCRIBE_DELAY_S)

    async def refresh(self, interval_s: float) -> None:
        """Heartbeat of the registry: keep the slot and every local user's entry alive; until cancelled."""
        await every(interval_s, self._renew)

    async def _renew(self) -> None:
        try:
            await self._keep_slot()
            await self._announce(list(self._by_user))
        except PortUnavailable:
            log.warning("session registry unavailable; entries will be renewed next beat")

    async def stop(self) -> None:
        """Leave the registry (other processes stop sending here) and close the channel."""
        with contextlib.suppress(PortUnavailable):
            if self._slot is not None:
                keys = [_user_key(u, self._slot) for u in self._by_user]
                await self._kv.delete(_slot_key(self._slot), *keys)
                await self._pubsub.publish(NODES_CHANNEL, b"bye")
        self._slot = None
        await self._drop_subscription()

    async def _subscribe(self) -> Subscription:
        subscription = self._pubsub.subscribe(self.channel, NODES_CHANNEL)
        await subscription.__aenter__()  # subscribed before start() returns: nothing is missed
        return subscription

    async def _drop_subscription(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(PortUnavailable):
                await subscription.aclose()

    def _on_message(self, message: Message) -> None:
        if message.channel == NODES_CHANNEL:
            self._peers_until = 0.0  # a process came or went: look again at the next delivery
            return
        try:
            data = orjson.loads(message.payload)
            self.deliver_local(
                data["u"], data["f"], data.get("x"), str(data.get("t")), data.get("s")
            )
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("malformed relayed frame ignored", channel=message.channel)

    async def _claim_slot(self) -> None:
        for slot in range(MAX_NODES):
            if await self._kv.add(_slot_key(slot), self.node_id.encode(), ttl_s=self._ttl_s):
                self._slot = slot
                return
        log.error("no free realtime slot: other processes will not reach this one's users")

    async def _keep_slot(self) -> None:
        if self._slot is not None:
            owner = await self._kv.get(_slot_key(self._slot))
            if owner is None or owner.decode() == self.node_id:
                await self._kv.set(_slot_key(self._slot), self.node_id.encode(), ttl_s=self._ttl_s)
                return
            self._slot = None  # we stalled past the TTL and another process took it
        await self._claim_slot()
        if self._slot is not None:
            await self._pubsub.publish(NODES_CHANNEL, b"hello")

    async def _announce(self, user_ids: list[int]) -> None:
        if self._slot is None or not user_ids:
            return
        entries = {_user_key(u, self._slot): self.node_id.encode() for u in user_ids}
        try:
            await self._kv.set_many(entries, ttl_s=self._ttl_s)
        except PortUnavailable:
            log.warning("session registry unavailable; users reachable on this process only")
