"""The chat benchmark's baseline: a bare Starlette WebSocket broadcast, no storage, no lookups.

`GET /ws?token=<user id>`: the user's conversation is fixed by the same layout as Plaza's seeded one
(bench/chatseed.py, from CHAT_BENCH_USERS and CHAT_BENCH_GROUP_SIZES). It answers with a `ready` frame;
then each text frame is written as it came to the other members' open connections, one after another,
and `{"type": "ping"}` is answered with a pong. Nothing is parsed, stored, acknowledged or checked.

    uvicorn --app-dir bench peer_broadcast:app --loop uvloop --http httptools --port 8001
"""

from __future__ import annotations

import os
from contextlib import suppress

from chatseed import groups
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

PING, PONG, READY = '{"type":"ping"}', '{"type":"pong"}', '{"type":"ready"}'

_sizes = [int(s) for s in os.environ.get("CHAT_BENCH_GROUP_SIZES", "2,10").split(",")]
GROUP_OF: dict[int, tuple[int, ...]] = {
    uid: tuple(ids)
    for ids in groups(int(os.environ.get("CHAT_BENCH_USERS", "10000")), _sizes)
    for uid in ids
}
CONNECTED: dict[int, WebSocket] = {}


async def chat(websocket: WebSocket) -> None:
    uid = int(websocket.query_params.get("token", "0"))
    group = GROUP_OF.get(uid)
    if group is None:
        await websocket.close(4401)
        return
    await websocket.accept()
    CONNECTED[uid] = websocket
    try:
        await websocket.send_text(READY)
        while True:
            text = await websocket.receive_text()
            if text == PING:
                await websocket.send_text(PONG)
                continue
            for other in group:
                peer = CONNECTED.get(other)
                if other != uid and peer is not None:
                    # a member that is leaving: its own endpoint cleans up
                    with suppress(WebSocketDisconnect, RuntimeError, OSError):
                        await peer.send_text(text)
    except WebSocketDisconnect:
        pass
    finally:
        if CONNECTED.get(uid) is websocket:
            del CONNECTED[uid]


app = Starlette(routes=[WebSocketRoute("/ws", chat)])
