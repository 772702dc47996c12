"""The feed pages in a real browser: follow someone and see their new post arrive live; XSS as text."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import register

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
