"""Short links' logic: create, read, edit, delete, list, stats, QR, and the expiry sweep."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import segno
import structlog

from plaza.accounts.service import AccountsService, User
from plaza.links import store
from plaza.links.cache import RedirectCache
from plaza.links.codes import ALIAS_RE, RESERVED_ALIASES, CodeAllocator
from plaza.links.urls import InvalidUrl, normalise_url
from plaza.platform.batching import Batcher
from plaza.platform.clock import Clock
from plaza.platform.db import Database
from plaza.platform.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
)
from plaza.platform.kv import PortUnavailable
from plaza.platform.ratelimit import RateLimiter
from plaza.settings import Rate, Settings

log = structlog.get_logger("plaza.links")
MAX_GENERATED_ATTEMPTS = 32  # a generated code collides only with a custom alias of 7 base62 chars
STATS_DAYS = 30
STATS_TOP = 10
SWEEP_BATCH = 500


@dataclass(frozen=True)
class Link:
    id: int
    code: str
    long_url: str
    owner_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime | None
    max_clicks: int | None
    redirects_served: int
    clicks: int
    bot_clicks: int
    last_clicked_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Link:
        fields = cls.__dataclass_fields__
        return cls(**{name: getattr(row, name) for name in fields})

    def status(self, now: dt.datetime) -> str:
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.max_clicks is not None and self.redirects_served >= self.max_clicks:
            return "exhausted"
        return "active"


@dataclass(frozen=True)
class NewLink:
    long_url: str
    alias: str | None = None
    expires_at: dt.datetime | None = None
    max_clicks: int | None = None


class LinksService:
    def __init__(
        self,
        *,
        db: Database,
        cache: RedirectCache,
        allocator: CodeAllocator,
        limiter: RateLimiter,
        accounts: AccountsService,
        settings: Settings,
        clock: Clock,
    ) -> None:
        self.db, self.cache, self.allocator = db, cache, allocator
        self.limiter, self.accounts, self.clock = limiter, accounts, clock
        self.base_url = settings.base_url
        self.create_rate = Rate.parse(settings.create_rate)
        self.blocked_hosts = settings.blocked_host_set()
        base_host = urlsplit(settings.base_url).hostname or ""
        self.own_hosts = frozenset({base_host.lower()})
        # Group commit: the creates that arrive while one insert is in flight share the next
        # transaction; each still hears whether its own code was free.
        self._inserts: Batcher[dict[str, Any], int | None] = Batcher(self._insert)

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)

    def short_url(self, code: str) -> str:
        return f"{self.base_url}/{code}"

    async def create(self, new: NewLink, *, owner: User | None, client_ip: str) -> Link:
        await self._check_create_rate(owner, client_ip)
        long_url = self._valid_url(new.long_url)
        now = self.now()
        self._check_expiry(new.expires_at, now)
        if new.max_clicks is not None and new.max_clicks < 1:
            raise BadRequest(
                "max_clicks must be at least 1.", code="invalid_max_clicks", field="max_clicks"
            )
        values = {
            "long_url": long_url,
            "owner_id": owner.id if owner else None,
            "created_at": now,
            "updated_at": now,
            "expires_at": new.expires_at,
            "max_clicks": new.max_clicks,
        }
        if new.alias is not None:
            code = self._valid_alias(new.alias)
            link_id = await self._inserts.submit({"code": code, "is_custom": True, **values})
            if link_id is None:
                raise Conflict("That alias is taken.", code="alias_taken", field="custom_alias")
            # The alias may have been looked up (and cached as unknown) before it existed. A generated
            # code was never handed out, so only a scanner guessing it in the last minute could have.
            await self.cache.invalidate(code)
        else:
            code, link_id = await self._insert_generated(values)
        owner_id = owner.id if owner else None
        return Link(link_id, code, long_url, owner_id, now, now, new.expires_at,
                    new.max_clicks, 0, 0, 0, None)  # fmt: skip

    async def _insert_generated(self, values: dict[str, Any]) -> tuple[str, int]:
        for _ in range(MAX_GENERATED_ATTEMPTS):
            code = await self.allocator.next_code()
            link_id = await self._inserts.submit({"code": code, "is_custom": False, **values})
            if link_id is not None:
                return code, link_id
            log.info("generated code taken by an alias; skipping it", code=code)
        raise RuntimeError("could not find a free generated code")

    async def _insert(self, rows: Sequence[dict[str, Any]]) -> list[int | None]:
        async with self.db.write() as conn:
            return await store.insert_links(conn, rows)

    async def _check_create_rate(self, owner: User | None, client_ip: str) -> None:
        key = f"create:u:{owner.id}" if owner else f"create:ip:{client_ip}"
        try:
            decision = await self.limiter.hit(key, self.create_rate)
        except PortUnavailable:
            return  # fail open: a rate limiter outage must not stop creates
        if not decision.allowed:
            raise RateLimited(
                "Too many links created; slow down.", retry_after_s=decision.retry_after_s
            )

    def _valid_url(self, raw: str) -> str:
        try:
            return normalise_url(raw, own_hosts=self.own_hosts, blocked_hosts=self.blocked_hosts)
        except InvalidUrl as exc:
            raise BadRequest(exc.message, code=exc.code, field="long_url") from None

    @staticmethod
    def _valid_alias(alias: str) -> str:
        if alias.lower() in RESERVED_ALIASES:
            raise BadRequest("That alias is reserved.", code="alias_reserved", field="custom_alias")
        if not ALIAS_RE.match(alias):
            raise BadRequest(
                "Aliases are 3-64 characters of A-Z, a-z, 0-9, _ and -.",
                code="invalid_alias",
                field="custom_alias",
            )
        return alias

    @staticmethod
    def _check_expiry(expires_at: dt.datetime | None, now: dt.datetime) -> None:
        if expires_at is not None and expires_at <= now:
            raise BadRequest(
                "expires_at must be in the future.", code="invalid_expiry", field="expires_at"
            )

    async def get(self, code: str) -> Link:
        async with self.db.read() as conn:
            row = await store.link_by_code(conn, code)
        if row is None or row.deleted_at is not None:
            raise NotFound("No such short link.", code="link_not_found")
        return Link.from_row(row)

    async def owned(self, code: str, user: User | None) -> Link:
        """The link, if `user` owns it: the one access check for changing a link."""
        if user is None:
            raise Unauthorized()
        link = await self.get(code)
        if link.owner_id != user.id:
            raise Forbidden("Only the link's owner may change it.", code="not_owner")
        return link

    async def update(self, code: str, user: User | None, changes: dict[str, Any]) -> Link:
        link = await self.owned(code, user)
        values: dict[str, Any] = {"updated_at": self.now()}
        if "long_url" in changes:
            if changes["long_url"] is None:
                raise BadRequest("long_url cannot be null.", code="invalid_url", field="long_url")
            values["long_url"] = self._valid_url(changes["long_url"])
        if "expires_at" in changes:
            self._check_expiry(changes["expires_at"], values["updated_at"])
            values["expires_at"] = changes["expires_at"]
            values["expired_swept_at"] = None
        if "max_clicks" in changes:
            if changes["max_clicks"] is not None and changes["max_clicks"] < 1:
                raise BadRequest(
                    "max_clicks must be at least 1.", code="invalid_max_clicks", field="max_clicks"
                )
            values["max_clicks"] = changes["max_clicks"]
        async with self.db.write() as conn:
            await store.update_link(conn, link.id, **values)
            row = await store.link_by_code(conn, code)
        await self.cache.invalidate(code)
        return Link.from_row(row)

    async def delete(self, code: str, user: User | None) -> None:
        link = await self.owned(code, user)
        async with self.db.write() as conn:
            await store.update_link(conn, link.id, deleted_at=self.now())
        await self.cache.invalidate(code)

    async def list_owned(
        self, user: User, *, before_id: int | None, limit: int, query: str | None
    ) -> list[Link]:
        async with self.db.read() as conn:
            rows = await store.links_of_owner(
                conn, user.id, before_id=before_id, limit=limit, query=query
            )
        return [Link.from_row(r) for r in rows]

    async def stats(self, code: str) -> dict[str, Any]:
        link = await self.get(code)
        since = self.now().date() - dt.timedelta(days=STATS_DAYS - 1)
        async with self.db.read() as conn:
            daily = await store.daily_clicks(conn, link.id, since)
            referrers = await store.top_breakdown(conn, "referrer", link.id, STATS_TOP)
            devices = await store.top_breakdown(conn, "device", link.id, STATS_TOP)
            countries = await store.top_breakdown(conn, "country", link.id, STATS_TOP)
        return {
            "link": link,
            "daily": [{"date": day.isoformat(), "clicks": n} for day, n in daily],
            "top_referrers": [{"referrer": r, "clicks": n} for r, n in referrers],
            "devices": [{"device": d, "clicks": n} for d, n in devices],
            "countries": [{"country": c, "clicks": n} for c, n in countries],
        }

    async def qr(self, code: str, fmt: str) -> bytes:
        link = await self.get(code)
        qr = segno.make(self.short_url(link.code), error="m")
        out = io.BytesIO()
        if fmt == "svg":
            qr.save(out, kind="svg", scale=8, xmldecl=True)
        else:
            qr.save(out, kind="png", scale=8)
        return out.getvalue()

    async def sweep_expired(self) -> int:
        """Evict links that expired since the last sweep from every cache; rows stay for their stats."""
        now, swept = self.now(), 0
        while True:
            async with self.db.read() as conn:
                rows = await store.newly_expired(conn, now, SWEEP_BATCH)
            if not rows:
                return swept
            for row in rows:
                await self.cache.invalidate(row.code)
            async with self.db.write() as conn:
                await store.mark_swept(conn, [int(r.id) for r in rows], now)
            swept += len(rows)
