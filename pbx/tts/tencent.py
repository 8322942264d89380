"""Tencent Cloud real-time speech synthesis ("tencent"): the ``/stream_ws`` WebSocket protocol.

https://cloud.tencent.com/document/product/1073/94308 (one text per connection; the streaming-text
variant ``/stream_wsv2``, https://cloud.tencent.com/document/api/1073/108595, is for text that
arrives in pieces, which a ``tts`` command's text does not)

- Connect to ``wss://tts.cloud.tencent.com/stream_ws?<query>&Signature=<sig>`` (or ``endpoint``,
  which replaces scheme, host and port, and the path too if it names one). The query carries
  everything, the text included: ``Action=TextToStreamAudioWS, AppId, SecretId, Timestamp, Expired,
  SessionId, Text, VoiceType`` (``speaker``), ``Speed``, ``Volume=0``, ``SampleRate``, ``Codec=pcm``,
  ``ModelType=1``, ``EnableSubtitle`` (``subtitle``), ``EmotionCategory`` (``emotion``), then ``extra``.
  The signature is HMAC-SHA1 with ``secretKey`` over ``GET<host><path>?<the query sorted by key,
  values not encoded>``, base64; the URL carries every value URL-encoded.
- Nothing is sent after connecting. Binary frames are s16le PCM at ``SampleRate``; text frames are
  JSON with ``code`` (non-zero: an error, the service closes), ``result.subtitles`` (word timings:
  ``BeginTime`` ms, ``BeginIndex`` the character offset in the text) and ``final: 1`` at the end.
- ``speed`` (a factor, 1.0 normal) becomes the service's scale (-2 = 0.6x ... 0 = 1x ... 6 = 2.5x);
  ``volume`` stays at the service's default (the server applies it as a gain).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import json
import re
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from pbx.cloud.asr import MalformedFrame, Message
from pbx.cloud.tts import TtsFrame, TtsProtocol, synthesize_ws
from pbx.cloud.ws import ProviderContext
from pbx.errors import ProviderError
from pbx.tts.base import TtsChunk, TtsProvider, TtsRequest, WordMark

HOST = "tts.cloud.tencent.com"
PATH = "/stream_ws"
ACTION = "TextToStreamAudioWS"
DEFAULT_VOICE = "101001"
RATES = (8000, 16000)                # the rates every voice has (we resample to any other)
SIGNATURE_LIFE_S = 24 * 60 * 60
# The service's Speed scale at the speed factors its documentation names; between them, linear.
SPEED_POINTS = ((0.6, -2.0), (0.8, -1.0), (1.0, 0.0), (1.2, 1.0), (1.5, 2.0), (2.5, 6.0))
# Query keys that are ours: the signature's, the text's, the audio format's.
FIXED = frozenset({"Action", "AppId", "SecretId", "Timestamp", "Expired", "SessionId", "Text", "Signature",
                   "Codec", "SampleRate"})


def sign(secret_key: str, text: str) -> str:
    """The service's signature of ``text``: base64 of HMAC-SHA1 (not yet URL-encoded)."""
    return base64.b64encode(hmac.new(secret_key.encode(), text.encode(), hashlib.sha1).digest()).decode()


def speed_value(factor: float) -> float:
    """The service's ``Speed`` for a rate factor (clamped to its range, one decimal)."""
    xs = [x for x, _ in SPEED_POINTS]
    factor = min(max(factor, xs[0]), xs[-1])
    i = min(max(bisect.bisect_left(xs, factor), 1), len(xs) - 1)
    (x0, y0), (x1, y1) = SPEED_POINTS[i - 1], SPEED_POINTS[i]
    return round(y0 + (y1 - y0) * (factor - x0) / (x1 - x0), 1)


def query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"     # as the service's own SDK writes them
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def word_starts(text: str) -> list[int]:
    """Character offsets of the whitespace-separated words of ``text``."""
    return [m.start() for m in re.finditer(r"\S+", text)]


