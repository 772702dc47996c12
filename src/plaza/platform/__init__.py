"""Cross-cutting plumbing shared by every context: database, ports to backing services, errors, HTTP."""
