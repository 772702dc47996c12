"""`GET|HEAD /{code}`: the redirect hot path, raw ASGI in front of the FastAPI app.

A cached code is answered from the per-process LRU without awaiting anything but the socket write; the
click is appended to an in-memory buffer. Measured in bench/: FastAPI's router would cost ~4x the CPU.
"""

from __future__ import annotations

import re
import time
from typing import Any, Final

from starlette.types import ASGIApp, Receive, Scope, Send

from plaza.links import store
from plaza.links.cache import MISSING, RedirectCache, Target
from plaza.links.clicks import ClickBuffer
from plaza.links.codes import RESERVED_ALIASES
from plaza.links.useragents import is_bot
from plaza.platform.db import Database
from plaza.platform.errors import error_body, unavailable
from plaza.platform.http import header
from plaza.platform.metrics import Metrics

CODE_PATH_RE: Final = re.compile(r"/([A-Za-z0-9_-]{3,64})")

_NOT_FOUND_HTML: Final = (
    b"<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport "
    b'content="width=device-width,initial-scale=1"><title>Link not found</title>'
    b'<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem">'
    b"<h1>Link not found</h1><p>This short link does not exist, has expired or was removed.</p>"
    b'<p><a href="/">Shorten a link</a></p></body></html>'
)
_NOT_FOUND_JSON: Final = error_body("link_not_found", "No such short link, or it has expired.")


class Redirector:
    def __init__(
        self,
        *,
        cache: RedirectCache,
        clicks: ClickBuffer,
        db: Database,
        metrics: Metrics,
        status: int,
    ) -> None:
        self.cache, self.clicks, self.db = cache, clicks, db
        self.status = status
        permanent = status == 301
        # A permanent redirect may be kept by browsers a little while; a temporary one never is, so
        # each visit reaches us and counts.
        self._cache_control = b"private, max-age=90" if permanent else b"private, no-cache"
        self._observe_found = metrics.request_observer("GET", "/{code}", status)
        self._observe_head = metrics.request_observer("HEAD", "/{code}", status)
        self._observe_missing = metrics.request_observer("GET", "/{code}", 404)

    async def __call__(self, scope: Scope, send: Send, code: str) -> None:
        started = time.perf_counter()
        target = self.cache.local(code)
        try:
            if target is None:
                target = await self.cache.lookup(code)
            if isinstance(target, Target) and not await self._still_serves(target, scope):
                target = MISSING
        except Exception as exc:
            failure = unavailable(exc, where="/{code}")
            if failure is None:
                raise
            await _send(
                send,
                503,
                [
                    (b"content-type", b"application/json"),
                    (b"retry-after", str(failure.retry_after_s).encode()),
                ],
                error_body(failure.code, failure.message),
            )
            return
        if target is MISSING or not isinstance(target, Target):
            await self._not_found(scope, send)
            self._observe_missing(time.perf_counter() - started)
            return
        cache_control = self._cache_control
        if target.max_clicks is not None or target.expires_at is not None:
            cache_control = b"private, no-cache"
        headers = [
            (b"location", target.long_url.encode("latin-1")),
            (b"cache-control", cache_control),
            (b"content-length", b"0"),
        ]
        await _send(send, self.status, headers, b"")
        observe = self._observe_found if scope["method"] == "GET" else self._observe_head
        observe(time.perf_counter() - started)

    async def _still_serves(self, target: Target, scope: Scope) -> bool:
        """Not expired, and (for a max_clicks link) a redirect is left; a GET also counts its click."""
        now = time.time()
        if target.expires_at is not None and target.expires_at <= now:
            return False
        is_get = scope["method"] == "GET"
        referrer, user_agent = _click_headers(scope) if is_get else (None, None)
        if target.max_clicks is not None:
            consume = is_get and not is_bot(user_agent)
            async with self.db.write() if consume else self.db.read() as conn:
                if consume:
                    left = await store.reserve_redirect(conn, target.link_id)
                else:
                    left = await store.has_redirects_left(conn, target.link_id)
            if not left:
                return False
        if is_get:
            client = scope.get("client")
            self.clicks.record(
                target.link_id, now, referrer, user_agent, client[0] if client else None
            )
        return True

    async def _not_found(self, scope: Scope, send: Send) -> None:
        accept = header(scope, b"accept") or ""
        if "application/json" in accept or "text/html" not in accept:
            body, kind = _NOT_FOUND_JSON, b"application/json"
        else:
            body, kind = _NOT_FOUND_HTML, b"text/html; charset=utf-8"
        if scope["method"] == "HEAD":
            body = b""
        await _send(send, 404, [(b"content-type", kind), (b"cache-control", b"no-store")], body)


def _click_headers(scope: Scope) -> tuple[str | None, str | None]:
    referrer = user_agent = None
    for key, value in scope["headers"]:
        if key == b"referer":
            referrer = value.decode("latin-1")
        elif key == b"user-agent":
            user_agent = value.decode("latin-1")
    return referrer, user_agent


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    if body and not any(k == b"content-length" for k, _ in headers):
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RedirectFastPath:
    """Routes `GET|HEAD /{code}` to the redirector; everything else to the app behind it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.redirector: Redirector | None = None  # set once the app has started

    @property
    def state(self) -> Any:
        """The app's state (its platform and services), as on any Starlette app."""
        return getattr(self.app, "state")  # noqa: B009 (an ASGIApp need not have one)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self.redirector is not None
            and scope["method"] in ("GET", "HEAD")
        ):
            match = CODE_PATH_RE.fullmatch(scope["path"])
            if match is not None and match[1].lower() not in RESERVED_ALIASES:
                await self.redirector(scope, send, match[1])
                return
        await self.app(scope, receive, send)
