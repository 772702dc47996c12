"""The browser's login and logout: a session cookie instead of a token in the response body."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from plaza.accounts.api import LoginIn, UserOut
from plaza.deps import ClientIp, CurrentUser, PlatformDep, PresentedToken, ServicesDep
from plaza.platform.errors import Forbidden
from plaza.platform.openapi import errors
from plaza.web.cookies import (
    CSRF_HEADER,
    clear_session_cookie,
    csrf_matches,
    is_secure,
    set_session_cookie,
)

router = APIRouter(prefix="/api/v1/auth", tags=["accounts"])

_SESSION_DOC = (
    "For browsers: sets the HttpOnly `plaza_session` cookie, which holds an access token like the one "
    "from POST /api/v1/auth/token. Needs the `X-CSRF-Token` header to equal the `plaza_csrf` cookie "
    "(set by every page of the web app), as does every other non-GET request made with the session."
)


@router.post("/session", responses=errors(400, 401, 403, 429), description=_SESSION_DOC)
async def open_session(
    body: LoginIn,
    request: Request,
    response: Response,
    services: ServicesDep,
    platform: PlatformDep,
    ip: ClientIp,
) -> UserOut:
    # Login CSRF: another site must not log the browser into an account of its choosing.
    if not csrf_matches(request.cookies, request.headers.get(CSRF_HEADER)):
        raise Forbidden("Reload the page and log in again.", code="csrf_failed")
    issued = await services.accounts.login(body.username, body.password, ip)
    user = await services.accounts.authenticate(issued.access_token)
    max_age_s = int((issued.expires_at - services.accounts.now()).total_seconds())
    secure = is_secure(request, platform.settings.base_url)
    set_session_cookie(response, issued.access_token, max_age_s=max_age_s, secure=secure)
    return UserOut.of(user)


@router.delete(
    "/session",
    status_code=204,
    responses=errors(401, 403),
    description="Log out: revokes the session's token and clears its cookie.",
)
async def close_session(
    request: Request,
    _: CurrentUser,
    token: PresentedToken,
    services: ServicesDep,
    platform: PlatformDep,
) -> Response:
    assert token is not None  # CurrentUser guarantees it
    await services.accounts.revoke(token)
    response = Response(status_code=204)
    clear_session_cookie(response, secure=is_secure(request, platform.settings.base_url))
    return response
