"""Reference resampler in plain NumPy: zero-stuff, convolve, decimate.

Designs the same Kaiser-windowed sinc as ``pbx.core.resample`` (numpy's own
``kaiser``/``sinc``; the tests check the taps agree) and applies it the
textbook way over the whole signal at once, in exact int64 arithmetic:
insert ``up - 1`` zeros after every input sample, convolve causally with the
Q15 prototype (gain ``up``), keep every ``down``-th sample starting at
``centre mod down``, round half up and saturate to int16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

KAISER_BETA = 0.1102 * (75.0 - 8.7)   # Kaiser's formula for 75 dB

# name -> (prototype rate, passband edge, stopband edge, taps)
DESIGNS: dict[str, tuple[int, float, float, int]] = {
    "16k": (16000, 3400.0, 4600.0, 63),
    "48k-wide": (48000, 6800.0, 9200.0, 95),
    "48k-narrow": (48000, 3400.0, 4600.0, 189),
}
# (in_rate, out_rate) -> (up, down, design)
PAIRS: dict[tuple[int, int], tuple[int, int, str]] = {
    (8000, 16000): (2, 1, "16k"),
    (16000, 8000): (1, 2, "16k"),
    (16000, 48000): (3, 1, "48k-wide"),
    (48000, 16000): (1, 3, "48k-wide"),
    (24000, 16000): (2, 3, "48k-wide"),
    (16000, 24000): (3, 2, "48k-wide"),
    (8000, 48000): (6, 1, "48k-narrow"),
    (48000, 8000): (1, 6, "48k-narrow"),
}


@dataclass(frozen=True)
class Design:
    up: int
    down: int
    proto_rate: int
    f_pass: float
    f_stop: float
    taps: npt.NDArray[np.int64]   # Q15, gain ``up``

    @property
    def centre(self) -> int:
        return (len(self.taps) - 1) // 2

    @property
    def phase(self) -> int:
        """Up-sampled index of output 0: the latest the first input block can feed."""
        return self.centre % self.down

    @property
    def delay(self) -> int:
        """Group delay in output samples."""
        return self.centre // self.down


def design(in_rate: int, out_rate: int) -> Design:
    up, down, name = PAIRS[(in_rate, out_rate)]
    proto_rate, f_pass, f_stop, ntaps = DESIGNS[name]
    cutoff = (f_pass + f_stop) / proto_rate            # fraction of the prototype's Nyquist
    n = np.arange(ntaps) - (ntaps - 1) / 2
    h = up * cutoff * np.sinc(cutoff * n) * np.kaiser(ntaps, KAISER_BETA)
    return Design(up, down, proto_rate, f_pass, f_stop, np.floor(h * 32768 + 0.5).astype(np.int64))


def resample(pcm: npt.NDArray[np.int16], in_rate: int, out_rate: int) -> npt.NDArray[np.int16]:
    """Whole-signal resampling from silence; ``len(pcm)`` must be a multiple of ``down``."""
    d = design(in_rate, out_rate)
    if len(pcm) % d.down:
        raise ValueError(f"length {len(pcm)} is not a multiple of {d.down}")
    stuffed = np.zeros(len(pcm) * d.up, dtype=np.int64)
    stuffed[:: d.up] = pcm
    filtered = np.convolve(stuffed, d.taps)[: len(stuffed)]
    acc = filtered[d.phase :: d.down]
    out: npt.NDArray[np.int16] = np.clip((acc + 16384) >> 15, -32768, 32767).astype(np.int16)
    return out
