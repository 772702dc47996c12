"""Message search through the real API, on SQLite (FTS5 trigram) and PostgreSQL (pg_trgm)."""

from __future__ import annotations

from typing import Any

from tests.conftest import register
from tests.integration.test_chat_messaging import conversation
from tests.wsclient import online, send_message, token_of


def search(client: Any, headers: dict[str, str], **params: Any) -> list[str]:
    response = client.get("/api/v1/search/messages", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [m["content"] for m in response.json()["items"]]


def test_search_finds_words_in_latin_and_cjk_text_only_where_the_caller_may_read(
    client: Any,
) -> None:
    alice, bob, carol = (
        register(client, "alice"),
        register(client, "bob"),
        register(client, "carol"),
    )
    with_bob = conversation(client, alice, "bob")
    with_carol = conversation(client, alice, "carol")
    texts_bob = [
        "Lunch at the Noodle Bar?",
        "私は東京に住んでいます",
        "나는 서울에 살아요",
        "我们明天在北京见面",
        "100% sure, under_score and back\\slash",
    ]
    with online(client, token_of(alice)) as a:
        for text in texts_bob:
            send_message(a, with_bob, text)
        send_message(a, with_carol, "noodles again tomorrow")
    assert search(client, alice, q="noodle") == [
        "noodles again tomorrow",
        "Lunch at the Noodle Bar?",
    ]
    assert search(client, alice, q="NOODLE BAR") == ["Lunch at the Noodle Bar?"]
    assert search(client, alice, q="東京") == ["私は東京に住んでいます"]  # two characters
    assert search(client, alice, q="東京に住") == ["私は東京に住んでいます"]
    assert search(client, alice, q="서울") == ["나는 서울에 살아요"]
    assert search(client, alice, q="北京见面") == ["我们明天在北京见面"]
    assert search(client, alice, q="100%") == ["100% sure, under_score and back\\slash"]
    assert search(client, alice, q="r_s") == ["100% sure, under_score and back\\slash"]
    assert search(client, alice, q="%") == ["100% sure, under_score and back\\slash"]
    assert search(client, alice, q="k\\s") == ["100% sure, under_score and back\\slash"]
    assert search(client, alice, q='"*') == []  # FTS syntax is text here
    assert search(client, alice, q="nothing like this") == []

    # Only conversations the caller is in; one of them with conversation_id.
    assert search(client, carol, q="noodle") == ["noodles again tomorrow"]
    assert search(client, bob, q="noodle") == ["Lunch at the Noodle Bar?"]
    assert search(client, alice, q="noodle", conversation_id=with_carol) == [
        "noodles again tomorrow"
    ]
    hidden = client.get(
        "/api/v1/search/messages",
        params={"q": "noodle", "conversation_id": with_bob},
        headers=carol,
    )
    assert hidden.status_code == 404
    # System messages (who joined) are not searched; a member who left searches no more.
    group = client.post(
        "/api/v1/conversations", json={"members": ["bob", "carol"], "name": "g"}, headers=alice
    ).json()["id"]
    with online(client, token_of(alice)) as a:
        send_message(a, group, "group noodle plans")
    assert (
        client.delete(f"/api/v1/conversations/{group}/members/carol", headers=carol).status_code
        == 204
    )
    assert search(client, carol, q="noodle") == ["noodles again tomorrow"]
    assert "group noodle plans" in search(client, bob, q="noodle")

    for bad in ({"q": ""}, {"q": "   "}, {"q": "x" * 201}, {}):
        response = client.get("/api/v1/search/messages", params=bad, headers=alice)
        assert response.status_code == 400, (bad, response.text)
    assert client.get("/api/v1/search/messages", params={"q": "x"}).status_code == 401


def test_search_pages_newest_first(client: Any) -> None:
    alice, _ = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a:
        for i in range(7):
            send_message(a, cid, f"report {i}")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"q": "report", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/search/messages", params=params, headers=alice).json()
        seen += [m["content"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"report {i}" for i in reversed(range(7))]
    bad = client.get("/api/v1/search/messages", params={"q": "x", "cursor": "zz"}, headers=alice)
    assert bad.status_code == 400