class TencentTtsProtocol(TtsProtocol):
    """The synthesis of one text over one ``/stream_ws`` connection."""

    provider = "tencent"

    def __init__(self, request: TtsRequest, now: Callable[[], float] = time.time) -> None:
        missing = [name for name, value in (("appId", request.app_id), ("secretId", request.secret_id),
                                            ("secretKey", request.secret_key)) if not value]
        if missing:
            raise ProviderError("tts", f"tencent needs {', '.join(missing)} (options appId, secretId, secretKey "
                                       "or env TENCENT_APPID, TENCENT_SECRET_ID, TENCENT_SECRET_KEY)")
        if request.codec not in (None, "", "pcm"):
            raise ProviderError("tts", f"tencent: codec {request.codec!r} is not supported (pcm only)")
        speaker = request.speaker or DEFAULT_VOICE
        if not speaker.isdigit():
            raise ProviderError("tts", f"tencent: speaker must be a VoiceType number (e.g. {DEFAULT_VOICE}), "
                                       f"got {speaker!r}")
        if not str(request.app_id).isdigit():
            raise ProviderError("tts", f"tencent: appId must be a number, got {request.app_id!r}")
        fixed = sorted(k for k in request.extra if k in FIXED)
        if fixed:
            raise ProviderError("tts", f"tencent: extra may not set {', '.join(fixed)} (the signature, the text "
                                       "and the audio format are the server's)")
        bad = sorted(k for k, v in request.extra.items() if not isinstance(v, (str, int, float, bool)))
        if bad:
            raise ProviderError("tts", f"tencent: extra {', '.join(bad)} must be a string, number or boolean")
        self.request = request
        self.rate = request.samplerate if request.samplerate in RATES else 16000
        self.voice = int(speaker)
        self._now = now
        self._starts = word_starts(request.text)
        self._last_word = -1

    def params(self) -> dict[str, Any]:
        """The query, without the signature."""
        r = self.request
        now = int(self._now())
        params: dict[str, Any] = {
            "Action": ACTION, "AppId": int(str(r.app_id)), "SecretId": r.secret_id, "Timestamp": now,
            "Expired": now + SIGNATURE_LIFE_S, "SessionId": str(uuid.uuid4()), "Text": r.text,
            "VoiceType": self.voice, "Speed": speed_value(r.speed), "Volume": 0, "SampleRate": self.rate,
            "Codec": "pcm", "ModelType": 1, "EnableSubtitle": bool(r.subtitle)}
        if r.emotion:
            params["EmotionCategory"] = r.emotion
        params.update(r.extra)
        return params

    def url(self) -> str:
        return signed_url(self.request.endpoint, self.params(), str(self.request.secret_key))

    def opening(self) -> list[Message]:
        return []                                  # the text went in the URL

    def received(self, message: Message) -> TtsFrame:
        if isinstance(message, bytes):
            return TtsFrame(pcm=message)
        try:
            frame = json.loads(message)
        except ValueError as exc:
            raise MalformedFrame(f"{message[:60]!r}: {exc}") from None
        if not isinstance(frame, dict) or not isinstance(frame.get("code"), int):
            raise MalformedFrame(f"{message[:60]!r}: not a JSON object with an integer code")
        code = frame["code"]
        if code != 0:
            raise ProviderError("tts", f"tencent: {frame.get('message') or 'no message'} (code {code})", code)
        words = self._words(frame.get("result"), message)
        return TtsFrame(words=words, done=frame.get("final") == 1)

    def _words(self, result: Any, message: str) -> tuple[WordMark, ...]:
        if result is None:
            return ()
        try:
            subtitles = result.get("subtitles") or []
            marks = []
            for subtitle in subtitles:
                begin_ms, index = int(subtitle["BeginTime"]), int(subtitle["BeginIndex"])
                word = bisect.bisect_right(self._starts, index) - 1
                if word > self._last_word:       # one mark per word (Chinese subtitles come per character)
                    self._last_word = word
                    marks.append(WordMark(begin_ms * self.rate // 1000, word))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise MalformedFrame(f"{message[:60]!r}: subtitles without {exc}") from None
        return tuple(marks)


def signed_url(endpoint: str | None, params: dict[str, Any], secret_key: str) -> str:
    """The connection URL: ``params`` sorted, signed as ``GET<host><path>?<query>``, the signature last."""
    scheme, netloc, path = "wss", HOST, PATH
    if endpoint:
        parts = urllib.parse.urlsplit(endpoint)
        scheme, netloc = parts.scheme, parts.netloc
        if parts.path not in ("", "/"):
            path = parts.path
    keys = sorted(params)
    raw = "&".join(f"{k}={query_value(params[k])}" for k in keys)
    signature = sign(secret_key, f"GET{netloc}{path}?{raw}")
    encoded = "&".join(f"{k}={urllib.parse.quote(query_value(params[k]), safe='')}" for k in keys)
    return f"{scheme}://{netloc}{path}?{encoded}&Signature={urllib.parse.quote(signature, safe='')}"


class TencentTts(TtsProvider):
    name = "tencent"

    def __init__(self, context: ProviderContext) -> None:
        self.context = context

    async def synthesize(self, request: TtsRequest) -> AsyncIterator[TtsChunk]:
        protocol = TencentTtsProtocol(request)
        async for chunk in synthesize_ws(protocol, request, self.context):
            yield chunk
