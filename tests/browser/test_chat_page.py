"""The chat page in a real browser: two users chat live, with typing and the read tick; new
conversations and presence arrive live; search; group members."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import api_user, call, register, send_messages, sign_in
from tests.server import Server


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


def test_a_new_conversation_appears_in_the_list_without_a_reload(
    new_page: Any, server: Server
) -> None:
    alice, bob = new_page(), new_page()
    sign_in(alice, server, api_user(server, "nc_alice", "Alice"))
    sign_in(bob, server, api_user(server, "nc_bob", "Bob"))
    carol = api_user(server, "nc_carol", "Carol")
    bob.goto("/app/chat")
    expect(bob.locator("#live")).to_contain_text("Live")
    bob.evaluate("window.sameDocument = true")

    alice.goto("/app/chat")
    alice.get_by_text("New conversation").click()
    alice.get_by_label("With (usernames, comma separated)").fill("nc_bob")
    alice.get_by_role("button", name="Start").click()
    expect(alice.locator("#title")).to_have_text("Bob")
    call(server, carol, "POST", "/api/v1/conversations", {"members": ["nc_bob"], "name": "Club"})

    from_alice = bob.locator("#convs button", has_text="Alice")
    expect(from_alice).to_contain_text("No messages yet")
    expect(bob.locator("#convs button", has_text="Club")).to_be_visible()
    alice.get_by_role("textbox", name="Message", exact=True).fill("First!")
    alice.keyboard.press("Enter")
    expect(from_alice.locator(".unread")).to_have_text("1")
    expect(from_alice).to_contain_text("Alice: First!")
    assert bob.evaluate("window.sameDocument") is True


def test_presence_dots_and_message_search(new_page: Any, server: Server) -> None:
    dana = api_user(server, "pr_dana", "Dana")  # never connected: offline
    eve = api_user(server, "pr_eve", "Eve")
    direct = call(server, dana, "POST", "/api/v1/conversations", {"members": ["pr_eve"]})
    call(server, eve, "POST", "/api/v1/conversations", {"members": ["pr_dana"], "name": "Other"})
    page = new_page()
    sign_in(page, server, eve)
    page.goto("/app/chat")
    with_dana = page.locator("#convs button", has_text="Dana")
    expect(with_dana.get_by_role("img", name="offline", exact=True)).to_be_visible()

    dana_page = new_page()
    sign_in(dana_page, server, dana)
    dana_page.goto("/app/chat")
    expect(with_dana.get_by_role("img", name="online", exact=True)).to_be_visible()

    # The match is the oldest of more messages than the page loads at first.
    lines = ["Meet me at the lighthouse at noon"] + [f"filler {n}" for n in range(40)]
    send_messages(server, dana, direct["id"], lines)
    expect(with_dana).to_contain_text("filler 39")
    page.get_by_role("searchbox", name="Search messages").fill("LIGHTHOUSE")
    page.keyboard.press("Enter")
    results = page.get_by_role("list", name="Search results").get_by_role("button")
    expect(results).to_have_count(1)
    expect(results).to_contain_text("Dana")
    results.click()
    expect(page.locator("#title")).to_have_text("Dana")
    found = page.locator(".msg.found")
    expect(found).to_have_text(re.compile("Meet me at the lighthouse at noon"))
    expect(found).to_be_in_viewport()
    expect(page.locator(".msg", has_text="filler 39")).to_have_count(1)


def _accept_next_dialog(page: Any) -> None:
    page.once("dialog", lambda dialog: dialog.accept())


def test_group_members_are_added_removed_and_leave(new_page: Any, server: Server) -> None:
    alice, bob = new_page(), new_page()
    sign_in(alice, server, api_user(server, "gm_alice", "Alice"))
    sign_in(bob, server, api_user(server, "gm_bob", "Bob"))
    api_user(server, "gm_carol", "Carol")
    bob.goto("/app/chat")
    expect(bob.locator("#live")).to_contain_text("Live")
    alice.goto("/app/chat")
    alice.get_by_text("New conversation").click()
    alice.get_by_label("With (usernames, comma separated)").fill("gm_bob")
    alice.get_by_label("Group name").fill("Trip")
    alice.get_by_role("button", name="Start").click()
    expect(alice.locator("#title")).to_have_text("Trip")
    bob.locator("#convs button", has_text="Trip").click()

    alice.get_by_role("button", name="Members (2)").click()
    alice.get_by_label("Add people").fill("gm_carol")
    alice.get_by_role("button", name="Add", exact=True).click()
    expect(alice.get_by_role("button", name="Members (3)")).to_be_visible()
    for page in (alice, bob):
        expect(page.locator(".msg.system")).to_have_text(["gm_alice added gm_carol"])

    _accept_next_dialog(alice)
    alice.get_by_role("button", name="Remove Carol").click()
    expect(alice.get_by_role("button", name="Members (2)")).to_be_visible()
    for page in (alice, bob):
        expect(page.locator(".msg.system").last).to_have_text("gm_alice removed gm_carol")

    bob.get_by_role("button", name="Members (2)").click()
    _accept_next_dialog(bob)
    bob.get_by_role("button", name="Remove Alice").click()
    expect(bob.get_by_role("alert")).to_have_text(
        "Only the group's creator can remove other members."
    )
    _accept_next_dialog(bob)
    bob.get_by_role("button", name="Leave group").click()
    expect(bob.locator("#notice")).to_have_text("You left this conversation.")
    expect(bob.locator("#sendbox")).to_be_hidden()
    expect(bob.locator("#convs button", has_text="Trip")).to_have_count(0)
    expect(alice.locator(".msg.system").last).to_have_text("gm_bob left")
    expect(alice.get_by_role("button", name="Members (1)")).to_be_visible()


def test_the_page_reconnects_by_itself_and_shows_each_message_once(
    new_page: Any, server: Server
) -> None:
    frank = api_user(server, "rc_frank", "Frank")
    gina = api_user(server, "rc_gina", "Gina")
    conversation = call(server, frank, "POST", "/api/v1/conversations", {"members": ["rc_gina"]})
    send_messages(server, frank, conversation["id"], ["one", "two"])
    side = call(
        server, frank, "POST", "/api/v1/conversations", {"members": ["rc_gina"], "name": "Side"}
    )
    send_messages(server, frank, side["id"], ["side 1", "side 2"])
    page = new_page()
    sign_in(page, server, gina)
    # Every socket of the page passes through here; while `down`, new ones are dropped at once.
    down = False
    connections: list[Any] = []

    def route(socket: Any) -> None:
        if down:
            socket.close()
        else:
            connections.append(socket.connect_to_server())

    page.route_web_socket(re.compile(r"/ws(\?|$)"), route)
    page.goto(f"/app/chat?c={conversation['id']}")
    texts = page.locator("#messages .msg .text")
    expect(texts).to_have_text(["one", "two"])
    expect(page.locator("#live")).to_have_text("● Live")

    down = True
    connections[-1].close()  # the server's side goes away, as in a network cut
    expect(page.locator("#live")).to_have_text("Reconnecting…")
    send_messages(server, frank, conversation["id"], ["three", "four", "five"])
    page.get_by_role("textbox", name="Message", exact=True).fill("sent while offline")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.mine .tick")).to_have_attribute("aria-label", "Sending")
    assert len(connections) == 1

    down = False
    expect(page.locator("#live")).to_have_text("● Live", timeout=20_000)
    expected = ["one", "two", "three", "four", "five", "sent while offline"]
    expect(texts).to_have_text(expected)
    expect(page.locator(".msg.mine .tick")).to_have_attribute("aria-label", re.compile("Sent|Read"))
    send_messages(server, frank, conversation["id"], ["six"])
    expect(texts).to_have_text([*expected, "six"])
    # Only the conversation not on screen has unread messages, as many as before the cut.
    expect(page.locator("#convs .unread")).to_have_text(["2"])
    expect(page.locator("#convs button", has_text="Side").locator(".unread")).to_have_text("2")
