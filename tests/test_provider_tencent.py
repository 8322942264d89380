"""Tencent Cloud ASR and TTS against a local server that speaks Tencent's documented protocols
(tests/support/tencent_server.py): the published signing example, sessions, and every fault; first the
provider classes directly, then through a real call server (/call) as a client sees them."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pbx.asr.base import AsrOptions, AsrResult, AsrStream
from pbx.asr.tencent import TencentAsr, TencentAsrProtocol
from pbx.asr.tencent import sign as asr_sign
from pbx.asr.tencent import signed_url as asr_signed_url
from pbx.cloud.asr import MalformedFrame, WebSocketAsrStream
from pbx.cloud.ws import ProviderContext
from pbx.errors import ProviderError
from pbx.media.netpolicy import AddressPolicy
from pbx.tts.base import TtsChunk, TtsRequest, WordMark
from pbx.tts.tencent import TencentTts, TencentTtsProtocol, speed_value
from support.audio import espeak_speech
from tests.support.calls import Call, Event, running_server, stream_realtime
from tests.support.tencent_server import (
    APP_ID,
    ASR,
    MS_PER_WORD,
    SECRET_ID,
    SECRET_KEY,
    TTS,
    Step,
    TencentServer,
)

RATE = 16000
CHUNK = RATE // 10                          # the 100 ms the call feeds at a time
LOOPBACK = ProviderContext(AddressPolicy(["127.0.0.0/8"]), timeout_s=2.0)
QUICK = ProviderContext(AddressPolicy(["127.0.0.0/8"]), timeout_s=0.3)


def tone(ms: int, rate: int = RATE, hz: float = 440.0) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return (6000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def dominant_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(pcm))


def asr_options(server: TencentServer, **fields: Any) -> AsrOptions:
    base: dict[str, Any] = {"app_id": APP_ID, "secret_id": SECRET_ID, "secret_key": SECRET_KEY,
                            "endpoint": server.endpoint}
    return AsrOptions(**{**base, **fields})


def tts_request(server: TencentServer, text: str = "hello big world", **fields: Any) -> TtsRequest:
    base: dict[str, Any] = {"app_id": APP_ID, "secret_id": SECRET_ID, "secret_key": SECRET_KEY,
                            "endpoint": server.endpoint, "subtitle": True}
    return TtsRequest(text, **{**base, **fields})


@asynccontextmanager
async def asr_stream(server: TencentServer, context: ProviderContext = LOOPBACK,
                     **fields: Any) -> AsyncIterator[AsrStream]:
    stream = await TencentAsr(context).open_stream(asr_options(server, **fields))
    try:
        yield stream
    finally:
        await stream.close()


async def feed_until(stream: AsrStream, audio: np.ndarray, done: Callable[[list[AsrResult]], bool],
                     errors: list[ProviderError] | None = None, seconds: float = 5.0) -> list[AsrResult]:
    """Feed ``audio`` 100 ms at a time, in real time, then silence, until ``done(results)``."""
    results: list[AsrResult] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    position = 0
    while not done(results):
        assert loop.time() < deadline, f"gave up; results {results}, errors {errors}"
        chunk = audio[position:position + CHUNK] if position < len(audio) else np.zeros(CHUNK, np.int16)
        position += CHUNK
        try:
            results.extend(await stream.feed(chunk))
        except ProviderError as exc:
            if errors is None:
                raise
            errors.append(exc)
        await asyncio.sleep(0.1)          # the call's pace: 100 ms of audio per 100 ms
    return results


async def synthesize(request: TtsRequest, context: ProviderContext = LOOPBACK) -> list[TtsChunk]:
    return [chunk async for chunk in TencentTts(context).synthesize(request)]


# -- ASR: signing and frames (the published examples) -------------------------------------------------
def test_asr_signing_reproduces_the_published_example() -> None:
    example = ASR["signing"]
    assert asr_sign(example["secret_key"], example["string_to_sign"]) == example["signature"]
    url = asr_signed_url(None, example["app_id"], example["params"], example["secret_key"])
    assert url == example["url"]


def test_asr_query_from_the_options() -> None:
    options = AsrOptions(language="en-US", app_id=APP_ID, secret_id=SECRET_ID, secret_key=SECRET_KEY,
                         extra={"vad_silence_time": 800, "hotword_id": "h1"})
    protocol = TencentAsrProtocol(options, now=lambda: 1592294092.7)
    params = protocol.params()
    assert {k: v for k, v in params.items() if k not in ("nonce", "voice_id")} == {
        "secretid": SECRET_ID, "timestamp": "1592294092", "expired": "1592380492", "engine_model_type": "16k_en",
        "voice_format": "1", "needvad": "1", "vad_silence_time": "800", "hotword_id": "h1"}
    assert 1 <= int(params["nonce"]) <= 9_999_999_999
    assert params["voice_id"] != protocol.params()["voice_id"]          # each connection its own
    parts = urllib.parse.urlsplit(protocol.url())
    assert (parts.scheme, parts.netloc, parts.path) == ("wss", "asr.cloud.tencent.com", f"/asr/v2/{APP_ID}")
    assert parts.query.rsplit("&", 1)[1].startswith("signature=")
    eight = TencentAsrProtocol(AsrOptions(samplerate=8000, app_id="1", secret_id="i", secret_key="k"))
    assert (eight.model, eight.rate, eight.packet) == ("8k_zh", 8000, 640)
    named = TencentAsrProtocol(AsrOptions(model_type="16k_zh_medical", app_id="1", secret_id="i", secret_key="k",
                                          buffer_size=3200))
    assert (named.model, named.rate, named.packet) == ("16k_zh_medical", 16000, 3200)


@pytest.mark.parametrize(("fields", "message"), [
    ({"secret_key": None}, "tencent needs secretKey (options appId, secretId, secretKey or env TENCENT_APPID, "
                           "TENCENT_SECRET_ID, TENCENT_SECRET_KEY)"),
    ({"app_id": None, "secret_id": None}, "tencent needs appId, secretId (options appId, secretId, secretKey or "
                                          "env TENCENT_APPID, TENCENT_SECRET_ID, TENCENT_SECRET_KEY)"),
    ({"samplerate": 48000}, "tencent: samplerate 48000 is not supported (8000 or 16000)"),
    ({"language": "xx-YY"}, "tencent: no engine model for language 'xx-YY'; name one with modelType (e.g. 16k_zh)"),
    ({"buffer_size": 333}, "tencent: bufferSize must be a positive even number of bytes, got 333"),
    ({"extra": {"voice_format": 8, "signature": "x"}},
     "tencent: extra may not set signature, voice_format (signature and audio format are the server's; use "
     "modelType for the engine)"),
    ({"extra": {"hotword_id": ["a"]}}, "tencent: extra hotword_id must be a string or a number"),
])
def test_asr_option_errors(fields: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"app_id": APP_ID, "secret_id": SECRET_ID, "secret_key": SECRET_KEY}
    with pytest.raises(ProviderError) as caught:
        TencentAsrProtocol(AsrOptions(**{**base, **fields}))
    assert (str(caught.value), caught.value.sender) == (message, "asr")


def test_asr_reads_the_documented_frames() -> None:
    frames = ASR["frames"]
    protocol = TencentAsrProtocol(AsrOptions(app_id=APP_ID, secret_id=SECRET_ID, secret_key=SECRET_KEY))
    assert not protocol.ready
    assert protocol.received(frames["handshake"]) == []
    assert protocol.ready
    assert protocol.received(frames["partial"]) == [AsrResult("实时", False, 0, 1240)]
    assert protocol.received(frames["final"]) == [AsrResult("实时语音识别", True, 0, 2840)]
    assert protocol.received(frames["end"]) == []
    with pytest.raises(ProviderError) as caught:
        protocol.received(frames["error"])
    assert (str(caught.value), caught.value.code) == ("tencent: 后台识别服务器音频分片等待超时 (code 4008)", 4008)
    with pytest.raises(ProviderError) as caught:
        protocol.received(frames["auth_failed"])
    assert (str(caught.value), caught.value.code) == ("tencent refused the credentials: 鉴权失败 (code 4002)", 4002)
    for garbage, why in [("not json", "Expecting value"), ("[1]", "not a JSON object"),
                         (b"\x00\x01", "a binary frame of 2 bytes (the service sends JSON text)"),
                         ('{"message": "x"}', "no integer code"),
                         ('{"code": 0, "result": {"slice_type": 7, "voice_text_str": "a", "start_time": 0, '
                          '"end_time": 1}}', "a result without slice_type 7")]:
        with pytest.raises(MalformedFrame, match=re.escape(why)):
            protocol.received(garbage)


def test_asr_packets_and_resampling_without_a_server() -> None:
    protocol = TencentAsrProtocol(AsrOptions(samplerate=8000, app_id="1", secret_id="i", secret_key="k"))
    audio = tone(1050)
    packets = [p for i in range(0, len(audio), 1000) for p in protocol.audio(audio[i:i + 1000])]
    assert {len(p) for p in packets} == {640}
    tail = protocol.flush()
    data = b"".join([*packets, *tail])
    assert len(tail) == 1 and len(tail[0]) < 640
    assert abs(len(data) // 2 - 8400) <= 8
    assert abs(dominant_hz(np.frombuffer(data, "<i2"), 8000) - 440) < 2
    assert protocol.flush() == [] and protocol.closing() == ['{"type": "end"}']


# -- ASR: sessions against the local service ----------------------------------------------------------
def test_asr_session_partials_and_finals_in_order() -> None:
    async def run() -> tuple[list[AsrResult], TencentServer, AsrResult | None]:
        async with TencentServer() as server, asr_stream(server, language="zh-CN") as stream:
            audio = tone(1400)
            results = await feed_until(stream, audio, lambda r: len(r) >= 4)
            final = await stream.end_utterance()
            await stream.close()
            await server.wait_for(lambda: server.asr[0].ended)
            return results, server, final

    results, server, final = asyncio.run(run())
    assert results == [AsrResult("call", False, 100, 300), AsrResult("call stella", False, 100, 600),
                       AsrResult("call stella please", True, 100, 900), AsrResult("and ask", False, 1000, 1300)]
    assert final is None                       # the final came with the audio, not at the pause
    session = server.asr[0]
    assert server.violations == []
    assert session.handshake.signature_ok
    assert session.handshake.params["engine_model_type"] == "16k_zh"
    assert session.packets[:-1] == [1280] * (len(session.packets) - 1)   # 40 ms packets; the last is the flush
    fed = tone(1400).astype("<i2").tobytes()
    assert bytes(session.pcm[:len(fed)]) == fed
    assert session.texts == ['{"type": "end"}']


def test_asr_at_8khz_sends_the_call_audio_resampled() -> None:
    async def run() -> TencentServer:
        async with TencentServer(script=(Step(500, 2, "ok", 0, 500),)) as server, \
                asr_stream(server, samplerate=8000) as stream:
            await feed_until(stream, tone(1000), lambda r: bool(r))
            return server

    server = asyncio.run(run())
    session = server.asr[0]
    assert server.violations == []
    assert session.handshake.params["engine_model_type"] == "8k_zh"
    assert set(session.packets) == {640}
    received = np.frombuffer(bytes(session.pcm), "<i2")
    assert abs(dominant_hz(received[:4000], 8000) - 440) < 3


def test_asr_buffer_size_sets_the_packet() -> None:
    async def run() -> TencentServer:
        async with TencentServer(script=(Step(600, 2, "ok", 0, 600),), packet=3200) as server, \
                asr_stream(server, buffer_size=3200) as stream:
            await feed_until(stream, tone(1000), lambda r: bool(r))
            return server

    server = asyncio.run(run())
    assert server.violations == [] and set(server.asr[0].packets) == {3200}


def test_asr_credentials_refused() -> None:
    async def run() -> ProviderError:
        async with TencentServer(secret_key="another key") as server:
            with pytest.raises(ProviderError) as caught:
                await TencentAsr(LOOPBACK).open_stream(asr_options(server))
            assert server.asr[0].packets == []
            return caught.value

    error = asyncio.run(run())
    assert (str(error), error.code, error.sender) == ("tencent refused the credentials: 鉴权失败 (code 4002)", 4002,
                                                      "asr")


def test_asr_connection_dropped_then_recognition_resumes() -> None:
    async def run() -> tuple[list[AsrResult], list[ProviderError], TencentServer, AsrStream]:
        async with TencentServer(script=(Step(300, 1, "first", 0, 300), Step(700, 2, "second", 0, 700))) as server:
            server.asr_modes = ["drop"]
            async with asr_stream(server) as stream:
                errors: list[ProviderError] = []
                results = await feed_until(stream, tone(3000), lambda r: any(x.final for x in r), errors)
                return results, errors, server, stream

    results, errors, server, stream = asyncio.run(run())
    assert [str(e) for e in errors] == ["tencent closed the connection: no close frame"]
    assert len(server.asr) == 2 and server.violations == []
    first, second = server.asr
    assert first.handshake.params["voice_id"] != second.handshake.params["voice_id"]
    assert isinstance(stream, WebSocketAsrStream) and stream.reconnects == 1
    final = results[-1]
    assert final.text == "second" and final.final
    # times stay on the stream's clock: the second connection started later
    assert final.start_ms is not None and final.start_ms >= 400


def test_asr_service_error_frame_then_reconnect() -> None:
    async def run() -> tuple[list[AsrResult], list[ProviderError]]:
        async with TencentServer(script=(Step(500, 2, "again", 0, 500),)) as server:
            server.asr_modes = ["error"]
            async with asr_stream(server) as stream:
                errors: list[ProviderError] = []
                results = await feed_until(stream, tone(2000), lambda r: bool(r), errors)
                return results, errors

    results, errors = asyncio.run(run())
    assert [(str(e), e.code) for e in errors] == [("tencent: 后台识别服务器音频分片等待超时 (code 4008)", 4008)]
    assert [r.text for r in results] == ["again"]


def test_asr_stall() -> None:
    async def run() -> list[ProviderError]:
        async with TencentServer() as server:
            server.asr_modes = ["stall"]
            async with asr_stream(server, QUICK) as stream:
                await stream.feed(tone(100))
                assert await stream.end_utterance() is None
                errors: list[ProviderError] = []
                await feed_until(stream, np.zeros(0, np.int16), lambda r: bool(errors), errors, seconds=2.0)
                return errors

    errors = asyncio.run(run())
    assert [str(e) for e in errors] == ["tencent stalled: no result within 0.3 s of the end of speech"]


def test_asr_malformed_frames_are_errors_and_the_stream_goes_on() -> None:
    async def run() -> tuple[list[AsrResult], list[ProviderError]]:
        async with TencentServer() as server:
            server.asr_modes = ["garbage"]
            async with asr_stream(server) as stream:
                errors: list[ProviderError] = []
                results = await feed_until(stream, tone(1400), lambda r: any(x.final for x in r), errors)
                return results, errors

    results, errors = asyncio.run(run())
    assert len(errors) == 1
    assert str(errors[0]) == ("tencent sent a malformed frame: 'not json {': Expecting value: line 1 column 1 "
                              "(char 0); tencent sent a malformed frame: a binary frame of 2 bytes (the service "
                              "sends JSON text)")
    assert [r.text for r in results if r.final] == ["call stella please"]


# -- TTS -------------------------------------------------------------------------------------------
def test_tts_query_from_the_request() -> None:
    request = TtsRequest("你好 world", speaker="101002", speed=1.2, samplerate=8000, emotion="happy", subtitle=True,
                         app_id=APP_ID, secret_id=SECRET_ID, secret_key=SECRET_KEY, volume=9,
                         extra={"EmotionIntensity": 150, "PrimaryLanguage": 1})
    protocol = TencentTtsProtocol(request, now=lambda: 1700000000.2)
    params = protocol.params()
    assert {k: v for k, v in params.items() if k != "SessionId"} == {
        "Action": "TextToStreamAudioWS", "AppId": int(APP_ID), "SecretId": SECRET_ID, "Timestamp": 1700000000,
        "Expired": 1700086400, "Text": "你好 world", "VoiceType": 101002, "Speed": 1.0, "Volume": 0,
        "SampleRate": 8000, "Codec": "pcm", "ModelType": 1, "EnableSubtitle": True, "EmotionCategory": "happy",
        "EmotionIntensity": 150, "PrimaryLanguage": 1}
    url = protocol.url()
    assert url.startswith("wss://tts.cloud.tencent.com/stream_ws?Action=TextToStreamAudioWS&AppId=1259228442&")
    assert "&EnableSubtitle=True&" in url and "&Text=%E4%BD%A0%E5%A5%BD%20world&" in url
    assert url.rsplit("&", 1)[1].startswith("Signature=")
    assert [speed_value(x) for x in (0.5, 0.6, 0.7, 1.0, 1.1, 1.5, 2.0, 3.0)] == \
        [-2.0, -2.0, -1.5, 0.0, 0.5, 2.0, 4.0, 6.0]


@pytest.mark.parametrize(("fields", "message"), [
    ({"secret_id": ""}, "tencent needs secretId (options appId, secretId, secretKey or env TENCENT_APPID, "
                        "TENCENT_SECRET_ID, TENCENT_SECRET_KEY)"),
    ({"codec": "mp3"}, "tencent: codec 'mp3' is not supported (pcm only)"),
    ({"speaker": "alice"}, "tencent: speaker must be a VoiceType number (e.g. 101001), got 'alice'"),
    ({"app_id": "app"}, "tencent: appId must be a number, got 'app'"),
    ({"extra": {"Text": "x", "Codec": "mp3"}}, "tencent: extra may not set Codec, Text (the signature, the text "
                                               "and the audio format are the server's)"),
    ({"extra": {"Speed": {"a": 1}}}, "tencent: extra Speed must be a string, number or boolean"),
])
def test_tts_option_errors(fields: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"app_id": APP_ID, "secret_id": SECRET_ID, "secret_key": SECRET_KEY}
    with pytest.raises(ProviderError) as caught:
        TencentTtsProtocol(TtsRequest("hi", **{**base, **fields}))
    assert (str(caught.value), caught.value.sender) == (message, "tts")


def test_tts_reads_the_documented_frames() -> None:
    frames = TTS["frames"]
    protocol = TencentTtsProtocol(TtsRequest("欢迎使用 Tencent cloud", app_id=APP_ID, secret_id=SECRET_ID,
                                             secret_key=SECRET_KEY))
    frame = protocol.received(frames["subtitles"])
    assert frame.words == (WordMark(250 * 16, 0),)     # two characters of one word: one mark
    assert (frame.pcm, frame.done) == (b"", False)
    assert protocol.received(b"\x01\x02").pcm == b"\x01\x02"
    assert protocol.received(frames["final"]).done
    with pytest.raises(ProviderError) as caught:
        protocol.received(frames["auth_failed"])
    assert (str(caught.value), caught.value.code) == ("tencent: 鉴权失败 (code 10003)", 10003)
    for garbage in ("<html>", '{"code": "0"}', '{"code": 0, "result": {"subtitles": [{"BeginTime": 1}]}}'):
        with pytest.raises(MalformedFrame):
            protocol.received(garbage)


def test_tts_session_audio_and_word_marks() -> None:
    async def run() -> tuple[list[TtsChunk], TencentServer]:
        async with TencentServer() as server:
            chunks = await synthesize(tts_request(server, emotion="neutral"))
            return chunks, server

    chunks, server = asyncio.run(run())
    assert server.violations == []
    session = server.tts[0]
    params = session.handshake.params
    assert session.handshake.signature_ok
    assert (params["Text"], params["SampleRate"], params["VoiceType"], params["Speed"], params["Volume"],
            params["EnableSubtitle"], params["EmotionCategory"]) == \
        ("hello big world", "16000", "101001", "0", "0", "True", "neutral")
    pcm = np.concatenate([c.pcm for c in chunks])
    assert len(pcm) == session.sent_samples == 3 * MS_PER_WORD * 16
    assert abs(dominant_hz(pcm, RATE) - 440) < 2
    marks = [w for c in chunks for w in c.words]
    assert marks == [WordMark(0, 0), WordMark(MS_PER_WORD * 16, 1), WordMark(2 * MS_PER_WORD * 16, 2)]


def test_tts_resamples_a_rate_the_service_lacks_and_8k_is_asked_for() -> None:
    async def run() -> tuple[list[TtsChunk], list[TtsChunk], TencentServer]:
        async with TencentServer() as server:
            wide = await synthesize(tts_request(server, samplerate=24000))
            narrow = await synthesize(tts_request(server, samplerate=8000, subtitle=False))
            return wide, narrow, server

    wide, narrow, server = asyncio.run(run())
    assert [s.handshake.params["SampleRate"] for s in server.tts] == ["16000", "8000"]
    assert server.tts[1].handshake.params["EnableSubtitle"] == "False" and server.tts[1].subtitles == []
    wide_pcm = np.concatenate([c.pcm for c in wide])
    assert abs(len(wide_pcm) - 3 * MS_PER_WORD * 24) <= 24
    assert [w for c in wide for w in c.words][1] == WordMark(MS_PER_WORD * 24, 1)
    assert len(np.concatenate([c.pcm for c in narrow])) == 3 * MS_PER_WORD * 8
    assert [w for c in narrow for w in c.words] == []


@pytest.mark.parametrize(("mode", "context", "message", "code"), [
    ("refuse", LOOPBACK, "tencent: 鉴权失败 (code 10003)", 10003),
    ("drop", LOOPBACK, "tencent closed the connection before the audio was complete (no close frame)", None),
    ("stall", QUICK, "tencent stalled: nothing for 0.3 s", None),
    ("garbage", LOOPBACK, "tencent sent a malformed frame: '<html>gateway error</html>': Expecting value: line 1 "
                          "column 1 (char 0)", None),
])
def test_tts_faults(mode: str, context: ProviderContext, message: str, code: int | None) -> None:
    async def run() -> tuple[ProviderError, list[TtsChunk]]:
        async with TencentServer(secret_key="wrong" if mode == "refuse" else SECRET_KEY) as server:
            server.tts_modes = [mode]
            got: list[TtsChunk] = []
            with pytest.raises(ProviderError) as caught:
                async for chunk in TencentTts(context).synthesize(tts_request(server)):
                    got.append(chunk)
            return caught.value, got

    error, got = asyncio.run(run())
    assert (str(error), error.code, error.sender) == (message, code, "tts")
    heard = sum(len(c.pcm) for c in got)
    assert heard == (0 if mode == "refuse" else RATE // 10)     # the first 100 ms arrived before the fault


# -- through a call server ---------------------------------------------------------------------------
def invite(**option: Any) -> Event:
    return {"command": "invite", "option": {"codec": "pcm", **option}}


def cloud(server: TencentServer, **option: Any) -> dict[str, Any]:
    return {"provider": "tencent", "appId": APP_ID, "secretId": SECRET_ID, "secretKey": SECRET_KEY,
            "endpoint": server.endpoint, **option}


def caller_speech() -> np.ndarray:
    speech = espeak_speech(RATE, text="call stella please")
    return np.concatenate([np.zeros(RATE // 2, np.int16), speech, np.zeros(RATE * 3 // 2, np.int16)])


def correlation(received: np.ndarray, sent: np.ndarray) -> float:
    """Peak normalised cross-correlation of ``sent`` inside ``received``."""
    a = received.astype(np.float64)
    b = sent.astype(np.float64)
    n = len(a) + len(b)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    return float(np.max(np.abs(corr)) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_call_asr_events_and_metrics(tmp_path: Path) -> None:
    speech = caller_speech()
    script = (Step(900, 0, "call", 500, 900), Step(1300, 1, "call stella", 500, 1300),
              Step(1900, 2, "call stella please", 500, 1900))

    async def run() -> tuple[list[Event], TencentServer]:
        async with TencentServer(script=script) as server, \
                running_server(tmp_path, endpoint_allow_networks=["127.0.0.0/8"]) as (_, address), \
                Call.open(address) as call:
            await call.send(invite(vad={"type": "webrtc"}, asr=cloud(server, language="en-US")))
            await call.wait_event("answer")
            start = call.mark()
            await stream_realtime(call, speech)
            await call.wait_event("metrics", start, key="completed.asr.tencent")
            return call.events(start), server

    events, server = asyncio.run(run())
    asr = [e for e in events if e["event"] in ("asrDelta", "asrFinal")
           or (e["event"] == "metrics" and ".asr." in e["key"])]
    assert [(e["event"], e.get("text", e.get("key"))) for e in asr] == [
        ("metrics", "ttfb.asr.tencent"), ("asrDelta", "call"), ("asrDelta", "call stella"),
        ("asrFinal", "call stella please"), ("metrics", "completed.asr.tencent")]
    assert not [e for e in events if e["event"] == "error"]
    assert server.violations == []
    session = server.asr[0]
    assert session.handshake.params["engine_model_type"] == "16k_en" and session.rate == 16000
    assert set(session.packets[:-1]) == {1280}
    received = np.frombuffer(bytes(session.pcm), "<i2")
    voiced = espeak_speech(RATE, text="call stella please")
    assert correlation(received, voiced) > 0.9          # the caller's speech, at 16 kHz


def test_call_asr_credentials_refused_then_the_call_goes_on(tmp_path: Path) -> None:
    async def run() -> tuple[Event, list[Event]]:
        async with TencentServer(secret_key="another key") as server, \
                running_server(tmp_path, endpoint_allow_networks=["127.0.0.0/8"]) as (_, address), \
                Call.open(address) as call:
            await call.send(invite(vad={"type": "webrtc"}, asr=cloud(server)))
            await call.wait_event("answer")
            error = await call.wait_event("error", sender="asr")
            start = call.mark()
            await call.send({"command": "tts", "text": "aGk=", "base64": True, "playId": "after"})
            await call.wait_event("trackEnd", start, playId="after")
            return error, call.events(start)

    error, after = asyncio.run(run())
    assert (error["error"], error.get("code")) == ("tencent refused the credentials: 鉴权失败 (code 4002)", 4002)
    assert [e["event"] for e in after if e["event"] in ("trackStart", "trackEnd")] == ["trackStart", "trackEnd"]


def test_call_asr_drop_is_an_error_then_recognition_resumes(tmp_path: Path) -> None:
    speech = caller_speech()
    script = (Step(1900, 2, "call stella please", 500, 1900),)

    async def run() -> tuple[list[Event], TencentServer]:
        async with TencentServer(script=script, fault_after_ms=300) as server, \
                running_server(tmp_path, endpoint_allow_networks=["127.0.0.0/8"]) as (_, address), \
                Call.open(address) as call:
            server.asr_modes = ["drop"]
            await call.send(invite(vad={"type": "webrtc"}, asr=cloud(server)))
            await call.wait_event("answer")
            start = call.mark()
            await stream_realtime(call, np.concatenate([speech, speech]))
            await call.wait_event("asrFinal", start)
            return call.events(start), server

    events, server = asyncio.run(run())
    kinds = [(e["event"], e.get("sender")) for e in events if e["event"] in ("error", "asrFinal")]
    assert kinds[:2] == [("error", "asr"), ("asrFinal", None)]
    error = next(e for e in events if e["event"] == "error")
    assert error["error"] == "tencent closed the connection: no close frame"
    assert len(server.asr) == 2 and server.violations == []


def test_call_tts_track_and_metrics(tmp_path: Path) -> None:
    async def run() -> tuple[list[Event], list[bytes], TencentServer]:
        async with TencentServer() as server, \
                running_server(tmp_path, endpoint_allow_networks=["127.0.0.0/8"]) as (_, address), \
                Call.open(address) as call:
            await call.send(invite(tts=cloud(server, speaker="101001")))
            await call.wait_event("answer")
            start = call.mark()
            await call.send({"command": "tts", "text": "hello big world", "playId": "p1"})
            started = await call.wait_event("trackStart", start, playId="p1")
            end = await call.wait_event("trackEnd", start, timeout=10.0, playId="p1")
            await call.wait(lambda: len(call.frames(call.position(started))) * 20 >= end["duration"])
            return call.events(start), call.frames(call.position(started)), server

    events, frames, server = asyncio.run(run())
    assert server.violations == [] and server.tts[0].handshake.params["Text"] == "hello big world"
    # ttfb and trackStart race (the track starts when its item reaches the playout queue's head)
    assert sorted(e["event"] for e in events) == ["metrics", "metrics", "trackEnd", "trackStart"]
    assert [e["key"] for e in events if e["event"] == "metrics"] == ["ttfb.tts.tencent", "completed.tts.tencent"]
    kinds = [e["event"] for e in events]
    assert kinds.index("trackStart") < kinds.index("trackEnd")
    end = events[kinds.index("trackEnd")]
    assert abs(end["duration"] - 3 * MS_PER_WORD) <= 20
    heard = np.frombuffer(b"".join(frames), "<i2")
    assert abs(dominant_hz(heard[:RATE * 3 * MS_PER_WORD // 1000], RATE) - 440) < 3


@pytest.mark.parametrize(("mode", "message", "code"), [
    ("refuse", "tencent: 鉴权失败 (code 10003)", 10003),
    ("drop", "tencent closed the connection before the audio was complete (no close frame)", None),
    ("stall", "tencent stalled: nothing for 0.5 s", None),
    ("garbage", "tencent sent a malformed frame: '<html>gateway error</html>': Expecting value: line 1 column 1 "
                "(char 0)", None),
])
def test_call_tts_faults_are_an_error_then_track_end(tmp_path: Path, mode: str, message: str,
                                                     code: int | None) -> None:
    async def run() -> list[Event]:
        async with TencentServer(secret_key="wrong" if mode == "refuse" else SECRET_KEY) as server, \
                running_server(tmp_path, endpoint_allow_networks=["127.0.0.0/8"],
                               provider_timeout_secs=0.5) as (_, address), \
                Call.open(address) as call:
            server.tts_modes = [mode]
            await call.send(invite(tts=cloud(server)))
            await call.wait_event("answer")
            start = call.mark()
            await call.send({"command": "tts", "text": "hello big world", "playId": "p1"})
            await call.wait_event("trackEnd", start, timeout=5.0, playId="p1")
            return call.events(start)

    events = asyncio.run(run())
    errors = [e for e in events if e["event"] == "error"]
    assert [(e["sender"], e["error"], e.get("code")) for e in errors] == [("tts", message, code)]
    order = [e["event"] for e in events if e["event"] in ("error", "trackEnd")]
    assert order == ["error", "trackEnd"]


def test_fixture_files_cite_their_sources() -> None:
    for name in ("asr.json", "tts.json"):
        data = json.loads((Path(__file__).parent / "fixtures" / "providers" / "tencent" / name).read_text())
        assert data["source"].startswith("https://cloud.tencent.com/document/")
