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

from pbx.protocol import TranscriptionOption


@dataclass(frozen=True, slots=True)
class AsrOptions:
    """A stream's options: every field of the call's TranscriptionOption (the spec's names, snake_case).

    Credentials and ``endpoint`` also chose the provider instance (pooled per credential set by
    :class:`pbx.providers.ProviderRegistry`); they are here for providers that sign each stream.
    """

    language: str | None = None
    samplerate: int = 16000
    model_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)   # provider-specific (e.g. grammar, keywords)
    buffer_size: int | None = None
    app_id: str | None = None
    secret_id: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    endpoint: str | None = None

    @classmethod
    def from_option(cls, option: TranscriptionOption) -> AsrOptions:
        return cls(option.language, option.samplerate, option.model_type, dict(option.extra or {}),
                   option.buffer_size, option.app_id, option.secret_id, option.secret_key, option.endpoint)


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
    """One provider instance serves the calls of one credential set; each call opens its own stream."""

    name: str

    @abc.abstractmethod
    async def open_stream(self, options: AsrOptions) -> AsrStream:
        """A new stream; raises :class:`pbx.errors.ProviderError` when the provider cannot serve it."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release provider resources (decoders, threads, connections)."""
