"""FastAPI dependencies shared by every context's API: the services, the caller, the client address.

The caller is found from `Authorization: Bearer <token>`, else from the web app's session cookie, which
holds the same opaque token (CSRF is checked before this, in `plaza.web.csrf`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from plaza.accounts.service import User
from plaza.bootstrap import Platform, Services
from plaza.platform.errors import Unauthorized
from plaza.web.cookies import SESSION_COOKIE

_bearer = HTTPBearer(auto_error=False, description="An access token from POST /api/v1/auth/token")


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


ServicesDep = Annotated[Services, Depends(get_services)]
PlatformDep = Annotated[Platform, Depends(get_platform)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


# Dependencies are coroutines: FastAPI runs a plain function in a worker thread, a costly hop.
async def client_ip(request: Request) -> str:
    platform: Platform = request.app.state.platform
    if platform.settings.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.client.host if request.client else "unknown"


async def presented_token(request: Request, credentials: Credentials) -> str | None:
    """The token the request presents: the bearer header's, else the session cookie's."""
    if credentials is not None:
        return credentials.credentials
    if request.headers.get("authorization"):
        raise Unauthorized("Use 'Authorization: Bearer <token>'.", code="invalid_token")
    return request.cookies.get(SESSION_COOKIE) or None


async def optional_user(
    request: Request, services: ServicesDep, credentials: Credentials
) -> User | None:
    token = await presented_token(request, credentials)
    if token is None:
        return None
    if credentials is None:
        # A stale cookie is no credential: the browser is anonymous until it logs in again.
        try:
            return await services.accounts.authenticate(token)
        except Unauthorized:
            return None
    return await services.accounts.authenticate(token)


async def caller(request: Request) -> User | None:
    """OptionalUser for a route served without FastAPI's dependency injection: the same functions."""
    services: Services = request.app.state.services
    return await optional_user(request, services, await _bearer(request))


async def current_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    if user is None:
        raise Unauthorized("This needs a bearer token or a session.", code="unauthorized")
    return user


OptionalUser = Annotated[User | None, Depends(optional_user)]
CurrentUser = Annotated[User, Depends(current_user)]
ClientIp = Annotated[str, Depends(client_ip)]
PresentedToken = Annotated[str | None, Depends(presented_token)]
