"""Speech recognition providers: the interface the session uses, and a registry by name."""
