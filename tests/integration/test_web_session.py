"""The web app's cookie session through the real app: pages, CSRF, and the WebSocket's Origin check."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.conftest import register
from tests.wsclient import Socket

PASSWORD = "correct horse"


def _log_in(client: TestClient, username: str) -> dict[str, str]:
    """Registers, opens a session as the pages do; returns the CSRF header to echo."""
    client.cookies.clear()
    register(client, username, PASSWORD)
    page = client.get("/")
    csrf = {"X-CSRF-Token": page.cookies["plaza_csrf"]}
    session = client.post(
        "/api/v1/auth/session", json={"username": username, "password": PASSWORD}, headers=csrf
    )
    assert session.status_code == 200, session.text
    assert session.json()["username"] == username
    return csrf


def test_pages_are_html_shells_under_a_strict_policy(client: TestClient) -> None:
    for path in ["/", "/app/login", "/app/register", "/app/links", "/app/links/abc1234"]:
        page = client.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
    for path in ["/app/feed", "/app/chat", "/app/u/alice"]:
        assert client.get(path).status_code == 200, path
    assert client.get("/app", follow_redirects=False).headers["location"] == "/app/feed"
    script = client.get("/static/js/api.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    # The redirect fast path passes the pages by, and their names cannot be taken as aliases.
    shortened = client.post(
        "/api/v1/shorten", json={"long_url": "https://example.com", "custom_alias": "app"}
    )
    assert shortened.json()["error"]["code"] == "alias_reserved"


def test_session_cookie_is_httponly_lax_and_secure_over_https(
    app_factory: Any, sqlite_url: str
) -> None:
    client = app_factory(database_url=sqlite_url)
    _log_in(client, "alice")
    cookie = next(c for c in client.cookies.jar if c.name == "plaza_session")
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite", "").lower() == "lax"
    assert not cookie.secure
    assert client.get("/api/v1/me").json()["username"] == "alice"

    https = app_factory(database_url=sqlite_url, base_url="https://plaza.example")
    page = https.get("/")
    token = page.cookies["plaza_csrf"]
    assert "secure" in page.headers["set-cookie"].lower()
    # The client keeps Secure cookies to itself over http://testserver: they are sent by hand.
    csrf = {"X-CSRF-Token": token, "Cookie": f"plaza_csrf={token}"}
    opened = https.post(
        "/api/v1/auth/session", json={"username": "alice", "password": PASSWORD}, headers=csrf
    )
    assert "secure" in opened.headers["set-cookie"].lower()


def test_state_changes_with_the_cookie_need_the_csrf_token(client: TestClient) -> None:
    csrf = _log_in(client, "alice")
    body = {"long_url": "https://example.com/a"}
    refused = client.post("/api/v1/shorten", json=body)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    assert (
        client.post("/api/v1/shorten", json=body, headers={"X-CSRF-Token": "guess"}).status_code
        == 403
    )
    made = client.post("/api/v1/shorten", json=body, headers=csrf)
    assert made.status_code == 201
    assert made.json()["owner_id"] == client.get("/api/v1/me").json()["id"]
    code = made.json()["short_code"]
    assert client.delete(f"/api/v1/urls/{code}").status_code == 403
    assert client.delete(f"/api/v1/urls/{code}", headers=csrf).status_code == 204
    assert client.post("/api/v1/posts", json={"content": "hi"}).status_code == 403
    assert client.post("/api/v1/posts", json={"content": "hi"}, headers=csrf).status_code == 201

    # Logging in needs the token too: another site must not sign the browser into its account.
    login = client.post("/api/v1/auth/session", json={"username": "alice", "password": PASSWORD})
    assert login.json()["error"]["code"] == "csrf_failed"


def test_bearer_clients_are_unaffected_by_a_cookie(client: TestClient) -> None:
    bob = register(client, "bob", PASSWORD)
    _log_in(client, "alice")
    made = client.post("/api/v1/posts", json={"content": "by bearer"}, headers=bob)
    assert made.status_code == 201
    assert made.json()["author"]["username"] == "bob"  # the header wins over the cookie


def test_logout_revokes_the_token_and_a_stale_cookie_is_anonymous(client: TestClient) -> None:
    csrf = _log_in(client, "alice")
    token = client.cookies["plaza_session"]
    assert client.delete("/api/v1/auth/session", headers=csrf).status_code == 204
    assert "plaza_session" not in client.cookies
    client.cookies.set("plaza_session", token)
    assert client.get("/api/v1/me").status_code == 401
    anonymous = client.post(
        "/api/v1/shorten", json={"long_url": "https://example.com/b"}, headers=csrf
    )
    assert anonymous.status_code == 201
    assert anonymous.json()["owner_id"] is None

    csrf = _log_in(client, "carol")
    assert client.delete("/api/v1/auth/token", headers=csrf).status_code == 204
    assert client.get("/api/v1/me").status_code == 401


def test_websocket_by_cookie_checks_origin(client: TestClient) -> None:
    _log_in(client, "alice")
    cookie = {"cookie": f"plaza_session={client.cookies['plaza_session']}"}
    for origin in ["http://evil.example", "null", None]:
        headers = {**cookie, **({"origin": origin} if origin else {})}
        with client.websocket_connect("/ws", headers=headers) as session:
            assert Socket(session).close_code() == 4403, origin
    with client.websocket_connect(
        "/ws", headers={**cookie, "origin": "http://testserver"}
    ) as session:
        socket = Socket(session)
        ready = socket.recv()
        assert ready["type"] == "ready"
        assert ready["user"]["username"] == "alice"
        socket.settle()
