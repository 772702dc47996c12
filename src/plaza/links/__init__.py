"""Short links: codes, redirects, click analytics."""
