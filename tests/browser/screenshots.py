"""Screenshots of the main pages for docs/: `make screenshots` (a throwaway server with sample data)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from tests.browser.conftest import CHROMIUM
from tests.server import running_server

DESKTOP = {"width": 1200, "height": 760}
PHONE = {"width": 390, "height": 780}
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130 Safari/537.36"


def _user(api: httpx.Client, username: str, display_name: str) -> dict[str, str]:
    api.post(
        "/api/v1/users",
        json={"username": username, "password": "sample-pass", "display_name": display_name},
    )
    token = api.post("/api/v1/auth/token", json={"username": username, "password": "sample-pass"})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def _seed(api: httpx.Client) -> tuple[str, str]:
    ada, grace = _user(api, "ada", "Ada Lovelace"), _user(api, "grace", "Grace Hopper")
    for alias, url in [
        ("engine", "https://en.wikipedia.org/wiki/Analytical_engine"),
        ("notes", "https://www.fourmilab.ch/babbage/sketch.html"),
        (None, "https://example.com/a/rather/long/path?utm_source=newsletter&utm_medium=email"),
    ]:
        api.post(
            "/api/v1/shorten",
            json={"long_url": url, **({"custom_alias": alias} if alias else {})},
            headers=ada,
        )
    referers = [
        "https://news.ycombinator.com/",
        "https://mastodon.social/",
        "",
        "https://www.google.com/",
    ]
    agents = [
        UA,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    ]
    for i in range(23):
        headers = {"User-Agent": agents[i % 3 == 0], "Referer": referers[i % 4]}
        api.get("/engine", headers={k: v for k, v in headers.items() if v})
    api.post("/api/v1/users/ada/follow", headers=grace)
    api.post("/api/v1/users/grace/follow", headers=ada)
    api.post(
        "/api/v1/posts",
        json={
            "content": "The Analytical Engine weaves algebraic patterns just as the Jacquard loom weaves flowers and leaves."
        },
        headers=ada,
    )
    first = api.post(
        "/api/v1/posts",
        json={"content": "It's easier to ask forgiveness than it is to get permission."},
        headers=grace,
    ).json()
    api.post(f"/api/v1/posts/{first['id']}/like", headers=ada)
    api.post(
        "/api/v1/posts",
        json={"content": "<script>alert('hi')</script> shows as text, as it should."},
        headers=grace,
    )
    conv = api.post("/api/v1/conversations", json={"members": ["grace"]}, headers=ada).json()
    return ada["Authorization"][7:], conv["id"]


def _chat(url: str, token: str, conversation_id: str, grace: str) -> None:
    """Messages go over the WebSocket, as clients send them."""
    import json

    from websockets.sync.client import connect

    for who, lines in [
        (token, ["Shall we review the notes on the engine?", "Note G is the interesting one."]),
        (grace, ["Yes! Bring the Bernoulli numbers."]),
    ]:
        with connect(f"{url.replace('http', 'ws')}/ws?token={who}") as socket:
            socket.recv()
            for n, line in enumerate(lines):
                socket.send(
                    json.dumps(
                        {
                            "type": "send",
                            "client_msg_id": f"{who[:8]}-{n}",
                            "conversation_id": conversation_id,
                            "content": line,
                            "message_type": "text",
                        }
                    )
                )
                while json.loads(socket.recv())["type"] != "ack":
                    pass


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp())
    env = {
        "PLAZA_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'plaza.db'}",
        "PLAZA_AUTO_MIGRATE": "true",
    }
    with (
        running_server(env, folder / "server.log") as server,
        httpx.Client(base_url=server.url) as api,
    ):
        token, conversation = _seed(api)
        grace = api.post(
            "/api/v1/auth/token", json={"username": "grace", "password": "sample-pass"}
        ).json()["access_token"]
        _chat(server.url, token, conversation, grace)
        time.sleep(1.5)  # clicks reach the stats
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)

            def shoot(
                path: str,
                name: str,
                viewport: dict[str, int],
                logged_in: bool = True,
                then: str = "",
            ) -> None:
                context = browser.new_context(
                    base_url=server.url, viewport=viewport, user_agent=UA, color_scheme="light"
                )
                if logged_in:
                    context.add_cookies(
                        [{"name": "plaza_session", "value": token, "url": server.url}]
                    )
                page = context.new_page()
                page.goto(path)
                page.wait_for_load_state("networkidle")
                if then:
                    page.locator(then).first.click()
                    page.wait_for_timeout(400)
                page.screenshot(path=str(out / f"{name}.png"))
                context.close()

            shoot("/", "home", DESKTOP, logged_in=False)
            shoot("/app/links", "links", DESKTOP)
            shoot("/app/links/engine", "stats", DESKTOP)
            shoot("/app/feed", "feed", DESKTOP)
            shoot("/app/chat", "chat", DESKTOP, then="#convs button")
            shoot("/app/u/grace", "profile-phone", PHONE)
            shoot("/app/chat", "chat-phone", PHONE, then="#convs button")
            browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
