"""What the call core asks its shell to do: the I/O it cannot do itself.

:meth:`pbx.call.core.Call.actions_to_run` hands these out in order; the shell carries each out (a
worker thread for files, a task for providers, the transport for signalling) and reports the
outcome back through the call's inputs (``recording_opened``, ``tts_chunk``, ``answered``, ...).
Operations on the leg itself are not here: they are synchronous calls on
:class:`~pbx.call.media.LegMedia`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from pbx.call.media import Recording
from pbx.protocol import (
    CallOption,
    MediaPassOption,
    RecorderOption,
    ReferCommand,
    SynthesisOption,
    TranscriptionOption,
)
from pbx.tts.base import TtsRequest


@dataclass(frozen=True, slots=True)
class OpenRecording:
    """Create the recording file (inside the recordings folder) and report ``recording_opened``."""

    option: RecorderOption


@dataclass(frozen=True, slots=True)
class CloseRecording:
    """Finish the file (last flush, final header) and report ``recording_closed``; ``discard``
    removes it instead (it never recorded: the call got no media)."""

    recording: Recording
    discard: bool = False


@dataclass(frozen=True, slots=True)
class Connect:
    """Place the call (``invite``); the transport reports ``answered``, ``remote_ringing``,
    ``rejected`` or ``connect_failed``."""

    option: CallOption


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer the incoming call (``accept``); the transport reports ``answered`` or ``connect_failed``."""

    option: CallOption


@dataclass(frozen=True, slots=True)
class Ring:
    """Tell the caller it rings (180, or 183 with media when ``early_media``)."""

    early_media: bool
    ringtone: str | None


@dataclass(frozen=True, slots=True)
class Reject:
    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Refer:
    """Transfer the call; the transport reports ``transfer_done``."""

    command: ReferCommand


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Hang up the far end (BYE, CANCEL); nothing for a transport whose far end is the client."""

    reason: str | None


@dataclass(frozen=True, slots=True)
class OpenAsr:
    """Open a recognition stream; report ``asr_opened`` or ``asr_failed``."""

    option: TranscriptionOption


@dataclass(frozen=True, slots=True)
class WakeAsr:
    """Recognition work is waiting (:meth:`pbx.call.speech.Recognition.next_job`)."""


@dataclass(frozen=True, slots=True)
class CloseAsr:
    pass


@dataclass(frozen=True, slots=True)
class Synthesize:
    """Synthesise ``request`` with the provider ``option`` names; report each ``tts_chunk``, then
    ``work_done``."""

    item_id: int
    option: SynthesisOption
    request: TtsRequest


@dataclass(frozen=True, slots=True)
class Load:
    """Fetch and decode audio to play at 16 kHz; report ``play_loaded`` or ``work_done`` with the error."""

    item_id: int
    url: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop the synthesis or load of an item; nothing more is reported for it."""

    item_id: int


@dataclass(frozen=True, slots=True)
class OpenMediaPass:
    """Connect to the media pass service and stream the caller's audio to it; report
    ``media_pass_opened`` or ``media_pass_failed``, then what the service sends (``media_pass_audio``,
    ``media_pass_mark``, ``media_pass_clear``) until ``media_pass_ended``. ``parameters``: the Twilio
    ``start`` message's customParameters."""

    option: MediaPassOption
    parameters: dict[str, str]


@dataclass(frozen=True, slots=True)
class MediaPassMarks:
    """The audio the service queued before these marks (Twilio mode) has played: send them back."""

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CloseMediaPass:
    """Close the media pass connection (Twilio mode: after a ``stop`` message); nothing more is reported."""


@dataclass(frozen=True, slots=True)
class SendPing:
    """A WebSocket ping frame; report ``pong`` when it is answered."""


@dataclass(frozen=True, slots=True)
class Close:
    """The hangup event is the last: close the control socket with this code and release the call."""

    code: int
    reason: str


Action: TypeAlias = (
    OpenRecording | CloseRecording | Connect | Answer | Ring | Reject | Refer | Disconnect | OpenAsr | WakeAsr
    | CloseAsr | Synthesize | Load | Cancel | OpenMediaPass | MediaPassMarks | CloseMediaPass | SendPing | Close
)
