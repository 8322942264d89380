from os import PathLike

import numpy as np
import numpy.typing as npt

from pbx.core.codec import Codec
from pbx.core.playout import Playout
from pbx.core.srtp import SrtpSession
from pbx.core.wav import WavWriter

SPEAKING: int
SILENCE: int
SEGMENT_CAP: int
DTMF: int
PLAY_STARTED_: int
PLAY_ENDED_: int
PLAY_DROPPED_: int
RTP_TIMEOUT: int
LATCHED: int
RECORDER_ERROR: int
INBOUND_OVERFLOW: int
RTCP_BYE_: int
TRANSPORTS: dict[str, int]
INBOUND_BUFFER_SECONDS: int

EngineEventTuple = tuple[int, int, int, int, int, int, int]

class Leg:
    slot: int
    transport: int
    codec: Codec
    payload_type: int
    dtmf_pt: int
    playout: Playout
    silero8: bool
    rx_packets: int
    rx_bad: int
    rx_foreign: int
    rx_other_pt: int
    tx_packets: int
    tx_errors: int
    dtmf_digits: int
    relayed: int
    tx_octets: int
    rtcp_rx: int
    rtcp_tx: int
    rr_fraction_lost: int
    rr_cumulative_lost: int
    rr_jitter: int
    rr_count: int
    rtt_ms: float
    stream_skipped: int
    latches: int
    rx_control: int
    rx_unkeyed: int
    @property
    def stats(self) -> dict[str, object]: ...
    @property
    def remote(self) -> tuple[str, int] | None: ...
    @property
    def rtcp_remote(self) -> tuple[str, int] | None: ...
    @property
    def latched(self) -> bool: ...
    @property
    def rtp_timeout_ms(self) -> float: ...
    @property
    def ssrc(self) -> int: ...

class Engine:
    max_legs: int
    frames: int
    skipped_frames: int
    lost_events: int
    relay_bridges: bool
    epoch_offset_ms: float
    def __init__(self, max_legs: int = 4096, event_capacity: int = 65536) -> None: ...
    def add_leg(
        self, transport: str, codec: str, now_ms: float, *, rate: int = 0, payload_type: int = -1,
        dtmf_payload_type: int = -1, ptime_ms: int = 20, fd: int = -1, remote: tuple[str, int] | None = None,
        latch: bool = False, jitter_min_ms: float = 20.0, jitter_max_ms: float = 200.0,
        rtp_timeout_ms: float = 0.0, ssrc: int | None = None, stream_silence: bool = False,
        rtcp_interval_ms: float = 0.0, rtcp_fd: int = -1, rtcp_remote: tuple[str, int] | None = None,
        control: bool = False,
    ) -> Leg: ...
    def remove_leg(self, leg: Leg) -> None: ...
    def leg(self, slot: int) -> Leg | None: ...
    @property
    def leg_count(self) -> int: ...
    def set_vad(
        self, leg: Leg, kind: str, *, speech_padding_ms: int = 250, silence_padding_ms: int = 100,
        ratio: float = 0.5, voice_threshold: float = 0.5, silence_timeout_ms: int | None = None,
        max_buffer_secs: float = 50.0, silero_threads: int = 1,
    ) -> None: ...
    def set_silero(self, model: str = "float", skip: bool = True, rate: str = "16000") -> None: ...
    @property
    def silero_counts(self) -> tuple[int, int]: ...
    def set_denoise(self, leg: Leg, enabled: bool) -> None: ...
    def set_asr_tap(self, leg: Leg, enabled: bool, max_seconds: float = 50.0) -> None: ...
    def drain_asr(self) -> list[tuple[Leg, npt.NDArray[np.int16]]]: ...
    def set_recorder(self, leg: Leg, path: str | PathLike[str], samplerate: int = 16000, ptime_ms: int = 200) -> None: ...
    def attach_recorder(self, leg: Leg, rec: WavWriter) -> None: ...
    def detach_recorder(self, leg: Leg) -> WavWriter | None: ...
    def stop_recorder(self, leg: Leg) -> None: ...
    def set_inbound_mute(self, leg: Leg, muted: bool) -> None: ...
    def bridge(self, a: Leg, b: Leg) -> None: ...
    def unbridge(self, a: Leg) -> None: ...
    def send_dtmf(self, leg: Leg, digits: str) -> None: ...
    def set_remote(self, leg: Leg, remote: tuple[str, int], *, rtcp_remote: tuple[str, int] | None = None) -> None: ...
    def set_codec(self, leg: Leg, codec: str, *, rate: int = 0, payload_type: int = -1, dtmf_payload_type: int = -1,
                  ptime_ms: int = 20) -> None: ...
    def set_srtp(self, leg: Leg, tx: SrtpSession, rx: SrtpSession) -> None: ...
    def drain_control(self) -> list[tuple[int, tuple[str, int], bytes]]: ...
    def set_rtp_timeout(self, leg: Leg, ms: float) -> None: ...
    def feed(self, leg: Leg, data: bytes | bytearray | memoryview) -> int: ...
    def push_packets(
        self, slots: npt.NDArray[np.int32], blob: bytes | bytearray | memoryview,
        offsets: npt.NDArray[np.int64], arrival_ms: npt.NDArray[np.float64],
    ) -> int: ...
    def drain_out(self) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64], bytes]: ...
    def tick(self, now_ms: float) -> list[EngineEventTuple]: ...
    @property
    def next_frame_ms(self) -> float: ...
