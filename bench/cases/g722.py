"""G.722 64 kbit/s: one 20 ms frame (320 samples @ 16 kHz) encoded then decoded per call.

Ours goes through the ``_into`` forms with preallocated buffers, as the engine
would; the reference is the ``g722`` package (spandsp lineage, C) doing the
same encode + decode per frame through its own Python API.
"""

from __future__ import annotations

import numpy as np
from G722 import G722

from pbx.core.g722 import G722Decoder, G722Encoder
from support.audio import espeak_speech, frames

from harness import Case, FrameFn

RATE = 16000
FRAME = 320


def speech() -> list[np.ndarray]:
    return frames(espeak_speech(RATE), FRAME)


def ours() -> FrameFn:
    chunks = speech()
    count = len(chunks)
    payload = np.empty(FRAME // 2, np.uint8)
    pcm = np.empty(FRAME, np.int16)
    encode_into, decode_into = G722Encoder().encode_into, G722Decoder().decode_into

    def step(i: int) -> object:
        encode_into(chunks[i % count], payload)
        return decode_into(payload, pcm)

    return step


def reference() -> FrameFn:
    chunks = speech()
    count = len(chunks)
    codec = G722(RATE, 64000)

    def step(i: int) -> object:
        return codec.decode(codec.encode(chunks[i % count]))

    return step


def cases() -> list[Case]:
    return [
        Case(
            kernel="G.722 encode+decode",
            frame=f"{FRAME} samples @ 16 kHz",
            ours=ours,
            baseline="g722 package (spandsp C)",
            reference=reference,
            bar_us=15.0,
        )
    ]
