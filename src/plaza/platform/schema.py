"""Every table of every context on one MetaData: what migrations are compared against."""

import plaza.accounts.tables
import plaza.chat.tables
import plaza.feed.tables
import plaza.links.tables
import plaza.platform.tables  # noqa: F401  (imported for their tables)
from plaza.chat.tables import SEARCH_OBJECTS
from plaza.platform.db import metadata

__all__ = ["include_object", "metadata"]

# Objects the migrations make by hand, which no Table describes.
UNMANAGED = SEARCH_OBJECTS


def include_object(
    _object: object, name: str | None, _type: str, reflected: bool, _compare_to: object
) -> bool:
    """For alembic's comparisons: skip what the database has and the metadata cannot describe."""
    return not (reflected and name in UNMANAGED)
