"""ASR and TTS providers by name: a registry of factories, and their instances pooled per credential set.

A provider is one module (a :class:`~pbx.tts.base.TtsProvider` or :class:`~pbx.asr.base.AsrProvider`
subclass) and one line in :func:`builtin_registry`: its name, aliases and a factory that takes the
call's whole option (credentials, ``endpoint``, ``extra``). An instance serves every call with the
same credential set (``appId``, ``secretId``, ``secretKey``, ``endpoint``), never calls with others;
a provider that takes no credentials (``shared=True``: the local ones) has one instance per server.

Names the spec lists whose providers are not built here yet (tencent, aliyun, deepgram, ...) give a
:class:`~pbx.errors.ProviderError` that says so; so does an unknown name. Checking a name
(:meth:`ProviderRegistry.tts_name`) creates nothing, so the call core can refuse a command at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pbx.asr.base import AsrOptions, AsrProvider, AsrStream
from pbx.errors import ProviderError
from pbx.protocol import SynthesisOption, TranscriptionOption
from pbx.tts.base import TtsProvider

log = logging.getLogger(__name__)

# Providers of the spec that this build does not have yet.
NOT_BUILT = frozenset({"tencent", "aliyun", "deepgram", "voiceapi", "openai", "azure", "elevenlabs"})

Option = SynthesisOption | TranscriptionOption
P = TypeVar("P", TtsProvider, AsrProvider)
Opt = TypeVar("Opt", SynthesisOption, TranscriptionOption)
PoolKey = tuple[str, str | None, str | None, str | None, str | None]


@dataclass(frozen=True, slots=True)
class Entry(Generic[Opt, P]):
    name: str
    factory: Callable[[Opt], P]
    shared: bool          # takes no credentials: one instance for every call


def pool_key(name: str, option: Option, shared: bool) -> PoolKey:
    if shared:
        return (name, None, None, None, None)
    return (name, option.app_id, option.secret_id, option.secret_key, option.endpoint)


class _Kind(Generic[Opt, P]):
    """The providers of one kind (``tts`` or ``asr``): names, aliases, live instances."""

    def __init__(self, kind: str, default: str) -> None:
        self.kind = kind
        self.default = default.lower()
        self.entries: dict[str, Entry[Opt, P]] = {}
        self.instances: dict[PoolKey, P] = {}

    def register(self, name: str, factory: Callable[[Opt], P], aliases: tuple[str, ...], shared: bool) -> None:
        entry = Entry(name, factory, shared)
        for key in (name, *aliases):
            self.entries[key.lower()] = entry

    def entry(self, option: Opt) -> Entry[Opt, P]:
        name = (option.provider or self.default).lower()
        found = self.entries.get(name)
        if found is not None:
            return found
        if name in NOT_BUILT:
            if not (option.secret_key or option.app_id):
                raise ProviderError(self.kind, f"{self.kind} provider {name!r} needs credentials "
                                               "(secretId/secretKey), and cloud providers are not available "
                                               "in this build")
            raise ProviderError(self.kind, f"{self.kind} provider {name!r} is not available in this build")
        raise ProviderError(self.kind, f"unknown {self.kind} provider {name!r}")

    def instance(self, option: Opt) -> P:
        entry = self.entry(option)
        key = pool_key(entry.name, option, entry.shared)
        provider = self.instances.get(key)
        if provider is None:
            provider = self.instances[key] = entry.factory(option)
        return provider

    def pop_all(self) -> list[P]:
        providers = list(self.instances.values())
        self.instances.clear()
        return providers


class ProviderRegistry:
    def __init__(self, default_tts: str = "espeak", default_asr: str = "pocketsphinx") -> None:
        self._tts: _Kind[SynthesisOption, TtsProvider] = _Kind("tts", default_tts)
        self._asr: _Kind[TranscriptionOption, AsrProvider] = _Kind("asr", default_asr)

    def register_tts(self, name: str, factory: Callable[[SynthesisOption], TtsProvider], *,
                     aliases: tuple[str, ...] = (), shared: bool = False) -> None:
        self._tts.register(name, factory, aliases, shared)

    def register_asr(self, name: str, factory: Callable[[TranscriptionOption], AsrProvider], *,
                     aliases: tuple[str, ...] = (), shared: bool = False) -> None:
        self._asr.register(name, factory, aliases, shared)

    def tts_name(self, option: SynthesisOption) -> str:
        """The provider ``option`` names (its canonical name); ProviderError if there is none."""
        return self._tts.entry(option).name

    def asr_name(self, option: TranscriptionOption) -> str:
        return self._asr.entry(option).name

    def tts(self, option: SynthesisOption) -> TtsProvider:
        """The instance for ``option``'s provider and credential set, created on first use."""
        return self._tts.instance(option)

    async def open_asr(self, option: TranscriptionOption) -> AsrStream:
        """A new stream of ``option``'s provider (instance per credential set)."""
        return await self._asr.instance(option).open_stream(AsrOptions.from_option(option))

    async def close(self) -> None:
        providers: list[TtsProvider | AsrProvider] = [*self._tts.pop_all(), *self._asr.pop_all()]
        for provider in providers:
            try:
                await provider.close()
            except Exception:   # one provider failing to close must not keep the others open
                log.exception("closing provider %s failed", provider.name)


def _espeak(option: SynthesisOption) -> TtsProvider:
    from pbx.tts.espeak import EspeakTts
    return EspeakTts()


def _pocketsphinx(option: TranscriptionOption) -> AsrProvider:
    from pbx.asr.worker import PocketsphinxProcessAsr  # decoding in a worker process: not on our GIL
    return PocketsphinxProcessAsr()


def builtin_registry(default_tts: str = "espeak", default_asr: str = "pocketsphinx") -> ProviderRegistry:
    """Every provider of this build, one line each."""
    registry = ProviderRegistry(default_tts, default_asr)
    registry.register_tts("espeak", _espeak, aliases=("local",), shared=True)
    registry.register_asr("pocketsphinx", _pocketsphinx, aliases=("local",), shared=True)
    return registry
