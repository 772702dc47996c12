"""Forgetting dead devices through the real app: cursors of devices unseen for the TTL go, devices in use
keep theirs, and a forgotten device that comes back syncs as a new one."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from sqlalchemy import func, select, update

from plaza.app import sweep_once
from plaza.chat import devices
from plaza.chat.tables import device_cursors
from tests.conftest import register
from tests.integration.test_chat_messaging import conversation
from tests.wsclient import Socket, online, send_message, token_of

TTL_DAYS = 90


def cursors_of(client: Any, device_id: str) -> dict[str, int]:
    """The device's delivered cursors, by conversation."""
    query = select(device_cursors.c.conversation_id, device_cursors.c.delivered_seq).where(
        device_cursors.c.device_id == device_id
    )

    async def read() -> dict[str, int]:
        async with client.app.state.platform.db.read() as conn:
            return {str(row[0]): int(row[1]) for row in await conn.execute(query)}

    return dict(client.portal.call(read))


def last_seen(client: Any, device_id: str) -> dt.datetime | None:
    """When the device's cursors were last written (the oldest of them)."""
    query = select(func.min(device_cursors.c.updated_at)).where(
        device_cursors.c.device_id == device_id
    )

    async def read() -> dt.datetime | None:
        async with client.app.state.platform.db.read() as conn:
            return (await conn.execute(query)).scalar_one()

    return client.portal.call(read)  # type: ignore[no-any-return]


def age(client: Any, device_id: str, days: float) -> None:
    """Make the device's cursors look as if it was last seen `days` ago."""
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    statement = (
        update(device_cursors)
        .where(device_cursors.c.device_id == device_id)
        .values(updated_at=when)
    )

    async def write() -> None:
        async with client.app.state.platform.db.write() as conn:
            await conn.execute(statement)

    client.portal.call(write)


def forget(client: Any) -> int:
    """One run of the periodic sweep; how many device cursors it forgot."""
    state = client.app.state
    return int(client.portal.call(sweep_once, state.platform, state.services)["chat_devices"])


def deliver_all(socket: Socket, last_seqs: dict[str, int]) -> None:
    for cid, seq in last_seqs.items():
        socket.send({"type": "delivered", "conversation_id": cid, "seq": seq})
    socket.settle()


def sync(socket: Socket, cursors: dict[str, int]) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The (conversation, seq) of every message a sync replays, and its `synced` frame."""
    socket.send({"type": "sync", "cursors": cursors})
    replayed = []
    while (frame := socket.recv())["type"] != "synced":
        if frame["type"] == "message":
            replayed.append((frame["message"]["conversation_id"], frame["message"]["seq"]))
    return replayed, frame


def chats(client: Any) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """alice and bob, and three conversations of theirs with a message from alice in each."""
    alice, bob = register(client, "alice"), register(client, "bob")
    register(client, "carol")
    cids = [
        conversation(client, alice, "bob"),
        conversation(client, alice, "bob", "carol"),
        conversation(client, alice, "bob", name="pair"),
    ]
    with online(client, token_of(alice)) as a:
        for cid in cids:
            send_message(a, cid, f"hello {cid}")
    return alice, bob, cids


def test_devices_unseen_for_the_ttl_are_forgotten_in_batches(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devices, "FORGET_BATCH", 2)  # several batches for one device's three rows
    client = make_client(chat_device_ttl_days=TTL_DAYS)
    _, bob, cids = chats(client)
    for device in ("gone", "quiet", "fresh"):
        with online(client, token_of(bob), device_id=device) as b:
            deliver_all(b, dict.fromkeys(cids, 1))
    age(client, "gone", TTL_DAYS + 1)
    age(client, "quiet", TTL_DAYS - 1)

    assert forget(client) == 3
    assert cursors_of(client, "gone") == {}
    assert cursors_of(client, "quiet") == dict.fromkeys(cids, 1)
    assert cursors_of(client, "fresh") == dict.fromkeys(cids, 1)
    assert forget(client) == 0


def test_a_ttl_of_zero_keeps_every_device(make_client: Any) -> None:
    client = make_client(chat_device_ttl_days=0)
    _, bob, cids = chats(client)
    with online(client, token_of(bob), device_id="ancient") as b:
        deliver_all(b, dict.fromkeys(cids, 1))
    age(client, "ancient", 10 * 365)
    assert forget(client) == 0
    assert cursors_of(client, "ancient") == dict.fromkeys(cids, 1)


def wait_seen(client: Any, device_id: str, after: dt.datetime) -> None:
    """Devices are marked seen in the background of their connection: wait for it."""
    deadline = time.monotonic() + 5
    while (seen := last_seen(client, device_id)) is None or seen < after:
        assert time.monotonic() < deadline, f"{device_id} last seen {seen}, not after {after}"
        time.sleep(0.02)


def test_a_device_in_use_is_never_forgotten_however_quiet(make_client: Any) -> None:
    client = make_client(chat_device_ttl_days=TTL_DAYS)
    _, bob, cids = chats(client)
    with online(client, token_of(bob), device_id="desk") as b:
        deliver_all(b, dict.fromkeys(cids, 1))
    age(client, "desk", TTL_DAYS + 1)
    reconnected = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with online(client, token_of(bob), device_id="desk"):  # nothing new to confirm: idle
        wait_seen(client, "desk", after=reconnected)  # connecting marks it seen
        # Connected for longer than the TTL: the hourly report of connected devices keeps it.
        age(client, "desk", TTL_DAYS + 1)
        client.portal.call(client.app.state.services.realtime.report_devices)
        assert last_seen(client, "desk") > reconnected  # type: ignore[operator]
        assert forget(client) == 0
    assert cursors_of(client, "desk") == dict.fromkeys(cids, 1)


def test_a_forgotten_device_that_comes_back_syncs_as_a_new_one(make_client: Any) -> None:
    client = make_client(chat_device_ttl_days=TTL_DAYS)
    alice, bob, cids = chats(client)
    first, others = cids[0], cids[1:]
    with online(client, token_of(alice)) as a:
        send_message(a, first, "second")
    everything = {first: 2, **dict.fromkeys(others, 1)}
    with online(client, token_of(bob), device_id="phone") as b:
        replayed, _ = sync(b, {})
        assert replayed == [(first, 1), (first, 2), *((c, 1) for c in others)]
        deliver_all(b, everything)
        b.send({"type": "read", "conversation_id": first, "seq": 1})
        b.settle()
    with online(client, token_of(bob), device_id="phone") as b:
        assert sync(b, {})[0] == []  # its cursors: nothing new

    age(client, "phone", TTL_DAYS + 1)
    assert forget(client) == 3
    with online(client, token_of(bob), device_id="phone") as b:
        again, synced = sync(b, {})
    with online(client, token_of(bob), device_id="brand-new") as n:
        as_new, synced_new = sync(n, {})
    assert again == replayed == as_new
    assert synced == synced_new == {"type": "synced", "cursors": everything, "more": False}
    with online(client, token_of(bob), device_id="phone") as b:  # cursors it names still count
        assert sync(b, {first: 2})[0] == [(c, 1) for c in others]
    # What bob has read is the member's, not the device's: untouched.
    listed = client.get(f"/api/v1/conversations/{first}", headers=bob).json()
    assert listed["unread_count"] == 1
