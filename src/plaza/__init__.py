"""Plaza: short links, real-time chat and a news feed, self-hosted."""

__version__ = "0.1.0"
