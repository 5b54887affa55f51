"""Content-addressed blob store (see berth.content.store)."""
