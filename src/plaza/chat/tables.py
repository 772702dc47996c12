"""Chat's tables: conversations, their members, messages, what each device has been delivered, and the
offline pushes that could not be delivered.

Message search lives outside this MetaData: migration 0003 builds it with dialect-specific DDL (an FTS5
table kept in sync by triggers on SQLite, a pg_trgm GIN index on PostgreSQL). `SEARCH_OBJECTS` names what
it creates, so that comparing the migrated schema to these tables passes over them.
"""

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from plaza.platform.db import BigId, UTCDateTime, metadata, unmanaged

MESSAGES_FTS = "messages_fts"  # SQLite: FTS5, trigram tokenizer, external content on `messages`
MESSAGES_TRGM_INDEX = "ix_messages_content_trgm"  # PostgreSQL: GIN (content gin_trgm_ops)
SEARCH_OBJECTS = frozenset(
    {
        MESSAGES_FTS,
        *(f"{MESSAGES_FTS}_{shadow}" for shadow in ("data", "idx", "docsize", "config")),
        MESSAGES_TRGM_INDEX,
    }
)
unmanaged(SEARCH_OBJECTS)

conversations = Table(
    "conversations",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),  # direct | group
    Column("name", String(100), nullable=True),
    # "<smaller user id>:<larger user id>" for a direct conversation: at most one per pair of users.
    Column("direct_key", String(64), nullable=True, unique=True),
    Column("created_by", BigId, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    # The seq of the newest message; the row is locked to take the next one, so seqs have no gaps.
    Column("last_seq", BigInteger, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_activity_at", UTCDateTime, nullable=False),
)

conversation_members = Table(
    "conversation_members",
    metadata,
    Column(
        "conversation_id",
        BigId,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("user_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("joined_at", UTCDateTime, nullable=False),
    Column("left_at", UTCDateTime, nullable=True),  # set while not a member (left or removed)
    Column("read_seq", BigInteger, nullable=False, server_default="0"),
    # The highest seq any of the member's devices confirmed: what `delivered` receipts report.
    Column("delivered_seq", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("conversation_id", "user_id"),
    Index("ix_conversation_members_user_id", "user_id"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),  # SnowflakeIds
    Column(
        "conversation_id",
        BigId,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("seq", BigInteger, nullable=False),
    Column("sender_id", BigId, ForeignKey("users.id"), nullable=False),
    Column("client_msg_id", String(64), nullable=False),
    Column("content", Text, nullable=False),
    Column("message_type", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Also the index every history and sync query reads.
    UniqueConstraint("conversation_id", "seq"),
    Index("ix_messages_created_at", "created_at"),  # the retention job deletes the oldest first
    # A retried send finds its first attempt here.
    UniqueConstraint("sender_id", "client_msg_id"),
)

device_cursors = Table(
    "device_cursors",
    metadata,
    Column("user_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column(
        "conversation_id",
        BigId,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("delivered_seq", BigInteger, nullable=False),
    # When the device was last seen: those unseen for PLAZA_CHAT_DEVICE_TTL_DAYS are forgotten.
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("user_id", "device_id", "conversation_id"),
)

push_dead_letters = Table(
    "push_dead_letters",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("recipient_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("message_id", BigInteger, nullable=False),  # no foreign key: retention may purge it
    Column("payload", Text, nullable=False),  # the JSON the push provider refused, as sent
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=False),  # the last attempt's failure
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_push_dead_letters_created_at", "created_at"),  # purged with the messages they quote
)
