"""The contract's limits on conversations and messages, checked before anything is stored."""

from __future__ import annotations

import datetime as dt
from typing import Any

from plaza.platform.errors import BadRequest

__all__ = [
    "MAX_CONTENT_CHARS",
    "MAX_GROUP_MEMBERS",
    "check_group_size",
    "check_message",
    "clean_name",
    "new_conversation",
]

MAX_GROUP_MEMBERS = 500  # including the creator
MAX_CONTENT_CHARS = 10_000
MAX_NAME_CHARS = 100
MAX_CLIENT_MSG_ID = 64
MESSAGE_TYPES = frozenset({"text"})  # `system` is written by the server only


def new_conversation(
    kind: str, name: str | None, creator_id: int, now: dt.datetime
) -> dict[str, Any]:
    return {
        "kind": kind,
        "name": name,
        "created_by": creator_id,
        "last_seq": 0,
        "created_at": now,
        "last_activity_at": now,
    }


def clean_name(name: str | None) -> str | None:
    name = (name or "").strip()
    if not name:
        return None
    if len(name) > MAX_NAME_CHARS or "\x00" in name:
        raise BadRequest(
            f"Names are at most {MAX_NAME_CHARS} characters.", code="invalid_name", field="name"
        )
    return name


def check_group_size(count: int) -> None:
    if count > MAX_GROUP_MEMBERS:
        raise BadRequest(
            f"Groups have at most {MAX_GROUP_MEMBERS} members, the creator included.",
            code="group_too_large",
            field="members",
        )


def check_message(client_msg_id: str, content: str, message_type: str) -> None:
    if not 1 <= len(client_msg_id) <= MAX_CLIENT_MSG_ID or not client_msg_id.isprintable():
        raise BadRequest(
            f"client_msg_id is 1-{MAX_CLIENT_MSG_ID} printable characters.",
            code="invalid_client_msg_id",
            field="client_msg_id",
        )
    if not content.strip():
        raise BadRequest("A message needs some content.", code="empty_content", field="content")
    if len(content) > MAX_CONTENT_CHARS:
        raise BadRequest(
            f"Messages are at most {MAX_CONTENT_CHARS:,} characters.",
            code="content_too_long",
            field="content",
        )
    if "\x00" in content:  # PostgreSQL cannot store it
        raise BadRequest(
            "Messages cannot contain NUL characters.", code="invalid_content", field="content"
        )
    if message_type not in MESSAGE_TYPES:
        raise BadRequest(
            f"message_type is one of: {', '.join(sorted(MESSAGE_TYPES))}.",
            code="invalid_message_type",
            field="message_type",
        )
