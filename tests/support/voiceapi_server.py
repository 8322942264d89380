"""A local voiceapi: the ``/asr`` and ``/tts`` WebSocket protocols of github.com/ruzhila/voiceapi (its
README and app.py; tests/fixtures/providers/voiceapi/*.json cite them), on 127.0.0.1 with a free port.

It checks what a client sends and records it for the tests to assert:

- the handshake: the path, the query (``/asr``: ``samplerate``; ``/tts``: ``samplerate``, ``sid``,
  ``speed``, ``chunk_size``, ``split``, ``interrupt``, each of the type app.py declares), and the
  ``Authorization`` header. voiceapi itself checks no credentials; with :attr:`VoiceApiServer.token`
  set, this server plays an authenticating proxy in front of it (``Bearer <token>`` or HTTP 401);
- ``/asr``: binary frames only (app.py reads bytes: a text frame ends the session, here with a
  violation and a 1011 close), non-empty (an empty frame stops voiceapi reading), whole 16-bit
  samples; the audio is kept (:attr:`AsrSession.pcm`) at the query's rate;
- ``/tts``: one non-empty text frame (app.py reads text: a binary frame ends the session).

Anything else is a :attr:`VoiceApiServer.violations` entry (tests assert there are none).

``/asr`` plays voiceapi's streaming zipformer with a scripted recogniser: audio is cut into 10 ms
blocks, a block is speech when its RMS is above :data:`SPEECH_RMS`. Every ``partial_every_s`` of
speech in a segment the next partial of the segment's script goes out (``finished: false``); after
``endpoint_silence_s`` of trailing silence (voiceapi's 1.2 s rule) a segment that had speech ends
with its final text (``finished: true``, then ``idx`` + 1). Each connection starts the script anew.

Behaviour per connection comes from a queue of modes ("normal" when the queue is empty):

- asr "close": normal until ``fault_after_s`` of audio, then a 1011 close (what uvicorn sends when the
  handler fails); "drop": the TCP connection is cut there; "stall": normal until the first endpoint,
  then silent; "garbage": a non-JSON frame and a result without ``finished`` at the first audio, then
  normal; "refuse": HTTP 401 whatever the key.
- tts "normal": a sine tone (``440 + 20 * sid`` Hz, ``SECONDS_PER_CHAR`` per character divided by
  ``speed``, at the query's rate) in ``chunk_size``-byte binary frames (odd sizes cut samples, as
  app.py does), then the completion frame. With ``split=true`` the text is cut at voiceapi's splitter
  and 0.2 s of silence goes between the pieces.
- tts "drop": a 1011 close after the first audio frame; "stall": never answers; "garbage": a proxy's
  HTML text frame after the first audio; "empty": the completion frame with no audio (voiceapi's
  answer when its engine fails); "refuse": HTTP 401.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "providers" / "voiceapi"
ASR = json.loads((FIXTURES / "asr.json").read_text())
TTS = json.loads((FIXTURES / "tts.json").read_text())
SPLITTER = re.compile(TTS["splitter"])
SECONDS_PER_CHAR = 0.06
SPEECH_RMS = 300.0
BLOCK_S = 0.01
REFUSED_BODY = "401 Authorization Required"       # the proxy's answer to a wrong or missing key
TTS_TYPES: dict[str, Callable[[str], Any]] = {
    "samplerate": int, "sid": int, "speed": float, "chunk_size": int,
    "split": lambda v: {"true": True, "false": False}[v.lower()],
    "interrupt": lambda v: {"true": True, "false": False}[v.lower()]}


@dataclass(frozen=True)
class Segment:
    partials: tuple[str, ...]
    final: str


DEFAULT_SCRIPT = (Segment(("call", "call stella", "call stella and ask her"),
                          "call stella and ask her to bring these things"),
                  Segment(("please",), "please call stella"))


@dataclass
class Handshake:
    path: str
    query: dict[str, list[str]]
    headers: Headers

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


def compact(frame: dict[str, Any]) -> str:
    """A frame as Starlette's ``send_json`` writes it."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


