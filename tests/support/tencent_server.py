"""A local Tencent Cloud speech service: the real-time ASR (``/asr/v2/<appid>``) and real-time TTS
(``/stream_ws``) WebSocket protocols as Tencent documents them (tests/fixtures/providers/tencent/*.json
cite the pages), on 127.0.0.1 with a free port.

It checks what a client sends and records it for the tests to assert (anything wrong is a
:attr:`TencentServer.violations` entry; tests assert there are none):

- the signed URL: the parameters each protocol requires, ``timestamp < expired``, a nonce of at most
  10 digits, and the signature, computed here on its own from the request's Host, path and query.
  A signature that does not match :attr:`TencentServer.secret_key` is answered as Tencent does: the
  WebSocket opens, an error frame follows (ASR 4002, TTS 10003) and the connection closes.
- ASR: ``voice_format=1`` (PCM), binary packets of exactly :attr:`AsrSession.packet` bytes (the last one
  before a pause may be shorter), whole 16-bit samples, no audio before the handshake's answer, text
  messages only ``{"type": "end"}`` and nothing after it. The audio is kept (:attr:`AsrSession.pcm`).
- TTS: ``Action=TextToStreamAudioWS``, ``Codec=pcm``, a ``SampleRate`` of 8000/16000/24000, and no
  message from the client.

Behaviour per connection comes from a queue of modes (the next connection takes the next one;
"normal" when the queue is empty):

- ASR "normal": the handshake answer, then the :class:`Step` script by ms of audio received
  (slice_type 0/1 partials, 2 finals); ``{"type": "end"}`` is answered with ``final: 1`` and a close.
  "drop": the TCP connection is cut once ``fault_after_ms`` of audio arrived (no close frame);
  "stall": the handshake answer, then silence; "garbage": a non-JSON frame and a binary frame at the
  first audio, then normal; "error": the documented 4008 error frame at ``fault_after_ms``, then a close.
- TTS "normal": a 440 Hz tone (:data:`MS_PER_WORD` per word of ``Text``) in 100 ms binary frames, with a
  subtitles frame per word (``BeginIndex`` = the word's character offset) if ``EnableSubtitle=True``, then
  ``final: 1``. "drop": the TCP connection is cut after the first 100 ms of audio; "stall": the first
  100 ms of audio, then nothing; "garbage": a non-JSON text frame after the first audio.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "providers" / "tencent"
ASR = json.loads((FIXTURES / "asr.json").read_text())
TTS = json.loads((FIXTURES / "tts.json").read_text())
APP_ID = "1259228442"                                # the documentation's example credentials
SECRET_ID = "AKIDoQq1zhZMN8dv0psmvud6OUKuGPO7pu0r"
SECRET_KEY = "kFpwoX5RYQ2SkqpeHgqmSzHK7h3A2fni"
ASR_REQUIRED = ("secretid", "timestamp", "expired", "nonce", "engine_model_type", "voice_id", "signature")
TTS_REQUIRED = ("Action", "AppId", "SecretId", "Timestamp", "Expired", "SessionId", "Text", "Signature")
MS_PER_WORD = 300


@dataclass(frozen=True)
class Step:
    """Send a result once ``at_ms`` of audio have arrived: slice_type 0/1 (partials) or 2 (final)."""

    at_ms: int
    slice_type: int
    text: str
    start_ms: int = 0
    end_ms: int = 0


DEFAULT_SCRIPT = (Step(300, 0, "call", 100, 300), Step(600, 1, "call stella", 100, 600),
                  Step(900, 2, "call stella please", 100, 900), Step(1300, 0, "and ask", 1000, 1300))


@dataclass
class Handshake:
    host: str
    path: str
    params: dict[str, str]
    signature_ok: bool


@dataclass
class AsrSession:
    handshake: Handshake
    mode: str
    packet: int = 0                               # the packet size a 40 ms rhythm gives at the model's rate
    rate: int = 16000
    packets: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    pcm: bytearray = field(default_factory=bytearray)
    sent: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False

    @property
    def audio_ms(self) -> int:
        return len(self.pcm) // 2 * 1000 // self.rate


@dataclass
class TtsSession:
    handshake: Handshake
    mode: str
    text: str = ""
    rate: int = 16000
    sent_samples: int = 0
    subtitles: list[dict[str, Any]] = field(default_factory=list)


class TencentServer:
    def __init__(self, secret_key: str = SECRET_KEY, script: tuple[Step, ...] = DEFAULT_SCRIPT,
                 fault_after_ms: int = 400, packet: int | None = None) -> None:
        self.secret_key = secret_key
        self.script = script
        self.fault_after_ms = fault_after_ms
        self.packet = packet                       # the bufferSize the client was given, if any
        self.asr_modes: list[str] = []
        self.tts_modes: list[str] = []
        self.asr: list[AsrSession] = []
        self.tts: list[TtsSession] = []
        self.violations: list[str] = []
        self.changed = asyncio.Condition()         # notified whenever a session records something
        self._server: Server | None = None

    # -- lifetime -------------------------------------------------------------------------------------
    async def __aenter__(self) -> TencentServer:
        self._server = await serve(self._handle, "127.0.0.1", 0, max_size=1 << 20)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def wait_for(self, condition: Any, timeout: float = 5.0) -> None:
        async def until() -> None:
            async with self.changed:
                await self.changed.wait_for(condition)
        await asyncio.wait_for(until(), timeout)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    def _violation(self, text: str) -> None:
        self.violations.append(text)

    # -- the handshake ----------------------------------------------------------------------------------
    def _handshake(self, ws: ServerConnection, tts: bool) -> Handshake:
        request = ws.request
        assert request is not None
        host = request.headers.get("Host", "")
        path, _, raw_query = request.path.partition("?")
        pairs = urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
        params = dict(pairs)
        if len(params) != len(pairs):
            self._violation(f"a parameter repeats: {raw_query}")
        name = "Signature" if tts else "signature"
        unsigned = {k: v for k, v in params.items() if k != name}
        canonical = "&".join(f"{k}={unsigned[k]}" for k in sorted(unsigned))
        text = f"GET{host}{path}?{canonical}" if tts else f"{host}{path}?{canonical}"
        expected = base64.b64encode(hmac.new(self.secret_key.encode(), text.encode(), hashlib.sha1).digest()).decode()
        required = TTS_REQUIRED if tts else ASR_REQUIRED
        missing = [k for k in required if k not in params]
        if missing:
            self._violation(f"{path}: missing {missing}")
        stamp, expired = ("Timestamp", "Expired") if tts else ("timestamp", "expired")
        if not (params.get(stamp, "").isdigit() and params.get(expired, "").isdigit()
                and int(params[stamp]) < int(params[expired])):
            self._violation(f"{path}: bad {stamp}/{expired}: {params.get(stamp)!r} {params.get(expired)!r}")
        if not tts and not re.fullmatch(r"[1-9][0-9]{0,9}", params.get("nonce", "")):
            self._violation(f"nonce is not a positive integer of at most 10 digits: {params.get('nonce')!r}")
        return Handshake(host, path, params, hmac.compare_digest(expected, params.get(name, "")))

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        path = ws.request.path.partition("?")[0]
        try:
            if path.startswith("/asr/v2/"):
                await self._asr(ws)
            elif path == "/stream_ws":
                await self._tts(ws)
            else:
                self._violation(f"unknown path {path}")
        except ConnectionClosed:
            pass
        finally:
            await self._notify()

    # -- ASR -------------------------------------------------------------------------------------------
    async def _asr(self, ws: ServerConnection) -> None:
        handshake = self._handshake(ws, tts=False)
        session = AsrSession(handshake, self.asr_modes.pop(0) if self.asr_modes else "normal")
        self.asr.append(session)
        params = handshake.params
        if handshake.path != f"/asr/v2/{APP_ID}":
            self._violation(f"asr path {handshake.path}")
        if params.get("voice_format") != "1":
            self._violation(f"voice_format {params.get('voice_format')!r} (1 is PCM)")
        model = params.get("engine_model_type", "")
        session.rate = 8000 if model.startswith("8k") else 16000
        session.packet = self.packet or session.rate * 40 // 1000 * 2
        if not handshake.signature_ok:
            await ws.send(ASR["frames"]["auth_failed"])
            await ws.close()
            return
        await ws.send(ASR["frames"]["handshake"])
        steps = list(self.script)
        async for message in ws:
            if isinstance(message, str):
                session.texts.append(message)
                if session.ended:
                    self._violation(f"a message after the end: {message!r}")
                elif json.loads(message) == {"type": "end"}:
                    session.ended = True
                    await ws.send(ASR["frames"]["end"])
                    await ws.close()
                else:
                    self._violation(f"unknown text message {message!r}")
                await self._notify()
                continue
            if session.ended:
                self._violation("audio after the end")
            if len(message) % 2:
                self._violation(f"a packet of {len(message)} bytes (not whole samples)")
            if len(message) != session.packet and session.packets and session.packets[-1] != session.packet:
                self._violation(f"two packets in a row not of {session.packet} bytes: "
                                f"{session.packets[-1]}, {len(message)}")
            session.packets.append(len(message))
            session.pcm.extend(message)
            await self._notify()
            if session.mode == "garbage" and len(session.packets) == 1:
                await ws.send("not json {")
                await ws.send(b"\x00\x01")
            if session.mode == "drop" and session.audio_ms >= self.fault_after_ms:
                ws.transport.abort()
                return
            if session.mode == "error" and session.audio_ms >= self.fault_after_ms:
                await ws.send(ASR["frames"]["error"])
                await ws.close()
                return
            if session.mode == "stall":
                continue
            while steps and session.audio_ms >= steps[0].at_ms:
                step = steps.pop(0)
                frame = {"code": 0, "message": "success", "voice_id": params.get("voice_id"),
                         "message_id": f"{params.get('voice_id')}_{len(session.sent)}",
                         "result": {"slice_type": step.slice_type, "index": 0, "start_time": step.start_ms,
                                    "end_time": step.end_ms, "voice_text_str": step.text, "word_size": 0,
                                    "word_list": []}}
                session.sent.append(frame)
                await ws.send(json.dumps(frame, ensure_ascii=False))

    # -- TTS -------------------------------------------------------------------------------------------
    async def _tts(self, ws: ServerConnection) -> None:
        handshake = self._handshake(ws, tts=True)
        session = TtsSession(handshake, self.tts_modes.pop(0) if self.tts_modes else "normal")
        self.tts.append(session)
        params = handshake.params
        for key, wanted in (("Action", "TextToStreamAudioWS"), ("Codec", "pcm"), ("AppId", APP_ID),
                            ("SecretId", SECRET_ID)):
            if params.get(key) != wanted:
                self._violation(f"{key} {params.get(key)!r}, expected {wanted!r}")
        if params.get("SampleRate") not in ("8000", "16000", "24000"):
            self._violation(f"SampleRate {params.get('SampleRate')!r}")
        if not handshake.signature_ok:
            await ws.send(TTS["frames"]["auth_failed"])
            await ws.close()
            return
        session.text = params.get("Text", "")
        session.rate = int(params.get("SampleRate", "16000"))
        reader = asyncio.create_task(self._tts_reader(ws))
        try:
            await self._tts_speak(ws, session, params.get("EnableSubtitle") == "True")
        finally:
            reader.cancel()

    async def _tts_reader(self, ws: ServerConnection) -> None:
        async for message in ws:
            self._violation(f"the client sent {message!r:.60} on /stream_ws")

    async def _tts_speak(self, ws: ServerConnection, session: TtsSession, subtitles: bool) -> None:
        words = [(m.start(), m.group()) for m in re.finditer(r"\S+", session.text)]
        per_word = session.rate * MS_PER_WORD // 1000
        total = per_word * len(words)
        t = np.arange(total) / session.rate
        pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
        chunk = session.rate // 10 * 2                   # 100 ms
        sent_words = 0
        for offset in range(0, len(pcm), chunk):
            # the subtitles of the words starting in this frame go just before it
            due = [i for i in range(sent_words, len(words)) if i * per_word < offset // 2 + chunk // 2]
            if subtitles and due:
                marks = [{"Text": words[i][1], "BeginTime": i * MS_PER_WORD, "EndTime": (i + 1) * MS_PER_WORD,
                          "BeginIndex": words[i][0], "EndIndex": words[i][0] + len(words[i][1]), "Phoneme": ""}
                         for i in due]
                session.subtitles.extend(marks)
                await ws.send(json.dumps({"code": 0, "message": "success", "session_id": "S", "request_id": "R",
                                          "message_id": f"M_{sent_words}", "final": 0,
                                          "result": {"subtitles": marks}}))
            sent_words += len(due)
            await ws.send(pcm[offset:offset + chunk])
            session.sent_samples += len(pcm[offset:offset + chunk]) // 2
            await self._notify()
            if session.mode == "drop":
                ws.transport.abort()
                return
            if session.mode == "stall":
                await ws.wait_closed()                   # silent until the client gives up
            if session.mode == "garbage":
                await ws.send("<html>gateway error</html>")
        await ws.send(TTS["frames"]["final"])
        await ws.close()
