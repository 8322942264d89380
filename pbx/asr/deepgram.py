"""Deepgram live streaming recognition ("deepgram"): the ``/v1/listen`` WebSocket protocol.

https://developers.deepgram.com/reference/speech-to-text/listen-streaming

- Connect to ``wss://api.deepgram.com/v1/listen`` (or ``endpoint``) with the audio format and the
  options in the query (``encoding=linear16&sample_rate=..&channels=1&model=..&language=..
  &interim_results=true&punctuate=true``, then ``extra``), header ``Authorization: Token <secretKey>``.
- Audio goes as binary frames of s16le PCM at ``samplerate`` (the call's 16 kHz, resampled when the
  option asks for 8, 24 or 48 kHz); ``bufferSize`` (bytes) fixes the size of those frames.
- ``Results`` frames carry a segment: ``is_final`` segments are settled, ``speech_final`` (or
  ``from_finalize``, the answer to our ``{"type":"Finalize"}`` at the end of an utterance) ends
  the utterance. Settled segments are joined into the utterance's text: partials are that text plus
  the current interim segment, and the final is the whole of it. ``UtteranceEnd`` also ends it.
- ``{"type":"CloseStream"}`` ends the stream. Deepgram reports errors by closing the connection with
  a code and a reason such as ``DATA-0000`` (the cloud stream turns that into an ``asr`` error and
  reconnects); an ``Error`` frame is raised as a ProviderError.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.asr.base import AsrOptions, AsrProvider, AsrResult, AsrStream
from pbx.cloud.asr import RATE, AsrProtocol, MalformedFrame, Message, WebSocketAsrStream
from pbx.cloud.ws import ProviderContext
from pbx.core.resample import Resampler
from pbx.errors import ProviderError

log = logging.getLogger(__name__)

URL = "wss://api.deepgram.com/v1/listen"
DEFAULT_MODEL = "nova-2"                         # the widest language coverage of Deepgram's streaming models
RATES = (8000, 16000, 24000, 48000)              # the rates we can send (our resampler's pairs with 16 kHz)
AUDIO_FORMAT = ("encoding", "sample_rate", "channels")   # query keys ``extra`` may not change
FINALIZE = json.dumps({"type": "Finalize"})
CLOSE_STREAM = json.dumps({"type": "CloseStream"})
INFORMATIONAL = frozenset({"Metadata", "SpeechStarted"})


def query_value(value: Any) -> str:
    """A query parameter's text as Deepgram reads it (booleans lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def build_url(base: str, params: dict[str, Any]) -> str:
    """``base`` with ``params`` added to its query (a list value repeats the key, None leaves it out)."""
    parts = urllib.parse.urlsplit(base)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    for key, value in params.items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        pairs.extend((key, query_value(v)) for v in values)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(pairs)))


def check_extra(extra: dict[str, Any], sender: str) -> None:
    """``extra`` passes query parameters through, except those that fix the audio format (ours)."""
    fixed = sorted(k for k in extra if k in AUDIO_FORMAT)
    if fixed:
        raise ProviderError(sender, f"deepgram: extra may not set {', '.join(fixed)} (the audio format is the "
                                    "server's; use samplerate)")
    bad = sorted(k for k, v in extra.items() if isinstance(v, dict))
    if bad:
        raise ProviderError(sender, f"deepgram: extra {', '.join(bad)} must be a string, number, boolean or list")


