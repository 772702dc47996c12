"""initial

Revision ID: 0001
Revises:
Create Date: 2026-11-22 12:34:23.326668
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_counters")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("caller", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.String(length=128), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("caller", "key", name=op.f("pk_idempotency_keys")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_keys_created_at", ["created_at"], unique=False)

    op.create_table(
        "plaza_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_plaza_meta")),
    )
    op.create_table(
        "processed_batches",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_processed_batches")),
    )
    with op.batch_alter_table("processed_batches", schema=None) as batch_op:
        batch_op.create_index("ix_processed_batches_processed_at", ["processed_at"], unique=False)

    op.create_table(
        "users",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("username", sa.String(length=32), nullable=False),
        sa.Column("display_name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "auth_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_auth_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_auth_tokens")),
    )
    with op.batch_alter_table("auth_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_auth_tokens_user_id", ["user_id"], unique=False)

    op.create_table(
        "links",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("long_url", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("is_custom", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_clicks", sa.Integer(), nullable=True),
        sa.Column("redirects_served", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expired_swept_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clicks", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("bot_clicks", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_clicked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_links_owner_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links")),
        sa.UniqueConstraint("code", name=op.f("uq_links_code")),
    )
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.create_index("ix_links_expires_at", ["expires_at"], unique=False)
        batch_op.create_index("ix_links_owner_id_id", ["owner_id", "id"], unique=False)

    op.create_table(
        "link_countries",
        sa.Column("link_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("country", sa.String(length=8), nullable=False),
        sa.Column("clicks", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["links.id"],
            name=op.f("fk_link_countries_link_id_links"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("link_id", "country", name=op.f("pk_link_countries")),
    )
    op.create_table(
        "link_daily",
        sa.Column("link_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("clicks", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["link_id"], ["links.id"], name=op.f("fk_link_daily_link_id_links"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("link_id", "day", name=op.f("pk_link_daily")),
    )
    op.create_table(
        "link_devices",
        sa.Column("link_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("device", sa.String(length=16), nullable=False),
        sa.Column("clicks", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["links.id"],
            name=op.f("fk_link_devices_link_id_links"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("link_id", "device", name=op.f("pk_link_devices")),
    )
    op.create_table(
        "link_referrers",
        sa.Column("link_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("referrer", sa.String(length=255), nullable=False),
        sa.Column("clicks", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["links.id"],
            name=op.f("fk_link_referrers_link_id_links"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("link_id", "referrer", name=op.f("pk_link_referrers")),
    )


def downgrade() -> None:

    op.drop_table("link_referrers")
    op.drop_table("link_devices")
    op.drop_table("link_daily")
    op.drop_table("link_countries")
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_index("ix_links_owner_id_id")
        batch_op.drop_index("ix_links_expires_at")

    op.drop_table("links")
    with op.batch_alter_table("auth_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_auth_tokens_user_id")

    op.drop_table("auth_tokens")
    op.drop_table("users")
    with op.batch_alter_table("processed_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_processed_batches_processed_at")

    op.drop_table("processed_batches")
    op.drop_table("plaza_meta")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_keys_created_at")

    op.drop_table("idempotency_keys")
    op.drop_table("counters")
