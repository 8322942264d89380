"""The provider registry: a name and a factory per provider, instances pooled per credential set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from pbx.asr.base import AsrOptions, AsrProvider, AsrResult, AsrStream
from pbx.cloud.ws import ProviderContext
from pbx.errors import ProviderError
from pbx.protocol import SynthesisOption, TranscriptionOption
from pbx.providers import ProviderRegistry, builtin_registry
from pbx.tts.base import TtsChunk, TtsProvider, TtsRequest


class RecordingTts(TtsProvider):
    """A provider written against the base class, as a new module would be: it says what it was made with."""

    name = "echo"

    def __init__(self, option: SynthesisOption, context: ProviderContext) -> None:
        self.option = option
        self.closed = False

    async def synthesize(self, request: TtsRequest) -> AsyncIterator[TtsChunk]:
        yield TtsChunk(np.zeros(160, np.int16))

    async def close(self) -> None:
        self.closed = True


class NullStream(AsrStream):
    def __init__(self, options: AsrOptions) -> None:
        self.options = options

    async def feed(self, pcm: np.ndarray) -> list[AsrResult]:
        return []

    async def end_utterance(self) -> AsrResult | None:
        return None

    async def close(self) -> None:
        pass


class NullAsr(AsrProvider):
    name = "null"

    def __init__(self, option: TranscriptionOption, context: ProviderContext) -> None:
        self.option = option

    async def open_stream(self, options: AsrOptions) -> AsrStream:
        return NullStream(options)


def registry(environ: dict[str, str] | None = None) -> ProviderRegistry:
    reg = ProviderRegistry(default_tts="echo", default_asr="null", environ=environ or {})
    reg.register_tts("echo", RecordingTts, aliases=("Repeat",))
    reg.register_asr("null", NullAsr)
    return reg


def test_instances_are_pooled_per_credential_set() -> None:
    reg = registry()
    alice = SynthesisOption(provider="echo", app_id="a", secret_id="id-a", secret_key="key-a")
    bob = SynthesisOption(provider="echo", app_id="a", secret_id="id-b", secret_key="key-b")
    other_endpoint = SynthesisOption(provider="echo", app_id="a", secret_id="id-a", secret_key="key-a",
                                     endpoint="https://eu.example.com")
    first = reg.tts(alice)
    assert reg.tts(SynthesisOption(provider="ECHO", app_id="a", secret_id="id-a", secret_key="key-a",
                                   speaker="x")) is first          # the voice is per request, not per instance
    assert reg.tts(SynthesisOption(provider="repeat", app_id="a", secret_id="id-a", secret_key="key-a")) is first
    assert reg.tts(bob) is not first and reg.tts(other_endpoint) is not first
    assert isinstance(first, RecordingTts) and first.option is alice   # the factory got the whole option
    assert reg.tts(SynthesisOption()) is not first                     # the default provider, no credentials


def test_a_provider_without_credentials_is_shared() -> None:
    reg = builtin_registry()
    assert reg.tts_name(SynthesisOption(provider="local")) == "espeak"
    assert reg.asr_name(TranscriptionOption()) == "pocketsphinx"
    reg.register_tts("echo", RecordingTts, shared=True)
    assert reg.tts(SynthesisOption(provider="echo", secret_key="k1")) is reg.tts(
        SynthesisOption(provider="echo", secret_key="k2"))


def test_names_that_are_not_here_say_why() -> None:
    reg = builtin_registry()
    with pytest.raises(ProviderError, match=r"^unknown tts provider 'nope'$"):
        reg.tts_name(SynthesisOption(provider="nope"))
    with pytest.raises(ProviderError, match=r"^asr provider 'azure' needs credentials \(secretId/secretKey\), "
                                            r"and cloud providers are not available in this build$"):
        reg.asr_name(TranscriptionOption(provider="azure"))
    with pytest.raises(ProviderError, match=r"^tts provider 'elevenlabs' is not available in this build$"):
        reg.tts(SynthesisOption(provider="elevenlabs", secret_key="k"))
    for name in ("tencent", "aliyun", "deepgram", "voiceapi"):
        assert reg.asr_name(TranscriptionOption(provider=name.upper())) == name


def test_a_cloud_provider_without_its_credentials_is_refused_before_any_track() -> None:
    reg = ProviderRegistry(environ={"DASHSCOPE_API_KEY": "k"})
    reg_all = builtin_registry(environ={})
    for name, message in (
            ("tencent", "tencent needs appId, secretId, secretKey (options appId, secretId, secretKey or env "
                        "TENCENT_APPID, TENCENT_SECRET_ID, TENCENT_SECRET_KEY)"),
            ("deepgram", "deepgram needs secretKey (option secretKey or env DEEPGRAM_API_KEY)"),
            ("voiceapi", "voiceapi needs endpoint (option endpoint or env VOICEAPI_ENDPOINT)")):
        with pytest.raises(ProviderError) as info:
            reg_all.tts_name(SynthesisOption(provider=name))
        assert (str(info.value), info.value.sender) == (message, "tts")
    partial = SynthesisOption(provider="tencent", app_id="a", secret_id="b")
    with pytest.raises(ProviderError, match=r"^tencent needs secretKey \(option secretKey or env "
                                            r"TENCENT_SECRET_KEY\)$"):
        reg_all.tts_name(partial)
    reg.register_tts("aliyun", RecordingTts)
    assert reg.tts_name(SynthesisOption(provider="aliyun")) == "aliyun"     # the key from the environment


def test_credentials_a_call_leaves_out_come_from_the_environment() -> None:
    environ = {"TENCENT_APPID": "env-app", "TENCENT_SECRET_ID": "env-id", "TENCENT_SECRET_KEY": "env-key",
               "DEEPGRAM_API_KEY": "dg-key", "VOICEAPI_ENDPOINT": "ws://127.0.0.1:9/", "VOICEAPI_SPEAKER_ID": "7"}
    reg = ProviderRegistry(environ=environ)
    for name in ("tencent", "deepgram", "voiceapi"):
        reg.register_tts(name, RecordingTts)
    own = reg.tts_option(SynthesisOption(provider="tencent", secret_key="call-key"))
    assert (own.app_id, own.secret_id, own.secret_key) == ("env-app", "env-id", "call-key")
    assert reg.tts_option(SynthesisOption(provider="deepgram")).secret_key == "dg-key"
    voiceapi = reg.tts_option(SynthesisOption(provider="voiceapi"))
    assert (voiceapi.endpoint, voiceapi.speaker, voiceapi.secret_key) == ("ws://127.0.0.1:9/", "7", None)
    plain = SynthesisOption(provider="tencent", app_id="a", secret_id="b", secret_key="c")
    assert reg.tts_option(plain) is plain


def test_streams_get_every_option_field_and_close_closes_every_instance() -> None:
    async def run() -> tuple[AsrOptions, bool]:
        reg = registry()
        option = TranscriptionOption(provider="null", language="en-US", app_id="app", secret_id="sid",
                                     secret_key="skey", model_type="16k_en", buffer_size=3200,
                                     endpoint="wss://asr.example.com", extra={"punctuate": True})
        stream = await reg.open_asr(option)
        assert isinstance(stream, NullStream)
        tts = reg.tts(SynthesisOption(provider="echo"))
        await reg.close()
        assert isinstance(tts, RecordingTts)
        return stream.options, tts.closed

    options, closed = asyncio.run(run())
    assert options == AsrOptions(language="en-US", samplerate=16000, model_type="16k_en",
                                 extra={"punctuate": True}, buffer_size=3200, app_id="app", secret_id="sid",
                                 secret_key="skey", endpoint="wss://asr.example.com")
    assert "skey" not in repr(options) and closed


def test_a_tts_request_carries_the_synthesis_option() -> None:
    option = SynthesisOption(provider="echo", speaker="v1", volume=7, speed=1.2, emotion="calm", app_id="a",
                             secret_key="k", endpoint="https://x.example", codec="pcm", subtitle=True,
                             extra={"style": 2})
    request = TtsRequest.from_option("hi", option, 16000)
    assert (request.text, request.speaker, request.volume, request.speed, request.emotion, request.samplerate,
            request.app_id, request.secret_key, request.endpoint, request.codec, request.subtitle,
            request.extra) == ("hi", "v1", 7, 1.2, "calm", 16000, "a", "k", "https://x.example", "pcm", True,
                               {"style": 2})
    assert "'k'" not in repr(request)
