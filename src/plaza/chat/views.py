"""Chat's shapes as clients see them (one builder for REST and WebSocket alike), and its access check."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from plaza.accounts.service import User
from plaza.chat import store
from plaza.platform.db import AnyRow
from plaza.platform.errors import NotFound

_MAX_ID = 2**63 - 1  # larger numbers cannot name a row, and would overflow a BIGINT parameter


@dataclass(frozen=True)
class StoredMessage:
    id: int
    conversation_id: int
    seq: int
    sender_id: int
    client_msg_id: str
    content: str
    message_type: str
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: AnyRow) -> StoredMessage:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


def conversation_not_found() -> NotFound:
    # The same answer whether the conversation does not exist or the caller is not in it.
    return NotFound("No such conversation.", code="conversation_not_found")


def parse_conversation_id(raw: object) -> int:
    """A conversation id as clients send it (a string, or a JSON number); unknown if malformed."""
    if isinstance(raw, bool):
        raise conversation_not_found()
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 19:
        raw = int(raw)
    if isinstance(raw, int) and 0 < raw <= _MAX_ID:
        return raw
    raise conversation_not_found()


async def require_member(conn: AsyncConnection, conversation_id: int, user_id: int) -> AnyRow:
    """The conversation (with the caller's cursors) if the caller is a member; else 404."""
    found = await store.membership(conn, conversation_id, user_id)
    if found is None:
        raise conversation_not_found()
    return found


def summary_of(users: Mapping[int, User], user_id: int) -> dict[str, str]:
    user = users.get(user_id)
    if user is None:  # not expected while users cannot be deleted; never fail a read over it
        return {"id": str(user_id), "username": "", "display_name": "Deleted user"}
    return user.summary()


def message_view(message: StoredMessage, sender: Mapping[str, str]) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "conversation_id": str(message.conversation_id),
        "seq": message.seq,
        "sender": dict(sender),
        "content": message.content,
        "message_type": message.message_type,
        "created_at": message.created_at,
        "client_msg_id": message.client_msg_id,
    }


def conversation_view(
    row: AnyRow,
    member_ids: list[int],
    users: Mapping[int, User],
    last_message: StoredMessage | None,
    unread_count: int,
) -> dict[str, Any]:
    last = None
    if last_message is not None:
        last = message_view(last_message, summary_of(users, last_message.sender_id))
    return {
        "id": str(row.id),
        "kind": row.kind,
        "name": row.name,
        "members": [summary_of(users, user_id) for user_id in member_ids],
        "last_message": last,
        "unread_count": unread_count,
        "last_seq": int(row.last_seq),
        "created_at": row.created_at,
        "last_activity_at": row.last_activity_at,
    }
