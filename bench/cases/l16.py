"""L16: RTP payload (big-endian) -> int16 -> RTP payload for one 20 ms frame of speech at 16 kHz, vs NumPy."""

from __future__ import annotations

import numpy as np

from pbx.core import l16
from support.audio import espeak_speech, frames

from harness import Case, FrameFn

RATE = 16000
FRAME = 320


def payloads() -> list[bytes]:
    return [f.astype(">i2").tobytes() for f in frames(espeak_speech(RATE), FRAME)]


def ours() -> FrameFn:
    packets = payloads()
    count = len(packets)
    pcm = np.empty(FRAME, np.int16)
    wire = np.empty(2 * FRAME, np.uint8)
    decode_into, encode_into = l16.l16_decode_into, l16.l16_encode_into

    def step(i: int) -> object:
        decode_into(packets[i % count], pcm)
        return encode_into(pcm, wire)

    return step


def reference() -> FrameFn:
    packets = payloads()
    count = len(packets)

    def step(i: int) -> object:
        pcm = np.frombuffer(packets[i % count], ">i2").astype(np.int16)
        return pcm.astype(">i2").tobytes()

    return step


def cases() -> list[Case]:
    return [Case("L16 decode+encode", f"{FRAME} samples @ 16 kHz", ours,
                 "numpy frombuffer('>i2').astype + astype('>i2').tobytes", reference)]
