"""G.711: encode then decode one 20 ms frame of speech at 8 kHz, ours vs the stdlib audioop."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import ModuleType

import numpy as np

from pbx.core import g711
from support.audio import espeak_speech, frames

from harness import Case, FrameFn

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)   # deprecated in 3.11/3.12; audioop-lts on 3.13+
    try:
        import audioop as _audioop
    except ImportError:
        _audioop = None
audioop: ModuleType | None = _audioop

RATE = 8000
FRAME = 160


def speech() -> list[np.ndarray]:
    return frames(espeak_speech(RATE), FRAME)


def ours(law: str) -> Callable[[], FrameFn]:
    def factory() -> FrameFn:
        chunks = speech()
        count = len(chunks)
        code = np.empty(FRAME, np.uint8)
        pcm = np.empty(FRAME, np.int16)
        encode_into = getattr(g711, f"{law}_encode_into")
        decode_into = getattr(g711, f"{law}_decode_into")

        def step(i: int) -> object:
            encode_into(chunks[i % count], code)
            return decode_into(code, pcm)

        return step

    return factory


def reference(law: str) -> Callable[[], FrameFn] | None:
    if audioop is None:
        return None
    lin2x, x2lin = getattr(audioop, f"lin2{law}"), getattr(audioop, f"{law}2lin")

    def factory() -> FrameFn:
        chunks = [f.tobytes() for f in speech()]
        count = len(chunks)

        def step(i: int) -> object:
            return x2lin(lin2x(chunks[i % count], 2), 2)

        return step

    return factory


def cases() -> list[Case]:
    frame = f"{FRAME} samples @ 8 kHz"
    return [
        Case("G.711 PCMU encode+decode", frame, ours("ulaw"), "audioop lin2ulaw+ulaw2lin",
             reference("ulaw"), bar_us=1.0),
        Case("G.711 PCMA encode+decode", frame, ours("alaw"), "audioop lin2alaw+alaw2lin",
             reference("alaw"), bar_us=1.0),
    ]
