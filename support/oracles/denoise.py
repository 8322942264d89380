"""The webrtc-noise-gain library driven the plain way: one ``Process10ms`` per 10 ms chunk, a new ``bytes``
built for each call and the result copied back with numpy.

The reference for core/denoise.pyx (which must give bit-identical audio) and its benchmark baseline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from webrtc_noise_gain import AudioProcessor

CHUNK = 160  # samples per library call (10 ms at 16 kHz)


def processor(level: int) -> Any:
    """One suppressor at ``level`` (1..4) with AGC off (auto_gain=0)."""
    return AudioProcessor(0, level)


def denoise_frame_into(proc: Any, frame: npt.NDArray[np.int16], out: npt.NDArray[np.int16]) -> None:
    """Denoise ``frame`` (a multiple of 160 samples) into ``out``, one library call per 10 ms."""
    for start in range(0, len(frame), CHUNK):
        chunk = frame[start:start + CHUNK].tobytes()
        out[start:start + CHUNK] = np.frombuffer(proc.Process10ms(chunk).audio, np.int16)


def denoise(signal: npt.NDArray[np.int16], level: int = 2) -> npt.NDArray[np.int16]:
    """A whole signal through one fresh suppressor (the tail short of 10 ms is dropped)."""
    n = len(signal) // CHUNK * CHUNK
    out = np.empty(n, np.int16)
    denoise_frame_into(processor(level), np.ascontiguousarray(signal[:n], np.int16), out)
    return out
