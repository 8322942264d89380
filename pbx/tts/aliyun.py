"""Aliyun DashScope CosyVoice synthesis over WebSocket (the API :mod:`pbx.asr.aliyun` describes).

The protocol as published (https://help.aliyun.com/zh/model-studio/cosyvoice-websocket-api), one
task per text:

- connect with ``Authorization: Bearer <api key>``; send ``run-task`` (``task: tts``,
  ``function: SpeechSynthesizer``, the model, ``parameters``: ``text_type: PlainText``, ``voice``,
  ``format: pcm``, ``sample_rate``, ``rate``, ...);
- on ``task-started``: ``continue-task`` with the text (pieces of at most :data:`TEXT_PIECE`
  characters: the service takes 20,000 a message, a Chinese character counting two), then
  ``finish-task``;
- binary frames are the audio (s16le mono at ``sample_rate``); ``result-generated`` events say where
  sentences begin and end and, with ``word_timestamp_enabled``, carry word times
  (``payload.output.sentence.words``: ``text``, ``begin_index`` in the sentence, ``begin_time`` in ms);
- ``task-finished`` ends the audio; ``task-failed`` (``error_code``/``error_message``) ends the task.

Option mapping: ``speaker`` -> ``voice``; ``speed`` -> ``rate`` (within the service's 0.5-2.0);
``samplerate`` -> ``sample_rate`` when CosyVoice offers it (else 16000, resampled by the caller);
``subtitle`` -> ``word_timestamp_enabled`` (word marks); ``volume`` stays at the service's default
(the server applies it as a gain); ``codec``: the audio is always requested as pcm, so only "pcm"
is accepted; ``emotion`` has no CosyVoice parameter (``extra`` ``instruction`` is the model-specific
free text); ``extra`` ``model`` chooses the model (default :data:`DEFAULT_MODEL`), its other keys
become ``parameters``.

Word marks: each word is placed in the request text (its sentence's ``original_text`` found in the
text, then the word's ``begin_index`` or its text), and its mark gives the index of the
whitespace-separated word holding it; ``begin_time`` is taken as ms from the start of the task's
audio. Only the first mark of each text word is reported.
"""

from __future__ import annotations

import bisect
import math
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pbx.asr.aliyun import PROVIDER, command, connection, finish_task, parameters, parse_event
from pbx.cloud.asr import MalformedFrame, Message
from pbx.cloud.tts import TtsFrame, TtsProtocol, synthesize_ws
from pbx.cloud.ws import ProviderContext
from pbx.errors import ProviderError
from pbx.tts.base import TtsChunk, TtsProvider, TtsRequest, WordMark

DEFAULT_MODEL = "cosyvoice-v2"
DEFAULT_VOICE = "longyumi_v2"
RATES = (8000, 16000, 22050, 24000, 44100, 48000)
FALLBACK_RATE = 16000
SPEED_RANGE = (0.5, 2.0)
TEXT_PIECE = 10_000          # characters per continue-task (20,000 counted, a Chinese character as two)
TTS_PARAMETERS: dict[str, type] = {
    "pitch": float, "bit_rate": int, "enable_ssml": bool, "word_timestamp_enabled": bool, "seed": int,
    "language_hints": list, "instruction": str, "volume": int,
}


@dataclass(frozen=True, slots=True)
class TtsSettings:
    url: str
    headers: dict[str, str] = field(repr=False)
    model: str
    rate: int
    parameters: dict[str, Any]

    @classmethod
    def from_request(cls, request: TtsRequest) -> TtsSettings:
        url, headers = connection("tts", request.secret_key, request.endpoint, request.app_id)
        if request.codec not in (None, "pcm"):
            raise ProviderError("tts", f"aliyun: codec {request.codec!r} cannot be played: CosyVoice audio "
                                       "is requested as pcm (leave codec out or set \"pcm\")")
        if not math.isfinite(request.speed):
            raise ProviderError("tts", f"aliyun: speed {request.speed} is not a number")
        extra = dict(request.extra)
        model = extra.pop("model", None) or DEFAULT_MODEL
        if not isinstance(model, str):
            raise ProviderError("tts", f"aliyun: extra 'model' must be a string, not {model!r}")
        rate = request.samplerate if request.samplerate in RATES else FALLBACK_RATE
        params: dict[str, Any] = {
            "text_type": "PlainText", "voice": request.speaker or DEFAULT_VOICE, "format": "pcm",
            "sample_rate": rate, "rate": min(max(request.speed, SPEED_RANGE[0]), SPEED_RANGE[1]),
        }
        if request.subtitle:
            params["word_timestamp_enabled"] = True
        params.update(parameters("tts", extra, TTS_PARAMETERS))
        return cls(url, headers, model, rate, params)


