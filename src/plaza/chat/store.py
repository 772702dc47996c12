"""Chat's SQL. Every function runs inside the caller's connection or transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from plaza.chat.tables import conversation_members as members
from plaza.chat.tables import conversations, messages, push_dead_letters
from plaza.platform.db import AnyRow, KeptConnection

_Q = TypeVar("_Q")


class DirectExists(Exception):
    """Another request created the same direct conversation first."""


# --- conversations and members ------------------------------------------------------------------


async def insert_conversation(conn: AsyncConnection, **values: Any) -> int:
    """A new conversation's id; DirectExists if its direct_key is taken."""
    try:
        async with conn.begin_nested():  # a savepoint: on a clash the caller reads the winner's row
            result = await conn.execute(
                insert(conversations).values(**values).returning(conversations.c.id)
            )
    except IntegrityError as exc:
        if values.get("direct_key") is None:
            raise
        raise DirectExists(values["direct_key"]) from exc
    return int(result.scalar_one())


async def conversation_by_direct_key(conn: AsyncConnection, key: str) -> AnyRow | None:
    query = select(conversations).where(conversations.c.direct_key == key)
    return (await conn.execute(query)).one_or_none()


async def add_members(
    conn: AsyncConnection, conversation_id: int, user_ids: Sequence[int], now: dt.datetime, seq: int
) -> None:
    """Make users (new, or back after leaving) members; what came before `seq` counts as read."""
    if not user_ids:
        return
    returning = set(await _former_members(conn, conversation_id, user_ids))
    if returning:
        await conn.execute(
            update(members)
            .where(members.c.conversation_id == conversation_id, members.c.user_id.in_(returning))
            .values(left_at=None, joined_at=now, read_seq=seq, delivered_seq=seq)
        )
    rows = [
        {
            "conversation_id": conversation_id,
            "user_id": user_id,
            "joined_at": now,
            "read_seq": seq,
            "delivered_seq": seq,
        }
        for user_id in user_ids
        if user_id not in returning
    ]
    if rows:
        await conn.execute(insert(members), rows)


async def _former_members(
    conn: AsyncConnection, conversation_id: int, user_ids: Sequence[int]
) -> list[int]:
    query = select(members.c.user_id).where(
        members.c.conversation_id == conversation_id, members.c.user_id.in_(user_ids)
    )
    return [int(row.user_id) for row in await conn.execute(query)]


async def mark_left(
    conn: AsyncConnection, conversation_id: int, user_id: int, now: dt.datetime
) -> None:
    await conn.execute(
        update(members)
        .where(members.c.conversation_id == conversation_id, members.c.user_id == user_id)
        .values(left_at=now)
    )


async def membership(conn: AsyncConnection, conversation_id: int, user_id: int) -> AnyRow | None:
    """The conversation joined with the user's membership, if the user is a member now."""
    query = (
        select(conversations, members.c.read_seq, members.c.delivered_seq)
        .join(members, members.c.conversation_id == conversations.c.id)
        .where(
            conversations.c.id == conversation_id,
            members.c.user_id == user_id,
            members.c.left_at.is_(None),
        )
    )
    return (await conn.execute(query)).one_or_none()


# The statements of every send and cursor frame are built once: built per call, their expression
# objects are cyclic garbage that young collections pause for (100+ ms at 10,000 connections).
# Lists of ids go to PostgreSQL as one array: one statement text whatever the length, prepared once
# per connection, where an expanding IN is a new statement (and a new prepare) for each length.
def _among(column: ColumnElement[int], name: str, dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(BigInteger)))
    return column.in_(bindparam(name, expanding=True))


def _by_dialect(build: Callable[[str], _Q]) -> dict[str, _Q]:
    return {dialect: build(dialect) for dialect in ("postgresql", "sqlite")}


_MEMBER_IDS = _by_dialect(
    lambda dialect: (
        select(members.c.conversation_id, members.c.user_id)
        .where(_among(members.c.conversation_id, "ids", dialect), members.c.left_at.is_(None))
        .order_by(members.c.joined_at, members.c.user_id)
    )
)


async def member_ids(
    conn: AsyncConnection, conversation_ids: Sequence[int]
) -> dict[int, list[int]]:
    """Current members of each conversation, in the order they joined."""
    found: dict[int, list[int]] = {cid: [] for cid in conversation_ids}
    query = _MEMBER_IDS[conn.dialect.name]
    for cid, user_id in await conn.execute(query, {"ids": list(conversation_ids)}):
        found[cid].append(user_id)
    return found


