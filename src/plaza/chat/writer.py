"""Storing members' messages: the sends that queue behind one write share the next transaction.

Each conversation's row is locked once per batch and its seqs are taken together, so a burst of
sends costs a handful of statements rather than a handful each; every send still gets its own
outcome (its message, the original of a retried client_msg_id, or its error).
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
        self._batches: Batcher[Draft, Stored] = Batcher(self._write)

    async def store(self, draft: Draft) -> Stored:
        """Store the message once per (sender, client_msg_id); raises NotFound for a non-member."""
        return await self._batches.submit(draft)

    async def _write(self, drafts: Sequence[Draft]) -> list[Outcome]:
        try:
            async with self.db.write() as conn:
                return await self._write_in(conn, drafts)
        except IntegrityError:
            # A client_msg_id raced in from another connection between our lookup and our insert.
            if len(drafts) > 1:  # alone, each draft finds out whether it is the one
                return [(await self._write([draft]))[0] for draft in drafts]
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

    async def _write_in(self, conn: AsyncConnection, drafts: Sequence[Draft]) -> list[Outcome]:
        keys = [(d.sender_id, d.client_msg_id) for d in drafts]
        originals = await store.messages_by_client_ids(conn, set(keys))
        first: dict[
            tuple[int, str], int
        ] = {}  # a client_msg_id sent twice in one batch is one send
        new: dict[int, list[int]] = {}  # conversation -> indexes of the drafts to store there
        for i, key in enumerate(keys):
            if key not in originals and key not in first:
                first[key] = i
                new.setdefault(drafts[i].conversation_id, []).append(i)
        now = self.now()
        locked = await store.take_seqs(conn, {cid: len(i) for cid, i in new.items()}, now)
        wanted = set(locked) | {int(row.conversation_id) for row in originals.values()}
        members = await store.member_ids(conn, sorted(wanted))

        outcomes: list[Outcome | None] = [None] * len(drafts)
        stored: list[StoredMessage] = []
        for cid, indexes in new.items():
            conv = locked.get(cid)
            allowed = [i for i in indexes if conv and drafts[i].sender_id in members[cid]]
            for i in set(indexes) - set(allowed):
                outcomes[i] = conversation_not_found()
            if conv is None:
                continue
            if len(allowed) < len(indexes):
                await store.give_back_seqs(conn, cid, len(indexes) - len(allowed))
            seq = int(conv.last_seq) - len(indexes)
            for i in allowed:
                seq += 1
                draft = drafts[i]
                message = StoredMessage(
                    id=self.ids.next(),
                    conversation_id=cid,
                    seq=seq,
                    sender_id=draft.sender_id,
                    client_msg_id=draft.client_msg_id,
                    content=draft.content,
                    message_type=draft.message_type,
                    created_at=conv.last_activity_at,
                )
                stored.append(message)
                outcomes[i] = Stored(message, members[cid], fresh=True)
        await store.insert_messages(conn, [vars(m) for m in stored])
        # What one sends one has read (and had delivered).
        read = {(m.conversation_id, m.sender_id): m.seq for m in stored}
        await store.advance_members(conn, [(c, u, seq, seq) for (c, u), seq in read.items()])

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
