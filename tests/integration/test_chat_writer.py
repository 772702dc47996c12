"""The message writer against a membership change that holds the conversation while sends arrive."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, text

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


@pytest.mark.anyio
async def test_a_kept_connection_answers_errors_as_sqlalchemy_and_stays_usable(
    pg_database_url: str,
) -> None:
    """A statement's own error (a duplicate, a bad query) leaves the connection kept; the errors are
    SQLAlchemy's, which callers already tell apart (IntegrityError for the writer's retries)."""
    db = Database.from_url(pg_database_url, pool_size=1)
    kept = db.kept()
    try:
        await kept.fetch("CREATE TEMPORARY TABLE t (k int PRIMARY KEY)")
        await kept.fetch("INSERT INTO t VALUES ($1)", 1)
        with pytest.raises(sa_exc.IntegrityError):
            await kept.fetch("INSERT INTO t VALUES ($1)", 1)
        with pytest.raises(sa_exc.DBAPIError) as bad:
            await kept.fetch("SELECT no_such_column FROM t")
        assert not bad.value.connection_invalidated
        # Still the same session: its temporary table is there, with the one row.
        assert [tuple(r) for r in await kept.fetch("SELECT k FROM t")] == [(1,)]
        # It is none of the pool's: a pool of one still serves everyone else.
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
        await kept.close()  # the next statement opens a new session, without the table
        assert [tuple(r) for r in await kept.fetch("SELECT to_regclass('pg_temp.t')")] == [(None,)]
    finally:
        await db.dispose()
