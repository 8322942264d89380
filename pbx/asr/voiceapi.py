"""voiceapi streaming recognition ("voiceapi"): the ``/asr`` WebSocket of a self-hosted voiceapi server.

voiceapi (https://github.com/ruzhila/voiceapi) is a small FastAPI server around sherpa-onnx; the
protocol is its README's and its ``app.py``'s, as upstream RustPBX speaks it
(src/transcription/voiceapi.rs). docs/providers/voiceapi.md has every message.

- Connect to ``<endpoint>/asr?samplerate=<samplerate>`` (``extra`` adds query parameters); no
  credentials. A ``secretKey``, if given, goes as ``Authorization: Bearer <secretKey>`` for a proxy in
  front of the server (voiceapi itself ignores it; upstream sends none).
- Audio goes as binary frames of s16le mono PCM at ``samplerate`` (the call's 16 kHz, resampled here
  for 8, 24 or 48 kHz); ``bufferSize`` (bytes) fixes their size. Never an empty frame: voiceapi stops
  reading at one. Never a text frame: voiceapi reads bytes only.
- Results come as JSON text ``{"text": str, "finished": bool, "idx": int}``: ``finished: false`` is
  the current segment's whole text so far (a partial), ``true`` ends segment ``idx``. No times.
- voiceapi ends segments itself (its endpointer wants trailing silence) and has no "finish now"
  message, so the end of an utterance sends :data:`FLUSH_SILENCE_MS` of silence: the server then
  ends the segment the call has already ended. A stall is a segment with partials that gets no final
  after that silence: voiceapi is silent after an utterance it heard nothing in or ended itself.
  voiceapi has no error frames: it closes the connection (the cloud stream reports that and reconnects).
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.asr.base import AsrOptions, AsrProvider, AsrResult, AsrStream
from pbx.cloud.asr import RATE, AsrProtocol, MalformedFrame, Message, WebSocketAsrStream
from pbx.cloud.ws import ProviderContext
from pbx.core.resample import Resampler
from pbx.errors import ProviderError

RATES = (8000, 16000, 24000, 48000)        # the rates we can send (our resampler's pairs with 16 kHz)
# voiceapi's streaming zipformer ends a segment after 1.2 s of trailing silence
# (rule2_min_trailing_silence in voiceapi/asr.py); its VAD-cut offline models need 0.25 s.
FLUSH_SILENCE_MS = 1200
SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


def needs_endpoint(sender: str) -> ProviderError:
    # the registry's wording (pbx.providers refuses a call without one before any stream exists)
    return ProviderError(sender, "voiceapi needs endpoint (option endpoint or env VOICEAPI_ENDPOINT)")


def query_value(value: Any) -> str:
    """A query parameter's text as FastAPI reads it (booleans lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def service_url(endpoint: str, service: str, params: dict[str, Any], extra: dict[str, Any], sender: str) -> str:
    """``<endpoint>/<service>`` with ``params`` then ``extra`` in the query (an ``http(s)://`` endpoint
    becomes ``ws(s)://``, as upstream does). ``extra`` may not set the audio format (``samplerate``)."""
    parts = urllib.parse.urlsplit(endpoint.strip())
    scheme = SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ProviderError(sender, f"voiceapi: bad endpoint {endpoint!r} (expected ws://host:port, wss://, "
                                    "http:// or https://)")
    fixed = sorted(k for k in extra if k == "samplerate")
    if fixed:
        raise ProviderError(sender, "voiceapi: extra may not set samplerate (the audio format is the server's; "
                                    "use samplerate)")
    bad = sorted(k for k, v in extra.items() if not isinstance(v, (str, int, float, bool)))
    if bad:
        raise ProviderError(sender, f"voiceapi: extra {', '.join(bad)} must be a string, number or boolean")
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    merged = {**params, **extra}
    pairs.extend((k, query_value(v)) for k, v in merged.items() if v is not None)
    path = parts.path.rstrip("/") + "/" + service
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, urllib.parse.urlencode(pairs), ""))


def bearer(secret_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret_key}"} if secret_key else {}


