"""Local speech recognition with PocketSphinx 5: the default ASR provider ("pocketsphinx", alias "local").

Searches, chosen per stream by ``AsrOptions.extra``:

- ``"grammar"``: a JSGF grammar string. The utterance is matched against the grammar's phrases only,
  which makes a known phrase reliable (and cheap: RTF ~0.01).
- ``"keywords"``: keyphrase spotting (kws). A list of phrases (each at the provider's default
  threshold) or a dict phrase -> threshold (``"1e-20"`` or a float; longer phrases want smaller ones).
  Phrases are lower-cased (the dictionary is) and every word must be in the dictionary. The text of
  a result is the spotted phrases in order.
- neither: the bundled US English trigram language model (free dictation; RTF ~0.13, and not very
  accurate).

Only English is served (the wheel ships the en-us model); ``options.model_type`` is ignored. The
model is wideband: telephone-band speech (G.711, 8 kHz, upsampled by the ASR tap) is not recognised,
not even with a grammar.

Times (``start_ms``/``end_ms``) are milliseconds of audio since the stream started: the utterance
starts at the first sample fed after the previous ``end_utterance``, and the decoder's word
segmentation (10 ms frames, fillers such as ``<sil>`` left out) places the recognised words in it.
A result whose words have no segmentation falls back to the utterance's audio span.

Threads and the GIL. Decoding is CPU-bound and blocking, so it runs on a ``ThreadPoolExecutor`` owned
by the provider and shared by its streams (a thread per stream would add threads, not throughput).
Each stream runs its calls one at a time, in call order (an ``asyncio.Lock``, held until the worker
finishes even if the caller is cancelled). PocketSphinx's Python binding never releases the GIL:
while it decodes, no other Python thread, the event loop included, runs. So decoding in all streams
of a process shares one core, and each ``process_raw`` call stalls the event loop for its duration.
``feed`` therefore hands the decoder 20 ms slices and releases the GIL between them (``sleep(0)``),
so that a waiting event loop runs after about one slice's decode time (~2.5 ms with the LM) instead of
after the whole chunk's or the 5 ms switch interval.

Decoders are pooled. Creating one loads the acoustic model and the 130k-word dictionary (~90 ms,
27 MiB) and building a language-model search over them costs ~130 ms and ~30 MiB more, all of it
holding the GIL. Decoders cannot share an acoustic model, so the provider keeps closed streams'
decoders (up to ``max_idle`` of each kind) and loads the language model once, sharing it between its
LM decoders. A pooled decoder is reset to its initial cepstral mean, so that results do not depend
on the previous call; the mean then adapts to the caller within the stream. The LM keeps a small
lookup cache, so LM decoding also takes a provider lock: today it is free (the GIL already
serialises it), and it keeps sharing safe should the binding release the GIL.
``prewarm`` creates decoders ahead of the first calls.

A grammar is checked before PocketSphinx compiles it (:mod:`pbx.asr.jsgf`: syntax, rules, at most
16 KiB and 500 words, every word in the dictionary), because PocketSphinx puts its reasons only in
its C log and compiling a large grammar holds the GIL for up to seconds. Decoders a stream no
longer needs beyond the idle pool are freed, and the freed memory handed back to the system
(``malloc_trim``): glibc would keep it, and RSS would grow by a decoder's ~60 MB each time.

Streams share the workers fairly: calls queue per stream, and the workers take the next call from
each stream with work in turn, so a stream whose grammar decodes slowly delays another stream by at
most one of its calls, not by its whole backlog. And all streams together decode at most
``cpu_share`` (half) of the time: decoding holds the GIL, which the event loop and the media tick
need too, so past that share recognition falls behind (each call's backlog is bounded) rather than
every call's audio. Half a core serves about four free-dictation streams at once (RTF ~0.13) or
many more with grammars; a busier host wants more processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import pocketsphinx  # type: ignore[import-untyped]

from pbx.asr.base import AsrOptions, AsrProvider, AsrResult, AsrStream
from pbx.asr.fair import FairPool
from pbx.asr.jsgf import GrammarError, check_grammar
from pbx.errors import ProviderError
from pbx.memory import release_free_memory

SAMPLE_RATE = 16000
SLICE_SAMPLES = 320                     # 20 ms per process_raw call: bounds how long one call holds the GIL
DEFAULT_KWS_THRESHOLD = 1e-20
CPU_SHARE = 0.5                         # of the wall clock, for all streams: decoding holds the GIL
LOGLEVEL = "ERROR"                      # PocketSphinx's log level is process-wide
KNOWN_OPTIONS = ("grammar", "keywords")
_SEARCH = "stream"                      # name of a stream's grammar or kws search on a bare decoder
_LM_SEARCH = "lm"

Kind = Literal["lm", "bare"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Search:
    """What a stream recognises: the language model, a JSGF grammar, or keyphrases with thresholds."""

    mode: Literal["lm", "grammar", "keywords"]
    grammar: str = ""
    keywords: tuple[tuple[str, float], ...] = ()
    words: tuple[str, ...] = ()            # a grammar's words, each to be in the dictionary

    @property
    def kind(self) -> Kind:
        return "lm" if self.mode == "lm" else "bare"


def _fail(message: str) -> ProviderError:
    return ProviderError("asr", message)


def parse_options(options: AsrOptions, kws_threshold: float = DEFAULT_KWS_THRESHOLD) -> Search:
    """Check a stream's options; raises ProviderError naming what is wrong."""
    language = options.language
    if language is not None and re.split(r"[-_]", language)[0].lower() != "en":
        raise _fail(f"pocketsphinx has no model for language '{language}'")
    if options.samplerate != SAMPLE_RATE:
        raise _fail(f"pocketsphinx takes {SAMPLE_RATE} Hz audio, not {options.samplerate} Hz")
    unknown = sorted(set(options.extra) - set(KNOWN_OPTIONS))
    if unknown:
        raise _fail(f"pocketsphinx has no option '{unknown[0]}' (it takes: {', '.join(KNOWN_OPTIONS)})")
    grammar = options.extra.get("grammar")
    keywords = options.extra.get("keywords")
    if grammar is not None and keywords is not None:
        raise _fail("pocketsphinx takes a grammar or keywords, not both")
    if grammar is not None:
        if not isinstance(grammar, str) or not grammar.strip():
            raise _fail("pocketsphinx option 'grammar' must be a non-empty JSGF string")
        try:
            words = check_grammar(grammar)
        except GrammarError as exc:
            raise _fail(f"pocketsphinx cannot use the grammar: {exc}") from None
        return Search("grammar", grammar=grammar, words=tuple(dict.fromkeys(words)))
    if keywords is not None:
        return Search("keywords", keywords=_parse_keywords(keywords, kws_threshold))
    return Search("lm")