async def contacts(conn: AsyncConnection, user_ids: Collection[int]) -> dict[int, set[int]]:
    """Of each user, everyone who shares a conversation with them now (themselves included, if in
    any)."""
    mine, theirs = members.alias("mine"), members.alias("theirs")
    query = (
        select(mine.c.user_id, theirs.c.user_id)
        .distinct()
        .join(mine, mine.c.conversation_id == theirs.c.conversation_id)
        .where(
            mine.c.user_id.in_(sorted(user_ids)),
            mine.c.left_at.is_(None),
            theirs.c.left_at.is_(None),
        )
    )
    found: dict[int, set[int]] = {int(u): set() for u in user_ids}
    for user_id, contact in await conn.execute(query):
        found[int(user_id)].add(int(contact))
    return found


async def members_of(conn: AsyncConnection, conversation_id: int) -> list[int]:
    return (await member_ids(conn, [conversation_id]))[conversation_id]


async def conversations_of(
    conn: AsyncConnection, user_id: int, *, before: tuple[dt.datetime, int] | None, limit: int
) -> list[AnyRow]:
    """The user's conversations, most recent activity first, with the user's read_seq."""
    conditions = [members.c.user_id == user_id, members.c.left_at.is_(None)]
    if before is not None:
        at, cid = before
        activity = conversations.c.last_activity_at
        conditions.append(or_(activity < at, and_(activity == at, conversations.c.id < cid)))
    query = (
        select(conversations, members.c.read_seq)
        .join(members, members.c.conversation_id == conversations.c.id)
        .where(*conditions)
        .order_by(conversations.c.last_activity_at.desc(), conversations.c.id.desc())
        .limit(limit)
    )
    return list((await conn.execute(query)).all())


async def unread_counts(
    conn: AsyncConnection, user_id: int, conversation_ids: Sequence[int]
) -> dict[int, int]:
    """Messages from others after the user's read cursor, per conversation."""
    query = (
        select(messages.c.conversation_id, func.count())
        .join(
            members,
            and_(
                members.c.conversation_id == messages.c.conversation_id,
                members.c.user_id == user_id,
            ),
        )
        .where(
            messages.c.conversation_id.in_(conversation_ids),
            messages.c.seq > members.c.read_seq,
            messages.c.sender_id != user_id,
        )
        .group_by(messages.c.conversation_id)
    )
    return {int(row[0]): int(row[1]) for row in await conn.execute(query)}


# --- messages -----------------------------------------------------------------------------------


async def take_seq(
    conn: AsyncConnection, conversation_id: int, now: dt.datetime, count: int = 1
) -> AnyRow | None:
    """Reserve the conversation's next `count` seqs (the last of them is the returned row's
    last_seq), or None if the conversation is unknown.

    The UPDATE holds the row's lock until the transaction ends, so concurrent senders take turns (on
    SQLite, BEGIN IMMEDIATE has serialised writers already), and a rollback returns the seqs: no gaps.
    """
    result = await conn.execute(
        update(conversations)
        .where(conversations.c.id == conversation_id)
        .values(last_seq=conversations.c.last_seq + count, last_activity_at=now)
        .returning(*conversations.c)
    )
    return result.one_or_none()


class NewMessage(NamedTuple):
    """A member's send, with its id, before it is stored."""

    id: int
    conversation_id: int
    sender_id: int
    client_msg_id: str
    content: str
    message_type: str


