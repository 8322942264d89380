"""The WebSocket call API as typed data: every command, event and option, parsed and serialised here.

The wire contract is the RustPBX WebSocket call API (``websocket-api.md``): a client written for it
must work against us unchanged.  Nothing else in the server reads or writes that JSON.

Model
    Commands, events and options are frozen, slotted dataclasses.  Attributes are the spec's field
    names in snake_case (``playId`` -> ``play_id``; ``from`` -> ``from_``); :func:`wire_fields`
    lists the mapping.  Defaults are the spec tables' defaults.  Timeouts in seconds
    (``waitInputTimeout``, refer ``timeout``, ``handshakeTimeout``) and ratios are floats;
    milliseconds, sample rates, sizes, codes and counts are ints.  Hangup times are epoch
    milliseconds in Python and ISO 8601 strings on the wire.

Parsing (:func:`parse_command`, :func:`parse_event`, :func:`option_from_dict`)
    Strict about types, lenient about unknown keys (ignored, for forward compatibility).
    - A ``null`` is treated as an absent field; a required field that is absent or null fails.
    - ``number`` fields take JSON ints and floats; integer fields (milliseconds, sample rates,
      sizes, codes, counts) also take integral floats (``16000.0``) and must lie in
      0..2**53-1.  Booleans are strictly ``true``/``false``.  NaN and Infinity are refused.
    - ``object`` fields (``extra``, ``data``) must be JSON objects and stay dicts;
      ``sip.headers`` must map names to strings.
    - ``handshakeTimeout`` takes ``"30s"``, ``"500ms"``, ``"2m"``, ``"1h"``, a plain number or a
      numeric string (seconds) and becomes a float of seconds.
    - Errors raise :class:`pbx.errors.ProtocolError` whose message names the JSON path, e.g.
      ``invite.option.vad.speechPadding: expected number, got string``.
    - Nesting deeper than :data:`MAX_DEPTH` levels, strings with unpaired surrogates and
      non-UTF-8 bytes are refused, so nothing a client sends can raise another exception.

Aliases (other spellings clients of the upstream server send; giving a field and its alias is
an error, and nowhere else is an alias accepted)
    ``end_of_stream`` for ``endOfStream``   in the ``tts`` command;
    ``apiKey``        for ``secretKey``     in TranscriptionOption, SynthesisOption, VADOption;
    ``model``         for ``modelType``     in TranscriptionOption;
    ``sampleRate``    for ``samplerate``    in RecorderOption, TranscriptionOption,
                                            SynthesisOption, VADOption.

Serialisation (:func:`serialize_command`, :func:`serialize_event`, :func:`to_dict`)
    Compact JSON, camelCase keys, absent (None) fields omitted, never ``null``.  Integral floats
    go out as ints (upstream parses several ``number`` fields as integers).  Options omit
    fields that were neither given when parsed (``fields_set``) nor differ from the default, so
    a per-command option overrides only what its sender set (:func:`merge_option`).  Commands
    and events write every field that is not None.  ``parse_*(serialize_*(x)) == x``.

Secrets
    :func:`redact` masks credentials for ``/call/lists``, dumps and logs; the dataclass reprs
    leave them out.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType, UnionType
from typing import Any, ClassVar, Final, TypeAlias, TypeVar, cast

from pbx.errors import ProtocolError

__all__ = [
    "MASK",
    "MAX_DEPTH",
    "MAX_INT",
    "SECRET_KEYS",
    "AcceptCommand",
    "AnswerEvent",
    "AsrDeltaEvent",
    "AsrFinalEvent",
    "Attendee",
    "BinaryEvent",
    "CallOption",
    "Command",
    "DtmfEvent",
    "ErrorEvent",
    "Event",
    "FieldKind",
    "HangupCommand",
    "HangupEvent",
    "HangupReason",
    "IncomingEvent",
    "Initiator",
    "InterruptCommand",
    "InterruptionEvent",
    "InviteCommand",
    "MediaPassOption",
    "MetricsEvent",
    "MuteCommand",
    "OtherEvent",
    "PingEvent",
    "PlayCommand",
    "RecorderOption",
    "ReferCommand",
    "ReferOption",
    "RejectCommand",
    "RejectEvent",
    "RingingCommand",
    "RingingEvent",
    "SilenceEvent",
    "SipOption",
    "SpeakingEvent",
    "SynthesisOption",
    "TrackEndEvent",
    "TrackStartEvent",
    "TranscriptionOption",
    "TtsCommand",
    "UnknownEvent",
    "UnmuteCommand",
    "VADOption",
    "WireField",
    "command_from_dict",
    "contains_secret",
    "decode_json",
    "event_from_dict",
    "iso8601",
    "merge_option",
    "option_from_dict",
    "parse_command",
    "parse_duration",
    "parse_event",
    "parse_iso8601",
    "redact",
    "serialize_command",
    "serialize_event",
    "to_dict",
    "to_json",
    "wire_fields",
]

MAX_INT: Final = 2**53 - 1   # the largest integer every JSON client (JavaScript too) holds exactly
MAX_DEPTH: Final = 64        # nesting levels of a message; ours need 5, the rest is room for `extra`
MASK: Final = "***"
# Keys whose values redact() masks, at any depth (snake_case forms appear in provider `extra`).
SECRET_KEYS: Final = frozenset(
    {"secretKey", "secretId", "apiKey", "password", "secret_key", "secret_id", "api_key"}
)


# ---------------------------------------------------------------------------
# Server-side hangup vocabulary


class HangupReason(enum.StrEnum):
    """``reason`` of the hangup events the server originates.  A client's ``hangup`` command
    is echoed with the client's own reason instead."""

    AUTOHANGUP = "autohangup"                # a tts/play with autoHangup finished playing
    KILLED = "killed"                        # POST /call/kill/{id}
    RTP_TIMEOUT = "rtp_timeout"              # no media from the SIP/WebRTC peer for too long
    HANDSHAKE_TIMEOUT = "handshake_timeout"  # no invite/accept, or no answer, in handshakeTimeout
    SHUTDOWN = "shutdown"                    # the server is stopping
    CLIENT_DISCONNECT = "client_disconnect"  # the control WebSocket closed
    PING_TIMEOUT = "ping_timeout"            # the control WebSocket stopped answering pings
    CLIENT_NOT_READING = "client_not_reading"  # the client stopped reading its events (send queue full)
    ERROR = "error"                          # unrecoverable failure; an error event precedes it
    REMOTE_HANGUP = "remote_hangup"          # the SIP/WebRTC peer hung up (BYE, peer closed)
    REFER = "refer"                          # transferred by a refer with autoHangup
    REJECTED = "rejected"                    # the call was rejected (reject command or 4xx-6xx)
    CANCELED = "canceled"                    # the caller gave up before the call was answered


