"""Chat over the WebSocket: the handlers of `send`, `delivered`, `read`, `typing` and `sync` frames.

The connection that sent a message gets its `ack` (carrying the whole message) and no `message` frame
for it; every other connection of every member, the sender's other devices included, gets `message`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from plaza.chat.service import ChatService
from plaza.realtime.hub import RealtimeHub
from plaza.realtime.protocol import FrameError, error_frame
from plaza.realtime.session import Session

__all__ = ["register"]

ConversationId = str | int  # ids are strings in JSON; a number is accepted too


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore")  # `type` and fields a newer client adds


class SendFrame(_Frame):
    client_msg_id: str
    conversation_id: ConversationId
    content: str
    message_type: str = "text"


class CursorFrame(_Frame):
    conversation_id: ConversationId
    seq: Annotated[int, Field(ge=0)]


class TypingFrame(_Frame):
    conversation_id: ConversationId
    state: Literal["start", "stop"]


class SyncFrame(_Frame):
    cursors: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)


F = TypeVar("F", bound=_Frame)
Handler = Callable[[ChatService, Session, dict[str, Any]], Awaitable[None]]


def register(hub: RealtimeHub, chat: ChatService) -> None:
    handlers: dict[str, Handler] = {
        "send": on_send,
        "delivered": on_delivered,
        "read": on_read,
        "typing": on_typing,
        "sync": on_sync,
    }
    for frame_type, handler in handlers.items():
        hub.register(frame_type, _bound(handler, chat))


def _bound(
    handler: Handler, chat: ChatService
) -> Callable[[Session, dict[str, Any]], Awaitable[None]]:
    async def handle(session: Session, frame: dict[str, Any]) -> None:
        await handler(chat, session, frame)

    return handle


def _parse(model: type[F], frame: dict[str, Any]) -> F:
    try:
        return model.model_validate(frame)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        if first["type"] == "missing":
            raise FrameError(f"{field} is required.", code="missing_field", field=field) from None
        raise FrameError(f"{field}: {first['msg']}", code="invalid_field", field=field) from None


async def on_send(chat: ChatService, session: Session, frame: dict[str, Any]) -> None:
    sent = _parse(SendFrame, frame)
    message = await chat.send(
        session.user,
        sent.conversation_id,
        sent.client_msg_id,
        sent.content,
        sent.message_type,
        origin=session.id,
    )
    # Only now: the message is committed (chat.send returns after the transaction).
    await session.reply({"type": "ack", "client_msg_id": sent.client_msg_id, "message": message})


async def on_delivered(chat: ChatService, session: Session, frame: dict[str, Any]) -> None:
    cursor = _parse(CursorFrame, frame)
    await chat.activity.mark_delivered(
        session.user, session.device_id, cursor.conversation_id, cursor.seq
    )


async def on_read(chat: ChatService, session: Session, frame: dict[str, Any]) -> None:
    cursor = _parse(CursorFrame, frame)
    await chat.activity.mark_read(
        session.user, cursor.conversation_id, cursor.seq, origin=session.id
    )


async def on_typing(chat: ChatService, session: Session, frame: dict[str, Any]) -> None:
    typing = _parse(TypingFrame, frame)
    await chat.activity.typing(session.user, typing.conversation_id, typing.state)


async def on_sync(chat: ChatService, session: Session, frame: dict[str, Any]) -> None:
    """Every message the device lacks, in seq order per conversation; then `synced`."""
    request = _parse(SyncFrame, frame)
    plan = await chat.activity.plan_sync(session.user, session.device_id, request.cursors)
    for unknown in plan.unknown:
        await session.reply(
            error_frame(
                "conversation_not_found", "No such conversation.", field=f"cursors.{unknown[:32]}"
            )
        )
    async for page in chat.activity.replay(plan):
        for message in page:
            await session.reply({"type": "message", "message": message})
    await session.reply({"type": "synced", "cursors": plan.cursors, "more": plan.more})
