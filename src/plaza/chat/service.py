"""Chat's logic: conversations and their members, history, and sending messages.

Every message, a member's own or a `system` one recording a membership change, is stored the same way:
one transaction takes the conversation's next seq (locking its row), inserts the message and commits;
only then are frames pushed, through the realtime hub.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from plaza.accounts.service import AccountsService, User
from plaza.chat import store
from plaza.chat.activity import ActivityService, Pusher
from plaza.chat.devices import Devices
from plaza.chat.push import OfflinePush
from plaza.chat.retention import Retention
from plaza.chat.rules import check_group_size, check_message, clean_name, new_conversation
from plaza.chat.search import SearchService
from plaza.chat.views import (
    StoredMessage,
    conversation_not_found,
    conversation_view,
    message_view,
    parse_conversation_id,
    require_member,
    summary_of,
)
from plaza.chat.writer import Draft, MessageWriter
from plaza.platform.batching import Batcher
from plaza.platform.clock import Clock
from plaza.platform.db import AnyRow, Database
from plaza.platform.errors import BadRequest, Forbidden, NotFound, RateLimited
from plaza.platform.ids import SnowflakeIds
from plaza.platform.kv import PortUnavailable
from plaza.platform.metrics import Metrics
from plaza.platform.ratelimit import RateLimiter
from plaza.settings import Rate

__all__ = ["ChatService", "Page", "Pusher"]


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    more: bool


@dataclass(frozen=True)
class _ViewParts:
    rows: Sequence[AnyRow]
    members: dict[int, list[int]]
    lasts: dict[int, StoredMessage]
    unread: dict[int, int]


async def _view_parts(conn: AsyncConnection, user: User, rows: Sequence[AnyRow]) -> _ViewParts:
    ids = [int(row.id) for row in rows]
    lasts = await store.messages_at(
        conn, [(int(r.id), int(r.last_seq)) for r in rows if r.last_seq]
    )
    return _ViewParts(
        rows,
        await store.member_ids(conn, ids),
        {int(m.conversation_id): StoredMessage.from_row(m) for m in lasts},
        await store.unread_counts(conn, user.id, ids),
    )


class _NoChange(Exception):
    """Undo the transaction: the request changes nothing (e.g. adding members already there)."""


class ChatService:
    def __init__(
        self,
        *,
        db: Database,
        accounts: AccountsService,
        pusher: Pusher,
        ids: SnowflakeIds,
        clock: Clock,
        limiter: RateLimiter,
        send_rate: Rate,
        offline_push: OfflinePush | None = None,
        retention_days: int = 0,
        device_ttl_days: int = 0,
        metrics: Metrics | None = None,
    ) -> None:
        self.db, self.accounts, self.pusher = db, accounts, pusher
        self.metrics = metrics or Metrics()
        self.offline_push = offline_push
        self.ids, self.clock = ids, clock
        self.limiter, self.send_rate = limiter, send_rate
        self.writer = MessageWriter(db, ids, self.now)
        self._contacts: Batcher[int, set[int]] = Batcher(self._contacts_of)
        self.activity = ActivityService(db=db, pusher=pusher, views=self.views_of, clock=clock)
        self.search = SearchService(db=db, views=self.views_of)
        self.retention = Retention(db=db, clock=clock, days=retention_days)
        self.devices = Devices(db=db, clock=clock, ttl_days=device_ttl_days)

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)

    # --- conversations --------------------------------------------------------------------------

    async def create(
        self, user: User, usernames: Sequence[str], name: str | None
    ) -> dict[str, Any]:
        """One other member and no name: the pair's direct conversation (made once). Else a group."""
        name = clean_name(name)
        others = await self._resolve(usernames, exclude=user)
        if not others:
            raise BadRequest("Name at least one other member.", code="no_members", field="members")
        now = self.now()
        if len(others) == 1 and name is None:
            conversation_id, created = await self._direct(user.id, others[0].id, now)
        else:
            conversation_id, created = await self._group(user.id, [u.id for u in others], name, now)
        view = await self.conversation(user, conversation_id)
        if created:
            await self._announce_conversation(view, [user.id, *(u.id for u in others)])
        return view

    async def _announce_conversation(self, view: dict[str, Any], user_ids: list[int]) -> None:
        """Members' open devices learn of a conversation they are now in, before any message."""
        frame = {"type": "conversation", "conversation": view | {"unread_count": 0}}
        await self.pusher.deliver(user_ids, frame)

    async def _direct(self, user_id: int, other_id: int, now: dt.datetime) -> tuple[int, bool]:
        """The pair's direct conversation, and whether it was made just now."""
        key = f"{min(user_id, other_id)}:{max(user_id, other_id)}"
        async with self.db.write() as conn:
            existing = await store.conversation_by_direct_key(conn, key)
            if existing is not None:
                return int(existing.id), False
            values = new_conversation("direct", None, user_id, now) | {"direct_key": key}
            try:
                conversation_id = await store.insert_conversation(conn, **values)
            except store.DirectExists:
                found = await store.conversation_by_direct_key(conn, key)
                assert found is not None
                return int(found.id), False
            await store.add_members(conn, conversation_id, [user_id, other_id], now, seq=0)
        return conversation_id, True

    async def _group(
        self, creator_id: int, other_ids: list[int], name: str | None, now: dt.datetime
    ) -> tuple[int, bool]:
        async with self.db.write() as conn:
            values = new_conversation("group", name, creator_id, now)
            conversation_id = await store.insert_conversation(conn, **values)
            await store.add_members(conn, conversation_id, [creator_id, *other_ids], now, seq=0)
        return conversation_id, True

    async def conversation(self, user: User, conversation_id: object) -> dict[str, Any]:
        cid = parse_conversation_id(conversation_id)
        async with self.db.read() as conn:
            row = await require_member(conn, cid, user.id)
            parts = await _view_parts(conn, user, [row])
        return (await self._views(parts))[0]

    async def conversations(
        self, user: User, *, before: tuple[dt.datetime, int] | None, limit: int
    ) -> Page:
        """The caller's conversations, most recent activity first."""
        async with self.db.read() as conn:
            rows = await store.conversations_of(conn, user.id, before=before, limit=limit + 1)
            parts = await _view_parts(conn, user, rows[:limit])
        return Page(await self._views(parts), more=len(rows) > limit)

    async def _views(self, parts: _ViewParts) -> list[dict[str, Any]]:
        # Users are looked up once the SQL connection is back in the pool: never hold two at once.
        wanted = {u for ids in parts.members.values() for u in ids}
        wanted |= {m.sender_id for m in parts.lasts.values()}
        users = await self.accounts.by_ids(sorted(wanted))
        return [
            conversation_view(
                row,
                parts.members[int(row.id)],
                users,
                parts.lasts.get(int(row.id)),
                parts.unread.get(int(row.id), 0),
            )
            for row in parts.rows
        ]

    # --- members --------------------------------------------------------------------------------

    async def add_members(
        self, user: User, conversation_id: object, usernames: Sequence[str]
    ) -> dict[str, Any]:
        """Add users to a group, recorded as one `system` message; members already there are kept."""
        cid = parse_conversation_id(conversation_id)
        added = await self._resolve(usernames, exclude=None)
        if not added:
            raise BadRequest("Name at least one member to add.", code="no_members", field="members")
        try:
            async with self.db.write() as conn:
                conv, current = await self._lock_as_member(conn, cid, user)
                new = [u for u in added if u.id not in current]
                if not new:
                    raise _NoChange
                check_group_size(len(current) + len(new))
                seq = int(conv.last_seq)
                # What came before counts as read; the message announcing them does not.
                await store.add_members(conn, cid, [u.id for u in new], self.now(), seq=seq - 1)
                names = ", ".join(u.username for u in new)
                message = await self._insert_system(
                    conn, conv, user, f"{user.username} added {names}"
                )
        except _NoChange:
            return await self.conversation(user, cid)
        await self._push(message, user, [*current, *(u.id for u in new)])
        view = await self.conversation(user, cid)
        await self._announce_conversation(view, [u.id for u in new])
        return view

    async def remove_member(self, user: User, conversation_id: object, username: str) -> None:
        """Leave a group (anyone), or remove someone from it (its creator only)."""
        cid = parse_conversation_id(conversation_id)
        found = await self._resolve([username], exclude=None, strict=False)
        async with self.db.write() as conn:
            conv, current = await self._lock_as_member(conn, cid, user)
            target = found[0] if found else None
            if target is None or target.id not in current:
                raise NotFound("No such member of this conversation.", code="member_not_found")
            if target.id != user.id and conv.created_by != user.id:
                raise Forbidden(
                    "Only the conversation's creator removes others.", code="not_creator"
                )
            await store.mark_left(conn, cid, target.id, self.now())
            if target.id == user.id:
                text = f"{user.username} left"
            else:
                text = f"{user.username} removed {target.username}"
            message = await self._insert_system(conn, conv, user, text)
        await self._push(message, user, current)  # the removed member hears of it too

    async def _lock_as_member(
        self, conn: AsyncConnection, cid: int, user: User
    ) -> tuple[AnyRow, list[int]]:
        """Take the group's next seq (its row locked to this transaction) and its current members."""
        conv = await store.take_seq(conn, cid, self.now())
        current = await store.members_of(conn, cid) if conv is not None else []
        if conv is None or user.id not in current:
            raise conversation_not_found()
        if conv.kind != "group":
            raise BadRequest(
                "A direct conversation always has its two members.", code="direct_conversation"
            )
        return conv, current

    async def _insert_system(
        self, conn: AsyncConnection, conv: AnyRow, actor: User, text: str
    ) -> StoredMessage:
        message = StoredMessage(
            id=self.ids.next(),
            conversation_id=int(conv.id),
            seq=int(conv.last_seq),
            sender_id=actor.id,
            client_msg_id=f"system:{uuid.uuid4().hex}",
            content=text,
            message_type="system",
            created_at=conv.last_activity_at,
        )
        await store.insert_messages(conn, [vars(message)])
        return message

    async def _resolve(
        self, usernames: Sequence[str], *, exclude: User | None, strict: bool = True
    ) -> list[User]:
        """The named users (each once, in the order given); unknown names are a 400 naming them."""
        wanted = list(dict.fromkeys(n.strip().lower() for n in usernames))
        if exclude is not None and exclude.username in wanted:
            wanted.remove(exclude.username)
        check_group_size(len(wanted) + (exclude is not None))  # before any lookup of a huge list
        found = await self.accounts.by_usernames(wanted)
        unknown = [n for n in wanted if n not in found]
        if unknown and strict:
            raise BadRequest(
                f"No such users: {', '.join(unknown[:20])}.", code="unknown_users", field="members"
            )
        return [found[n] for n in wanted if n in found]

    # --- messages -------------------------------------------------------------------------------

    async def messages(
        self,
        user: User,
        conversation_id: object,
        *,
        before_seq: int | None,
        after_seq: int | None,
        limit: int,
    ) -> Page:
        """Messages in seq order: the first `limit` after `after_seq`, else the last before `before_seq`."""
        cid = parse_conversation_id(conversation_id)
        async with self.db.read() as conn:
            await require_member(conn, cid, user.id)
            rows = await store.messages_page(
                conn,
                cid,
                after_seq=after_seq,
                before_seq=before_seq,
                limit=limit + 1,
                newest_first=after_seq is None,
            )
        more, rows = len(rows) > limit, rows[:limit]
        if after_seq is None:
            rows.reverse()
        return Page(await self.views_of([StoredMessage.from_row(r) for r in rows]), more)

    async def contacts(self, user_id: int) -> set[int]:
        """Who shares a conversation with the user: those who see their presence.

        Asked on every arrival and departure; in a reconnect wave, one query answers many."""
        return await self._contacts.submit(user_id)

    async def _contacts_of(self, user_ids: Sequence[int]) -> list[set[int]]:
        async with self.db.read() as conn:
            found = await store.contacts(conn, set(user_ids))
        return [found[u] for u in user_ids]

    async def views_of(self, messages: Sequence[StoredMessage]) -> list[dict[str, Any]]:
        users = await self.accounts.by_ids(sorted({m.sender_id for m in messages}))
        return [message_view(m, summary_of(users, m.sender_id)) for m in messages]

    async def send(
        self,
        user: User,
        conversation_id: object,
        client_msg_id: str,
        content: str,
        message_type: str = "text",
        *,
        origin: str | None = None,
    ) -> dict[str, Any]:
        """Store a message (once per client_msg_id), then push it to every member's connections.

        A repeat of a stored client_msg_id returns the original and pushes it again (a crash could
        have come between commit and push; clients drop a seq they have).
        """
        cid = parse_conversation_id(conversation_id)
        check_message(client_msg_id, content, message_type)
        await self._check_flood(user)
        draft = Draft(user.id, cid, client_msg_id, content, message_type)
        stored = await self.writer.store(draft)
        view = await self._push(stored.message, user, stored.members, exclude=origin)
        if stored.fresh:  # a retry's push went out with the original
            self.metrics.chat_messages.inc()
            if self.offline_push is not None:
                self.offline_push.message_stored(view, [m for m in stored.members if m != user.id])
        return view

    async def _check_flood(self, user: User) -> None:
        """A token bucket per user (PLAZA_CHAT_SEND_RATE per second, PLAZA_CHAT_SEND_BURST at once)."""
        try:
            decision = await self.limiter.hit(f"chat-send:{user.id}", self.send_rate)
        except PortUnavailable:
            return  # a limiter outage must not stop messages
        if not decision.allowed:
            raise RateLimited("Sending too fast; slow down.", retry_after_s=decision.retry_after_s)

    async def _push(
        self,
        message: StoredMessage,
        sender: User,
        members: Collection[int],
        *,
        exclude: str | None = None,
    ) -> dict[str, Any]:
        view = message_view(message, sender.summary())
        frame = {"type": "message", "message": view}
        await self.pusher.deliver(members, frame, exclude=exclude, since=time.time())
        return view
