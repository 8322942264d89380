"""Opus: encode+decode one 20 ms frame of speech at 16 kHz, ours vs opuslib (ctypes, same libopus)."""

from __future__ import annotations

import numpy as np
import opuslib
import opuslib.api.ctl
import opuslib.api.encoder

from pbx.core.opus import OpusDecoder, OpusEncoder
from support.audio import espeak_speech, frames

from harness import Case, FrameFn

RATE = 16000
FRAME = 320
COMPLEXITY = 5


def speech() -> list[np.ndarray]:
    return frames(espeak_speech(RATE), FRAME)


def ours() -> FrameFn:
    chunks = speech()
    enc, dec = OpusEncoder(RATE, complexity=COMPLEXITY), OpusDecoder(RATE)
    packet = np.empty(1500, np.uint8)
    pcm = np.empty(FRAME, np.int16)
    encode_into, decode_into = enc.encode_into, dec.decode_into
    count = len(chunks)

    def step(i: int) -> object:
        n = encode_into(chunks[i % count], packet)
        return decode_into(packet[:n], pcm, FRAME)

    return step


def reference() -> FrameFn:
    chunks = [f.tobytes() for f in speech()]
    enc, dec = opuslib.Encoder(RATE, 1, "voip"), opuslib.Decoder(RATE, 1)
    opuslib.api.encoder.encoder_ctl(enc.encoder_state, opuslib.api.ctl.set_complexity, COMPLEXITY)
    count = len(chunks)

    def step(i: int) -> object:
        return dec.decode(enc.encode(chunks[i % count], FRAME), FRAME)

    return step


def cases() -> list[Case]:
    return [Case("Opus encode+decode 16 kHz", f"{FRAME} samples @ 16 kHz, complexity {COMPLEXITY}",
                 ours, "opuslib", reference)]
