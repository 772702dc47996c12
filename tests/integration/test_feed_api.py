"""The news feed through the real API, on SQLite + in-process and on PostgreSQL + Redis."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.conftest import register
from tests.wsclient import online, token_of

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
FANOUT_DEADLINE_S = 2.0  # the contract: a followed author's post shows within 2 seconds


def post(client: Any, headers: dict[str, str], content: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/api/v1/posts", json={"content": content, **extra}, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def follow(client: Any, headers: dict[str, str], username: str, on: bool = True) -> dict[str, Any]:
    call = client.post if on else client.delete
    response = call(f"/api/v1/users/{username}/follow", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def feed(client: Any, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/feed", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def contents(client: Any, headers: dict[str, str], **params: Any) -> list[str]:
    return [p["content"] for p in feed(client, headers, **params)["items"]]


def whole_feed(client: Any, headers: dict[str, str], limit: int, **params: Any) -> list[str]:
    """Every page, following next_cursor: post ids in the order served."""
    ids: list[str] = []
    cursor = None
    for _ in range(1000):
        page = feed(
            client, headers, limit=limit, **({"cursor": cursor} if cursor else {}), **params
        )
        ids += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("the feed never ended")


def eventually(check: Callable[[], bool], timeout_s: float = FANOUT_DEADLINE_S) -> float:
    """Seconds until `check` held; fails after `timeout_s`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s")
        time.sleep(0.02)
    return time.monotonic() - started


def test_posts_their_shape_reactions_and_errors(client: Any) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    first = post(client, alice, "Hello, Plaza!", media_urls=["https://example.org/cat.png"])
    assert set(first) >= {
        "id", "author", "content", "media_urls", "created_at", "like_count",
        "repost_count", "reply_count", "reply_to",
    }  # fmt: skip
    assert first["author"]["username"] == "alice" and isinstance(first["id"], str)
    assert first["media_urls"] == ["https://example.org/cat.png"]
    assert RFC3339_Z.match(first["created_at"])
    assert (first["like_count"], first["repost_count"], first["reply_count"]) == (0, 0, 0)
    assert client.get(f"/api/v1/posts/{first['id']}").json() == first

    for body, code in [
        ({"content": ""}, "invalid_content"),
        ({"content": "   "}, "invalid_content"),
        ({"content": "x" * 5001}, "invalid_content"),
        ({"content": "x", "media_urls": ["javascript:alert(1)"]}, "invalid_media_url"),
        ({"content": "x", "media_urls": ["https://e.org/1"] * 5}, "too_many_media"),
        ({"content": "x", "reply_to": "12345"}, "invalid_reply_to"),
        ({"content": "x", "reply_to": "not-an-id"}, "invalid_reply_to"),
        ({"content": 5}, None),
    ]:
        response = client.post("/api/v1/posts", json=body, headers=alice)
        assert response.status_code == 400, (body, response.text)
        if code:
            assert response.json()["error"]["code"] == code
    assert post(client, alice, "x" * 5000)["content"] == "x" * 5000
    assert client.post("/api/v1/posts", json={"content": "anon"}).status_code == 401

    # Likes are idempotent per user; counts are exact.
    url = f"/api/v1/posts/{first['id']}/like"
    assert client.post(url, headers=bob).json()["like_count"] == 1
    assert client.post(url, headers=bob).json()["like_count"] == 1
    assert client.post(url, headers=alice).json()["like_count"] == 2
    assert client.delete(url, headers=bob).json()["like_count"] == 1
    assert client.delete(url, headers=bob).json()["like_count"] == 1
    assert client.get(f"/api/v1/posts/{first['id']}").json()["like_count"] == 1
    assert client.post("/api/v1/posts/999999/like", headers=bob).status_code == 404

    # Replies count on their parent; a repost is made once and shows what it reposts.
    reply = post(client, bob, "Welcome!", reply_to=first["id"])
    assert reply["reply_to"] == first["id"]
    made = client.post(f"/api/v1/posts/{first['id']}/repost", headers=bob)
    assert made.status_code == 201, made.text
    again = client.post(f"/api/v1/posts/{first['id']}/repost", headers=bob)
    assert again.status_code == 200 and again.json()["id"] == made.json()["id"]
    assert made.json()["repost_of"] == first["id"]
    assert made.json()["reposted"]["content"] == "Hello, Plaza!"
    shown = client.get(f"/api/v1/posts/{first['id']}").json()
    assert (shown["reply_count"], shown["repost_count"]) == (1, 1)

    # Only the author deletes; the post, and its reposts, are gone everywhere.
    assert client.delete(f"/api/v1/posts/{first['id']}", headers=bob).status_code == 403
    assert client.delete(f"/api/v1/posts/{first['id']}", headers=alice).status_code == 204
    assert client.get(f"/api/v1/posts/{first['id']}").status_code == 404
    assert client.get(f"/api/v1/posts/{made.json()['id']}").status_code == 404
    assert client.delete(f"/api/v1/posts/{first['id']}", headers=alice).status_code == 404
    assert client.get("/api/v1/posts/not-a-number").status_code == 404
    user_posts = client.get("/api/v1/users/bob/posts").json()
    assert [p["content"] for p in user_posts["items"]] == ["Welcome!"]