def _parse_keywords(keywords: Any, default: float) -> tuple[tuple[str, float], ...]:
    if isinstance(keywords, dict):
        items: list[tuple[Any, Any]] = list(keywords.items())
    elif isinstance(keywords, list | tuple):
        items = [(phrase, default) for phrase in keywords]
    else:
        raise _fail("pocketsphinx option 'keywords' must be a list of phrases or a dict phrase -> threshold")
    if not items:
        raise _fail("pocketsphinx option 'keywords' is empty")
    out: list[tuple[str, float]] = []
    for phrase, threshold in items:
        if not isinstance(phrase, str) or not phrase.split():
            raise _fail(f"pocketsphinx keyword {phrase!r} is not a non-empty string")
        words = phrase.lower().split()
        if any("/" in word for word in words):
            raise _fail(f"pocketsphinx keyword '{phrase}' contains '/'")
        try:
            value = float(threshold)
        except (TypeError, ValueError):
            value = math.nan
        if isinstance(threshold, bool) or not math.isfinite(value) or value <= 0:
            raise _fail(f"pocketsphinx threshold of keyword '{phrase}' must be a positive number, "
                        f"not {threshold!r}")
        out.append((" ".join(words), value))
    return tuple(out)


def _is_filler(word: str) -> bool:
    return word.startswith(("<", "["))    # <s>, </s>, <sil>, [NOISE], [SPEECH]