@dataclass
class AsrSession:
    handshake: Handshake
    mode: str
    packets: list[int] = field(default_factory=list)      # sizes of the binary frames, in order
    audio: bytearray = field(default_factory=bytearray)
    sent: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> int:
        return int(self.handshake.param("samplerate") or 16000)

    @property
    def seconds(self) -> float:
        return len(self.audio) / 2 / self.rate

    @property
    def pcm(self) -> np.ndarray:
        return np.frombuffer(bytes(self.audio[:len(self.audio) // 2 * 2]), "<i2").astype(np.int16)


@dataclass
class TtsSession:
    handshake: Handshake
    mode: str
    params: dict[str, Any] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)      # sizes of the audio frames sent
    sent: list[str] = field(default_factory=list)         # text frames sent


class VoiceApiServer:
    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.asr_modes: list[str] = []
        self.tts_modes: list[str] = []
        self.script: tuple[Segment, ...] = DEFAULT_SCRIPT
        self.partial_every_s = 0.4
        self.endpoint_silence_s = ASR["endpoint_rules_s"]["rule2_min_trailing_silence"]
        self.fault_after_s = 0.3
        self.handshakes: list[Handshake] = []
        self.refused: list[Handshake] = []
        self.asrs: list[AsrSession] = []
        self.ttss: list[TtsSession] = []
        self.violations: list[str] = []
        self._changed = asyncio.Condition()
        self._server: Server | None = None
        self._accepted: dict[int, tuple[Handshake, str]] = {}

    async def __aenter__(self) -> VoiceApiServer:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._check)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

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
        if parts.path == "/asr":
            mode = self.asr_modes.pop(0) if self.asr_modes else "normal"
        elif parts.path == "/tts":
            mode = self.tts_modes.pop(0) if self.tts_modes else "normal"
        else:
            self.violations.append(f"unknown path {parts.path}")
            return connection.respond(404, "Not Found\n")
        authorization = request.headers.get("Authorization")
        if mode == "refuse" or (self.token is not None and authorization != f"Bearer {self.token}"):
            self.refused.append(handshake)
            return connection.respond(401, REFUSED_BODY)
        self._accepted[id(connection)] = (handshake, mode)
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        handshake, mode = self._accepted.pop(id(ws))
        try:
            if handshake.path == "/asr":
                await self._asr(ws, AsrSession(handshake, mode))
            else:
                await self._tts(ws, TtsSession(handshake, mode))
        except ConnectionClosed:
            pass                          # a client that drops the connection is a case the tests make
        finally:
            await self._notify()

    # -- /asr ------------------------------------------------------------------------------------------------
    async def _asr(self, ws: ServerConnection, session: AsrSession) -> None:
        self.asrs.append(session)
        h = session.handshake
        try:
            rate = int(h.param("samplerate") or 16000)
            if rate <= 0:
                raise ValueError(rate)
        except ValueError:
            self.violations.append(f"asr: bad samplerate in the query {h.query}")
            await ws.close(1008)
            return
        block = round(rate * BLOCK_S)
        script = list(self.script)
        idx = 0
        speech_s = silence_s = 0.0
        emitted = 0
        done = 0                          # bytes of audio already cut into blocks
        silent = False
        async for message in ws:
            if isinstance(message, str):
                self.violations.append(f"asr: a text frame {message!r:.60} (voiceapi reads bytes only)")
                await ws.close(1011)
                return
            session.packets.append(len(message))
            if not message or len(message) % 2:
                self.violations.append(f"asr: an audio frame of {len(message)} bytes")
            session.audio.extend(message)
            if session.mode == "garbage" and len(session.packets) == 1:
                await ws.send("{not json")
                await ws.send(compact({"text": "hello", "idx": 0}))
            if session.mode in ("close", "drop") and session.seconds >= self.fault_after_s:
                if session.mode == "close":
                    await ws.close(1011)
                else:
                    ws.transport.abort()
                return
            while len(session.audio) - done >= 2 * block:
                pcm = np.frombuffer(bytes(session.audio[done:done + 2 * block]), "<i2").astype(np.float64)
                done += 2 * block
                if np.sqrt(np.mean(pcm * pcm)) > SPEECH_RMS:
                    speech_s += BLOCK_S
                    silence_s = 0.0
                else:
                    silence_s += BLOCK_S
                segment = script[0] if script else None
                if segment is not None and emitted < len(segment.partials) \
                        and speech_s >= (emitted + 1) * self.partial_every_s - 1e-9:
                    if not silent:
                        await self._result(ws, session, segment.partials[emitted], False, idx)
                    emitted += 1
                if speech_s > 0 and silence_s >= self.endpoint_silence_s - 1e-9:
                    if session.mode == "stall":
                        silent = True
                    if segment is not None and not silent:
                        await self._result(ws, session, segment.final, True, idx)
                    if segment is not None:
                        script.pop(0)
                        idx += 1
                    speech_s, emitted = 0.0, 0
            await self._notify()

    async def _result(self, ws: ServerConnection, session: AsrSession, text: str, finished: bool, idx: int) -> None:
        frame = {"text": text, "finished": finished, "idx": idx}
        session.sent.append(frame)
        await ws.send(compact(frame))

    # -- /tts ------------------------------------------------------------------------------------------------
    async def _tts(self, ws: ServerConnection, session: TtsSession) -> None:
        self.ttss.append(session)
        params = {k: v for k, v in TTS["query_defaults"].items()}
        for key, values in session.handshake.query.items():
            convert = TTS_TYPES.get(key)
            if convert is None:
                continue                                  # FastAPI ignores parameters it does not declare
            try:
                params[key] = convert(values[0])
            except (ValueError, KeyError):
                self.violations.append(f"tts: {key}={values[0]!r} is not a {key} (FastAPI refuses the socket)")
                await ws.close(1008)
                return
        session.params = params
        async for message in ws:
            if isinstance(message, bytes):
                self.violations.append(f"tts: a binary frame of {len(message)} bytes (voiceapi reads text only)")
                await ws.close(1011)
                return
            if not message:
                self.violations.append("tts: an empty text (voiceapi stops reading and never answers)")
                continue
            session.texts.append(message)
            await self._notify()
            if session.mode == "stall":
                continue
            await self._speak(ws, session, message)
            if session.mode in ("drop", "garbage"):
                return

    async def _speak(self, ws: ServerConnection, session: TtsSession, text: str) -> None:
        p = session.params
        rate, speed = p["samplerate"], p["speed"]
        pieces = [t.strip() for t in (SPLITTER.split(text) if p["split"] else [text])]
        pieces = [t for t in pieces if t]
        hz = 440 + 20 * p["sid"]
        parts: list[np.ndarray] = []
        for i, piece in enumerate(pieces):
            n = round(len(piece) * SECONDS_PER_CHAR / speed * rate)
            parts.append(np.round(8000 * np.sin(2 * np.pi * hz * np.arange(n) / rate)).astype("<i2"))
            if p["split"] and i < len(pieces) - 1:
                parts.append(np.zeros(round(TTS["split_pause_s"] * rate), "<i2"))
        pcm = np.concatenate(parts) if parts and session.mode != "empty" else np.zeros(0, "<i2")
        data = pcm.tobytes()
        size = p["chunk_size"]
        for i in range(0, len(data), size):
            await ws.send(data[i:i + size])
            session.frames.append(len(data[i:i + size]))
            if session.mode == "drop":
                await ws.close(1011)
                return
            if session.mode == "garbage":
                page = "<html>502 Bad Gateway</html>"
                session.sent.append(page)
                await ws.send(page)
                await ws.wait_closed()
                return
        duration = len(pcm) / rate
        done = {"progress": 1.0, "elapsed": "12ms", "duration": f"{duration:.2f}s", "size": len(pcm)}
        session.sent.append(compact(done))
        await ws.send(compact(done))
