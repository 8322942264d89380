"""Mix int16 streams with per-input gains (Q10, 32-bit sum, one saturation); stereo interleave."""

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

# numpy declares ``__buffer__`` only for Python >= 3.12, so arrays are listed explicitly.
Int16Buffer: TypeAlias = npt.NDArray[np.int16] | Buffer

GAIN_Q_ONE: int
MAX_INPUTS: int
MAX_GAIN: float

def gain_to_q(gain: float) -> int: ...
def mix(inputs: Sequence[Int16Buffer], gains: Sequence[float]) -> npt.NDArray[np.int16]: ...
def mix_into(inputs: Sequence[Int16Buffer], gains: Sequence[float], out: Int16Buffer) -> int: ...
def interleave_stereo(left: Int16Buffer, right: Int16Buffer) -> npt.NDArray[np.int16]: ...
def interleave_stereo_into(left: Int16Buffer, right: Int16Buffer, out: Int16Buffer) -> int: ...
