"""The I/O of a call's media pass (:mod:`pbx.call.mediapass` decides; this connects and converts).

:class:`MediaPassLink` opens the service's WebSocket under the server's address policy
(:func:`pbx.cloud.ws.open_websocket`), sends it the caller's audio (the engine's tap, 16 kHz, handed
over by the driver) and reports what comes back to the call. The wire formats are sans-I/O classes:

- :class:`PcmFraming` (``protocol: "pcm"``, the spec's): the URL gets ``sample_rate`` and
  ``packet_size`` query parameters (as the upstream server adds them); the caller's audio goes out as
  s16le at ``outputSampleRate`` in binary messages of ``packetSize`` bytes, and binary messages back
  are s16le at ``inputSampleRate``.
- :class:`TwilioFraming` (``protocol: "twilio"``, our extension): Twilio Media Streams' JSON messages.
  ``connected`` and ``start`` first, then a ``media`` message per 20 ms (base64 mu-law at 8 kHz,
  whatever the option's rates), ``mark`` when the audio before a service's mark has played, ``stop``
  last; the service sends ``media``, ``mark`` and ``clear``. The URL is used as given.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import numpy as np
import soxr  # type: ignore[import-untyped]
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from pbx.call.media import Pcm
from pbx.cloud.ws import ProviderContext, close_quietly, open_websocket
from pbx.core.g711 import ulaw_decode, ulaw_encode
from pbx.core.resample import PAIRS, Resampler
from pbx.errors import PbxError
from pbx.protocol import MediaPassOption

log = logging.getLogger(__name__)

RATE = 16000                  # the call's audio
TWILIO_RATE = 8000
TWILIO_CHUNK = 160            # bytes of mu-law per media message: 20 ms
ACCOUNT_SID = "AC" + "0" * 32  # no Twilio account: a fixed, well-formed AccountSid
MAX_QUEUED = 500              # outgoing messages waiting for a slow service before audio is dropped


# -- what the service sends, as the call core takes it ------------------------------------------
@dataclass(frozen=True, slots=True)
class Audio:
    pcm: Pcm                  # 16 kHz


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Clear:
    pass


@dataclass(frozen=True, slots=True)
class Refused:
    message: str


Incoming: TypeAlias = Audio | Mark | Clear | Refused
Outgoing: TypeAlias = str | bytes


class Converter:
    """A stream of int16 PCM from one rate to another: the engine's resampler for its pairs, soxr else."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._fir: Resampler | None = None
        self._soxr: Any = None
        self._held = np.zeros(0, dtype=np.int16)
        if in_rate == out_rate:
            return
        if (in_rate, out_rate) in PAIRS:
            self._fir = Resampler(in_rate, out_rate)
        else:
            self._soxr = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16")

    def process(self, pcm: Pcm) -> Pcm:
        if self._fir is not None:
            if len(self._held):
                pcm = np.concatenate((self._held, pcm))
            step = self._fir.ratio_down
            usable = len(pcm) - len(pcm) % step
            self._held = pcm[usable:].copy()
            return self._fir.process(np.ascontiguousarray(pcm[:usable]))
        if self._soxr is not None:
            out: Pcm = self._soxr.resample_chunk(pcm)
            return out
        return pcm


class Framing(Protocol):
    def url(self) -> str: ...
    def opening(self) -> list[Outgoing]: ...
    def audio(self, pcm: Pcm) -> list[Outgoing]: ...
    def marks(self, names: tuple[str, ...]) -> list[Outgoing]: ...
    def closing(self) -> list[Outgoing]: ...
    def received(self, message: str | bytes) -> list[Incoming]: ...


