"""Message search: the words of a query, found in the messages a member may read, newest first.

Words of 3 or more characters are looked up in a trigram index (see `search_store`). A query made only
of shorter words (common in Chinese, Japanese and Korean: 東京, 서울) cannot use it; such a query reads
the caller's newest messages with LIKE, at most SHORT_QUERY_WINDOW of them per page, and the page's
cursor continues below that window: every request does bounded work, and paging still reaches every
message (a page may then hold fewer items than `limit`, even none, and still have a next cursor).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from plaza.accounts.service import User
from plaza.chat import search_store
from plaza.chat.search_store import MIN_INDEXED_CHARS, Scope
from plaza.chat.views import StoredMessage, parse_conversation_id, require_member
from plaza.platform.db import Database
from plaza.platform.errors import BadRequest

__all__ = ["MAX_QUERY_CHARS", "SearchPage", "SearchService", "query_words"]

MAX_QUERY_CHARS = 200
MAX_WORDS = 10  # each word is one more index lookup or LIKE
SHORT_QUERY_WINDOW = 5_000  # messages one page of a short-words-only query reads at most

Views = Callable[[Sequence[StoredMessage]], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class SearchPage:
    items: list[dict[str, Any]]
    next_before: int | None  # the message id the next page starts below; None: no more


def query_words(q: str) -> list[str]:
    """The distinct whitespace-separated words of a query; a blank query is a 400 naming q."""
    words = list(dict.fromkeys(q.split()))
    if not words:
        raise BadRequest("Give some words to search for.", code="empty_query", field="q")
    if len(words) > MAX_WORDS:
        raise BadRequest(
            f"Search for at most {MAX_WORDS} words at a time.", code="too_many_words", field="q"
        )
    return words


class SearchService:
    def __init__(self, *, db: Database, views: Views) -> None:
        self.db, self._views = db, views

    async def messages(
        self,
        user: User,
        q: str,
        *,
        conversation_id: object | None,
        before_id: int | None,
        limit: int,
    ) -> SearchPage:
        words = query_words(q)
        cid = None if conversation_id is None else parse_conversation_id(conversation_id)
        scope = Scope(user.id, cid, before_id)
        async with self.db.read() as conn:
            if cid is not None:
                await require_member(conn, cid, user.id)
            floor = None
            if all(len(word) < MIN_INDEXED_CHARS for word in words):
                floor = await search_store.scan_floor(conn, scope, SHORT_QUERY_WINDOW)
            rows = await search_store.search(conn, scope, words, floor=floor, limit=limit + 1)
        more, rows = len(rows) > limit, rows[:limit]
        # A bounded scan that found too few continues below its window next time.
        next_before = int(rows[-1].id) if more else floor
        return SearchPage(await self._views([StoredMessage.from_row(r) for r in rows]), next_before)
