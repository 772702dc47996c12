"""What members do besides sending: read and receive (cursors and receipts), type, and catch up (sync)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from plaza.accounts.service import User
from plaza.chat import device_store, store
from plaza.chat.views import (
    StoredMessage,
    conversation_not_found,
    parse_conversation_id,
    require_member,
)
from plaza.platform.batching import Batcher
from plaza.platform.clock import Clock
from plaza.platform.db import AnyRow, Database
from plaza.platform.errors import NotFound

__all__ = ["ActivityService", "Pusher", "SyncPlan"]

TYPING_INTERVAL_S = 2.0  # at most one `start` per member per conversation this often
RECEIPT_INTERVAL_S = (
    1.0  # in groups, at most one receipt per member, conversation and status this often
)
RECEIPTS_REMEMBERED = 50_000
TYPING_AUTO_STOP_S = 5.0  # a `start` not followed by `stop` or another `start` ends by itself
TYPING_REMEMBERED = 50_000  # (member, conversation) throttle entries kept; the oldest are forgotten
SYNC_PAGE = 200  # messages per query while replaying
# A device that missed more than this in one conversation is told `more` and syncs again from where
# this sync stopped, rather than one frame holding a connection for minutes.
SYNC_MAX_PER_CONVERSATION = 1000

Views = Callable[[Sequence[StoredMessage]], Awaitable[list[dict[str, Any]]]]


class Pusher(Protocol):
    """The realtime hub, as chat sees it: frames to every connection of some users."""

    async def deliver(
        self,
        user_ids: Collection[int],
        frame: Mapping[str, Any],
        *,
        exclude: str | None = None,
        since: float | None = None,
    ) -> None: ...


@dataclass
class SyncPlan:
    ranges: list[tuple[int, int, int]] = field(default_factory=list)  # (conversation, after, upto)
    unknown: list[str] = field(default_factory=list)  # requested conversations the user is not in
    cursors: dict[str, int] = field(default_factory=dict)  # where the device stands once replayed
    more: bool = False


@dataclass(frozen=True)
class _Cursor:
    """A `delivered` (from a device) or `read` frame, waiting for the next cursor write."""

    user: User
    cid: int
    status: Literal["delivered", "read"]
    seq: int
    device_id: str | None = None
    origin: str | None = None


@dataclass(frozen=True)
class _Receipt:
    to: list[int]
    frame: dict[str, Any]
    group: bool


@dataclass
class _Coalesced:
    """One member's receipts of one status in one group: when the last went out, and the held one."""

    sent_at: float
    held: tuple[list[int], dict[str, Any], str | None] | None = None
    timer: asyncio.TimerHandle | None = None


