"""The local TTS provider: espeak-ng, loaded from the ``espeakng-loader`` wheel with ctypes.

No cloud account and no system package: the wheel ships ``libespeak-ng.so`` and its data
(``espeakng_loader.get_library_path()`` / ``get_data_path()``).

How it runs:

- libespeak-ng keeps all of its state in globals, so it is loaded and initialised once per
  process (AUDIO_OUTPUT_SYNCHRONOUS: ``espeak_Synth`` returns when the text is done and hands
  over the PCM through the synth callback as it is produced) and every use holds its lock.
- Each provider owns one worker thread; requests queue up and are synthesised one at a time.
  The callback resamples each buffer (22050 Hz -> the request's rate, soxr ``ResampleStream``)
  and passes it to the request's event loop with ``call_soon_threadsafe``, so the first chunk
  arrives after the first ~60 ms of speech is synthesised, not after the whole text.
- When the consumer stops iterating (interruption), the callback returns 1 on its next call,
  which makes espeak abort and frees the worker for the next request.
- Word boundaries: each espeak WORD event becomes a :class:`WordMark` whose ``index`` counts the
  whitespace-separated words of the request text and whose ``sample`` is the word's start at the
  output rate; it rides on the chunk that contains that sample.  Indices can skip: words espeak
  does not speak (a lone dash) and unstressed words it joins to the one before ("from the",
  "I am") have no event of their own, so they get no mark; a token spoken as several words
  ("1,000") gets one.
"""

from __future__ import annotations

import asyncio
import bisect
import ctypes
import functools
import math
import queue
import re
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, cast

import espeakng_loader  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]

from pbx.errors import ProviderError
from pbx.tts.base import TtsChunk, TtsProvider, TtsRequest, WordMark

DEFAULT_VOICE = "en-us"
NORMAL_WPM = 175                      # espeakRATE_NORMAL
MIN_WPM, MAX_WPM = 80, 450            # espeakRATE_MINIMUM, espeakRATE_MAXIMUM
BUFFER_MS = 60                        # audio per synth callback; the first chunk's latency

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000        # report missing data instead of calling exit()
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_PARAM_RATE = 1
_EE_OK = 0
_EE_NOT_FOUND = 2


