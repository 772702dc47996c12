"""`Idempotency-Key` for every POST: a repeat by the same caller within 24 h replays the first response.

The key row is claimed (inserted) before the request runs, so a concurrent duplicate gets 409 instead of
running twice; only non-5xx responses are kept, so a failure can be retried with the same key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.requests import cookie_parser
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plaza.platform.db import Database, utcnow
from plaza.platform.errors import error_response, response_for, unavailable
from plaza.platform.http import SESSION_COOKIE, header, read_body, replay
from plaza.platform.tables import idempotency_keys as keys

KEY_TTL = dt.timedelta(hours=24)
_KEY_RE = re.compile(
    r"^[\x21-\x7e][\x20-\x7e]{0,254}$"
)  # printable ASCII, not starting with a space


def caller_of(scope: Scope) -> str:
    """The token's hash when one is presented (header, else session cookie), else the client address."""
    auth = header(scope, b"authorization") or ""
    if auth.lower().startswith("bearer "):
        return "t:" + hashlib.sha256(auth[7:].strip().encode()).hexdigest()
    session = (
        cookie_parser(header(scope, b"cookie") or "").get(SESSION_COOKIE) if not auth else None
    )
    if session:
        return "t:" + hashlib.sha256(session.encode()).hexdigest()
    client = scope.get("client")
    return "ip:" + (client[0] if client else "unknown")


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = header(scope, b"idempotency-key") if scope["type"] == "http" else None
        if key is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if not _KEY_RE.match(key):
            response = error_response(
                400,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1-255 printable ASCII characters.",
            )
            await response(scope, receive, send)
            return
        db: Database = scope["app"].state.platform.db
        body = await read_body(scope, receive, limit=1 << 30)  # already bounded upstream
        caller = caller_of(scope)
        digest = hashlib.sha256(
            b"\0".join([scope["path"].encode(), scope.get("query_string", b""), body])
        ).hexdigest()
        try:
            stored = await _claim(db, caller, key, digest)
        except Exception as exc:  # outside the app's error handlers: answered as they would
            stored = response_for(exc, scope["path"])
        if stored is not None:
            await stored(scope, receive, send)
            return
        captured = _Capture(send)
        try:
            await self.app(scope, replay(body, receive), captured.send)
        finally:
            await _settle_answered(db, caller, key, captured, scope["path"])


class _Capture:
    def __init__(self, send: Send) -> None:
        self._send = send
        self.status: int | None = None
        self.content_type: str | None = None
        self.body = bytearray()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            for name, value in message.get("headers", []):
                if name.lower() == b"content-type":
                    self.content_type = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
        await self._send(message)


async def _claim(db: Database, caller: str, key: str, digest: str) -> ASGIApp | None:
    """Claim the key for this request; or the response the caller must get instead of running it."""
    now = utcnow()
    where = (keys.c.caller == caller) & (keys.c.key == key)
    row_values = {"caller": caller, "key": key, "request_hash": digest, "created_at": now}
    try:
        async with db.write() as conn:
            await conn.execute(delete(keys).where(where & (keys.c.created_at < now - KEY_TTL)))
            await conn.execute(insert(keys).values(**row_values))
        return None
    except IntegrityError:
        pass
    async with db.read() as conn:
        row = (await conn.execute(select(keys).where(where))).one_or_none()
    if row is None:  # the other request failed and released the key meanwhile
        return error_response(
            409, "idempotency_in_progress", "Retry: a request with this key just finished."
        )
    if row.request_hash != digest:
        return error_response(
            409, "idempotency_key_reused", "This Idempotency-Key was used with a different request."
        )
    if row.status_code is None:
        return error_response(
            409,
            "idempotency_in_progress",
            "A request with this Idempotency-Key is still in progress.",
        )
    return Response(
        bytes(row.body or b""),
        status_code=row.status_code,
        media_type=row.content_type,
        headers={"Idempotent-Replayed": "true"},
    )


async def _settle_answered(
    db: Database, caller: str, key: str, captured: _Capture, path: str
) -> None:
    """Settle the key after the response went out. With the database down or every connection busy
    the key stays claimed until it expires (24 h): repeats get 409 `idempotency_in_progress`, never a
    second run. That is logged; raising would only add a stack trace to a response already sent."""
    try:
        await _settle(db, caller, key, captured)
    except Exception as exc:
        if captured.status is None or unavailable(exc, where=f"{path} (idempotency key)") is None:
            raise


async def _settle(db: Database, caller: str, key: str, captured: _Capture) -> None:
    where = (keys.c.caller == caller) & (keys.c.key == key)
    async with db.write() as conn:
        if captured.status is None or captured.status >= 500:
            await conn.execute(delete(keys).where(where))
        else:
            await conn.execute(
                update(keys)
                .where(where)
                .values(
                    status_code=captured.status,
                    content_type=captured.content_type,
                    body=bytes(captured.body),
                )
            )


async def purge_expired(db: Database) -> int:
    async with db.write() as conn:
        result = await conn.execute(delete(keys).where(keys.c.created_at < utcnow() - KEY_TTL))
    return int(result.rowcount or 0)