def _with_query(url: str, **params: int) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, str(v)) for k, v in params.items()]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class PcmFraming:
    """The spec's media pass: raw s16le both ways, binary messages."""

    def __init__(self, option: MediaPassOption) -> None:
        self.option = option
        self._out = Converter(RATE, option.output_sample_rate)
        self._in = Converter(option.input_sample_rate, RATE)
        self._pending = bytearray()     # caller's audio not yet a whole packet
        self._odd = b""                 # a byte of a sample split between two messages

    def url(self) -> str:
        return _with_query(self.option.url, sample_rate=self.option.output_sample_rate,
                           packet_size=self.option.packet_size)

    def opening(self) -> list[Outgoing]:
        return []

    def audio(self, pcm: Pcm) -> list[Outgoing]:
        self._pending += self._out.process(pcm).astype("<i2").tobytes()
        size = self.option.packet_size
        packets: list[Outgoing] = []
        while len(self._pending) >= size:
            packets.append(bytes(self._pending[:size]))
            del self._pending[:size]
        return packets

    def marks(self, names: tuple[str, ...]) -> list[Outgoing]:
        return []

    def closing(self) -> list[Outgoing]:
        return []

    def received(self, message: str | bytes) -> list[Incoming]:
        if isinstance(message, str):
            return [Refused(f"mediaPass: text message ignored ({message[:40]!r}): protocol pcm takes binary "
                            "s16le PCM")]
        data = self._odd + message
        whole = len(data) - len(data) % 2
        self._odd = data[whole:]
        if not whole:
            return []
        pcm = np.frombuffer(data[:whole], dtype="<i2").astype(np.int16)
        out = self._in.process(pcm)
        return [Audio(out)] if len(out) else []


class TwilioFraming:
    """Twilio Media Streams (bidirectional ``<Connect><Stream>``), as a Twilio bot expects it."""

    def __init__(self, option: MediaPassOption, call_id: str, parameters: dict[str, str]) -> None:
        self.option = option
        self.call_id = call_id
        self.parameters = parameters
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self._down = Converter(RATE, TWILIO_RATE)
        self._up = Converter(TWILIO_RATE, RATE)
        self._sequence = 0
        self._chunk = 0
        self._pending = bytearray()     # mu-law not yet a whole 20 ms chunk

    def url(self) -> str:
        return self.option.url

    def _message(self, event: str, **fields: object) -> str:
        self._sequence += 1
        return json.dumps({"event": event, "sequenceNumber": str(self._sequence), **fields,
                           "streamSid": self.stream_sid})

    def opening(self) -> list[Outgoing]:
        start = {"accountSid": ACCOUNT_SID, "streamSid": self.stream_sid, "callSid": self.call_id,
                 "tracks": ["inbound"], "customParameters": self.parameters,
                 "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": TWILIO_RATE, "channels": 1}}
        connected = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        return [connected, self._message("start", start=start)]

    def audio(self, pcm: Pcm) -> list[Outgoing]:
        self._pending += ulaw_encode(self._down.process(pcm))
        messages: list[Outgoing] = []
        while len(self._pending) >= TWILIO_CHUNK:
            chunk = bytes(self._pending[:TWILIO_CHUNK])
            del self._pending[:TWILIO_CHUNK]
            timestamp = self._chunk * TWILIO_CHUNK * 1000 // TWILIO_RATE   # ms of the stream before it
            self._chunk += 1
            messages.append(self._message("media", media={
                "track": "inbound", "chunk": str(self._chunk), "timestamp": str(timestamp),
                "payload": base64.b64encode(chunk).decode("ascii")}))
        return messages

    def marks(self, names: tuple[str, ...]) -> list[Outgoing]:
        return [self._message("mark", mark={"name": name}) for name in names]

    def closing(self) -> list[Outgoing]:
        return [self._message("stop", stop={"accountSid": ACCOUNT_SID, "callSid": self.call_id})]

    def received(self, message: str | bytes) -> list[Incoming]:
        if isinstance(message, bytes):
            return [Refused("mediaPass: binary message ignored: protocol twilio takes JSON text messages")]
        try:
            data = json.loads(message)
        except ValueError:
            return [Refused(f"mediaPass: message is not JSON: {message[:40]!r}")]
        event = data.get("event") if isinstance(data, dict) else None
        if event == "media":
            media = data.get("media")
            payload = media.get("payload") if isinstance(media, dict) else None
            if not isinstance(payload, str):
                return [Refused("mediaPass: media message without media.payload")]
            try:
                raw = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                return [Refused(f"mediaPass: media.payload is not base64: {payload[:40]!r}")]
            pcm = self._up.process(ulaw_decode(raw))
            return [Audio(pcm)] if len(pcm) else []
        if event == "mark":
            mark = data.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if not isinstance(name, str):
                return [Refused("mediaPass: mark message without mark.name")]
            return [Mark(name)]
        if event == "clear":
            return [Clear()]
        return [Refused(f"mediaPass: unknown event {str(event)[:40]!r} (expected media, mark or clear)")]