class Initiator(enum.StrEnum):
    """``initiator`` of hangup events: who ended the call."""

    USER = "user"        # the WebSocket client (a hangup command without its own initiator)
    SYSTEM = "system"    # the server (timeouts, kill, shutdown, autohangup, errors)
    CALLER = "caller"    # the calling SIP/WebRTC party
    CALLEE = "callee"    # the called SIP/WebRTC party


# ---------------------------------------------------------------------------
# Field descriptions: the dataclass annotations give the kind; metadata adds the rest


class FieldKind(enum.Enum):
    STRING = "string"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    NUMBER = "number"
    OBJECT = "object"              # free JSON object, kept as a dict
    STRING_MAP = "string map"      # JSON object of strings (SIP headers)
    BYTES = "bytes"                # JSON array of 0..255, bytes in Python
    OPTION = "option"              # a nested dataclass: an option, or Attendee
    DURATION = "duration"          # "30s" / "500ms" / number of seconds -> float seconds
    TIME = "time"                  # ISO 8601 on the wire, epoch ms in Python


@dataclass(frozen=True, slots=True)
class WireField:
    """How one attribute appears on the wire."""

    attr: str
    key: str
    kind: FieldKind
    required: bool
    default: Any
    aliases: tuple[str, ...] = ()
    option: type[Any] | None = None     # the dataclass of an OPTION field


@dataclass(frozen=True, slots=True)
class _Meta:
    key: str | None = None
    aliases: tuple[str, ...] = ()
    kind: FieldKind | None = None


def _wire(key: str | None = None, *, aliases: tuple[str, ...] = (),
          kind: FieldKind | None = None) -> dict[str, _Meta]:
    return {"wire": _Meta(key, aliases, kind)}


_INTERNAL: Final = MappingProxyType({"internal": True})
_SAMPLERATE: Final = _wire(aliases=("sampleRate",))
_SECRET_KEY: Final = _wire(aliases=("apiKey",))


def _fields_set() -> Any:
    return field(default=frozenset(), compare=False, repr=False, metadata=_INTERNAL)


# ---------------------------------------------------------------------------
# Options


