"""`Idempotency-Key` for every POST: a repeat by the same caller within 24 h replays the first response.

The key row is claimed (inserted) before the request runs, so a concurrent duplicate gets 409 instead of
running twice; only non-5xx responses are kept, so a failure can be retried with the same key. The
response is stored before it is sent: a repeat made the moment the answer arrives is replayed.

A claim is a lease, as a lock with a timeout: a process that dies (SIGKILL, OOM, power) between the claim
and storing the response, or that cannot release the claim after a 5xx (database down, pool busy), would
otherwise leave the key "in progress" for its whole TTL. A claim older than `CLAIM_LEASE` without a
response is abandoned, and the next request with the same key and body takes it over: one conditional
UPDATE that renews the claim time, so of several retries racing exactly one wins and the others get 409.
The claim time is also the claim's fence: a request settles the key only while it holds the claim it
made, so one that outlived its lease cannot store over, or release, its successor's. What a lease cannot
know is whether a dead process's work had committed: if it died after its commit and before storing the
response, the retry that takes over runs the request again (as a retry without a key would).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

import structlog
from sqlalchemy import ColumnElement, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.requests import cookie_parser
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plaza.platform.clock import Clock
from plaza.platform.db import Database
from plaza.platform.errors import error_response, response_for, unavailable
from plaza.platform.http import SESSION_COOKIE, header, read_body, replay
from plaza.platform.tables import idempotency_keys as keys

log = structlog.get_logger("plaza.idempotency")

KEY_TTL = dt.timedelta(hours=24)
# Comfortably longer than a request can run. Its database work is bounded: a wait for a pooled
# connection fails after PLAZA_DATABASE_POOL_TIMEOUT_S (5 s), a PostgreSQL statement after 15 s
# (asyncpg's command_timeout), an SQLite write's wait for the lock after 10 s (busy_timeout), a Redis
# call after 1 s; a POST runs a few such steps. The request body is read before the claim, so a slow
# upload does not count. A request past the lease may run a second time (once taken over), but its late
# answer never replaces the successor's.
CLAIM_LEASE = dt.timedelta(seconds=60)
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


def request_digest(path: str, query_string: bytes, body: bytes) -> str:
    """What makes two requests with one key the same request."""
    return hashlib.sha256(b"\0".join([path.encode(), query_string, body])).hexdigest()


@dataclass(frozen=True)
class _Claim:
    caller: str
    key: str
    at: dt.datetime  # when this request claimed the key: the lease's start and the claim's fence

    @property
    def row(self) -> ColumnElement[bool]:
        return (keys.c.caller == self.caller) & (keys.c.key == self.key)

    @property
    def held(self) -> ColumnElement[bool]:
        """The key's row while this claim still holds it (not taken over since)."""
        return self.row & (keys.c.created_at == self.at)


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
        platform = scope["app"].state.platform
        db: Database = platform.db
        body = await read_body(scope, receive, limit=1 << 30)  # already bounded upstream
        claim = _Claim(caller_of(scope), key, _now(platform.clock))
        digest = request_digest(scope["path"], scope.get("query_string", b""), body)
        try:
            stored = await _claim(db, claim, digest)
        except Exception as exc:  # outside the app's error handlers: answered as they would
            stored = response_for(exc, scope["path"])
        if stored is not None:
            await stored(scope, receive, send)
            return
        captured = _Capture()
        try:
            await self.app(scope, replay(body, receive), captured.send)
        finally:
            await _settle_answered(db, claim, captured, scope["path"])
        for message in captured.messages:
            await send(message)


class _Capture:
    """The app's response, held back until the key is settled: a client that repeats its request the
    moment it has the answer must find it stored, not the claim still in progress. API responses are
    small; the request body is held whole already."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
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
        self.messages.append(message)


async def _claim(db: Database, claim: _Claim, digest: str) -> ASGIApp | None:
    """Claim the key for this request; or the response the caller must get instead of running it."""
    row_values = {
        "caller": claim.caller,
        "key": claim.key,
        "request_hash": digest,
        "created_at": claim.at,
    }
    try:
        async with db.write() as conn:
            await conn.execute(
                delete(keys).where(claim.row & (keys.c.created_at < claim.at - KEY_TTL))
            )
            await conn.execute(insert(keys).values(**row_values))
        return None
    except IntegrityError:
        pass
    async with db.read() as conn:
        row = (await conn.execute(select(keys).where(claim.row))).one_or_none()
    if row is None:  # the other request failed and released the key meanwhile
        return error_response(
            409, "idempotency_in_progress", "Retry: a request with this key just finished."
        )
    if row.request_hash != digest:
        return error_response(
            409, "idempotency_key_reused", "This Idempotency-Key was used with a different request."
        )
    if row.status_code is None:
        if row.created_at < claim.at - CLAIM_LEASE and await _take_over(db, claim, digest):
            return None
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


async def _take_over(db: Database, claim: _Claim, digest: str) -> bool:
    """Renew an abandoned claim as this request's. The condition is checked and the claim time moved
    in one statement (PostgreSQL re-checks it on the row once a racing UPDATE commits; SQLite runs
    one writer at a time), so of several retries racing exactly one gets True."""
    abandoned = (
        claim.row
        & (keys.c.request_hash == digest)
        & keys.c.status_code.is_(None)
        & (keys.c.created_at < claim.at - CLAIM_LEASE)
    )
    async with db.write() as conn:
        result = await conn.execute(update(keys).where(abandoned).values(created_at=claim.at))
    return result.rowcount == 1


async def _settle_answered(db: Database, claim: _Claim, captured: _Capture, path: str) -> None:
    """Settle the key before the response goes out. With the database down or every connection busy
    the key stays claimed: repeats get 409 `idempotency_in_progress`, never a second run, until the
    claim's lease lapses and a repeat takes it over. That is logged, and the client still gets the
    answer: what it asked for was done."""
    try:
        await _settle(db, claim, captured)
    except Exception as exc:
        if captured.status is None:
            raise
        if unavailable(exc, where=f"{path} (idempotency key)") is None:
            log.exception("idempotency key not settled", path=path, status=captured.status)


async def _settle(db: Database, claim: _Claim, captured: _Capture) -> None:
    async with db.write() as conn:
        if captured.status is None or captured.status >= 500:
            await conn.execute(delete(keys).where(claim.held))
        else:
            await conn.execute(
                update(keys)
                .where(claim.held)
                .values(
                    status_code=captured.status,
                    content_type=captured.content_type,
                    body=bytes(captured.body),
                )
            )


async def purge_expired(db: Database, clock: Clock) -> int:
    cutoff = _now(clock) - KEY_TTL
    async with db.write() as conn:
        result = await conn.execute(delete(keys).where(keys.c.created_at < cutoff))
    return int(result.rowcount or 0)


def _now(clock: Clock) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock.time(), dt.UTC)
