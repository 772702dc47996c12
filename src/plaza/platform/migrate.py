"""Applying the alembic migrations, from `plaza migrate` or at start-up on the embedded default."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from plaza.platform.db import Database

_PG_MIGRATION_LOCK = (
    7_211_942  # advisory lock id: several processes starting at once migrate one by one
)


def alembic_config(url: str = "") -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("plaza") / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    return config


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade(db: Database) -> None:
    async with db.write() as conn:
        await conn.run_sync(_upgrade)
