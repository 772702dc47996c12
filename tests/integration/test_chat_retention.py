"""Retention through the real app: old messages go in batches, seqs and search follow."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from plaza.app import sweep_once
from plaza.chat import retention
from plaza.platform.clock import FakeClock
from tests.conftest import register
from tests.integration.test_chat_messaging import conversation, history
from tests.wsclient import online, send_message, token_of


def test_purge_keeps_seq_and_search_in_step(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "RETENTION_BATCH", 2)  # several batches for three messages
    alice, bob = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a:
        for text in ("old news one", "old news two", "old news three"):
            send_message(a, cid, text)
        time.sleep(0.01)
        cutoff = dt.datetime.now(dt.UTC)
        send_message(a, cid, "fresh news")
        chat = client.app.state.services.chat
        assert client.portal.call(chat.retention.purge_before, cutoff) == 3
        assert client.portal.call(chat.retention.purge_before, cutoff) == 0
        assert [(m["seq"], m["content"]) for m in history(client, bob, cid)] == [(4, "fresh news")]
        assert send_message(a, cid, "after the purge")["seq"] == 5  # seq never restarts
    listed = client.get(f"/api/v1/conversations/{cid}", headers=bob).json()
    assert listed["last_seq"] == 5 and listed["unread_count"] == 2
    search = client.get("/api/v1/search/messages", params={"q": "news"}, headers=bob).json()
    assert [m["content"] for m in search["items"]] == ["fresh news"]
    with online(client, token_of(bob)) as b:  # a device that had nothing syncs what is left
        b.send({"type": "sync", "cursors": {cid: 0}})
        synced = [b.expect("message")["message"]["seq"] for _ in range(2)]
        assert synced == [4, 5] and b.expect("synced")["cursors"] == {cid: 5}


@pytest.mark.parametrize("days, purged_later", [(1, 1), (0, 0)])
def test_the_periodic_job_purges_what_is_due(
    make_client: Any, days: int, purged_later: int
) -> None:
    client = make_client(chat_retention_days=days)
    alice, _ = register(client, "alice"), register(client, "bob")
    cid = conversation(client, alice, "bob")
    with online(client, token_of(alice)) as a:
        send_message(a, cid, "recent")
    state = client.app.state
    assert client.portal.call(sweep_once, state.platform, state.services)["chat_messages"] == 0
    state.services.chat.retention.clock = FakeClock(start=time.time() + 2 * 86_400)
    done = client.portal.call(sweep_once, state.platform, state.services)
    assert done["chat_messages"] == purged_later
    assert len(history(client, alice, cid)) == 1 - purged_later
