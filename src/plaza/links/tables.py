"""Short links' tables: the links and their click aggregates."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from plaza.platform.db import BigId, UTCDateTime, metadata

links = Table(
    "links",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("long_url", Text, nullable=False),
    Column("owner_id", BigId, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("is_custom", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("max_clicks", Integer, nullable=True),
    # Redirects handed out to a max_clicks link, reserved atomically so the limit is exact.
    Column("redirects_served", BigInteger, nullable=False, server_default="0"),
    Column("deleted_at", UTCDateTime, nullable=True),
    Column("expired_swept_at", UTCDateTime, nullable=True),
    Column("clicks", BigInteger, nullable=False, server_default="0"),
    Column("bot_clicks", BigInteger, nullable=False, server_default="0"),
    Column("last_clicked_at", UTCDateTime, nullable=True),
    Index("ix_links_owner_id_id", "owner_id", "id"),
    Index("ix_links_expires_at", "expires_at"),
)


def _aggregate(name: str, column: str, column_type: String | Date) -> Table:
    return Table(
        name,
        metadata,
        Column("link_id", BigId, ForeignKey("links.id", ondelete="CASCADE"), nullable=False),
        Column(column, column_type, nullable=False),
        Column("clicks", BigInteger, nullable=False),
        PrimaryKeyConstraint("link_id", column),
    )


link_daily = _aggregate("link_daily", "day", Date())
link_referrers = _aggregate("link_referrers", "referrer", String(255))
link_devices = _aggregate("link_devices", "device", String(16))
link_countries = _aggregate("link_countries", "country", String(8))
