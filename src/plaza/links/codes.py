"""Generated short codes: counter values leased from the database in blocks, through a keyed permutation.

Unique by construction (a bijection of distinct counter values), not guessable from neighbours (the
permutation is keyed by the instance's secret), and creating a link never contends on one counter row:
each process leases `block_size` values at a time.
"""

from __future__ import annotations

import asyncio
import re

from plaza.links import store
from plaza.platform.db import Database
from plaza.platform.ids import CODE_SPACE, CodePermutation

ALIAS_RE = re.compile(r"^[A-Za-z0-9_-]{3,64}$")
# Every top-level route, and words a future route may take. Compared case-insensitively.
RESERVED_ALIASES = frozenset(
    {
        "api", "app", "docs", "redoc", "healthz", "readyz", "metrics", "static", "ws",
        "openapi", "favicon", "robots", "login", "logout", "register", "admin", "assets",
    }
)  # fmt: skip


class CodeSpaceExhausted(RuntimeError):
    pass


class CodeAllocator:
    def __init__(self, db: Database, permutation: CodePermutation, block_size: int) -> None:
        self._db = db
        self._permutation = permutation
        self._block_size = block_size
        self._next = 0
        self._end = 0
        self._lock = asyncio.Lock()

    async def next_code(self) -> str:
        async with self._lock:
            if self._next >= self._end:
                # Its own committed transaction: a leased value is never handed out twice, even if
                # the link insert that wanted it fails.
                async with self._db.write() as conn:
                    self._next = await store.lease_block(conn, self._block_size)
                self._end = self._next + self._block_size
            value = self._next
            self._next += 1
        if value >= CODE_SPACE:
            raise CodeSpaceExhausted("all 62^7 generated codes are used")
        return self._permutation.code(value)
