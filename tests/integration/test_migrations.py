"""The migrations build exactly the schema the code describes, on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from plaza.platform.db import Database
from plaza.platform.schema import include_name, metadata


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


@pytest.mark.anyio
async def test_0003_indexes_messages_stored_before_it_and_undoes_cleanly(migrated_url: str) -> None:
    from alembic import command
    from sqlalchemy import Connection, text

    from plaza.platform.migrate import alembic_config

    def migrate(connection: Connection, to: str, down: bool = False) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, to)

    db = Database.from_url(migrated_url)
    try:
        async with db.write() as conn:
            await conn.run_sync(migrate, "0002", True)
            await conn.execute(
                text(
                    "INSERT INTO users (id, username, display_name, password_hash, created_at) "
                    "VALUES (1, 'alice', 'Alice', 'x', CURRENT_TIMESTAMP)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO conversations (id, kind, last_seq, created_at, last_activity_at) "
                    "VALUES (1, 'group', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO messages (id, conversation_id, seq, sender_id, client_msg_id, "
                    "content, message_type, created_at) VALUES (42, 1, 1, 1, 'c', "
                    "'私は東京に住んでいます', 'text', CURRENT_TIMESTAMP)"
                )
            )
            await conn.run_sync(migrate, "head")
            if db.dialect == "sqlite":
                query = "SELECT rowid FROM messages_fts WHERE messages_fts MATCH '\"東京に\"'"
            else:
                query = "SELECT 42 FROM pg_indexes WHERE indexname = 'ix_messages_content_trgm'"
            assert (await conn.execute(text(query))).scalars().all() == [42]
    finally:
        await db.dispose()