def test_follows_counts_lists_and_relationships(client: Any) -> None:
    alice, bob, carol = (
        register(client, "alice"),
        register(client, "bob"),
        register(client, "carol"),
    )
    assert follow(client, alice, "bob") == {
        "following": True, "followed_by": False, "muting": False, "blocking": False,
        "blocked_by": False,
    }  # fmt: skip
    follow(client, alice, "bob")  # idempotent
    follow(client, carol, "bob")
    follow(client, bob, "alice")
    profile = client.get("/api/v1/users/bob").json()
    assert (profile["followers_count"], profile["following_count"]) == (2, 1)
    followers = client.get("/api/v1/users/bob/followers", params={"limit": 1}).json()
    assert [u["username"] for u in followers["items"]] == ["carol"]  # most recent first
    rest = client.get(
        "/api/v1/users/bob/followers", params={"cursor": followers["next_cursor"]}
    ).json()
    assert [u["username"] for u in rest["items"]] == ["alice"] and rest["next_cursor"] is None
    following = client.get("/api/v1/users/alice/following").json()
    assert [u["username"] for u in following["items"]] == ["bob"]
    assert client.get("/api/v1/users/bob/followers", params={"cursor": "nope"}).status_code == 400

    assert client.post("/api/v1/users/alice/follow", headers=alice).status_code == 400
    assert client.post("/api/v1/users/nobody/follow", headers=alice).status_code == 404
    # A block ends follows both ways, and stops new ones in either direction.
    blocked = client.post("/api/v1/users/alice/block", headers=bob).json()
    assert blocked["blocking"] and not blocked["following"] and not blocked["followed_by"]
    refused = client.post("/api/v1/users/bob/follow", headers=alice)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "blocked"
    assert client.get("/api/v1/users/bob").json()["followers_count"] == 1
    follow(client, alice, "bob", on=False)  # unfollowing someone not followed is fine
    assert client.delete("/api/v1/users/alice/block", headers=bob).json()["blocking"] is False


def test_feed_holds_followed_and_own_posts_newest_first(client: Any) -> None:
    alice, bob, carol = (
        register(client, "alice"),
        register(client, "bob"),
        register(client, "carol"),
    )
    follow(client, alice, "bob")
    post(client, bob, "bob 1")
    post(client, carol, "carol 1")  # not followed
    post(client, alice, "alice 1")
    post(client, bob, "bob 2")
    page = feed(client, alice)
    assert page["mode"] == "chronological"
    assert [p["content"] for p in page["items"]] == ["bob 2", "alice 1", "bob 1"]
    assert page["next_cursor"] is None
    assert contents(client, carol) == ["carol 1"]
    post(client, carol, "carol 2")  # the author sees it at once, before any fan-out
    assert contents(client, carol) == ["carol 2", "carol 1"]
    assert client.get("/api/v1/feed").status_code == 401
    assert client.get("/api/v1/feed", params={"cursor": "bad"}, headers=alice).status_code == 400
    assert client.get("/api/v1/feed", params={"limit": 101}, headers=alice).status_code == 400
    assert client.get("/api/v1/feed", params={"mode": "best"}, headers=alice).status_code == 400


