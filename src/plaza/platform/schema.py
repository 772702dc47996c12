"""Every table of every context on one MetaData: what migrations are compared against."""

from typing import Any

import plaza.accounts.tables
import plaza.chat.tables
import plaza.feed.tables
import plaza.links.tables
import plaza.platform.tables  # noqa: F401  (imported for their tables)
from plaza.platform.db import is_managed, metadata

__all__ = ["include_name", "metadata"]


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's filter: what the metadata describes is compared; raw-DDL objects are not."""
    return is_managed(name)
