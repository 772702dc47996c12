"""Accounts through the real app, on SQLite + in-process adapters and on PostgreSQL + Redis."""

from __future__ import annotations

from typing import Any

from tests.conftest import register


def test_register_login_me_and_profile(client: Any) -> None:
    created = client.post(
        "/api/v1/users",
        json={"username": "Alice_1", "password": "s3cret-pass", "display_name": "Alice"},
    )
    assert created.status_code == 201
    body = created.json()
    assert body["username"] == "alice_1"
    assert body["display_name"] == "Alice"
    assert isinstance(body["id"], str)
    assert body["created_at"].endswith("Z")
    assert "password" not in created.text

    token = client.post(
        "/api/v1/auth/token", json={"username": "ALICE_1", "password": "s3cret-pass"}
    )
    assert token.status_code == 200
    assert token.json()["token_type"] == "bearer"
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    me = client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["id"] == body["id"]

    profile = client.get("/api/v1/users/alice_1").json()
    assert profile["followers_count"] == 0
    assert profile["following_count"] == 0
    assert profile["display_name"] == "Alice"


def test_username_taken_is_case_insensitive(client: Any) -> None:
    register(client, "bob")
    again = client.post("/api/v1/users", json={"username": "BOB", "password": "another-pass"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "username_taken"


def test_registration_validation(client: Any) -> None:
    cases = [
        ({"username": "ab", "password": "long-enough"}, "username"),
        ({"username": "has space", "password": "long-enough"}, "username"),
        ({"username": "x" * 33, "password": "long-enough"}, "username"),
        ({"username": "carol", "password": "short"}, "password"),
        ({"username": "carol", "password": "p" * 257}, "password"),
        ({"username": "carol"}, "password"),
        ({"username": 12345, "password": "long-enough"}, "username"),
    ]
    for payload, field in cases:
        response = client.post("/api/v1/users", json=payload)
        assert response.status_code == 400, payload
        assert response.json()["error"]["field"] == field, payload


def test_wrong_credentials_same_answer_for_unknown_user(client: Any) -> None:
    register(client, "dave")
    wrong = client.post(
        "/api/v1/auth/token", json={"username": "dave", "password": "wrong-password"}
    )
    unknown = client.post(
        "/api/v1/auth/token", json={"username": "nobody", "password": "wrong-password"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_revoked_token_is_refused(client: Any) -> None:
    headers = register(client, "erin")
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.delete("/api/v1/auth/token", headers=headers).status_code == 204
    after = client.get("/api/v1/me", headers=headers)
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "invalid_token"


def test_missing_and_malformed_credentials(client: Any) -> None:
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_unknown_profile_is_404(client: Any) -> None:
    response = client.get("/api/v1/users/ghost")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "user_not_found"


def test_failed_logins_are_limited_per_username(make_client: Any) -> None:
    client = make_client(login_failures_per_user="3/15min")
    register(client, "frank")
    for _ in range(3):
        bad = client.post(
            "/api/v1/auth/token", json={"username": "frank", "password": "wrong-password"}
        )
        assert bad.status_code == 401
    limited = client.post(
        "/api/v1/auth/token", json={"username": "frank", "password": "correct horse"}
    )
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"
    # Another user from the same address is not affected by frank's failures.
    register(client, "grace")


def test_failed_logins_are_limited_per_ip(make_client: Any) -> None:
    client = make_client(login_failures_per_ip="2/15min")
    for name in ("henry", "irene"):
        client.post("/api/v1/auth/token", json={"username": name, "password": "wrong-password"})
    limited = client.post(
        "/api/v1/auth/token", json={"username": "judy", "password": "wrong-password"}
    )
    assert limited.status_code == 429


def test_successful_logins_are_not_limited(make_client: Any) -> None:
    client = make_client(login_failures_per_user="2/15min")
    register(client, "kim")
    for _ in range(5):
        ok = client.post(
            "/api/v1/auth/token", json={"username": "kim", "password": "correct horse"}
        )
        assert ok.status_code == 200