class _Event(ctypes.Structure):
    """espeak_EVENT; the trailing union is only read as its int member (word number)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),     # 1-based character position in the text
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),    # ms
        ("sample", ctypes.c_int),            # samples since the start of the text
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_void_p),             # union {int number; const char *name; char string[8]}
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class _Library:
    """libespeak-ng, initialised; one per process because its state is global."""

    def __init__(self) -> None:
        try:
            self.cdll = ctypes.CDLL(espeakng_loader.get_library_path())
            data_path = Path(espeakng_loader.get_data_path())
        except (OSError, RuntimeError) as exc:
            raise ProviderError("tts", f"cannot load libespeak-ng: {exc}") from exc
        lib = self.cdll
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        # The path argument is the directory that contains espeak-ng-data.
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, BUFFER_MS, str(data_path.parent).encode(), _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise ProviderError("tts", f"espeak-ng found no usable data in {data_path}")
        self.samplerate: int = rate
        self.lock = threading.Lock()
        self.voice: str | None = None    # the voice espeak has loaded (loading one costs ~15 ms)

    def select_voice(self, voice: str) -> None:
        """Load ``voice`` unless it is the current one; call with the lock held."""
        if voice == self.voice:
            return
        self.voice = None
        name = voice.encode("utf-8", "replace")
        if b"\0" in name or self.cdll.espeak_SetVoiceByName(name) != _EE_OK:
            raise ProviderError("tts", f"unknown espeak voice '{voice}'")
        self.voice = voice


_LOAD_LOCK = threading.Lock()        # two providers starting at once must not both initialise


def _library() -> _Library:
    with _LOAD_LOCK:
        return _load_library()


@functools.cache
def _load_library() -> _Library:
    return _Library()


_WORD = re.compile(r"\S+")
_END = object()                       # queue sentinel: the text is done


@dataclass(eq=False)
class _Job:
    """One request on its way through the worker; the worker fills ``out``, the consumer drains it."""

    request: TtsRequest
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)   # the consumer is gone

    def post(self, item: object) -> None:
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)
        except RuntimeError:          # the consumer's loop is closed: nobody is listening
            self.cancelled.set()


class _Synthesis:
    """Per-text state of the synth callback: resampler, output position, pending word marks."""

    def __init__(self, job: _Job, in_rate: int, closing: threading.Event) -> None:
        self.job = job
        self.closing = closing
        self.in_rate = in_rate
        self.out_rate = job.request.samplerate
        self.resampler = (
            None if self.out_rate == in_rate
            else soxr.ResampleStream(in_rate, self.out_rate, 1, dtype="int16", quality="HQ")
        )
        words = list(_WORD.finditer(job.request.text))
        self.word_starts = [m.start() for m in words]
        self.word_ends = [m.end() for m in words]
        self.last_word = -1
        self.emitted = 0                  # output samples handed over so far
        self.pending: list[WordMark] = []
        self.finished = False             # the resampler is flushed and the last marks are out
        self.aborted = False
        self.error: BaseException | None = None

    def word_index(self, text_position: int) -> int:
        """Index of the whitespace-separated word at espeak's 1-based character position."""
        position = text_position - 1
        i = bisect.bisect_right(self.word_starts, position) - 1
        if i < 0 or position >= self.word_ends[i]:
            i += 1                        # between words: the next one
        return i

    def on_buffer(self, wav: ctypes._Pointer[ctypes.c_short] | None, count: int,
                  events: ctypes._Pointer[_Event]) -> int:
        """The synth callback's body: 0 = go on, 1 = abort."""
        if self.job.cancelled.is_set() or self.closing.is_set():
            self.aborted = True
            return 1
        try:
            i = 0
            while events[i].type != _EVENT_LIST_TERMINATED:
                event = events[i]
                if event.type == _EVENT_WORD:
                    self.add_word(event.text_position, event.sample)
                i += 1
            last = not wav                # a NULL buffer ends the text
            pcm = (np.ctypeslib.as_array(wav, shape=(count,)) if wav and count > 0
                   else np.zeros(0, np.int16))
            self.emit(pcm, last)
        except BaseException as exc:      # an exception cannot cross the C callback
            self.error = exc
            self.aborted = True
            return 1
        return 0

    def add_word(self, text_position: int, sample: int) -> None:
        index = self.word_index(text_position)
        if index <= self.last_word or index >= len(self.word_starts):
            return
        self.last_word = index
        offset = (sample * self.out_rate + self.in_rate // 2) // self.in_rate
        self.pending.append(WordMark(offset, index))

    def emit(self, pcm: npt.NDArray[np.int16], last: bool) -> None:
        self.finished = last
        out: npt.NDArray[np.int16] = (
            pcm.copy() if self.resampler is None  # copy: espeak reuses its buffer
            else self.resampler.resample_chunk(pcm, last=last)
        )
        end = self.emitted + len(out)
        take = len(self.pending) if last else bisect.bisect_left([m.sample for m in self.pending], end)
        if len(out) == 0 and take == 0:
            return
        words = tuple(self.pending[:take])
        del self.pending[:take]
        self.emitted = end
        self.job.post(TtsChunk(out, words))


class EspeakTts(TtsProvider):
    """espeak-ng voices; ``speaker`` is an espeak voice name such as "en-us", "fr" or "en+f3"."""

    name = "espeak"
    aliases: ClassVar[tuple[str, ...]] = ("local",)

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closing = threading.Event()
        # Loading the library and the default voice happen on the worker, before the first request.
        self._thread = threading.Thread(target=self._run, name="espeak-tts", daemon=True)
        self._thread.start()

    async def synthesize(self, request: TtsRequest) -> AsyncIterator[TtsChunk]:
        if request.samplerate <= 0:
            raise ValueError(f"samplerate must be positive, got {request.samplerate}")
        if not (math.isfinite(request.speed) and request.speed > 0):
            raise ValueError(f"speed must be a positive number, got {request.speed}")
        if self._closing.is_set():
            raise ProviderError("tts", "espeak provider is closed")
        job = _Job(request, asyncio.get_running_loop())
        self._jobs.put(job)
        try:
            while True:
                item = await job.out.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield cast(TtsChunk, item)
        finally:
            job.cancelled.set()           # stops the worker on its next buffer if still going

    async def close(self) -> None:
        """Abort the text in progress, fail the queued ones and stop the worker thread."""
        self._closing.set()
        self._jobs.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    # ---- worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        library: _Library | ProviderError
        try:
            library = _library()
            with library.lock:
                library.select_voice(DEFAULT_VOICE)
        except ProviderError as exc:
            library = exc                 # every request gets the reason
        while True:
            job = self._jobs.get()
            if job is None:
                break
            if job.cancelled.is_set():
                continue
            if self._closing.is_set():
                job.post(ProviderError("tts", "espeak provider is closed"))
            elif isinstance(library, ProviderError):
                job.post(library)
            else:
                try:
                    self._speak(library, job)
                except Exception as exc:  # keep the worker alive for the next requests
                    job.post(ProviderError("tts", f"espeak synthesis failed: {exc!r}"))
        while True:                       # fail whatever was queued behind the stop sentinel
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.post(ProviderError("tts", "espeak provider is closed"))

    def _speak(self, library: _Library, job: _Job) -> None:
        request = job.request
        synthesis = _Synthesis(job, library.samplerate, self._closing)

        def callback(wav: ctypes._Pointer[ctypes.c_short] | None, count: int,
                     events: ctypes._Pointer[_Event]) -> int:
            return synthesis.on_buffer(wav, count, events)

        c_callback = _SynthCallback(callback)   # referenced until espeak_Synth returns
        wpm = min(MAX_WPM, max(MIN_WPM, round(NORMAL_WPM * request.speed)))
        # a lone surrogate becomes "?" and NUL a space: still one character each, so espeak's
        # character positions keep matching the str's
        text = request.text.replace("\0", " ").encode("utf-8", "replace")
        try:
            with library.lock:
                library.select_voice(request.speaker or DEFAULT_VOICE)
                library.cdll.espeak_SetSynthCallback(c_callback)
                library.cdll.espeak_SetParameter(_PARAM_RATE, wpm, 0)
                status = library.cdll.espeak_Synth(
                    text, len(text) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
                )
        except ProviderError as exc:
            job.post(exc)
            return
        if job.cancelled.is_set():
            return
        if synthesis.error is not None:
            job.post(ProviderError("tts", f"espeak synthesis failed: {synthesis.error!r}"))
        elif synthesis.aborted:
            job.post(ProviderError("tts", "espeak provider is closed"))
        elif status != _EE_OK:
            job.post(ProviderError("tts", f"espeak_Synth failed with status {status}", status))
        else:
            if not synthesis.finished:    # espeak did not send its end-of-data buffer
                synthesis.emit(np.zeros(0, np.int16), last=True)
            job.post(_END)
