"""Generated codes from several processes' allocators sharing one database never repeat."""

from __future__ import annotations

import asyncio
import re

import pytest

from plaza.links.codes import CodeAllocator
from plaza.platform.db import Database
from plaza.platform.ids import CodePermutation


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(
        request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_database_url")
    )


@pytest.mark.anyio
async def test_allocators_sharing_a_database_never_repeat(database_url: str) -> None:
    databases = [Database.from_url(database_url) for _ in range(3)]
    permutation = CodePermutation(b"k" * 32)
    allocators = [CodeAllocator(db, permutation, block_size=7) for db in databases]
    try:
        batches = await asyncio.gather(*(_take(a, 40) for a in allocators))
    finally:
        for db in databases:
            await db.dispose()
    codes = [code for batch in batches for code in batch]
    assert len(codes) == len(set(codes)) == 120
    assert all(re.fullmatch(r"[0-9a-zA-Z]{7}", code) for code in codes)


async def _take(allocator: CodeAllocator, count: int) -> list[str]:
    return [await allocator.next_code() for _ in range(count)]
