"""ASR and TTS providers by name: a registry of factories, and their instances pooled per credential set.

A provider is one module (a :class:`~pbx.tts.base.TtsProvider` or :class:`~pbx.asr.base.AsrProvider`
subclass) and one line in :func:`builtin_registry`: its name, aliases and a factory that takes the
call's whole option (credentials, ``endpoint``, ``extra``). An instance serves every call with the
same credential set (``appId``, ``secretId``, ``secretKey``, ``endpoint``), never calls with others;
a provider that takes no credentials (``shared=True``: the local ones) has one instance per server.

Credentials a call leaves out come from the environment (:data:`ENVIRONMENT`: the variables the
upstream server reads), before the instance is chosen. Every factory also gets the server's
:class:`~pbx.cloud.ws.ProviderContext` (which addresses an ``endpoint`` may name, timeouts).

Names the spec lists whose providers are not built here (openai, azure, elevenlabs) give a
:class:`~pbx.errors.ProviderError` that says so; so does an unknown name. Checking a name
(:meth:`ProviderRegistry.tts_name`) creates nothing, so the call core can refuse a command at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from pbx.asr.base import AsrOptions, AsrProvider, AsrStream
from pbx.cloud.ws import ProviderContext
from pbx.errors import ProviderError
from pbx.protocol import SynthesisOption, TranscriptionOption
from pbx.tts.base import TtsProvider

log = logging.getLogger(__name__)

# Providers named in the spec's examples that this build does not have.
NOT_BUILT = frozenset({"openai", "azure", "elevenlabs"})

# provider -> option field -> environment variable, read when a call leaves the field out
ENVIRONMENT: dict[str, dict[str, str]] = {
    "tencent": {"app_id": "TENCENT_APPID", "secret_id": "TENCENT_SECRET_ID", "secret_key": "TENCENT_SECRET_KEY"},
    "aliyun": {"secret_key": "DASHSCOPE_API_KEY"},
    "deepgram": {"secret_key": "DEEPGRAM_API_KEY"},
    "voiceapi": {"endpoint": "VOICEAPI_ENDPOINT", "speaker": "VOICEAPI_SPEAKER_ID"},
}
# provider -> option fields it cannot work without (checked before a track or stream exists)
REQUIRED: dict[str, tuple[str, ...]] = {
    "tencent": ("app_id", "secret_id", "secret_key"),
    "aliyun": ("secret_key",),
    "deepgram": ("secret_key",),
    "voiceapi": ("endpoint",),
}
_CAMEL = {"app_id": "appId", "secret_id": "secretId", "secret_key": "secretKey", "endpoint": "endpoint"}

Option = SynthesisOption | TranscriptionOption
P = TypeVar("P", TtsProvider, AsrProvider)
Opt = TypeVar("Opt", SynthesisOption, TranscriptionOption)
PoolKey = tuple[str, str | None, str | None, str | None, str | None]


@dataclass(frozen=True, slots=True)
class Entry(Generic[Opt, P]):
    name: str
    factory: Callable[[Opt, ProviderContext], P]
    shared: bool          # takes no credentials: one instance for every call


def pool_key(name: str, option: Option, shared: bool) -> PoolKey:
    if shared:
        return (name, None, None, None, None)
    return (name, option.app_id, option.secret_id, option.secret_key, option.endpoint)


class _Kind(Generic[Opt, P]):
    """The providers of one kind (``tts`` or ``asr``): names, aliases, live instances."""

    def __init__(self, kind: str, default: str, context: ProviderContext, environ: Mapping[str, str]) -> None:
        self.kind = kind
        self.context = context
        self.environ = environ
        self.default = default.lower()
        self.entries: dict[str, Entry[Opt, P]] = {}
        self.instances: dict[PoolKey, P] = {}

    def register(self, name: str, factory: Callable[[Opt, ProviderContext], P], aliases: tuple[str, ...],
                 shared: bool) -> None:
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

    def with_environment(self, option: Opt) -> Opt:
        """``option`` with the credentials it leaves out taken from the environment."""
        fields = ENVIRONMENT.get(self.entry(option).name, {})
        found: dict[str, Any] = {f: self.environ[v] for f, v in fields.items()
                 if hasattr(option, f) and getattr(option, f) is None and self.environ.get(v)}
        return replace(option, **found) if found else option

    def check(self, option: Opt) -> str:
        """The provider's name; ProviderError if ``option`` (with the environment) lacks what it needs."""
        name = self.entry(option).name
        missing = [f for f in REQUIRED.get(name, ()) if not getattr(self.with_environment(option), f)]
        if missing:
            fields = ", ".join(_CAMEL[f] for f in missing)
            env = ", ".join(ENVIRONMENT[name][f] for f in missing)
            plural = "s" if len(missing) > 1 else ""
            raise ProviderError(self.kind, f"{name} needs {fields} (option{plural} {fields} or env {env})")
        return name

    def instance(self, option: Opt) -> P:
        entry = self.entry(option)
        key = pool_key(entry.name, option, entry.shared)
        provider = self.instances.get(key)
        if provider is None:
            provider = self.instances[key] = entry.factory(option, self.context)
        return provider

    def pop_all(self) -> list[P]:
        providers = list(self.instances.values())
        self.instances.clear()
        return providers


