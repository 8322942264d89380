"""Noise suppression: one 20 ms frame of one leg, ours (DenoiseBank.process_into) vs the library called
plainly (two Process10ms calls with a new bytes per call, numpy copies back: support/oracles/denoise.py).

Both run the same WebRTC suppressor (webrtc-noise-gain, level 2, AGC off) on speech in white noise at
10 dB SNR, so the difference is only the per-call overhead around it.  ``quality()`` gives the per-leg
cost in % of one core at 50 frames/s.
"""

from __future__ import annotations

import numpy as np

from pbx.core.denoise import DenoiseBank
from support.audio import espeak_speech, frames
from support.oracles import denoise as oracle

from harness import Case, FrameFn, per_frame_us

RATE = 16000
FRAME = 320
LEVEL = 2
FRAMES_PER_S = 50


def noisy_speech() -> list[np.ndarray]:
    speech = espeak_speech(RATE).astype(np.float64)
    noise = np.random.default_rng(1).standard_normal(len(speech))
    noise *= np.sqrt(np.mean(speech**2) / 10) / noise.std()
    return frames(np.clip(np.round(speech + noise), -32768, 32767).astype(np.int16), FRAME)


def ours() -> FrameFn:
    chunks = noisy_speech()
    bank = DenoiseBank(1, LEVEL)
    bank.enable(0)
    out = np.empty(FRAME, np.int16)
    process_into = bank.process_into
    count = len(chunks)

    def step(i: int) -> object:
        return process_into(0, chunks[i % count], out)

    return step


def reference() -> FrameFn:
    chunks = noisy_speech()
    proc = oracle.processor(LEVEL)
    out = np.empty(FRAME, np.int16)
    denoise_frame_into = oracle.denoise_frame_into
    count = len(chunks)

    def step(i: int) -> object:
        denoise_frame_into(proc, chunks[i % count], out)
        return out

    return step


CASE = Case("denoise per 20 ms frame (per leg)", f"{FRAME} samples @ 16 kHz, level {LEVEL}",
            ours, "webrtc-noise-gain, bytes per call", reference)


def cases() -> list[Case]:
    return [CASE]


def library_floor() -> FrameFn:
    """Only the two library calls, on bytes made in advance and with the result dropped."""
    chunks = [c.tobytes() for f in noisy_speech() for c in (f[:160], f[160:])]
    call = oracle.processor(LEVEL).Process10ms
    count = len(chunks)

    def step(i: int) -> object:
        j = 2 * i % count
        call(chunks[j])
        return call(chunks[j + 1])

    return step


def quality() -> str:
    us = per_frame_us(ours, 2000, 5)
    floor = per_frame_us(library_floor, 2000, 5)
    return (f"denoise: {us:.1f} µs CPU per 20 ms frame per leg = {us * FRAMES_PER_S / 1e4:.3f} % of one core "
            f"at {FRAMES_PER_S} frames/s (~{int(1e6 / (us * FRAMES_PER_S))} legs per core); the two library "
            f"calls alone take {floor:.1f} µs, so the wrapper adds {us - floor:.1f} µs")