class CosyVoiceProtocol(TtsProtocol):
    """The synthesis of one text as one CosyVoice task."""

    provider = PROVIDER

    def __init__(self, settings: TtsSettings, text: str, task_id: str | None = None) -> None:
        self.settings = settings
        self.rate = settings.rate
        self.text = text
        self.task_id = task_id or str(uuid.uuid4())
        self._started = False
        self._word_starts = [m.start() for m in re.finditer(r"\S+", text)]
        self._cursor = 0                        # where in the text the next sentence or word is looked for
        self._sentences: dict[int, int] = {}    # sentence index -> its offset in the text
        self._last_index = -1                   # the last text word marked

    def url(self) -> str:
        return self.settings.url

    def headers(self) -> dict[str, str]:
        return dict(self.settings.headers)

    def opening(self) -> list[Message]:
        return [command("run-task", self.task_id, {
            "task_group": "audio", "task": "tts", "function": "SpeechSynthesizer", "model": self.settings.model,
            "parameters": self.settings.parameters, "input": {}})]

    def received(self, message: Message) -> TtsFrame:
        if isinstance(message, bytes):
            if not self._started:
                raise MalformedFrame(f"{len(message)} bytes of audio before task-started")
            return TtsFrame(pcm=message)
        event = parse_event(message, self.task_id, "tts")
        if event.event == "task-started":
            if self._started:
                raise MalformedFrame("a second task-started")
            self._started = True
            pieces = [self.text[i:i + TEXT_PIECE] for i in range(0, len(self.text), TEXT_PIECE)]
            return TtsFrame(replies=(*(command("continue-task", self.task_id, {"input": {"text": piece}})
                                       for piece in pieces), finish_task(self.task_id)))
        if event.event == "result-generated":
            return TtsFrame(words=self._marks(event.payload))
        if event.event == "task-finished":
            return TtsFrame(done=True)
        raise MalformedFrame(f"unknown event {event.event!r}")

    def _marks(self, payload: dict[str, Any]) -> tuple[WordMark, ...]:
        output = payload.get("output")
        sentence = output.get("sentence") if isinstance(output, dict) else None
        if not isinstance(sentence, dict) or not _is_count(sentence.get("index")):
            raise MalformedFrame("result-generated without payload.output.sentence.index")
        number: int = sentence["index"]
        original = output.get("original_text") if isinstance(output, dict) else None
        if number not in self._sentences and isinstance(original, str) and original.strip():
            at = self.text.find(original.strip(), self._cursor)
            self._sentences[number] = at if at >= 0 else self._cursor
        words = sentence.get("words") or []
        if not isinstance(words, list):
            raise MalformedFrame("sentence.words is not a list")
        marks = []
        for word in words:
            if not (isinstance(word, dict) and isinstance(word.get("text"), str)
                    and _is_count(word.get("begin_index")) and _is_count(word.get("begin_time"))):
                raise MalformedFrame(f"a word without text, begin_index or begin_time: {word!r:.80}")
            index = self._place(number, word["text"], word["begin_index"])
            if index > self._last_index:
                self._last_index = index
                marks.append(WordMark(word["begin_time"] * self.rate // 1000, index))
        return tuple(marks)

    def _place(self, sentence: int, text: str, begin_index: int) -> int:
        """The index of the text word where this word of the sentence begins."""
        base = self._sentences.get(sentence, self._cursor)
        at = base + begin_index
        if not self.text.startswith(text, at):
            found = self.text.find(text, max(self._cursor, base)) if text else -1
            at = found if found >= 0 else min(at, len(self.text))
        self._cursor = max(self._cursor, at + len(text))
        return max(bisect.bisect_right(self._word_starts, at) - 1, 0)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class AliyunTts(TtsProvider):
    """CosyVoice synthesis: one WebSocket task per text."""

    name = PROVIDER

    def __init__(self, context: ProviderContext) -> None:
        self._context = context

    async def synthesize(self, request: TtsRequest) -> AsyncIterator[TtsChunk]:
        settings = TtsSettings.from_request(request)     # bad options fail before any connection
        async for chunk in synthesize_ws(CosyVoiceProtocol(settings, request.text), request, self._context):
            yield chunk
