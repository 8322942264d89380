"""A local Deepgram: the ``/v1/listen`` and ``/v1/speak`` WebSocket protocols as Deepgram documents them
(tests/fixtures/providers/deepgram/*.json cite the pages), on 127.0.0.1 with a free port.

It checks what a client sends and records it for the tests to assert:

- the handshake: ``Authorization: Token <key>`` (anything else is refused with HTTP 401 and Deepgram's
  error body), the path, and the query (``encoding``, ``sample_rate``, ``channels``, ``model``, ...);
- ``/v1/listen``: binary audio frames (non-empty, whole 16-bit samples: an empty frame would end a real
  stream), the text messages ``Finalize``, ``CloseStream``, ``KeepAlive`` and nothing after
  ``CloseStream``; the audio is kept (:attr:`ListenSession.pcm`) at the rate the query names;
- ``/v1/speak``: ``Speak`` (at most 2000 characters), ``Flush`` after some text, ``Close``, ``Clear``.

Anything else is a :attr:`DeepgramServer.violations` entry (tests assert there are none).

Behaviour per connection comes from a queue of modes (the next connection takes the next one;
"normal" when the queue is empty):

- listen "normal": the :class:`Step` script, by seconds of audio received: interim, final
  (``is_final``) or speech_final segments; then an empty ``is_final`` segment per second of audio, as
  Deepgram sends during silence. ``Finalize`` is answered with a ``from_finalize`` segment carrying
  :attr:`DeepgramServer.finalize_text` (once); ``CloseStream`` with the documented Metadata and a 1000 close.
- listen "close": normal until ``fault_after_s`` of audio, then a close frame 1011 ``NET-0000``;
  "drop": the TCP connection is cut there (no close frame); "stall": normal, but silent from the
  first ``Finalize`` on; "garbage": a non-JSON frame and a Results frame without ``channel`` at
  the first audio, then normal; "refuse": HTTP 401 whatever the key.
- speak "normal": the documented Metadata at once; at ``Flush``, a 440 Hz tone (60 ms per character
  of text, at the query's rate and encoding) in 100 ms binary frames, then ``Flushed``.
- speak "drop": a close 1011 ``NET-0000`` after the first 100 ms of audio; "stall": never answers;
  "garbage": a non-JSON text frame after the first audio; "refuse": HTTP 401.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from pbx.core.g711 import alaw_encode, ulaw_encode

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "providers" / "deepgram"
LISTEN = json.loads((FIXTURES / "listen.json").read_text())
SPEAK = json.loads((FIXTURES / "speak.json").read_text())
KEY = "12345abcdef"                      # the documentation's example key
LISTEN_RATES = {"8000", "16000", "24000", "32000", "44100", "48000"}
SPEAK_RATES = {"linear16": {"8000", "16000", "24000", "32000", "48000"}, "mulaw": {"8000", "16000"},
               "alaw": {"8000", "16000"}}
SECONDS_PER_CHAR = 0.06


@dataclass(frozen=True)
class Step:
    """Send a segment once ``at_s`` seconds of audio have arrived: kind "interim", "final" or "speech_final"."""

    at_s: float
    kind: str
    text: str


DEFAULT_SCRIPT = (Step(0.6, "interim", "call"), Step(1.0, "interim", "call stella"),
                  Step(1.4, "final", "call stella"), Step(1.8, "interim", "and ask her"))
DEFAULT_FINALIZE = "and ask her to bring these things"


@dataclass
class Handshake:
    path: str
    query: dict[str, list[str]]
    headers: Headers

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class ListenSession:
    handshake: Handshake
    mode: str
    messages: list[Any] = field(default_factory=list)   # ("audio", bytes) or a parsed text message
    audio: bytearray = field(default_factory=bytearray)
    sent: list[Any] = field(default_factory=list)        # the frames we sent (parsed JSON)

    @property
    def rate(self) -> int:
        return int(self.handshake.param("sample_rate") or 0)

    @property
    def seconds(self) -> float:
        return len(self.audio) / 2 / self.rate if self.rate else 0.0

    @property
    def pcm(self) -> np.ndarray:
        return np.frombuffer(bytes(self.audio[:len(self.audio) // 2 * 2]), "<i2").astype(np.int16)

    @property
    def packet_sizes(self) -> list[int]:
        return [len(m[1]) for m in self.messages if isinstance(m, tuple)]

    @property
    def texts(self) -> list[str]:
        return [m["type"] for m in self.messages if isinstance(m, dict)]


@dataclass
class SpeakSession:
    handshake: Handshake
    mode: str
    messages: list[Any] = field(default_factory=list)   # parsed text messages
    audio_bytes: int = 0


class DeepgramServer:
    def __init__(self, key: str = KEY) -> None:
        self.key = key
        self.listen_modes: list[str] = []
        self.speak_modes: list[str] = []
        self.script: tuple[Step, ...] = DEFAULT_SCRIPT
        self.finalize_text = DEFAULT_FINALIZE
        self.fault_after_s = 0.3
        self.handshakes: list[Handshake] = []
        self.refused: list[Handshake] = []
        self.listens: list[ListenSession] = []
        self.speaks: list[SpeakSession] = []
        self.violations: list[str] = []
        self._changed = asyncio.Condition()
        self._server: Server | None = None
        self._accepted: dict[int, tuple[Handshake, str]] = {}   # connection -> its handshake and mode

    async def __aenter__(self) -> DeepgramServer:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._check)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    @property
    def listen_url(self) -> str:
        return f"ws://{self.address}/v1/listen"

    @property
    def speak_url(self) -> str:
        return f"ws://{self.address}/v1/speak"

    async def wait_for(self, condition: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait until ``condition()`` (re-evaluated at every recorded message) is truthy."""
        async def until() -> Any:
            async with self._changed:
                while not (value := condition()):
                    await self._changed.wait()
                return value
        return await asyncio.wait_for(until(), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- handshake -------------------------------------------------------------------------------------
    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urllib.parse.urlsplit(request.path)
        handshake = Handshake(parts.path, urllib.parse.parse_qs(parts.query, keep_blank_values=True), request.headers)
        self.handshakes.append(handshake)
        if parts.path == "/v1/listen":
            mode = self.listen_modes.pop(0) if self.listen_modes else "normal"
        elif parts.path == "/v1/speak":
            mode = self.speak_modes.pop(0) if self.speak_modes else "normal"
        else:
            self.violations.append(f"unknown path {parts.path}")
            return connection.respond(404, "Not Found\n")
        if mode == "refuse" or request.headers.get("Authorization") != f"Token {self.key}":
            self.refused.append(handshake)
            response = connection.respond(401, json.dumps(SPEAK["refused_body"]))
            response.headers["Content-Type"] = "application/json"
            return response
        self._accepted[id(connection)] = (handshake, mode)
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        handshake, mode = self._accepted.pop(id(ws))
        try:
            if handshake.path == "/v1/listen":
                await self._listen(ws, ListenSession(handshake, mode))
            else:
                await self._speak(ws, SpeakSession(handshake, mode))
        finally:
            await self._notify()

    # -- /v1/listen ----------------------------------------------------------------------------------------
    async def _listen(self, ws: ServerConnection, session: ListenSession) -> None:
        self.listens.append(session)
        h = session.handshake
        if h.param("encoding") != "linear16" or h.param("sample_rate") not in LISTEN_RATES \
                or h.param("channels") != "1":
            self.violations.append(f"listen: bad audio format in the query {h.query}")
            await ws.close(1002, "DATA-0000")
            return
        script = list(self.script)
        segment_start = 0.0                 # end of the last is_final segment
        next_silence = None
        finalize_text = self.finalize_text
        silent = closed = False
        async for message in ws:
            if closed:
                self.violations.append(f"listen: {message!r:.40} after CloseStream")
                continue
            if isinstance(message, bytes):
                session.messages.append(("audio", message))
                if not message or len(message) % 2:
                    self.violations.append(f"listen: an audio frame of {len(message)} bytes")
                session.audio.extend(message)
                now = session.seconds
                if session.mode == "garbage" and len(session.messages) == 1:
                    await ws.send("{not json")
                    await ws.send(json.dumps({"type": "Results", "start": 0.0, "duration": 0.1}))
                if session.mode in ("close", "drop") and now >= self.fault_after_s:
                    if session.mode == "close":
                        await ws.close(1011, "NET-0000")
                    else:
                        ws.transport.abort()
                    return
                if silent:
                    continue
                while script and script[0].at_s <= now:
                    step = script.pop(0)
                    frame = results(step.text, segment_start, now, is_final=step.kind != "interim",
                                    speech_final=step.kind == "speech_final")
                    if step.kind != "interim":
                        segment_start = now
                    await self._send(ws, session, frame)
                if not script:
                    next_silence = next_silence or now + 1.0
                    if now >= next_silence:
                        await self._send(ws, session, results("", segment_start, now, is_final=True))
                        segment_start, next_silence = now, now + 1.0
            else:
                try:
                    parsed = json.loads(message)
                    kind = parsed["type"]
                except (ValueError, KeyError, TypeError):
                    self.violations.append(f"listen: a text frame that is not a message: {message!r:.60}")
                    continue
                session.messages.append(parsed)
                if kind == "Finalize":
                    if session.mode == "stall":
                        silent = True
                    if silent:
                        continue
                    now = session.seconds
                    frame = results(finalize_text, segment_start, now, is_final=True)
                    frame["from_finalize"] = True
                    finalize_text, segment_start = "", now
                    await self._send(ws, session, frame)
                elif kind == "CloseStream":
                    closed = True
                    await self._send(ws, session, dict(LISTEN["close_stream_metadata"]))
                    await ws.close(1000)
                elif kind != "KeepAlive":
                    self.violations.append(f"listen: unknown message type {kind!r}")
            await self._notify()

    async def _send(self, ws: ServerConnection, session: ListenSession, frame: dict[str, Any]) -> None:
        session.sent.append(frame)
        await ws.send(json.dumps(frame))

    # -- /v1/speak ---------------------------------------------------------------------------------------------
    async def _speak(self, ws: ServerConnection, session: SpeakSession) -> None:
        self.speaks.append(session)
        h = session.handshake
        encoding = h.param("encoding") or "linear16"
        rate = h.param("sample_rate") or "24000"
        if rate not in SPEAK_RATES.get(encoding, set()):
            self.violations.append(f"speak: bad audio format in the query {h.query}")
            await ws.close(1008, "DATA-0000")
            return
        if session.mode != "stall":
            await ws.send(json.dumps({**SPEAK["metadata"], "model_name": h.param("model") or "aura-asteria-en"}))
        text: list[str] = []
        flushes = 0
        async for message in ws:
            try:
                parsed = json.loads(message)
                kind = parsed["type"]
            except (ValueError, KeyError, TypeError):
                self.violations.append(f"speak: a frame that is not a message: {message!r:.60}")
                continue
            session.messages.append(parsed)
            await self._notify()
            if kind == "Speak":
                if not isinstance(parsed.get("text"), str) or len(parsed["text"]) > 2000:
                    self.violations.append(f"speak: bad Speak text {parsed.get('text')!r:.60}")
                text.append(parsed.get("text") or "")
            elif kind == "Flush":
                if not text:
                    self.violations.append("speak: Flush before any Speak")
                if session.mode == "stall":
                    continue
                await self._speak_audio(ws, session, " ".join(text), int(rate), encoding)
                if session.mode in ("drop", "garbage"):
                    return
                await ws.send(json.dumps({"type": "Flushed", "sequence_id": flushes}))
                flushes += 1
                text = []
            elif kind == "Close":
                await ws.close(1000)
                return
            elif kind != "Clear":
                self.violations.append(f"speak: unknown message type {kind!r}")

    async def _speak_audio(self, ws: ServerConnection, session: SpeakSession, text: str, rate: int,
                           encoding: str) -> None:
        n = round(max(len(text), 1) * SECONDS_PER_CHAR * rate)
        pcm = np.round(8000 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype("<i2")
        step = rate // 10
        for i in range(0, n, step):
            piece = pcm[i:i + step]
            data = (ulaw_encode(piece) if encoding == "mulaw" else alaw_encode(piece) if encoding == "alaw"
                    else piece.tobytes())
            await ws.send(data)
            session.audio_bytes += len(data)
            if session.mode == "drop":
                await ws.close(1011, "NET-0000")
                return
            if session.mode == "garbage":
                await ws.send("<html>502 Bad Gateway</html>")
                await ws.wait_closed()
                return


def results(text: str, start: float, end: float, is_final: bool, speech_final: bool = False) -> dict[str, Any]:
    """A Results frame (the documented schema, as in the fixture) for ``text`` spread over [start, end]."""
    frame = json.loads(json.dumps(LISTEN["interim"]))
    words = text.split()
    span = (end - start) / max(len(words), 1)
    frame.update(start=round(start, 6), duration=round(end - start, 6), is_final=is_final, speech_final=speech_final)
    frame["channel"]["alternatives"][0].update(
        transcript=text, confidence=0.99 if words else 0.0,
        words=[{"word": w, "start": round(start + i * span, 6), "end": round(start + (i + 1) * span, 6),
                "confidence": 0.99, "punctuated_word": w} for i, w in enumerate(words)])
    return frame
