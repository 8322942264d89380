"""L16 byte orders in NumPy: RTP L16 is big-endian (RFC 3551), s16le little-endian."""

from __future__ import annotations

import numpy as np


def l16_decode(payload: bytes) -> np.ndarray:
    return np.frombuffer(payload, dtype=">i2").astype(np.int16)


def l16_encode(pcm: np.ndarray) -> bytes:
    return pcm.astype(">i2").tobytes()


def s16le_decode(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def s16le_encode(pcm: np.ndarray) -> bytes:
    return pcm.astype("<i2").tobytes()