@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderOption:
    recorder_file: str
    samplerate: int = field(default=16000, metadata=_SAMPLERATE)
    ptime: int = 200
    fields_set: frozenset[str] = _fields_set()


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptionOption:
    provider: str | None = None
    language: str | None = None
    app_id: str | None = None
    secret_id: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False, metadata=_SECRET_KEY)
    model_type: str | None = field(default=None, metadata=_wire(aliases=("model",)))
    buffer_size: int | None = None
    samplerate: int = field(default=16000, metadata=_SAMPLERATE)
    endpoint: str | None = None
    extra: dict[str, Any] | None = None
    start_when_answer: bool = False
    fields_set: frozenset[str] = _fields_set()


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthesisOption:
    provider: str | None = None
    speaker: str | None = None
    volume: int = 5
    speed: float = 1.0
    samplerate: int = field(default=16000, metadata=_SAMPLERATE)
    app_id: str | None = None
    secret_id: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False, metadata=_SECRET_KEY)
    codec: str | None = None
    subtitle: bool = False
    endpoint: str | None = None
    extra: dict[str, Any] | None = None
    max_concurrent_tasks: int | None = None
    emotion: str | None = None          # in the spec's example, not its table
    fields_set: frozenset[str] = _fields_set()


@dataclass(frozen=True, slots=True, kw_only=True)
class VADOption:
    type: str = "webrtc"
    samplerate: int = field(default=16000, metadata=_SAMPLERATE)
    speech_padding: int = 250
    silence_padding: int = 100
    ratio: float = 0.5
    voice_threshold: float = 0.5
    max_buffer_duration_secs: int = 50
    silence_timeout: int | None = None
    endpoint: str | None = None
    secret_key: str | None = field(default=None, repr=False, metadata=_SECRET_KEY)
    secret_id: str | None = field(default=None, repr=False)
    fields_set: frozenset[str] = _fields_set()


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaPassOption:
    EXTENSION_KEYS: ClassVar[frozenset[str]] = frozenset({"protocol"})   # wire keys the spec does not have

    url: str
    input_sample_rate: int
    output_sample_rate: int
    packet_size: int = 2560
    # Our extension (not in the spec): "pcm" (the spec's raw s16le binary messages) or "twilio" (the
    # Twilio Media Streams JSON messages, mu-law at 8 kHz, whatever the two rates say): docs/mediapass.md
    protocol: str = "pcm"
    fields_set: frozenset[str] = _fields_set()


@dataclass(frozen=True, slots=True, kw_only=True)
class SipOption:
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    realm: str | None = None
    headers: dict[str, str] | None = None
    fields_set: frozenset[str] = _fields_set()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferOption:
    denoise: bool = False
    timeout: float | None = None        # seconds
    moh: str | None = None
    asr: TranscriptionOption | None = None
    auto_hangup: bool = False
    sip: SipOption | None = None
    fields_set: frozenset[str] = _fields_set()


@dataclass(frozen=True, slots=True, kw_only=True)
class CallOption:
    denoise: bool = False
    offer: str | None = None
    callee: str | None = None
    caller: str | None = None
    codec: str = "pcmu"
    recorder: RecorderOption | None = None
    vad: VADOption | None = None
    asr: TranscriptionOption | None = None
    tts: SynthesisOption | None = None
    media_pass: MediaPassOption | None = None
    handshake_timeout: float | None = field(default=None, metadata=_wire(kind=FieldKind.DURATION))
    enable_ipv6: bool = False
    sip: SipOption | None = None
    extra: dict[str, Any] | None = None
    fields_set: frozenset[str] = _fields_set()
    # The JSON object as the client sent it: GET /call/lists echoes it (see echo()).
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, metadata=_INTERNAL)

    def echo(self) -> dict[str, Any]:
        """The option for GET /call/lists: as sent (or serialised, if built here), redacted."""
        return redact(self.raw) if self.raw else redact(to_dict(self))


@dataclass(frozen=True, slots=True, kw_only=True)
class Attendee:
    username: str
    realm: str
    source: str


# ---------------------------------------------------------------------------
# Commands (client -> server)