class ActivityService:
    def __init__(self, *, db: Database, pusher: Pusher, views: Views, clock: Clock) -> None:
        self.db, self._deliver, self._views, self.clock = db, pusher.deliver, views, clock
        self._typing: OrderedDict[tuple[int, int], float] = OrderedDict()
        # (member, conversation) -> the pending automatic stop, and who hears it
        self._auto_stops: dict[tuple[int, int], tuple[asyncio.TimerHandle, list[int]]] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._receipts: OrderedDict[tuple[int, int, str], _Coalesced] = OrderedDict()
        self._cursors: Batcher[_Cursor, _Receipt | None] = Batcher(self._write_cursors)

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)

    # --- cursors and receipts -------------------------------------------------------------------

    async def mark_read(
        self, user: User, conversation_id: object, seq: int, *, origin: str | None = None
    ) -> None:
        """The user has read up to `seq`; members (and the user's other devices) get a receipt."""
        cid = parse_conversation_id(conversation_id)
        receipt = await self._cursors.submit(_Cursor(user, cid, "read", seq, origin=origin))
        if receipt is not None:
            await self._receipt(receipt.to, receipt.frame, exclude=origin)

    async def mark_delivered(
        self, user: User, device_id: str, conversation_id: object, seq: int
    ) -> None:
        """The device has every message up to `seq`; the other members hear when the user first does."""
        cid = parse_conversation_id(conversation_id)
        receipt = await self._cursors.submit(_Cursor(user, cid, "delivered", seq, device_id))
        if receipt is not None:
            await self._receipt(receipt.to, receipt.frame, group=receipt.group)

    async def _write_cursors(self, batch: Sequence[_Cursor]) -> list[_Receipt | Exception | None]:
        """Every cursor frame that queued behind the last write, in one transaction.

        Each caller gets the receipt to send (only the newest of a member's cursors in the batch
        sends one, and only if it moved the member's cursor), or the error for its frame."""
        async with self.db.write() as conn:
            found = await store.memberships(conn, sorted({(c.cid, c.user.id) for c in batch}))
            newest: dict[tuple[int, int, str], tuple[int, int]] = {}  # -> (seq, index in batch)
            devices: dict[tuple[int, str, int], int] = {}
            results: list[_Receipt | Exception | None] = []
            for i, c in enumerate(batch):
                row = found.get((c.cid, c.user.id))
                if row is None:
                    results.append(conversation_not_found())
                    continue
                results.append(None)
                seq = min(c.seq, int(row.last_seq))
                key = (c.cid, c.user.id, c.status)
                if seq > newest.get(key, (-1, -1))[0]:
                    newest[key] = (seq, i)
                if c.device_id is not None:
                    at = (c.user.id, c.device_id, c.cid)
                    devices[at] = max(devices.get(at, 0), seq)
            read = {k[:2]: seq for k, (seq, _) in newest.items() if k[2] == "read"}
            delivered = {k[:2]: seq for k, (seq, _) in newest.items() if k[2] == "delivered"}
            await device_store.advance_devices(
                conn, [(u, d, c, seq) for (u, d, c), seq in devices.items()], self.now()
            )
            await store.advance_members(
                conn,
                [
                    (cid, uid, read.get((cid, uid), 0), delivered.get((cid, uid), 0))
                    for cid, uid in read.keys() | delivered.keys()
                ],
            )
            advanced = [
                (key, i) for key, (seq, i) in newest.items() if _moved(found, read, key, seq)
            ]
            cids = sorted({key[0] for key, _ in advanced})
            in_conversation = await store.member_ids(conn, cids) if cids else {}
        for (cid, uid, status), i in advanced:
            everyone = in_conversation[cid]
            frame = _receipt(cid, batch[i].user, status, newest[cid, uid, status][0])
            if status == "read":
                results[i] = _Receipt(everyone, frame, len(everyone) > 2)
            elif len(everyone) > 1:
                results[i] = _Receipt([m for m in everyone if m != uid], frame, len(everyone) > 2)
        return results

    async def _receipt(
        self,
        to: list[int],
        frame: dict[str, Any],
        *,
        exclude: str | None = None,
        group: bool | None = None,
    ) -> None:
        """Send a receipt; in groups at most one per member, conversation and status per
        RECEIPT_INTERVAL_S: those in between are held, and the newest goes out when the interval ends."""
        if group is None:
            group = len(to) > 2
        if not group:
            await self._deliver(to, frame, exclude=exclude)
            return
        key = (int(frame["user"]["id"]), int(frame["conversation_id"]), str(frame["status"]))
        now = self.clock.monotonic()
        state = self._receipts.get(key)
        if state is None or (state.timer is None and now - state.sent_at >= RECEIPT_INTERVAL_S):
            self._receipts[key] = _Coalesced(sent_at=now)
            self._receipts.move_to_end(key)
            while len(self._receipts) > RECEIPTS_REMEMBERED:
                self._receipts.popitem(last=False)
            await self._deliver(to, frame, exclude=exclude)
            return
        state.held = (to, frame, exclude)  # the newest wins: receipts are cumulative
        if state.timer is None:
            wait = max(0.0, RECEIPT_INTERVAL_S - (now - state.sent_at))
            state.timer = asyncio.get_running_loop().call_later(wait, self._release, key)

    def _release(self, key: tuple[int, int, str]) -> None:
        state = self._receipts.get(key)
        if state is None or state.held is None:
            return
        to, frame, exclude = state.held
        state.held, state.timer, state.sent_at = None, None, self.clock.monotonic()
        task = asyncio.ensure_future(self._deliver(to, frame, exclude=exclude))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- typing ---------------------------------------------------------------------------------

    async def typing(
        self, user: User, conversation_id: object, state: Literal["start", "stop"]
    ) -> None:
        """Relay to the other members; not stored. Repeated starts within 2 s are dropped."""
        cid = parse_conversation_id(conversation_id)
        if state == "start" and not self._may_start_typing(user.id, cid):
            armed = self._auto_stops.get((user.id, cid))
            if armed is not None:  # still typing: the automatic stop moves back
                self._arm_auto_stop(user, cid, armed[1])
            return
        async with self.db.read() as conn:
            await require_member(conn, cid, user.id)
            members = await store.members_of(conn, cid)
        others = [m for m in members if m != user.id]
        if state == "start":
            self._arm_auto_stop(user, cid, others)
        else:
            self._disarm_auto_stop(user.id, cid)
        if others:
            await self._deliver(others, _typing(cid, user, state))

    def _arm_auto_stop(self, user: User, cid: int, others: list[int]) -> None:
        """A `start` with no `stop` (a client gone quiet) ends by itself TYPING_AUTO_STOP_S later."""
        self._disarm_auto_stop(user.id, cid)
        loop = asyncio.get_running_loop()
        handle = loop.call_later(TYPING_AUTO_STOP_S, self._auto_stop, user, cid, others)
        self._auto_stops[user.id, cid] = (handle, others)

    def _disarm_auto_stop(self, user_id: int, cid: int) -> None:
        armed = self._auto_stops.pop((user_id, cid), None)
        if armed is not None:
            armed[0].cancel()

    def _auto_stop(self, user: User, cid: int, others: list[int]) -> None:
        self._auto_stops.pop((user.id, cid), None)
        self._typing.pop((user.id, cid), None)  # the next start is relayed at once
        if others:
            task = asyncio.ensure_future(self._deliver(others, _typing(cid, user, "stop")))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _may_start_typing(self, user_id: int, cid: int) -> bool:
        key, now = (user_id, cid), self.clock.monotonic()
        last = self._typing.get(key)
        if last is not None and now - last < TYPING_INTERVAL_S:
            return False
        self._typing[key] = now
        self._typing.move_to_end(key)
        while len(self._typing) > TYPING_REMEMBERED:
            self._typing.popitem(last=False)
        return True

    # --- sync -----------------------------------------------------------------------------------

    async def plan_sync(self, user: User, device_id: str, cursors: Mapping[str, int]) -> SyncPlan:
        """What the device lacks: after each given cursor, and elsewhere after what it confirmed."""
        requested: dict[int, int] = {}
        plan = SyncPlan()
        for raw, seq in cursors.items():
            try:
                requested[parse_conversation_id(raw)] = seq
            except NotFound:
                plan.unknown.append(raw)
        async with self.db.read() as conn:
            positions = await store.positions_of(conn, user.id)
            confirmed = await device_store.device_positions(conn, user.id, device_id)
        plan.unknown += [str(cid) for cid in requested if cid not in positions]
        for cid, last in sorted(positions.items()):
            after = min(requested.get(cid, confirmed.get(cid, 0)), last)
            upto = min(last, after + SYNC_MAX_PER_CONVERSATION)
            plan.more |= upto < last
            plan.cursors[str(cid)] = upto
            if after < upto:
                plan.ranges.append((cid, after, upto))
        return plan

    async def replay(self, plan: SyncPlan) -> AsyncIterator[list[dict[str, Any]]]:
        """The planned messages, a page at a time, each conversation in seq order."""
        for cid, after, upto in plan.ranges:
            while after < upto:
                async with self.db.read() as conn:
                    rows = await store.messages_page(
                        conn, cid, after_seq=after, before_seq=upto + 1, limit=SYNC_PAGE
                    )
                if not rows:
                    break
                yield await self._views([StoredMessage.from_row(r) for r in rows])
                after = int(rows[-1].seq)


def _moved(
    found: Mapping[tuple[int, int], AnyRow],
    read: Mapping[tuple[int, int], int],
    key: tuple[int, int, str],
    seq: int,
) -> bool:
    """Whether a batch's newest cursor of a member moved what the others were told."""
    pair, status = key[:2], key[2]
    if seq <= int(getattr(found[pair], f"{status}_seq")):
        return False
    # a delivery no further than what the same batch marks read tells nothing new
    return status == "read" or seq > read.get(pair, 0)


def _receipt(cid: int, user: User, status: str, seq: int) -> dict[str, Any]:
    return {
        "type": "receipt",
        "conversation_id": str(cid),
        "user": user.summary(),
        "status": status,
        "seq": seq,
    }


def _typing(cid: int, user: User, state: str) -> dict[str, Any]:
    return {"type": "typing", "conversation_id": str(cid), "user": user.summary(), "state": state}
