"""Which failures are overload, which an outage, and which a bug: one decision for every transport."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc

from plaza.platform.errors import (
    DATABASE_DOWN,
    OVERLOADED,
    SERVICE_DOWN,
    Unavailable,
    unavailable,
    unexpected_error_response,
)
from plaza.platform.kv import PortUnavailable

POOL_TIMEOUT = sa_exc.TimeoutError("QueuePool limit of size 1 overflow 0 reached")
CONNECTION_LOST = sa_exc.OperationalError("SELECT 1", {}, ConnectionResetError())


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (POOL_TIMEOUT, OVERLOADED),
        (CONNECTION_LOST, DATABASE_DOWN),
        (ConnectionRefusedError(), DATABASE_DOWN),
        (TimeoutError(), DATABASE_DOWN),
        (PortUnavailable("redis"), SERVICE_DOWN),
        (sa_exc.ProgrammingError("SELECT nope", {}, Exception()), None),
        (ValueError("a bug"), None),
    ],
)
def test_overload_outage_or_bug(exc: Exception, expected: Unavailable | None) -> None:
    assert unavailable(exc, where="test") is expected


def test_overload_is_a_503_to_retry_after_a_second() -> None:
    response = unexpected_error_response(POOL_TIMEOUT, "/api/v1/me")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert b'"code":"overloaded"' in bytes(response.body)
