"""Refuses a state-changing request made with the session cookie unless it carries the CSRF token.

Bearer-token clients are unaffected: a request with an `Authorization` header is authenticated by that
header alone (see `plaza.deps`), never by the cookie.
"""

from __future__ import annotations

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from plaza.platform.errors import error_response
from plaza.platform.http import header
from plaza.web.cookies import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, csrf_matches


class CsrfMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in SAFE_METHODS
            and header(scope, b"authorization") is None
        ):
            cookies = cookie_parser(header(scope, b"cookie") or "")
            if SESSION_COOKIE in cookies and not csrf_matches(
                cookies, header(scope, CSRF_HEADER.encode())
            ):
                response = error_response(
                    403,
                    "csrf_failed",
                    "This request needs the page's CSRF token; reload the page and try again.",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
