"""Speaking/silence state machine for all legs (VadBank) and the WebRTC VAD bank; rules in vad.pyx."""

import numpy as np
import numpy.typing as npt

SPEAKING: int
SILENCE: int
SEGMENT_CAP: int
WEBRTC_RATE: int
WEBRTC_FRAME_SIZES: tuple[int, ...]

# (slot, kind, time_ms, start_ms, duration_ms); start_ms + duration_ms == time_ms
VadEventTuple = tuple[int, int, int, int, int]

class VadBank:
    max_legs: int
    event_capacity: int
    def __init__(self, max_legs: int, event_capacity: int = 0) -> None: ...
    def configure(
        self,
        slot: int,
        *,
        speech_padding_ms: int = 250,
        silence_padding_ms: int = 100,
        ratio: float = 0.5,
        threshold: float = 0.5,
        silence_timeout_ms: int | None = None,
        max_buffer_secs: float = 50.0,
    ) -> None: ...
    def reset(self, slot: int) -> None: ...
    def feed(self, slot: int, value: float, window_start_ms: int, window_ms: int) -> int: ...
    def feed_many(
        self,
        slots: npt.NDArray[np.int32],
        values: npt.NDArray[np.float32],
        window_start_ms: npt.NDArray[np.int64],
        window_ms: int,
    ) -> int: ...
    def drain(self) -> list[VadEventTuple]: ...
    @property
    def pending(self) -> int: ...
    def speaking(self, slot: int) -> bool: ...
    def segment_start(self, slot: int) -> int | None: ...
    def cap_hit(self, slot: int) -> bool: ...

def webrtc_mode(voice_threshold: float) -> int: ...

class WebRtcBank:
    max_legs: int
    def __init__(self, max_legs: int) -> None: ...
    def configure(self, slot: int, voice_threshold: float = 0.5) -> None: ...
    def reset(self, slot: int) -> None: ...
    def mode(self, slot: int) -> int | None: ...
    def is_speech(self, slot: int, frame: npt.NDArray[np.int16] | memoryview) -> bool: ...
