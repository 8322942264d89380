"""Speech recognition providers: the interface each implements (the registry by name is :mod:`pbx.providers`)."""
