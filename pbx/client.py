"""A typed asyncio client for the WebSocket call API (``/call``, ``/call/sip``, ``/call/webrtc``).

Usage::

    async with connect("ws://127.0.0.1:8080", dump=False) as client:
        await client.invite({"codec": "pcm", "vad": {"type": "webrtc"}})
        answer = await client.wait_for(AnswerEvent)
        await client.tts("Hello", play_id="greeting")
        end = await client.wait_for(TrackEndEvent, predicate=lambda e: e.play_id == "greeting")
        await client.hangup()
        await client.wait_for(HangupEvent)

Commands are the :mod:`pbx.protocol` dataclasses, sent by typed methods or :meth:`CallClient.send_command`;
events come back as the :mod:`pbx.protocol` event classes.  A text message that does not parse
as an event is logged and kept as a :class:`MalformedEvent` (an ``UnknownEvent`` carrying the error):
nothing the server sends stops the client.

Events: one buffered queue, each event delivered once
    A receive task reads every message as it arrives.  Each event is appended to :attr:`CallClient.history`
    (all events, bounded) and then handed to exactly one consumer:

    - a pending :meth:`~CallClient.wait_for` whose kind and predicate match it (the oldest such wait
      first), else
    - a waiting :meth:`~CallClient.events` iterator / :meth:`~CallClient.next_event`, else
    - the *pending* queue, where it stays until a later wait matches it or an iterator takes it.

    So an event that arrives before you wait for it is not lost: ``wait_for`` looks in the pending
    queue first (oldest first) and takes the first match out of it.  Events a wait skips stay pending,
    in order, for later waits and for iteration.  Consequently, waiting twice for ``trackEnd`` returns
    two different ``trackEnd`` events; use a predicate (``play_id``) to pick a particular one, and
    :meth:`~CallClient.discard_pending` to forget what you do not care about.  The pending queue and
    the history are bounded (oldest dropped, counted in :attr:`~CallClient.dropped_events`).

Audio
    On ``/call`` the server sends the call's outbound audio (what the call plays: TTS, play) as binary
    messages of 20 ms in the call's codec, only while something plays.  They go to a bounded queue
    (:meth:`~CallClient.audio`, :meth:`~CallClient.recv_audio`; oldest frames dropped when full, counted in
    :attr:`~CallClient.dropped_audio`).  The caller's audio is what *we* send:
    :meth:`~CallClient.send_audio` (codec bytes as they are) or :meth:`~CallClient.stream_pcm` (16 kHz
    int16, encoded for the call's codec and paced in real time).  :class:`AudioEncoder` and
    :class:`AudioDecoder` convert between 16 kHz int16 and the four WebSocket codecs
    (``pcm`` = s16le 16 kHz, ``pcmu``/``pcma`` = G.711 at 8 kHz, ``g722``).

Closing
    The server closes the socket after the ``hangup`` event; the client is then :attr:`~CallClient.closed`,
    iteration ends, and waits that find nothing pending raise :class:`ClientClosed`.  Leaving the
    ``async with`` block (or :meth:`~CallClient.close`) closes the socket, which ends the call on the
    server (``client_disconnect``) if it was still up.  WebSocket pings are answered by ``websockets``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import math
import os
from collections.abc import AsyncIterator, Callable, Generator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeVar, overload
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from pbx.core import g711
from pbx.core.g722 import G722Decoder, G722Encoder
from pbx.core.resample import Resampler
from pbx.errors import ProtocolError
from pbx.protocol import (
    AcceptCommand,
    CallOption,
    Command,
    DtmfCommand,
    Event,
    HangupCommand,
    InterruptCommand,
    InviteCommand,
    MuteCommand,
    PlayCommand,
    RecorderOption,
    ReferCommand,
    ReferOption,
    RejectCommand,
    RingingCommand,
    SynthesisOption,
    TtsCommand,
    UnknownEvent,
    UnmuteCommand,
    option_from_dict,
    parse_event,
    serialize_command,
)

__all__ = [
    "CALL_PATHS",
    "CODECS",
    "DEFAULT_TIMEOUT",
    "RATE",
    "AudioDecoder",
    "AudioEncoder",
    "CallClient",
    "CallType",
    "ClientClosed",
    "Connect",
    "MalformedEvent",
    "call_url",
    "connect",
    "default_token",
    "event_name",
]

log = logging.getLogger(__name__)

CallType = Literal["websocket", "sip", "webrtc"]
CALL_PATHS: Final[Mapping[str, str]] = {"websocket": "/call", "sip": "/call/sip", "webrtc": "/call/webrtc"}
CODECS: Final = ("pcm", "pcmu", "pcma", "g722")
RATE: Final = 16000                  # the rate of the int16 audio the client takes and gives
DEFAULT_TIMEOUT: Final = 10.0        # seconds a wait_for waits unless told
HISTORY_SIZE: Final = 10_000         # events kept in history
PENDING_SIZE: Final = 10_000         # events waiting for a consumer
AUDIO_FRAMES: Final = 3_000          # received binary frames buffered (60 s of 20 ms frames)

E = TypeVar("E")


class ClientClosed(ConnectionError):
    """The call's WebSocket is closed (and, for a wait, nothing pending matched)."""


