"""Pure-Python model of pbx.core.wav.WavWriter: same flush policy, same bytes on disk.

Written from the RIFF/WAVE layout (canonical 44-byte header, WAVE_FORMAT_PCM, 16-bit
little-endian samples) with ``struct`` and an unbuffered file object, so that after every
call the file it leaves can be compared byte for byte with the compiled writer's.
"""

from __future__ import annotations

import os
import struct

import numpy as np

HEADER_BYTES = 44
RIFF_SIZE_MAX = 0xFFFFFFFF


def header(sample_rate: int, channels: int, data_bytes: int) -> bytes:
    """The canonical PCM header for ``data_bytes`` bytes of 16-bit audio."""
    block_align = 2 * channels
    return (
        b"RIFF" + struct.pack("<I", HEADER_BYTES - 8 + data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block_align,
                                block_align, 16)
        + b"data" + struct.pack("<I", data_bytes)
    )


def max_frames(channels: int) -> int:
    """Most frames whose RIFF size (file size - 8) still fits the 32-bit field."""
    return (RIFF_SIZE_MAX - (HEADER_BYTES - 8)) // (2 * channels)


def flush_frames(sample_rate: int, flush_ms: int) -> int:
    return max(1, sample_rate * flush_ms // 1000)


class OracleWavWriter:
    """Buffers ``flush_ms`` of audio; each flush appends the data, then rewrites the header."""

    def __init__(self, path: str | os.PathLike[str], sample_rate: int, channels: int = 1,
                 flush_ms: int = 200) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.flush_frames = flush_frames(sample_rate, flush_ms)
        self.frames_flushed = 0
        self.pending = bytearray()           # little-endian frames not yet on disk
        self.file = open(path, "wb", buffering=0)  # noqa: SIM115 - lives as long as the writer
        self.file.write(header(sample_rate, channels, 0))

    @property
    def block_align(self) -> int:
        return 2 * self.channels

    @property
    def frames_written(self) -> int:
        return self.frames_flushed + len(self.pending) // self.block_align

    def write(self, pcm: np.ndarray) -> None:
        if len(pcm) % self.channels:
            raise ValueError("pcm length is not a multiple of channels")
        self.pending += np.asarray(pcm, dtype="<i2").tobytes()
        self._flush_full_buffers()

    def write_silence(self, frames: int) -> None:
        room = self.flush_frames - len(self.pending) // self.block_align
        if frames <= room:
            self.pending += bytes(frames * self.block_align)
            self._flush_full_buffers()
            return
        self.flush()
        self.file.seek(HEADER_BYTES + self.frames_flushed * self.block_align)
        self.file.write(bytes(frames * self.block_align))
        self.frames_flushed += frames
        self._patch_header()

    def _flush_full_buffers(self) -> None:
        chunk = self.flush_frames * self.block_align
        while len(self.pending) >= chunk:
            self._append(bytes(self.pending[:chunk]))
            del self.pending[:chunk]

    def flush(self) -> None:
        if self.pending:
            self._append(bytes(self.pending))
            self.pending.clear()

    def _append(self, data: bytes) -> None:
        self.file.seek(HEADER_BYTES + self.frames_flushed * self.block_align)
        self.file.write(data)
        self.frames_flushed += len(data) // self.block_align
        self._patch_header()

    def _patch_header(self) -> None:
        self.file.seek(0)
        self.file.write(header(self.sample_rate, self.channels, self.frames_flushed * self.block_align))

    def close(self) -> None:
        if not self.file.closed:
            self.flush()
            self.file.close()
