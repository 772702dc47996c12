"""Offline push, the sending side: after a message is stored, one event on the durable `push` stream
names its recipients that have no connection anywhere; the notifier (`notifier.py`) delivers it.

Nothing here may slow or break a send: recipients connected to this process are passed over at once,
the check of the others and the append run in a task of their own after the commit, and a stream
outage is logged and forgotten. Pushes are best effort: a message whose push was
lost still reaches every device on its next sync.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import Any, Protocol

import orjson
import structlog

from plaza.platform.bus import Streams
from plaza.platform.kv import PortUnavailable

__all__ = ["PUSH_STREAM", "OfflinePush", "Presence", "decode_event"]

log = structlog.get_logger("plaza.chat.push")

PUSH_STREAM = "push"
PREVIEW_CHARS = 100
STREAM_MAXLEN = 100_000  # events kept while no notifier runs; the oldest are dropped beyond
MAX_IN_FLIGHT = 1_000  # appends waiting on a slow stream; beyond, pushes are dropped, not piled up


class Presence(Protocol):
    """The realtime layer, as offline push sees it."""

    def has_local(self, user_id: int) -> bool:
        """Whether the user has a connection on this process (known without a round trip)."""

    async def connected(self, user_ids: Collection[int]) -> set[int]: ...


class OfflinePush:
    def __init__(self, *, streams: Streams, presence: Presence) -> None:
        self._streams, self._presence = streams, presence
        self._tasks: set[asyncio.Task[None]] = set()

    def message_stored(self, message: Mapping[str, Any], recipients: Collection[int]) -> None:
        """Queue the push of a committed message (its client view) to whichever recipients are offline.

        Recipients connected to this process are known at once; only the others (none, when every
        member is online here) cost a task and a look at the session registry."""
        away = [user_id for user_id in recipients if not self._presence.has_local(user_id)]
        if not away:
            return
        if len(self._tasks) >= MAX_IN_FLIGHT:
            log.warning("offline push dropped: too many waiting", message_id=message["id"])
            return
        task = asyncio.create_task(self._enqueue(message, away), name="push-enqueue")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _enqueue(self, message: Mapping[str, Any], recipients: list[int]) -> None:
        try:
            online = await self._presence.connected(recipients)
            offline = [user_id for user_id in recipients if user_id not in online]
            if offline:
                event = encode_event(message, offline)
                await self._streams.add(PUSH_STREAM, event, maxlen=STREAM_MAXLEN)
        except PortUnavailable as exc:
            log.warning("offline push not queued", message_id=message["id"], error=str(exc))
        except Exception:
            log.exception("offline push not queued", message_id=message["id"])

    async def aclose(self) -> None:
        """Let queued appends finish (on shutdown)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)


def encode_event(message: Mapping[str, Any], recipients: list[int]) -> bytes:
    return orjson.dumps(
        {
            "message_id": message["id"],
            "conversation_id": message["conversation_id"],
            "seq": message["seq"],
            "sender": message["sender"],
            "preview": message["content"][:PREVIEW_CHARS],
            "recipients": recipients,
        }
    )


def decode_event(payload: bytes) -> tuple[dict[str, Any], list[int]]:
    """(what every recipient's notification shares, recipient ids); ValueError if malformed."""
    try:
        event = orjson.loads(payload)
        recipients = [int(user_id) for user_id in event.pop("recipients")]
        shared = {key: event[key] for key in ("conversation_id", "message_id", "seq", "sender")}
        shared["preview"] = str(event["preview"])
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"malformed push event: {exc}") from exc
    return shared, recipients