@dataclass(frozen=True, slots=True, kw_only=True)
class InviteCommand:
    COMMAND: ClassVar[str] = "invite"
    option: CallOption


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptCommand:
    COMMAND: ClassVar[str] = "accept"
    option: CallOption


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectCommand:
    COMMAND: ClassVar[str] = "reject"
    reason: str
    code: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RingingCommand:
    COMMAND: ClassVar[str] = "ringing"
    recorder: RecorderOption | None = None
    early_media: bool = False
    ringtone: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TtsCommand:
    COMMAND: ClassVar[str] = "tts"
    text: str
    speaker: str | None = None
    play_id: str | None = None
    auto_hangup: bool = False
    streaming: bool = False
    end_of_stream: bool = field(default=False, metadata=_wire(aliases=("end_of_stream",)))
    wait_input_timeout: float | None = None     # seconds
    option: SynthesisOption | None = None
    base64: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayCommand:
    COMMAND: ClassVar[str] = "play"
    url: str
    auto_hangup: bool = False
    wait_input_timeout: float | None = None     # seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class InterruptCommand:
    COMMAND: ClassVar[str] = "interrupt"
    graceful: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferCommand:
    COMMAND: ClassVar[str] = "refer"
    caller: str
    callee: str
    options: ReferOption | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MuteCommand:
    COMMAND: ClassVar[str] = "mute"
    track_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnmuteCommand:
    COMMAND: ClassVar[str] = "unmute"
    track_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfCommand:
    """Our extension: send ``digits`` (0-9, *, #, A-D) to the peer as RFC 4733 telephone events."""

    COMMAND: ClassVar[str] = "dtmf"
    digits: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AddIceCandidateCommand:
    """A browser's trickled ICE candidate, as the upstream server accepts it (``sdpMLineIndex``, also
    spelt ``sdpMlineIndex``). Our ICE-lite agent needs none: it answers the browser's checks."""

    COMMAND: ClassVar[str] = "addIceCandidate"
    candidate: str | None = None
    sdp_mid: str | None = None
    sdp_m_line_index: int | None = None
    sdp_mline_index: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HangupCommand:
    COMMAND: ClassVar[str] = "hangup"
    reason: str | None = None
    initiator: str | None = None


Command: TypeAlias = (
    InviteCommand | AcceptCommand | RejectCommand | RingingCommand | TtsCommand | PlayCommand
    | InterruptCommand | ReferCommand | MuteCommand | UnmuteCommand | HangupCommand | DtmfCommand
    | AddIceCandidateCommand
)


# ---------------------------------------------------------------------------
# Events (server -> client).  Times are epoch milliseconds.


