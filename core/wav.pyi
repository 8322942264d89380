"""16-bit PCM WAV writer whose file is a valid WAV after every flush."""

import os
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt

STEP_MESSAGES: tuple[str, ...]

class WavWriter:
    def __init__(
        self,
        path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
        sample_rate: int,
        channels: int = 1,
        flush_ms: int = 200,
        *,
        durable: bool = False,
    ) -> None: ...
    def write(self, pcm: npt.NDArray[np.int16]) -> None: ...
    def write_silence(self, frames: int) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    @property
    def frames_written(self) -> int: ...
    @property
    def frames_flushed(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def sample_rate(self) -> int: ...
    @property
    def channels(self) -> int: ...
    @property
    def closed(self) -> bool: ...
