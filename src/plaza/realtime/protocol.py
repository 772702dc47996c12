"""The WebSocket wire format: JSON objects with a `type`, encoded once however many clients receive them."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import orjson

from plaza.platform.errors import PlazaError

__all__ = [
    "CLOSE_AUTH_FAILED",
    "CLOSE_IDLE",
    "CLOSE_RESTART",
    "CLOSE_TRY_AGAIN",
    "MAX_FRAME_BYTES",
    "FrameError",
    "decode",
    "encode",
    "error_frame",
    "reconnect_frame",
]

MAX_FRAME_BYTES = 64 * 1024  # a chat message is at most 10,000 characters: 40 KB of UTF-8 at worst
# Close codes. 4000-4999 are the application's own; 4401 and 4408 echo HTTP's 401 and 408.
CLOSE_AUTH_FAILED = 4401
CLOSE_IDLE = 4408
CLOSE_TOO_MANY = 4429  # the user already holds PLAZA_WS_MAX_CONNECTIONS_PER_USER connections here
CLOSE_RESTART = 1012  # RFC 6455 "service restart": the server is going away, come back later
CLOSE_TRY_AGAIN = 1013  # RFC 6455 "try again later": this client fell too far behind
# A reconnect storm after a restart is spread over this window (the design's "reconnect with jitter").
RECONNECT_JITTER_MS = 10_000


class FrameError(PlazaError):
    """A frame this connection cannot act on; answered with an error frame, the connection stays open."""

    code = "invalid_frame"


def encode(frame: Mapping[str, Any]) -> str:
    """JSON text of a frame. UTC datetimes (all of ours) are written with a `Z`, as the contract asks."""
    return orjson.dumps(frame, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC).decode()


def decode(raw: str | bytes) -> dict[str, Any]:
    """The frame as a dict with a string `type`, or FrameError saying what is wrong with it."""
    size = len(raw) if isinstance(raw, bytes) else _utf8_size(raw)
    if size > MAX_FRAME_BYTES:
        raise FrameError(
            f"Frames are limited to {MAX_FRAME_BYTES // 1024} KiB.", code="frame_too_large"
        )
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FrameError("The frame is not valid JSON.", code="invalid_json") from None
    if not isinstance(frame, dict):
        raise FrameError("A frame is a JSON object.", code="invalid_frame")
    kind = frame.get("type")
    if kind is None:
        raise FrameError("The frame has no `type`.", code="missing_type", field="type")
    if not isinstance(kind, str):
        raise FrameError("`type` is a string.", code="unknown_type", field="type")
    return frame


def _utf8_size(text: str) -> int:
    # Counting characters is enough unless the text could exceed the limit once encoded.
    return len(text) if len(text) * 4 <= MAX_FRAME_BYTES else len(text.encode())


def error_frame(
    code: str, message: str, *, ref: str | None = None, field: str | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message, "ref": ref}
    if field:
        frame["field"] = field
    return frame


def reconnect_frame(max_after_ms: int = RECONNECT_JITTER_MS) -> dict[str, Any]:
    # Not a secret: jitter only spreads clients out.
    return {"type": "reconnect", "after_ms": random.randint(0, max_after_ms)}  # noqa: S311
