"""Aliyun DashScope real-time speech recognition (Paraformer) over WebSocket, and what the DashScope
WebSocket API shares between recognition and synthesis (:mod:`pbx.tts.aliyun` imports it).

The protocol as published (https://help.aliyun.com/zh/model-studio/websocket-for-paraformer-real-time-service):

- connect to ``wss://dashscope.aliyuncs.com/api-ws/v1/inference`` (or a workspace's own domain) with
  ``Authorization: Bearer <api key>``; a refused key is an HTTP 401 on the handshake;
- send ``run-task`` (text, JSON: header ``action``/``task_id``/``streaming: duplex``, payload with
  the model and ``parameters``: ``format: pcm``, ``sample_rate``, ...) and wait for ``task-started``;
- send the audio as binary frames; ``result-generated`` events carry ``payload.output.sentence``
  (``text``, ``begin_time``, ``end_time``, ``sentence_end``: false for a partial, true for a final;
  ``heartbeat`` results are skipped);
- ``finish-task`` ends the task; the server answers ``task-finished``. ``task-failed`` carries
  ``error_code``/``error_message`` in its header and ends the task.

Option mapping: ``secretKey`` is the API key (env ``DASHSCOPE_API_KEY``); ``appId`` is the workspace
id (its own domain, when no ``endpoint``); ``modelType`` the model; ``language`` the first
``language_hints`` entry (its primary subtag: ``en-US`` -> ``en``); ``samplerate`` 16000 or 8000
(``sample_rate``; 8 kHz audio is resampled here); ``bufferSize`` the bytes per audio frame;
``extra`` keys become ``parameters`` (strings such as ``"true"`` or ``"600"`` are converted for the
documented ones). ``secretId`` has no DashScope counterpart.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.asr.base import AsrOptions, AsrProvider, AsrResult, AsrStream
from pbx.cloud.asr import AsrProtocol, MalformedFrame, Message, WebSocketAsrStream
from pbx.cloud.ws import ProviderContext
from pbx.core.resample import Resampler
from pbx.errors import ProviderError

PROVIDER = "aliyun"
DEFAULT_URL = "wss://dashscope.aliyuncs.com/api-ws/v1/inference"
WORKSPACE_URL = "wss://{}.cn-beijing.maas.aliyuncs.com/api-ws/v1/inference"
DEFAULT_MODEL = "paraformer-realtime-v2"
RATES = (16000, 8000)               # what we can send: the call's 16 kHz, or halved
PACKET_MS = 100                     # audio per frame unless bufferSize says otherwise (the docs' advice)
MAX_BUFFER_BYTES = 65536
# DashScope's error codes and the HTTP statuses its error-code page gives them
ERROR_STATUS = {"InvalidApiKey": 401, "AccessDenied": 403, "Throttling": 429, "InvalidParameter": 400,
                "InternalError": 500}
_WORKSPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")

# documented run-task parameters that ``extra`` may set, with their JSON types
ASR_PARAMETERS: dict[str, type] = {
    "vocabulary_id": str, "disfluency_removal_enabled": bool, "language_hints": list,
    "semantic_punctuation_enabled": bool, "max_sentence_silence": int, "multi_threshold_mode_enabled": bool,
    "punctuation_prediction_enabled": bool, "heartbeat": bool, "inverse_text_normalization_enabled": bool,
}
RESERVED = ("format", "sample_rate")    # the audio we send decides these


# -- what recognition and synthesis share ----------------------------------------------------------
def connection(sender: str, api_key: str | None, endpoint: str | None,
               app_id: str | None) -> tuple[str, dict[str, str]]:
    """URL and headers of a DashScope WebSocket, or a ProviderError saying what is missing."""
    if not api_key:
        raise ProviderError(sender, "aliyun needs secretKey (option secretKey or env DASHSCOPE_API_KEY)")
    url = endpoint or DEFAULT_URL
    if not endpoint and app_id:
        if not _WORKSPACE.fullmatch(app_id):
            raise ProviderError(sender, f"aliyun: appId {app_id!r} is not a workspace id")
        url = WORKSPACE_URL.format(app_id)
    return url, {"Authorization": f"Bearer {api_key}"}


def command(action: str, task_id: str, payload: Mapping[str, Any]) -> str:
    return json.dumps({"header": {"action": action, "task_id": task_id, "streaming": "duplex"},
                       "payload": payload}, ensure_ascii=False)


def finish_task(task_id: str) -> str:
    return command("finish-task", task_id, {"input": {}})


@dataclass(frozen=True, slots=True)
class ServerEvent:
    event: str
    payload: dict[str, Any]


def parse_event(message: Message, task_id: str, sender: str) -> ServerEvent:
    """One server event of task ``task_id``. ``task-failed`` raises ProviderError (code: the HTTP status
    of DashScope's error code, where it has one); garbage raises MalformedFrame."""
    if isinstance(message, bytes):
        raise MalformedFrame(f"a binary frame of {len(message)} bytes where an event was due")
    try:
        frame = json.loads(message)
    except ValueError:
        raise MalformedFrame(f"not JSON: {message[:60]!r}") from None
    header = frame.get("header") if isinstance(frame, dict) else None
    if not isinstance(header, dict) or not isinstance(header.get("event"), str):
        raise MalformedFrame(f"no header.event in {message[:60]!r}")
    event = header["event"]
    if header.get("task_id") != task_id:
        raise MalformedFrame(f"{event} of task {header.get('task_id')!r}, not of ours")
    if event == "task-failed":
        code, text = header.get("error_code"), header.get("error_message")
        raise ProviderError(sender, f"aliyun task failed: {code}: {text}",
                            ERROR_STATUS.get(code) if isinstance(code, str) else None)
    payload = frame.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise MalformedFrame(f"{event} with a payload that is not an object")
    return ServerEvent(event, payload)


def parameters(sender: str, extra: Mapping[str, Any], known: Mapping[str, type]) -> dict[str, Any]:
    """``extra`` as run-task parameters: the documented ones converted to their types (ProviderError if
    they cannot be), the others passed as given."""
    out: dict[str, Any] = {}
    for name, value in extra.items():
        if name in RESERVED:
            raise ProviderError(sender, f"aliyun: extra {name!r} cannot be set: the audio is pcm at the "
                                        "call's samplerate")
        kind = known.get(name)
        out[name] = value if kind is None else _convert(sender, name, value, kind)
    return out


def _convert(sender: str, name: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d{1,9}", value.strip()):
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is list:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, kind):
        return value
    what = {bool: "true or false", int: "an integer", float: "a number", list: "a list of strings",
            str: "a string"}[kind]
    raise ProviderError(sender, f"aliyun: extra {name!r} must be {what}, not {value!r}")


# -- recognition -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AsrSettings:
    """A call's recognition options, checked once; every connection of the stream uses them."""

    url: str
    headers: dict[str, str] = field(repr=False)
    model: str
    rate: int
    packet_bytes: int
    parameters: dict[str, Any]

    @classmethod
    def from_options(cls, options: AsrOptions) -> AsrSettings:
        url, headers = connection("asr", options.secret_key, options.endpoint, options.app_id)
        if options.samplerate not in RATES:
            raise ProviderError("asr", f"aliyun: samplerate {options.samplerate} is not supported "
                                       "(16000 or 8000)")
        size = options.buffer_size
        if size is not None and not (2 <= size <= MAX_BUFFER_BYTES and size % 2 == 0):
            raise ProviderError("asr", f"aliyun: bufferSize {size} must be an even number of bytes "
                                       f"from 2 to {MAX_BUFFER_BYTES}")
        params: dict[str, Any] = {"format": "pcm", "sample_rate": options.samplerate}
        if options.language:
            params["language_hints"] = [options.language.split("-")[0].split("_")[0].lower()]
        params.update(parameters("asr", options.extra, ASR_PARAMETERS))
        return cls(url, headers, options.model_type or DEFAULT_MODEL, options.samplerate,
                   size or options.samplerate * PACKET_MS // 1000 * 2, params)


class AliyunAsrProtocol(AsrProtocol):
    """One Paraformer task on one connection."""

    provider = PROVIDER

    def __init__(self, settings: AsrSettings, task_id: str | None = None) -> None:
        self.settings = settings
        self.task_id = task_id or str(uuid.uuid4())
        self._started = False
        self._open_sentence = False          # a partial came and its final has not
        self._pending = bytearray()          # audio short of a whole packet
        self._carry = np.zeros(0, np.int16)  # an odd sample the 2:1 resampler must wait for
        self._resampler = Resampler(16000, 8000) if settings.rate == 8000 else None

    def url(self) -> str:
        return self.settings.url

    def headers(self) -> dict[str, str]:
        return dict(self.settings.headers)

    def opening(self) -> list[Message]:
        return [command("run-task", self.task_id, {
            "task_group": "audio", "task": "asr", "function": "recognition", "model": self.settings.model,
            "parameters": self.settings.parameters, "input": {}})]

    @property
    def ready(self) -> bool:
        return self._started

    @property
    def owes_result(self) -> bool:
        """Paraformer sends nothing for silence, nor after a sentence it has ended: only an open
        sentence makes a result due."""
        return self._open_sentence

    def audio(self, pcm: npt.NDArray[np.int16]) -> list[Message]:
        if self._resampler is not None:
            pcm = np.concatenate([self._carry, pcm]) if len(self._carry) else pcm
            cut = len(pcm) // 2 * 2
            self._carry = pcm[cut:].copy()
            pcm = self._resampler.process(np.ascontiguousarray(pcm[:cut]))
        self._pending += pcm.astype("<i2").tobytes()
        size = self.settings.packet_bytes
        whole = len(self._pending) // size * size
        packets: list[Message] = [bytes(self._pending[i:i + size]) for i in range(0, whole, size)]
        del self._pending[:whole]
        return packets

    def flush(self) -> list[Message]:
        """The audio held back for a whole packet: the end of speech must reach the recogniser (it
        ends sentences itself; the protocol has no end-of-utterance message)."""
        if not self._pending:
            return []
        rest, self._pending = bytes(self._pending), bytearray()
        return [rest]

    def closing(self) -> list[Message]:
        return [*self.flush(), finish_task(self.task_id)]

    def received(self, message: Message) -> list[AsrResult]:
        event = parse_event(message, self.task_id, "asr")
        if event.event == "task-started":
            self._started = True
            return []
        if event.event == "result-generated":
            results = _results(event.payload)
            if results:
                self._open_sentence = not results[-1].final
            return results
        if event.event == "task-finished":
            return []
        raise MalformedFrame(f"unknown event {event.event!r}")


def _results(payload: dict[str, Any]) -> list[AsrResult]:
    output = payload.get("output")
    sentence = output.get("sentence") if isinstance(output, dict) else None
    if not isinstance(sentence, dict):
        raise MalformedFrame("result-generated without payload.output.sentence")
    if sentence.get("heartbeat") is True:
        return []
    text, final, begin, end = (sentence.get(k) for k in ("text", "sentence_end", "begin_time", "end_time"))
    if not isinstance(text, str) or not isinstance(final, bool):
        raise MalformedFrame("a sentence without text or sentence_end")
    if not _is_ms(begin) or not (end is None or _is_ms(end)):
        raise MalformedFrame(f"a sentence with times {begin!r}, {end!r}")
    words = sentence.get("words")
    if end is None and isinstance(words, list) and words and isinstance(words[-1], dict) \
            and _is_ms(words[-1].get("end_time")):
        end = words[-1]["end_time"]       # a final may come with end_time null: its last word ends it
    if not text.strip():
        return []
    return [AsrResult(text, final, begin, end)]


def _is_ms(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class AliyunAsr(AsrProvider):
    """Paraformer real-time recognition, one WebSocket task per call (reconnected on faults)."""

    name = PROVIDER

    def __init__(self, context: ProviderContext) -> None:
        self._context = context

    async def open_stream(self, options: AsrOptions) -> AsrStream:
        settings = AsrSettings.from_options(options)   # bad options fail here, before any connection
        make: Callable[[], AsrProtocol] = lambda: AliyunAsrProtocol(settings)  # noqa: E731
        return await WebSocketAsrStream.started(make, self._context)
