"""Operations endpoints: liveness, readiness of every configured backing service, Prometheus metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from plaza.deps import PlatformDep

router = APIRouter(tags=["operations"])
CHECK_TIMEOUT_S = 2.0  # a probe that hangs longer than this counts as down
# What a check may say and the instance stay ready. "busy": the database answers but every pooled
# connection is in use. That is overload, which requests are told of themselves (503 `overloaded`,
# Retry-After 1); taking the instance out of rotation would only move its load onto the others.
READY = ("ok", "busy")


async def _check(probe: Callable[[], Awaitable[str]]) -> str:
    try:
        return await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure means not ready; the reason is reported
        return f"error: {type(exc).__name__}"


def _answers(ping: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[str]]:
    async def probe() -> str:
        await ping()
        return "ok"

    return probe


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {
            "description": "Ready; `checks` says `busy` for a database that answers while "
            "every pooled connection is in use"
        },
        503: {"description": "A backing service is down; the body names it"},
    },
)
async def readyz(platform: PlatformDep) -> Response:
    checks = {"database": await _check(platform.db.readiness)}
    if platform.redis is not None:
        checks["redis"] = await _check(_answers(platform.kv.ping))
    if platform.timelines_cluster is not None:
        checks["redis_cluster"] = await _check(_answers(platform.timelines_cluster.ping))
    failing = [name for name, result in checks.items() if result not in READY]
    if not failing:
        return Response(
            orjson.dumps({"status": "ok", "checks": checks}), media_type="application/json"
        )
    body = {
        "error": {"code": "not_ready", "message": f"Unavailable: {', '.join(failing)}."},
        "checks": checks,
    }
    return Response(
        orjson.dumps(body),
        status_code=503,
        media_type="application/json",
        headers={"Retry-After": "5"},
    )


@router.get("/metrics", response_class=Response)
async def metrics(platform: PlatformDep) -> Response:
    return Response(
        platform.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
