"""voiceapi streaming synthesis ("voiceapi"): the ``/tts`` WebSocket of a self-hosted voiceapi server.

voiceapi (https://github.com/ruzhila/voiceapi) synthesises with sherpa-onnx; the protocol is its
README's and its ``app.py``'s, as upstream RustPBX speaks it (src/synthesis/voiceapi.rs).
docs/providers/voiceapi.md has every message.

- Connect to ``<endpoint>/tts?samplerate=<rate>&sid=<speaker>&speed=<speed>&chunk_size=2560&split=false``
  (``extra`` adds or overrides query parameters, e.g. ``split``), one connection per text. No
  credentials; a ``secretKey`` goes as ``Authorization: Bearer`` for a proxy in front of the server.
- Send the text as one text frame. The audio comes as binary frames of s16le mono PCM at the asked
  rate (voiceapi resamples its model's output itself), then one JSON text frame
  ``{"progress": 1.0, "elapsed": "..ms", "duration": "..s", "size": n}`` says it is complete.
- The speaker is voiceapi's integer speaker id (``sid``; env VOICEAPI_SPEAKER_ID). voiceapi gives no
  word timings (``subtitle`` gives no word marks) and has no ``emotion``, ``volume`` or codec choice
  (the server applies volume). It has no error frames: a failed synthesis is complete with no audio
  (an error here), a server that cannot serve closes the connection.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

from pbx.asr.voiceapi import bearer, needs_endpoint, service_url
from pbx.cloud.asr import MalformedFrame, Message
from pbx.cloud.tts import TtsFrame, TtsProtocol, synthesize_ws
from pbx.cloud.ws import ProviderContext
from pbx.errors import ProviderError
from pbx.tts.base import TtsChunk, TtsProvider, TtsRequest

CHUNK_BYTES = 2560                 # audio bytes per binary frame (upstream's choice; voiceapi's default is 1024)
DEFAULT_SPEAKER = 0                # voiceapi's default sid
MAX_RATE = 48000


class VoiceApiTtsProtocol(TtsProtocol):
    """The synthesis of one text over one ``/tts`` connection."""

    provider = "voiceapi"

    def __init__(self, request: TtsRequest) -> None:
        if not request.endpoint:
            raise needs_endpoint("tts")
        speaker = (request.speaker or "").strip()
        if speaker and not (speaker.isascii() and speaker.isdigit()):
            raise ProviderError("tts", f"voiceapi: speaker must be a speaker id (a whole number such as 0), "
                                       f"got {request.speaker!r}")
        if not (math.isfinite(request.speed) and request.speed > 0):
            raise ProviderError("tts", f"voiceapi: speed must be a positive number, got {request.speed}")
        if (request.codec or "pcm").lower() != "pcm":
            raise ProviderError("tts", f"voiceapi: codec {request.codec!r} is not supported (voiceapi sends pcm)")
        if not 0 < request.samplerate <= MAX_RATE:
            raise ProviderError("tts", f"voiceapi: samplerate {request.samplerate} is not supported")
        self.request = request
        self.rate = request.samplerate       # voiceapi resamples to the rate asked for
        params: dict[str, Any] = {"samplerate": self.rate, "sid": int(speaker) if speaker else DEFAULT_SPEAKER,
                                  "speed": request.speed, "chunk_size": CHUNK_BYTES, "split": False}
        self._url = service_url(request.endpoint, "tts", params, request.extra, "tts")
        self._audio_bytes = 0

    def url(self) -> str:
        return self._url

    def headers(self) -> dict[str, str]:
        return bearer(self.request.secret_key)

    def opening(self) -> list[Message]:
        return [self.request.text]

    def received(self, message: Message) -> TtsFrame:
        if isinstance(message, bytes):
            self._audio_bytes += len(message)
            return TtsFrame(pcm=message)
        try:
            frame = json.loads(message)
        except ValueError as exc:
            raise MalformedFrame(f"{message[:60]!r}: {exc}") from None
        if not isinstance(frame, dict):
            raise MalformedFrame(f"{message[:60]!r}: not a JSON object")
        progress = frame.get("progress")
        if isinstance(progress, bool) or not isinstance(progress, (int, float)):
            raise MalformedFrame(f"{message[:60]!r}: a result without a numeric progress")
        if progress < 1.0:
            return TtsFrame()
        if not self._audio_bytes:
            # voiceapi logs the failure and reports the synthesis complete with nothing in it
            raise ProviderError("tts", f"voiceapi produced no audio for the text (duration "
                                       f"{frame.get('duration')}; the server's log says why)")
        return TtsFrame(done=True)


class VoiceApiTts(TtsProvider):
    """Synthesis by a voiceapi server; one instance per endpoint (and key)."""

    name = "voiceapi"

    def __init__(self, context: ProviderContext) -> None:
        self.context = context

    async def synthesize(self, request: TtsRequest) -> AsyncIterator[TtsChunk]:
        protocol = VoiceApiTtsProtocol(request)       # bad options and no endpoint fail before connecting
        if not request.text.strip():
            return                                     # nothing to say (an empty frame would hang voiceapi)
        async for chunk in synthesize_ws(protocol, request, self.context):
            yield chunk
