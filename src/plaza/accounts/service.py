"""Accounts' logic: registration, password login with failure limits, opaque bearer tokens."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from plaza.accounts import store
from plaza.platform.batching import Batcher
from plaza.platform.clock import Clock
from plaza.platform.db import AnyRow, Database
from plaza.platform.errors import BadRequest, Conflict, NotFound, RateLimited, Unauthorized
from plaza.platform.kv import KV, PortUnavailable
from plaza.platform.localcache import LocalCache
from plaza.platform.pubsub import PubSub
from plaza.platform.ratelimit import RateLimiter
from plaza.settings import Rate, Settings

USERNAME_RE = re.compile(r"^[a-z0-9_]{3,32}$")
# A revoked token is refused at once: its kv entry is deleted and every process forgets it (pub/sub).
# The TTL bounds what an outage loses, and how long a changed display name takes to show.
TOKEN_CACHE_TTL_S = 60
LOCAL_TOKENS = 50_000  # per process
_BAD_LOGIN = "Wrong username or password."


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    created_at: dt.datetime

    def summary(self) -> dict[str, str]:
        return {"id": str(self.id), "username": self.username, "display_name": self.display_name}

    @classmethod
    def from_row(cls, row: Any) -> User:
        return cls(int(row.id), row.username, row.display_name, row.created_at)


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_at: dt.datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AccountsService:
    def __init__(
        self,
        db: Database,
        kv: KV,
        pubsub: PubSub,
        limiter: RateLimiter,
        settings: Settings,
        clock: Clock,
    ) -> None:
        self.db = db
        self.kv = kv
        self.limiter = limiter
        self.clock = clock
        self.token_ttl = dt.timedelta(days=settings.token_ttl_days)
        self.per_user_failures = Rate.parse(settings.login_failures_per_user)
        self.per_ip_failures = Rate.parse(settings.login_failures_per_ip)
        self._hasher = PasswordHasher()
        # Verified against when the user does not exist, so both cases take the same time.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))
        self._tokens: Batcher[str, tuple[AnyRow, dt.datetime] | None] = Batcher(
            self._look_up_tokens
        )
        # Token digest -> (user, expiry): a hit spares every authenticated request a round trip.
        self._held = LocalCache[str, tuple[User, float]](
            channel="accounts:tokens",
            parse=str,
            pubsub=pubsub,
            clock=clock,
            size=LOCAL_TOKENS,
            ttl_s=TOKEN_CACHE_TTL_S,
        )

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)

    async def register(self, username: str, password: str, display_name: str | None) -> User:
        name = username.strip().lower()
        if not USERNAME_RE.match(name):
            raise BadRequest(
                "Usernames are 3-32 characters of a-z, 0-9 and _.",
                code="invalid_username",
                field="username",
            )
        if not 8 <= len(password) <= 256:
            raise BadRequest(
                "Passwords are 8-256 characters.", code="invalid_password", field="password"
            )
        shown = (display_name or "").strip() or name
        if len(shown) > 64:
            raise BadRequest(
                "Display names are at most 64 characters.",
                code="invalid_display_name",
                field="display_name",
            )
        hashed = await anyio.to_thread.run_sync(self._hasher.hash, password)
        now = self.now()
        try:
            async with self.db.write() as conn:
                user_id = await store.insert_user(
                    conn, username=name, display_name=shown, password_hash=hashed, now=now
                )
        except store.UsernameTaken:
            raise Conflict(
                "That username is taken.", code="username_taken", field="username"
            ) from None
        return User(user_id, name, shown, now)

    async def login(self, username: str, password: str, client_ip: str) -> IssuedToken:
        name = username.strip().lower()
        limits = (
            (f"login-fail:u:{name}", self.per_user_failures),
            (f"login-fail:ip:{client_ip}", self.per_ip_failures),
        )
        for key, rate in limits:
            decision = await self._limit(key, rate, consume=False)
            if decision is not None:
                raise RateLimited(
                    "Too many failed logins; try again later.", retry_after_s=decision
                )
        async with self.db.read() as conn:
            row = await store.user_by_username(conn, name)
        stored_hash = row.password_hash if row is not None else self._dummy_hash
        if not await anyio.to_thread.run_sync(self._verify, stored_hash, password) or row is None:
            for key, rate in limits:
                await self._limit(key, rate, consume=True)
            raise Unauthorized(_BAD_LOGIN, code="invalid_credentials")
        return await self._issue_token(int(row.id))

    async def _limit(self, key: str, rate: Rate, *, consume: bool) -> int | None:
        """Seconds to wait when the limit is reached, else None. A rate limiter outage fails open."""
        try:
            decision = await (
                self.limiter.hit(key, rate) if consume else self.limiter.peek(key, rate)
            )
        except PortUnavailable:
            return None
        return None if decision.allowed else decision.retry_after_s

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(stored_hash, password))
        except (VerificationError, InvalidHashError):
            return False

    async def _issue_token(self, user_id: int) -> IssuedToken:
        token = secrets.token_urlsafe(32)
        now = self.now()
        expires_at = now + self.token_ttl
        async with self.db.write() as conn:
            await store.insert_token(
                conn, token_hash=token_hash(token), user_id=user_id, now=now, expires_at=expires_at
            )
        return IssuedToken(token, expires_at)

    async def authenticate(self, token: str) -> User:
        digest = token_hash(token)
        held = self._held.get(digest)
        if held is not None and held[1] > self.clock.time():
            return held[0]
        generation = self._held.generation
        user, expires_at = await self._look_up(digest)
        self._held.put(digest, (user, expires_at), generation)
        return user

    async def _look_up(self, digest: str) -> tuple[User, float]:
        cache_key = f"tok:{digest}"
        try:
            cached = await self.kv.get(cache_key)
        except PortUnavailable:
            cached = None
        if cached is not None:
            data = orjson.loads(cached)
            if data["exp"] > self.clock.time():
                created_at = dt.datetime.fromisoformat(data["c"])
                return User(data["id"], data["u"], data["d"], created_at), data["exp"]
        found = await self._tokens.submit(digest)
        if found is None:
            raise Unauthorized("The token is invalid, expired or revoked.", code="invalid_token")
        row, expires_at = found
        user = User.from_row(row)
        entry = {
            "id": user.id,
            "u": user.username,
            "d": user.display_name,
            "c": user.created_at.isoformat(),
            "exp": expires_at.timestamp(),
        }
        with contextlib.suppress(PortUnavailable):
            await self.kv.set(cache_key, orjson.dumps(entry), ttl_s=TOKEN_CACHE_TTL_S)
        return user, expires_at.timestamp()

    async def listen(self) -> None:
        """Forget the tokens other processes revoked; runs until cancelled."""
        await self._held.listen()

    async def _look_up_tokens(
        self, digests: Sequence[str]
    ) -> list[tuple[AnyRow, dt.datetime] | None]:
        """Tokens not in the cache, many at once when many arrive together (a reconnect wave)."""
        async with self.db.read() as conn:
            found = await store.users_for_tokens(conn, set(digests), self.now())
        return [found.get(d) for d in digests]

    async def revoke(self, token: str) -> None:
        digest = token_hash(token)
        async with self.db.write() as conn:
            await store.revoke_token(conn, digest, self.now())
        with contextlib.suppress(PortUnavailable):  # else the entry expires within its TTL
            await self.kv.delete(f"tok:{digest}")
        await self._held.invalidate([digest])  # after the kv: others must not refill from it

    async def by_username(self, username: str) -> User:
        async with self.db.read() as conn:
            row = await store.user_by_username(conn, username)
        if row is None:
            raise NotFound("No such user.", code="user_not_found")
        return User.from_row(row)

    async def by_usernames(self, usernames: list[str]) -> dict[str, User]:
        """The users found, by their (lower-case) username; names that cannot exist are skipped."""
        names = sorted(_possible(usernames))
        async with self.db.read() as conn:
            rows = await store.users_by_usernames(conn, names)
        return {r.username: User.from_row(r) for r in rows}

    async def by_ids(self, ids: list[int]) -> dict[int, User]:
        async with self.db.read() as conn:
            rows = await store.users_by_ids(conn, ids)
        return {int(r.id): User.from_row(r) for r in rows}


def _possible(usernames: list[str]) -> set[str]:
    # Only well-formed names reach SQL: PostgreSQL refuses text with NUL bytes outright.
    return {n.strip().lower() for n in usernames if USERNAME_RE.match(n.strip().lower())}
