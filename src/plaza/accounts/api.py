"""Accounts over HTTP: registration, tokens, the caller, public profiles."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from plaza.accounts.service import User
from plaza.deps import ClientIp, CurrentUser, PresentedToken, ServicesDep
from plaza.platform.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["accounts"])


class RegisterIn(BaseModel):
    username: str = Field(examples=["alice"])
    password: str = Field(examples=["correct horse battery"])
    display_name: str | None = Field(default=None, examples=["Alice"])


class LoginIn(BaseModel):
    username: str
    password: str


class UserSummary(BaseModel):
    """How a user appears inside other objects (a post's author, a message's sender)."""

    id: str
    username: str
    display_name: str


class UserOut(BaseModel):
    id: str
    username: str
    display_name: str
    created_at: dt.datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=str(user.id),
            username=user.username,
            display_name=user.display_name,
            created_at=user.created_at,
        )


class ProfileOut(UserOut):
    followers_count: int
    following_count: int


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_at: dt.datetime


@router.post("/users", status_code=201, responses=errors(400, 409, 413, 429))
async def register(body: RegisterIn, services: ServicesDep) -> UserOut:
    user = await services.accounts.register(body.username, body.password, body.display_name)
    return UserOut.of(user)


@router.post("/auth/token", responses=errors(400, 401, 429))
async def issue_token(body: LoginIn, services: ServicesDep, ip: ClientIp) -> TokenOut:
    issued = await services.accounts.login(body.username, body.password, ip)
    return TokenOut(access_token=issued.access_token, expires_at=issued.expires_at)


@router.delete("/auth/token", status_code=204, responses=errors(401))
async def revoke_token(_: CurrentUser, token: PresentedToken, services: ServicesDep) -> Response:
    assert token is not None  # CurrentUser guarantees it
    await services.accounts.revoke(token)
    return Response(status_code=204)


@router.get("/me", responses=errors(401))
async def me(user: CurrentUser) -> UserOut:
    return UserOut.of(user)


@router.get("/users/{username}", responses=errors(404))
async def profile(username: str, services: ServicesDep) -> ProfileOut:
    user = await services.accounts.by_username(username)
    followers, following = await services.feed.counts(user.id)
    return ProfileOut(
        **UserOut.of(user).model_dump(), followers_count=followers, following_count=following
    )
