"""Errors of the control plane.

Hierarchy::

    PbxError
    ├── ProtocolError (also ValueError)   a client sent a command we cannot accept (bad JSON,
    │                                     unknown command, missing/mistyped field)
    ├── StateError                        a valid command that is invalid in the session's state
    ├── ProviderError                     an ASR/TTS provider failed (unreachable, no credentials, ...)
    ├── MediaError                        a file or URL to play could not be fetched or decoded
    └── ConfigError (also ValueError)     a bad configuration key or value

Each maps to one WebSocket ``error`` event whose ``sender`` names the component (``command``,
``asr``, ``tts``, ``play``, ``recorder``, ...); the session goes on.
"""

from __future__ import annotations


class PbxError(Exception):
    """Root of the control plane's errors."""

    sender = "server"


class ProtocolError(PbxError, ValueError):
    """The client's command is malformed."""

    sender = "command"


class StateError(PbxError):
    """The command is well formed but not valid now."""

    sender = "command"


class ProviderError(PbxError):
    """An ASR or TTS provider failed; ``sender`` is "asr" or "tts"."""

    def __init__(self, sender: str, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.sender = sender
        self.code = code


class MediaError(PbxError):
    """Audio to play could not be loaded."""

    sender = "play"

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ConfigError(PbxError, ValueError):
    """A configuration key has a bad value; the message names the key."""
