"""The feed pages in a real browser: follow someone and see their new post arrive live; delete one's
own post; XSS as text."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import api_user, register, sign_in
from tests.server import Server

PAYLOAD = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'


def _post(page: Any, content: str) -> None:
    page.get_by_label("What's happening?").fill(content)
    page.get_by_role("button", name="Post", exact=True).click()
    expect(page.locator(".post .content").first).to_have_text(content)


def test_a_follower_sees_a_new_post_appear_live(new_page: Any) -> None:
    author, reader = new_page(), new_page()
    register(author, "ada", "Ada Lovelace")
    register(reader, "brian")

    reader.goto("/app/u/ada")
    expect(reader.get_by_role("heading", name="Ada Lovelace")).to_be_visible()
    reader.get_by_role("button", name="Follow").click()
    expect(reader.get_by_role("button", name="Unfollow")).to_be_visible()
    expect(reader.locator("#followers")).to_have_text("1")

    reader.goto("/app/feed")
    expect(reader.locator("#live")).to_contain_text("Live")
    author.goto("/app/feed")
    _post(author, "Hello from Ada")

    banner = reader.locator("#banner")
    expect(banner).to_have_text("1 new post")
    banner.click()
    post = reader.locator(".post", has_text="Hello from Ada")
    expect(post).to_be_visible()
    expect(post.locator(".who")).to_have_text("Ada Lovelace")
    post.get_by_role("button", name="Like 0").click()
    expect(post.get_by_role("button", name="Like 1")).to_have_attribute("aria-pressed", "true")


def test_an_xss_payload_shows_as_text(new_page: Any) -> None:
    author, reader = new_page(), new_page()
    register(author, "mallory", PAYLOAD[:60])
    _post(author, PAYLOAD)
    register(reader, "victim")
    reader.goto("/app/u/mallory")
    content = reader.locator(".post .content")
    expect(content).to_have_text(PAYLOAD)
    expect(reader.locator("#display_name")).to_have_text(PAYLOAD[:60])
    for page in (author, reader):
        assert page.evaluate("window.pwned") is None
        assert page.locator(".post img, .post script").count() == 0
    expect(reader.get_by_role("button", name="Delete")).to_have_count(0)  # not theirs


def test_deleting_ones_own_post_asks_first_then_it_is_gone(new_page: Any, server: Server) -> None:
    page = new_page()
    sign_in(page, server, api_user(server, "del_ada", "Ada"))
    page.goto("/app/feed")
    _post(page, "Keeper")
    _post(page, "Typo-ridden first draft")
    deletes: list[str] = []
    page.on("request", lambda r: deletes.append(r.url) if r.method == "DELETE" else None)
    draft = page.locator(".post", has_text="Typo-ridden first draft")
    questions: list[str] = []

    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    draft.get_by_role("button", name="Delete").click()
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    draft.get_by_role("button", name="Delete").click()
    expect(draft).to_have_count(0)
    expect(page.locator(".post").first).to_be_focused()
    assert questions == ["Delete this post? It disappears from every feed."] * 2
    assert len(deletes) == 1  # the first answer was no: nothing was deleted then

    for path in ("/app/feed", "/app/u/del_ada"):
        page.goto(path)
        expect(page.locator(".post .content")).to_have_text(["Keeper"])
