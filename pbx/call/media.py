"""What a call knows of its media: typed media events in, leg operations out.

The media engine reports per leg in integer tuples; the media runner decodes each tuple once into one
of the slotted events below (:func:`pbx.server.media.decode_event`), and an unknown kind is an error
there, never a silent drop. Times (``at_ms`` and the other ``*_ms`` of a leg) are milliseconds of the
leg's own clock, since the leg was created; :attr:`LegMedia.start_ms` places that clock on the
engine's.

:class:`LegMedia` is everything the call core and its playback may do to a leg: one small interface,
so neither reaches into the engine. The transport that supplies the leg implements it (over the
compiled engine in :class:`pbx.server.media.EngineLeg`). Its operations are synchronous and in
memory; those that cannot be done raise ``ValueError`` (or ``KeyError`` for an item already dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from typing import Any, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class Speaking:
    at_ms: int
    start_ms: int            # when the speech started (VAD looks back speechPadding)


@dataclass(frozen=True, slots=True)
class Silence:
    at_ms: int
    start_ms: int            # when the silence started
    duration_ms: int         # silence so far (silencePadding or silenceTimeout)


@dataclass(frozen=True, slots=True)
class SegmentCap:
    """Continuous speech reached maxBufferDurationSecs: the utterance is cut here."""

    at_ms: int
    start_ms: int


@dataclass(frozen=True, slots=True)
class Dtmf:
    at_ms: int
    digit: str


@dataclass(frozen=True, slots=True)
class PlayStarted:
    at_ms: int
    item_id: int


@dataclass(frozen=True, slots=True)
class PlayEnded:
    at_ms: int
    item_id: int
    played_ms: int           # audio of the item that was played
    elapsed_ms: int          # time from the item's start to its end (muted time included)
    interrupted: bool


@dataclass(frozen=True, slots=True)
class PlayDropped:
    """An item removed before any of it played (an interrupt)."""

    at_ms: int
    item_id: int


@dataclass(frozen=True, slots=True)
class RtpTimeout:
    at_ms: int
    silent_ms: int           # time since the last packet


@dataclass(frozen=True, slots=True)
class Latched:
    """Symmetric RTP learned the peer's address from its first packet."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class RecorderError:
    at_ms: int
    errno: int


@dataclass(frozen=True, slots=True)
class InboundOverflow:
    at_ms: int
    dropped_samples: int


@dataclass(frozen=True, slots=True)
class RtcpBye:
    """The peer's RTCP said BYE: it stopped sending this stream."""

    at_ms: int


MediaEvent: TypeAlias = (
    Speaking | Silence | SegmentCap | Dtmf | PlayStarted | PlayEnded | PlayDropped | RtpTimeout | Latched
    | RecorderError | InboundOverflow | RtcpBye
)


class Recording(Protocol):
    """An open recording file (the engine's WAV writer), created and closed off the call core."""

    @property
    def path(self) -> str | PathLike[str]: ...


class LegMedia(Protocol):
    """One leg, as the call core and its playback use it."""

    @property
    def start_ms(self) -> float:
        """The engine-clock time (ms) of the leg's time 0."""

    @property
    def ssrc(self) -> int: ...

    def set_vad(self, kind: str, *, speech_padding_ms: int, silence_padding_ms: int, ratio: float,
                voice_threshold: float, silence_timeout_ms: int | None, max_buffer_secs: float) -> None:
        """Run VAD; ``ValueError`` for bad options, ``ImportError`` for a detector not installed,
        ``OverflowError`` for times beyond the engine's integers."""

    def set_denoise(self, enabled: bool) -> None: ...
    def set_inbound_mute(self, muted: bool) -> None: ...

    def attach_recorder(self, recording: Recording) -> None:
        """Record both directions into ``recording`` from the next frame; ``ValueError`` if the engine
        cannot write at its rate."""

    def start_asr_tap(self) -> float:
        """Keep the inbound audio for speech recognition from the next frame on; returns the
        engine-clock time (ms) of that frame, the recognised stream's time 0."""

    # The playout queue: items of PCM (16 kHz) in order, each on a numbered track.
    def enqueue(self, item_id: int, track: int) -> None:
        """Reserve an item at the end of the queue; ``ValueError`` when the queue holds its maximum."""

    def append(self, item_id: int, pcm: Pcm) -> None:
        """More audio for an item; ``KeyError`` if it was dropped, ``ValueError`` when the queue is full."""

    def share(self, item_id: int, pcm: Pcm) -> None:
        """The item's whole audio is ``pcm``, read-only and possibly played by other legs too (a decoded
        file): held by reference, not copied; the item is complete. Errors as :meth:`append`."""

    def complete(self, item_id: int) -> None:
        """No more audio will come for the item; ``KeyError`` if it was dropped."""

    def interrupt(self, graceful: bool) -> None:
        """Stop the playing item at the next frame and drop the rest (graceful: let it finish)."""

    def mute_playout(self, muted: bool) -> None: ...

    def send_dtmf(self, digits: str) -> None:
        """Queue RFC 4733 events; ValueError when the stream has no telephone-event or the queue is full."""
        ...

    def quality(self) -> dict[str, Any]:
        """The stream's RTP/RTCP figures for ``hangup.extra`` (empty when the leg carries no RTP)."""

    def release(self) -> Recording | None:
        """Remove the leg; its recording comes back still open, to be closed off the loop."""