# PostgreSQL: the whole batch in one call of the function of migration 0005, which is one round trip
# and, on a connection outside a transaction, one transaction: no BEGIN and COMMIT round trips.
_STORE_SENDS_PG = "SELECT * FROM plaza_store_messages($1, $2, $3, $4, $5, $6, $7)"
_LAST_SEQS = (  # SQLite: BEGIN IMMEDIATE has locked the database for the transaction already
    select(conversations.c.id, conversations.c.last_seq)
    .where(conversations.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(conversations.c.id)
)
_INSERT_MESSAGES = insert(messages)
_SET_LAST_SEQ = (
    update(conversations)
    .where(conversations.c.id == bindparam("b_id"))
    .values(last_seq=bindparam("b_seq"), last_activity_at=bindparam("b_now"))
)


async def store_sends(
    conn: AsyncConnection | KeptConnection, sends: Sequence[NewMessage], now: dt.datetime
) -> tuple[list[int | None], dict[int, list[int]]]:
    """Store members' sends, all created at `now`: each gets its conversation's next seq, in the
    order given; each conversation's last_seq and activity time move up, and each sender's cursors
    too (what one sends one has read). A sender who is not a member, or a conversation that does not
    exist, stores nothing. Returns each send's seq (None if not stored) and the current members, in
    the order they joined, of the conversations that have any.

    On PostgreSQL (a KeptConnection) this is one statement, atomic by itself, outside any
    transaction. On SQLite it runs in the caller's write transaction, whose BEGIN IMMEDIATE has
    serialised writers. Raises IntegrityError, storing nothing, if a (sender, client_msg_id) is
    stored already; a seq is never skipped."""
    if not sends:
        return [], {}
    if isinstance(conn, KeptConnection):
        return await _store_sends_pg(conn, sends, now)
    return await _store_sends_sqlite(conn, sends, now)


async def _store_sends_pg(
    conn: KeptConnection, sends: Sequence[NewMessage], now: dt.datetime
) -> tuple[list[int | None], dict[int, list[int]]]:
    found = await conn.fetch(
        _STORE_SENDS_PG,
        [s.id for s in sends],
        [s.conversation_id for s in sends],
        [s.sender_id for s in sends],
        [s.client_msg_id for s in sends],
        [s.content for s in sends],
        [s.message_type for s in sends],
        now,
    )
    members: dict[int, list[int]] = {}
    given: dict[int, Iterator[int | None]] = {}  # per conversation, its sends' seqs in order
    for cid, member_list, seqs in found:
        members[cid], given[cid] = member_list, iter(seqs)
    none: Iterator[int | None] = iter(())  # an unknown conversation
    return [next(given.get(s.conversation_id, none), None) for s in sends], members


async def _store_sends_sqlite(
    conn: AsyncConnection, sends: Sequence[NewMessage], now: dt.datetime
) -> tuple[list[int | None], dict[int, list[int]]]:
    wanted = sorted({s.conversation_id for s in sends})
    last_seqs: dict[int, int] = dict((await conn.execute(_LAST_SEQS, {"ids": wanted})).all())
    current = await member_ids(conn, sorted(last_seqs))
    members = {cid: ids for cid, ids in current.items() if ids}
    allowed = {cid: set(ids) for cid, ids in members.items()}
    seqs: list[int | None] = []
    read: dict[tuple[int, int], int] = {}  # (conversation, sender) -> the sender's newest seq
    for send in sends:
        cid = send.conversation_id
        if send.sender_id not in allowed.get(cid, ()):
            seqs.append(None)
            continue
        last_seqs[cid] = read[cid, send.sender_id] = last_seqs[cid] + 1
        seqs.append(last_seqs[cid])
    stored = [
        {**send._asdict(), "seq": seq, "created_at": now}
        for send, seq in zip(sends, seqs, strict=True)
        if seq is not None
    ]
    if stored:
        moved = {c for c, _ in read}
        await conn.execute(
            _SET_LAST_SEQ, [{"b_id": c, "b_seq": last_seqs[c], "b_now": now} for c in sorted(moved)]
        )
        await conn.execute(_INSERT_MESSAGES, stored)
        await advance_members(conn, [(c, u, seq, seq) for (c, u), seq in read.items()])
    return seqs, members


async def insert_messages(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Raises IntegrityError (the transaction is spoiled) on a repeated (sender, client_msg_id)."""
    if rows:
        await conn.execute(_INSERT_MESSAGES, list(rows))


_BY_CLIENT_IDS = select(messages).where(
    tuple_(messages.c.sender_id, messages.c.client_msg_id).in_(bindparam("keys", expanding=True))
)


async def messages_by_client_ids(
    conn: AsyncConnection, keys: Collection[tuple[int, str]]
) -> dict[tuple[int, str], AnyRow]:
    """Stored messages by (sender, client_msg_id)."""
    if not keys:
        return {}
    found = await conn.execute(_BY_CLIENT_IDS, {"keys": sorted(keys)})
    return {(int(r.sender_id), str(r.client_msg_id)): r for r in found}


async def messages_page(
    conn: AsyncConnection,
    conversation_id: int,
    *,
    after_seq: int | None = None,
    before_seq: int | None = None,
    limit: int,
    newest_first: bool = False,
) -> list[AnyRow]:
    conditions = [messages.c.conversation_id == conversation_id]
    if after_seq is not None:
        conditions.append(messages.c.seq > after_seq)
    if before_seq is not None:
        conditions.append(messages.c.seq < before_seq)
    order = messages.c.seq.desc() if newest_first else messages.c.seq
    query = select(messages).where(*conditions).order_by(order).limit(limit)
    return list((await conn.execute(query)).all())


async def messages_at(conn: AsyncConnection, positions: Sequence[tuple[int, int]]) -> list[AnyRow]:
    """Messages by (conversation_id, seq)."""
    if not positions:
        return []
    wanted = [
        and_(messages.c.conversation_id == cid, messages.c.seq == seq) for cid, seq in positions
    ]
    return list((await conn.execute(select(messages).where(or_(*wanted)))).all())


async def delete_messages_before(conn: AsyncConnection, cutoff: dt.datetime, limit: int) -> int:
    """Delete up to `limit` of the oldest messages created before `cutoff`; how many went."""
    oldest = (
        select(messages.c.id)
        .where(messages.c.created_at < cutoff)
        .order_by(messages.c.created_at)
        .limit(limit)
    )
    result = await conn.execute(delete(messages).where(messages.c.id.in_(oldest)))
    return int(result.rowcount or 0)


# --- offline push dead letters ------------------------------------------------------------------


async def insert_dead_letter(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(push_dead_letters).values(**values))


async def dead_letters(conn: AsyncConnection, limit: int = 100) -> list[AnyRow]:
    query = select(push_dead_letters).order_by(push_dead_letters.c.id).limit(limit)
    return list((await conn.execute(query)).all())


async def delete_dead_letters_before(conn: AsyncConnection, cutoff: dt.datetime) -> int:
    result = await conn.execute(
        delete(push_dead_letters).where(push_dead_letters.c.created_at < cutoff)
    )
    return int(result.rowcount or 0)


# --- cursors ------------------------------------------------------------------------------------


_MEMBERSHIPS = (
    select(
        members.c.conversation_id,
        members.c.user_id,
        members.c.read_seq,
        members.c.delivered_seq,
        conversations.c.last_seq,
    )
    .join(conversations, conversations.c.id == members.c.conversation_id)
    .where(
        tuple_(members.c.conversation_id, members.c.user_id).in_(
            bindparam("pairs", expanding=True)
        ),
        members.c.left_at.is_(None),
    )
)


async def memberships(
    conn: AsyncConnection, pairs: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], AnyRow]:
    """For each (conversation, user) pair whose user is a member now: the member's cursors and the
    conversation's last_seq."""
    if not pairs:
        return {}
    found = await conn.execute(_MEMBERSHIPS, {"pairs": list(pairs)})
    return {(int(r.conversation_id), int(r.user_id)): r for r in found}


_b_read, _b_delivered = (
    bindparam("b_read", type_=BigInteger),
    bindparam("b_delivered", type_=BigInteger),
)
_ADVANCE_MEMBERS = (
    update(members)
    .where(
        members.c.conversation_id == bindparam("b_conversation"),
        members.c.user_id == bindparam("b_user"),
        members.c.left_at.is_(None),
        or_(members.c.read_seq < _b_read, members.c.delivered_seq < _b_delivered),
    )
    .values(
        read_seq=case((members.c.read_seq < _b_read, _b_read), else_=members.c.read_seq),
        delivered_seq=case(
            (members.c.delivered_seq < _b_delivered, _b_delivered), else_=members.c.delivered_seq
        ),
    )
)


async def advance_members(
    conn: AsyncConnection, moves: Sequence[tuple[int, int, int, int]]
) -> None:
    """Move members' cursors up (never back): (conversation, user, read_seq, delivered_seq) each.

    Rows are locked in (conversation, user) order, so concurrent batches cannot deadlock."""
    if moves:
        await conn.execute(
            _ADVANCE_MEMBERS,
            [
                {"b_conversation": c, "b_user": u, "b_read": r, "b_delivered": max(r, d)}
                for c, u, r, d in sorted(moves)
            ],
        )


async def positions_of(conn: AsyncConnection, user_id: int) -> dict[int, int]:
    """last_seq of every conversation the user is a member of."""
    query = (
        select(conversations.c.id, conversations.c.last_seq)
        .join(members, members.c.conversation_id == conversations.c.id)
        .where(members.c.user_id == user_id, members.c.left_at.is_(None))
    )
    return {int(row[0]): int(row[1]) for row in await conn.execute(query)}
