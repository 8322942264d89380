"""Noise suppression for the inbound path of legs with ``denoise: true``, one WebRTC suppressor per leg."""

from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

# numpy declares ``__buffer__`` only for Python >= 3.12, so arrays are listed explicitly.
Int16Buffer: TypeAlias = npt.NDArray[np.int16] | Buffer

RATE: int
CHUNK: int
FRAME: int
DELAY_SAMPLES: int
MAX_LEVEL: int

def default_processor() -> Callable[[int, int], Any]: ...

class DenoiseBank:
    max_legs: int
    level: int
    def __init__(
        self, max_legs: int, level: int = 2, processor: Callable[[int, int], Any] | None = None
    ) -> None: ...
    def enable(self, slot: int) -> None: ...
    def disable(self, slot: int) -> None: ...
    def is_enabled(self, slot: int) -> bool: ...
    def process(self, slot: int, frame: Int16Buffer) -> npt.NDArray[np.int16]: ...
    def process_into(self, slot: int, frame: Int16Buffer, out: Int16Buffer) -> int: ...
