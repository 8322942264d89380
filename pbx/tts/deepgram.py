"""Deepgram streaming synthesis ("deepgram", Aura voices): the ``/v1/speak`` WebSocket protocol.

https://developers.deepgram.com/reference/text-to-speech/speak-streaming

- Connect to ``wss://api.deepgram.com/v1/speak`` (or ``endpoint``) with
  ``model=<speaker>&encoding=linear16&sample_rate=<rate>`` (and ``speed`` when it is not 1, then
  ``extra``), header ``Authorization: Token <secretKey>``.
- Send the text as ``{"type":"Speak","text":...}`` (pieces of at most 2000 characters, cut at
  whitespace) and then ``{"type":"Flush"}``. The audio comes as binary frames of raw samples at the
  asked rate; ``{"type":"Flushed"}`` says it is complete. ``Metadata`` and ``Cleared`` carry nothing
  for us; a ``Warning`` is logged. Closing the WebSocket (a close frame) ends the session.
- The rate asked for is the call's when Deepgram serves it (8, 16, 24, 32 or 48 kHz), else 24 kHz
  resampled here. ``codec`` "pcmu"/"pcma" asks for 8 kHz mu-law/A-law, decoded here.
- Deepgram reports errors by closing the connection with a code and a reason (``DATA-0000`` ...):
  the item ends with an ``error`` event and ``trackEnd``. Aura gives no word timings: ``subtitle``
  gives no word marks; there is no ``emotion`` or ``volume`` parameter (the server applies volume).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.asr.deepgram import build_url, check_extra
from pbx.cloud.asr import MalformedFrame, Message
from pbx.cloud.tts import TtsFrame, TtsProtocol, synthesize_ws
from pbx.cloud.ws import ProviderContext
from pbx.core.g711 import alaw_decode, ulaw_decode
from pbx.errors import ProviderError
from pbx.tts.base import TtsChunk, TtsProvider, TtsRequest

log = logging.getLogger(__name__)

URL = "wss://api.deepgram.com/v1/speak"
DEFAULT_MODEL = "aura-asteria-en"            # Deepgram's own default voice
LINEAR16_RATES = (8000, 16000, 24000, 32000, 48000)
FALLBACK_RATE = 24000                        # Aura's native rate
MAX_SPEAK_CHARS = 2000                       # the most text one Speak message may carry
FLUSH = json.dumps({"type": "Flush"})
# codec option -> (Deepgram encoding at 8 kHz, decoder of its bytes to int16)
G711: dict[str, tuple[str, Callable[[bytes], npt.NDArray[np.int16]]]] = {
    "pcmu": ("mulaw", ulaw_decode), "pcma": ("alaw", alaw_decode)}
INFORMATIONAL = frozenset({"Metadata", "Cleared"})


def speak_pieces(text: str, limit: int = MAX_SPEAK_CHARS) -> list[str]:
    """``text`` cut into pieces of at most ``limit`` characters, at whitespace where there is some."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind(" ", 0, limit + 1)
        cut = cut if cut > 0 else limit
        pieces.append(text[:cut])
        text = text[cut:].lstrip(" ")
    if text:
        pieces.append(text)
    return pieces


class DeepgramTtsProtocol(TtsProtocol):
    """The synthesis of one text over one ``/v1/speak`` connection."""

    provider = "deepgram"

    def __init__(self, request: TtsRequest) -> None:
        if not request.secret_key:
            raise ProviderError("tts", "deepgram needs an API key (option secretKey or env DEEPGRAM_API_KEY)")
        if not (math.isfinite(request.speed) and request.speed > 0):
            raise ProviderError("tts", f"deepgram: speed must be a positive number, got {request.speed}")
        codec = (request.codec or "pcm").lower()
        self._decode: Callable[[bytes], npt.NDArray[np.int16]] | None = None
        if codec in G711:
            self.encoding, self._decode = G711[codec]
            self.rate = 8000
        elif codec in ("pcm", "linear16"):
            self.encoding = "linear16"
            self.rate = request.samplerate if request.samplerate in LINEAR16_RATES else FALLBACK_RATE
        else:
            raise ProviderError("tts", f"deepgram: codec {request.codec!r} is not supported (pcm, pcmu or pcma)")
        check_extra(request.extra, "tts")
        self.request = request

    def url(self) -> str:
        r = self.request
        params: dict[str, Any] = {"model": r.speaker or DEFAULT_MODEL, "encoding": self.encoding,
                                  "sample_rate": self.rate, "speed": None if r.speed == 1.0 else r.speed}
        params.update(r.extra)
        return build_url(r.endpoint or URL, params)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.request.secret_key}"}

    def opening(self) -> list[Message]:
        speak: list[Message] = [json.dumps({"type": "Speak", "text": piece})
                                for piece in speak_pieces(self.request.text)]
        return [*speak, FLUSH]

    def received(self, message: Message) -> TtsFrame:
        if isinstance(message, bytes):
            if self._decode is not None:
                return TtsFrame(pcm=self._decode(message).astype("<i2", copy=False).tobytes())
            return TtsFrame(pcm=message)
        try:
            frame = json.loads(message)
        except ValueError as exc:
            raise MalformedFrame(f"{message[:60]!r}: {exc}") from None
        if not isinstance(frame, dict):
            raise MalformedFrame(f"{message[:60]!r}: not a JSON object")
        kind = frame.get("type")
        if kind == "Flushed":
            return TtsFrame(done=True)
        if kind == "Warning":
            log.warning("deepgram tts warning %s: %s", frame.get("code"), frame.get("description"))
        elif kind == "Error":
            description = frame.get("description") or frame.get("err_msg") or frame.get("message") or "unknown error"
            code = frame.get("err_code") or frame.get("code") or frame.get("variant")
            raise ProviderError("tts", f"deepgram: {description}{f' ({code})' if code else ''}")
        elif kind not in INFORMATIONAL:
            log.debug("deepgram tts: ignoring a %r frame", kind)
        return TtsFrame()


class DeepgramTts(TtsProvider):
    """Deepgram Aura streaming synthesis; one instance per API key (and endpoint)."""

    name = "deepgram"

    def __init__(self, context: ProviderContext) -> None:
        self.context = context

    async def synthesize(self, request: TtsRequest) -> AsyncIterator[TtsChunk]:
        protocol = DeepgramTtsProtocol(request)       # bad options and no key fail before connecting
        async for chunk in synthesize_ws(protocol, request, self.context):
            yield chunk
