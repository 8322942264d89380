"""The ASR provider interface.

The session feeds a stream 16 kHz int16 mono audio (the engine's ASR tap, drained every ~100 ms)
and marks the end of each utterance when VAD reports silence. The stream returns partial
hypotheses (``asrDelta``) while audio arrives and a final one (``asrFinal``) per utterance.
Times are milliseconds of audio since the stream started.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class AsrOptions:
    language: str | None = None
    samplerate: int = 16000
    model_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)   # provider-specific (e.g. grammar, keywords)


@dataclass(frozen=True, slots=True)
class AsrResult:
    text: str
    final: bool
    start_ms: int | None = None
    end_ms: int | None = None


class AsrStream(abc.ABC):
    """One utterance stream of one call."""

    @abc.abstractmethod
    async def feed(self, pcm: npt.NDArray[np.int16]) -> list[AsrResult]:
        """Add audio; returns partial results (final=False) that became available."""

    @abc.abstractmethod
    async def end_utterance(self) -> AsrResult | None:
        """The speaker paused: finish the current utterance and return its final result (None if
        nothing was recognised). The stream then accepts the next utterance."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the stream."""


class AsrProvider(abc.ABC):
    name: str

    @abc.abstractmethod
    async def open_stream(self, options: AsrOptions) -> AsrStream:
        """A new stream; raises :class:`pbx.errors.ProviderError` when the provider cannot serve it."""
