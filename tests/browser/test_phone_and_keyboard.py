"""The web app on a phone-sized screen (nothing wider than the screen; the chat switches between its
list and a conversation) and with the keyboard alone (shorten a link, chat)."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import api_user, call, send_messages, sign_in
from tests.server import Server

PHONE = {"width": 390, "height": 844}
# Words with no place to break: they must wrap or be cut, never widen the page.
LONG_URL = "https://example.com/" + "a-very-long-path-segment/" * 12 + "?utm_source=" + "x" * 80
LONG_WORD = "Supercalifragilistic" * 8


def _tab_to(page: Any, selector: str, limit: int = 40) -> None:
    """Presses Tab until the focus is on `selector`, as someone without a mouse would."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{limit} presses of Tab never reached {selector}")


def _fits_the_screen(page: Any) -> bool:
    # A phone widens its layout viewport (innerWidth) to fit content that overflows: compare with both.
    widths = page.evaluate("[document.scrollingElement.scrollWidth, innerWidth]")
    return bool(max(widths) <= PHONE["width"])


def test_every_page_fits_a_phone_screen(new_page: Any, server: Server) -> None:
    ada = api_user(server, "ph_ada", "Ada " + LONG_WORD[:40])
    bob = api_user(server, "ph_bob", "Bob")
    call(server, ada, "POST", "/api/v1/shorten", {"long_url": LONG_URL, "custom_alias": "phone"})
    call(server, ada, "POST", "/api/v1/posts", {"content": f"{LONG_WORD} {LONG_URL}"})
    conversation = call(server, bob, "POST", "/api/v1/conversations", {"members": ["ph_ada"]})
    send_messages(server, bob, conversation["id"], [LONG_WORD, LONG_URL])
    page = new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    pages = {
        "/": "#long_url",
        "/app/login": "#auth-form",
        "/app/register": "#auth-form",
        "/app/links": "#links tbody tr",
        "/app/links/phone": ".chart svg",
        "/app/feed": ".post",
        "/app/u/ph_ada": ".post",
        "/app/chat": "#convs button",
    }
    for path, shown in pages.items():
        if path == "/app/links":
            sign_in(page, server, ada)
        page.goto(path)
        expect(page.locator(shown).first).to_be_visible()
        assert _fits_the_screen(page), f"{path} is wider than the screen"

    conversations = page.get_by_role("complementary", name="Conversations")
    conversations.get_by_role("button", name="Bob").click()
    expect(conversations).to_be_hidden()
    expect(page.locator(".msg .text").last).to_have_text(LONG_URL)
    expect(page.get_by_role("textbox", name="Message", exact=True)).to_be_in_viewport()
    assert _fits_the_screen(page), "the conversation is wider than the screen"
    page.get_by_role("button", name="← Back").click()
    expect(conversations).to_be_visible()
    expect(page.locator("#messages")).to_be_hidden()


def test_shorten_a_link_with_the_keyboard_alone(new_page: Any, landing: str) -> None:
    page = new_page()
    page.goto("/")
    _tab_to(page, "#long_url")
    page.keyboard.type(landing)
    _tab_to(page, "#options summary")
    page.keyboard.press("Enter")
    _tab_to(page, "#custom_alias")
    page.keyboard.type("by-keys")
    page.keyboard.press("Enter")
    expect(page.locator("#short_url")).to_contain_text("/by-keys")
    _tab_to(page, "#copy")
    page.keyboard.press("Enter")
    expect(page.locator("#copied")).not_to_be_empty()


def test_chat_with_the_keyboard_alone(new_page: Any, server: Server) -> None:
    kim = api_user(server, "kb_kim", "Kim")
    lee = api_user(server, "kb_lee", "Lee")
    conversation = call(server, lee, "POST", "/api/v1/conversations", {"members": ["kb_kim"]})
    send_messages(server, lee, conversation["id"], ["Are you there?"])
    page = new_page()
    sign_in(page, server, kim)
    page.goto("/app/chat")
    expect(page.locator("#live")).to_contain_text("Live")
    _tab_to(page, "#convs button")
    page.keyboard.press("Enter")
    composer = page.get_by_role("textbox", name="Message", exact=True)
    expect(composer).to_be_focused()
    page.keyboard.type("Yes, here.")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("Typing with keys only.")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.mine .text")).to_have_text("Yes, here.\nTyping with keys only.")
    expect(composer).to_be_empty()
    expect(composer).to_be_focused()
