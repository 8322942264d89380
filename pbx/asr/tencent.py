"""Tencent Cloud real-time speech recognition ("tencent"): the ``/asr/v2/<appid>`` WebSocket protocol.

https://cloud.tencent.com/document/api/1093/48982 (API 2.0, WebSocket)

- Connect to ``wss://asr.cloud.tencent.com/asr/v2/<appId>?<query>&signature=<sig>`` (or ``endpoint``,
  which replaces scheme, host and port, and the path too if it names one). The query holds
  ``secretid, timestamp, expired, nonce, engine_model_type, voice_id, voice_format=1`` (PCM),
  ``needvad=1`` and the ``extra`` parameters. The signature is HMAC-SHA1 with ``secretKey`` over
  ``<host><path>?<the query sorted by key, values as sent>``, base64, then URL-encoded.
- The service answers the handshake with ``{"code":0,...}`` (audio waits for it) or with a non-zero
  code (4002: the signature or credentials were refused) and closes.
- Audio goes as binary frames of s16le PCM at 16 kHz (``16k_*`` models) or 8 kHz (``8k_*``), in
  packets of ``bufferSize`` bytes (default 40 ms, the size the service recommends).
- Results are JSON: ``result.slice_type`` 0 (a sentence starts) and 1 (in progress) are partials, 2
  ends the sentence (a final); ``start_time``/``end_time`` are ms of the connection's audio. The
  service ends sentences itself (``needvad``), so finals arrive while the caller goes on.
- ``{"type": "end"}`` ends the stream (the service answers ``final: 1`` and closes). A frame with a
  non-zero ``code`` is an error: the service closes after it, and the cloud stream reconnects.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.asr.base import AsrOptions, AsrProvider, AsrResult, AsrStream
from pbx.cloud.asr import RATE, AsrProtocol, MalformedFrame, Message, WebSocketAsrStream
from pbx.cloud.ws import ProviderContext
from pbx.core.resample import Resampler
from pbx.errors import ProviderError

HOST = "asr.cloud.tencent.com"
PATH = "/asr/v2/"
END = json.dumps({"type": "end"})
PACKET_MS = 40                       # the packet the service asks for: 40 ms every 40 ms
SIGNATURE_LIFE_S = 24 * 60 * 60
AUTH_FAILED = 4002                   # the service's code for a refused signature
# Query keys that are ours: the signature's, the audio format's and the stream's identity.
FIXED = frozenset({"secretid", "timestamp", "expired", "nonce", "signature", "voice_format", "voice_id",
                   "engine_model_type"})
# language tag (lower case) -> the language part of an engine model type
LANGUAGES = {"zh": "zh", "zh-cn": "zh", "cmn": "zh", "zh-tw": "zh-TW", "zh-hk": "ca", "yue": "ca",
             "en": "en", "ja": "ja", "ko": "ko", "th": "th", "id": "id", "vi": "vi", "ms": "ms",
             "fil": "fil", "pt": "pt", "tr": "tr", "ar": "ar", "es": "es", "hi": "hi", "fr": "fr", "de": "de"}


def sign(secret_key: str, text: str) -> str:
    """The service's signature of ``text``: base64 of HMAC-SHA1 (not yet URL-encoded)."""
    return base64.b64encode(hmac.new(secret_key.encode(), text.encode(), hashlib.sha1).digest()).decode()


def model_type(options: AsrOptions) -> str:
    """``modelType``, else ``<8k|16k>_<language>`` from ``samplerate`` and ``language`` (default 16k_zh)."""
    if options.model_type:
        return options.model_type
    if options.samplerate not in (8000, 16000):
        raise ProviderError("asr", f"tencent: samplerate {options.samplerate} is not supported (8000 or 16000)")
    tag = (options.language or "zh").lower()
    language = LANGUAGES.get(tag) or LANGUAGES.get(tag.split("-")[0])
    if language is None:
        raise ProviderError("asr", f"tencent: no engine model for language {options.language!r}; "
                                   "name one with modelType (e.g. 16k_zh)")
    return f"{options.samplerate // 1000}k_{language}"


