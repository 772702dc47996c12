"""The migrations build exactly the schema the code describes, on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from plaza.platform.db import Database
from plaza.platform.schema import include_name, metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "pg_database_url"
    return str(request.getfixturevalue(name))


@pytest.mark.anyio
async def test_migrated_schema_matches_the_code(migrated_url: str) -> None:
    db = Database.from_url(migrated_url)

    def diff(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"include_name": include_name})
        return list(compare_metadata(context, metadata))

    try:
        async with db.read() as conn:
            differences = await conn.run_sync(diff)
    finally:
        await db.dispose()
    assert differences == []
