"""The TTS provider interface.

A provider turns one text into a stream of PCM chunks (int16 mono at the requested rate) as soon as
audio is available: the first chunk's latency is what the ``ttfb.tts.<provider>`` metric reports.
Chunks may carry word boundaries so that an interruption can report the ``position`` (word index)
of the text that was playing.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.protocol import SynthesisOption


@dataclass(frozen=True, slots=True)
class TtsRequest:
    """One text to speak, with every field of the call's SynthesisOption (the spec's names, snake_case).

    Credentials and ``endpoint`` also chose the provider instance (pooled per credential set by
    :class:`pbx.providers.ProviderRegistry`); they are here for providers that sign each request.
    """

    text: str
    speaker: str | None = None        # provider voice name
    speed: float = 1.0                # 1.0 = the provider's normal rate
    samplerate: int = 16000           # the rate the audio must come at
    extra: dict[str, Any] = field(default_factory=dict)
    volume: int = 5                   # 1-10; the server applies it as a gain (5 = unity)
    emotion: str | None = None
    codec: str | None = None
    subtitle: bool = False
    app_id: str | None = None
    secret_id: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    endpoint: str | None = None
    cacheable: bool = False           # a whole text (not a streamed piece): the server's TTS cache may keep it

    @classmethod
    def from_option(cls, text: str, option: SynthesisOption, samplerate: int, cacheable: bool = False) -> TtsRequest:
        """``text`` with ``option``'s fields, the audio wanted at ``samplerate``."""
        return cls(text, option.speaker, option.speed, samplerate, dict(option.extra or {}), option.volume,
                   option.emotion, option.codec, option.subtitle, option.app_id, option.secret_id,
                   option.secret_key, option.endpoint, cacheable)


@dataclass(frozen=True, slots=True)
class WordMark:
    sample: int                       # offset of the word's first sample from the start of the text's audio
    index: int                        # 0-based word index in the request text


@dataclass(frozen=True, slots=True)
class TtsChunk:
    pcm: npt.NDArray[np.int16]        # mono, at TtsRequest.samplerate
    words: tuple[WordMark, ...] = ()  # words whose marks arrived with this chunk (offsets from the text's start)


class TtsProvider(abc.ABC):
    """One provider instance serves the calls of one credential set; per-text state lives in the iterator."""

    name: str

    @abc.abstractmethod
    def synthesize(self, request: TtsRequest) -> AsyncIterator[TtsChunk]:
        """Stream the audio of ``request.text``; raises :class:`pbx.errors.ProviderError`."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release provider resources (threads, connections)."""
