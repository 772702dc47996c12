"""The news feed: posts, follows, hybrid fan-out into timelines, ranked and chronological reads."""
