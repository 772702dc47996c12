"""The chat page in a real browser: two users chat live, with typing and the read tick."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import register


def test_two_users_chat_live_with_typing_and_read_ticks(new_page: Any) -> None:
    alice, bob = new_page(), new_page()
    register(alice, "alice", "Alice")
    register(bob, "bob", "Bob")

    alice.goto("/app/chat")
    expect(alice.locator("#live")).to_contain_text("Live")
    alice.get_by_text("New conversation").click()
    alice.get_by_label("With (usernames, comma separated)").fill("bob")
    alice.get_by_role("button", name="Start").click()
    expect(alice.locator("#title")).to_have_text("Bob")
    alice.get_by_role("textbox", name="Message", exact=True).fill("Hi Bob <b>!</b>")
    alice.keyboard.press("Enter")
    mine = alice.locator(".msg.mine", has_text="Hi Bob <b>!</b>")
    expect(mine.locator(".tick")).to_have_attribute("aria-label", "Sent")

    bob.goto("/app/chat")
    conversation = bob.locator("#convs button", has_text="Alice")
    expect(conversation.locator(".unread")).to_have_text("1")
    expect(conversation).to_contain_text("Hi Bob <b>!</b>")
    conversation.click()
    expect(bob.locator(".msg", has_text="Hi Bob <b>!</b>")).to_be_visible()
    expect(mine.locator(".tick")).to_have_attribute("aria-label", "Read")

    bob.get_by_role("textbox", name="Message", exact=True).press_sequentially("Hello", delay=20)
    expect(alice.locator("#typing")).to_have_text("Bob is typing…")
    bob.keyboard.press("Enter")
    expect(alice.locator(".msg", has_text="Hello")).to_be_visible()
    expect(alice.locator("#typing")).to_be_empty()
    expect(bob.locator(".msg.mine", has_text="Hello").locator(".tick")).to_have_attribute(
        "aria-label", "Read"
    )
