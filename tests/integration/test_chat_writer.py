"""The message writer against a membership change that holds the conversation while sends arrive."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import insert

from plaza.accounts.tables import users
from plaza.chat import store
from plaza.chat.writer import Draft, MessageWriter
from plaza.platform.db import Database, utcnow
from plaza.platform.errors import NotFound
from plaza.platform.ids import SnowflakeIds

ALICE, BOB, CAROL = 1, 2, 3


@pytest.mark.anyio
async def test_sends_that_waited_for_a_membership_change_see_its_outcome(
    migrated_url: str,
) -> None:
    """Bob is removed and Carol added while Alice's and Bob's sends wait for the conversation: once
    the change commits, Bob's send stores nothing and Alice's message goes to Alice and Carol."""
    db = Database.from_url(migrated_url)
    writer = MessageWriter(db, SnowflakeIds(1), utcnow)
    now = utcnow()
    try:
        async with db.write() as conn:
            await conn.execute(
                insert(users),
                [
                    {
                        "id": i,
                        "username": n,
                        "display_name": n,
                        "password_hash": "x",
                        "created_at": now,
                    }
                    for i, n in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol"))
                ],
            )
            cid = await store.insert_conversation(
                conn, kind="group", name="g", created_by=ALICE, created_at=now, last_activity_at=now
            )
            await store.add_members(conn, cid, [ALICE, BOB], now, 0)

        async with db.write() as change:  # as ChatService changes members: the row held throughout
            taken = await store.take_seq(change, cid, now)
            assert taken is not None and taken.last_seq == 1
            await store.mark_left(change, cid, BOB, now)
            await store.add_members(change, cid, [CAROL], now, 1)
            sends = [
                asyncio.create_task(writer.store(Draft(user, cid, f"m-{user}", "hi", "text")))
                for user in (BOB, ALICE)
            ]
            await asyncio.sleep(0.3)
            assert not any(send.done() for send in sends)  # both wait for the change to end

        with pytest.raises(NotFound):
            await sends[0]
        stored = await sends[1]
        assert stored.fresh and stored.message.seq == 2
        assert stored.members == [ALICE, CAROL]
        async with db.read() as conn:
            page = await store.messages_page(conn, cid, limit=10)
        assert [(m.seq, m.sender_id) for m in page] == [(2, ALICE)]
    finally:
        await db.dispose()
