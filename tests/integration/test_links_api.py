"""Short links through the real app, on SQLite + in-process adapters and on PostgreSQL + Redis."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from plaza.platform.ids import CodePermutation
from tests.conftest import post_together, register

BASE62_7 = re.compile(r"^[0-9a-zA-Z]{7}$")


def shorten(client: Any, **body: Any) -> Any:
    headers = body.pop("headers", None)
    return client.post(
        "/api/v1/shorten", json={"long_url": "https://example.com/page", **body}, headers=headers
    )


def wait_for(predicate: Any, timeout_s: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_shorten_and_follow(client: Any) -> None:
    created = shorten(client, long_url="HTTPS://Example.COM/Some/Path?q=1")
    assert created.status_code == 201
    body = created.json()
    assert BASE62_7.match(body["short_code"])
    assert body["short_url"] == f"http://testserver/{body['short_code']}"
    assert body["long_url"] == "https://example.com/Some/Path?q=1"
    assert body["created_at"].endswith("Z")
    assert body["expires_at"] is None

    redirect = client.get(f"/{body['short_code']}", follow_redirects=False)
    assert redirect.status_code == 302
    assert redirect.headers["location"] == "https://example.com/Some/Path?q=1"
    assert "no-cache" in redirect.headers["cache-control"]
    head = client.head(f"/{body['short_code']}", follow_redirects=False)
    assert head.status_code == 302
    assert head.headers["location"] == "https://example.com/Some/Path?q=1"


def test_generated_codes_are_distinct_and_not_sequential(client: Any) -> None:
    codes = [shorten(client).json()["short_code"] for _ in range(30)]
    assert len(set(codes)) == 30
    assert all(BASE62_7.match(c) for c in codes)
    assert codes != sorted(codes)


def test_custom_alias_taken_reserved_and_invalid(client: Any) -> None:
    assert shorten(client, custom_alias="my-link").json()["short_code"] == "my-link"
    taken = shorten(client, custom_alias="my-link")
    assert taken.status_code == 409
    assert taken.json()["error"] == {
        "code": "alias_taken",
        "message": "That alias is taken.",
        "field": "custom_alias",
    }
    for word in ("api", "docs", "healthz", "readyz", "metrics", "static", "ws", "app", "API"):
        reserved = shorten(client, custom_alias=word)
        assert reserved.status_code == 400, word
        assert reserved.json()["error"]["code"] == "alias_reserved"
    for bad in ("ab", "x" * 65, "has space", "slash/no", "ünï"):
        invalid = shorten(client, custom_alias=bad)
        assert invalid.status_code == 400, bad
        assert invalid.json()["error"]["field"] == "custom_alias"


def test_a_generated_code_that_an_alias_took_is_skipped(make_client: Any) -> None:
    secret = "a fixed key, so the test knows which codes come first"
    client = make_client(secret_key=secret)
    first, second = (CodePermutation(secret.encode()).code(n) for n in (0, 1))
    assert shorten(client, custom_alias=first).status_code == 201
    generated = shorten(client, long_url="https://example.com/generated")
    assert generated.status_code == 201
    assert generated.json()["short_code"] == second
    assert client.get(f"/{first}", follow_redirects=False).headers["location"] == (
        "https://example.com/page"
    )


def test_aliases_are_case_sensitive(client: Any) -> None:
    assert (
        shorten(client, custom_alias="Promo", long_url="https://example.com/upper").status_code
        == 201
    )
    assert (
        shorten(client, custom_alias="promo", long_url="https://example.com/lower").status_code
        == 201
    )
    assert (
        client.get("/Promo", follow_redirects=False).headers["location"]
        == "https://example.com/upper"
    )
    assert (
        client.get("/promo", follow_redirects=False).headers["location"]
        == "https://example.com/lower"
    )


def test_invalid_urls(make_client: Any) -> None:
    client = make_client(blocked_hosts="evil.example,bad.test")
    cases = {
        "ftp://example.com/x": "invalid_url",
        "javascript:alert(1)": "invalid_url",
        "example.com": "invalid_url",
        "https://": "invalid_url",
        "https://example.com/" + "a" * 2048: "invalid_url",
        "http://testserver/abc1234": "redirect_loop",
        "https://evil.example/": "blocked_url",
        "https://www.evil.example/path": "blocked_url",
    }
    for url, code in cases.items():
        response = shorten(client, long_url=url)
        assert response.status_code == 400, url
        assert response.json()["error"]["code"] == code, url
        assert response.json()["error"]["field"] == "long_url"


def test_expiry_forms(client: Any) -> None:
    bare = shorten(client, expires_at="2099-01-01").json()
    assert bare["expires_at"] == "2099-01-01T00:00:00Z"
    synonym = shorten(client, expiry="2099-02-03T04:05:06Z").json()
    assert synonym["expires_at"] == "2099-02-03T04:05:06Z"
    rest = client.post(
        "/api/v1/urls", json={"long_url": "https://example.com", "expires_in_days": 2}
    )
    assert rest.status_code == 201
    assert rest.json()["expires_at"] is not None
    past = shorten(client, expires_at="2001-01-01")
    assert past.status_code == 400
    assert past.json()["error"]["code"] == "invalid_expiry"
    garbage = shorten(client, expires_at="next tuesday")
    assert garbage.status_code == 400
    assert garbage.json()["error"]["field"] == "expires_at"


def test_expired_link_stops_redirecting_but_keeps_stats(client: Any) -> None:
    code = shorten(client, expires_at=_in_seconds(1.5)).json()["short_code"]
    assert client.get(f"/{code}", follow_redirects=False).status_code == 302
    time.sleep(1.6)
    gone = client.get(f"/{code}", follow_redirects=False, headers={"Accept": "application/json"})
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "link_not_found"
    stats = client.get(f"/api/v1/stats/{code}")
    assert stats.status_code == 200
    assert stats.json()["status"] == "expired"


def _in_seconds(seconds: float) -> str:
    import datetime as dt

    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return moment.isoformat().replace("+00:00", "Z")


def test_max_clicks(client: Any) -> None:
    code = shorten(client, max_clicks=2).json()["short_code"]
    browser = {
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36"
    }
    assert (
        client.head(f"/{code}", follow_redirects=False, headers=browser).status_code == 302
    )  # HEAD is free
    assert client.get(f"/{code}", follow_redirects=False, headers=browser).status_code == 302
    assert client.get(f"/{code}", follow_redirects=False, headers=browser).status_code == 302
    assert client.get(f"/{code}", follow_redirects=False, headers=browser).status_code == 404
    stats = wait_for(lambda: (s := client.get(f"/api/v1/stats/{code}").json())["clicks"] == 2 and s)
    assert stats and stats["status"] == "exhausted"


def test_unknown_code_html_for_browsers_json_for_clients(client: Any) -> None:
    html = client.get("/Zz9Zz9Z", headers={"Accept": "text/html,application/xhtml+xml"})
    assert html.status_code == 404
    assert html.headers["content-type"].startswith("text/html")
    assert "Link not found" in html.text
    api = client.get("/Zz9Zz9Z", headers={"Accept": "application/json"})
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "link_not_found"


def test_negative_cache_does_not_hide_a_new_alias(client: Any) -> None:
    assert client.get("/fresh-alias", follow_redirects=False).status_code == 404
    assert shorten(client, custom_alias="fresh-alias").status_code == 201
    assert client.get("/fresh-alias", follow_redirects=False).status_code == 302


def test_owner_edits_and_deletes(client: Any) -> None:
    owner = register(client, "olive")
    other = register(client, "oscar")
    code = shorten(client, headers=owner, custom_alias="olives").json()["short_code"]
    assert (
        client.get(f"/{code}", follow_redirects=False).headers["location"]
        == "https://example.com/page"
    )

    patch = {"long_url": "https://example.org/new"}
    assert client.patch(f"/api/v1/urls/{code}", json=patch).status_code == 401
    forbidden = client.patch(f"/api/v1/urls/{code}", json=patch, headers=other)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "not_owner"
    edited = client.patch(f"/api/v1/urls/{code}", json=patch, headers=owner)
    assert edited.status_code == 200
    assert edited.json()["long_url"] == "https://example.org/new"
    assert (
        client.get(f"/{code}", follow_redirects=False).headers["location"]
        == "https://example.org/new"
    )
    assert (
        client.patch(f"/api/v1/urls/{code}", json={"long_url": "nope"}, headers=owner).status_code
        == 400
    )

    assert client.delete(f"/api/v1/urls/{code}", headers=other).status_code == 403
    assert client.delete(f"/api/v1/urls/{code}", headers=owner).status_code == 204
    assert client.get(f"/{code}", follow_redirects=False).status_code == 404
    assert client.get(f"/api/v1/urls/{code}").status_code == 404
    assert client.delete(f"/api/v1/urls/{code}", headers=owner).status_code == 404
    reuse = shorten(client, custom_alias=code)
    assert reuse.status_code == 409


def test_anonymous_links_cannot_be_changed(client: Any) -> None:
    someone = register(client, "paula")
    code = shorten(client).json()["short_code"]
    assert client.delete(f"/api/v1/urls/{code}", headers=someone).status_code == 403
    record = client.get(f"/api/v1/urls/{code}")
    assert record.status_code == 200
    assert record.json()["owner_id"] is None


def test_list_my_links_paged(client: Any) -> None:
    mine = register(client, "quinn")
    register_other = register(client, "rita")
    made = [
        shorten(client, headers=mine, long_url=f"https://example.com/{i}").json()["short_code"]
        for i in range(5)
    ]
    shorten(client, headers=register_other)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"owner": "me", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/urls", params=params, headers=mine).json()
        seen += [item["short_code"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    assert client.get("/api/v1/urls", params={"owner": "me"}).status_code == 401
    bad = client.get("/api/v1/urls", params={"owner": "me", "cursor": "garbage!"}, headers=mine)
    assert bad.status_code == 400
    assert (
        client.get("/api/v1/urls", params={"owner": "me", "limit": 101}, headers=mine).status_code
        == 400
    )
    found = client.get(
        "/api/v1/urls", params={"owner": "me", "q": "example.com/3"}, headers=mine
    ).json()
    assert [i["long_url"] for i in found["items"]] == ["https://example.com/3"]


def test_stats_count_clicks_within_five_seconds(client: Any) -> None:
    code = shorten(client).json()["short_code"]
    phone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"
    desktop = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
    )
    for ua, referer in (
        (phone, "https://news.example/a"),
        (desktop, None),
        (desktop, "https://news.example/b"),
    ):
        headers = {"User-Agent": ua, **({"Referer": referer} if referer else {})}
        assert client.get(f"/{code}", follow_redirects=False, headers=headers).status_code == 302
    client.get(
        f"/{code}",
        follow_redirects=False,
        headers={"User-Agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"},
    )
    stats = wait_for(lambda: (s := client.get(f"/api/v1/stats/{code}").json())["clicks"] == 3 and s)
    assert stats, "clicks did not show within 5 s"
    assert stats["bot_clicks"] == 1
    assert sum(d["clicks"] for d in stats["daily"]) == 3
    assert {"referrer": "news.example", "clicks": 2} in stats["top_referrers"]
    devices = {d["device"]: d["clicks"] for d in stats["devices"]}
    assert devices["mobile"] == 1 and devices["desktop"] == 2 and devices["bot"] == 1
    assert stats["last_clicked_at"].endswith("Z")
    assert client.get("/api/v1/stats/nope123").status_code == 404


def test_qr_codes(client: Any) -> None:
    code = shorten(client).json()["short_code"]
    png = client.get(f"/api/v1/urls/{code}/qr")
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    svg = client.get(f"/api/v1/urls/{code}/qr", params={"format": "svg"})
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content
    assert client.get(f"/api/v1/urls/{code}/qr", params={"format": "gif"}).status_code == 400
    assert client.get("/api/v1/urls/nope123/qr").status_code == 404


def test_creation_is_rate_limited(make_client: Any) -> None:
    client = make_client(create_rate="3/hour")
    for _ in range(3):
        assert shorten(client).status_code == 201
    limited = shorten(client)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert limited.json()["error"]["code"] == "rate_limited"


def test_creates_arriving_together_keep_their_own_outcomes(client: Any) -> None:
    """Creates in flight at once are stored together; each gets its own link, or its own error."""
    alice = register(client, "alice")
    assert shorten(client, custom_alias="taken").status_code == 201
    requests: list[dict[str, Any]] = [
        {"json": {"long_url": f"https://example.com/together/{i}"}} for i in range(40)
    ]
    requests[3]["json"]["custom_alias"] = "taken"
    requests[4]["json"]["custom_alias"] = "twice"
    requests[5]["json"]["custom_alias"] = "twice"
    requests[6]["json"]["custom_alias"] = "fresh-alias"
    requests[7]["json"]["long_url"] = "not a url"
    for i in range(30, 40):
        requests[i]["headers"] = alice

    responses = client.portal.call(post_together, client.app, "/api/v1/shorten", requests)

    taken = responses[3]
    assert taken.status_code == 409
    assert taken.json() == {
        "error": {"code": "alias_taken", "message": "That alias is taken.", "field": "custom_alias"}
    }
    assert sorted(r.status_code for r in responses[4:6]) == [201, 409]
    assert responses[7].json()["error"]["code"] == "invalid_url"
    created = [r for i, r in enumerate(responses) if i not in (3, 4, 5, 7)]
    created.append(next(r for r in responses[4:6] if r.status_code == 201))
    assert [r.status_code for r in created] == [201] * 37
    codes = {r.json()["short_code"]: r.json()["long_url"] for r in created}
    assert len(codes) == 37 and {"twice", "fresh-alias"} <= codes.keys()
    for code, long_url in codes.items():
        assert client.get(f"/{code}", follow_redirects=False).headers["location"] == long_url
    mine = client.get("/api/v1/urls", params={"limit": 100}, headers=alice).json()["items"]
    assert sorted(link["long_url"] for link in mine) == sorted(
        f"https://example.com/together/{i}" for i in range(30, 40)
    )


def test_creates_answer_alike_whatever_their_json_content_type(client: Any) -> None:
    """A create sent as `application/json` takes a shorter way through the server than one sent as
    `application/json; charset=utf-8`; both are answered alike, errors and all."""
    alice = register(client, "alice")
    assert shorten(client, custom_alias="taken").status_code == 201
    bodies: list[Any] = [
        {"long_url": "https://example.com/same"},
        {"long_url": "https://example.com/same", "unknown": 1, "max_clicks": "5"},
        {"long_url": "https://example.com/same", "expires_at": "2099-01-01"},
        {"long_url": "https://example.com/same", "custom_alias": "taken"},
        {"long_url": "https://example.com/same", "custom_alias": "api"},
        {"long_url": "https://example.com/same", "custom_alias": "no good"},
        {"long_url": "https://example.com/same", "max_clicks": 0},
        {"long_url": "https://example.com/same", "expiry": "2001-01-01"},
        {"long_url": "https://example.com/same", "expires_at": "soon"},
        {"long_url": "ftp://example.com/"},
        {"long_url": "http://testserver/abc1234"},
        {"long_url": ["x"]},
        {},
        [],
        "https://example.com/same",
        None,
    ]
    contents = [json.dumps(body).encode() for body in bodies] + [
        b"",
        b"{not json",
        b"\xff",
        b"[" * 100_000,
    ]
    headers: list[dict[str, str]] = [
        {},
        alice,
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic YTpi"},
    ]
    for content in contents:
        for extra in headers:
            answers = [
                client.post(
                    "/api/v1/shorten",
                    content=content,
                    headers={"Content-Type": content_type, **extra},
                )
                for content_type in ("application/json", "application/json; charset=utf-8")
            ]
            fast, general = (_comparable(answer) for answer in answers)
            assert fast == general, (content, extra)
    owned = client.get("/api/v1/urls", params={"limit": 100}, headers=alice).json()["items"]
    assert len(owned) == 6  # three bodies are created, by each way


def _comparable(response: Any) -> tuple[int, dict[str, str], Any]:
    """Status, headers and body, without what differs from one create to the next."""
    headers = {
        k: v for k, v in response.headers.items() if k not in ("x-request-id", "content-length")
    }
    body = response.json()
    if response.status_code == 201:
        assert BASE62_7.match(body.pop("short_code"))
        for volatile in ("short_url", "created_at", "updated_at"):
            body.pop(volatile)
    return response.status_code, headers, body


def test_idempotency_key(client: Any) -> None:
    key = {"Idempotency-Key": "create-42"}
    first = client.post("/api/v1/shorten", json={"long_url": "https://example.com/i"}, headers=key)
    again = client.post("/api/v1/shorten", json={"long_url": "https://example.com/i"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = client.post(
        "/api/v1/shorten", json={"long_url": "https://example.com/other"}, headers=key
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    bad = client.post(
        "/api/v1/shorten",
        json={"long_url": "https://example.com/i"},
        headers={"Idempotency-Key": ""},
    )
    assert bad.status_code == 400


def test_error_bodies_for_bad_requests(client: Any) -> None:
    malformed = client.post(
        "/api/v1/shorten", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "malformed_json"
    wrong_type = client.post("/api/v1/shorten", json={"long_url": ["x"]})
    assert wrong_type.status_code == 400
    assert wrong_type.json()["error"]["field"] == "long_url"
    missing = client.post("/api/v1/shorten", json={})
    assert missing.json()["error"]["field"] == "long_url"
    huge = client.post(
        "/api/v1/shorten",
        content=b"x" * (1024 * 1024 + 1),
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "payload_too_large"
    unknown = client.get("/api/v1/nothing-here")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    method = client.put("/api/v1/shorten", json={})
    assert method.status_code == 405
    assert method.json()["error"]["code"] == "method_not_allowed"
    ignored = shorten(client, unknown_field=True)
    assert ignored.status_code == 201


def test_operations_endpoints(client: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"
    code = shorten(client).json()["short_code"]
    client.get(f"/{code}", follow_redirects=False)
    client.get(f"/api/v1/urls/{code}")
    metrics = client.get("/metrics").text
    assert 'route="/{code}"' in metrics
    assert 'route="/api/v1/urls/{code}"' in metrics
    assert 'method="POST",route="/api/v1/shorten",status="201"' in metrics
    assert code not in metrics
    assert "plaza_cache_events_total" in metrics
    assert "plaza_stream_lag_entries" in metrics or "plaza_clicks_buffered" in metrics
    assert client.get("/openapi.json").json()["info"]["title"] == "Plaza"
    assert client.get("/docs").status_code == 200


def test_permanent_redirects_when_the_deployment_chooses_them(make_client: Any) -> None:
    client = make_client(redirect_status=301)
    code = shorten(client).json()["short_code"]
    redirect = client.get(f"/{code}", follow_redirects=False)
    assert redirect.status_code == 301
    assert redirect.headers["cache-control"] == "private, max-age=90"
    expiring = shorten(client, expires_at="2099-01-01").json()["short_code"]
    # A link that will stop working must not be remembered by browsers.
    assert (
        client.get(f"/{expiring}", follow_redirects=False).headers["cache-control"]
        == "private, no-cache"
    )


def test_the_expiry_sweep_evicts_expired_links_and_keeps_their_rows(client: Any) -> None:
    code = shorten(client, expires_at=_in_seconds(1.0)).json()["short_code"]
    assert client.get(f"/{code}", follow_redirects=False).status_code == 302
    services = client.app.state.services
    assert client.portal.call(services.links.sweep_expired) == 0  # not expired yet
    time.sleep(1.1)
    assert client.portal.call(services.links.sweep_expired) == 1
    assert client.portal.call(services.links.sweep_expired) == 0  # each link is swept once
    assert client.get(f"/{code}", follow_redirects=False).status_code == 404
    record = client.get(f"/api/v1/urls/{code}").json()
    assert record["status"] == "expired"
    assert shorten(client, custom_alias=code).status_code in (400, 409)  # the code is never reused
