"""Optional TEN VAD bank: C calls into the ten-vad package's library (pip install 'pypbx[ten]'); see ten.pyx."""

import numpy as np
import numpy.typing as npt

RATE: int
FRAME: int
HOPS: tuple[int, ...]
MISSING_MESSAGE: str

def library_path() -> str: ...

class TenBank:
    max_legs: int
    hop: int
    library: str
    version: str
    def __init__(self, max_legs: int, hop: int = 160) -> None: ...
    def enable(self, slot: int, threshold: float = 0.5) -> None: ...
    def disable(self, slot: int) -> None: ...
    def enabled(self, slot: int) -> bool: ...
    def process(self, slot: int, pcm: npt.NDArray[np.int16] | memoryview) -> npt.NDArray[np.float32]: ...
    def process_into(
        self, slot: int, pcm: npt.NDArray[np.int16] | memoryview, out: npt.NDArray[np.float32]
    ) -> int: ...