@dataclasses.dataclass(frozen=True, slots=True)
class MalformedEvent(UnknownEvent):
    """A text message from the server that is not a valid event: ``name`` is its ``event`` field
    when it has one (else ``""``), ``data`` the JSON object (or ``{"text": message}`` when the message
    is not a JSON object), ``error`` why it did not parse."""

    error: str


def event_name(event: Event) -> str:
    """The wire name of an event (``"trackEnd"``); an unknown or malformed event's own ``event`` field."""
    if isinstance(event, UnknownEvent):
        return event.name
    return type(event).EVENT


# ---------------------------------------------------------------------------
# URL


def call_url(url: str, *, call_id: str | None = None, dump: bool | None = None, ping_interval: int | None = None,
             server_side_track: str | None = None, call_type: CallType | None = None) -> str:
    """The WebSocket URL of a call.

    ``url`` is a server (``ws://host:8080``, ``http://`` and ``https://`` become ``ws://``/``wss://``)
    or a call path on it (``ws://host:8080/call/sip``).  A path that does not end in a call path
    gets the one of ``call_type`` appended (default ``websocket``: ``/call``); a path that does must
    agree with ``call_type`` when it is given.  The spec's query parameters are set from the keyword
    arguments (``id``, ``dump``, ``pingInterval`` in seconds, ``serverSideTrack``); other query
    parameters of ``url`` are kept.
    """
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"expected a ws://, wss://, http:// or https:// URL, got {url!r}")
    if call_type is not None and call_type not in CALL_PATHS:
        raise ValueError(f"call_type must be websocket, sip or webrtc, not {call_type!r}")
    path = parts.path.rstrip("/")
    found = next((kind for kind, tail in sorted(CALL_PATHS.items(), key=lambda kv: -len(kv[1]))
                  if path.endswith(tail)), None)
    if found is None:
        path += CALL_PATHS[call_type or "websocket"]
    elif call_type is not None and found != call_type:
        raise ValueError(f"URL path {parts.path!r} is a {found} call path, but call_type is {call_type!r}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if call_id is not None:
        query["id"] = call_id
    if dump is not None:
        query["dump"] = "true" if dump else "false"
    if ping_interval is not None:
        if ping_interval < 0:
            raise ValueError(f"ping_interval must be >= 0 seconds, not {ping_interval}")
        query["pingInterval"] = str(ping_interval)
    if server_side_track is not None:
        query["serverSideTrack"] = server_side_track
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


# ---------------------------------------------------------------------------
# Audio codecs (16 kHz int16 <-> the call's codec bytes)


def _check_codec(codec: str) -> str:
    name = codec.lower()
    if name not in CODECS:
        raise ValueError(f"codec must be one of pcm, pcmu, pcma, g722, not {codec!r}")
    return name


class AudioEncoder:
    """16 kHz int16 audio -> bytes in ``codec``, keeping codec state across calls (one per stream).

    ``pcm`` is s16le at 16 kHz; ``pcmu``/``pcma`` are resampled to 8 kHz and G.711-encoded (whole
    frames: an even number of samples per call); ``g722`` is G.722 at 64 kbit/s (even counts too).
    """

    def __init__(self, codec: str) -> None:
        self.codec = _check_codec(codec)
        self._down = Resampler(RATE, 8000) if self.codec in ("pcmu", "pcma") else None
        self._g722 = G722Encoder() if self.codec == "g722" else None

    def encode(self, pcm: npt.NDArray[np.int16]) -> bytes:
        samples = np.ascontiguousarray(pcm, dtype=np.int16)
        if self.codec == "pcm":
            return samples.astype("<i2", copy=False).tobytes()
        if len(samples) % 2:
            raise ValueError(f"{self.codec} encodes an even number of 16 kHz samples, got {len(samples)}")
        if self._g722 is not None:
            return self._g722.encode(samples)
        if self._down is None:   # unreachable: pcm and g722 returned above
            raise RuntimeError(f"no resampler for codec {self.codec!r}")
        narrow = self._down.process(samples)
        return g711.ulaw_encode(narrow) if self.codec == "pcmu" else g711.alaw_encode(narrow)


class AudioDecoder:
    """Bytes in ``codec`` -> 16 kHz int16 audio, keeping codec state across calls (one per stream)."""

    def __init__(self, codec: str) -> None:
        self.codec = _check_codec(codec)
        self._up = Resampler(8000, RATE) if self.codec in ("pcmu", "pcma") else None
        self._g722 = G722Decoder() if self.codec == "g722" else None
        self._odd = b""            # a pcm byte left over from the previous message

    def decode(self, data: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
        if self.codec == "pcm":
            raw = self._odd + bytes(data)
            whole = len(raw) - len(raw) % 2
            self._odd = raw[whole:]
            return np.frombuffer(raw[:whole], dtype="<i2").astype(np.int16)
        if self._g722 is not None:
            return self._g722.decode(np.frombuffer(data, dtype=np.uint8))
        if self._up is None:   # unreachable: pcm and g722 returned above
            raise RuntimeError(f"no resampler for codec {self.codec!r}")
        payload = np.frombuffer(data, dtype=np.uint8)
        narrow = g711.ulaw_decode(payload) if self.codec == "pcmu" else g711.alaw_decode(payload)
        return self._up.process(narrow)


def _as_pcm(pcm: npt.NDArray[np.int16] | bytes | bytearray | memoryview, rate: int) -> npt.NDArray[np.int16]:
    """int16 mono at ``rate`` (array or s16le bytes) -> int16 mono at 16 kHz."""
    if isinstance(pcm, bytes | bytearray | memoryview):
        raw = bytes(pcm)
        if len(raw) % 2:
            raise ValueError(f"s16le audio has an even number of bytes, got {len(raw)}")
        samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    else:
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
            raise TypeError("pcm must be an int16 numpy array or s16le bytes")
        if pcm.ndim != 1:
            raise ValueError(f"pcm must be mono (one dimension), got shape {pcm.shape}")
        samples = pcm
    if rate == RATE:
        return samples
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    out: npt.NDArray[np.float32] = soxr.resample(samples.astype(np.float32) / 32768.0, rate, RATE, quality="HQ")
    return np.clip(np.round(out * 32768.0), -32768, 32767).astype(np.int16)


# ---------------------------------------------------------------------------
# The client


@dataclasses.dataclass(slots=True)
class _Waiter:
    match: Callable[[Event], bool]
    future: asyncio.Future[Event]
    catch_all: bool              # an iterator: served after every matching wait_for


EventKind = type[Any] | tuple[type[Any], ...] | str


def _matcher(kind: EventKind | None, predicate: Callable[[Any], bool] | None) -> Callable[[Event], bool]:
    if kind is None:
        def by_kind(event: Event) -> bool:
            return True
    elif isinstance(kind, str):
        def by_kind(event: Event) -> bool:
            return event_name(event) == kind
    elif isinstance(kind, type) or (isinstance(kind, tuple) and all(isinstance(k, type) for k in kind)):
        classes = kind

        def by_kind(event: Event) -> bool:
            return isinstance(event, classes)
    else:
        raise TypeError("wait_for takes an event class, a tuple of them or an event name, "
                        f"not {type(kind).__name__}")
    if predicate is None:
        return by_kind
    check = predicate

    def match(event: Event) -> bool:
        return by_kind(event) and bool(check(event))
    return match


def _option(cls: type[E], value: E | Mapping[str, Any] | None, path: str) -> E | None:
    """An option given as its dataclass or as the JSON object of the spec (checked here)."""
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return option_from_dict(cls, dict(value), path)
    raise TypeError(f"{path} must be a {cls.__name__} or a dict, not {type(value).__name__}")


class CallClient:
    """One call over one WebSocket connection (see the module docstring for the event semantics).

    Create it with :func:`connect` (``async with connect(url) as client`` or ``client = await
    connect(url)``).  All methods must be called from the event loop that connected it.
    """

    def __init__(self, ws: ClientConnection, url: str, *, history_size: int = HISTORY_SIZE,
                 pending_size: int = PENDING_SIZE, audio_frames: int = AUDIO_FRAMES) -> None:
        self.ws = ws
        self.url = url
        self.codec: str | None = None        # the codec of the invite/accept we sent
        self._encoder: AudioEncoder | None = None
        self._history: collections.deque[Event] = collections.deque(maxlen=history_size)
        self._pending: collections.deque[Event] = collections.deque(maxlen=pending_size)
        self._waiters: list[_Waiter] = []
        self._audio: collections.deque[bytes] = collections.deque(maxlen=audio_frames)
        self._audio_ready = asyncio.Event()
        self.dropped_events = 0              # pending events dropped because nobody consumed them
        self.dropped_audio = 0               # received frames dropped because nobody read them
        self.malformed_events = 0
        self._closed = False
        self._receiver = asyncio.get_running_loop().create_task(self._receive(), name=f"pbx.client {url}")

    # -- lifecycle ---------------------------------------------------------------------------------------
    @staticmethod
    def connect(url: str, *, call_id: str | None = None, dump: bool | None = None,
                ping_interval: int | None = None, server_side_track: str | None = None,
                call_type: CallType | None = None, open_timeout: float | None = 10.0,
                max_size: int | None = 1 << 20, token: str | None = None) -> Connect:
        """Same as the module's :func:`connect`."""
        return connect(url, call_id=call_id, dump=dump, ping_interval=ping_interval,
                       server_side_track=server_side_track, call_type=call_type,
                       open_timeout=open_timeout, max_size=max_size, token=token)

    @property
    def closed(self) -> bool:
        """The connection is closed: no more events or audio will arrive."""
        return self._closed

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self.ws.close_reason

    async def close(self) -> None:
        """Close the WebSocket (the server ends the call if it is still up) and stop receiving."""
        await self.ws.close()
        await self.wait_closed()

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Until the server has closed the connection (it does after the hangup event)."""
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._receiver)

    async def __aenter__(self) -> CallClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- commands ------------------------------------------------------------------------------------------
    async def send_command(self, command: Command) -> None:
        """Send any :mod:`pbx.protocol` command.  ``invite``/``accept`` also set :attr:`codec`."""
        text = serialize_command(command)
        if isinstance(command, InviteCommand | AcceptCommand):
            self._set_codec(command.option.codec)
        await self._send(text)

    async def send_raw(self, text: str) -> None:
        """Send a text message as it is (to test how the server answers bad input)."""
        await self._send(text)

    async def invite(self, option: CallOption | Mapping[str, Any] | None = None) -> None:
        """Start a call; ``option`` is a CallOption or the spec's JSON object (camelCase keys)."""
        await self.send_command(InviteCommand(option=_option(CallOption, option, "invite.option") or CallOption()))

    async def accept(self, option: CallOption | Mapping[str, Any] | None = None) -> None:
        await self.send_command(AcceptCommand(option=_option(CallOption, option, "accept.option") or CallOption()))

    async def reject(self, reason: str, code: int | None = None) -> None:
        await self.send_command(RejectCommand(reason=reason, code=code))

    async def ringing(self, *, recorder: RecorderOption | Mapping[str, Any] | None = None,
                      early_media: bool = False, ringtone: str | None = None) -> None:
        await self.send_command(RingingCommand(recorder=_option(RecorderOption, recorder, "ringing.recorder"),
                                               early_media=early_media, ringtone=ringtone))

    async def tts(self, text: str, *, play_id: str | None = None, speaker: str | None = None,
                  auto_hangup: bool = False, streaming: bool = False, end_of_stream: bool = False,
                  wait_input_timeout: float | None = None,
                  option: SynthesisOption | Mapping[str, Any] | None = None, base64: bool = False) -> None:
        await self.send_command(TtsCommand(
            text=text, speaker=speaker, play_id=play_id, auto_hangup=auto_hangup, streaming=streaming,
            end_of_stream=end_of_stream, wait_input_timeout=wait_input_timeout,
            option=_option(SynthesisOption, option, "tts.option"), base64=base64))

    async def play(self, url: str, *, auto_hangup: bool = False, wait_input_timeout: float | None = None) -> None:
        await self.send_command(PlayCommand(url=url, auto_hangup=auto_hangup, wait_input_timeout=wait_input_timeout))

    async def interrupt(self, graceful: bool = False) -> None:
        await self.send_command(InterruptCommand(graceful=graceful))

    async def refer(self, caller: str, callee: str, options: ReferOption | Mapping[str, Any] | None = None) -> None:
        await self.send_command(ReferCommand(caller=caller, callee=callee,
                                             options=_option(ReferOption, options, "refer.options")))

    async def mute(self, track_id: str | None = None) -> None:
        await self.send_command(MuteCommand(track_id=track_id))

    async def unmute(self, track_id: str | None = None) -> None:
        await self.send_command(UnmuteCommand(track_id=track_id))

    async def dtmf(self, digits: str) -> None:
        """Send ``digits`` as RFC 4733 events (our extension; SIP calls only)."""
        await self.send_command(DtmfCommand(digits=digits))

    async def hangup(self, reason: str | None = None, initiator: str | None = None) -> None:
        await self.send_command(HangupCommand(reason=reason, initiator=initiator))

    async def _send(self, message: str | bytes) -> None:
        if self._closed:
            raise ClientClosed("the call's WebSocket is closed")
        try:
            await self.ws.send(message)
        except ConnectionClosed as exc:
            raise ClientClosed(f"the call's WebSocket is closed: {exc}") from exc

    # -- events ----------------------------------------------------------------------------------------------
    @property
    def history(self) -> Sequence[Event]:
        """Every event received, oldest first (the last ``history_size``), consumed or not."""
        return self._history

    @property
    def pending(self) -> Sequence[Event]:
        """Events received that no wait or iterator has taken yet, oldest first."""
        return self._pending

    def discard_pending(self) -> list[Event]:
        """Forget the pending events (they stay in the history); returns them."""
        events = list(self._pending)
        self._pending.clear()
        return events

    @overload
    async def wait_for(self, kind: type[E], *, predicate: Callable[[E], bool] | None = None,
                       timeout: float | None = DEFAULT_TIMEOUT) -> E: ...

    @overload
    async def wait_for(self, kind: tuple[type[Any], ...] | str, *, predicate: Callable[[Event], bool] | None = None,
                       timeout: float | None = DEFAULT_TIMEOUT) -> Event: ...

    async def wait_for(self, kind: EventKind, *, predicate: Callable[[Any], bool] | None = None,
                       timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """The oldest pending event of ``kind`` (an event class, a tuple of them, or a wire name like
        ``"trackEnd"``) for which ``predicate`` is true, else the next such event to arrive; it is taken out of the
        pending queue.  Raises TimeoutError after ``timeout`` seconds (None: no limit),
        :class:`ClientClosed` if the connection closes first, and what ``predicate`` raises."""
        return await self._take(_matcher(kind, predicate), timeout, catch_all=False)

    async def next_event(self, timeout: float | None = None) -> Event:
        """The next event no wait_for takes (pending ones first); ClientClosed once closed and drained."""
        return await self._take(_matcher(None, None), timeout, catch_all=True)

    async def events(self) -> AsyncIterator[Event]:
        """Events in arrival order (pending ones first), except those a wait_for takes; ends when the
        connection is closed and nothing is pending."""
        while True:
            try:
                event = await self.next_event()
            except ClientClosed:
                return
            yield event

    async def _take(self, match: Callable[[Event], bool], timeout: float | None, catch_all: bool) -> Event:
        for i, event in enumerate(self._pending):
            if match(event):
                del self._pending[i]
                return event
        if self._closed:
            raise ClientClosed("the call's WebSocket is closed and no pending event matches")
        waiter = _Waiter(match, asyncio.get_running_loop().create_future(), catch_all)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await waiter.future
        except BaseException:
            # Timed out or cancelled just as an event was handed over: put it back, do not lose it.
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                self._pending.appendleft(future.result())
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _deliver(self, event: Event) -> None:
        self._history.append(event)
        for catch_all in (False, True):
            for waiter in list(self._waiters):
                if waiter.catch_all is not catch_all or waiter.future.done():
                    continue
                try:
                    matched = waiter.match(event)
                except Exception as exc:     # a predicate's error belongs to its wait, not to this loop
                    waiter.future.set_exception(exc)
                    self._waiters.remove(waiter)
                    continue
                if matched:
                    waiter.future.set_result(event)
                    self._waiters.remove(waiter)
                    return
        if len(self._pending) == self._pending.maxlen:
            self.dropped_events += 1
            if self.dropped_events == 1:
                log.warning("%s: pending events full (%d): dropping the oldest; consume events or "
                            "discard_pending()", self.url, self._pending.maxlen)
        self._pending.append(event)

    # -- audio -----------------------------------------------------------------------------------------------
    async def send_audio(self, data: bytes | bytearray | memoryview) -> None:
        """Send codec bytes (the caller's audio on /call) as one binary message."""
        await self._send(bytes(data))

    async def recv_audio(self, timeout: float | None = None) -> bytes:
        """The oldest received binary frame; TimeoutError after ``timeout`` seconds, ClientClosed
        once closed with nothing buffered."""
        async with asyncio.timeout(timeout):
            while not self._audio:
                if self._closed:
                    raise ClientClosed("the call's WebSocket is closed and no audio is buffered")
                self._audio_ready.clear()
                await self._audio_ready.wait()
        return self._audio.popleft()

    async def audio(self) -> AsyncIterator[bytes]:
        """Received binary frames (the call's outbound audio, 20 ms in its codec) until closed."""
        while True:
            try:
                frame = await self.recv_audio()
            except ClientClosed:
                return
            yield frame

    def drain_audio(self) -> list[bytes]:
        """The buffered received frames, oldest first, removed from the buffer."""
        frames = list(self._audio)
        self._audio.clear()
        return frames

    def encoder(self) -> AudioEncoder:
        """The encoder :meth:`stream_pcm` uses for the call's codec (one, kept across calls)."""
        if self._encoder is None:
            raise RuntimeError("no codec yet: send invite or accept first, or pass an encoder")
        return self._encoder

    def decoder(self) -> AudioDecoder:
        """A new decoder of the call's codec, for the frames :meth:`audio` gives."""
        if self.codec is None:
            raise RuntimeError("no codec yet: send invite or accept first")
        return AudioDecoder(self.codec)

    async def stream_pcm(self, pcm: npt.NDArray[np.int16] | bytes | bytearray | memoryview, *,
                         frame_ms: int = 20, realtime: bool = True, rate: int = RATE,
                         encoder: AudioEncoder | None = None) -> int:
        """Send int16 mono audio (an array, or s16le bytes) as the caller's audio, in frames of
        ``frame_ms`` encoded for the call's codec; returns the number of frames sent.

        ``rate`` other than 16 kHz is resampled first.  The last frame is padded with silence.
        ``realtime`` paces frame *i* at ``start + i * frame_ms`` (no drift); without it the frames
        go as fast as the socket takes them and the server buffers up to 30 s of them.
        """
        if frame_ms <= 0 or frame_ms % 10:
            raise ValueError(f"frame_ms must be a positive multiple of 10, got {frame_ms}")
        codec = encoder if encoder is not None else self.encoder()
        samples = _as_pcm(pcm, rate)
        step = RATE * frame_ms // 1000
        count = math.ceil(len(samples) / step)
        padded = np.zeros(count * step, dtype=np.int16)
        padded[:len(samples)] = samples
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(count):
            if realtime:
                await asyncio.sleep(max(0.0, start + i * frame_ms / 1000 - loop.time()))
            await self._send(codec.encode(padded[i * step:(i + 1) * step]))
        return count

    def _set_codec(self, codec: str) -> None:
        name = codec.lower()
        if name != self.codec:
            self.codec = name
            self._encoder = AudioEncoder(name) if name in CODECS else None

    # -- receiving ---------------------------------------------------------------------------------------------
    async def _receive(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, str):
                    self._deliver(self._parse(message))
                else:
                    self._on_audio(message)
        except ConnectionClosed:
            pass
        except Exception:            # a bug here must not leave waiters hanging
            log.exception("%s: receive loop failed", self.url)
        finally:
            self._closed = True
            for waiter in self._waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(ClientClosed("the call's WebSocket closed"))
            self._waiters.clear()
            self._audio_ready.set()

    def _parse(self, text: str) -> Event:
        try:
            return parse_event(text)
        except ProtocolError as exc:
            self.malformed_events += 1
            log.warning("%s: malformed event (%s): %.200s", self.url, exc, text)
            return _malformed(text, str(exc))

    def _on_audio(self, data: bytes) -> None:
        if len(self._audio) == self._audio.maxlen:
            self.dropped_audio += 1
        self._audio.append(data)
        self._audio_ready.set()


def _malformed(text: str, error: str) -> MalformedEvent:
    """Keep what can be kept of a message parse_event refused."""
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        return MalformedEvent("", {"text": text}, error)
    name = obj.get("event")
    return MalformedEvent(name if isinstance(name, str) else "", obj, error)


# ---------------------------------------------------------------------------
# connect()


class Connect:
    """What :func:`connect` returns: await it for a :class:`CallClient`, or use it in ``async with``
    (the client is closed on exit)."""

    def __init__(self, url: str, open_timeout: float | None, max_size: int | None, token: str | None = None) -> None:
        self.url = url
        self._open_timeout = open_timeout
        self._max_size = max_size
        self._token = token
        self._client: CallClient | None = None

    async def _open(self) -> CallClient:
        headers = [("Authorization", f"Bearer {self._token}")] if self._token else None
        ws = await ws_connect(self.url, open_timeout=self._open_timeout, max_size=self._max_size,
                              compression=None, additional_headers=headers)
        return CallClient(ws, self.url)

    def __await__(self) -> Generator[Any, None, CallClient]:
        return self._open().__await__()

    async def __aenter__(self) -> CallClient:
        self._client = await self._open()
        return self._client

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._client is not None:
            await self._client.close()


def default_token(data_dir: str | os.PathLike[str] = "pypbx-data") -> str | None:
    """``PYPBX_API_TOKEN``, else the token a server started here generated into ``<data_dir>/api-token``
    (``make serve``), else None."""
    token = os.environ.get("PYPBX_API_TOKEN")
    if token:
        return token
    try:
        return Path(data_dir, "api-token").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def connect(url: str, *, call_id: str | None = None, dump: bool | None = None, ping_interval: int | None = None,
            server_side_track: str | None = None, call_type: CallType | None = None,
            open_timeout: float | None = 10.0, max_size: int | None = 1 << 20, token: str | None = None) -> Connect:
    """Open a call's WebSocket: ``async with connect(url) as client`` or ``client = await connect(url)``.

    The URL is built by :func:`call_url` (server or call path; ``call_id``, ``dump``,
    ``ping_interval`` (seconds), ``server_side_track`` become the spec's query parameters;
    ``call_type`` picks ``/call``, ``/call/sip`` or ``/call/webrtc``).  ``max_size`` bounds one
    message from the server.  ``token`` is the server's API token (sent as ``Authorization: Bearer``;
    a server on a loopback address needs none).  Raises what ``websockets`` raises when the connection
    cannot be opened (OSError, ``websockets.exceptions.InvalidStatus``, TimeoutError).
    """
    full = call_url(url, call_id=call_id, dump=dump, ping_interval=ping_interval,
                    server_side_track=server_side_track, call_type=call_type)
    return Connect(full, open_timeout, max_size, token)

