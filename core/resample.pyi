"""Streaming polyphase FIR resampler for the 20 ms real-time path (int16 in and out).

Pairs: 8000<->16000, 8000<->48000, 16000<->24000, 16000<->48000.  Every call
returns exactly ``len(pcm) * out_rate / in_rate`` samples at once; ``len(pcm)``
must be a multiple of ``ratio[1]``.  Group delay <= 2 ms, alias/image
rejection >= 60 dB over the passband (see the module docstring).
"""

import numpy as np
import numpy.typing as npt

KAISER_BETA: float
DESIGNS: dict[str, tuple[int, float, float, int]]
PAIRS: dict[tuple[int, int], tuple[int, int, str]]
SUPPORTED: str

def design_taps(up: int, proto_rate: int, f_pass: float, f_stop: float, ntaps: int) -> npt.NDArray[np.int32]:
    """Kaiser-windowed sinc cut off mid-transition, gain ``up``, rounded to Q15."""

class Resampler:
    def __init__(self, in_rate: int, out_rate: int) -> None: ...
    @property
    def in_rate(self) -> int: ...
    @property
    def out_rate(self) -> int: ...
    @property
    def ratio_up(self) -> int: ...
    @property
    def ratio_down(self) -> int:
        """The input step: ``len(pcm)`` must be a multiple of it."""
    @property
    def ratio(self) -> tuple[int, int]:
        """``(up, down)``: out_rate / in_rate in lowest terms."""
    @property
    def delay_samples(self) -> int:
        """Group delay added by the filter, in samples at the output rate."""
    @property
    def taps(self) -> npt.NDArray[np.int32]:
        """The prototype filter at ``in_rate * up`` Hz: Q15 taps with gain ``up`` (a copy)."""
    def process(self, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Resample one chunk; returns ``len(pcm) * out_rate / in_rate`` samples."""
    def process_into(self, pcm: npt.NDArray[np.int16], out: npt.NDArray[np.int16]) -> int:
        """Resample one chunk into ``out`` (may be longer); returns the samples written."""
    def reset(self) -> None:
        """Forget the history: the next call starts from silence."""
