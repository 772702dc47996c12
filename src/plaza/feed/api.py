"""The news feed over HTTP: posts, reactions, follows, mutes and blocks, and the home feed."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from plaza.accounts.api import UserSummary
from plaza.deps import CurrentUser, ServicesDep
from plaza.platform.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["feed"])

Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=200, description="A next_cursor")]


class PostIn(BaseModel):
    content: str = Field(description="1-5000 characters", examples=["Hello, Plaza!"])
    media_urls: list[str] = Field(default_factory=list, description="Up to 4 http(s) URLs")
    reply_to: str | None = Field(default=None, description="The id of the post this replies to")


class PostBase(BaseModel):
    id: str
    author: UserSummary
    content: str = Field(description="Empty for a repost: what it shows is `reposted`")
    media_urls: list[str]
    created_at: dt.datetime
    like_count: int
    repost_count: int
    reply_count: int
    reply_to: str | None
    repost_of: str | None = Field(description="For a repost, the id of the post it shows")


class PostOut(PostBase):
    reposted: PostBase | None = Field(description="For a repost, the post it shows")


class PostPage(BaseModel):
    items: list[PostOut]
    next_cursor: str | None


class FeedOut(PostPage):
    mode: Literal["ranked", "chronological"] = Field(
        description="The order served: ranked mode falls back to chronological when ranking fails "
        "or runs over its budget, and pages below the ranked candidates are chronological"
    )


class UserPage(BaseModel):
    items: list[UserSummary]
    next_cursor: str | None


class RelationshipOut(BaseModel):
    following: bool
    followed_by: bool
    muting: bool
    blocking: bool
    blocked_by: bool


@router.post("/posts", status_code=201, responses=errors(400, 401, 413))
async def create_post(body: PostIn, services: ServicesDep, user: CurrentUser) -> PostOut:
    view = await services.feed.create_post(user, body.content, body.media_urls, body.reply_to)
    return PostOut.model_validate(view)


@router.get("/posts/{post_id}", responses=errors(404))
async def get_post(post_id: str, services: ServicesDep) -> PostOut:
    return PostOut.model_validate(await services.feed.post(post_id))


@router.delete(
    "/posts/{post_id}",
    status_code=204,
    responses=errors(401, 403, 404),
    description="Author only. The post leaves every feed at once; its reposts go with it.",
)
async def delete_post(post_id: str, services: ServicesDep, user: CurrentUser) -> Response:
    await services.feed.delete_post(user, post_id)
    return Response(status_code=204)


@router.post(
    "/posts/{post_id}/like",
    responses=errors(401, 404),
    description="Idempotent: liking twice counts once. Returns the post with its counts.",
)
async def like(post_id: str, services: ServicesDep, user: CurrentUser) -> PostOut:
    return PostOut.model_validate(await services.feed.like(user, post_id, on=True))


@router.delete("/posts/{post_id}/like", responses=errors(401, 404))
async def unlike(post_id: str, services: ServicesDep, user: CurrentUser) -> PostOut:
    return PostOut.model_validate(await services.feed.like(user, post_id, on=False))


@router.post(
    "/posts/{post_id}/repost",
    status_code=201,
    responses={200: {"description": "Already reposted: the existing repost"}, **errors(401, 404)},
    description="A repost is a post of the caller's that shows another; reposting twice answers "
    "the first repost (200). Delete it as any post to undo.",
)
async def repost(
    post_id: str, services: ServicesDep, user: CurrentUser, response: Response
) -> PostOut:
    view, created = await services.feed.repost(user, post_id)
    if not created:
        response.status_code = 200
    return PostOut.model_validate(view)


@router.get("/users/{username}/posts", responses=errors(404))
async def user_posts(
    username: str, services: ServicesDep, limit: Limit = 20, cursor: Cursor = None
) -> PostPage:
    items, after = await services.feed.user_posts(username, limit, cursor)
    return PostPage.model_validate({"items": items, "next_cursor": after})


@router.get(
    "/feed",
    responses=errors(400, 401),
    description="Posts by the people the caller follows and the caller's own, newest first, or "
    "ranked. Muted and blocked authors never appear.",
)
async def home_feed(
    services: ServicesDep,
    user: CurrentUser,
    limit: Limit = 20,
    cursor: Cursor = None,
    mode: Literal["ranked", "chronological"] = "chronological",
) -> FeedOut:
    page = await services.feed.feed(user, limit, cursor, mode)
    return FeedOut.model_validate(
        {"items": page.items, "next_cursor": page.next_cursor, "mode": page.mode}
    )


# --- relationships ---------------------------------------------------------------------------------

_RELATIONSHIP = "Returns how the caller now stands towards the user. Idempotent."


@router.post(
    "/users/{username}/follow", responses=errors(400, 401, 403, 404), description=_RELATIONSHIP
)
async def follow(username: str, services: ServicesDep, user: CurrentUser) -> RelationshipOut:
    return RelationshipOut(**await services.feed.follow(user, username, on=True))


@router.delete(
    "/users/{username}/follow", responses=errors(400, 401, 404), description=_RELATIONSHIP
)
async def unfollow(username: str, services: ServicesDep, user: CurrentUser) -> RelationshipOut:
    return RelationshipOut(**await services.feed.follow(user, username, on=False))


@router.post("/users/{username}/mute", responses=errors(400, 401, 404), description=_RELATIONSHIP)
async def mute(username: str, services: ServicesDep, user: CurrentUser) -> RelationshipOut:
    return RelationshipOut(**await services.feed.mute(user, username, on=True))


@router.delete("/users/{username}/mute", responses=errors(400, 401, 404), description=_RELATIONSHIP)
async def unmute(username: str, services: ServicesDep, user: CurrentUser) -> RelationshipOut:
    return RelationshipOut(**await services.feed.mute(user, username, on=False))


@router.post(
    "/users/{username}/block",
    responses=errors(400, 401, 404),
    description="Also ends follows both ways. " + _RELATIONSHIP,
)
async def block(username: str, services: ServicesDep, user: CurrentUser) -> RelationshipOut:
    return RelationshipOut(**await services.feed.block(user, username, on=True))


@router.delete(
    "/users/{username}/block", responses=errors(400, 401, 404), description=_RELATIONSHIP
)
async def unblock(username: str, services: ServicesDep, user: CurrentUser) -> RelationshipOut:
    return RelationshipOut(**await services.feed.block(user, username, on=False))


@router.get("/users/{username}/relationship", responses=errors(400, 401, 404))
async def relationship(username: str, services: ServicesDep, user: CurrentUser) -> RelationshipOut:
    return RelationshipOut(**await services.feed.relationship(user, username))


@router.get("/users/{username}/followers", responses=errors(400, 404))
async def followers(
    username: str, services: ServicesDep, limit: Limit = 20, cursor: Cursor = None
) -> UserPage:
    items, after = await services.feed.follow_list(
        username, followers=True, limit=limit, cursor=cursor
    )
    return UserPage.model_validate({"items": items, "next_cursor": after})


@router.get("/users/{username}/following", responses=errors(400, 404))
async def following(
    username: str, services: ServicesDep, limit: Limit = 20, cursor: Cursor = None
) -> UserPage:
    items, after = await services.feed.follow_list(
        username, followers=False, limit=limit, cursor=cursor
    )
    return UserPage.model_validate({"items": items, "next_cursor": after})
