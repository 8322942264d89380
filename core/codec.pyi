import numpy as np
import numpy.typing as npt

CODEC_NAMES: dict[str, int]

class Codec:
    kind: int
    audio_rate: int
    clock_rate: int
    frame_samples: int
    frame_ticks: int
    def __init__(self, name: str, rate: int = 0, complexity: int = 5) -> None: ...
    def decode(self, payload: bytes) -> npt.NDArray[np.int16]: ...
    def conceal(self) -> npt.NDArray[np.int16]: ...
    def encode(self, pcm: npt.ArrayLike) -> bytes: ...