class DeepgramAsrProtocol(AsrProtocol):
    """One ``/v1/listen`` connection."""

    provider = "deepgram"

    def __init__(self, options: AsrOptions) -> None:
        if not options.secret_key:
            raise ProviderError("asr", "deepgram needs an API key (option secretKey or env DEEPGRAM_API_KEY)")
        if options.samplerate not in RATES:
            raise ProviderError("asr", f"deepgram: samplerate {options.samplerate} is not supported "
                                       f"({', '.join(map(str, RATES))})")
        if options.buffer_size is not None and (options.buffer_size <= 0 or options.buffer_size % 2):
            raise ProviderError("asr", f"deepgram: bufferSize must be a positive even number of bytes, "
                                       f"got {options.buffer_size}")
        check_extra(options.extra, "asr")
        self.options = options
        self.rate = options.samplerate
        self._resampler = None if self.rate == RATE else Resampler(RATE, self.rate)
        self._step = self._resampler.ratio_down if self._resampler is not None else 1
        self._carry = np.zeros(0, np.int16)       # input samples short of the resampler's step
        self._pending = b""                        # audio short of a bufferSize packet
        self._settled: list[str] = []              # the utterance's is_final segments
        self._start_s: float | None = None
        self._end_s: float | None = None

    def url(self) -> str:
        o = self.options
        params: dict[str, Any] = {"encoding": "linear16", "sample_rate": self.rate, "channels": 1,
                                  "model": o.model_type or DEFAULT_MODEL, "language": o.language,
                                  "interim_results": True, "punctuate": True}
        params.update(o.extra)                     # extra overrides our defaults (endpointing, smart_format, ...)
        return build_url(o.endpoint or URL, params)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.options.secret_key}"}

    # -- what we send -------------------------------------------------------------------------------
    def audio(self, pcm: npt.NDArray[np.int16]) -> list[Message]:
        if self._resampler is not None:
            pcm = np.concatenate([self._carry, pcm]) if len(self._carry) else pcm
            cut = len(pcm) // self._step * self._step
            self._carry = pcm[cut:].copy()
            pcm = self._resampler.process(np.ascontiguousarray(pcm[:cut]))
        data = pcm.astype("<i2", copy=False).tobytes()
        size = self.options.buffer_size
        if size is None:
            return [data] if data else []          # an empty binary frame would end Deepgram's stream
        data = self._pending + data
        cut = len(data) // size * size
        self._pending = data[cut:]
        return [data[i:i + size] for i in range(0, cut, size)]

    def flush(self) -> list[Message]:
        tail, self._pending = self._pending, b""
        return [tail, FINALIZE] if tail else [FINALIZE]

    def closing(self) -> list[Message]:
        return [CLOSE_STREAM]

    # -- what we read -------------------------------------------------------------------------------
    def received(self, message: Message) -> list[AsrResult]:
        if isinstance(message, bytes):
            raise MalformedFrame(f"a binary frame of {len(message)} bytes (Deepgram sends JSON text)")
        try:
            frame = json.loads(message)
        except ValueError as exc:
            raise MalformedFrame(f"{message[:60]!r}: {exc}") from None
        if not isinstance(frame, dict):
            raise MalformedFrame(f"{message[:60]!r}: not a JSON object")
        kind = frame.get("type")
        if kind == "Results":
            return self._results(frame, message)
        if kind == "UtteranceEnd":
            return self._end_utterance(from_flush=False)
        if kind == "Error":
            description = frame.get("description") or frame.get("message") or "unknown error"
            variant = frame.get("variant") or frame.get("err_code")
            raise ProviderError("asr", f"deepgram: {description}{f' ({variant})' if variant else ''}")
        if kind not in INFORMATIONAL:
            log.debug("deepgram: ignoring a %r frame", kind)
        return []

    def _results(self, frame: dict[str, Any], message: str) -> list[AsrResult]:
        try:
            alternative = frame["channel"]["alternatives"][0]
            transcript = alternative["transcript"]
            start = float(frame["start"])
            end = start + float(frame["duration"])
            words = alternative.get("words") or []
            if words:
                start, end = float(words[0]["start"]), float(words[-1]["end"])
            if not isinstance(transcript, str):
                raise TypeError(f"transcript is {type(transcript).__name__}")
        except KeyError as exc:
            raise MalformedFrame(f"{message[:60]!r}: a Results frame without {exc}") from None
        except IndexError:
            raise MalformedFrame(f"{message[:60]!r}: a Results frame without alternatives") from None
        except (TypeError, ValueError) as exc:
            raise MalformedFrame(f"{message[:60]!r}: a Results frame with a bad field: {exc}") from None
        transcript = transcript.strip()
        if not frame.get("is_final"):
            if not transcript:
                return []
            return [AsrResult(" ".join([*self._settled, transcript]), False,
                              _ms(self._start_s if self._start_s is not None else start), _ms(end))]
        if transcript:
            self._settled.append(transcript)
            if self._start_s is None:
                self._start_s = start
            self._end_s = end
        if frame.get("speech_final") or frame.get("from_finalize"):
            return self._end_utterance(from_flush=bool(frame.get("from_finalize")))
        if not transcript:
            return []
        return [AsrResult(" ".join(self._settled), False, _ms(self._start_s), _ms(self._end_s))]

    def _end_utterance(self, from_flush: bool) -> list[AsrResult]:
        text, start, end = " ".join(self._settled), self._start_s, self._end_s
        self._settled, self._start_s, self._end_s = [], None, None
        if text:
            return [AsrResult(text, True, _ms(start), _ms(end))]
        # The answer to our Finalize with nothing said: an empty final tells end_utterance not to wait.
        return [AsrResult("", True)] if from_flush else []


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


class DeepgramAsr(AsrProvider):
    """Deepgram streaming recognition; one instance per API key (and endpoint)."""

    name = "deepgram"

    def __init__(self, context: ProviderContext) -> None:
        self.context = context

    async def open_stream(self, options: AsrOptions) -> AsrStream:
        # the stream makes its first protocol at once: bad options fail here, before connecting
        return await WebSocketAsrStream.started(lambda: DeepgramAsrProtocol(options), self.context)
