"""A disk cache of synthesised speech, so that a prompt a bot says on every call is synthesised once.

Keyed by the provider's name, the text and every setting that changes the audio (speaker, speed,
rate, emotion, codec, subtitle, extra); not by credentials or volume (the server applies volume as a
gain after the cache). Only non-streaming ``tts`` commands use it: a streamed sentence is rarely
said twice. An entry is written once its synthesis completed without error (an interrupted or failed
synthesis stores nothing); a hit plays the stored audio in one-second chunks.

On disk: one file per entry in the configured folder, ``<sha256>.tts``: a magic line, a JSON line
(rate, word marks) and the raw s16le samples, written to a temporary name and renamed, so a crash
never leaves half an entry under a real name. The folder is bounded by ``max_bytes``: the least
recently used entries are removed (a hit refreshes an entry's mtime); an entry over a tenth of the
bound is not stored. A file that does not parse is removed and counts as a miss. Disk work runs on a
worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pbx.tts.base import TtsChunk, TtsProvider, TtsRequest, WordMark

log = logging.getLogger(__name__)

MAGIC = b"PYPBX-TTS 1\n"
SUFFIX = ".tts"
CHUNK_SECONDS = 1


@dataclass(frozen=True, slots=True)
class CachedSpeech:
    rate: int
    pcm: npt.NDArray[np.int16]
    words: tuple[WordMark, ...]


def cache_key(provider: str, request: TtsRequest) -> str:
    settings = [provider, request.text, request.speaker, request.speed, request.samplerate, request.emotion,
                request.codec, request.subtitle, request.extra]
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


class TtsCache:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.hits = self.misses = 0
        self._sizes: dict[str, int] | None = None     # key -> bytes, read from the folder on first use

    # -- disk (worker thread) ----------------------------------------------------------------------
    def load(self, key: str) -> CachedSpeech | None:
        path = self.directory / f"{key}{SUFFIX}"
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            speech = _parse(data)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("tts cache: removing unreadable %s: %s", path, exc)
            self._remove(key)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)                             # recently used
        return speech

    def store(self, key: str, speech: CachedSpeech) -> None:
        header = json.dumps({"rate": speech.rate, "words": [[w.sample, w.index] for w in speech.words]}).encode()
        data = MAGIC + header + b"\n" + speech.pcm.astype("<i2").tobytes()
        if len(data) > self.max_bytes // 10:
            return
        sizes = self._index()
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.directory / f"{key}{SUFFIX}")
        except OSError as exc:
            log.warning("tts cache: cannot store an entry in %s: %s", self.directory, exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return
        sizes[key] = len(data)
        self._evict()

    def _index(self) -> dict[str, int]:
        if self._sizes is None:
            self._sizes = {}
            with contextlib.suppress(OSError):
                for entry in os.scandir(self.directory):
                    if entry.name.endswith(SUFFIX):
                        self._sizes[entry.name[: -len(SUFFIX)]] = entry.stat().st_size
        return self._sizes

    def _evict(self) -> None:
        sizes = self._index()
        if sum(sizes.values()) <= self.max_bytes:
            return
        used: list[tuple[float, str]] = []
        for key in sizes:
            try:
                used.append(((self.directory / f"{key}{SUFFIX}").stat().st_mtime, key))
            except OSError:
                used.append((0.0, key))
        total = sum(sizes.values())
        for _, key in sorted(used):
            if total <= self.max_bytes:
                break
            total -= sizes.get(key, 0)
            self._remove(key)

    def _remove(self, key: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.directory / f"{key}{SUFFIX}")
        if self._sizes is not None:
            self._sizes.pop(key, None)

    @property
    def size_bytes(self) -> int:
        return sum(self._index().values())

    # -- synthesis through the cache -------------------------------------------------------------------
    async def synthesize(self, provider: TtsProvider, request: TtsRequest) -> AsyncIterator[TtsChunk]:
        """``provider``'s audio for ``request``, from the cache when it has it; a complete synthesis is stored."""
        key = cache_key(provider.name, request)
        cached = await asyncio.to_thread(self.load, key)
        if cached is not None and cached.rate == request.samplerate:
            self.hits += 1
            step = request.samplerate * CHUNK_SECONDS
            for start in range(0, len(cached.pcm), step):   # marks are offsets from the text's start
                yield TtsChunk(cached.pcm[start:start + step], cached.words if start == 0 else ())
            return
        self.misses += 1
        parts: list[npt.NDArray[np.int16]] = []
        words: list[WordMark] = []
        async for chunk in provider.synthesize(request):
            parts.append(chunk.pcm)
            words.extend(chunk.words)
            yield chunk
        # reached only when the provider finished: not when the consumer stopped (interrupt) or it failed
        pcm = np.concatenate(parts) if parts else np.zeros(0, np.int16)
        if len(pcm):
            await asyncio.to_thread(self.store, key, CachedSpeech(request.samplerate, pcm, tuple(words)))


def _parse(data: bytes) -> CachedSpeech:
    if not data.startswith(MAGIC):
        raise ValueError("not a cache entry")
    end = data.index(b"\n", len(MAGIC))
    header = json.loads(data[len(MAGIC):end])
    body = data[end + 1:]
    if len(body) % 2:
        raise ValueError("odd number of audio bytes")
    rate = int(header["rate"])
    words = tuple(WordMark(int(s), int(i)) for s, i in header["words"])
    return CachedSpeech(rate, np.frombuffer(body, dtype="<i2").astype(np.int16), words)