def test_a_bearer_reads_the_feed_exactly_as_a_session_does(make_client: Any) -> None:
    """Bearer reads take a shorter way through the server than session-cookie reads: what they
    answer, errors included, must be the same."""
    client = make_client(feed_rank_budget_ms=10_000)  # ranked both times, however busy the machine
    alice, bob = register(client, "alice"), register(client, "bob")
    follow(client, alice, "bob")
    first = post(client, bob, "with media", media_urls=["https://example.com/a.png"])
    post(client, bob, "a reply", reply_to=first["id"])
    client.post(f"/api/v1/posts/{first['id']}/like", headers=alice)
    client.post(f"/api/v1/posts/{post(client, alice, 'mine')['id']}/repost", headers=bob)
    for i in range(4):
        post(client, alice, f"alice {i}")
    eventually(lambda: len(feed(client, alice, limit=100)["items"]) == 8)
    token = alice["Authorization"].removeprefix("Bearer ")

    def both(**params: Any) -> tuple[Any, Any]:
        bearer = client.get("/api/v1/feed", params=params, headers=alice)
        client.cookies.set("plaza_session", token)
        try:
            session = client.get("/api/v1/feed", params=params)
        finally:
            client.cookies.clear()
        assert bearer.headers["content-type"] == session.headers["content-type"]
        assert bearer.headers["x-request-id"] and session.headers["x-request-id"]
        return (bearer.status_code, bearer.json()), (session.status_code, session.json())

    cursor = feed(client, alice, limit=3)["next_cursor"]
    for params in (
        {},
        {"limit": 3},
        {"limit": 3, "cursor": cursor},
        {"mode": "ranked", "limit": 5},
        {"mode": "chronological", "limit": 100},
        {"cursor": "bad"},
        {"limit": 0},
        {"limit": 101},
        {"mode": "best"},
        {"cursor": "x" * 201},
    ):
        bearer, session = both(**params)
        assert bearer == session, params
    revoked = client.delete("/api/v1/auth/token", headers=alice)
    assert revoked.status_code == 204
    gone = client.get("/api/v1/feed", headers=alice)
    assert gone.status_code == 401 and gone.json()["error"]["code"] == "invalid_token"


def test_a_new_post_reaches_followers_feeds_within_two_seconds(client: Any) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    follow(client, alice, "bob")
    assert contents(client, alice) == []  # alice's timeline now exists: fan-out must fill it
    post(client, bob, "fresh")
    eventually(lambda: contents(client, alice) == ["fresh"])


def test_follow_backfills_and_unfollow_mute_block_delete_hide(client: Any) -> None:
    alice, bob, carol = (
        register(client, "alice"),
        register(client, "bob"),
        register(client, "carol"),
    )
    for i in range(3):
        post(client, bob, f"bob {i}")
    carols = post(client, carol, "carol 0")
    assert contents(client, alice) == []
    follow(client, alice, "bob")
    assert contents(client, alice) == ["bob 2", "bob 1", "bob 0"]  # backfilled at once
    follow(client, alice, "carol")
    assert contents(client, alice)[0] == "carol 0"

    client.post("/api/v1/users/carol/mute", headers=alice)
    assert "carol 0" not in contents(client, alice)
    client.delete("/api/v1/users/carol/mute", headers=alice)
    assert "carol 0" in contents(client, alice)
    follow(client, alice, "bob", on=False)
    assert contents(client, alice) == ["carol 0"]
    client.delete(f"/api/v1/posts/{carols['id']}", headers=carol)
    assert contents(client, alice) == []  # at once, whatever the timeline still holds
    post(client, carol, "carol 1")
    eventually(lambda: contents(client, alice) == ["carol 1"])
    client.post("/api/v1/users/alice/block", headers=carol)
    assert contents(client, alice) == []
    # Reposts of a hidden author's posts are hidden too.
    follow(client, alice, "bob")
    client.post(f"/api/v1/posts/{post(client, carol, 'carol 2')['id']}/repost", headers=bob)
    eventually(lambda: len(feed(client, bob)["items"]) == 4)  # bob sees his repost
    assert all(p["reposted"] is None for p in feed(client, alice)["items"])


def test_paging_has_no_gaps_or_repeats_across_the_cache_and_sql(make_client: Any) -> None:
    client = make_client(feed_timeline_len=10)  # the cached window: 10 ids
    alice, bob, carol = (
        register(client, "alice"),
        register(client, "bob"),
        register(client, "carol"),
    )
    follow(client, alice, "bob")
    follow(client, alice, "carol")
    feed(client, alice)  # built now: later posts arrive by fan-out, and push older ones out
    made = []
    for i in range(30):
        made.append(post(client, bob if i % 3 else carol, f"post {i}")["id"])
    newest = made[-1]
    eventually(lambda: feed(client, alice, limit=1)["items"][0]["id"] == newest)
    for limit in (1, 4, 7, 30, 100):
        assert whole_feed(client, alice, limit) == made[::-1], limit


