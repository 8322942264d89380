"""Mixer (two speech streams, gains 0.8 and 1.7) and stereo interleave, 20 ms at 16 kHz, vs NumPy."""

from __future__ import annotations

import numpy as np

from pbx.core import mixer
from support.audio import espeak_speech, frames
from support.oracles import mixer as oracle

from harness import Case, FrameFn

RATE = 16000
FRAME = 320
GAINS = [0.8, 1.7]
OFFSET = 40   # frames between the two speech streams, so they differ


def speech() -> list[np.ndarray]:
    return frames(espeak_speech(RATE), FRAME)


def mix_ours() -> FrameFn:
    chunks = speech()
    count = len(chunks)
    pairs = [[chunks[i], chunks[(i + OFFSET) % count]] for i in range(count)]
    out = np.empty(FRAME, np.int16)
    mix_into = mixer.mix_into

    def step(i: int) -> object:
        return mix_into(pairs[i % count], GAINS, out)

    return step


def mix_reference() -> FrameFn:
    chunks = speech()
    count = len(chunks)
    pairs = [[chunks[i], chunks[(i + OFFSET) % count]] for i in range(count)]

    def step(i: int) -> object:
        return oracle.mix(pairs[i % count], GAINS)

    return step


def interleave_ours() -> FrameFn:
    chunks = speech()
    count = len(chunks)
    out = np.empty(2 * FRAME, np.int16)
    interleave_into = mixer.interleave_stereo_into

    def step(i: int) -> object:
        return interleave_into(chunks[i % count], chunks[(i + OFFSET) % count], out)

    return step


def interleave_reference() -> FrameFn:
    chunks = speech()
    count = len(chunks)
    out = np.empty(2 * FRAME, np.int16)

    def step(i: int) -> object:
        out[0::2] = chunks[i % count]
        out[1::2] = chunks[(i + OFFSET) % count]
        return out

    return step


def cases() -> list[Case]:
    frame = f"{FRAME} samples @ 16 kHz"
    return [
        Case("mixer 2 inputs", frame, mix_ours, "numpy int64 oracle (same fixed point)", mix_reference),
        Case("stereo interleave", frame, interleave_ours, "numpy strided assignment", interleave_reference),
    ]
