"""voiceapi (self-hosted sherpa-onnx server): streaming ASR (/asr) and TTS (/tts), against a local server
that speaks the protocol as voiceapi's README and app.py publish it (tests/support/voiceapi_server.py,
fixtures citing the sources).

Three levels: the sans-I/O protocols on the published frames; the provider classes against the local
server (a normal session and every fault); and calls through a real server (``/call``), asserting the
events a client receives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from pbx.asr.base import AsrOptions, AsrResult
from pbx.asr.voiceapi import FLUSH_SILENCE_MS, VoiceApiAsr, VoiceApiAsrProtocol
from pbx.cloud import asr as cloud_asr
from pbx.cloud.asr import MalformedFrame, WebSocketAsrStream
from pbx.cloud.tts import TtsFrame
from pbx.cloud.ws import ProviderContext
from pbx.errors import ProviderError
from pbx.media.netpolicy import AddressPolicy
from pbx.tts.base import TtsChunk, TtsRequest
from pbx.tts.espeak import EspeakTts
from pbx.tts.voiceapi import CHUNK_BYTES, VoiceApiTts, VoiceApiTtsProtocol
from tests.support.calls import RATE, Call, running_server, stream_realtime
from tests.support.voiceapi_server import ASR, REFUSED_BODY, SECONDS_PER_CHAR, TTS, Segment, VoiceApiServer

LOOPBACK = ProviderContext(AddressPolicy(["127.0.0.0/8"]), timeout_s=0.5)
CHUNK = RATE // 10                       # the ASR tap's ~100 ms
PHRASE = "call stella and ask her to bring these things"
TOKEN = "proxy-secret"
REFUSED = f"voiceapi refused the credentials: HTTP 401: {REFUSED_BODY}"
NO_ENDPOINT = "voiceapi needs endpoint (option endpoint or env VOICEAPI_ENDPOINT)"     # the registry's format
QUICK = (Segment(("hello",), "hello world"), Segment(("again",), "hello again"))


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """The phrase spoken by our espeak-ng provider at 16 kHz."""
    async def run() -> np.ndarray:
        tts = EspeakTts()
        try:
            chunks = [c.pcm async for c in tts.synthesize(TtsRequest(PHRASE, samplerate=RATE))]
        finally:
            await tts.close()
        return np.concatenate(chunks)
    return asyncio.run(run())


def tone(seconds: float, hz: float = 300.0, rate: int = RATE) -> np.ndarray:
    return np.round(6000 * np.sin(2 * np.pi * hz * np.arange(round(seconds * rate)) / rate)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), np.int16)


def asr_options(server: VoiceApiServer | None = None, **fields: Any) -> AsrOptions:
    return AsrOptions(endpoint=server.endpoint if server else "ws://localhost:8000", **fields)


def tts_request(server: VoiceApiServer | None, text: str = TTS["text_example"], **fields: Any) -> TtsRequest:
    return TtsRequest(text, endpoint=server.endpoint if server else "ws://localhost:8000", **fields)


def aligned_correlation(reference: np.ndarray, heard: np.ndarray) -> float:
    """Normalised correlation of ``reference`` with ``heard`` at the lag where they line up best."""
    a, b = reference.astype(np.float64), heard.astype(np.float64)
    size = len(a) + len(b)
    cross = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lag = int(np.argmax(cross[:len(b)]))
    n = min(len(a), len(b) - lag)
    x, y = a[:n], b[lag:lag + n]
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


# -- the /asr protocol, sans I/O ----------------------------------------------------------------------------
def test_the_asr_url_is_the_published_one_and_a_key_goes_as_a_bearer_only_when_given() -> None:
    protocol = VoiceApiAsrProtocol(asr_options())
    assert protocol.url() == ASR["url_example"]                     # the README's own example
    assert protocol.headers() == {} and protocol.opening() == [] and protocol.closing() == []
    protocol = VoiceApiAsrProtocol(AsrOptions(
        endpoint="https://speech.example/voiceapi/?tenant=a", samplerate=8000, secret_key=TOKEN,
        language="zh", model_type="zipformer", app_id="ignored", extra={"hotwords": "stella", "debug": True}))
    assert protocol.url() == "wss://speech.example/voiceapi/asr?tenant=a&samplerate=8000&hotwords=stella&debug=true"
    assert protocol.headers() == {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(("options", "message"), [
    (AsrOptions(), NO_ENDPOINT),
    (asr_options(samplerate=11025), "voiceapi: samplerate 11025 is not supported (8000, 16000, 24000, 48000)"),
    (asr_options(buffer_size=641), "voiceapi: bufferSize must be a positive even number of bytes, got 641"),
    (asr_options(extra={"samplerate": 8000}),
     "voiceapi: extra may not set samplerate (the audio format is the server's; use samplerate)"),
    (asr_options(extra={"hotwords": ["a"]}), "voiceapi: extra hotwords must be a string, number or boolean"),
    (AsrOptions(endpoint="localhost:8000"),
     "voiceapi: bad endpoint 'localhost:8000' (expected ws://host:port, wss://, http:// or https://)"),
])
def test_bad_options_are_refused_before_connecting(options: AsrOptions, message: str) -> None:
    with pytest.raises(ProviderError) as info:
        asyncio.run(VoiceApiAsr(LOOPBACK).open_stream(options))
    assert str(info.value) == message and info.value.sender == "asr"


def test_the_published_result_frames_become_partials_and_finals() -> None:
    p = VoiceApiAsrProtocol(asr_options())
    assert [p.received(frame) for frame in ASR["results"]] == [
        [AsrResult("call", False)], [AsrResult("call stella", False)],
        [AsrResult("call stella and ask her", True)], [AsrResult("to bring", False)]]
    # an empty partial says nothing; an empty final still ends the segment
    assert p.received('{"text":"  ","finished":false,"idx":2}') == []
    assert p.received('{"text":"","finished":true,"idx":2}') == [AsrResult("", True)]


@pytest.mark.parametrize(("message", "error"), [
    (b"\x00\x01", "a binary frame of 2 bytes (voiceapi sends JSON text)"),
    ("{not json", "'{not json': Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ("[1, 2]", "'[1, 2]': not a JSON object"),
    ('{"text":"hello","idx":0}', "'{\"text\":\"hello\",\"idx\":0}': a result without finished"),
    ('{"finished":true}', "'{\"finished\":true}': a result without text, idx"),
    ('{"text":"a","finished":"yes","idx":0}', "'{\"text\":\"a\",\"finished\":\"yes\",\"idx\":0}': a result with a bad "
                                              "field (text must be a string, finished a boolean, idx an integer)"),
    ('{"text":"a","finished":true,"idx":true}', "'{\"text\":\"a\",\"finished\":true,\"idx\":true}': a result with a "
                                                "bad field (text must be a string, finished a boolean, idx an "
                                                "integer)"),
])
def test_frames_it_cannot_read_are_malformed(message: str | bytes, error: str) -> None:
    with pytest.raises(MalformedFrame) as info:
        VoiceApiAsrProtocol(asr_options()).received(message)
    assert str(info.value) == error


def test_audio_is_resampled_cut_into_buffer_size_packets_and_the_flush_is_trailing_silence() -> None:
    p = VoiceApiAsrProtocol(asr_options(samplerate=8000, buffer_size=640))
    audio = tone(0.25)[:4001]
    packets = p.audio(audio[:1601]) + p.audio(audio[1601:])   # an odd sample waits for the next chunk
    assert [len(m) for m in packets] == [640] * 6              # 4000 samples at 16 kHz: 4000 bytes at 8 kHz
    flushed = p.flush()
    silence_bytes = 2 * 8000 * FLUSH_SILENCE_MS // 1000
    assert all(isinstance(m, bytes) for m in flushed) and all(len(m) == 640 for m in flushed[:-1])
    data = b"".join(m for m in flushed if isinstance(m, bytes))
    assert len(data) == 4000 - 6 * 640 + silence_bytes and not any(data[4000 - 6 * 640:])
    # without bufferSize: the call's chunks as they come, never an empty frame
    p = VoiceApiAsrProtocol(asr_options())
    assert p.audio(np.zeros(0, np.int16)) == [] and [len(m) for m in p.audio(tone(0.1))] == [3200]
    assert [len(m) for m in p.flush()] == [2 * RATE * FLUSH_SILENCE_MS // 1000]


# -- the /tts protocol, sans I/O ------------------------------------------------------------------------------
def test_the_tts_url_and_the_text_message() -> None:
    p = VoiceApiTtsProtocol(tts_request(None))
    assert p.url() == (TTS["url_example"] + f"&sid=0&speed=1.0&chunk_size={CHUNK_BYTES}&split=false")
    assert TTS["upstream_query"] == f"chunk_size={CHUNK_BYTES}&split=false"
    assert p.opening() == [TTS["text_example"]] and p.headers() == {} and p.rate == 16000
    p = VoiceApiTtsProtocol(tts_request(None, speaker="12", speed=1.25, samplerate=8000, secret_key=TOKEN, volume=9,
                                        emotion="happy", subtitle=True, codec="PCM",
                                        extra={"split": True, "chunk_size": 1023}))
    assert p.url() == "ws://localhost:8000/tts?samplerate=8000&sid=12&speed=1.25&chunk_size=1023&split=true"
    assert p.headers() == {"Authorization": f"Bearer {TOKEN}"} and p.rate == 8000


def test_tts_reads_the_published_frames() -> None:
    p = VoiceApiTtsProtocol(tts_request(None))
    assert p.received(b"\x01\x02\x03") == TtsFrame(pcm=b"\x01\x02\x03")
    assert p.received('{"progress":0.5,"elapsed":"3ms","duration":"0.10s","size":1}') == TtsFrame()
    assert p.received(TTS["finished"]) == TtsFrame(done=True)
    with pytest.raises(MalformedFrame, match=r"^'<html>': Expecting value: line 1 column 1 \(char 0\)$"):
        p.received("<html>")
    with pytest.raises(MalformedFrame, match=r"^'\{\"progress\":\"done\"\}': a result without a numeric progress$"):
        p.received('{"progress":"done"}')
    # complete with no audio at all: voiceapi's engine failed (it only logs why)
    with pytest.raises(ProviderError) as info:
        VoiceApiTtsProtocol(tts_request(None)).received(
            '{"progress":1.0,"elapsed":"0ms","duration":"0.00s","size":0}')
    assert str(info.value) == "voiceapi produced no audio for the text (duration 0.00s; the server's log says why)"


@pytest.mark.parametrize(("request_", "message"), [
    (TtsRequest("hi"), NO_ENDPOINT),
    (tts_request(None, speaker="alice"),
     "voiceapi: speaker must be a speaker id (a whole number such as 0), got 'alice'"),
    (tts_request(None, speed=0.0), "voiceapi: speed must be a positive number, got 0.0"),
    (tts_request(None, codec="opus"), "voiceapi: codec 'opus' is not supported (voiceapi sends pcm)"),
    (tts_request(None, samplerate=0), "voiceapi: samplerate 0 is not supported"),
    (tts_request(None, extra={"samplerate": 8000}),
     "voiceapi: extra may not set samplerate (the audio format is the server's; use samplerate)"),
])
def test_bad_tts_options_are_refused_before_connecting(request_: TtsRequest, message: str) -> None:
    async def run() -> None:
        async for _ in VoiceApiTts(LOOPBACK).synthesize(request_):
            pass

    with pytest.raises(ProviderError) as info:
        asyncio.run(run())
    assert str(info.value) == message and info.value.sender == "tts"


# -- the provider classes against the local server -----------------------------------------------------------
async def feed_all(stream: WebSocketAsrStream, pcm: np.ndarray, pace_s: float = 0.0
                   ) -> list[AsrResult | ProviderError]:
    """Feed ``pcm`` in 100 ms chunks (``pace_s`` apart); what each returns or raises, in order."""
    out: list[AsrResult | ProviderError] = []
    for i in range(0, len(pcm), CHUNK):
        try:
            out.extend(await stream.feed(pcm[i:i + CHUNK]))
        except ProviderError as exc:
            out.append(exc)
        await asyncio.sleep(pace_s)
    return out


def errors_of(got: list[Any]) -> list[str]:
    return [part for g in got if isinstance(g, ProviderError) for part in str(g).split("; ")]


def texts_of(got: list[Any], final: bool) -> list[str]:
    return [g.text for g in got if isinstance(g, AsrResult) and g.final == final and g.text]


def test_a_recognition_session_partials_then_the_final_at_the_end_of_the_utterance(speech: np.ndarray) -> None:
    audio = np.concatenate([silence(0.5), speech, silence(0.3)])

    async def run() -> None:
        async with VoiceApiServer() as server:
            stream = await VoiceApiAsr(LOOPBACK).open_stream(asr_options(server, language="en"))
            assert isinstance(stream, WebSocketAsrStream)
            got = await feed_all(stream, audio)
            await server.wait_for(lambda: len(server.asrs[0].sent) == 3)    # the three partials
            final = await stream.end_utterance()                           # its silence ends voiceapi's segment
            await stream.close()
            session = server.asrs[0]
            assert session.handshake.query == {"samplerate": ["16000"]}
            assert "Authorization" not in session.handshake.headers
            flush = 2 * RATE * FLUSH_SILENCE_MS // 1000
            assert session.packets == [2 * CHUNK] * (len(audio) // CHUNK) + [2 * (len(audio) % CHUNK), flush]
            assert np.array_equal(session.pcm[:len(audio)], audio)        # 16 kHz: the call's audio, unchanged
            assert not session.pcm[len(audio):].any() and server.violations == []
        assert errors_of(got) == []
        assert texts_of(got, final=False) == list(server.script[0].partials)
        assert final == AsrResult(server.script[0].final, True)

    asyncio.run(run())


def test_finals_voiceapi_ends_itself_come_from_feed_and_8khz_packets(speech: np.ndarray) -> None:
    audio = np.concatenate([speech, silence(1.5), speech[:RATE], silence(1.5)])

    async def run() -> None:
        async with VoiceApiServer(token=TOKEN) as server:
            stream = await VoiceApiAsr(LOOPBACK).open_stream(
                asr_options(server, samplerate=8000, buffer_size=640, secret_key=TOKEN))
            got = await feed_all(stream, audio)
            await server.wait_for(lambda: len([f for f in server.asrs[0].sent if f["finished"]]) == 2)
            got += await stream.feed(np.zeros(CHUNK, np.int16))
            await stream.close()
            session = server.asrs[0]
        assert session.handshake.headers["Authorization"] == f"Bearer {TOKEN}" and server.violations == []
        assert session.handshake.param("samplerate") == "8000" and set(session.packets) == {640}
        assert texts_of(got, final=True) == [s.final for s in server.script]
        assert [f["idx"] for f in session.sent if f["finished"]] == [0, 1]
        reference = soxr.resample(speech.astype(np.float32), RATE, 8000)
        assert aligned_correlation(reference, session.pcm[:len(reference) + 200]) > 0.97

    asyncio.run(run())


def test_refused_credentials() -> None:
    async def run() -> None:
        async with VoiceApiServer(token=TOKEN) as server:
            with pytest.raises(ProviderError) as info:
                await VoiceApiAsr(LOOPBACK).open_stream(asr_options(server, secret_key="wrong"))
            assert server.refused[0].headers["Authorization"] == "Bearer wrong"
        assert (str(info.value), info.value.code, info.value.sender) == (REFUSED, 401, "asr")

    asyncio.run(run())


@pytest.mark.parametrize(("mode", "error", "code"), [
    ("close", "voiceapi closed the connection: code 1011", 1011),
    ("drop", "voiceapi closed the connection: no close frame", None),
])
def test_a_connection_lost_mid_call_is_one_error_then_recognition_resumes(
        monkeypatch: pytest.MonkeyPatch, mode: str, error: str, code: int | None) -> None:
    monkeypatch.setattr(cloud_asr, "BACKOFF_FIRST_S", 0.2)
    audio = np.concatenate([tone(0.5), silence(0.5), tone(0.6), silence(1.3)])

    async def run() -> None:
        async with VoiceApiServer() as server:
            server.asr_modes = [mode]
            server.script = QUICK
            stream = await VoiceApiAsr(LOOPBACK).open_stream(asr_options(server))
            got = await feed_all(stream, audio, pace_s=0.05)
            await server.wait_for(lambda: len(server.asrs) == 2 and any(f["finished"] for f in server.asrs[1].sent))
            got += await stream.feed(np.zeros(CHUNK, np.int16))
            await stream.close()
            assert server.violations == []
        errors = [g for g in got if isinstance(g, ProviderError)]
        assert [(str(e), e.code) for e in errors] == [(error, code)]
        assert texts_of(got, final=True) == ["hello world"]               # the new connection's first segment
        assert got.index(errors[0]) < next(i for i, g in enumerate(got) if isinstance(g, AsrResult) and g.final)

    asyncio.run(run())


def test_a_stall_at_the_end_of_an_utterance_is_an_error_then_a_new_connection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloud_asr, "BACKOFF_FIRST_S", 0.2)

    async def run() -> None:
        async with VoiceApiServer() as server:
            server.asr_modes = ["stall"]
            server.script = QUICK
            stream = await VoiceApiAsr(LOOPBACK).open_stream(asr_options(server))
            got = await feed_all(stream, tone(0.5))
            final = await stream.end_utterance()                  # voiceapi goes silent: no final
            got += await feed_all(stream, np.concatenate([silence(1.2), tone(0.5), silence(1.3)]), pace_s=0.05)
            await stream.close()
        assert final is None
        assert errors_of(got) == ["voiceapi stalled: no result within 0.5 s of the end of speech"]
        assert texts_of(got, final=False)[0] == "hello" and texts_of(got, final=True) == ["hello world"]
        assert len(server.asrs) == 2

    asyncio.run(run())


def test_silence_after_a_final_or_after_nothing_heard_is_no_stall() -> None:
    async def run() -> None:
        async with VoiceApiServer() as server:
            server.script = QUICK
            stream = await VoiceApiAsr(LOOPBACK).open_stream(asr_options(server))
            got = await feed_all(stream, tone(0.5))
            final = await stream.end_utterance()                       # answered: nothing more is owed
            got += await feed_all(stream, silence(1.0), pace_s=0.1)    # twice the 0.5 s stall timeout
            nothing = await stream.end_utterance()                     # voiceapi heard nothing: says nothing
            got += await feed_all(stream, silence(1.0), pace_s=0.1)
            await stream.close()
        assert final == AsrResult("hello world", True) and nothing is None
        assert errors_of(got) == [] and len(server.asrs) == 1

    asyncio.run(run())

def test_malformed_frames_are_errors_and_the_stream_goes_on() -> None:
    async def run() -> None:
        async with VoiceApiServer() as server:
            server.asr_modes = ["garbage"]
            server.script = QUICK
            stream = await VoiceApiAsr(LOOPBACK).open_stream(asr_options(server))
            got = await feed_all(stream, np.concatenate([tone(0.5), silence(0.2)]))
            final = await stream.end_utterance()
            await stream.close()
        assert errors_of(got) == [
            "voiceapi sent a malformed frame: '{not json': Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
            "voiceapi sent a malformed frame: '{\"text\":\"hello\",\"idx\":0}': a result without finished"]
        assert texts_of(got, final=False) == ["hello"] and final == AsrResult("hello world", True)

    asyncio.run(run())


async def synthesize(request: TtsRequest) -> tuple[list[TtsChunk], ProviderError | None]:
    chunks: list[TtsChunk] = []
    try:
        async for chunk in VoiceApiTts(LOOPBACK).synthesize(request):
            chunks.append(chunk)
    except ProviderError as exc:
        return chunks, exc
    return chunks, None


def dominant_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(pcm))


@pytest.mark.parametrize(("samplerate", "speaker", "speed", "extra"), [
    (16000, None, 1.0, {}), (8000, "3", 1.0, {"chunk_size": 1023}), (22050, "5", 1.5, {})])
def test_a_synthesis_streams_the_audio_at_the_asked_rate(samplerate: int, speaker: str | None, speed: float,
                                                           extra: dict[str, Any]) -> None:
    text = "Hello, how can I help you today?"

    async def run() -> None:
        async with VoiceApiServer() as server:
            chunks, error = await synthesize(tts_request(server, text, speaker=speaker, speed=speed,
                                                         samplerate=samplerate, extra=extra))
        assert error is None and server.violations == []
        session = server.ttss[0]
        assert session.texts == [text] and "Authorization" not in session.handshake.headers
        assert session.params == {**TTS["query_defaults"], "samplerate": samplerate, "sid": int(speaker or 0),
                                  "speed": speed, "chunk_size": extra.get("chunk_size", CHUNK_BYTES),
                                  "split": False}
        assert len(chunks) == len(session.frames) >= 3            # streamed as it came, not in one piece
        pcm = np.concatenate([c.pcm for c in chunks])
        assert len(pcm) * 2 == sum(session.frames)                # odd frames too: no byte lost or added
        assert len(pcm) == round(len(text) * SECONDS_PER_CHAR / speed * samplerate)
        assert abs(dominant_hz(pcm, samplerate) - (440 + 20 * int(speaker or 0))) < 3
        assert all(c.words == () for c in chunks)                # voiceapi gives no word timings

    asyncio.run(run())


def test_split_true_through_extra_and_a_bearer_for_a_proxy() -> None:
    text = "Hello there. How are you?"

    async def run() -> None:
        async with VoiceApiServer(token=TOKEN) as server:
            chunks, error = await synthesize(tts_request(server, text, secret_key=TOKEN, extra={"split": True}))
        assert error is None and server.violations == []
        assert server.ttss[0].handshake.headers["Authorization"] == f"Bearer {TOKEN}"
        pcm = np.concatenate([c.pcm for c in chunks])
        pieces = ["Hello there", "How are you"]                  # voiceapi's splitter, a 0.2 s pause between
        assert len(pcm) == sum(round(len(p) * SECONDS_PER_CHAR * RATE) for p in pieces) + round(0.2 * RATE)

    asyncio.run(run())


def test_blank_text_is_no_audio_and_no_connection() -> None:
    async def run() -> None:
        async with VoiceApiServer() as server:
            chunks, error = await synthesize(tts_request(server, "  "))
        assert (chunks, error, server.handshakes) == ([], None, [])

    asyncio.run(run())


TTS_FAULTS = {
    "refuse": (REFUSED, 401, False),
    "drop": ("voiceapi closed the connection before the audio was complete (code 1011)", 1011, True),
    "stall": ("voiceapi stalled: nothing for 0.5 s", None, False),
    "garbage": ("voiceapi sent a malformed frame: '<html>502 Bad Gateway</html>': Expecting value: line 1 "
                "column 1 (char 0)", None, True),
    "empty": ("voiceapi produced no audio for the text (duration 0.00s; the server's log says why)", None, False),
}


@pytest.mark.parametrize("mode", list(TTS_FAULTS))
def test_tts_faults(mode: str) -> None:
    message, code, audio = TTS_FAULTS[mode]

    async def run() -> None:
        async with VoiceApiServer() as server:
            server.tts_modes = [mode]
            chunks, error = await synthesize(tts_request(server))
        assert error is not None and (str(error), error.code, error.sender) == (message, code, "tts")
        assert bool(chunks) == audio

    asyncio.run(run())


# -- calls through a real server -----------------------------------------------------------------------------
@asynccontextmanager
async def call_with(tmp_path: Path, timeout: float = 10.0, **option: Any) -> AsyncIterator[Call]:
    async with running_server(tmp_path, endpoint_allow_networks=["127.0.0.0/8"],
                              provider_timeout_secs=timeout) as (_, address), Call.open(address) as call:
        await call.send({"command": "invite", "option": {"codec": "pcm", **option}})
        await call.wait_event("answer")
        yield call


def test_e2e_recognition_at_8khz_with_metrics(tmp_path: Path, speech: np.ndarray) -> None:
    caller = np.concatenate([silence(0.5), speech, silence(1.2)])

    async def run() -> None:
        async with VoiceApiServer() as server:
            asr = {"provider": "voiceapi", "endpoint": server.endpoint, "samplerate": 8000, "language": "en"}
            async with call_with(tmp_path, vad={"type": "webrtc"}, asr=asr) as call:
                await stream_realtime(call, caller)
                final = await call.wait_event("asrFinal", timeout=5.0)
                events = call.events()
                await call.send({"command": "hangup"})
                await call.wait_event("hangup")
        assert final["text"] == server.script[0].final and final["index"] == 1
        deltas = [e["text"] for e in events if e["event"] == "asrDelta"]
        assert deltas == list(server.script[0].partials)
        metrics = {e["key"]: e for e in events if e["event"] == "metrics" and ".asr." in e["key"]}
        assert set(metrics) == {"ttfb.asr.voiceapi", "completed.asr.voiceapi"}
        assert metrics["ttfb.asr.voiceapi"]["data"] == {"index": 1, "provider": "voiceapi"}
        assert 0 < metrics["ttfb.asr.voiceapi"]["duration"] <= metrics["completed.asr.voiceapi"]["duration"]
        assert not [e for e in events if e["event"] == "error"]
        # voiceapi heard the caller's speech, at the rate asked for
        session = server.asrs[0]
        assert session.handshake.query == {"samplerate": ["8000"]} and server.violations == []
        reference = soxr.resample(speech.astype(np.float32), RATE, 8000)
        assert aligned_correlation(reference, session.pcm) > 0.9

    asyncio.run(run())


def test_e2e_recognition_faults_refused_key_missing_endpoint_and_a_drop_then_recognition(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, speech: np.ndarray) -> None:
    monkeypatch.setattr(cloud_asr, "BACKOFF_FIRST_S", 0.2)
    monkeypatch.delenv("VOICEAPI_ENDPOINT", raising=False)
    caller = np.concatenate([silence(1.0), speech, silence(1.2)])

    async def run() -> None:
        async with VoiceApiServer(token=TOKEN) as server:
            asr = {"provider": "voiceapi", "endpoint": server.endpoint}
            async with call_with(tmp_path, asr={**asr, "secretKey": "wrong"}) as call:
                refused = await call.wait_event("error", sender="asr")
            assert (refused["error"], refused.get("code")) == (REFUSED, 401)
            async with call_with(tmp_path, asr={"provider": "voiceapi"}) as call:
                missing = await call.wait_event("error", sender="asr")
            assert missing["error"] == NO_ENDPOINT

            server.asr_modes = ["close"]
            server.fault_after_s = 0.2
            async with call_with(tmp_path, vad={"type": "webrtc"}, asr={**asr, "secretKey": TOKEN}) as call:
                await stream_realtime(call, caller)
                final = await call.wait_event("asrFinal", timeout=5.0)
                events = call.events()
        errors = [e for e in events if e["event"] == "error"]
        assert [(e["sender"], e["error"], e.get("code")) for e in errors] == [
            ("asr", "voiceapi closed the connection: code 1011", 1011)]
        assert events.index(errors[0]) < events.index(final)
        assert final["text"] == server.script[0].final and len(server.asrs) == 2

    asyncio.run(run())


def test_e2e_a_stall_then_malformed_frames_then_recognition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              speech: np.ndarray) -> None:
    monkeypatch.setattr(cloud_asr, "BACKOFF_FIRST_S", 0.2)
    caller = np.concatenate([silence(0.5), speech, silence(3.0), speech, silence(1.2)])

    async def run() -> None:
        async with VoiceApiServer() as server:
            server.asr_modes = ["stall", "garbage"]
            asr = {"provider": "voiceapi", "endpoint": server.endpoint}
            async with call_with(tmp_path, timeout=0.5, vad={"type": "webrtc"}, asr=asr) as call:
                await stream_realtime(call, caller)
                final = await call.wait_event("asrFinal", timeout=5.0)
                events = call.events()
        errors = [part for e in events if e["event"] == "error" for part in e["error"].split("; ")]
        assert {e["sender"] for e in events if e["event"] == "error"} == {"asr"}
        assert errors == [
            "voiceapi stalled: no result within 0.5 s of the end of speech",
            "voiceapi sent a malformed frame: '{not json': Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
            "voiceapi sent a malformed frame: '{\"text\":\"hello\",\"idx\":0}': a result without finished"]
        # the stalled connection's partials, then the new one's, and its final as the call's first
        assert [e["text"] for e in events if e["event"] == "asrDelta"] == list(server.script[0].partials) * 2
        assert (final["text"], final["index"]) == (server.script[0].final, 1) and len(server.asrs) == 2
        assert server.violations == []

    asyncio.run(run())

def test_e2e_synthesis_with_the_environment_and_its_faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "Hello, how can I help you today?"

    async def run() -> None:
        async with VoiceApiServer() as server:
            # endpoint and speaker from the environment the upstream server reads
            monkeypatch.setenv("VOICEAPI_ENDPOINT", server.endpoint)
            monkeypatch.setenv("VOICEAPI_SPEAKER_ID", "2")
            async with call_with(tmp_path, timeout=0.5, tts={"provider": "voiceapi"}) as call:
                start = call.mark()
                await call.send({"command": "tts", "text": text, "playId": "ok"})
                end = await call.wait_event("trackEnd", start, playId="ok")
                ok = call.events(start)
                faults: dict[str, list[dict[str, Any]]] = {}
                for mode in TTS_FAULTS:
                    server.tts_modes = [mode]
                    start = call.mark()
                    # another text each time: the server's TTS cache holds the first
                    await call.send({"command": "tts", "text": f"{text} ({mode})", "playId": mode})
                    await call.wait_event("trackEnd", start, playId=mode)
                    faults[mode] = [e for e in call.events(start) if e["event"] in ("error", "trackEnd")]
        assert server.ttss[0].texts == [text] and server.violations == []
        assert (server.ttss[0].params["sid"], server.ttss[0].params["samplerate"]) == (2, 16000)
        names = [e["event"] for e in ok if e["event"] in ("trackStart", "trackEnd")]
        assert names == ["trackStart", "trackEnd"]
        assert abs(end["duration"] - len(text) * SECONDS_PER_CHAR * 1000) <= 40
        keys = [e["key"] for e in ok if e["event"] == "metrics"]
        assert "ttfb.tts.voiceapi" in keys and "completed.tts.voiceapi" in keys
        assert not [e for e in ok if e["event"] == "error"]
        for mode, (message, code, _) in TTS_FAULTS.items():
            error, track_end = faults[mode]
            assert (error["event"], error["sender"], error["error"], error.get("code")) == ("error", "tts", message,
                                                                                           code), mode
            assert track_end["event"] == "trackEnd" and track_end["playId"] == mode

    asyncio.run(run())

