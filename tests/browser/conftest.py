"""Browser tests: Playwright driving Debian's Chromium against a real `plaza serve` process.

One server and one browser per test module keep them few and fast. A failing test leaves a
screenshot of each of its pages in test-results/screenshots/. Without Chromium (`make browser` installs
it) the tests are skipped, except under CI=true, where that fails the run instead.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI
from tests.server import Server, running_server

CHROMIUM = os.environ.get("PLAZA_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"
PASSWORD = "correct horse battery"
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()

pytestmark = pytest.mark.browser


def _browser_problem() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed"
    return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


# Per module, not per run: Playwright's sync API keeps an event loop running in this thread while it
# is open, and the other tests' asyncio.run() would refuse to start under it.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    problem = _browser_problem()
    if problem:
        message = f"{problem}: run `make browser` (it apt-get installs chromium)"
        if IN_CI:
            pytest.fail(f"CI=true and the browser tests cannot run: {message}", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--disable-gpu", "--no-sandbox"]
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("web")
    env = {
        "PLAZA_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'plaza.db'}",
        "PLAZA_AUTO_MIGRATE": "true",
        "PLAZA_CREATE_RATE": "1000000/hour",
        "PLAZA_CLICK_FLUSH_INTERVAL_S": "0.2",
    }
    env.pop("PLAZA_REDIS_URL", None)
    with running_server(env, folder / "server.log") as running:
        yield running


class _Landing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>Landing</title><h1>Example landing</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def landing() -> Iterator[str]:
    """A destination for short links (the outside world is not reachable from tests), at `localhost`
    so that it is not the server's own host."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Landing)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{httpd.server_address[1]}/landing"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def new_page(
    browser: Any, server: Server, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Any]]:
    """Opens a page in a fresh browser context (its own cookies: one per user)."""
    contexts: list[Any] = []
    pages: list[Any] = []
    problems: list[str] = []

    # Headless Chromium names itself so; the click counter would rightly take it for a bot.
    user_agent = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{browser.version} Safari/537.36"
    )

    def open_page(**options: Any) -> Any:
        options.setdefault("user_agent", user_agent)
        context = browser.new_context(base_url=server.url, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on(
            "console",
            lambda message: (
                problems.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
        pages.append(page)
        return page

    yield open_page
    reports = request.node.stash.get(_REPORTS, {})
    if any(report.failed for report in reports.values()):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        for number, page in enumerate(pages):
            if not page.is_closed():
                path = SCREENSHOTS / f"{name}-{number}.png"
                page.screenshot(path=str(path), full_page=True)
                print(f"screenshot: {path}")
    for context in contexts:
        context.close()
    assert not problems, problems


def register(page: Any, username: str, display_name: str = "") -> None:
    """Creates an account through the register page; the page ends logged in, on the feed."""
    page.goto("/app/register")
    page.get_by_label("Username").fill(username)
    if display_name:
        page.get_by_label("Display name").fill(display_name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/app/feed")
    page.locator("#whoami").wait_for()


def api_user(server: Server, username: str, display_name: str = "") -> str:
    """Creates an account through the API, never connected anywhere; returns its access token."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        body = {"username": username, "password": PASSWORD, "display_name": display_name or None}
        client.post("/api/v1/users", json=body).raise_for_status()
        issued = client.post(
            "/api/v1/auth/token", json={"username": username, "password": PASSWORD}
        )
        issued.raise_for_status()
        return str(issued.json()["access_token"])


def call(server: Server, token: str, method: str, path: str, body: Any = None) -> Any:
    """One API request as the token's user; the decoded answer (None for a 204)."""
    headers = {"Authorization": f"Bearer {token}"}
    response = httpx.request(method, server.url + path, json=body, headers=headers, timeout=10)
    response.raise_for_status()
    return None if response.status_code == 204 else response.json()


def sign_in(page: Any, server: Server, token: str) -> None:
    """The page's session becomes the token's (the session cookie holds such a token)."""
    page.context.add_cookies([{"name": "plaza_session", "value": token, "url": server.url}])


def send_messages(server: Server, token: str, conversation_id: str, lines: list[str]) -> None:
    """Sends messages over a WebSocket of its own, as another client would, each acked in turn."""
    from websockets.sync.client import connect

    with connect(f"{server.url.replace('http', 'ws', 1)}/ws?token={token}") as socket:
        assert json.loads(socket.recv())["type"] == "ready"
        for line in lines:
            frame = {
                "type": "send",
                "client_msg_id": str(uuid.uuid4()),
                "conversation_id": conversation_id,
                "content": line,
                "message_type": "text",
            }
            socket.send(json.dumps(frame))
            while json.loads(socket.recv(timeout=10))["type"] != "ack":
                pass
