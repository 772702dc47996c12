"""Ranked mode's scoring, the documented formula, as a pure function of the candidates and the reader.

    score = 0.4 * recency + 0.3 * engagement + 0.2 * relationship + 0.1 * boosts

- recency: halves every RECENCY_HALF_LIFE_H hours of age (1 for a post made now).
- engagement: log(1 + likes + 2 reposts + 3 replies), over the largest among the candidates.
- relationship: log(1 + the reader's likes of and replies to the author in the last 30 days), over
  the largest among the candidates' authors.
- boosts: 0.5 for media, 0.5 for being part of a thread (a reply, or a post with replies).
Each term is in [0, 1]; ties keep the newer post first.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence

from plaza.feed.posts import PostView, author_of

__all__ = ["AFFINITY_WINDOW", "rank"]

RECENCY_HALF_LIFE_H = 12.0
AFFINITY_WINDOW = dt.timedelta(days=30)
WEIGHTS = (0.4, 0.3, 0.2, 0.1)


def _engagement(view: PostView) -> float:
    return math.log1p(
        int(view["like_count"]) + 2 * int(view["repost_count"]) + 3 * int(view["reply_count"])
    )


def _boosts(view: PostView) -> float:
    media = 0.5 if view["media_urls"] else 0.0
    thread = 0.5 if view["reply_to"] is not None or view["reply_count"] > 0 else 0.0
    return media + thread


def rank(
    views: Sequence[PostView], affinity: Mapping[int, int], now: dt.datetime
) -> list[PostView]:
    """The views, best first."""
    if not views:
        return []
    top_engagement = max(_engagement(v) for v in views) or 1.0
    top_affinity = max((math.log1p(n) for n in affinity.values()), default=0.0) or 1.0
    w_recency, w_engagement, w_relationship, w_boosts = WEIGHTS

    def score(view: PostView) -> float:
        created = dt.datetime.fromisoformat(view["created_at"])
        age_h = max(0.0, (now - created).total_seconds() / 3600)
        return (
            w_recency * math.pow(0.5, age_h / RECENCY_HALF_LIFE_H)
            + w_engagement * _engagement(view) / top_engagement
            + w_relationship * math.log1p(affinity.get(author_of(view), 0)) / top_affinity
            + w_boosts * _boosts(view)
        )

    return sorted(views, key=lambda v: (score(v), int(v["id"])), reverse=True)
