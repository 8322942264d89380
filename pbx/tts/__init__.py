"""Text-to-speech providers: the interface the session uses, and a registry by name."""
