"""Single-stream silero VAD: one leg, one onnxruntime call per 32 ms window, the way the silero-vad
package's OnnxWrapper drives the same model (64 samples of context + 512 new ones at 16 kHz, 32 + 256 at
8 kHz; state [2, 1, 128]).

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

    def __init__(self, session: Any, rate: int = 16000) -> None:
        self.session = session
        self.window = WINDOW * rate // 16000
        self.context_size = CONTEXT * rate // 16000
        self.state = np.zeros((2, 1, 128), dtype=np.float32)
        self.context = np.zeros((1, self.context_size), dtype=np.float32)
        self.sr = np.array(rate, dtype=np.int64)

    def __call__(self, window: npt.NDArray[np.float32]) -> float:
        """Speech probability of the next window (512 samples at 16 kHz, 256 at 8 kHz; float32 in [-1, 1])."""
        x = np.concatenate([self.context, window.reshape(1, self.window).astype(np.float32)], axis=1)
        out, self.state = self.session.run(None, {"input": x, "state": self.state, "sr": self.sr})
        self.context = x[:, -self.context_size:]
        return float(out[0, 0])


def probabilities(session: Any, pcm: npt.NDArray[np.int16], rate: int = 16000) -> npt.NDArray[np.float32]:
    """Probability of every whole 32 ms window of an int16 signal at ``rate``, from a fresh stream."""
    stream = SileroStream(session, rate)
    x = pcm.astype(np.float32) / 32768.0
    w = stream.window
    return np.array([stream(x[i * w:(i + 1) * w]) for i in range(len(x) // w)], dtype=np.float32)
