"""WAV recording: one 20 ms stereo frame per call into a file kept valid every 200 ms.

Ours: ``WavWriter.write`` (C buffer; every 10th call a ``pwrite`` of the data and one of the
header). Baseline: Python's ``wave`` module on a buffered file, ``writeframesraw`` per call and,
at the same 200 ms flush points, ``writeframes(b"")`` (which patches the header sizes) plus
``file.flush()``, so that both leave a valid file on the OS at the same moments. Neither
fsyncs. Files go to a temporary directory; each run unlinks the previous run's file.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pbx.core.wav import WavWriter
from support.audio import espeak_speech, frames

from harness import Case, FrameFn

RATE = 16000
FRAME = 320                                 # 20 ms at 16 kHz
FLUSH_MS = 200
CALLS_PER_FLUSH = FLUSH_MS // 20


def _stereo_frames() -> list[np.ndarray]:
    speech = espeak_speech(RATE)
    stereo = np.column_stack((speech, speech[::-1])).astype(np.int16).ravel()
    return frames(stereo, 2 * FRAME)


def _file_maker(directory: Path, prefix: str) -> Callable[[], Path]:
    """A fresh path per run; the previous run's file is unlinked (a writer still open on it is fine)."""
    counter = itertools.count()

    def make() -> Path:
        for old in directory.glob(f"{prefix}-*.wav"):
            old.unlink()
        return directory / f"{prefix}-{next(counter)}.wav"

    return make


def cases() -> list[Case]:
    directory = Path(tempfile.mkdtemp(prefix="pypbx-bench-wav-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    pcm = _stereo_frames()
    ours_path = _file_maker(directory, "ours")
    ref_path = _file_maker(directory, "wave")

    def ours() -> FrameFn:
        write = WavWriter(ours_path(), RATE, 2, flush_ms=FLUSH_MS).write
        n = len(pcm)

        def fn(i: int) -> None:
            write(pcm[i % n])

        return fn

    def reference() -> FrameFn:
        f = open(ref_path(), "wb")  # noqa: SIM115 - stays open for the run, like the writer
        w = wave.open(f, "wb")  # noqa: SIM115
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        n = len(pcm)
        calls = itertools.count(1)

        def fn(i: int) -> None:
            w.writeframesraw(pcm[i % n])
            if next(calls) % CALLS_PER_FLUSH == 0:
                w.writeframes(b"")          # rewrites the RIFF and data sizes when they changed
                f.flush()

        return fn

    return [Case(
        kernel="WAV write (stereo 16 kHz)",
        frame=f"{FRAME} frames x2 ch, flush {FLUSH_MS} ms",
        ours=ours,
        baseline="wave.writeframesraw + header patch/flush every 200 ms",
        reference=reference,
    )]
