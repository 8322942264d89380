"""Adaptive jitter buffer for one received RTP audio stream; time is passed in by the caller."""

from typing import Final

import numpy as np
import numpy.typing as npt

NOTHING: Final[int]
FRAME: Final[int]
LOSS: Final[int]
EXPAND: Final[int]
EVENT: Final[int]
PUT_OK: Final[int]
PUT_RESYNC: Final[int]
PUT_DUPLICATE: Final[int]
PUT_LATE: Final[int]
PUT_OVERFLOW: Final[int]
PUT_OVERSIZED: Final[int]
PUT_BAD_TIME: Final[int]

# (kind, seq, timestamp, ssrc, payload_type, marker, payload)
JitterItem = tuple[int, int, int, int, int, bool, bytes]

class JitterBuffer:
    def __init__(
        self,
        clock_rate: int,
        frame_samples: int,
        min_delay_ms: float = 20.0,
        max_delay_ms: float = 200.0,
        capacity: int = 64,
        max_payload: int = 1500,
        event_pt: int = -1,
        resync_ms: float = 1000.0,
    ) -> None: ...
    def put(
        self,
        seq: int,
        ts: int,
        ssrc: int,
        pt: int,
        marker: bool,
        payload: bytes | bytearray | memoryview | npt.NDArray[np.uint8],
        arrival_ms: float,
    ) -> int: ...
    def pop(self, now_ms: float) -> JitterItem | None: ...
    def pop_into(self, now_ms: float, out: bytearray | memoryview | npt.NDArray[np.uint8]) -> int: ...
    @property
    def clock_rate(self) -> int: ...
    @property
    def frame_samples(self) -> int: ...
    @property
    def min_delay_ms(self) -> float: ...
    @property
    def max_delay_ms(self) -> float: ...
    @property
    def capacity(self) -> int: ...
    @property
    def max_payload(self) -> int: ...
    @property
    def event_pt(self) -> int: ...
    @property
    def resync_ms(self) -> float: ...
    @property
    def last_seq(self) -> int: ...
    @property
    def last_timestamp(self) -> int: ...
    @property
    def last_ssrc(self) -> int: ...
    @property
    def last_payload_type(self) -> int: ...
    @property
    def last_marker(self) -> bool: ...
    @property
    def last_length(self) -> int: ...
    @property
    def target_delay_ms(self) -> float: ...
    @property
    def jitter_ms(self) -> float: ...
    @property
    def playout_delay_ms(self) -> float: ...
    @property
    def buffered(self) -> int: ...
    @property
    def stats(self) -> dict[str, int]: ...
