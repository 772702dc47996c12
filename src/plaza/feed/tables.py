"""The news feed's tables: posts and their reactions, the follow graph, mutes and blocks, the fan-out outbox."""

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)

from plaza.platform.db import BigId, UTCDateTime, metadata

posts = Table(
    "posts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),  # SnowflakeIds: time-ordered
    Column("author_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("content", Text, nullable=False),
    Column("media_urls", Text, nullable=False, server_default="[]"),  # a JSON array
    Column("reply_to", BigInteger, nullable=True),
    Column("repost_of", BigInteger, nullable=True),  # a repost is a post of its own, pointing here
    Column("like_count", Integer, nullable=False, server_default="0"),
    Column("repost_count", Integer, nullable=False, server_default="0"),
    Column("reply_count", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    # A user's posts and the SQL side of feeds (authors' recent posts) read this index.
    Index("ix_posts_author_id_id", "author_id", "id"),
    # A user reposts a post once.
    UniqueConstraint("author_id", "repost_of", name="uq_posts_author_id_repost_of"),
)

likes = Table(
    "likes",
    metadata,
    Column("post_id", BigInteger, ForeignKey("posts.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # The post's author, kept here so ranking can ask how often the reader likes an author.
    Column("author_id", BigId, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("post_id", "user_id"),
    Index("ix_likes_user_id_author_id", "user_id", "author_id"),
)

follows = Table(
    "follows",
    metadata,
    Column("follower_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("followee_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("follower_id", "followee_id"),
    # Fan-out pages through an author's followers in follower id order.
    Index("ix_follows_followee_id_follower_id", "followee_id", "follower_id"),
)

# Follower and following counts, kept in the transactions that change follows: fan-out asks every post
# whether its author is a celebrity, and profiles show the counts.
follow_counts = Table(
    "follow_counts",
    metadata,
    Column("user_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("followers", Integer, nullable=False, server_default="0"),
    Column("following", Integer, nullable=False, server_default="0"),
)

# Mutes hide the target's posts from the user; blocks also end follows both ways and stop new ones.
mutes = Table(
    "mutes",
    metadata,
    Column("user_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("target_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("user_id", "target_id"),
    Index("ix_mutes_target_id", "target_id"),  # fan-out asks who mutes an author
)

blocks = Table(
    "blocks",
    metadata,
    Column("user_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("target_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("user_id", "target_id"),
    Index("ix_blocks_target_id", "target_id"),
)

# Fan-out events written in the transaction of the change they announce, then relayed to the `posts`
# stream: a crash between commit and publish delays a fan-out, never loses it.
feed_outbox = Table(
    "feed_outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
