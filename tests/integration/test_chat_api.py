"""Chat's REST API through the real app: conversations, members, access, history paging."""

from __future__ import annotations

from typing import Any

from tests.conftest import register
from tests.integration.test_chat_messaging import conversation, history
from tests.wsclient import online, send_message, token_of


def test_creating_conversations(client: Any) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    created = client.post("/api/v1/conversations", json={"members": ["Bob"]}, headers=alice)
    assert created.status_code == 201
    body = created.json()
    assert body["kind"] == "direct" and body["name"] is None
    assert [m["username"] for m in body["members"]] == ["alice", "bob"]
    assert body["last_message"] is None and body["unread_count"] == 0 and body["last_seq"] == 0
    again = client.post("/api/v1/conversations", json={"members": ["alice"]}, headers=bob)
    assert again.status_code == 201 and again.json()["id"] == body["id"]
    named = client.post(
        "/api/v1/conversations", json={"members": ["bob"], "name": " Plans "}, headers=alice
    )
    assert named.json()["kind"] == "group" and named.json()["name"] == "Plans"
    assert named.json()["id"] != body["id"]
    post = lambda body: client.post("/api/v1/conversations", json=body, headers=alice)  # noqa: E731
    unknown = post({"members": ["bob", "nobody", "Ghost"]})
    assert unknown.status_code == 400
    error = unknown.json()["error"]
    assert error["code"] == "unknown_users" and error["field"] == "members"
    assert "nobody" in error["message"] and "ghost" in error["message"]
    for body in ({"members": []}, {"members": ["alice"]}):
        assert post(body).json()["error"]["code"] == "no_members"
    too_many = post({"members": [f"user_{i}" for i in range(500)], "name": "everyone"})
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == "group_too_large"
    assert post({"members": "bob"}).status_code == 400
    assert post({"members": ["bob"], "name": "x" * 101}).json()["error"]["code"] == "invalid_name"
    assert client.post("/api/v1/conversations", json={"members": ["bob"]}).status_code == 401


def test_non_members_get_404_everywhere(client: Any) -> None:
    alice, _, carol = register(client, "alice"), register(client, "bob"), register(client, "carol")
    cid = conversation(client, alice, "bob", name="private")
    paths = [
        ("GET", "/api/v1/conversations/{}", None),
        ("GET", "/api/v1/conversations/{}/messages", None),
        ("POST", "/api/v1/conversations/{}/members", {"members": ["carol"]}),
        ("DELETE", "/api/v1/conversations/{}/members/bob", None),
    ]
    for method, path, body in paths:
        for which in (cid, "999999", "abc", "9" * 40):
            response = client.request(method, path.format(which), json=body, headers=carol)
            assert response.status_code == 404, (method, path, which)
            assert response.json()["error"]["code"] == "conversation_not_found"
    assert client.get("/api/v1/conversations", headers=carol).json()["items"] == []


