"""Chat's search SQL: messages a member may read whose text contains every word of a query.

`_matching` is the one place that knows how each dialect finds text: on SQLite the trigram FTS5 table
(`messages_fts`, migration 0003) for words of 3 or more characters; on PostgreSQL ILIKE, which the
pg_trgm GIN index on `messages.content` serves. Shorter words cannot use a trigram index: they are
matched with LIKE on the rows the other conditions (and the caller's bounded window) leave.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, column, select, table
from sqlalchemy.ext.asyncio import AsyncConnection

from plaza.chat.tables import MESSAGES_FTS, messages
from plaza.chat.tables import conversation_members as members
from plaza.platform.db import AnyRow

__all__ = ["MIN_INDEXED_CHARS", "Scope", "escape_like", "scan_floor", "search"]

MIN_INDEXED_CHARS = 3  # a trigram index knows nothing of shorter strings
_LIKE_ESCAPE = "\\"
_fts = table(MESSAGES_FTS, column("rowid"), column(MESSAGES_FTS))


@dataclass(frozen=True)
class Scope:
    """Where to look: the caller's conversations (or one of them), below a message id when paging."""

    user_id: int
    conversation_id: int | None = None
    before_id: int | None = None


def _readable(scope: Scope) -> Select[int]:
    """Ids of the text messages of conversations the user is a member of now, within the scope.

    The same rule as reading a conversation's history: a member reads all of it.
    """
    conditions = [messages.c.message_type == "text"]
    if scope.conversation_id is not None:
        conditions.append(messages.c.conversation_id == scope.conversation_id)
    if scope.before_id is not None:
        conditions.append(messages.c.id < scope.before_id)
    membership = and_(
        members.c.conversation_id == messages.c.conversation_id,
        members.c.user_id == scope.user_id,
        members.c.left_at.is_(None),
    )
    return select(messages.c.id).join(members, membership).where(*conditions)


async def scan_floor(conn: AsyncConnection, scope: Scope, window: int) -> int | None:
    """The id of the `window`-th newest readable message: where a bounded scan stops (None: fewer)."""
    query = _readable(scope).order_by(messages.c.id.desc()).offset(window - 1).limit(1)
    found = (await conn.execute(query)).scalar()
    return None if found is None else int(found)


async def search(
    conn: AsyncConnection, scope: Scope, words: Sequence[str], *, floor: int | None, limit: int
) -> list[AnyRow]:
    """Readable messages containing every word (case-insensitively), newest first; ids >= floor."""
    ids = _readable(scope).where(*_matching(conn.dialect.name, words))
    if floor is not None:
        ids = ids.where(messages.c.id >= floor)
    ids = ids.order_by(messages.c.id.desc()).limit(limit)
    query = select(messages).where(messages.c.id.in_(ids)).order_by(messages.c.id.desc())
    return list((await conn.execute(query)).all())


def _matching(dialect: str, words: Sequence[str]) -> list[ColumnElement[bool]]:
    if dialect != "sqlite":
        return [_contains(word) for word in words]
    conditions = [_contains(word) for word in words if len(word) < MIN_INDEXED_CHARS]
    indexed = [word for word in words if len(word) >= MIN_INDEXED_CHARS]
    if indexed:
        matched = select(_fts.c.rowid).where(_fts.c[MESSAGES_FTS].op("MATCH")(_fts_query(indexed)))
        conditions.append(messages.c.id.in_(matched))
    return conditions


def _contains(word: str) -> ColumnElement[bool]:
    return messages.c.content.ilike(f"%{escape_like(word)}%", escape=_LIKE_ESCAPE)


def escape_like(word: str) -> str:
    """The word as a LIKE pattern that matches only itself: wildcards and the escape escaped."""
    for special in (_LIKE_ESCAPE, "%", "_"):
        word = word.replace(special, _LIKE_ESCAPE + special)
    return word


def _fts_query(words: Sequence[str]) -> str:
    """An FTS5 query of quoted strings, one per word, all required: user input is never syntax.

    With the trigram tokenizer a quoted string matches wherever it occurs as a substring.
    """
    return " AND ".join('"' + word.replace('"', '""') + '"' for word in words)
