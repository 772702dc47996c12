"""Message search through the real API, on SQLite (FTS5 trigram) and PostgreSQL (pg_trgm)."""

from __future__ import annotations

from typing import Any

import pytest

from plaza.chat import search
from tests.conftest import register
from tests.integration.test_chat_messaging import conversation
from tests.wsclient import online, send_message, token_of

SEARCH = "/api/v1/search/messages"


def found(client: Any, headers: dict[str, str], q: str, **params: Any) -> list[str]:
    response = client.get(SEARCH, params={"q": q, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return [m["content"] for m in response.json()["items"]]


def test_finds_words_in_cjk_and_latin_text_newest_first(client: Any) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    texts = [
        "私は東京に住んでいます",
        "나는 서울에 살아요",
        "我住在北京市朝阳区",
        "Hello World, from Plaza",
        "the world is wide",
        "東京タワーで会いましょう",
    ]
    with online(client, token_of(alice)) as a:
        for text in texts:
            send_message(a, cid, text)
    assert found(client, bob, "東京") == ["東京タワーで会いましょう", "私は東京に住んでいます"]
    assert found(client, bob, "東京に住") == ["私は東京に住んでいます"]
    assert found(client, bob, "서울") == ["나는 서울에 살아요"]
    assert found(client, bob, "서울에 살아") == ["나는 서울에 살아요"]
    assert found(client, bob, "北京市") == ["我住在北京市朝阳区"]
    assert found(client, bob, "WORLD") == ["the world is wide", "Hello World, from Plaza"]
    assert found(client, bob, "world hello") == ["Hello World, from Plaza"]  # every word
    assert found(client, bob, "is") == ["the world is wide"]  # short words too
    assert found(client, bob, "plaza tokyo") == []
    message = client.get(SEARCH, params={"q": "hello"}, headers=bob).json()["items"][0]
    assert message["conversation_id"] == cid and message["sender"]["username"] == "alice"
    assert message["seq"] == 4 and message["message_type"] == "text"


def test_only_conversations_the_caller_is_in(client: Any) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    carol = register(client, "carol")
    with_bob = conversation(client, alice, "bob")
    with_carol = conversation(client, alice, "carol", name="plans")
    with online(client, token_of(alice)) as a:
        send_message(a, with_bob, "secret plans for bob")
        send_message(a, with_carol, "secret plans for carol")
    assert found(client, alice, "secret") == ["secret plans for carol", "secret plans for bob"]
    assert found(client, bob, "secret") == ["secret plans for bob"]
    assert found(client, carol, "secret") == ["secret plans for carol"]
    assert found(client, alice, "secret", conversation_id=with_bob) == ["secret plans for bob"]
    assert found(client, bob, "se") == ["secret plans for bob"]
    for cid in (with_carol, "999999", "not-an-id"):  # not a member: not revealed
        response = client.get(SEARCH, params={"q": "secret", "conversation_id": cid}, headers=bob)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "conversation_not_found"
    # Who leaves a group no longer finds its messages; system messages are not search results.
    left = client.delete(f"/api/v1/conversations/{with_carol}/members/carol", headers=carol)
    assert left.status_code == 204
    assert found(client, carol, "secret") == [] and found(client, alice, "carol left") == []
    assert client.get(SEARCH, params={"q": "secret"}).status_code == 401


def test_user_input_is_never_syntax(client: Any) -> None:
    alice, _ = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a:
        for text in ['say "*" twice', "100% sure", "snake_case", "a\\b", "NEAR(x y)", "plain"]:
            send_message(a, cid, text)
    assert found(client, alice, '"*') == ['say "*" twice']
    assert found(client, alice, '"*"') == ['say "*" twice']
    assert found(client, alice, "%") == ["100% sure"]
    assert found(client, alice, "0%") == ["100% sure"]
    assert found(client, alice, "_") == ["snake_case"]
    assert found(client, alice, "e_c") == ["snake_case"]
    assert found(client, alice, "a\\b") == ["a\\b"]
    assert found(client, alice, "\\") == ["a\\b"]
    assert found(client, alice, "NEAR(x") == ["NEAR(x y)"]
    for q in ("AND", "OR", "NOT", "*", "^pl", "pl*", ":", "'", "content:plain", "{x}"):
        assert client.get(SEARCH, params={"q": q}, headers=alice).status_code == 200, q


def test_query_errors_name_q(client: Any) -> None:
    alice = register(client, "alice")
    for params in ({}, {"q": ""}, {"q": "   "}, {"q": "x" * 201}, {"q": " ".join("abcdefghijk")}):
        response = client.get(SEARCH, params=params, headers=alice)
        assert response.status_code == 400, params
        assert response.json()["error"]["field"] == "q"
    assert client.get(SEARCH, params={"q": ""}, headers=alice).json()["error"]["code"] == (
        "empty_query"
    )
    bad = client.get(SEARCH, params={"q": "x", "cursor": "nonsense"}, headers=alice)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"
    assert client.get(SEARCH, params={"q": "x", "limit": 101}, headers=alice).status_code == 400


def pages(client: Any, headers: dict[str, str], q: str, limit: int) -> list[list[str]]:
    """Every page of a search, following next_cursor."""
    found, cursor = [], None
    for _ in range(50):
        params = {"q": q, "limit": limit, **({"cursor": cursor} if cursor else {})}
        page = client.get(SEARCH, params=params, headers=headers).json()
        found.append([m["content"] for m in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError("paging did not end")


def test_pages_newest_first(client: Any) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a:
        for i in range(1, 26):
            send_message(a, cid, f"note {i} 東京" if i % 2 else f"other {i}")
    expected = [f"note {i} 東京" for i in range(25, 0, -2)]
    for q in ("note", "東京"):  # through the index, and the short-word scan
        found = pages(client, bob, q, limit=5)
        assert [len(page) for page in found] == [5, 5, 3], q
        assert [content for page in found for content in page] == expected, q


def test_short_word_queries_read_a_bounded_window_per_page(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "SHORT_QUERY_WINDOW", 4)
    alice, bob = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a:
        for i in range(1, 11):
            send_message(a, cid, f"東京 {i}" if i in (1, 2, 9) else f"大阪 {i}")
    # Windows of 4 messages: 10-7 (finds 9), 6-3 (none: an empty page that goes on), 2-1.
    assert pages(client, bob, "東京", limit=5) == [["東京 9"], [], ["東京 2", "東京 1"]]
    assert pages(client, bob, "東京", limit=1) == [["東京 9"], [], ["東京 2"], ["東京 1"]]
