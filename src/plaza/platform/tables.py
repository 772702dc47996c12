"""Tables the platform owns: instance metadata, leased counters, idempotency keys, processed batches."""

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, String, Table, Text

from plaza.platform.db import UTCDateTime, metadata

plaza_meta = Table(
    "plaza_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("caller", String(128), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=True),  # NULL while the first request is in flight
    Column("content_type", String(128), nullable=True),
    Column("body", LargeBinary, nullable=True),
    # When the request holding the key claimed it: the start of its lease, and of the key's 24 h.
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_idempotency_keys_created_at", "created_at"),
)

processed_batches = Table(
    "processed_batches",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("processed_at", UTCDateTime, nullable=False),
    Index("ix_processed_batches_processed_at", "processed_at"),
)