def framing_for(option: MediaPassOption, call_id: str, parameters: dict[str, str]) -> Framing:
    if option.protocol == "twilio":
        return TwilioFraming(option, call_id, parameters)
    return PcmFraming(option)


class MediaPassCall(Protocol):
    """The call core's media pass inputs (:class:`pbx.call.core.Call`)."""

    def media_pass_opened(self, now_ms: float) -> None: ...
    def media_pass_failed(self, error: BaseException, now_ms: float) -> None: ...
    def media_pass_audio(self, pcm: Pcm, now_ms: float) -> None: ...
    def media_pass_mark(self, name: str, now_ms: float) -> None: ...
    def media_pass_clear(self, now_ms: float) -> None: ...
    def media_pass_refused(self, message: str, now_ms: float) -> None: ...
    def media_pass_ended(self, message: str, now_ms: float) -> None: ...


class MediaPassLink:
    """One media pass connection: :meth:`run` connects and reads until the end; :meth:`send_audio` and
    :meth:`send_marks` queue what goes out; :meth:`close` ends it (a ``stop`` first in Twilio mode).
    ``flush`` is called after each report to the call (the driver's flush)."""

    def __init__(self, framing: Framing, context: ProviderContext, call: MediaPassCall,
                 now_ms: Callable[[], float], flush: Callable[[], None]) -> None:
        self.framing = framing
        self.context = context
        self.call = call
        self.now_ms = now_ms
        self.flush = flush
        self._queue: asyncio.Queue[Outgoing | None] = asyncio.Queue()
        self._connection: ClientConnection | None = None
        self._closing = False
        self._dropping = False

    async def run(self) -> None:
        try:
            connection = await open_websocket(self.framing.url(), sender="mediaPass", provider="mediaPass",
                                              context=self.context)
        except PbxError as exc:
            self.call.media_pass_failed(exc, self.now_ms())
            self.flush()
            return
        if self._closing:               # the call ended while connecting
            await close_quietly(connection)
            return
        self._connection = connection
        for message in self.framing.opening():
            self._queue.put_nowait(message)
        self.call.media_pass_opened(self.now_ms())
        self.flush()
        writer = asyncio.get_running_loop().create_task(self._write(connection))
        try:
            await self._read(connection)
        finally:
            if not writer.done():
                self._queue.put_nowait(None)
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(writer), self.context.timeout_s)
                writer.cancel()
            await close_quietly(connection)

    async def _read(self, connection: ClientConnection) -> None:
        try:
            async for message in connection:
                for item in self.framing.received(message):
                    self._report(item)
                self.flush()
        except ConnectionClosed:
            pass
        if self._closing:
            return
        code, reason = connection.close_code, connection.close_reason
        how = f"code {code}{': ' + reason if reason else ''}"
        self._closing = True            # nothing more goes out
        self.call.media_pass_ended(f"the mediaPass service closed the connection ({how}); its audio stops",
                                   self.now_ms())
        self.flush()

    def _report(self, item: Incoming) -> None:
        now = self.now_ms()
        if isinstance(item, Audio):
            self.call.media_pass_audio(item.pcm, now)
        elif isinstance(item, Mark):
            self.call.media_pass_mark(item.name, now)
        elif isinstance(item, Clear):
            self.call.media_pass_clear(now)
        else:
            self.call.media_pass_refused(item.message, now)

    async def _write(self, connection: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while (message := await self._queue.get()) is not None:
                await connection.send(message)
            await connection.close()

    def _put(self, messages: list[Outgoing]) -> None:
        if self._connection is None or self._closing:
            return
        if self._queue.qsize() + len(messages) > MAX_QUEUED:   # the service does not keep up: drop, don't grow
            if not self._dropping:
                log.warning("media pass: the service does not read its audio; dropping")
            self._dropping = True
            return
        self._dropping = False
        for message in messages:
            self._queue.put_nowait(message)

    def send_audio(self, pcm: Pcm) -> None:
        """The caller's audio (16 kHz), once the connection is open."""
        if self._connection is not None and not self._closing:
            self._put(self.framing.audio(pcm))

    def send_marks(self, names: tuple[str, ...]) -> None:
        self._put(self.framing.marks(names))

    def close(self) -> None:
        """End the connection after what is queued (and, in Twilio mode, a ``stop``)."""
        if self._closing:
            return
        if self._connection is not None:
            for message in self.framing.closing():
                self._queue.put_nowait(message)
        self._closing = True
        self._queue.put_nowait(None)
