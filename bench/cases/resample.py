"""Streaming resampler, one 20 ms frame of real speech per call, against python-soxr.

The reference is soxr's ``ResampleStream`` fed the same int16 20 ms frames, in
its quick ("QQ") and high ("HQ") qualities.  Neither fits the real-time path
(QQ aliases, HQ holds output back and bursts; see tests/test_resample.py and
``quality()`` below), so the comparison is one of cost only.
"""

from __future__ import annotations

import numpy as np
import soxr

from pbx.core.resample import Resampler
from support.audio import espeak_speech
from support.sweep import sweep

from harness import Case, FrameFn

PAIRS = [(8000, 16000), (16000, 8000), (16000, 48000), (48000, 16000), (24000, 16000)]
BARS_US = {(8000, 16000): 3.0}
SPEECH_FRAMES = 100


def label(rate: int) -> str:
    return f"{rate // 1000}k"


def speech_frames(rate: int) -> list[np.ndarray]:
    size = rate // 50
    pcm = espeak_speech(rate)
    return [np.ascontiguousarray(pcm[i * size:(i + 1) * size]) for i in range(SPEECH_FRAMES)]


def ours(in_rate: int, out_rate: int) -> FrameFn:
    frames = speech_frames(in_rate)
    out = np.empty(out_rate // 50, dtype=np.int16)
    process_into = Resampler(in_rate, out_rate).process_into

    def fn(i: int) -> object:
        return process_into(frames[i % SPEECH_FRAMES], out)

    return fn


def soxr_stream(in_rate: int, out_rate: int, quality: str) -> FrameFn:
    frames = speech_frames(in_rate)
    resample_chunk = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=quality).resample_chunk

    def fn(i: int) -> object:
        return resample_chunk(frames[i % SPEECH_FRAMES])

    return fn


def cases() -> list[Case]:
    result = []
    for in_rate, out_rate in PAIRS:
        for quality in ("QQ", "HQ"):
            result.append(Case(
                kernel=f"resample {label(in_rate)}->{label(out_rate)}",
                frame=f"{in_rate // 50} in -> {out_rate // 50} out",
                ours=lambda i=in_rate, o=out_rate: ours(i, o),
                baseline=f"soxr ResampleStream {quality}",
                reference=lambda i=in_rate, o=out_rate, q=quality: soxr_stream(i, o, q),
                bar_us=BARS_US.get((in_rate, out_rate)),
            ))
    return result


def held_back_ms(in_rate: int, out_rate: int, quality: str) -> float:
    """Most output soxr owes at any point of a 1 s stream of 20 ms frames, in ms."""
    stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=quality)
    counts = np.array([len(stream.resample_chunk(f)) for f in speech_frames(in_rate)[:50]])
    owed = np.arange(1, 51) * (out_rate // 50) - np.cumsum(counts)
    return float(owed.max() * 1000 / out_rate)


def quality() -> str:
    lines = [
        "| resampler | pair | worst image/residual dB | worst alias dB | held back ms |",
        "|---|---|---:|---:|---:|",
    ]
    for in_rate, out_rate in PAIRS:
        pair = f"{label(in_rate)}->{label(out_rate)}"
        candidates = [
            ("pbx.core.resample", lambda i=in_rate, o=out_rate: Resampler(i, o).process, 0.0),
            *[
                (f"soxr {q}", lambda i=in_rate, o=out_rate, q=q: soxr.ResampleStream(
                    i, o, 1, dtype="int16", quality=q).resample_chunk, held_back_ms(in_rate, out_rate, q))
                for q in ("QQ", "HQ")
            ],
        ]
        for name, make, held in candidates:
            s = sweep(make, in_rate, out_rate, points=9)
            alias = "-" if s.worst_alias_db is None else f"{s.worst_alias_db:.1f}"
            lines.append(f"| {name} | {pair} | {s.worst_residual_db:.1f} | {alias} | {held:.1f} |")
    return "\n".join(lines)