def test_celebrities_are_merged_at_read_time(make_client: Any) -> None:
    client = make_client(feed_celebrity_threshold=2)
    star, alice, bob = register(client, "star"), register(client, "alice"), register(client, "bob")
    for i in range(3):
        post(client, star, f"star old {i}")
    follow(client, alice, "star")
    follow(client, bob, "star")  # star now has 2 followers: a celebrity
    follow(client, alice, "bob")
    feed(client, alice)
    post(client, bob, "bob 1")
    post(client, star, "star new")
    post(client, bob, "bob 2")
    expected = ["bob 2", "star new", "bob 1", "star old 2", "star old 1", "star old 0"]
    eventually(lambda: contents(client, alice) == expected)
    assert whole_feed(client, alice, 2) == [p["id"] for p in feed(client, alice)["items"]]


def test_an_inactive_readers_timeline_is_rebuilt_when_they_return(make_client: Any) -> None:
    client = make_client(feed_active_days=1.5 / 86400)  # 1.5 s of absence makes a reader inactive
    alice, bob = register(client, "alice"), register(client, "bob")
    follow(client, alice, "bob")
    post(client, bob, "before")
    assert contents(client, alice) == ["before"]
    time.sleep(2.0)  # alice's timeline expires; fan-out skips her
    post(client, bob, "while away")
    time.sleep(0.5)
    assert contents(client, alice) == ["while away", "before"]


def test_ranked_mode_orders_by_relevance_and_falls_back(make_client: Any) -> None:
    # A budget no busy test machine exceeds: this part checks the order, the last part the budget.
    client = make_client(feed_rank_budget_ms=10_000)
    alice, bob, carol = (
        register(client, "alice"),
        register(client, "bob"),
        register(client, "carol"),
    )
    follow(client, alice, "bob")
    follow(client, alice, "carol")
    popular = post(client, bob, "popular", media_urls=["https://example.org/a.png"])
    for i in range(3):
        client.post(f"/api/v1/posts/{popular['id']}/like", headers=register(client, f"fan{i}"))
    client.post(f"/api/v1/posts/{popular['id']}/like", headers=alice)
    post(client, carol, "plain")
    chronological = feed(client, alice)
    assert [p["content"] for p in chronological["items"]] == ["plain", "popular"]
    ranked = feed(client, alice, mode="ranked")
    assert ranked["mode"] == "ranked"
    assert [p["content"] for p in ranked["items"]] == ["popular", "plain"]
    paged = [p["id"] for p in feed(client, alice, mode="ranked", limit=1)["items"]]
    second = feed(client, alice, mode="ranked", limit=1)["next_cursor"]
    paged += [p["id"] for p in feed(client, alice, mode="ranked", cursor=second)["items"]]
    assert paged == [p["id"] for p in ranked["items"]]

    strict = make_client(feed_rank_budget_ms=0)  # the same database, ranking never in time
    dave = register(strict, "dave")
    follow(strict, dave, "bob")
    follow(strict, dave, "carol")
    fallback = feed(strict, dave, mode="ranked")
    assert fallback["mode"] == "chronological"
    assert [p["content"] for p in fallback["items"]] == ["plain", "popular"]


def test_concurrent_likes_are_counted_exactly(client: Any) -> None:
    author = register(client, "author")
    target = post(client, author, "like me")
    fans = [register(client, f"fan{i}") for i in range(12)]
    errors: list[str] = []

    def like(headers: dict[str, str]) -> None:
        for _ in range(2):
            response = client.post(f"/api/v1/posts/{target['id']}/like", headers=headers)
            if response.status_code != 200:
                errors.append(response.text)

    threads = [threading.Thread(target=like, args=(fan,)) for fan in fans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert client.get(f"/api/v1/posts/{target['id']}").json()["like_count"] == 12


def test_followers_get_a_feed_frame_in_real_time(make_client: Any) -> None:
    client = make_client(feed_celebrity_threshold=2)
    star, alice, bob = register(client, "star"), register(client, "alice"), register(client, "bob")
    follow(client, alice, "star")
    follow(client, bob, "star")  # a celebrity: no fan-out into timelines, frames all the same
    client.post("/api/v1/users/star/mute", headers=bob)
    with online(client, token_of(alice)) as a, online(client, token_of(bob)) as b:
        made = post(client, star, "live!")
        frame = a.expect("feed")
        assert frame["post"]["id"] == made["id"] and frame["post"]["content"] == "live!"
        assert [f for f in b.frames(quiet_s=0.5) if f["type"] == "feed"] == []  # bob muted star
