"""The ten-vad package's own detector (its ctypes ``TenVad``, one Python call per hop).

The reference for core/ten.pyx (same library, so probabilities must be identical) and its
benchmark baseline.  Needs the optional ten-vad package; import this module only after
checking that it loads.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from ten_vad import TenVad


class TenStream:
    """One leg: a ``TenVad`` with the given hop; ``__call__`` gives one probability per hop."""

    def __init__(self, hop: int = 160, threshold: float = 0.5) -> None:
        self.hop = hop
        self.vad = TenVad(hop, threshold)

    def __call__(self, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
        if len(pcm) % self.hop:
            raise ValueError(f"pcm must hold a multiple of {self.hop} samples")
        out = np.empty(len(pcm) // self.hop, np.float32)
        for k in range(len(out)):
            # TenVad passes the array's data pointer to C: each hop must be its own contiguous array
            out[k] = self.vad.process(np.ascontiguousarray(pcm[k * self.hop:(k + 1) * self.hop]))[0]
        return out


def probabilities(pcm: npt.NDArray[np.int16], hop: int = 160) -> npt.NDArray[np.float32]:
    """Probabilities of a whole signal (truncated to whole hops) from a fresh detector."""
    n = len(pcm) // hop * hop
    return TenStream(hop)(pcm[:n])
