"""The browser's session: an HttpOnly cookie holding the same opaque token an API client gets, and a
double-submit CSRF token (a cookie the page's script reads and echoes in a header).

A request authenticated by the cookie may change state only when its `X-CSRF-Token` header equals the
`plaza_csrf` cookie: another site can make a browser send the cookies but can read neither of them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from plaza.platform.http import SESSION_COOKIE as SESSION_COOKIE

CSRF_COOKIE = "plaza_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_MAX_AGE_S = 365 * 86400  # the CSRF token guards nothing alone; it may outlive many sessions


def is_secure(request: Request, base_url: str) -> bool:
    """Over https, directly or behind a proxy that terminates TLS for the configured base URL."""
    return request.url.scheme in ("https", "wss") or base_url.startswith("https://")


def csrf_matches(cookies: Mapping[str, str], header_value: str | None) -> bool:
    expected = cookies.get(CSRF_COOKIE)
    if not expected or not header_value:
        return False
    return secrets.compare_digest(expected.encode(), header_value.encode())


def set_csrf_cookie(response: Response, *, secure: bool) -> None:
    # Not HttpOnly: the page's script reads it to echo it in the header.
    response.set_cookie(
        CSRF_COOKIE,
        secrets.token_urlsafe(24),
        max_age=CSRF_MAX_AGE_S,
        path="/",
        secure=secure,
        httponly=False,
        samesite="lax",
    )


def set_session_cookie(response: Response, token: str, *, max_age_s: int, secure: bool) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age_s,
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="lax")


def same_origin(headers: Mapping[str, str]) -> bool:
    """The request's `Origin` is this server's own (its `Host`): a WebSocket authenticated by the
    cookie must come from our pages, as browsers send cookies with cross-site WebSocket handshakes."""
    origin, host = headers.get("origin"), headers.get("host")
    if not origin or not host:
        return False
    scheme, _, netloc = origin.partition("://")
    return scheme in ("http", "https") and netloc.lower() == host.lower()
