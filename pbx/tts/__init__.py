"""Text-to-speech providers: the interface each implements (the registry by name is :mod:`pbx.providers`)."""