@dataclass(frozen=True, slots=True, kw_only=True)
class IncomingEvent:
    EVENT: ClassVar[str] = "incoming"
    track_id: str
    timestamp: int
    caller: str
    callee: str
    sdp: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerEvent:
    EVENT: ClassVar[str] = "answer"
    track_id: str
    timestamp: int
    sdp: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectEvent:
    EVENT: ClassVar[str] = "reject"
    track_id: str
    timestamp: int
    reason: str
    code: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RingingEvent:
    EVENT: ClassVar[str] = "ringing"
    track_id: str
    timestamp: int
    early_media: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class HangupEvent:
    EVENT: ClassVar[str] = "hangup"
    track_id: str
    timestamp: int
    reason: str | None = None
    initiator: str | None = None
    start_time: int = field(metadata=_wire(kind=FieldKind.TIME))
    hangup_time: int = field(metadata=_wire(kind=FieldKind.TIME))
    answer_time: int | None = field(default=None, metadata=_wire(kind=FieldKind.TIME))
    ringing_time: int | None = field(default=None, metadata=_wire(kind=FieldKind.TIME))
    from_: Attendee | None = field(default=None, metadata=_wire("from"))
    to: Attendee | None = None
    extra: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeakingEvent:
    EVENT: ClassVar[str] = "speaking"
    track_id: str
    timestamp: int
    start_time: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SilenceEvent:
    EVENT: ClassVar[str] = "silence"
    track_id: str
    timestamp: int
    start_time: int
    duration: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AsrFinalEvent:
    EVENT: ClassVar[str] = "asrFinal"
    track_id: str
    timestamp: int
    index: int
    start_time: int | None = None
    end_time: int | None = None
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AsrDeltaEvent:
    EVENT: ClassVar[str] = "asrDelta"
    track_id: str
    index: int
    timestamp: int
    start_time: int | None = None
    end_time: int | None = None
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackStartEvent:
    EVENT: ClassVar[str] = "trackStart"
    track_id: str
    timestamp: int
    play_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackEndEvent:
    EVENT: ClassVar[str] = "trackEnd"
    track_id: str
    timestamp: int
    duration: int
    ssrc: int
    play_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InterruptionEvent:
    EVENT: ClassVar[str] = "interruption"
    track_id: str
    timestamp: int
    play_id: str | None = None
    subtitle: str | None = None
    position: int | None = None
    total_duration: int
    current: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfEvent:
    EVENT: ClassVar[str] = "dtmf"
    track_id: str
    timestamp: int
    digit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsEvent:
    EVENT: ClassVar[str] = "metrics"
    timestamp: int
    key: str
    duration: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEvent:
    EVENT: ClassVar[str] = "error"
    track_id: str
    timestamp: int
    sender: str
    error: str
    code: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BinaryEvent:
    EVENT: ClassVar[str] = "binary"
    track_id: str
    timestamp: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PingEvent:
    EVENT: ClassVar[str] = "ping"
    timestamp: int
    payload: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OtherEvent:
    EVENT: ClassVar[str] = "other"
    track_id: str
    timestamp: int
    sender: str
    extra: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event name this library does not know (a newer server): the whole JSON object."""

    name: str
    data: dict[str, Any]


Event: TypeAlias = (
    IncomingEvent | AnswerEvent | RejectEvent | RingingEvent | HangupEvent | SpeakingEvent
    | SilenceEvent | AsrFinalEvent | AsrDeltaEvent | TrackStartEvent | TrackEndEvent
    | InterruptionEvent | DtmfEvent | MetricsEvent | ErrorEvent | BinaryEvent | PingEvent
    | OtherEvent | UnknownEvent
)

_OPTIONS: Final = (RecorderOption, TranscriptionOption, SynthesisOption, VADOption, MediaPassOption,
                   SipOption, ReferOption, CallOption, Attendee)
# beyond the RustPBX spec (the README lists them): dtmf is ours, addIceCandidate the upstream server's
EXTENSION_COMMANDS: Final = frozenset({"dtmf", "addIceCandidate"})
_COMMANDS: Final[Mapping[str, type[Any]]] = MappingProxyType({cls.COMMAND: cls for cls in (
    InviteCommand, AcceptCommand, RejectCommand, RingingCommand, TtsCommand, PlayCommand,
    InterruptCommand, ReferCommand, MuteCommand, UnmuteCommand, HangupCommand, DtmfCommand,
    AddIceCandidateCommand)})
_EVENTS: Final[Mapping[str, type[Any]]] = MappingProxyType({cls.EVENT: cls for cls in (
    IncomingEvent, AnswerEvent, RejectEvent, RingingEvent, HangupEvent, SpeakingEvent,
    SilenceEvent, AsrFinalEvent, AsrDeltaEvent, TrackStartEvent, TrackEndEvent, InterruptionEvent,
    DtmfEvent, MetricsEvent, ErrorEvent, BinaryEvent, PingEvent, OtherEvent)})


def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part.capitalize() for part in rest)


_SIMPLE_KINDS: Final[Mapping[object, FieldKind]] = MappingProxyType({
    str: FieldKind.STRING, bool: FieldKind.BOOLEAN, int: FieldKind.INTEGER,
    float: FieldKind.NUMBER, bytes: FieldKind.BYTES,
})


def _kind_of(annotation: Any) -> tuple[FieldKind, type[Any] | None]:
    """(kind, nested dataclass) of an attribute's annotation; ``X | None`` is read as X."""
    if isinstance(annotation, UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported wire annotation {annotation}")
        annotation = args[0]
    if annotation in _SIMPLE_KINDS:
        return _SIMPLE_KINDS[annotation], None
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return FieldKind.OPTION, annotation
    if typing.get_origin(annotation) is dict:
        kind = FieldKind.STRING_MAP if typing.get_args(annotation) == (str, str) else FieldKind.OBJECT
        return kind, None
    raise TypeError(f"unsupported wire annotation {annotation}")


def _build_schema(cls: type[Any]) -> tuple[WireField, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        meta: _Meta = f.metadata.get("wire", _Meta())
        kind, option = _kind_of(hints[f.name])
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append(WireField(f.name, meta.key or _camel(f.name), meta.kind or kind, required,
                             None if required else f.default, meta.aliases, option))
    return tuple(out)


_SCHEMAS: Final[Mapping[type[Any], tuple[WireField, ...]]] = MappingProxyType({
    cls: _build_schema(cls) for cls in (*_OPTIONS, *_COMMANDS.values(), *_EVENTS.values())
})


def wire_fields(cls: type[Any]) -> tuple[WireField, ...]:
    """The wire fields of a command, event or option class, in serialisation order."""
    try:
        return _SCHEMAS[cls]
    except KeyError:
        raise TypeError(f"{cls.__name__} is not a wire type of pbx.protocol") from None


# ---------------------------------------------------------------------------
# JSON text in


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _show(value: object, limit: int = 60) -> str:
    """A value for an error message, JSON-quoted and bounded (it came from the peer)."""
    if isinstance(value, str):
        return json.dumps(value if len(value) <= limit else value[: limit - 3] + "...", ensure_ascii=False)
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(f"invalid JSON: number {text[:40]} is out of range")
    return value


def _refuse_constant(name: str) -> Any:
    raise ProtocolError(f"invalid JSON: {name} is not allowed")


_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_tree(obj: object, strings: bool) -> None:
    """Bound the nesting depth; with ``strings``, refuse unpaired surrogates (they cannot be
    sent back out as UTF-8)."""
    stack: list[tuple[object, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
            if strings and any(_has_surrogate(k) for k in value):
                raise ProtocolError("invalid JSON: unpaired surrogate in a string")
        elif isinstance(value, list):
            children = value
        else:
            if strings and isinstance(value, str) and _has_surrogate(value):
                raise ProtocolError("invalid JSON: unpaired surrogate in a string")
            continue
        if depth > MAX_DEPTH:
            raise ProtocolError(f"invalid JSON: nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def _loads(text: str | bytes) -> object:
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("invalid JSON: not UTF-8 text") from None
    elif _has_surrogate(text):
        raise ProtocolError("invalid JSON: unpaired surrogate in a string")
    try:
        obj = json.loads(text, parse_float=_finite_float, parse_constant=_refuse_constant)
    except ProtocolError:
        raise
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ProtocolError(f"invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:       # e.g. an integer literal of more than 4300 digits
        raise ProtocolError(f"invalid JSON: {_show(str(exc), 120)}") from None
    _check_tree(obj, strings=bool(_SURROGATE_ESCAPE.search(text)))
    return obj


# ---------------------------------------------------------------------------
# Values in


_DURATION: Final = re.compile(r"\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(ms|s|m|h)?\s*")
_DURATION_HELP: Final = 'expected a duration such as "30s", "500ms", "2m" or a number of seconds'


def parse_duration(value: str | int | float) -> float:
    """``"30s"``, ``"500ms"``, ``"2m"``, ``"1h"``, ``"30"`` or ``30`` -> seconds (float).

    Raises ValueError with an explanatory message otherwise (negative, NaN, inf, garbage).
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{_DURATION_HELP}, got {_json_type(value)}")
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            raise ValueError(f"{_DURATION_HELP}, got {_show(value)}")
        number, unit = float(match[1]), match[2]
        seconds = number / 1000 if unit == "ms" else number * {"m": 60, "h": 3600}.get(unit or "s", 1)
    else:
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"{_DURATION_HELP}, got {_show(value)}")
    return seconds


def _format_duration(seconds: float) -> str:
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"a duration must be finite and non-negative, not {seconds!r}")
    if float(seconds).is_integer() and seconds <= MAX_INT:
        return f"{int(seconds)}s"
    return f"{float(seconds)!r}s"


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_MIN_MS: Final = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MS
_MAX_MS: Final = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - _EPOCH) // _MS


def iso8601(epoch_ms: int) -> str:
    """Epoch milliseconds -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC), as hangup events carry them."""
    seconds, millis = divmod(epoch_ms, 1000)
    t = _EPOCH + timedelta(seconds=seconds)
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
            f".{millis:03d}Z")


def parse_iso8601(text: str) -> int:
    """An ISO 8601 time (``Z``, an offset, or none = UTC; any fraction) -> epoch milliseconds,
    truncated.  Raises ValueError."""
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    epoch_ms: int = (t - _EPOCH) // _MS
    if not _MIN_MS <= epoch_ms <= _MAX_MS:      # iso8601() could not write it back
        raise ValueError(f"{text!r} is outside years 1 to 9999 UTC")
    return epoch_ms


def _type_error(path: str, expected: str, value: object) -> ProtocolError:
    return ProtocolError(f"{path}: expected {expected}, got {_json_type(value)}")


def _integer(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(path, "number", value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ProtocolError(f"{path}: expected integer, got {_show(value)}")
        value = int(value)
    if value < 0:
        raise ProtocolError(f"{path}: expected non-negative integer, got {_show(value)}")
    if value > MAX_INT:
        raise ProtocolError(f"{path}: expected integer at most {MAX_INT}, got {_show(value)}")
    return value


def _convert(f: WireField, value: object, path: str) -> Any:
    kind = f.kind
    if kind is FieldKind.STRING:
        if isinstance(value, str):
            return value
        raise _type_error(path, "string", value)
    if kind is FieldKind.BOOLEAN:
        if isinstance(value, bool):
            return value
        raise _type_error(path, "boolean", value)
    if kind is FieldKind.INTEGER:
        return _integer(value, path)
    if kind is FieldKind.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(path, "number", value)
        try:
            return float(value)
        except OverflowError:
            raise ProtocolError(f"{path}: number {_show(value)} is out of range") from None
    if kind is FieldKind.OBJECT:
        if isinstance(value, dict):
            return value
        raise _type_error(path, "object", value)
    if kind is FieldKind.STRING_MAP:
        if not isinstance(value, dict):
            raise _type_error(path, "object", value)
        for name, item in value.items():
            if not isinstance(item, str):
                raise _type_error(f"{path}.{name}", "string", item)
        return value
    if kind is FieldKind.BYTES:
        if not isinstance(value, list):
            raise _type_error(path, "array", value)
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= 255:
                raise ProtocolError(f"{path}[{i}]: expected integer from 0 to 255, got {_show(item)}")
        return bytes(value)
    if kind is FieldKind.OPTION:
        return _from_dict(cast(type[Any], f.option), value, path)
    if kind is FieldKind.DURATION:
        try:
            return parse_duration(cast(Any, value))
        except ValueError as exc:
            raise ProtocolError(f"{path}: {exc}") from None
    # FieldKind.TIME
    if not isinstance(value, str):
        raise _type_error(path, "string", value)
    try:
        return parse_iso8601(value)
    except ValueError:
        raise ProtocolError(f"{path}: expected ISO 8601 time, got {_show(value)}") from None


_T = TypeVar("_T")


def _from_dict(cls: type[_T], obj: object, path: str) -> _T:
    if not isinstance(obj, dict):
        raise _type_error(path, "object", obj)
    kwargs: dict[str, Any] = {}
    given = []
    for f in _SCHEMAS[cls]:
        key = f.key
        if f.aliases:
            present = [k for k in (f.key, *f.aliases) if k in obj]
            if len(present) > 1:
                raise ProtocolError(f'{path}: "{present[0]}" and its alias "{present[1]}" both given')
            if present:
                key = present[0]
        value = obj.get(key)
        if value is None:
            if f.required:
                if key in obj:
                    raise _type_error(f"{path}.{key}", _EXPECTED[f.kind], None)
                raise ProtocolError(f'{path}: missing required field "{f.key}"')
            continue
        kwargs[f.attr] = _convert(f, value, f"{path}.{key}")
        given.append(f.attr)
    if "fields_set" in _INTERNAL_ATTRS[cls]:
        kwargs["fields_set"] = frozenset(given)
    if "raw" in _INTERNAL_ATTRS[cls]:
        kwargs["raw"] = copy.deepcopy(obj)
    return cls(**kwargs)


_EXPECTED: Final[Mapping[FieldKind, str]] = MappingProxyType({
    FieldKind.STRING: "string", FieldKind.BOOLEAN: "boolean", FieldKind.INTEGER: "number",
    FieldKind.NUMBER: "number", FieldKind.OBJECT: "object", FieldKind.STRING_MAP: "object",
    FieldKind.BYTES: "array", FieldKind.OPTION: "object", FieldKind.DURATION: "string",
    FieldKind.TIME: "string",
})
_INTERNAL_ATTRS: Final[Mapping[type[Any], frozenset[str]]] = MappingProxyType({
    cls: frozenset(f.name for f in dataclasses.fields(cls) if f.metadata.get("internal"))
    for cls in _SCHEMAS
})


def command_from_dict(obj: object) -> Command:
    """A decoded JSON value -> its command.  Raises ProtocolError."""
    if not isinstance(obj, dict):
        raise ProtocolError("command must be a JSON object")
    if "command" not in obj:
        raise ProtocolError('missing "command" field')
    name = obj["command"]
    if not isinstance(name, str):
        raise ProtocolError(f'"command" field must be a string, got {_json_type(name)}')
    cls = _COMMANDS.get(name)
    if cls is None:
        raise ProtocolError(f"unknown command {_show(name)}")
    return cast(Command, _from_dict(cls, obj, name))


def parse_command(text: str | bytes) -> Command:
    """A WebSocket text message -> its command.  Raises ProtocolError."""
    return command_from_dict(_loads(text))


def decode_json(text: str | bytes) -> object:
    """A message's JSON value, under the rules above (depth, surrogates, UTF-8, finite numbers).
    Raises ProtocolError.  ``command_from_dict(decode_json(t))`` is ``parse_command(t)``, for callers
    that also need the JSON value (a dump)."""
    return _loads(text)


def event_from_dict(obj: object) -> Event:
    """A decoded JSON value -> its event; an unknown event name gives :class:`UnknownEvent`."""
    if not isinstance(obj, dict):
        raise ProtocolError("event must be a JSON object")
    if "event" not in obj:
        raise ProtocolError('missing "event" field')
    name = obj["event"]
    if not isinstance(name, str):
        raise ProtocolError(f'"event" field must be a string, got {_json_type(name)}')
    cls = _EVENTS.get(name)
    if cls is None:
        return UnknownEvent(name, obj)
    return cast(Event, _from_dict(cls, obj, name))


def parse_event(text: str | bytes) -> Event:
    """A WebSocket text message from the server -> its event.  Raises ProtocolError."""
    return event_from_dict(_loads(text))


_O = TypeVar("_O")


def option_from_dict(cls: type[_O], obj: object, path: str = "option") -> _O:
    """A decoded JSON object -> an option (or Attendee) of class ``cls``; errors name ``path``."""
    if cls not in _OPTIONS:
        raise TypeError(f"{cls.__name__} is not an option class of pbx.protocol")
    return _from_dict(cls, obj, path)


# ---------------------------------------------------------------------------
# Out


def _given(obj: Any, f: WireField) -> bool:
    """Whether an option field counts as set: given when parsed, or not its default."""
    return f.attr in obj.fields_set or getattr(obj, f.attr) != f.default


def _dump_value(f: WireField, value: Any) -> Any:
    kind = f.kind
    if kind is FieldKind.NUMBER:
        return int(value) if float(value).is_integer() and abs(value) <= MAX_INT else value
    if kind is FieldKind.OPTION:
        return _dump(value)
    if kind is FieldKind.OBJECT or kind is FieldKind.STRING_MAP:
        return copy.deepcopy(value)
    if kind is FieldKind.BYTES:
        return list(value)
    if kind is FieldKind.DURATION:
        return _format_duration(value)
    if kind is FieldKind.TIME:
        return iso8601(value)
    return value


def _dump(obj: Any) -> dict[str, Any]:
    options = hasattr(obj, "fields_set")
    out: dict[str, Any] = {}
    for f in _SCHEMAS[type(obj)]:
        value = getattr(obj, f.attr)
        if value is None or (options and not _given(obj, f)):
            continue
        out[f.key] = _dump_value(f, value)
    return out


def to_dict(obj: object) -> dict[str, Any]:
    """A command, event or option as its JSON object (``command``/``event`` key first)."""
    if isinstance(obj, UnknownEvent):
        return {"event": obj.name, **{k: v for k, v in copy.deepcopy(obj.data).items() if k != "event"}}
    cls = type(obj)
    if cls not in _SCHEMAS:
        raise TypeError(f"{cls.__name__} is not a wire type of pbx.protocol")
    name = getattr(cls, "COMMAND", None) or getattr(cls, "EVENT", None)
    head = {} if name is None else {("command" if hasattr(cls, "COMMAND") else "event"): name}
    return {**head, **_dump(obj)}


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def serialize_command(cmd: Command) -> str:
    """A command as the JSON text a client sends."""
    return _dumps(to_dict(cmd))


def serialize_event(event: Event) -> str:
    """An event as the JSON text the server sends."""
    return _dumps(to_dict(event))


def to_json(obj: dict[str, Any]) -> str:
    """A JSON object as compact text, as commands and events are sent."""
    return _dumps(obj)


def merge_option(base: _O, override: _O | None) -> _O:
    """``base`` with the fields ``override`` sets (given when parsed, or not the default), e.g.
    a tts command's SynthesisOption over the call's: unset fields keep the call's values."""
    if override is None:
        return base
    if type(override) is not type(base) or not hasattr(base, "fields_set"):
        raise TypeError("merge_option needs two options of the same class")
    changes = {f.attr: getattr(override, f.attr) for f in _SCHEMAS[type(base)] if _given(override, f)}
    fields_set = cast(Any, base).fields_set | frozenset(changes)
    return cast(_O, dataclasses.replace(cast(Any, base), **changes, fields_set=fields_set))


# ---------------------------------------------------------------------------
# Redaction


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: MASK if k in SECRET_KEYS and v is not None else _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        keys = {f.attr: f.key for f in _SCHEMAS.get(type(value), ())}
        changes = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            secret = keys.get(f.name, f.name) in SECRET_KEYS and item is not None
            changes[f.name] = MASK if secret else _redact(item)
        return dataclasses.replace(value, **changes)
    return value


def contains_secret(value: Any) -> bool:
    """Whether :func:`redact` would change ``value`` (a decoded JSON value)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if any(k in SECRET_KEYS and v is not None for k, v in item.items()):
                return True
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def redact(obj: _T) -> _T:
    """A deep copy of an option dict, option, command or event with every value under a key in
    :data:`SECRET_KEYS` (``secretKey``, ``secretId``, ``apiKey``, ``password`` -- so also
    ``sip.password`` -- and their snake_case forms), at any depth, replaced by ``"***"``.
    The input is not modified."""
    return cast(_T, _redact(obj))
