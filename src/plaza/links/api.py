"""Short links over HTTP (the redirect itself is `redirect.py`, in front of this router)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, TypeAdapter
from pydantic.config import JsonDict
from starlette.routing import Match, Route, Router
from starlette.types import Receive, Scope, Send

from plaza.deps import ClientIp, CurrentUser, OptionalUser, ServicesDep, caller, client_ip
from plaza.links.service import Link, LinksService, NewLink
from plaza.platform.errors import BadRequest
from plaza.platform.http import replay
from plaza.platform.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["links"])
_DATETIME: JsonDict = {"format": "date-time", "examples": ["2029-01-01", "2029-01-01T12:00:00Z"]}


class ShortenIn(BaseModel):
    long_url: str = Field(examples=["https://example.com/a/long/path"])
    custom_alias: str | None = Field(default=None, examples=["my-link"])
    expires_at: str | None = Field(default=None, json_schema_extra=_DATETIME)
    expiry: str | None = Field(
        default=None, description="Synonym of expires_at", json_schema_extra=_DATETIME
    )
    max_clicks: int | None = Field(
        default=None, ge=1, description="Stop redirecting after this many clicks"
    )


class UrlIn(BaseModel):
    long_url: str
    custom_code: str | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=36500)
    expires_at: str | None = Field(default=None, json_schema_extra=_DATETIME)
    max_clicks: int | None = Field(default=None, ge=1)


class UrlPatch(BaseModel):
    long_url: str | None = None
    expires_at: str | None = Field(default=None, json_schema_extra=_DATETIME)
    max_clicks: int | None = Field(default=None, ge=1)


class LinkOut(BaseModel):
    short_code: str
    short_url: str
    long_url: str
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime | None
    max_clicks: int | None
    clicks: int
    status: Literal["active", "expired", "exhausted"]
    owner_id: str | None

    @classmethod
    def of(cls, link: Link, links: LinksService) -> LinkOut:
        return cls(
            short_code=link.code,
            short_url=links.short_url(link.code),
            long_url=link.long_url,
            created_at=link.created_at,
            updated_at=link.updated_at,
            expires_at=link.expires_at,
            max_clicks=link.max_clicks,
            clicks=link.clicks,
            status=link.status(links.now()),
            owner_id=str(link.owner_id) if link.owner_id is not None else None,
        )


class LinkPage(BaseModel):
    items: list[LinkOut]
    next_cursor: str | None


class DailyOut(BaseModel):
    date: dt.date
    clicks: int


class ReferrerOut(BaseModel):
    referrer: str
    clicks: int


class DeviceOut(BaseModel):
    device: Literal["mobile", "desktop", "tablet", "bot", "other"]
    clicks: int


class CountryOut(BaseModel):
    country: str
    clicks: int


class StatsOut(BaseModel):
    short_code: str
    short_url: str
    long_url: str
    clicks: int = Field(description="Human clicks; eventually consistent (within 5 s)")
    bot_clicks: int = Field(description="Redirects served to detected bots, not counted in clicks")
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_clicked_at: dt.datetime | None
    status: Literal["active", "expired", "exhausted"]
    daily: list[DailyOut]
    top_referrers: list[ReferrerOut]
    devices: list[DeviceOut]
    countries: list[CountryOut]


def parse_expiry(raw: str | None, field: str) -> dt.datetime | None:
    """RFC 3339 (a missing offset means UTC), or a bare date meaning 00:00:00Z that day."""
    if raw is None:
        return None
    text = raw.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"{field} must be a date or an RFC 3339 timestamp.", code="invalid_expiry", field=field
        ) from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@router.post("/shorten", status_code=201, responses=errors(400, 401, 409, 413, 429))
async def shorten(
    body: ShortenIn, services: ServicesDep, user: OptionalUser, ip: ClientIp
) -> LinkOut:
    field, raw = (
        ("expires_at", body.expires_at) if body.expires_at is not None else ("expiry", body.expiry)
    )
    new = NewLink(body.long_url, body.custom_alias, parse_expiry(raw, field), body.max_clicks)
    link = await services.links.create(new, owner=user, client_ip=ip)
    return LinkOut.of(link, services.links)


class ShortenFastPath(Route):
    """`POST /api/v1/shorten` without FastAPI's routing and dependency solving, a third of a create's
    CPU: ahead of the routers, it calls what FastAPI would (the body model, the caller and client
    address functions, `shorten`) and answers with pydantic's JSON of LinkOut. A request that is not
    the usual one (an `application/json` body that validates) goes back to the router, so FastAPI
    parses it and words its error as for any route. The schema documents `shorten`; middleware and
    error handlers are the app's, as for every route."""

    def __init__(self, router: Router) -> None:
        super().__init__("/api/v1/shorten", shorten, methods=["POST"], include_in_schema=False)
        self.router, self.app = router, self.serve

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get(_DECLINED):
            return Match.NONE, {}
        match, child_scope = super().matches(scope)
        if match is not Match.FULL:
            return match, child_scope
        return match, {**child_scope, "route": self}  # the template for metrics and the access log

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        content = await request.body()
        body = _usual_body(request.headers.get("content-type"), content)
        if body is None:
            scope[_DECLINED] = True
            await self.router(scope, replay(content, receive), send)
            return
        services = request.app.state.services
        out = await shorten(body, services, await caller(request), await client_ip(request))
        response = Response(_LINK_OUT.dump_json(out), 201, media_type="application/json")
        await response(scope, receive, send)


