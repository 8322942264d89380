"""Opus encoder and decoder over the system libopus (int16 audio, interleaved when stereo).

A frame is 2.5, 5, 10, 20, 40 or 60 ms per channel; sample rates 8000, 12000,
16000, 24000 or 48000 Hz; 1 or 2 channels.  libopus failures raise
:class:`pbx.core.errors.CodecError` with libopus' message and code.
"""

from typing import Literal

import numpy as np
import numpy.typing as npt

Packet = bytes | bytearray | memoryview
Application = Literal["voip", "audio", "restricted_lowdelay"]

class OpusEncoder:
    @property
    def sample_rate(self) -> int: ...
    @property
    def channels(self) -> int: ...
    def __init__(
        self,
        sample_rate: int,
        channels: int = 1,
        application: Application = "voip",
        bitrate: int | None = None,
        complexity: int = 5,
        fec: bool = False,
        dtx: bool = False,
        packet_loss_perc: int = 0,
    ) -> None: ...
    def encode(self, pcm: npt.NDArray[np.int16]) -> bytes:
        """Encode one frame (interleaved int16) and return the Opus packet."""
    def encode_into(self, pcm: npt.NDArray[np.int16], out: npt.NDArray[np.uint8] | bytearray) -> int:
        """Encode one frame into ``out``; return the packet length in bytes."""
    def reset(self) -> None: ...
    @property
    def complexity(self) -> int: ...
    @complexity.setter
    def complexity(self, value: int) -> None: ...
    @property
    def bitrate(self) -> int:
        """Target bits/s (with ``None`` set, the bitrate libopus chose)."""
    @bitrate.setter
    def bitrate(self, value: int | None) -> None: ...
    @property
    def fec(self) -> bool: ...
    @fec.setter
    def fec(self, value: bool) -> None: ...
    @property
    def dtx(self) -> bool: ...
    @dtx.setter
    def dtx(self, value: bool) -> None: ...
    @property
    def packet_loss_perc(self) -> int: ...
    @packet_loss_perc.setter
    def packet_loss_perc(self, value: int) -> None: ...
    @property
    def lookahead(self) -> int:
        """Encoder delay in samples per channel."""
    @property
    def final_range(self) -> int: ...

class OpusDecoder:
    @property
    def sample_rate(self) -> int: ...
    @property
    def channels(self) -> int: ...
    def __init__(self, sample_rate: int, channels: int = 1) -> None: ...
    def decode(
        self, packet: Packet | None, frame_size: int | None = None, fec: bool = False
    ) -> npt.NDArray[np.int16]:
        """Decode one packet (``None``: conceal a lost one) into a new int16 array.

        ``frame_size`` (samples per channel) defaults to the packet's duration, or for
        a loss to the last packet's.  With ``fec`` the frame before ``packet`` is
        recovered from the packet's in-band FEC data.
        """
    def decode_into(
        self,
        packet: Packet | None,
        out: npt.NDArray[np.int16],
        frame_size: int | None = None,
        fec: bool = False,
    ) -> int:
        """Decode one packet into ``out``; return the samples per channel written."""
    def reset(self) -> None: ...
    @property
    def last_packet_duration(self) -> int: ...
    @property
    def final_range(self) -> int: ...
