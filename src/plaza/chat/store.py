"""Chat's SQL. Every function runs inside the caller's connection or transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Text,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from plaza.chat.tables import conversation_members as members
from plaza.chat.tables import conversations, messages, push_dead_letters
from plaza.platform.db import AnyRow, UTCDateTime

if TYPE_CHECKING:
    from plaza.chat.views import StoredMessage

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


_LOCK_CONVERSATIONS = _by_dialect(
    lambda dialect: (
        select(conversations.c.id, conversations.c.last_seq)
        .where(_among(conversations.c.id, "ids", dialect))
        .order_by(conversations.c.id)
        .with_for_update()
    )
)


async def lock_conversations(conn: AsyncConnection, ids: Collection[int]) -> dict[int, int]:
    """The last_seq of each known conversation, its row locked until the transaction ends so that its
    next seqs are this transaction's to take (`store_messages`). Rows are locked in id order, so two
    processes' batches never deadlock; on SQLite, BEGIN IMMEDIATE has serialised writers already."""
    if not ids:
        return {}
    found = await conn.execute(_LOCK_CONVERSATIONS[conn.dialect.name], {"ids": sorted(ids)})
    return dict(found.all())


_INSERT_MESSAGES = insert(messages)
_SET_LAST_SEQ = (
    update(conversations)
    .where(conversations.c.id == bindparam("b_id"))
    .values(last_seq=bindparam("b_seq"), last_activity_at=bindparam("b_now"))
)
# PostgreSQL: the whole batch in one statement (and one round trip), its rows as arrays.
_STORE_MESSAGES_PG = text(
    """
    WITH seqs AS (
        UPDATE conversations AS c SET last_seq = v.last_seq, last_activity_at = :now
        FROM unnest(:conversation_ids, :last_seqs) AS v (id, last_seq)
        WHERE c.id = v.id
    ), stored AS (
        INSERT INTO messages
            (id, conversation_id, seq, sender_id, client_msg_id, content, message_type, created_at)
        SELECT v.*, :now FROM unnest(
            :ids, :message_conversation_ids, :seqs, :sender_ids, :client_msg_ids, :contents, :types
        ) AS v
    )
    UPDATE conversation_members AS m
    SET read_seq = greatest(m.read_seq, v.seq), delivered_seq = greatest(m.delivered_seq, v.seq)
    FROM unnest(:read_conversation_ids, :read_user_ids, :read_seqs) AS v (conversation_id, user_id, seq)
    WHERE m.conversation_id = v.conversation_id AND m.user_id = v.user_id AND m.left_at IS NULL
    """
).bindparams(
    bindparam("now", type_=UTCDateTime),
    *(
        bindparam(name, type_=ARRAY(BigInteger))
        for name in (
            "conversation_ids",
            "last_seqs",
            "ids",
            "message_conversation_ids",
            "seqs",
            "sender_ids",
            "read_conversation_ids",
            "read_user_ids",
            "read_seqs",
        )
    ),
    *(bindparam(name, type_=ARRAY(Text)) for name in ("client_msg_ids", "contents", "types")),
)


async def store_messages(
    conn: AsyncConnection,
    last_seqs: dict[int, int],
    now: dt.datetime,
    rows: Sequence[StoredMessage],
) -> None:
    """Insert members' messages, set each conversation's last_seq (locked by `lock_conversations`)
    and its activity time, and move each sender's cursors up to their newest message: what one sends
    one has read. Every message was created at `now`. Raises IntegrityError (the transaction is spoiled) on a repeated client_msg_id."""
    if not rows:
        return
    read = sorted({(r.conversation_id, r.sender_id): r.seq for r in rows}.items())
    if conn.dialect.name == "postgresql":
        await conn.execute(
            _STORE_MESSAGES_PG,
            {
                "now": now,
                "conversation_ids": list(last_seqs),
                "last_seqs": list(last_seqs.values()),
                "ids": [r.id for r in rows],
                "message_conversation_ids": [r.conversation_id for r in rows],
                "seqs": [r.seq for r in rows],
                "sender_ids": [r.sender_id for r in rows],
                "client_msg_ids": [r.client_msg_id for r in rows],
                "contents": [r.content for r in rows],
                "types": [r.message_type for r in rows],
                "read_conversation_ids": [c for (c, _), _ in read],
                "read_user_ids": [u for (_, u), _ in read],
                "read_seqs": [seq for _, seq in read],
            },
        )
        return
    await conn.execute(
        _SET_LAST_SEQ,
        [{"b_id": cid, "b_seq": seq, "b_now": now} for cid, seq in last_seqs.items()],
    )
    await conn.execute(_INSERT_MESSAGES, [vars(r) for r in rows])
    await advance_members(conn, [(c, u, seq, seq) for (c, u), seq in read])


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
