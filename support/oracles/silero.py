"""Single-stream silero VAD: one leg, one onnxruntime call per 32 ms window, the way the silero-vad
package's OnnxWrapper drives the same model (64 samples of context + 512 new ones, state [2, 1, 128]).

The reference for the batched kernel (core/silero.pyx) and its benchmark baseline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

WINDOW = 512
CONTEXT = 64


def make_session(model: bytes, threads: int = 1) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


class SileroStream:
    """One leg's silero state; ``session`` may be shared between streams (it holds no state)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.state = np.zeros((2, 1, 128), dtype=np.float32)
        self.context = np.zeros((1, CONTEXT), dtype=np.float32)
        self.sr = np.array(16000, dtype=np.int64)

    def __call__(self, window: npt.NDArray[np.float32]) -> float:
        """Speech probability of the next 512 samples (float32 in [-1, 1])."""
        x = np.concatenate([self.context, window.reshape(1, WINDOW).astype(np.float32)], axis=1)
        out, self.state = self.session.run(None, {"input": x, "state": self.state, "sr": self.sr})
        self.context = x[:, -CONTEXT:]
        return float(out[0, 0])


def probabilities(session: Any, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    """Probability of every whole 512-sample window of a 16 kHz int16 signal, from a fresh stream."""
    stream = SileroStream(session)
    x = pcm.astype(np.float32) / 32768.0
    n = len(x) // WINDOW
    return np.array([stream(x[i * WINDOW:(i + 1) * WINDOW]) for i in range(n)], dtype=np.float32)