class VoiceApiAsrProtocol(AsrProtocol):
    """One ``/asr`` connection."""

    provider = "voiceapi"

    def __init__(self, options: AsrOptions) -> None:
        if not options.endpoint:
            raise needs_endpoint("asr")
        if options.samplerate not in RATES:
            raise ProviderError("asr", f"voiceapi: samplerate {options.samplerate} is not supported "
                                       f"({', '.join(map(str, RATES))})")
        if options.buffer_size is not None and (options.buffer_size <= 0 or options.buffer_size % 2):
            raise ProviderError("asr", f"voiceapi: bufferSize must be a positive even number of bytes, "
                                       f"got {options.buffer_size}")
        self.options = options
        self.rate = options.samplerate
        self._url = service_url(options.endpoint, "asr", {"samplerate": self.rate}, options.extra, "asr")
        self._resampler = None if self.rate == RATE else Resampler(RATE, self.rate)
        self._step = self._resampler.ratio_down if self._resampler is not None else 1
        self._carry = np.zeros(0, np.int16)        # input samples short of the resampler's step
        self._pending = b""                         # audio short of a bufferSize packet
        self._open = False                          # a segment has partials and no final yet

    def url(self) -> str:
        return self._url

    def headers(self) -> dict[str, str]:
        return bearer(self.options.secret_key)

    @property
    def owes_result(self) -> bool:
        # voiceapi says nothing for silence, nor for an utterance it heard nothing in or already ended:
        # only an open segment must end in a final after the flush's silence
        return self._open

    # -- what we send -------------------------------------------------------------------------------
    def audio(self, pcm: npt.NDArray[np.int16]) -> list[Message]:
        if self._resampler is not None:
            pcm = np.concatenate([self._carry, pcm]) if len(self._carry) else pcm
            cut = len(pcm) // self._step * self._step
            self._carry = pcm[cut:].copy()
            pcm = self._resampler.process(np.ascontiguousarray(pcm[:cut]))
        return self._packets(pcm.astype("<i2", copy=False).tobytes())

    def flush(self) -> list[Message]:
        silence = bytes(2 * (self.rate * FLUSH_SILENCE_MS // 1000))
        packets = self._packets(silence)
        tail, self._pending = self._pending, b""
        return [*packets, tail] if tail else packets

    def _packets(self, data: bytes) -> list[Message]:
        size = self.options.buffer_size
        if size is None:
            return [data] if data else []          # an empty frame would end voiceapi's reading
        data = self._pending + data
        cut = len(data) // size * size
        self._pending = data[cut:]
        return [data[i:i + size] for i in range(0, cut, size)]

    # -- what we read -------------------------------------------------------------------------------
    def received(self, message: Message) -> list[AsrResult]:
        if isinstance(message, bytes):
            raise MalformedFrame(f"a binary frame of {len(message)} bytes (voiceapi sends JSON text)")
        try:
            frame = json.loads(message)
        except ValueError as exc:
            raise MalformedFrame(f"{message[:60]!r}: {exc}") from None
        if not isinstance(frame, dict):
            raise MalformedFrame(f"{message[:60]!r}: not a JSON object")
        missing = [k for k in ("text", "finished", "idx") if k not in frame]
        if missing:
            raise MalformedFrame(f"{message[:60]!r}: a result without {', '.join(missing)}")
        text, finished, idx = frame["text"], frame["finished"], frame["idx"]
        if not isinstance(text, str) or not isinstance(finished, bool) or type(idx) is not int:
            raise MalformedFrame(f"{message[:60]!r}: a result with a bad field (text must be a string, "
                                 "finished a boolean, idx an integer)")
        text = text.strip()
        if not text and not finished:
            return []
        self._open = not finished
        return [AsrResult(text, finished)]


class VoiceApiAsr(AsrProvider):
    """Recognition by a voiceapi server; one instance per endpoint (and key)."""

    name = "voiceapi"

    def __init__(self, context: ProviderContext) -> None:
        self.context = context

    async def open_stream(self, options: AsrOptions) -> AsrStream:
        # the stream makes its first protocol at once: bad options fail here, before connecting
        return await WebSocketAsrStream.started(lambda: VoiceApiAsrProtocol(options), self.context)