class Recognizer:
    """One decoder and the utterance bookkeeping of one stream. Blocking: runs on worker threads,
    one call at a time."""

    def __init__(self, decoder: Any, kind: Kind, lock: contextlib.AbstractContextManager[Any]) -> None:
        self.decoder = decoder
        self.kind = kind
        self.broken = False                        # a decoder call failed: do not pool it
        self.has_search = False                    # a bare decoder holds a stream's grammar/kws search
        self._lock = lock                          # the shared-LM lock, or a no-op
        self._initial_cmn: str = str(decoder.get_cmn())
        self._ms_per_frame = 1000 // int(decoder.config["frate"])
        self._samples = 0                          # audio fed to this stream so far
        self._utt_start = 0                        # first sample of the current utterance
        self._in_utterance = False
        self._partial = ""

    def feed(self, pcm: npt.NDArray[np.int16]) -> list[AsrResult]:
        if pcm.size == 0:
            return []
        with self._calls():
            if not self._in_utterance:
                self.decoder.start_utt()
                self._in_utterance = True
                self._utt_start = self._samples
            raw = pcm.view(np.uint8)
            step = 2 * SLICE_SAMPLES
            for i in range(0, raw.size, step):
                self.decoder.process_raw(raw[i:i + step])
                time.sleep(0)                      # release the GIL: a waiting event loop gets it now
            self._samples += pcm.size
            text = self._text()
            if not text or text == self._partial:
                return []
            self._partial = text
            return [self._result(text, final=False)]

    def end_utterance(self) -> AsrResult | None:
        if not self._in_utterance:
            return None
        with self._calls():
            self._in_utterance = False
            self._partial = ""
            self.decoder.end_utt()
            text = self._text()
            return self._result(text, final=True) if text else None

    def reset(self) -> None:
        """Back to a fresh decoder's state (search removed, initial CMN) for the next stream."""
        with self._calls():
            if self._in_utterance:
                self._in_utterance = False
                self.decoder.end_utt()
            if self.has_search:
                self.has_search = False
                self.decoder.remove_search(_SEARCH)
            self.decoder.set_cmn(self._initial_cmn)
            self._samples = self._utt_start = 0
            self._partial = ""

    @contextlib.contextmanager
    def _calls(self) -> Iterator[None]:
        with self._lock:
            try:
                yield
            except RuntimeError as exc:            # pocketsphinx reports decoder failures this way
                self.broken = True
                raise _fail(f"pocketsphinx failed: {exc}") from exc

    def _text(self) -> str:
        hyp = self.decoder.hyp()
        return "" if hyp is None else " ".join(str(hyp.hypstr).split())

    def _result(self, text: str, final: bool) -> AsrResult:
        words = [seg for seg in (self.decoder.seg() or ()) if not _is_filler(str(seg.word))]
        utt_ms = self._utt_start * 1000 // SAMPLE_RATE
        if words:
            start = utt_ms + int(words[0].start_frame) * self._ms_per_frame
            end = utt_ms + (int(words[-1].end_frame) + 1) * self._ms_per_frame
        else:
            start, end = utt_ms, self._samples * 1000 // SAMPLE_RATE
        return AsrResult(text=text, final=final, start_ms=start, end_ms=end)


class PocketsphinxStream(AsrStream):
    def __init__(self, provider: PocketsphinxAsr, recognizer: Recognizer) -> None:
        self._provider = provider
        self._recognizer: Recognizer | None = recognizer
        self._queue = provider.pool.queue()        # this stream's calls: one at a time, in order
        self._closed = False

    async def feed(self, pcm: npt.NDArray[np.int16]) -> list[AsrResult]:
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
            raise TypeError(f"pcm must be an int16 numpy array, got {getattr(pcm, 'dtype', type(pcm))}")
        if pcm.ndim != 1:
            raise ValueError(f"pcm must be mono (1-D), got shape {pcm.shape}")
        recognizer = self._open_recognizer()
        chunk = pcm.copy()                         # the worker may outlive a cancelled caller
        return await self._call(recognizer.feed, chunk)

    async def end_utterance(self) -> AsrResult | None:
        return await self._call(self._open_recognizer().end_utterance)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        recognizer, self._recognizer = self._recognizer, None
        if recognizer is None:
            return
        pooled = await self._call(self._provider.checkin, recognizer)
        del recognizer
        if not pooled:   # the decoder is freed now that nothing holds it: hand its memory back
            await self._call(release_free_memory)

    def _open_recognizer(self) -> Recognizer:
        if self._closed or self._recognizer is None:
            raise _fail("the pocketsphinx stream is closed")
        return self._recognizer

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._provider.pool.run(self._queue, fn, *args)


