"""Two app instances sharing PostgreSQL and Redis: an edit or delete on one is seen at once by the other."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import register


def location(client: Any, code: str) -> str | int:
    response = client.get(f"/{code}", follow_redirects=False)
    return response.headers["location"] if response.status_code == 302 else response.status_code


def eventually(predicate: Any, timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_edits_and_deletes_reach_every_process(
    app_factory: Any, pg_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    shared = {"database_url": pg_database_url, "redis_url": redis_url, "redis_prefix": redis_prefix}
    one, two = app_factory(**shared), app_factory(**shared)
    owner = register(one, "owner")
    created = one.post(
        "/api/v1/shorten",
        json={"long_url": "https://example.com/v1", "custom_alias": "shared"},
        headers=owner,
    )
    assert created.status_code == 201
    assert location(two, "shared") == "https://example.com/v1"  # now in two's LRU

    edit = one.patch(
        "/api/v1/urls/shared", json={"long_url": "https://example.com/v2"}, headers=owner
    )
    assert edit.status_code == 200
    assert eventually(lambda: location(two, "shared") == "https://example.com/v2")

    assert one.delete("/api/v1/urls/shared", headers=owner).status_code == 204
    assert eventually(lambda: location(two, "shared") == 404)


def test_a_code_first_seen_as_unknown_works_once_created_elsewhere(
    app_factory: Any, pg_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    shared = {"database_url": pg_database_url, "redis_url": redis_url, "redis_prefix": redis_prefix}
    one, two = app_factory(**shared), app_factory(**shared)
    assert location(two, "later") == 404  # cached as unknown in two's LRU and in Redis
    assert (
        one.post(
            "/api/v1/shorten", json={"long_url": "https://example.com/l", "custom_alias": "later"}
        ).status_code
        == 201
    )
    assert eventually(lambda: location(two, "later") == "https://example.com/l")


def test_follows_mutes_and_blocks_reach_every_process_feed_at_once(
    app_factory: Any, pg_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """Each process keeps whom a reader follows and hides for a while (AUDIENCE_TTL_S, 10 s): a change
    made through one must show in the others' feed reads within a moment, not after that."""
    shared = {"database_url": pg_database_url, "redis_url": redis_url, "redis_prefix": redis_prefix}
    one, two = app_factory(**shared), app_factory(**shared)
    reader, author = register(one, "reader"), register(one, "author")
    created = one.post("/api/v1/posts", json={"content": "hello"}, headers=author)
    assert created.status_code == 201

    def seen_on_two() -> list[str]:
        page = two.get("/api/v1/feed", headers=reader)
        assert page.status_code == 200, page.text
        return [p["content"] for p in page.json()["items"]]

    assert seen_on_two() == []  # two now holds the reader's audience: following nobody
    assert one.post("/api/v1/users/author/follow", headers=reader).status_code == 200
    assert eventually(lambda: seen_on_two() == ["hello"])
    assert one.post("/api/v1/users/author/mute", headers=reader).status_code == 200
    assert eventually(lambda: seen_on_two() == [])
    assert one.delete("/api/v1/users/author/mute", headers=reader).status_code == 200
    assert eventually(lambda: seen_on_two() == ["hello"])
    assert one.post("/api/v1/users/reader/block", headers=author).status_code == 200
    assert eventually(lambda: seen_on_two() == [])


