"""Two app instances sharing PostgreSQL and Redis: users connected to different ones talk in real time."""

from __future__ import annotations

from typing import Any

from tests.conftest import register
from tests.integration.test_chat_messaging import conversation
from tests.wsclient import online, send_message, token_of


def test_users_on_different_instances_exchange_messages(
    app_factory: Any, pg_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    shared = {"database_url": pg_database_url, "redis_url": redis_url, "redis_prefix": redis_prefix}
    one, two = app_factory(**shared), app_factory(**shared)
    alice, bob = register(one, "alice"), register(two, "bob")
    cid = conversation(one, alice, "bob")
    with (
        online(one, token_of(alice)) as a,
        online(two, token_of(bob), device_id="phone") as bob_phone,
        online(one, token_of(bob), device_id="laptop") as bob_laptop,
    ):
        hello = send_message(a, cid, "hello from one")
        assert bob_phone.expect("message")["message"] == hello  # relayed to the other instance
        assert bob_laptop.expect("message")["message"] == hello  # and delivered locally

        bob_phone.send({"type": "read", "conversation_id": cid, "seq": 1})
        receipt = a.expect("receipt", where=lambda f: f["status"] == "read")
        assert (receipt["user"]["username"], receipt["seq"]) == ("bob", 1)
        assert bob_laptop.expect("receipt")["seq"] == 1  # the reader's other devices hear too

        reply = send_message(bob_phone, cid, "hi from two")
        assert a.expect("message")["message"] == reply
        assert bob_laptop.expect("message")["message"] == reply  # own device, other instance
        a.send({"type": "typing", "conversation_id": cid, "state": "start"})
        assert bob_phone.expect("typing")["user"]["username"] == "alice"

    with online(two, token_of(bob), device_id="phone") as bob_phone:  # reconnected elsewhere
        with online(one, token_of(alice)) as a:
            later = send_message(a, cid, "still there?")
        assert bob_phone.expect("message")["message"] == later


def test_who_is_connected_is_known_across_instances(
    app_factory: Any, pg_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    shared = {"database_url": pg_database_url, "redis_url": redis_url, "redis_prefix": redis_prefix}
    one, two = app_factory(**shared), app_factory(**shared)
    alice, bob = register(one, "alice"), register(one, "bob")
    users = one.get("/api/v1/me", headers=alice).json(), one.get("/api/v1/me", headers=bob).json()
    alice_id, bob_id = (int(user["id"]) for user in users)
    hub = one.app.state.services.realtime

    def connected() -> set[int]:
        return set(one.portal.call(hub.connected, [alice_id, bob_id]))

    assert connected() == set()
    with online(one, token_of(alice)), online(two, token_of(bob)):
        assert connected() == {alice_id, bob_id}  # bob only through the registry
    assert connected() == set()