class ProviderRegistry:
    def __init__(self, default_tts: str = "espeak", default_asr: str = "pocketsphinx",
                 context: ProviderContext | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.context = context or ProviderContext()
        environ = os.environ if environ is None else environ
        self._tts: _Kind[SynthesisOption, TtsProvider] = _Kind("tts", default_tts, self.context, environ)
        self._asr: _Kind[TranscriptionOption, AsrProvider] = _Kind("asr", default_asr, self.context, environ)

    def register_tts(self, name: str, factory: Callable[[SynthesisOption, ProviderContext], TtsProvider], *,
                     aliases: tuple[str, ...] = (), shared: bool = False) -> None:
        self._tts.register(name, factory, aliases, shared)

    def register_asr(self, name: str, factory: Callable[[TranscriptionOption, ProviderContext], AsrProvider], *,
                     aliases: tuple[str, ...] = (), shared: bool = False) -> None:
        self._asr.register(name, factory, aliases, shared)

    def tts_name(self, option: SynthesisOption) -> str:
        """The provider ``option`` names (its canonical name); ProviderError if there is none, or if
        it lacks credentials the provider needs (taken from the environment too)."""
        return self._tts.check(option)

    def asr_name(self, option: TranscriptionOption) -> str:
        return self._asr.entry(option).name

    def tts_option(self, option: SynthesisOption) -> SynthesisOption:
        """``option`` with the credentials it leaves out taken from the environment."""
        return self._tts.with_environment(option)

    def tts(self, option: SynthesisOption) -> TtsProvider:
        """The instance for ``option``'s provider and credential set, created on first use (pass the
        option through :meth:`tts_option` first)."""
        return self._tts.instance(option)

    async def open_asr(self, option: TranscriptionOption) -> AsrStream:
        """A new stream of ``option``'s provider (instance per credential set)."""
        self._asr.check(option)
        option = self._asr.with_environment(option)
        return await self._asr.instance(option).open_stream(AsrOptions.from_option(option))

    async def close(self) -> None:
        providers: list[TtsProvider | AsrProvider] = [*self._tts.pop_all(), *self._asr.pop_all()]
        for provider in providers:
            try:
                await provider.close()
            except Exception:   # one provider failing to close must not keep the others open
                log.exception("closing provider %s failed", provider.name)


def _espeak(option: SynthesisOption, context: ProviderContext) -> TtsProvider:
    from pbx.tts.espeak import EspeakTts
    return EspeakTts()


def _piper(option: SynthesisOption, context: ProviderContext) -> TtsProvider:
    from pbx.tts.piper import PiperTts  # an optional extra (GPL): ProviderError if it is not installed
    return PiperTts()


def _pocketsphinx(option: TranscriptionOption, context: ProviderContext) -> AsrProvider:
    from pbx.asr.worker import PocketsphinxProcessAsr  # decoding in a worker process: not on our GIL
    return PocketsphinxProcessAsr()


def _cloud(module: str, cls: str) -> Callable[[object, ProviderContext], object]:
    """A factory that imports ``module`` on first use (a provider's client costs nothing until used)."""
    def factory(option: object, context: ProviderContext) -> object:
        import importlib
        return getattr(importlib.import_module(module), cls)(context)
    return factory


def builtin_registry(default_tts: str = "espeak", default_asr: str = "pocketsphinx",
                     context: ProviderContext | None = None,
                     environ: Mapping[str, str] | None = None) -> ProviderRegistry:
    """Every provider of this build, one line each."""
    registry = ProviderRegistry(default_tts, default_asr, context, environ)
    registry.register_tts("espeak", _espeak, aliases=("local",), shared=True)
    registry.register_tts("piper", _piper, shared=True)
    registry.register_asr("pocketsphinx", _pocketsphinx, aliases=("local",), shared=True)
    for name, module, asr_class, tts_class in (
        ("tencent", "tencent", "TencentAsr", "TencentTts"),
        ("aliyun", "aliyun", "AliyunAsr", "AliyunTts"),
        ("deepgram", "deepgram", "DeepgramAsr", "DeepgramTts"),
        ("voiceapi", "voiceapi", "VoiceApiAsr", "VoiceApiTts"),
    ):
        registry.register_asr(name, _cloud(f"pbx.asr.{module}", asr_class))   # type: ignore[arg-type]
        registry.register_tts(name, _cloud(f"pbx.tts.{module}", tts_class))   # type: ignore[arg-type]
    return registry
