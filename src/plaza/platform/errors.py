"""One exception hierarchy for every error a client can see, and its mapping to the contract's error body.

Body: `{"error": {"code": "snake_case", "message": "human sentence", "field": "optional"}}`. A 5xx never
carries a stack trace. Validation errors of every kind answer 400 (the contract lets 422 fold into 400).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from plaza.platform.kv import PortUnavailable

log = logging.getLogger("plaza.errors")

DB_RETRY_AFTER_S = (
    5  # long enough for a database failover or restart, short enough for a human retry
)
# A busy pool hands out a connection as soon as any request in flight returns one: retry soon.
OVERLOAD_RETRY_AFTER_S = 1


class PlazaError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or type(self).code
        self.field = field
        self.headers = dict(headers or {})


class BadRequest(PlazaError):
    status, code = 400, "invalid_request"


class Unauthorized(PlazaError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str = "Missing or invalid credentials.", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kw)


class Forbidden(PlazaError):
    status, code = 403, "forbidden"


class NotFound(PlazaError):
    status, code = 404, "not_found"


class Conflict(PlazaError):
    status, code = 409, "conflict"


class PayloadTooLarge(PlazaError):
    status, code = 413, "payload_too_large"


class RateLimited(PlazaError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, **kw: Any) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_s))}, **kw)


class ServiceUnavailable(PlazaError):
    status, code = 503, "service_unavailable"

    def __init__(self, message: str, *, retry_after_s: int = DB_RETRY_AFTER_S, **kw: Any) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)}, **kw)


def error_body(code: str, message: str, field: str | None = None) -> bytes:
    error: dict[str, str] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return orjson.dumps({"error": error})


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = error_body(code, message, field)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


@dataclass(frozen=True)
class Unavailable:
    """A request that cannot be served just now, and how the contract says so (503, error frame)."""

    code: str
    message: str
    retry_after_s: int
    cause: str  # for the log line

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


OVERLOADED = Unavailable(
    "overloaded",
    "The server is busy; retry shortly.",
    OVERLOAD_RETRY_AFTER_S,
    "overloaded: no free database connection",
)
DATABASE_DOWN = Unavailable(
    "database_unavailable",
    "The database is unavailable.",
    DB_RETRY_AFTER_S,
    "database unavailable",
)
SERVICE_DOWN = Unavailable(
    "service_unavailable",
    "A backing service is unavailable.",
    DB_RETRY_AFTER_S,
    "backing service unavailable",
)


def unavailable(exc: BaseException, *, where: str) -> Unavailable | None:
    """The one place that tells overload from outage from bug: for HTTP, frames and redirects.

    A wait for a pooled database connection that timed out means every connection is busy serving
    other requests: the server is overloaded, the database is up. A database or another backing
    service that does not answer is an outage. Either is logged here, once, as a warning without a
    stack trace (neither is a bug). None: anything else, a bug for the caller to answer and log.
    """
    if isinstance(exc, sa_exc.TimeoutError):  # only the pool raises it
        failure = OVERLOADED
    elif isinstance(exc, PortUnavailable):
        failure = SERVICE_DOWN
    elif _database_down(exc):
        failure = DATABASE_DOWN
    else:
        return None
    log.warning("%s on %s: %s", failure.cause, where, exc)
    return failure


def _database_down(exc: BaseException) -> bool:
    """True for errors that mean the database did not answer (as opposed to a bug in a query)."""
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        )
    return isinstance(exc, ConnectionError | OSError | TimeoutError)


def _validation_field(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def _validation_response(exc: RequestValidationError) -> Response:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "Invalid request.", "type": ""}
    if first.get("type") == "json_invalid":
        return error_response(400, "malformed_json", "The request body is not valid JSON.")
    field = _validation_field(tuple(first.get("loc", ())))
    message = str(first.get("msg", "Invalid value."))
    if first.get("type") == "missing":
        return error_response(400, "missing_field", f"{field or 'body'} is required.", field)
    text = f"{field}: {message}" if field else message
    return error_response(400, "invalid_field", text, field)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def response_for(exc: Exception, path: str) -> Response:
    """The contract's answer to an exception a handler raised (for paths outside FastAPI's)."""
    if isinstance(exc, PlazaError):
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)
    return unexpected_error_response(exc, path)


def install_error_handlers(app: FastAPI) -> None:
    async def on_plaza_error(request: Request, exc: Exception) -> Response:
        return response_for(exc, request.url.path)

    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _validation_response(exc)

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = "No such resource." if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, code, message, headers=exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        return unexpected_error_response(exc, request.url.path)

    app.add_exception_handler(PlazaError, on_plaza_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    # Outages and overload are answered here (503) without the re-raise that Starlette gives
    # handlers of Exception.
    for outage in (sa_exc.SQLAlchemyError, PortUnavailable, OSError, TimeoutError):
        app.add_exception_handler(outage, on_unexpected)
    app.add_exception_handler(Exception, on_unexpected)


def unexpected_error_response(exc: BaseException, path: str) -> Response:
    """503 for overload or a backing service's outage, else a 500 whose details stay in the log."""
    failure = unavailable(exc, where=path)
    if failure is not None:
        return error_response(503, failure.code, failure.message, headers=failure.headers)
    log.exception("unhandled error on %s", path, exc_info=exc)
    return error_response(500, "internal_error", "Something went wrong on our side.")