class PocketsphinxAsr(AsrProvider):
    """Serves any number of streams from one thread pool and a pool of idle decoders."""

    name = "pocketsphinx"
    aliases = ("local",)

    def __init__(self, *, workers: int = 2, max_idle: int = 4,
                 kws_threshold: float = DEFAULT_KWS_THRESHOLD, cpu_share: float = CPU_SHARE) -> None:
        if workers < 1 or max_idle < 0:
            raise ValueError("workers must be >= 1 and max_idle >= 0")
        self.pool = FairPool(workers, "pocketsphinx", cpu_share)
        self._setup = self.pool.queue()            # decoders made and checked out for new streams
        self._max_idle = max_idle
        self._kws_threshold = kws_threshold
        self._pool_lock = threading.Lock()         # the idle lists and the shared LM, across workers
        self._idle: dict[Kind, list[Recognizer]] = {"lm": [], "bare": []}
        self._lm: Any = None                       # NGramModel shared by the LM decoders
        self._lm_lock = threading.Lock()

    async def open_stream(self, options: AsrOptions) -> AsrStream:
        search = parse_options(options, self._kws_threshold)
        recognizer = await self.run(self.checkout, search)
        return PocketsphinxStream(self, recognizer)

    async def prewarm(self, *, lm: int = 0, bare: int = 0) -> None:
        """Create idle decoders now (each holds the GIL for ~0.1-0.2 s) rather than at the first calls."""
        wanted: tuple[tuple[Kind, int], ...] = (("lm", lm), ("bare", bare))
        for kind, count in wanted:
            for _ in range(min(count, self._max_idle)):
                recognizer = await self.run(self._create, kind)
                await self.run(self.checkin, recognizer)

    async def close(self) -> None:
        """Stop the worker threads (after the queued calls) and drop the idle decoders."""
        await self.pool.close()
        with self._pool_lock:
            self._idle = {"lm": [], "bare": []}
            self._lm = None
        await asyncio.to_thread(release_free_memory)

    def idle_count(self, kind: Kind) -> int:
        with self._pool_lock:
            return len(self._idle[kind])

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking set-up work (decoders) on the pool, in the queue of new streams."""
        return await self.pool.run(self._setup, fn, *args)

    # Worker-thread side.

    def checkout(self, search: Search) -> Recognizer:
        with self._pool_lock:
            idle = self._idle[search.kind]
            recognizer = idle.pop() if idle else None
        if recognizer is None:
            recognizer = self._create(search.kind)
        try:
            self._install(recognizer, search)
        except BaseException:
            self.checkin(recognizer)
            raise
        return recognizer

    def checkin(self, recognizer: Recognizer) -> bool:
        """Keep the decoder for a later stream if the pool has room; True if it was kept."""
        try:
            recognizer.reset()
        except ProviderError:
            recognizer.broken = True               # broken decoder: let it go
        with self._pool_lock:
            idle = self._idle[recognizer.kind]
            if not recognizer.broken and len(idle) < self._max_idle:
                idle.append(recognizer)
                return True
        return False

    def _create(self, kind: Kind) -> Recognizer:
        try:
            # bestpath off for grammars and keywords: its lattice search at the end of an utterance
            # took minutes for a 500-word looping grammar on noise (and adds nothing to an FSG's result).
            decoder = pocketsphinx.Decoder(lm=None, loglevel=LOGLEVEL, bestpath=kind == "lm")
            time.sleep(0)       # the GIL for the event loop between the two long steps (~90 and ~130 ms)
            if kind == "bare":
                return Recognizer(decoder, kind, contextlib.nullcontext())
            with self._pool_lock:
                if self._lm is None:
                    self._lm = pocketsphinx.NGramModel(decoder.config, decoder.logmath,
                                                       pocketsphinx.get_model_path("en-us/en-us.lm.bin"))
                lm = self._lm
            decoder.add_lm(_LM_SEARCH, lm)
            decoder.activate_search(_LM_SEARCH)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise _fail(f"pocketsphinx cannot load its model: {exc}") from exc
        return Recognizer(decoder, kind, self._lm_lock)

    @staticmethod
    def _install(recognizer: Recognizer, search: Search) -> None:
        decoder = recognizer.decoder
        if search.mode == "grammar":
            for word in search.words:
                if decoder.lookup_word(word) is None:
                    raise _fail(f"pocketsphinx cannot use the grammar: The word '{word}' is missing in the "
                                "dictionary")
            try:
                decoder.add_jsgf_string(_SEARCH, search.grammar)
            except ValueError:
                raise _fail("pocketsphinx cannot use the grammar: PocketSphinx rejected it") from None
        elif search.mode == "keywords":
            for phrase, _ in search.keywords:
                for word in phrase.split():
                    if decoder.lookup_word(word) is None:
                        raise _fail(f"pocketsphinx has no pronunciation for '{word}' (keyword '{phrase}')")
            PocketsphinxAsr._add_kws(decoder, search.keywords)
        else:
            return                                 # LM decoders keep their LM search active
        recognizer.has_search = True
        decoder.activate_search(_SEARCH)

    @staticmethod
    def _add_kws(decoder: Any, keywords: tuple[tuple[str, float], ...]) -> None:
        # Thresholds per phrase exist only in the kws file format ("phrase/1e-20/").
        fd, path = tempfile.mkstemp(prefix="pbx-kws-", suffix=".txt")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.writelines(f"{phrase}/{threshold!r}/\n" for phrase, threshold in keywords)
            error = decoder.add_kws(_SEARCH, path)  # returns (not raises) its RuntimeError
        finally:
            os.unlink(path)
        if error is not None:
            raise _fail(f"pocketsphinx cannot use the keywords: {error}")
