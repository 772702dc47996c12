"""The web app's pages: HTML shells (no user data is rendered on the server) and their static files.

Each page is the layout around one fragment, with one script module that calls the public JSON API and
the WebSocket. Scripts build user content with `textContent`, so the policy below forbids inline script.
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from plaza.deps import PlatformDep
from plaza.web.cookies import CSRF_COOKIE, is_secure, set_csrf_cookie

HERE = Path(__file__).parent
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
# page name -> (title, script module)
PAGES = {
    "home": ("Shorten a link", "home.js"),
    "login": ("Log in", "auth.js"),
    "register": ("Create an account", "auth.js"),
    "links": ("My links", "links.js"),
    "stats": ("Link statistics", "stats.js"),
    "feed": ("Feed", "feed.js"),
    "profile": ("Profile", "profile.js"),
    "chat": ("Chat", "chat.js"),
}

router = APIRouter(include_in_schema=False)


def static_files() -> StaticFiles:
    return StaticFiles(directory=HERE / "static")


@functools.cache
def render(name: str) -> bytes:
    title, script = PAGES[name]
    layout = (HERE / "templates" / "layout.html").read_text(encoding="utf-8")
    main = (HERE / "templates" / f"{name}.html").read_text(encoding="utf-8")
    html = (
        layout.replace("{{title}}", title)
        .replace("{{page}}", name)
        .replace("{{script}}", script)
        .replace("{{main}}", main)
    )
    return html.encode()


def _page(name: str, request: Request, platform: PlatformDep) -> Response:
    response = Response(render(name), media_type="text/html; charset=utf-8", headers=_HEADERS)
    if CSRF_COOKIE not in request.cookies:
        set_csrf_cookie(response, secure=is_secure(request, platform.settings.base_url))
    return response


@router.get("/")
async def home(request: Request, platform: PlatformDep) -> Response:
    return _page("home", request, platform)


@router.get("/app")
async def app_root() -> Response:
    return RedirectResponse("/app/feed", status_code=302)


@router.get("/app/login")
async def login(request: Request, platform: PlatformDep) -> Response:
    return _page("login", request, platform)


@router.get("/app/register")
async def register(request: Request, platform: PlatformDep) -> Response:
    return _page("register", request, platform)


@router.get("/app/links")
async def links(request: Request, platform: PlatformDep) -> Response:
    return _page("links", request, platform)


@router.get("/app/links/{code}")
async def link_stats(code: str, request: Request, platform: PlatformDep) -> Response:
    return _page("stats", request, platform)


@router.get("/app/feed")
async def feed(request: Request, platform: PlatformDep) -> Response:
    return _page("feed", request, platform)


@router.get("/app/u/{username}")
async def profile(username: str, request: Request, platform: PlatformDep) -> Response:
    return _page("profile", request, platform)


@router.get("/app/chat")
async def chat(request: Request, platform: PlatformDep) -> Response:
    return _page("chat", request, platform)
