"""Push providers: where offline push notifications go. A small port with two adapters.

`LogPusher` (the default) writes one structured log line per notification. `WebhookPusher` POSTs the
notification as JSON to PLAZA_PUSH_WEBHOOK_URL (a push gateway of the operator's choosing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import httpx
import structlog

__all__ = ["LogPusher", "PushFailed", "PushProvider", "WebhookPusher"]

log = structlog.get_logger("plaza.chat.push")


class PushFailed(Exception):
    """The provider did not take the notification; `retryable` when trying again may help."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


class PushProvider(Protocol):
    async def send(self, notification: Mapping[str, Any]) -> None:
        """Deliver one notification, or raise PushFailed."""

    async def aclose(self) -> None: ...


class LogPusher:
    async def send(self, notification: Mapping[str, Any]) -> None:
        log.info("push", **notification)

    async def aclose(self) -> None:
        pass


class WebhookPusher:
    """2xx: delivered. 5xx, 429, timeouts and connection errors: retryable. Other answers: refused."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self.url = url
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def send(self, notification: Mapping[str, Any]) -> None:
        try:
            response = await self._client.post(self.url, json=dict(notification))
        except httpx.TransportError as exc:  # connection refused or reset, timeouts
            raise PushFailed(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        if response.is_success:
            return
        status = response.status_code
        raise PushFailed(f"HTTP {status}", retryable=status >= 500 or status == 429)

    async def aclose(self) -> None:
        await self._client.aclose()
