"""TEN VAD (optional ten-vad package): ``TenBank.process_into`` on one 20 ms frame (two 10 ms hops)
vs the package's own ctypes ``TenVad.process`` called once per hop, on speech framed by silence.

Without the package (or Debian's libc++1) there are no cases: a note goes to stderr.
"""

from __future__ import annotations

import sys

import numpy as np

from pbx.core.ten import TenBank
from support.audio import espeak_speech, frames

from harness import Case, FrameFn

HOP = 160
FRAME = 320


def speech_frames() -> list[np.ndarray]:
    pause = np.zeros(8000, np.int16)
    pcm = np.concatenate([pause, espeak_speech(16000), pause])
    return frames(pcm[:len(pcm) // FRAME * FRAME], FRAME)


def ours() -> FrameFn:
    chunks = speech_frames()
    bank = TenBank(1, hop=HOP)
    bank.enable(0)
    out = np.empty(FRAME // HOP, np.float32)
    process_into = bank.process_into
    count = len(chunks)

    def step(i: int) -> object:
        return process_into(0, chunks[i % count], out)

    return step


def package() -> FrameFn:
    from ten_vad import TenVad

    hops = [(f[:HOP].copy(), f[HOP:].copy()) for f in speech_frames()]
    vad = TenVad(HOP)
    count = len(hops)

    def step(i: int) -> object:
        a, b = hops[i % count]
        return vad.process(a), vad.process(b)

    return step


def cases() -> list[Case]:
    try:
        TenBank(1)
    except ImportError as exc:
        print(f"(ten: skipped, {exc})", file=sys.stderr)
        return []
    return [
        Case("ten VAD per 20 ms frame", "320 samples @ 16 kHz, 2 hops of 160",
             ours, "ten_vad.TenVad.process (ctypes) x2", package),
    ]