class TencentAsrProtocol(AsrProtocol):
    """One ``/asr/v2`` connection: a fresh signature, nonce and voice_id each time."""

    provider = "tencent"
    final_wait_s = 0.2     # the service ends sentences by its own VAD; finals mostly come with later audio

    def __init__(self, options: AsrOptions, now: Callable[[], float] = time.time) -> None:
        missing = [name for name, value in (("appId", options.app_id), ("secretId", options.secret_id),
                                            ("secretKey", options.secret_key)) if not value]
        if missing:
            raise ProviderError("asr", f"tencent needs {', '.join(missing)} (options appId, secretId, secretKey "
                                       "or env TENCENT_APPID, TENCENT_SECRET_ID, TENCENT_SECRET_KEY)")
        fixed = sorted(k for k in options.extra if k.lower() in FIXED)
        if fixed:
            raise ProviderError("asr", f"tencent: extra may not set {', '.join(fixed)} (signature and audio format "
                                       "are the server's; use modelType for the engine)")
        bad = sorted(k for k, v in options.extra.items() if not isinstance(v, (str, int, float)))
        if bad:
            raise ProviderError("asr", f"tencent: extra {', '.join(bad)} must be a string or a number")
        self.options = options
        self.model = model_type(options)
        self.rate = 8000 if self.model.startswith("8k") else 16000
        packet = options.buffer_size or self.rate * PACKET_MS // 1000 * 2
        if packet <= 0 or packet % 2:
            raise ProviderError("asr", f"tencent: bufferSize must be a positive even number of bytes, got {packet}")
        self.packet = packet
        self._now = now
        self._resampler = None if self.rate == RATE else Resampler(RATE, self.rate)
        self._carry = np.zeros(0, np.int16)      # input samples short of the resampler's step
        self._pending = b""                       # audio short of a packet
        self._ready = False

    # -- connecting ---------------------------------------------------------------------------------
    def params(self) -> dict[str, str]:
        """The query, without the signature."""
        o = self.options
        now = int(self._now())
        params = {"secretid": str(o.secret_id), "timestamp": str(now), "expired": str(now + SIGNATURE_LIFE_S),
                  "nonce": str(secrets.randbelow(9_999_999_999) + 1), "engine_model_type": self.model,
                  "voice_id": uuid.uuid4().hex, "voice_format": "1", "needvad": "1"}
        params.update({k: str(v) for k, v in o.extra.items()})
        return params

    def url(self) -> str:
        return signed_url(self.options.endpoint, str(self.options.app_id), self.params(), str(self.options.secret_key))

    @property
    def ready(self) -> bool:
        return self._ready

    # -- what we send -------------------------------------------------------------------------------
    def audio(self, pcm: npt.NDArray[np.int16]) -> list[Message]:
        if self._resampler is not None:
            step = self._resampler.ratio_down
            pcm = np.concatenate([self._carry, pcm]) if len(self._carry) else pcm
            cut = len(pcm) // step * step
            self._carry = pcm[cut:].copy()
            pcm = self._resampler.process(np.ascontiguousarray(pcm[:cut]))
        data = self._pending + pcm.astype("<i2", copy=False).tobytes()
        cut = len(data) // self.packet * self.packet
        self._pending = data[cut:]
        return [data[i:i + self.packet] for i in range(0, cut, self.packet)]

    def flush(self) -> list[Message]:
        # no message ends one sentence (the service's VAD does); send what is held back
        tail, self._pending = self._pending, b""
        return [tail] if tail else []

    def closing(self) -> list[Message]:
        return [END]

    # -- what we read -------------------------------------------------------------------------------
    def received(self, message: Message) -> list[AsrResult]:
        frame = _frame(message)
        code = frame.get("code")
        if not isinstance(code, int):
            raise MalformedFrame(f"{_clip(message)}: no integer code")
        if code != 0:
            text = frame.get("message") or "no message"
            if code == AUTH_FAILED:
                raise ProviderError("asr", f"tencent refused the credentials: {text} (code {code})", code)
            raise ProviderError("asr", f"tencent: {text} (code {code})", code)
        self._ready = True
        result = frame.get("result")
        if result is None:
            return []                              # the handshake's answer, or final: 1
        try:
            kind = result["slice_type"]
            text = result["voice_text_str"]
            start, end = int(result["start_time"]), int(result["end_time"])
            if kind not in (0, 1, 2) or not isinstance(text, str):
                raise TypeError(f"slice_type {kind!r}, voice_text_str {type(text).__name__}")
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedFrame(f"{_clip(message)}: a result without {exc}") from None
        if kind == 2:
            return [AsrResult(text, True, start, end)]
        return [AsrResult(text, False, start, end)] if text else []


def signed_url(endpoint: str | None, app_id: str, params: dict[str, str], secret_key: str) -> str:
    """The connection URL: ``params`` sorted, signed over host, path and query, the signature last."""
    scheme, netloc, path = "wss", HOST, PATH + app_id
    if endpoint:
        parts = urllib.parse.urlsplit(endpoint)
        scheme, netloc = parts.scheme, parts.netloc
        if parts.path not in ("", "/"):
            path = parts.path
    query = "&".join(f"{k}={params[k]}" for k in sorted(params))
    signature = sign(secret_key, f"{netloc}{path}?{query}")
    encoded = "&".join(f"{k}={urllib.parse.quote(params[k], safe='')}" for k in sorted(params))
    return f"{scheme}://{netloc}{path}?{encoded}&signature={urllib.parse.quote(signature, safe='')}"


def _frame(message: Message) -> dict[str, Any]:
    if isinstance(message, bytes):
        raise MalformedFrame(f"a binary frame of {len(message)} bytes (the service sends JSON text)")
    try:
        frame = json.loads(message)
    except ValueError as exc:
        raise MalformedFrame(f"{_clip(message)}: {exc}") from None
    if not isinstance(frame, dict):
        raise MalformedFrame(f"{_clip(message)}: not a JSON object")
    return frame


def _clip(message: Message) -> str:
    return repr(message[:60])


class TencentAsr(AsrProvider):
    name = "tencent"

    def __init__(self, context: ProviderContext) -> None:
        self.context = context

    async def open_stream(self, options: AsrOptions) -> AsrStream:
        return await WebSocketAsrStream.started(lambda: TencentAsrProtocol(options), self.context)
