"""Deepgram: live streaming ASR (/v1/listen) and streaming TTS (/v1/speak), against a local server that
speaks the documented protocols (tests/support/deepgram_server.py, fixtures citing Deepgram's pages).

Three levels: the sans-I/O protocols on the documented frames; the provider classes against the local
server (a normal session and every fault); and calls through a real server (``/call``), asserting the
events a client receives.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from pbx.asr.base import AsrOptions, AsrResult
from pbx.asr.deepgram import DeepgramAsr, DeepgramAsrProtocol
from pbx.cloud import asr as cloud_asr
from pbx.cloud.asr import MalformedFrame, WebSocketAsrStream
from pbx.cloud.tts import TtsFrame
from pbx.cloud.ws import ProviderContext
from pbx.core.g711 import ulaw_encode
from pbx.errors import ProviderError
from pbx.media.netpolicy import AddressPolicy
from pbx.tts.base import TtsChunk, TtsRequest
from pbx.tts.deepgram import DeepgramTts, DeepgramTtsProtocol, speak_pieces
from support.audio import espeak_speech
from tests.support.calls import RATE, Call, running_server, stream_realtime
from tests.support.deepgram_server import KEY, LISTEN, SECONDS_PER_CHAR, SPEAK, DeepgramServer, Step

LOOPBACK = ProviderContext(AddressPolicy(["127.0.0.0/8"]), timeout_s=0.5)
CHUNK = RATE // 10                       # the ASR tap's ~100 ms
PHRASE = "call stella and ask her to bring these things"
REFUSED = f"deepgram refused the credentials: HTTP 401: {json.dumps(SPEAK['refused_body'])}"
QUICK = (Step(0.3, "interim", "hello"), Step(0.5, "speech_final", "hello world"))


def speech() -> np.ndarray:
    return espeak_speech(RATE, text=PHRASE)


def asr_options(server: DeepgramServer | None = None, **fields: Any) -> AsrOptions:
    fields.setdefault("secret_key", KEY)
    return AsrOptions(endpoint=server.listen_url if server else None, **fields)


def tts_request(server: DeepgramServer | None, text: str = "Hello, how can I help you today?",
                **fields: Any) -> TtsRequest:
    fields.setdefault("secret_key", KEY)
    return TtsRequest(text, endpoint=server.speak_url if server else None, **fields)


def frame(name: str, **changes: Any) -> str:
    return json.dumps({**LISTEN[name], **changes})


def aligned_correlation(reference: np.ndarray, heard: np.ndarray) -> float:
    """Normalised correlation of ``reference`` with ``heard`` at the lag where they line up best
    (``heard`` starts later: leading silence, filter delays)."""
    a, b = reference.astype(np.float64), heard.astype(np.float64)
    size = len(a) + len(b)
    cross = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lag = int(np.argmax(cross[:len(b)]))
    n = min(len(a), len(b) - lag)
    x, y = a[:n], b[lag:lag + n]
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


# -- the listen protocol, sans I/O ----------------------------------------------------------------------
def test_the_listen_url_carries_the_audio_format_and_options_and_the_key_is_a_token_header() -> None:
    protocol = DeepgramAsrProtocol(asr_options())
    assert protocol.url() == ("wss://api.deepgram.com/v1/listen?encoding=linear16&sample_rate=16000&channels=1"
                              "&model=nova-2&interim_results=true&punctuate=true")
    # the documentation's example key and header
    assert LISTEN["authorization"]["header"] == "Authorization: " + protocol.headers()["Authorization"]
    protocol = DeepgramAsrProtocol(AsrOptions(
        language="en-US", samplerate=8000, model_type="nova-3", secret_key=KEY, app_id="ignored",
        endpoint="ws://127.0.0.1:9/v1/listen?tag=pbx",
        extra={"endpointing": 300, "smart_format": True, "punctuate": False, "keyterm": ["Stella", "Bob"]}))
    assert protocol.url() == ("ws://127.0.0.1:9/v1/listen?tag=pbx&encoding=linear16&sample_rate=8000&channels=1"
                              "&model=nova-3&language=en-US&interim_results=true&punctuate=false&endpointing=300"
                              "&smart_format=true&keyterm=Stella&keyterm=Bob")
    assert json.loads(protocol.flush()[-1]) == LISTEN["client_messages"]["finalize"]
    assert [json.loads(m) for m in protocol.closing()] == [LISTEN["client_messages"]["close_stream"]]


@pytest.mark.parametrize(("options", "message"), [
    (AsrOptions(), "deepgram needs an API key (option secretKey or env DEEPGRAM_API_KEY)"),
    (AsrOptions(secret_key=KEY, samplerate=11025), "deepgram: samplerate 11025 is not supported "
                                                   "(8000, 16000, 24000, 48000)"),
    (AsrOptions(secret_key=KEY, buffer_size=641), "deepgram: bufferSize must be a positive even number of "
                                                  "bytes, got 641"),
    (AsrOptions(secret_key=KEY, extra={"sample_rate": 8000, "encoding": "mulaw"}),
     "deepgram: extra may not set encoding, sample_rate (the audio format is the server's; use samplerate)"),
    (AsrOptions(secret_key=KEY, extra={"keywords": {"a": 1}}),
     "deepgram: extra keywords must be a string, number, boolean or list"),
])
def test_bad_options_are_refused_before_connecting(options: AsrOptions, message: str) -> None:
    with pytest.raises(ProviderError) as info:
        asyncio.run(DeepgramAsr(LOOPBACK).open_stream(options))
    assert str(info.value) == message and info.value.sender == "asr"


def test_the_documented_frames_become_partials_and_finals_of_one_utterance() -> None:
    p = DeepgramAsrProtocol(asr_options())
    assert p.received(frame("interim")) == [AsrResult("another big", False, 440, 1040)]
    assert p.received(frame("speech_final")) == [AsrResult("another big", True, 440, 1040)]
    # settled segments join; an interim after them is shown with them; Finalize's answer ends it
    assert p.received(frame("speech_final", speech_final=False, start=2.0)) == [
        AsrResult("another big", False, 440, 1040)]
    assert p.received(frame("interim", start=3.0, duration=0.5, channel={"alternatives": [
        {"transcript": "cat", "words": []}]})) == [AsrResult("another big cat", False, 440, 3500)]
    answer = {**LISTEN["interim"], **LISTEN["finalize_answer"], "is_final": True, "start": 3.0, "duration": 0.6}
    answer["channel"] = {"alternatives": [{"transcript": "cats", "words": []}]}
    assert p.received(json.dumps(answer)) == [AsrResult("another big cats", True, 440, 3600)]
    # a Finalize with nothing said is an empty final: end_utterance need not wait
    empty = {**answer, "channel": {"alternatives": [{"transcript": "", "words": []}]}}
    assert p.received(json.dumps(empty)) == [AsrResult("", True)]
    # UtteranceEnd ends what is settled; Metadata says nothing
    p.received(frame("speech_final", speech_final=False))
    assert p.received(json.dumps(LISTEN["utterance_end"])) == [AsrResult("another big", True, 440, 1040)]
    assert p.received(json.dumps(LISTEN["utterance_end"])) == []
    assert p.received(json.dumps(LISTEN["close_stream_metadata"])) == []


@pytest.mark.parametrize(("message", "error"), [
    (b"\x00\x01", "a binary frame of 2 bytes (Deepgram sends JSON text)"),
    ("{not json", "'{not json': Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ("[1, 2]", "'[1, 2]': not a JSON object"),
    ('{"type": "Results", "start": 0}', "'{\"type\": \"Results\", \"start\": 0}': a Results frame without 'channel'"),
    ('{"type": "Results", "start": 0, "duration": 1, "channel": {"alternatives": []}}',
     "'{\"type\": \"Results\", \"start\": 0, \"duration\": 1, \"channel\": {\"': "
     "a Results frame without alternatives"),
    ('{"type": "Results", "start": "soon", "duration": 1, "channel": {"alternatives": [{"transcript": "a"}]}}',
     "'{\"type\": \"Results\", \"start\": \"soon\", \"duration\": 1, \"channel': "
     "a Results frame with a bad field: could not convert string to float: 'soon'"),
])
def test_frames_it_cannot_read_are_malformed(message: str | bytes, error: str) -> None:
    with pytest.raises(MalformedFrame) as info:
        DeepgramAsrProtocol(asr_options()).received(message)
    assert str(info.value) == error


def test_an_error_frame_is_a_provider_error() -> None:
    with pytest.raises(ProviderError, match=r"^deepgram: model not available \(INVALID_QUERY_PARAMETER\)$"):
        DeepgramAsrProtocol(asr_options()).received(json.dumps({
            "type": "Error", "description": "model not available", "variant": "INVALID_QUERY_PARAMETER"}))


def test_audio_is_resampled_and_cut_into_buffer_size_packets() -> None:
    p = DeepgramAsrProtocol(asr_options(samplerate=8000, buffer_size=640))
    tone = np.round(8000 * np.sin(2 * np.pi * 300 * np.arange(4001) / RATE)).astype(np.int16)
    packets = p.audio(tone[:1601]) + p.audio(tone[1601:])   # an odd sample waits for the next chunk
    assert [len(m) for m in packets] == [640] * 6          # 4000 samples at 16 kHz: 4000 bytes at 8 kHz
    tail = p.flush()
    assert len(tail[0]) == 4000 - 6 * 640 and json.loads(tail[1]) == {"type": "Finalize"}
    assert p.flush() == ['{"type": "Finalize"}']


# -- the speak protocol, sans I/O ---------------------------------------------------------------------------
def test_the_speak_url_and_messages() -> None:
    text = SPEAK["client_messages"]["speak"]["text"]
    p = DeepgramTtsProtocol(tts_request(None, text))
    assert p.url() == "wss://api.deepgram.com/v1/speak?model=aura-asteria-en&encoding=linear16&sample_rate=16000"
    assert "Authorization: " + p.headers()["Authorization"] == SPEAK["authorization"]["header"]
    assert [json.loads(m) for m in p.opening()] == [SPEAK["client_messages"]["speak"],
                                                    SPEAK["client_messages"]["flush"]]
    assert p.rate == 16000
    p = DeepgramTtsProtocol(tts_request(None, speaker="aura-2-thalia-en", speed=1.25, samplerate=22050,
                                        emotion="happy", subtitle=True, extra={"mip_opt_out": True}))
    assert p.url() == ("wss://api.deepgram.com/v1/speak?model=aura-2-thalia-en&encoding=linear16&sample_rate=24000"
                       "&speed=1.25&mip_opt_out=true")
    assert p.rate == 24000                 # not a Deepgram rate: Aura's own, resampled here
    p = DeepgramTtsProtocol(tts_request(None, codec="pcmu", samplerate=8000))
    assert "encoding=mulaw&sample_rate=8000" in p.url() and p.rate == 8000
    pcm = np.arange(-800, 800, 10, dtype=np.int16)
    decoded = np.frombuffer(p.received(ulaw_encode(pcm)).pcm, "<i2")
    assert len(decoded) == len(pcm) and np.max(np.abs(decoded - pcm)) <= 16


def test_speak_reads_the_documented_frames(caplog: pytest.LogCaptureFixture) -> None:
    p = DeepgramTtsProtocol(tts_request(None))
    assert p.received(b"\x01\x02") == TtsFrame(pcm=b"\x01\x02")
    assert p.received(json.dumps(SPEAK["metadata"])) == TtsFrame()
    with caplog.at_level(logging.WARNING, "pbx.tts.deepgram"):
        assert p.received(json.dumps(SPEAK["warning"])) == TtsFrame()
    assert caplog.messages == [f"deepgram tts warning FLUSH_LIMIT: {SPEAK['warning']['description']}"]
    assert p.received(json.dumps(SPEAK["flushed"])) == TtsFrame(done=True)
    with pytest.raises(MalformedFrame, match=r"^'<html>': Expecting value: line 1 column 1 \(char 0\)$"):
        p.received("<html>")


def test_long_text_is_cut_into_speak_messages_at_whitespace() -> None:
    text = " ".join(f"word{i}" for i in range(800))          # ~6 kB
    pieces = speak_pieces(text)
    assert all(len(piece) <= 2000 for piece in pieces) and " ".join(pieces) == text and len(pieces) == 4
    assert speak_pieces("x" * 4500) == ["x" * 2000, "x" * 2000, "x" * 500]
    assert speak_pieces("") == []


@pytest.mark.parametrize(("request_", "message"), [
    (TtsRequest("hi"), "deepgram needs an API key (option secretKey or env DEEPGRAM_API_KEY)"),
    (TtsRequest("hi", secret_key=KEY, codec="opus"), "deepgram: codec 'opus' is not supported (pcm, pcmu or pcma)"),
    (TtsRequest("hi", secret_key=KEY, speed=0.0), "deepgram: speed must be a positive number, got 0.0"),
    (TtsRequest("hi", secret_key=KEY, extra={"encoding": "mp3"}),
     "deepgram: extra may not set encoding (the audio format is the server's; use samplerate)"),
])
def test_bad_tts_options_are_refused_before_connecting(request_: TtsRequest, message: str) -> None:
    async def run() -> None:
        async for _ in DeepgramTts(LOOPBACK).synthesize(request_):
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


def test_a_recognition_session_partials_then_the_final_and_the_audio_as_sent() -> None:
    audio = np.concatenate([np.zeros(RATE // 2, np.int16), speech()])

    async def run() -> None:
        async with DeepgramServer() as server:
            stream = await DeepgramAsr(LOOPBACK).open_stream(asr_options(server, language="en-US"))
            assert isinstance(stream, WebSocketAsrStream)
            got = await feed_all(stream, audio)
            await server.wait_for(lambda: server.listens[0].seconds * RATE >= len(audio))
            final = await stream.end_utterance()
            got += await stream.feed(np.zeros(0, np.int16))      # what arrived after the final's wait
            await stream.close()
            await server.wait_for(lambda: "CloseStream" in server.listens[0].texts)
            session = server.listens[0]
            assert session.handshake.headers["Authorization"] == "Token " + KEY
            assert session.handshake.query == {
                "encoding": ["linear16"], "sample_rate": ["16000"], "channels": ["1"], "model": ["nova-2"],
                "language": ["en-US"], "interim_results": ["true"], "punctuate": ["true"]}
            assert np.array_equal(session.pcm, audio)          # 16 kHz: the call's audio, unchanged
            assert session.packet_sizes == [2 * CHUNK] * (len(audio) // CHUNK) + [2 * (len(audio) % CHUNK)]
            assert session.texts == ["Finalize", "CloseStream"] and server.violations == []
        assert errors_of(got) == []
        assert texts_of(got, final=False) == ["call", "call stella", "call stella", "call stella and ask her"]
        assert final is not None and final.text == "call stella " + server.finalize_text and final.final
        # the first settled segment starts with the stream; the last ends with the audio sent
        assert final.start_ms == 0 and final.end_ms is not None and final.end_ms >= len(audio) * 1000 // RATE - 100

    asyncio.run(run())


def test_8khz_audio_in_buffer_size_packets() -> None:
    audio = speech()

    async def run() -> None:
        async with DeepgramServer() as server:
            stream = await DeepgramAsr(LOOPBACK).open_stream(asr_options(server, samplerate=8000, buffer_size=640))
            await feed_all(stream, audio)
            await stream.end_utterance()
            await stream.close()
            await server.wait_for(lambda: "CloseStream" in server.listens[0].texts)
            session = server.listens[0]
        assert session.handshake.param("sample_rate") == "8000" and server.violations == []
        sizes = session.packet_sizes
        assert set(sizes[:-1]) == {640} and 0 < sizes[-1] <= 640          # the tail goes before Finalize
        assert abs(len(session.pcm) - len(audio) // 2) <= 1
        reference = soxr.resample(audio.astype(np.float32), RATE, 8000)
        assert aligned_correlation(reference, session.pcm) > 0.97

    asyncio.run(run())


def test_refused_credentials() -> None:
    async def run() -> None:
        async with DeepgramServer() as server:
            with pytest.raises(ProviderError) as info:
                await DeepgramAsr(LOOPBACK).open_stream(asr_options(server, secret_key="wrong"))
            assert server.refused[0].headers["Authorization"] == "Token wrong"
        assert str(info.value) == REFUSED and info.value.code == 401

    asyncio.run(run())


@pytest.mark.parametrize(("mode", "error", "code"), [
    ("close", "deepgram closed the connection: code 1011: NET-0000", 1011),
    ("drop", "deepgram closed the connection: no close frame", None),
])
def test_a_connection_lost_mid_call_is_one_error_then_recognition_resumes(
        monkeypatch: pytest.MonkeyPatch, mode: str, error: str, code: int | None) -> None:
    monkeypatch.setattr(cloud_asr, "BACKOFF_FIRST_S", 0.2)

    async def run() -> None:
        async with DeepgramServer() as server:
            server.listen_modes = [mode]
            server.script = QUICK
            stream = await DeepgramAsr(LOOPBACK).open_stream(asr_options(server))
            got = await feed_all(stream, np.zeros(RATE * 2, np.int16), pace_s=0.05)
            await stream.close()
            assert len(server.listens) == 2 and server.violations == []
        errors = [g for g in got if isinstance(g, ProviderError)]
        assert [(str(e), e.code) for e in errors] == [(error, code)]
        assert texts_of(got, final=True) == ["hello world"]
        final = next(g for g in got if isinstance(g, AsrResult) and g.final)
        assert final.start_ms is not None and final.start_ms > 500    # on the stream's clock, after the drop

    asyncio.run(run())


def test_a_stall_after_finalize_is_an_error_then_a_new_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloud_asr, "BACKOFF_FIRST_S", 0.2)

    async def run() -> None:
        async with DeepgramServer() as server:
            server.listen_modes = ["stall"]
            server.script = QUICK
            stream = await DeepgramAsr(LOOPBACK).open_stream(asr_options(server))
            got = await feed_all(stream, np.zeros(RATE // 5, np.int16))
            final = await stream.end_utterance()                # nothing comes: no final
            got += await feed_all(stream, np.zeros(RATE * 2, np.int16), pace_s=0.05)
            await stream.close()
        assert final is None
        assert errors_of(got) == ["deepgram stalled: no result within 0.5 s of the end of speech"]
        assert texts_of(got, final=True) == ["hello world"]

    asyncio.run(run())


def test_malformed_frames_are_errors_and_the_stream_goes_on() -> None:
    async def run() -> None:
        async with DeepgramServer() as server:
            server.listen_modes = ["garbage"]
            server.script = QUICK
            stream = await DeepgramAsr(LOOPBACK).open_stream(asr_options(server))
            got = await feed_all(stream, np.zeros(RATE, np.int16))
            await server.wait_for(lambda: len(server.listens[0].sent) == 2)
            got += await stream.feed(np.zeros(CHUNK, np.int16))
            await stream.close()
        assert errors_of(got) == [
            "deepgram sent a malformed frame: '{not json': Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
            "deepgram sent a malformed frame: '{\"type\": \"Results\", \"start\": 0.0, \"duration\": 0.1}': "
            "a Results frame without 'channel'"]
        assert texts_of(got, final=True) == ["hello world"]

    asyncio.run(run())


async def synthesize(server: DeepgramServer, request: TtsRequest) -> tuple[list[TtsChunk], ProviderError | None]:
    chunks: list[TtsChunk] = []
    try:
        async for chunk in DeepgramTts(LOOPBACK).synthesize(request):
            chunks.append(chunk)
    except ProviderError as exc:
        return chunks, exc
    return chunks, None


def dominant_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(pcm))


@pytest.mark.parametrize(("samplerate", "codec", "wire"), [
    (16000, None, ("linear16", "16000")), (8000, "pcmu", ("mulaw", "8000")), (22050, "pcm", ("linear16", "24000"))])
def test_a_synthesis_streams_the_audio_at_the_asked_rate(samplerate: int, codec: str | None,
                                                           wire: tuple[str, str]) -> None:
    text = "Hello, how can I help you today?"

    async def run() -> None:
        async with DeepgramServer() as server:
            chunks, error = await synthesize(server, tts_request(server, text, speaker="aura-2-thalia-en",
                                                                 samplerate=samplerate, codec=codec))
        assert error is None and server.violations == []
        session = server.speaks[0]
        assert session.handshake.headers["Authorization"] == "Token " + KEY
        assert (session.handshake.param("model"), session.handshake.param("encoding"),
                session.handshake.param("sample_rate")) == ("aura-2-thalia-en", *wire)
        assert session.messages == [{"type": "Speak", "text": text}, {"type": "Flush"}]
        assert len(chunks) >= 3                       # streamed as it came, not in one piece
        pcm = np.concatenate([c.pcm for c in chunks])
        assert abs(len(pcm) - round(len(text) * SECONDS_PER_CHAR * samplerate)) <= samplerate // 100
        assert abs(dominant_hz(pcm, samplerate) - 440) < 5

    asyncio.run(run())


@pytest.mark.parametrize(("mode", "message", "code", "audio"), [
    ("refuse", REFUSED, 401, False),
    ("drop", "deepgram closed the connection before the audio was complete (code 1011: NET-0000)", 1011, True),
    ("stall", "deepgram stalled: nothing for 0.5 s", None, False),
    ("garbage", "deepgram sent a malformed frame: '<html>502 Bad Gateway</html>': Expecting value: line 1 "
                "column 1 (char 0)", None, True),
])
def test_tts_faults(mode: str, message: str, code: int | None, audio: bool) -> None:
    async def run() -> None:
        async with DeepgramServer() as server:
            server.speak_modes = [mode]
            chunks, error = await synthesize(server, tts_request(server))
        assert error is not None and (str(error), error.code, error.sender) == (message, code, "tts")
        assert bool(chunks) == audio

    asyncio.run(run())


# -- calls through a real server -----------------------------------------------------------------------------
@asynccontextmanager
async def call_with(tmp_path: Path, server: DeepgramServer, timeout: float = 10.0, **option: Any
                    ) -> AsyncIterator[Call]:
    async with running_server(tmp_path, endpoint_allow_networks=["127.0.0.0/8"],
                              provider_timeout_secs=timeout) as (_, address), Call.open(address) as call:
        await call.send({"command": "invite", "option": {"codec": "pcm", **option}})
        await call.wait_event("answer")
        yield call


def asr_option(server: DeepgramServer, **fields: Any) -> dict[str, Any]:
    return {"provider": "deepgram", "endpoint": server.listen_url, "secretKey": KEY, "language": "en-US", **fields}


E2E_SCRIPT = (Step(1.0, "interim", "call"), Step(1.4, "interim", "call stella"), Step(1.8, "final", "call stella"),
              Step(2.2, "interim", "and ask her"))


def test_e2e_recognition_at_8khz_with_metrics(tmp_path: Path) -> None:
    caller = np.concatenate([np.zeros(RATE // 2, np.int16), speech(), np.zeros(RATE * 6 // 5, np.int16)])

    async def run() -> None:
        async with DeepgramServer() as server:
            server.script = E2E_SCRIPT
            async with call_with(tmp_path, server, vad={"type": "webrtc"},
                                 asr=asr_option(server, samplerate=8000)) as call:
                await stream_realtime(call, caller)
                final = await call.wait_event("asrFinal", timeout=5.0)
                events = call.events()
                await call.send({"command": "hangup"})
                await call.wait_event("hangup")
            await server.wait_for(lambda: "CloseStream" in server.listens[0].texts)
        assert final["text"] == "call stella " + server.finalize_text
        deltas = [e["text"] for e in events if e["event"] == "asrDelta"]
        assert deltas == ["call", "call stella", "call stella", "call stella and ask her"]
        metrics = {e["key"]: e for e in events if e["event"] == "metrics" and ".asr." in e["key"]}
        assert set(metrics) == {"ttfb.asr.deepgram", "completed.asr.deepgram"}
        assert metrics["ttfb.asr.deepgram"]["data"] == {"index": 1, "provider": "deepgram"}
        assert 0 < metrics["ttfb.asr.deepgram"]["duration"] <= metrics["completed.asr.deepgram"]["duration"]
        assert not [e for e in events if e["event"] == "error"]
        # the provider heard the caller's speech, at the rate asked for
        session = server.listens[0]
        assert session.handshake.param("sample_rate") == "8000" and server.violations == []
        reference = soxr.resample(speech().astype(np.float32), RATE, 8000)
        assert aligned_correlation(reference, session.pcm) > 0.9

    asyncio.run(run())


def test_e2e_recognition_faults_refused_key_and_a_drop_then_recognition(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloud_asr, "BACKOFF_FIRST_S", 0.2)
    caller = np.concatenate([np.zeros(RATE, np.int16), speech(), np.zeros(RATE * 6 // 5, np.int16)])

    async def run() -> None:
        async with DeepgramServer() as server:
            async with call_with(tmp_path, server, asr=asr_option(server, secretKey="wrong")) as call:
                refused = await call.wait_event("error", sender="asr")
            assert (refused["error"], refused.get("code")) == (REFUSED, 401)

            server.listen_modes = ["close"]
            server.fault_after_s = 0.2
            server.script = E2E_SCRIPT
            async with call_with(tmp_path, server, vad={"type": "webrtc"}, asr=asr_option(server)) as call:
                await stream_realtime(call, caller)
                final = await call.wait_event("asrFinal", timeout=5.0)
                events = call.events()
        errors = [e for e in events if e["event"] == "error"]
        assert [(e["sender"], e["error"], e.get("code")) for e in errors] == [
            ("asr", "deepgram closed the connection: code 1011: NET-0000", 1011)]
        assert events.index(errors[0]) < events.index(final)
        assert final["text"] == "call stella " + server.finalize_text and len(server.listens) == 2

    asyncio.run(run())


def test_e2e_synthesis_and_its_faults(tmp_path: Path) -> None:
    text = "Hello, how can I help you today?"
    tts = {"provider": "deepgram", "endpoint": None, "secretKey": KEY, "speaker": "aura-2-thalia-en"}

    async def run() -> None:
        async with DeepgramServer() as server:
            tts["endpoint"] = server.speak_url
            async with call_with(tmp_path, server, timeout=0.5, tts=tts) as call:
                start = call.mark()
                await call.send({"command": "tts", "text": text, "playId": "ok"})
                end = await call.wait_event("trackEnd", start, playId="ok")
                ok = call.events(start)
                faults: dict[str, list[dict[str, Any]]] = {}
                for mode in ("refuse", "drop", "stall", "garbage"):
                    server.speak_modes = [mode]
                    start = call.mark()
                    # another text each time: the server's TTS cache holds the first
                    await call.send({"command": "tts", "text": f"{text} ({mode})", "playId": mode})
                    await call.wait_event("trackEnd", start, playId=mode)
                    faults[mode] = [e for e in call.events(start) if e["event"] in ("error", "trackEnd")]
        assert server.speaks[0].messages == [{"type": "Speak", "text": text}, {"type": "Flush"}]
        assert server.speaks[0].handshake.param("sample_rate") == "16000" and server.violations == []
        names = [e["event"] for e in ok if e["event"] in ("trackStart", "trackEnd")]
        assert names == ["trackStart", "trackEnd"]
        assert abs(end["duration"] - len(text) * SECONDS_PER_CHAR * 1000) <= 40
        keys = [e["key"] for e in ok if e["event"] == "metrics"]
        assert "ttfb.tts.deepgram" in keys and "completed.tts.deepgram" in keys
        assert not [e for e in ok if e["event"] == "error"]
        expected = {
            "refuse": (REFUSED, 401),
            "drop": ("deepgram closed the connection before the audio was complete (code 1011: NET-0000)", 1011),
            "stall": ("deepgram stalled: nothing for 0.5 s", None),
            "garbage": ("deepgram sent a malformed frame: '<html>502 Bad Gateway</html>': Expecting value: line 1 "
                        "column 1 (char 0)", None),
        }
        for mode, (message, code) in expected.items():
            error, track_end = faults[mode]
            assert (error["event"], error["sender"], error["error"], error.get("code")) == ("error", "tts", message,
                                                                                           code), mode
            assert track_end["event"] == "trackEnd" and track_end["playId"] == mode

    asyncio.run(run())
