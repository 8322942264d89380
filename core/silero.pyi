"""Silero VAD for every leg, one onnxruntime inference per 32 ms window over all legs that have one."""

from typing import Any

import numpy as np
import numpy.typing as npt

MODEL_FILE: str
MODEL_FILES: dict[str, str]
SKIP_KEEP: int
SKIP_ZERO: int
SKIP_SILENCE: int
SKIP_POLICIES: dict[str, int]
SILENCE_WINDOWS: int
SKIP_AFTER: int
INPUT_NAMES: tuple[str, ...]
OUTPUT_NAMES: tuple[str, ...]
WINDOW: int
WINDOW_MS: int
CONTEXT: int
RATE: int

def model_bytes(name: str = "float") -> bytes: ...
def make_session(threads: int = 1, model: bytes | str | None = None) -> Any: ...

class SileroBatch:
    max_legs: int
    threads: int
    n_results: int
    model_name: str
    skip_below: float
    skip_policy: int
    skip_after: int
    n_inferred: int
    n_skipped: int
    rate: int
    window: int
    context: int
    row: int
    def __init__(
        self,
        max_legs: int,
        threads: int = 1,
        model: bytes | str | None = None,
        skip_below: float = 0.0,
        skip_policy: str = "keep",
        skip_after: int = 8,
        rate: int = 16000,
    ) -> None: ...
    def infer(
        self, slots: npt.ArrayLike, windows: npt.ArrayLike
    ) -> npt.NDArray[np.float32]: ...
    def infer_into(
        self,
        slots: npt.NDArray[np.int32],
        windows: npt.NDArray[np.float32],
        out: npt.NDArray[np.float32],
    ) -> int: ...
    def push(self, slot: int, pcm: npt.NDArray[np.int16], start_ms: int) -> int: ...
    def run_ready(self) -> int: ...
    def results(
        self,
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
    def result_energies(self) -> npt.NDArray[np.float64]: ...
    @property
    def ready(self) -> int: ...
    def reset(self, slot: int) -> None: ...
    def state(self, slot: int) -> npt.NDArray[np.float32]: ...
