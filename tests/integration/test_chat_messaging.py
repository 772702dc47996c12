"""Messages over the WebSocket through the real app, on SQLite + in-process and PostgreSQL + Redis."""

from __future__ import annotations

import re
import threading
from contextlib import ExitStack
from typing import Any

from tests.conftest import register
from tests.wsclient import online, send_message, token_of

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def conversation(client: Any, headers: dict[str, str], *members: str, **extra: Any) -> str:
    created = client.post(
        "/api/v1/conversations", json={"members": list(members), **extra}, headers=headers
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def history(client: Any, headers: dict[str, str], cid: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/conversations/{cid}/messages", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_send_ack_delivery_and_idempotent_retry(client: Any) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a, online(client, token_of(bob)) as b:
        a.send(
            {
                "type": "send",
                "client_msg_id": "c-1",
                "conversation_id": cid,
                "content": "hello bob",
                "message_type": "text",
            }
        )
        ack = a.expect("ack")
        assert ack["client_msg_id"] == "c-1"
        message = ack["message"]
        assert set(message) == {
            "id",
            "conversation_id",
            "seq",
            "sender",
            "content",
            "message_type",
            "created_at",
            "client_msg_id",
        }
        assert isinstance(message["id"], str) and message["conversation_id"] == cid
        assert message["seq"] == 1
        assert message["sender"]["username"] == "alice"
        assert message["content"] == "hello bob"
        assert RFC3339_Z.match(message["created_at"])
        assert b.expect("message") == {"type": "message", "message": message}
        assert a.frames(quiet_s=0.2) == []  # the sending connection has its ack, no echo
        # A retry (same client_msg_id) gets the same ack and stores nothing new.
        assert send_message(a, cid, "hello again?", client_msg_id="c-1") == message
        assert send_message(a, cid, "next")["seq"] == 2
    assert history(client, bob, cid)[0] == message  # REST and WebSocket show the same message
    assert [m["content"] for m in history(client, bob, cid)] == ["hello bob", "next"]


def test_errors_of_send(client: Any) -> None:
    alice, _ = register(client, "alice"), register(client, "bob")
    carol = register(client, "carol")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a, online(client, token_of(carol)) as c:
        cases = [
            (c, {"conversation_id": cid, "content": "let me in"}, "conversation_not_found"),
            (a, {"conversation_id": "999999", "content": "x"}, "conversation_not_found"),
            (a, {"conversation_id": "not-an-id", "content": "x"}, "conversation_not_found"),
            (a, {"conversation_id": cid, "content": "x" * 10_001}, "content_too_long"),
            (a, {"conversation_id": cid, "content": "   "}, "empty_content"),
            (a, {"conversation_id": cid, "content": "x", "message_type": "system"}, "invalid_message_type"),
            (a, {"conversation_id": cid, "content": 5}, "invalid_field"),
        ]  # fmt: skip
        for number, (socket, fields, code) in enumerate(cases):
            ref = f"bad-{number}"
            socket.send({"type": "send", "client_msg_id": ref, **fields})
            error = socket.expect("error")
            assert (error["code"], error["ref"]) == (code, ref), fields
        assert send_message(a, cid, "x" * 10_000)["seq"] == 1  # the limit itself is fine
        c.send({"type": "read", "conversation_id": cid, "seq": 1})
        assert c.expect("error")["code"] == "conversation_not_found"
        c.send({"type": "typing", "conversation_id": cid, "state": "start"})
        assert c.expect("error")["code"] == "conversation_not_found"


def test_concurrent_senders_get_gapless_seqs_in_one_order(client: Any) -> None:
    names = ["ann", "ben", "cat"]
    headers = {name: register(client, name) for name in names}
    cid = conversation(client, headers["ann"], "ben", "cat", name="busy")
    per_user = 20
    seen: dict[str, dict[int, str]] = {name: {} for name in names}
    sent: dict[str, list[int]] = {name: [] for name in names}
    failures: list[BaseException] = []

    def talk(name: str, socket: Any) -> None:
        try:
            for i in range(per_user):
                message = send_message(socket, cid, f"{name}-{i}")
                sent[name].append(message["seq"])
                seen[name][message["seq"]] = message["id"]
            # Others' messages that came while this thread waited for its acks, then the rest.
            pushed = [f["message"] for f in socket.skipped if f["type"] == "message"]
            while len(seen[name]) + len(pushed) < per_user * len(names):
                pushed.append(socket.expect("message", timeout_s=10)["message"])
            for message in pushed:
                assert message["seq"] not in seen[name]  # each exactly once
                seen[name][message["seq"]] = message["id"]
        except BaseException as exc:
            failures.append(exc)

    with (
        online(client, token_of(headers["ann"])) as a,
        online(client, token_of(headers["ben"])) as b,
        online(client, token_of(headers["cat"])) as c,
    ):
        threads = [
            threading.Thread(target=talk, args=pair) for pair in zip(names, (a, b, c), strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert not failures, failures
    expected = list(range(1, per_user * len(names) + 1))
    for name in names:
        assert sorted(seen[name]) == expected  # every seq, no gaps, no duplicates
        assert sent[name] == sorted(sent[name])  # one sender's messages keep their order
    assert seen["ann"] == seen["ben"] == seen["cat"]  # the same message at every seq
    stored = history(client, headers["ben"], cid, limit=100)
    assert [m["seq"] for m in stored] == expected
    assert {m["seq"]: m["id"] for m in stored} == seen["ann"]


def test_an_offline_member_catches_up_once_in_order(client: Any) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    other = conversation(client, alice, "bob", name="second")
    with online(client, token_of(alice)) as a:
        for i in range(5):
            send_message(a, cid, f"m{i}")
        send_message(a, other, "elsewhere")
    with online(client, token_of(bob), device_id="phone") as b:
        b.send({"type": "sync", "cursors": {cid: 2}})
        replayed = [b.expect("message")["message"] for _ in range(4)]
        synced = b.expect("synced")
        assert [(m["conversation_id"], m["seq"]) for m in replayed] == [
            (cid, 3),
            (cid, 4),
            (cid, 5),
            (other, 1),  # not in the cursors: everything this device has not confirmed
        ]
        assert synced["cursors"] == {cid: 5, other: 1} and synced["more"] is False
        assert b.frames(quiet_s=0.2) == []  # exactly once
        b.send({"type": "delivered", "conversation_id": cid, "seq": 5})
        b.send({"type": "delivered", "conversation_id": other, "seq": 1})
        b.settle()
    with online(client, token_of(alice)) as a:
        send_message(a, cid, "while you were away")
    with online(client, token_of(bob), device_id="phone") as b:
        b.send({"type": "sync", "cursors": {}})  # the device's confirmed cursors are remembered
        assert b.expect("message")["message"]["content"] == "while you were away"
        assert b.expect("synced")["cursors"] == {cid: 6, other: 1}
        b.send({"type": "sync", "cursors": {"424242": 0}})
        error = b.expect("error")
        assert error["code"] == "conversation_not_found"


def test_every_device_gets_every_message(client: Any) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    token = token_of(bob)
    with (
        online(client, token_of(alice)) as a,
        online(client, token, device_id="phone") as phone,
        online(client, token, device_id="laptop") as laptop,
    ):
        from_alice = send_message(a, cid, "to both devices")
        assert phone.expect("message")["message"] == from_alice
        assert laptop.expect("message")["message"] == from_alice
        from_phone = send_message(phone, cid, "sent from my phone")
        assert laptop.expect("message")["message"] == from_phone  # own sends reach other devices
        assert a.expect("message")["message"] == from_phone
        assert phone.frames(quiet_s=0.2) == []  # the phone had its ack


def test_receipts_unread_counts_and_typing(client: Any) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")

    def unread(headers: dict[str, str]) -> int:
        (item,) = client.get("/api/v1/conversations", headers=headers).json()["items"]
        return int(item["unread_count"])

    with online(client, token_of(alice)) as a, online(client, token_of(bob)) as b:
        for i in range(3):
            send_message(a, cid, f"unread {i}")
        assert unread(bob) == 3 and unread(alice) == 0  # one's own messages are never unread
        b.send({"type": "delivered", "conversation_id": cid, "seq": 3})
        receipt = a.expect("receipt")
        assert receipt["status"] == "delivered" and receipt["seq"] == 3
        b.send({"type": "read", "conversation_id": cid, "seq": 2})
        receipt = a.expect("receipt")
        assert receipt == {
            "type": "receipt",
            "conversation_id": cid,
            "user": receipt["user"],
            "status": "read",
            "seq": 2,
        }
        assert receipt["user"]["username"] == "bob"
        assert unread(bob) == 1
        b.send({"type": "read", "conversation_id": cid, "seq": 99})  # past the end: up to the last
        assert a.expect("receipt")["seq"] == 3
        assert unread(bob) == 0
        b.send({"type": "read", "conversation_id": cid, "seq": 1})  # cursors never move back
        assert a.frames(quiet_s=0.2) == []
        assert unread(bob) == 0
        # Typing reaches the others, not stored, at most one `start` per 2 s.
        for _ in range(3):
            a.send({"type": "typing", "conversation_id": cid, "state": "start"})
        a.send({"type": "typing", "conversation_id": cid, "state": "stop"})
        frames = [f for f in b.frames(quiet_s=0.3) if f["type"] == "typing"]
        assert [f["state"] for f in frames] == ["start", "stop"]
        assert frames[0]["user"]["username"] == "alice" and frames[0]["conversation_id"] == cid
        assert a.frames(quiet_s=0.1) == []  # not echoed to the typist


def test_metrics_count_messages_and_time_their_delivery(client: Any) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a, online(client, token_of(bob)) as b:
        for i in range(3):
            send_message(a, cid, f"m{i}", client_msg_id=f"c{i}")
            b.expect("message")
        send_message(a, cid, "m0", client_msg_id="c0")  # a retry: stored once, counted once
        b.expect("message")
    text = client.get("/metrics").text
    assert re.search(r"^plaza_chat_messages_total 3\.0$", text, re.M), text
    delivered = re.search(r"^plaza_ws_delivery_seconds_count (\S+)$", text, re.M)
    assert delivered is not None and float(delivered.group(1)) >= 4  # one per frame to bob
    assert "plaza_ws_connections" in text and "plaza_ws_slow_clients_total" in text


def test_new_conversations_reach_their_members_at_once(client: Any) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    _, dave = register(client, "carol"), register(client, "dave")
    with online(client, token_of(bob)) as b, online(client, token_of(dave)) as d:
        direct = conversation(client, alice, "bob")
        frame = b.expect("conversation")["conversation"]
        assert (frame["id"], frame["kind"], frame["unread_count"]) == (direct, "direct", 0)
        conversation(client, alice, "bob")  # the same direct conversation: nothing new
        assert [f for f in b.frames(quiet_s=0.3) if f["type"] == "conversation"] == []
        group = conversation(client, alice, "bob", "carol", name="Trip")
        assert b.expect("conversation")["conversation"]["name"] == "Trip"
        added = client.post(
            f"/api/v1/conversations/{group}/members", json={"members": ["dave"]}, headers=alice
        )
        assert added.status_code == 200
        joined = d.expect("conversation")["conversation"]
        assert joined["id"] == group and "dave" in [m["username"] for m in joined["members"]]


def test_group_receipts_are_coalesced_to_one_a_second(client: Any) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    register(client, "carol")
    group = conversation(client, alice, "bob", "carol", name="g")
    with online(client, token_of(alice)) as a, online(client, token_of(bob)) as b:
        for i in range(3):
            send_message(a, group, f"m{i}")
        for seq in (1, 2, 3):
            b.send({"type": "read", "conversation_id": group, "seq": seq})
        b.settle()
        reads = [
            f["seq"]
            for f in a.frames(quiet_s=1.5)
            if f["type"] == "receipt" and f["status"] == "read"
        ]
        assert reads == [1, 3]  # the first at once, the newest when the second is over


def test_cursor_frames_from_many_members_at_once_each_count(client: Any) -> None:
    """Cursor frames arriving together are written together; each keeps its own outcome."""
    alice = register(client, "alice")
    readers = {name: register(client, name) for name in ("bob", "carol", "dave", "erin")}
    stranger = register(client, "mallory")
    group = conversation(client, alice, *readers, name="crowd")
    with ExitStack() as stack:
        a = stack.enter_context(online(client, token_of(alice)))
        sockets = {n: stack.enter_context(online(client, token_of(h))) for n, h in readers.items()}
        m = stack.enter_context(online(client, token_of(stranger)))
        for i in range(4):
            send_message(a, group, f"m{i}")
        # Every reader confirms at once (bob reads only as far as 2), and a stranger tries too.
        m.send({"type": "delivered", "conversation_id": group, "seq": 4})
        for name, socket in sockets.items():
            socket.send({"type": "delivered", "conversation_id": group, "seq": 4})
            socket.send(
                {"type": "read", "conversation_id": group, "seq": 2 if name == "bob" else 4}
            )
        assert m.expect("error")["code"] == "conversation_not_found"
        receipts = [f for f in a.frames(quiet_s=0.5) if f["type"] == "receipt"]
        read = {f["user"]["username"]: f["seq"] for f in receipts if f["status"] == "read"}
        assert read == {"bob": 2, "carol": 4, "dave": 4, "erin": 4}
        delivered = {
            f["user"]["username"]: f["seq"] for f in receipts if f["status"] == "delivered"
        }
        # A delivery that a read in the same write covers needs no receipt of its own; bob's does.
        assert delivered["bob"] == 4 and set(delivered.values()) == {4}
        for socket in sockets.values():
            socket.settle()
    for name, headers in readers.items():
        (item,) = client.get("/api/v1/conversations", headers=headers).json()["items"]
        assert item["unread_count"] == (2 if name == "bob" else 0), name
    assert client.get("/api/v1/conversations", headers=stranger).json()["items"] == []


def test_sends_arriving_together_keep_their_own_outcomes(client: Any) -> None:
    """A retry racing its original from another device, and a stranger's sends, in the same
    moment as members' sends: one message per client_msg_id, errors for the stranger, no gaps."""
    alice, bob, mallory = (register(client, n) for n in ("alice", "bob", "mallory"))
    cid = conversation(client, alice, "bob")
    rounds = 10

    def send(socket: Any, client_msg_id: str, content: str) -> None:
        socket.send(
            {
                "type": "send",
                "client_msg_id": client_msg_id,
                "conversation_id": cid,
                "content": content,
                "message_type": "text",
            }
        )

    with ExitStack() as stack:
        a1, a2, b, m = (
            stack.enter_context(online(client, token_of(h), device_id=d))
            for h, d in ((alice, "phone"), (alice, "laptop"), (bob, "bob"), (mallory, "m"))
        )
        for i in range(rounds):  # nothing waits for an answer: the frames arrive together
            send(a1, f"a-{i}", f"from alice {i}")
            send(a2, f"a-{i}", f"from alice {i}")  # the same send again, from the other device
            send(b, f"b-{i}", f"from bob {i}")
            send(m, f"m-{i}", "not a member")
        acks: dict[str, dict[str, Any]] = {}
        for socket in (a1, a2, b):
            mine = [socket.expect("ack") for _ in range(rounds)]
            for ack in mine:
                acks.setdefault(ack["client_msg_id"], ack["message"])
                assert ack["message"] == acks[ack["client_msg_id"]]  # one message per send
        errors = [m.expect("error") for _ in range(rounds)]
        assert {e["code"] for e in errors} == {"conversation_not_found"}
        assert sorted(e["ref"] for e in errors) == sorted(f"m-{i}" for i in range(rounds))
    stored = history(client, bob, cid, limit=100)
    assert [s["seq"] for s in stored] == list(range(1, 2 * rounds + 1))
    assert {s["client_msg_id"] for s in stored} == set(acks)
    assert {s["id"] for s in stored} == {a["id"] for a in acks.values()}


def test_sends_to_many_conversations_at_once_number_each_without_gaps(client: Any) -> None:
    """Sends to several conversations arriving together (their seqs are taken together): each
    conversation numbers its messages 1, 2, 3... without gaps or repeats."""
    alice, bob, carol = (register(client, n) for n in ("alice", "bob", "carol"))
    with_bob = conversation(client, alice, "bob")
    with_carol = conversation(client, alice, "carol")
    group = conversation(client, alice, "bob", "carol", name="all")
    rounds = {with_bob: 3, with_carol: 1, group: 2}  # each round: alice and one other member send
    other = {with_bob: "b", with_carol: "c", group: "b"}
    with ExitStack() as stack:
        sockets = {
            name: stack.enter_context(online(client, token_of(h)))
            for name, h in (("a", alice), ("b", bob), ("c", carol))
        }
        for round_ in range(3):  # nothing waits for an answer: the frames arrive together
            for cid, count in rounds.items():
                if round_ < count:
                    for name in ("a", other[cid]):
                        sockets[name].send(
                            {
                                "type": "send",
                                "client_msg_id": f"{name}-{cid}-{round_}",
                                "conversation_id": cid,
                                "content": f"{name} {round_}",
                                "message_type": "text",
                            }
                        )
        sent = {"a": 6, "b": 5, "c": 1}
        acks = [
            sockets[n].expect("ack")["message"] for n, count in sent.items() for _ in range(count)
        ]
    for cid, count in rounds.items():
        expected = list(range(1, 2 * count + 1))
        assert [s["seq"] for s in history(client, alice, cid, limit=100)] == expected
        assert sorted(m["seq"] for m in acks if m["conversation_id"] == cid) == expected
