"""The short-link pages in a real browser: shorten and follow, stats of a fresh click, errors."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import register
from tests.server import Server


def test_shorten_through_the_form_and_follow_it(
    new_page: Any, server: Server, landing: str
) -> None:
    page = new_page()
    page.goto("/")
    page.get_by_label("Long URL").fill(landing)
    page.get_by_role("button", name="Shorten").click()
    short = page.locator("#short_url")
    expect(short).to_contain_text(server.url)
    expect(page.locator("#long")).to_have_text(landing)
    expect(page.locator("#qr")).to_have_js_property("complete", True)
    assert page.locator("#qr").evaluate("img => img.naturalWidth") > 0
    short_url = short.inner_text()

    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#copied")).not_to_be_empty()

    page.goto(short_url)
    assert page.url == landing
    expect(page.get_by_role("heading")).to_have_text("Example landing")


def test_errors_are_shown_in_words(new_page: Any) -> None:
    page = new_page()
    page.goto("/")
    page.get_by_label("Long URL").fill("ftp://example.com/file")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("http:// or https://")

    page.get_by_label("Long URL").fill("https://example.com/")
    page.get_by_text("Options").click()
    page.get_by_label("Custom alias").fill("app")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("reserved")
    expect(page.get_by_label("Custom alias")).to_have_attribute("aria-invalid", "true")


def test_stats_page_shows_a_click_made_a_moment_ago(
    new_page: Any, server: Server, landing: str
) -> None:
    page = new_page()
    register(page, "stats_owner")
    page.goto("/")
    page.get_by_label("Long URL").fill(landing)
    page.get_by_text("Options").click()
    page.get_by_label("Custom alias").fill("fresh-click")
    page.get_by_role("button", name="Shorten").click()
    expect(page.locator("#short_url")).to_contain_text("fresh-click")

    page.goto("/app/links")
    row = page.locator("tr", has_text="fresh-click")
    expect(row).to_contain_text(landing)
    row.get_by_role("link", name="fresh-click").click()
    page.wait_for_url("**/app/links/fresh-click")
    expect(page.locator("#clicks")).to_have_text("0")

    visitor = page.context.new_page()
    visitor.goto(f"{server.url}/fresh-click")
    assert visitor.url == landing
    visitor.close()

    expect(page.locator("#clicks")).to_have_text("1", timeout=12_000)
    expect(page.locator("#devices")).to_contain_text("desktop")
    expect(page.locator("#chart rect.bar")).to_have_count(30)


def test_my_links_edit_search_and_delete(new_page: Any) -> None:
    page = new_page()
    register(page, "links_owner")
    for alias in ("first-one", "second-one"):
        page.goto("/")
        page.get_by_label("Long URL").fill(f"https://example.com/{alias}")
        page.get_by_text("Options").click()
        page.get_by_label("Custom alias").fill(alias)
        page.get_by_role("button", name="Shorten").click()
        expect(page.locator("#short_url")).to_contain_text(alias)

    page.goto("/app/links")
    expect(page.locator("#links tbody tr")).to_have_count(2)
    page.get_by_label("Search my links").fill("second")
    expect(page.locator("#links tbody tr")).to_have_count(1)

    page.get_by_role("button", name="Edit destination of second-one").click()
    page.get_by_label("New destination").fill("https://example.org/moved")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("tr", has_text="second-one")).to_contain_text("https://example.org/moved")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete second-one").click()
    expect(page.locator("#links tbody tr")).to_have_count(0)
    page.reload()
    page.get_by_label("Search my links").fill("second")
    expect(page.locator("#empty")).to_be_visible()
