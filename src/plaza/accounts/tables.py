"""Accounts' tables."""

from sqlalchemy import Column, ForeignKey, Index, String, Table, Text

from plaza.platform.db import BigId, UTCDateTime, metadata

users = Table(
    "users",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("username", String(32), nullable=False, unique=True),  # stored lower-case
    Column("display_name", String(64), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

auth_tokens = Table(
    "auth_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # SHA-256 hex of the opaque token
    Column("user_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Index("ix_auth_tokens_user_id", "user_id"),
)
