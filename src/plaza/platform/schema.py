"""Every table of every context on one MetaData: what migrations are compared against."""

import plaza.accounts.tables
import plaza.chat.tables
import plaza.feed.tables
import plaza.links.tables
import plaza.platform.tables  # noqa: F401  (imported for their tables)
from plaza.platform.db import metadata

__all__ = ["metadata"]
