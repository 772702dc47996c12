"""OpenAPI documentation of the contract's error body, shared by every router."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from plaza.platform.errors import DATABASE_DOWN, OVERLOADED, SERVICE_DOWN

_DESCRIPTIONS = {
    400: "Malformed or invalid input",
    401: "No or bad credentials",
    403: "Not allowed",
    404: "Unknown",
    409: "Conflict",
    413: "Body too large",
    429: "Rate limited (see Retry-After)",
    503: (
        f"A backing service is down (`{DATABASE_DOWN.code}`, `{SERVICE_DOWN.code}`;"
        f" Retry-After: {DATABASE_DOWN.retry_after_s}), or the server is overloaded: every"
        f" database connection is busy, the database is up (`{OVERLOADED.code}`;"
        f" Retry-After: {OVERLOADED.retry_after_s})"
    ),
}


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with the error body; 400 and 503 are always possible."""
    every = sorted({400, 503, *statuses})
    return {status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in every}


def contract_openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema, minus FastAPI's 422 answers: validation errors are 400 with the error body."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        components = schema.get("components", {}).get("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
    return app.openapi_schema