def test_likes_reposts_replies_and_deletes_show_in_every_process_at_once(
    app_factory: Any, pg_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """Each process keeps post views a while (30 s): a change made through one must show in the
    others' reads within a moment."""
    shared = {"database_url": pg_database_url, "redis_url": redis_url, "redis_prefix": redis_prefix}
    one, two = app_factory(**shared), app_factory(**shared)
    author, fan = register(one, "author"), register(one, "fan")
    created = one.post("/api/v1/posts", json={"content": "hello"}, headers=author)
    assert created.status_code == 201
    post_id = created.json()["id"]

    def on_two() -> dict[str, Any] | int:
        response = two.get(f"/api/v1/posts/{post_id}")
        return dict(response.json()) if response.status_code == 200 else response.status_code

    def counts() -> tuple[int, int, int] | int:
        view = on_two()
        if isinstance(view, int):
            return view
        return view["like_count"], view["repost_count"], view["reply_count"]

    assert counts() == (0, 0, 0)  # now held by two
    assert one.post(f"/api/v1/posts/{post_id}/like", headers=fan).status_code == 200
    assert eventually(lambda: counts() == (1, 0, 0))
    assert one.post(f"/api/v1/posts/{post_id}/repost", headers=fan).status_code == 201
    assert eventually(lambda: counts() == (1, 1, 0))
    reply = one.post("/api/v1/posts", json={"content": "hi", "reply_to": post_id}, headers=fan)
    assert reply.status_code == 201
    assert eventually(lambda: counts() == (1, 1, 1))
    assert one.delete(f"/api/v1/posts/{reply.json()['id']}", headers=fan).status_code == 204
    assert eventually(lambda: counts() == (1, 1, 0))
    assert one.delete(f"/api/v1/posts/{post_id}/like", headers=fan).status_code == 200
    assert eventually(lambda: counts() == (0, 1, 0))
    assert one.delete(f"/api/v1/posts/{post_id}", headers=author).status_code == 204
    assert eventually(lambda: on_two() == 404)


def test_an_author_becoming_a_celebrity_is_merged_in_every_process_at_once(
    app_factory: Any, pg_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """From the follow that reaches the threshold, an author's posts are no longer pushed: every
    process must start merging them into their followers' feeds at once."""
    shared = {
        "database_url": pg_database_url,
        "redis_url": redis_url,
        "redis_prefix": redis_prefix,
        "feed_celebrity_threshold": 2,
    }
    one, two = app_factory(**shared), app_factory(**shared)
    star, reader, fan = register(one, "star"), register(one, "reader"), register(one, "fan")
    assert one.post("/api/v1/users/star/follow", headers=reader).status_code == 200

    def seen_on_two() -> list[str]:
        page = two.get("/api/v1/feed", headers=reader)
        assert page.status_code == 200, page.text
        return [p["content"] for p in page.json()["items"]]

    assert seen_on_two() == []  # two holds the reader's audience: star is not a celebrity
    assert one.post("/api/v1/users/star/follow", headers=fan).status_code == 200  # now one
    assert one.post("/api/v1/posts", json={"content": "shine"}, headers=star).status_code == 201
    assert eventually(lambda: seen_on_two() == ["shine"])
    # Two keeps the star's newest ids for 5 s from the first read that finds their timeline built
    # (the read above may have built it); the next post must not wait for that.
    assert seen_on_two() == ["shine"] and seen_on_two() == ["shine"]
    assert one.post("/api/v1/posts", json={"content": "again"}, headers=star).status_code == 201
    assert eventually(lambda: seen_on_two() == ["again", "shine"], timeout_s=2.0)


def test_a_token_revoked_through_one_process_is_refused_by_every_other(
    app_factory: Any, pg_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """Each process keeps the tokens it has seen a while (60 s): a logout must end the token's use
    everywhere within a moment."""
    shared = {"database_url": pg_database_url, "redis_url": redis_url, "redis_prefix": redis_prefix}
    one, two = app_factory(**shared), app_factory(**shared)
    headers = register(one, "leaving")
    assert two.get("/api/v1/me", headers=headers).status_code == 200  # now held by two
    assert two.get("/api/v1/feed", headers=headers).status_code == 200
    assert one.delete("/api/v1/auth/token", headers=headers).status_code == 204
    assert eventually(lambda: two.get("/api/v1/me", headers=headers).status_code == 401)
    refused = two.get("/api/v1/feed", headers=headers)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"
