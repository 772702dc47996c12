"""Chat over HTTP: conversations, their members and their history. Live traffic is the WebSocket's."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from plaza.chat.search import MAX_QUERY_CHARS
from plaza.deps import CurrentUser, ServicesDep
from plaza.platform.errors import BadRequest
from plaza.platform.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["chat"])
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
PRESENCE_MAX = 100  # users per presence query
_MAX_SEQ = 2**53  # beyond any real seq, and still a valid BIGINT parameter
_MAX_ID = 2**63 - 1  # the largest BIGINT parameter


class UserSummary(BaseModel):
    id: str
    username: str
    display_name: str


class MessageOut(BaseModel):
    id: str
    conversation_id: str
    seq: int = Field(description="Position in the conversation: from 1, without gaps")
    sender: UserSummary
    content: str
    message_type: Literal["text", "system"]
    created_at: dt.datetime
    client_msg_id: str


class ConversationOut(BaseModel):
    id: str
    kind: Literal["direct", "group"]
    name: str | None
    members: list[UserSummary]
    last_message: MessageOut | None
    unread_count: int = Field(description="Messages from others after the caller's read cursor")
    last_seq: int
    created_at: dt.datetime
    last_activity_at: dt.datetime


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    next_cursor: str | None


class MessagePage(BaseModel):
    items: list[MessageOut] = Field(description="In seq order")
    next_cursor: str | None = Field(
        description="Continues in the same direction: older pages (the default), or newer ones "
        "when after_seq was given"
    )


class SearchResults(BaseModel):
    items: list[MessageOut] = Field(description="Newest first")
    next_cursor: str | None = Field(
        description="Older matches; a page may hold fewer than `limit` items and still have one"
    )


class ConversationIn(BaseModel):
    members: list[str] = Field(description="Usernames, besides the caller", examples=[["bob"]])
    name: str | None = Field(default=None, max_length=1000, examples=["Weekend plans"])


class MembersIn(BaseModel):
    members: list[str] = Field(description="Usernames to add", examples=[["carol"]])


@router.post(
    "/conversations",
    status_code=201,
    responses=errors(401, 409, 413),
    description="One other member and no name: the direct conversation of the pair (created once; "
    "asking again answers the same conversation, also with 201). Otherwise a group of at most 500 "
    "members, the caller included.",
)
async def create_conversation(
    body: ConversationIn, services: ServicesDep, user: CurrentUser
) -> ConversationOut:
    return ConversationOut.model_validate(await services.chat.create(user, body.members, body.name))


@router.get("/conversations", responses=errors(401))
async def list_conversations(
    services: ServicesDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> ConversationPage:
    page = await services.chat.conversations(user, before=_decode_cursor(cursor), limit=limit)
    items = [ConversationOut.model_validate(item) for item in page.items]
    next_cursor = _encode_cursor(page.items[-1]) if page.more else None
    return ConversationPage(items=items, next_cursor=next_cursor)


@router.get("/conversations/{conversation_id}", responses=errors(401, 404))
async def get_conversation(
    conversation_id: str, services: ServicesDep, user: CurrentUser
) -> ConversationOut:
    return ConversationOut.model_validate(await services.chat.conversation(user, conversation_id))


@router.get("/conversations/{conversation_id}/messages", responses=errors(401, 404))
async def list_messages(
    conversation_id: str,
    services: ServicesDep,
    user: CurrentUser,
    before_seq: Annotated[int | None, Query(ge=1, le=_MAX_SEQ)] = None,
    after_seq: Annotated[int | None, Query(ge=0, le=_MAX_SEQ)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=64, description="A next_cursor")] = None,
) -> MessagePage:
    """Without after_seq, the latest messages (before before_seq if given); with it, those after."""
    if cursor is not None:
        before_seq, after_seq = _decode_seq_cursor(cursor, before_seq, after_seq)
    page = await services.chat.messages(
        user, conversation_id, before_seq=before_seq, after_seq=after_seq, limit=limit
    )
    next_cursor = None
    if page.more and page.items:
        forward = after_seq is not None
        edge = page.items[-1] if forward else page.items[0]
        next_cursor = _b64(f"{'a' if forward else 'b'}:{edge['seq']}:{before_seq or ''}")
    return MessagePage.model_validate({"items": page.items, "next_cursor": next_cursor})


@router.post(
    "/conversations/{conversation_id}/members",
    responses=errors(401, 404, 409, 413),
    description="Add members to a group; each call is recorded as one `system` message. "
    "Users already in it are kept as they are.",
)
async def add_members(
    conversation_id: str, body: MembersIn, services: ServicesDep, user: CurrentUser
) -> ConversationOut:
    found = await services.chat.add_members(user, conversation_id, body.members)
    return ConversationOut.model_validate(found)


@router.delete(
    "/conversations/{conversation_id}/members/{username}",
    status_code=204,
    responses=errors(401, 403, 404),
    description="Leave a group (your own username), or remove a member (the group's creator only); "
    "recorded as a `system` message.",
)
async def remove_member(
    conversation_id: str, username: str, services: ServicesDep, user: CurrentUser
) -> Response:
    await services.chat.remove_member(user, conversation_id, username)
    return Response(status_code=204)


class PresenceOut(BaseModel):
    status: Literal["online", "offline"]
    last_seen: str | None = Field(description="When the user was last connected (UTC), if known")


@router.get(
    "/presence",
    responses=errors(400, 401),
    description="Presence of the named users (comma-separated usernames, at most 100), by username. "
    "Only users who share a conversation with the caller, and the caller, are answered; other "
    "names are left out, as are unknown ones. A user is offline 15 s after their last connection "
    "closed (a reconnect within that time changes nothing).",
)
async def presence(
    services: ServicesDep,
    user: CurrentUser,
    users: Annotated[str, Query(max_length=4000, examples=["bob,carol"])],
) -> dict[str, PresenceOut]:
    names = [n.strip().lower() for n in users.split(",") if n.strip()]
    if not names or len(names) > PRESENCE_MAX:
        raise BadRequest(f"Name 1-{PRESENCE_MAX} users.", code="invalid_users", field="users")
    found = await services.accounts.by_usernames(names)
    visible = await services.chat.contacts(user.id) | {user.id}
    wanted = {u.id: name for name, u in found.items() if u.id in visible}
    statuses = await services.realtime.presence.lookup(sorted(wanted))
    return {wanted[i]: PresenceOut(**status.view()) for i, status in statuses.items()}


@router.get(
    "/search/messages",
    responses=errors(400, 401, 404),
    description="Text messages of the caller's conversations (all of each conversation's history, "
    "as the caller may read it) that contain every word of `q`, case-insensitively, anywhere, also "
    "inside words: `東京` finds `私は東京に住んでいます`. Newest first. A query made only of "
    "one- or two-character words reads at most the caller's 5,000 newest messages per page; the "
    "cursor continues with older ones.",
)
async def search_messages(
    services: ServicesDep,
    user: CurrentUser,
    q: Annotated[
        str, Query(max_length=MAX_QUERY_CHARS, description="Words, separated by spaces")
    ] = "",
    conversation_id: Annotated[
        str | None, Query(max_length=32, description="Only in this conversation")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=64, description="A next_cursor")] = None,
) -> SearchResults:
    page = await services.chat.search.messages(
        user,
        q,
        conversation_id=conversation_id or None,
        before_id=_decode_search_cursor(cursor),
        limit=limit,
    )
    next_cursor = None if page.next_before is None else _b64(f"s:{page.next_before}")
    return SearchResults.model_validate({"items": page.items, "next_cursor": next_cursor})


def _decode_search_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    kind, _, before = _unb64(cursor).partition(":")
    if kind != "s" or not before.isdigit():
        raise _bad_cursor()
    return min(int(before), _MAX_ID)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:
        raise _bad_cursor() from None


def _bad_cursor() -> BadRequest:
    return BadRequest(
        "The cursor is not one this API gave out.", code="invalid_cursor", field="cursor"
    )


def _encode_cursor(item: dict[str, Any]) -> str:
    at: dt.datetime = item["last_activity_at"]
    micros = (at - _EPOCH) // dt.timedelta(microseconds=1)
    return _b64(f"c:{micros}:{item['id']}")


def _decode_cursor(cursor: str | None) -> tuple[dt.datetime, int] | None:
    if not cursor:
        return None
    parts = _unb64(cursor).split(":")
    if len(parts) != 3 or parts[0] != "c" or not all(p.isdigit() for p in parts[1:]):
        raise _bad_cursor()
    try:
        at = _EPOCH + dt.timedelta(microseconds=int(parts[1]))
    except OverflowError:
        raise _bad_cursor() from None
    return at, min(int(parts[2]), _MAX_ID)


def _decode_seq_cursor(
    cursor: str, before_seq: int | None, after_seq: int | None
) -> tuple[int | None, int | None]:
    """(before_seq, after_seq) to continue from: a cursor takes the place of the one it moves."""
    parts = _unb64(cursor).split(":")
    if len(parts) != 3 or parts[0] not in ("a", "b") or not parts[1].isdigit():
        raise _bad_cursor()
    seq = min(int(parts[1]), _MAX_SEQ)
    bound = min(int(parts[2]), _MAX_SEQ) if parts[2].isdigit() else None
    if parts[0] == "a":  # forward pages keep the original upper bound
        return (bound if bound is not None else before_seq), seq
    return seq, None
