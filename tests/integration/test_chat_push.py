"""Offline push through the real app: a message to someone with no connection reaches a push provider.

The provider is the outside world, so it is played by a real HTTP server on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from tests.conftest import register
from tests.integration.test_chat_messaging import conversation, history
from tests.integration.test_degradation import DEAD_REDIS
from tests.wsclient import online, send_message, token_of


class PushGateway:
    """Records every POST; answers each with the next scripted status (the last one repeats)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[int, dict[str, Any]]] = []  # (status answered, body)
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                index = min(len(gateway.received), len(gateway.statuses) - 1)
                status = gateway.statuses[index]
                gateway.received.append((status, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/push"

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[tuple[int, dict[str, Any]]]:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.received) >= count, self.received
        return list(self.received)


@pytest.fixture
def gateway() -> Iterator[Callable[[list[int]], PushGateway]]:
    started: list[PushGateway] = []

    def start(statuses: list[int]) -> PushGateway:
        found = PushGateway(statuses)
        threading.Thread(target=found.server.serve_forever, daemon=True).start()
        started.append(found)
        return found

    yield start
    for found in started:
        found.server.shutdown()
        found.server.server_close()


def pushing_client(make_client: Any, url: str) -> Any:
    return make_client(push_webhook_url=url, push_retry_base_s=0.05, push_max_attempts=3)


def test_offline_members_get_a_push_retried_after_a_failure(
    make_client: Any, gateway: Callable[[list[int]], PushGateway]
) -> None:
    provider = gateway([503, 200])
    client = pushing_client(make_client, provider.url)
    alice, _ = register(client, "alice"), register(client, "bob")
    carol = register(client, "carol")
    cid = conversation(client, alice, "bob", "carol", name="trip")
    content = "東京 " + "x" * 150
    with online(client, token_of(alice)) as a, online(client, token_of(carol)):
        message = send_message(a, cid, content)
    (failed, first), (accepted, second) = provider.wait_for(2)
    assert (failed, accepted) == (503, 200) and first == second  # the same notification, again
    assert second == {
        "type": "message",
        "recipient": {"id": second["recipient"]["id"], "username": "bob", "display_name": "bob"},
        "conversation_id": cid,
        "message_id": message["id"],
        "seq": message["seq"],
        "sender": message["sender"],
        "preview": content[:100],
    }
    time.sleep(0.3)
    assert len(provider.received) == 2  # carol was online, alice sent it: nothing for them
    notifier = client.app.state.services.notifier
    assert client.portal.call(notifier.dead_letters) == []


def test_a_push_that_never_goes_through_is_a_dead_letter(
    make_client: Any, gateway: Callable[[list[int]], PushGateway]
) -> None:
    provider = gateway([500])
    client = pushing_client(make_client, provider.url)
    alice, _ = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a:
        message = send_message(a, cid, "are you there?")
    assert [status for status, _ in provider.wait_for(3)] == [500, 500, 500]
    notifier = client.app.state.services.notifier
    deadline = time.monotonic() + 5
    while not (letters := client.portal.call(notifier.dead_letters)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (letter,) = letters
    assert letter.attempts == 3 and letter.error == "HTTP 500"
    assert letter.message_id == int(message["id"])
    assert orjson.loads(letter.payload)["recipient"]["username"] == "bob"
    time.sleep(0.3)
    assert len(provider.received) == 3  # not retried past max_attempts


def test_unreachable_provider_and_refusals(
    make_client: Any, gateway: Callable[[list[int]], PushGateway]
) -> None:
    refusing = gateway([400])
    client = pushing_client(make_client, refusing.url)
    alice, _ = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a:
        send_message(a, cid, "one")
    assert len(refusing.wait_for(1)) == 1  # a 4xx is not retried
    notifier = client.app.state.services.notifier
    deadline = time.monotonic() + 5
    while not client.portal.call(notifier.dead_letters):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.portal.call(notifier.dead_letters)[0].attempts == 1


def test_the_default_provider_logs_each_push(client: Any) -> None:
    alice, _ = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with capture_logs() as logs, online(client, token_of(alice)) as a:
        send_message(a, cid, "logged")
        deadline = time.monotonic() + 5
        while not [e for e in logs if e["event"] == "push"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    (push,) = [e for e in logs if e["event"] == "push"]
    assert push["recipient"]["username"] == "bob" and push["preview"] == "logged"


def test_sending_works_with_the_push_stream_down(app_factory: Any, sqlite_url: str) -> None:
    client = app_factory(database_url=sqlite_url, redis_url=DEAD_REDIS)
    alice, bob = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with capture_logs() as logs, online(client, token_of(alice)) as a:
        assert send_message(a, cid, "still delivered")["seq"] == 1
        deadline = time.monotonic() + 5
        while not [e for e in logs if e["event"] == "offline push not queued"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert [m["content"] for m in history(client, bob, cid)] == ["still delivered"]
