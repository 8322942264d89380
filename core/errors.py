"""Errors raised by the media core.

Hierarchy::

    CoreError
    ├── MalformedPacket (also ValueError)   the peer sent bytes we cannot parse
    ├── CodecError                           a codec library reported a failure
    └── WavError (also OSError)              the recording file could not be written

"The peer sent garbage" (MalformedPacket) is kept apart from "we were asked to do
something invalid" (plain ValueError from argument checks) so the control plane
can map one to a dropped packet and the other to an ``error`` event.
"""

from __future__ import annotations


class CoreError(Exception):
    """Root of every error raised by :mod:`pbx.core`."""


class MalformedPacket(CoreError, ValueError):
    """An RTP, RTCP or RFC 4733 packet that does not parse."""


class CodecError(CoreError):
    """A codec failed (e.g. libopus returned an error code)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class WavError(CoreError, OSError):
    """The WAV writer could not write or finalize its file."""
