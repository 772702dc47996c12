"""`GET /api/v1/feed` with a bearer token: the feed read hot path, in front of the FastAPI app.

It answers what the route in api.py would, from the same service, inside the same request context
(request id, access log, latency metric by route template), but without FastAPI's middleware stack,
router, dependency resolution and response-model validation, which cost as much CPU as the read itself
(bench/feed.py). Anything else (a session cookie, no credentials, a query string out of the ordinary)
goes on to the route, which validates it and answers with the contract's errors: one place decides
those.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from plaza.platform.errors import response_for
from plaza.platform.http import RequestContextMiddleware, header
from plaza.platform.metrics import Metrics

if TYPE_CHECKING:
    from plaza.bootstrap import Services

__all__ = ["FeedFastPath"]

PATH: Final = "/api/v1/feed"
_ROUTE: Final = SimpleNamespace(path=PATH)  # what the access log and latency metric are labelled by
_MODES: Final = frozenset({"ranked", "chronological"})
_LIMIT_MAX, _CURSOR_MAX = 100, 200  # as the route's Query() bounds
_READ: Final = "plaza.feed_read"  # scope key: the request's (token, limit, cursor, mode)


def _query(raw: bytes) -> tuple[int, str | None, str] | None:
    """(limit, cursor, mode) if every parameter is one the route knows, once, with a valid value."""
    params = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    given = dict(params)
    if len(given) != len(params) or not given.keys() <= {"limit", "cursor", "mode"}:
        return None
    limit, cursor = given.get("limit", "20"), given.get("cursor")
    mode = given.get("mode", "chronological")
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= _LIMIT_MAX):
        return None
    if mode not in _MODES or (cursor is not None and len(cursor) > _CURSOR_MAX):
        return None
    return int(limit), cursor, mode


def _bearer(scope: Scope) -> str | None:
    value = header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token if scheme.lower() == "bearer" and token else None


class FeedFastPath:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self._in_context = RequestContextMiddleware(
            self._read, metrics=metrics, max_body_bytes=max_body_bytes
        )

    @property
    def state(self) -> Any:
        """The app's state (its platform and services), as on any Starlette app."""
        return getattr(self.app, "state")  # noqa: B009 (an ASGIApp need not have one)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "GET":
            query, token = _query(scope["query_string"]), _bearer(scope)
            if query is not None and token is not None:
                scope["route"] = _ROUTE
                scope[_READ] = (token, *query)
                await self._in_context(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _read(self, scope: Scope, receive: Receive, send: Send) -> None:
        token, limit, cursor, mode = scope[_READ]
        services: Services = self.state.services
        try:
            reader = await services.accounts.authenticate(token)
            page = await services.feed.feed(
                reader, limit, cursor, "ranked" if mode == "ranked" else "chronological"
            )
        except Exception as exc:
            await response_for(exc, PATH)(scope, receive, send)
            return
        body = orjson.dumps(
            {"items": page.items, "next_cursor": page.next_cursor, "mode": page.mode}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