def _usual_body(content_type: str | None, content: bytes) -> ShortenIn | None:
    """The body as FastAPI would validate it, if FastAPI would take it as JSON and it is valid."""
    if content_type != "application/json":
        return None
    try:
        return ShortenIn.model_validate(json.loads(content), from_attributes=True)
    except (ValueError, RecursionError):  # invalid JSON, UTF-8 or body; JSON nested too deep
        return None


_DECLINED = "plaza.shorten.declined"
_LINK_OUT = TypeAdapter(LinkOut)


@router.post("/urls", status_code=201, responses=errors(400, 401, 409, 413, 429))
async def create_url(
    body: UrlIn, services: ServicesDep, user: OptionalUser, ip: ClientIp
) -> LinkOut:
    expires_at = parse_expiry(body.expires_at, "expires_at")
    if body.expires_in_days is not None:
        expires_at = services.links.now() + dt.timedelta(days=body.expires_in_days)
    new = NewLink(body.long_url, body.custom_code, expires_at, body.max_clicks)
    try:
        link = await services.links.create(new, owner=user, client_ip=ip)
    except BadRequest as exc:
        if exc.field == "custom_alias":
            exc.field = "custom_code"
        raise
    return LinkOut.of(link, services.links)


@router.get("/urls", responses=errors(401))
async def my_links(
    services: ServicesDep,
    user: CurrentUser,
    owner: Annotated[Literal["me"], Query()] = "me",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=200, description="Search codes and URLs")] = None,
) -> LinkPage:
    before_id = _decode_cursor(cursor)
    links = await services.links.list_owned(user, before_id=before_id, limit=limit + 1, query=q)
    page = links[:limit]
    next_cursor = _encode_cursor(page[-1].id) if len(links) > limit else None
    return LinkPage(
        items=[LinkOut.of(link, services.links) for link in page], next_cursor=next_cursor
    )


@router.get("/urls/{code}", responses=errors(404))
async def get_url(code: str, services: ServicesDep) -> LinkOut:
    return LinkOut.of(await services.links.get(code), services.links)


@router.patch("/urls/{code}", responses=errors(401, 403, 404, 413))
async def patch_url(
    code: str, body: UrlPatch, services: ServicesDep, user: OptionalUser
) -> LinkOut:
    changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
    if "expires_at" in changes:
        changes["expires_at"] = parse_expiry(changes["expires_at"], "expires_at")
    link = await services.links.update(code, user, changes)
    return LinkOut.of(link, services.links)


@router.delete("/urls/{code}", status_code=204, responses=errors(401, 403, 404))
async def delete_url(code: str, services: ServicesDep, user: OptionalUser) -> Response:
    await services.links.delete(code, user)
    return Response(status_code=204)


@router.get("/stats/{code}", responses=errors(404))
async def stats(code: str, services: ServicesDep) -> StatsOut:
    found = await services.links.stats(code)
    link: Link = found.pop("link")
    return StatsOut(
        short_code=link.code,
        short_url=services.links.short_url(link.code),
        long_url=link.long_url,
        clicks=link.clicks,
        bot_clicks=link.bot_clicks,
        created_at=link.created_at,
        expires_at=link.expires_at,
        last_clicked_at=link.last_clicked_at,
        status=link.status(services.links.now()),
        **found,
    )


_QR_TYPES = {"png": "image/png", "svg": "image/svg+xml"}


@router.get(
    "/urls/{code}/qr",
    responses={
        **errors(404),
        200: {
            "content": {t: {} for t in _QR_TYPES.values()},
            "description": "A QR code of the short URL",
        },
    },
    response_class=Response,
)
async def qr_code(
    code: str, services: ServicesDep, format: Annotated[Literal["png", "svg"], Query()] = "png"
) -> Response:
    image = await services.links.qr(code, format)
    return Response(
        image, media_type=_QR_TYPES[format], headers={"Cache-Control": "public, max-age=86400"}
    )


def _encode_cursor(link_id: int) -> str:
    return base64.urlsafe_b64encode(f"l:{link_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if text.startswith("l:"):
            return int(text[2:])
    except ValueError:
        pass
    raise BadRequest(
        "The cursor is not one this API gave out.", code="invalid_cursor", field="cursor"
    )
