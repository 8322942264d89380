"""The mixer's fixed-point rules in NumPy, with 64-bit sums (so the kernel's 32-bit sum is checked too).

Gain -> Q10 integer ``floor(gain * 1024 + 0.5)``; out = saturate16((sum(x * gain_q) + 512) >> 10),
rounded half up and saturated once, after the whole sum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

GAIN_Q_BITS = 10
MAX_INPUTS = 16
MAX_GAIN = 4.0


def gain_to_q(gain: float) -> int:
    return math.floor(gain * (1 << GAIN_Q_BITS) + 0.5)


def mix(inputs: Sequence[np.ndarray], gains: Sequence[float]) -> np.ndarray:
    acc = np.full(len(inputs[0]), 1 << (GAIN_Q_BITS - 1), dtype=np.int64)
    for x, gain in zip(inputs, gains, strict=True):
        acc += x.astype(np.int64) * gain_to_q(gain)
    return np.clip(acc >> GAIN_Q_BITS, -32768, 32767).astype(np.int16)


def interleave_stereo(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.column_stack([left, right]).astype(np.int16).reshape(-1)
