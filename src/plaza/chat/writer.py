"""Storing members' messages: the sends that queue behind one write share the next transaction.

A batch is one statement on PostgreSQL however many sends it holds, and a transaction by itself: a
function (migration 0005) locks the conversations' rows in id order, reads their members, and stores
every message, seq and sender's cursor at once (`store.store_sends`), on a connection the writer keeps
(`Database.kept`: batches run one at a time). On SQLite, statement by statement in a write
transaction. Every send still gets its own outcome (its message, the original of a retried
client_msg_id, or its error).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from plaza.chat import store
from plaza.chat.views import StoredMessage, conversation_not_found
from plaza.platform.batching import Batcher
from plaza.platform.db import Database
from plaza.platform.ids import SnowflakeIds

__all__ = ["Draft", "MessageWriter", "Stored"]


@dataclass(frozen=True)
class Draft:
    sender_id: int
    conversation_id: int
    client_msg_id: str
    content: str
    message_type: str


@dataclass(frozen=True)
class Stored:
    message: StoredMessage
    members: list[int]  # the conversation's members when it was stored (or now, for a retry)
    fresh: bool  # stored by this send; False for a retry of a stored client_msg_id


Outcome = Stored | Exception


class MessageWriter:
    def __init__(self, db: Database, ids: SnowflakeIds, now: Callable[[], dt.datetime]) -> None:
        self.db, self.ids, self.now = db, ids, now
        self._kept = db.kept() if db.dialect == "postgresql" else None
        self._batches: Batcher[Draft, Stored] = Batcher(self._write)

    async def store(self, draft: Draft) -> Stored:
        """Store the message once per (sender, client_msg_id); raises NotFound for a non-member."""
        return await self._batches.submit(draft)

    async def _write(self, drafts: Sequence[Draft], *, retries: bool = False) -> list[Outcome]:
        """Store a batch. A retried client_msg_id is rare, so a batch is first written without looking
        for one: the unique constraint catches it, and the batch is written again, `retries` looked
        up first."""
        try:
            if self._kept is not None and not retries:  # nothing to look up: no pooled connection
                return await self._write_in(None, drafts, retries=False)
            async with self.db.write_alone() as conn:
                return await self._write_in(conn, drafts, retries=retries)
        except IntegrityError:
            if not retries:
                return await self._write(drafts, retries=True)
            # A client_msg_id raced in from another connection between our lookup and our insert.
            if len(drafts) > 1:  # alone, each draft finds out whether it is the one
                return [(await self._write([draft], retries=True))[0] for draft in drafts]
            return [await self._original(drafts[0])]

    async def _original(self, draft: Draft) -> Outcome:
        key = (draft.sender_id, draft.client_msg_id)
        async with self.db.read() as conn:
            found = (await store.messages_by_client_ids(conn, [key])).get(key)
            if found is None:
                return conversation_not_found()  # the insert failed on something else: it is gone
            message = StoredMessage.from_row(found)
            members = await store.members_of(conn, message.conversation_id)
        return Stored(message, members, fresh=False)

    async def _write_in(
        self, conn: AsyncConnection | None, drafts: Sequence[Draft], *, retries: bool
    ) -> list[Outcome]:
        """`conn`: for what a batch looks up (`retries`) and, on SQLite, stores; on PostgreSQL the
        batch is stored on the writer's own connection."""
        keys = [(d.sender_id, d.client_msg_id) for d in drafts]
        originals = {}
        if retries:
            assert conn is not None
            originals = await store.messages_by_client_ids(conn, set(keys))
        # A client_msg_id sent twice in one batch is one send: the index of its first draft.
        first: dict[tuple[int, str], int] = {}
        for i, key in enumerate(keys):
            if key not in originals and key not in first:
                first[key] = i
        sends = [
            store.NewMessage(
                self.ids.next(),
                d.conversation_id,
                d.sender_id,
                d.client_msg_id,
                d.content,
                d.message_type,
            )
            for d in (drafts[i] for i in first.values())
        ]
        now = self.now()
        target = self._kept or conn
        assert target is not None
        seqs, members = await store.store_sends(target, sends, now)
        unknown = {int(r.conversation_id) for r in originals.values()} - members.keys()
        if unknown:
            assert conn is not None  # originals were looked up on it
            members |= await store.member_ids(conn, sorted(unknown))

        outcomes: list[Outcome | None] = [None] * len(drafts)
        for i, send, seq in zip(first.values(), sends, seqs, strict=True):
            if seq is None:
                outcomes[i] = conversation_not_found()
                continue
            message = StoredMessage(created_at=now, seq=seq, **send._asdict())
            outcomes[i] = Stored(message, members[send.conversation_id], fresh=True)
        for i, key in enumerate(keys):
            if outcomes[i] is not None:
                continue
            if key in originals:
                message = StoredMessage.from_row(originals[key])
                outcomes[i] = Stored(message, members[message.conversation_id], fresh=False)
            else:
                earlier = outcomes[first[key]]
                outcomes[i] = (
                    Stored(earlier.message, earlier.members, fresh=False)
                    if isinstance(earlier, Stored)
                    else earlier
                )
        assert all(o is not None for o in outcomes)
        return outcomes  # type: ignore[return-value]
