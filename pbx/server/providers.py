"""ASR and TTS providers by name, created once per server.

``espeak`` (alias ``local``) and ``pocketsphinx`` (alias ``local``) run here with nothing but pip.
The cloud providers the spec names (tencent, aliyun, deepgram, voiceapi, ...) are not built yet:
asking for one is a clear ``error`` event from the component (``tts`` or ``asr``), and the call
goes on.
"""

from __future__ import annotations

from pbx.asr.base import AsrOptions, AsrProvider, AsrStream
from pbx.errors import ProviderError
from pbx.protocol import SynthesisOption, TranscriptionOption
from pbx.tts.base import TtsProvider

CLOUD_PROVIDERS = {"tencent", "aliyun", "deepgram", "voiceapi", "openai", "azure", "elevenlabs"}


def _unavailable(sender: str, name: str, has_credentials: bool) -> ProviderError:
    if not has_credentials:
        return ProviderError(sender, f"{sender} provider {name!r} needs credentials (secretId/secretKey), "
                                     "and cloud providers are not available in this build")
    return ProviderError(sender, f"{sender} provider {name!r} is not available in this build")


class Providers:
    def __init__(self, default_tts: str = "espeak", default_asr: str = "pocketsphinx") -> None:
        self.default_tts = default_tts
        self.default_asr = default_asr
        self._tts: TtsProvider | None = None
        self._asr: AsrProvider | None = None

    def tts(self, option: SynthesisOption) -> TtsProvider:
        name = (option.provider or self.default_tts).lower()
        if name in ("espeak", "local"):
            if self._tts is None:
                from pbx.tts.espeak import EspeakTts
                self._tts = EspeakTts()
            return self._tts
        if name in CLOUD_PROVIDERS:
            raise _unavailable("tts", name, bool(option.secret_key or option.app_id))
        raise ProviderError("tts", f"unknown tts provider {name!r}")

    async def open_asr(self, option: TranscriptionOption) -> AsrStream:
        name = (option.provider or self.default_asr).lower()
        if name in ("pocketsphinx", "local"):
            if self._asr is None:
                from pbx.asr.pocketsphinx import PocketsphinxAsr
                self._asr = PocketsphinxAsr()
            return await self._asr.open_stream(AsrOptions(
                language=option.language, samplerate=option.samplerate, model_type=option.model_type,
                extra=dict(option.extra or {})))
        if name in CLOUD_PROVIDERS:
            raise _unavailable("asr", name, bool(option.secret_key or option.app_id))
        raise ProviderError("asr", f"unknown asr provider {name!r}")

    def asr_name(self, option: TranscriptionOption) -> str:
        return (option.provider or self.default_asr).lower()

    async def close(self) -> None:
        if self._tts is not None:
            await self._tts.close()
        closer = getattr(self._asr, "close", None)
        if closer is not None:
            await closer()