def test_membership_changes_are_system_messages(client: Any) -> None:
    alice, bob, carol = (
        register(client, "alice"),
        register(client, "bob"),
        register(client, "carol"),
    )
    dave = register(client, "dave")
    cid = conversation(client, alice, "bob", name="team")
    with online(client, token_of(carol)) as c, online(client, token_of(bob)) as b:
        added = client.post(
            f"/api/v1/conversations/{cid}/members",
            json={"members": ["carol", "dave", "bob"]},
            headers=bob,
        )
        assert added.status_code == 200
        usernames = [m["username"] for m in added.json()["members"]]
        assert usernames == ["alice", "bob", "carol", "dave"]
        announced = c.expect("message")["message"]  # the new member hears of it
        assert announced["message_type"] == "system"
        assert announced["content"] == "bob added carol, dave"
        assert b.expect("message")["message"] == announced
        unchanged = client.post(
            f"/api/v1/conversations/{cid}/members", json={"members": ["carol"]}, headers=alice
        )
        assert unchanged.status_code == 200 and unchanged.json()["last_seq"] == 1
        forbidden = client.delete(f"/api/v1/conversations/{cid}/members/carol", headers=bob)
        assert forbidden.status_code == 403  # only the creator removes others
        removed = client.delete(f"/api/v1/conversations/{cid}/members/carol", headers=alice)
        assert removed.status_code == 204
        assert c.expect("message")["message"]["content"] == "alice removed carol"
    assert (
        client.delete(f"/api/v1/conversations/{cid}/members/dave", headers=dave).status_code == 204
    )
    gone = client.get(f"/api/v1/conversations/{cid}/messages", headers=carol)
    assert gone.status_code == 404
    assert (
        client.delete(f"/api/v1/conversations/{cid}/members/carol", headers=alice).status_code
        == 404
    )
    contents = [(m["message_type"], m["content"]) for m in history(client, alice, cid)]
    assert contents == [
        ("system", "bob added carol, dave"),
        ("system", "alice removed carol"),
        ("system", "dave left"),
    ]
    direct = conversation(client, alice, "bob")
    refused = client.post(
        f"/api/v1/conversations/{direct}/members", json={"members": ["carol"]}, headers=alice
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "direct_conversation"


def test_history_pages_by_seq(client: Any) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a:
        for i in range(1, 26):
            send_message(a, cid, f"m{i}")

    def seqs(**params: Any) -> tuple[list[int], str | None]:
        response = client.get(
            f"/api/v1/conversations/{cid}/messages", params=params, headers=bob
        ).json()
        return [m["seq"] for m in response["items"]], response["next_cursor"]

    latest, older = seqs(limit=10)
    assert latest == list(range(16, 26)) and older
    middle, oldest = seqs(limit=10, cursor=older)
    assert middle == list(range(6, 16)) and oldest
    assert seqs(limit=10, cursor=oldest) == (list(range(1, 6)), None)
    assert seqs(before_seq=5)[0] == [1, 2, 3, 4]
    newer, cursor = seqs(after_seq=10, limit=5)
    assert newer == [11, 12, 13, 14, 15] and cursor
    assert seqs(after_seq=10, limit=5, cursor=cursor)[0] == [16, 17, 18, 19, 20]
    assert seqs(after_seq=10, before_seq=14) == ([11, 12, 13], None)
    assert seqs(after_seq=25) == ([], None)
    bad = client.get(f"/api/v1/conversations/{cid}/messages?cursor=zzz", headers=bob)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"
    assert (
        client.get(f"/api/v1/conversations/{cid}/messages?limit=101", headers=bob).status_code
        == 400
    )


def test_conversation_list_is_most_recent_first_and_pages(client: Any) -> None:
    alice = register(client, "alice")
    for name in ("bob", "carol", "dave"):
        register(client, name)
    ids = [conversation(client, alice, name) for name in ("bob", "carol", "dave")]
    with online(client, token_of(alice)) as a:
        send_message(a, ids[0], "bump the first")
    mallory = register(client, "mallory")
    with online(client, token_of(mallory)) as m:  # a stranger's send moves nothing up
        m.send({"type": "send", "client_msg_id": "x", "conversation_id": ids[1], "content": "hi"})
        assert m.expect("error")["code"] == "conversation_not_found"
    listing = client.get("/api/v1/conversations?limit=2", headers=alice).json()
    assert [c["id"] for c in listing["items"]] == [ids[0], ids[2]]
    first = listing["items"][0]
    assert first["last_message"]["content"] == "bump the first" and first["last_seq"] == 1
    rest = client.get(
        "/api/v1/conversations",
        params={"limit": 2, "cursor": listing["next_cursor"]},
        headers=alice,
    ).json()
    assert [c["id"] for c in rest["items"]] == [ids[1]] and rest["next_cursor"] is None
    assert client.get("/api/v1/conversations?cursor=bad", headers=alice).status_code == 400
