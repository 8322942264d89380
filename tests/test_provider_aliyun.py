"""The Aliyun DashScope clients (issue 12): Paraformer real-time ASR and CosyVoice TTS.

Three levels: the sans-I/O protocols on the provider's published example frames
(tests/fixtures/providers/aliyun, each citing its page); the provider classes against a local
server that speaks the protocol and checks what it is sent (tests/support/aliyun_server.py); and a
few calls through a real call server, asserting the events a client receives.

DashScope signs nothing: the API key goes in an ``Authorization: Bearer`` header, so there is no
published signing example to reproduce; the header is asserted exactly instead.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pbx.asr.aliyun import AliyunAsr, AliyunAsrProtocol, AsrSettings
from pbx.asr.base import AsrOptions, AsrResult
from pbx.cloud import asr as cloud_asr
from pbx.cloud.asr import MalformedFrame
from pbx.cloud.ws import ProviderContext
from pbx.errors import ProviderError
from pbx.media.netpolicy import AddressPolicy
from pbx.protocol import SynthesisOption, TranscriptionOption
from pbx.providers import builtin_registry
from pbx.tts.aliyun import AliyunTts, CosyVoiceProtocol, TtsSettings
from pbx.tts.base import TtsChunk, TtsRequest, WordMark
from support.audio import espeak_speech, tone
from tests.support.aliyun_server import WORD_MS, DashScopeServer, dashscope_server, word_tone
from tests.support.calls import RATE, Call, running_server, stream_realtime

FIXTURES = Path(__file__).parent / "fixtures" / "providers" / "aliyun"
PARAFORMER = json.loads((FIXTURES / "paraformer_events.json").read_text())
COSYVOICE = json.loads((FIXTURES / "cosyvoice_events.json").read_text())
DOC_TASK = "2bf83b9a-baeb-4fda-8d9a-xxxxxxxxxxxx"
KEY = "sk-test-key"
LOOPBACK = ProviderContext(AddressPolicy(["127.0.0.0/8"]), timeout_s=0.5)
CHUNK_MS = 100
LOUD = tone(440, RATE, CHUNK_MS / 1000, 0.3)          # 100 ms, well above the server's speech power
TEXT = "Hello there, how can I help you?"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def frame(event: dict[str, Any], task_id: str = DOC_TASK) -> str:
    return json.dumps({**event, "header": {**event["header"], "task_id": task_id}}, ensure_ascii=False)


def asr_options(url: str, **fields: Any) -> AsrOptions:
    return AsrOptions(**{"language": "en-US", "secret_key": KEY, "endpoint": url, **fields})


def tts_request(url: str, text: str = TEXT, **fields: Any) -> TtsRequest:
    return TtsRequest(**{"text": text, "secret_key": KEY, "endpoint": url, **fields})


async def collect(request: TtsRequest, context: ProviderContext = LOOPBACK) -> list[TtsChunk]:
    return [chunk async for chunk in AliyunTts(context).synthesize(request)]


# -- the protocols on the published examples ---------------------------------------------------------
def test_run_task_has_the_published_shape_with_our_options() -> None:
    settings = AsrSettings.from_options(asr_options("wss://example.com/ws", extra={
        "disfluency_removal_enabled": "false", "max_sentence_silence": "600", "vocabulary_id": "vocab-1"}))
    protocol = AliyunAsrProtocol(settings, task_id=DOC_TASK)
    [run_task] = protocol.opening()
    sent = json.loads(run_task)
    published = PARAFORMER["run_task"]
    assert sent["header"] == published["header"]
    assert sent["payload"].keys() == published["payload"].keys()
    assert {k: v for k, v in sent["payload"].items() if k != "parameters"} == \
        {k: v for k, v in published["payload"].items() if k != "parameters"}
    assert sent["payload"]["parameters"] == {**published["payload"]["parameters"], "max_sentence_silence": 600,
                                              "vocabulary_id": "vocab-1"}
    assert json.loads(protocol.closing()[-1]) == PARAFORMER["finish_task"]
    assert protocol.headers() == {"Authorization": f"Bearer {KEY}"}
    assert protocol.url() == "wss://example.com/ws"


def test_the_published_result_frames_read_as_results() -> None:
    protocol = AliyunAsrProtocol(AsrSettings.from_options(asr_options("ws://x/")), task_id=DOC_TASK)
    assert not protocol.ready
    assert protocol.received(frame(PARAFORMER["task_started"])) == []
    assert protocol.ready
    # the published final has end_time null: its last word's end is the sentence's end
    assert protocol.received(frame(PARAFORMER["result_generated"])) == [AsrResult("好\uff0c我知道了", True, 170, 920)]
    assert not protocol.owes_result                        # a final closes the sentence
    partial = json.loads(frame(PARAFORMER["result_generated"]))
    partial["payload"]["output"]["sentence"]["sentence_end"] = False
    assert protocol.received(json.dumps(partial))[0].final is False
    assert protocol.owes_result                            # now the end of speech is owed a result
    assert protocol.received(frame(PARAFORMER["task_finished"])) == []
    with pytest.raises(ProviderError) as failed:
        protocol.received(frame(PARAFORMER["task_failed"]))
    assert str(failed.value) == "aliyun task failed: CLIENT_ERROR: request timeout after 23 seconds."
    assert failed.value.sender == "asr" and failed.value.code is None


@pytest.mark.parametrize(("message", "error"), [
    (b"\x00\x01", "a binary frame of 2 bytes where an event was due"),
    ("{oops", "not JSON: '{oops'"),
    ('{"payload": {}}', "no header.event in '{\"payload\": {}}'"),
    ('{"header": {"task_id": "other", "event": "task-started"}}', "task-started of task 'other', not of ours"),
    (f'{{"header": {{"task_id": "{DOC_TASK}", "event": "task-paused"}}}}', "unknown event 'task-paused'"),
    (f'{{"header": {{"task_id": "{DOC_TASK}", "event": "result-generated"}}, "payload": {{}}}}',
     "result-generated without payload.output.sentence"),
    (f'{{"header": {{"task_id": "{DOC_TASK}", "event": "result-generated"}}, "payload": {{"output": '
     '{"sentence": {"text": "hi", "sentence_end": true, "begin_time": -5, "end_time": 10}}}}',
     "a sentence with times -5, 10"),
])
def test_garbage_is_a_malformed_frame(message: str | bytes, error: str) -> None:
    protocol = AliyunAsrProtocol(AsrSettings.from_options(asr_options("ws://x/")), task_id=DOC_TASK)
    with pytest.raises(MalformedFrame) as caught:
        protocol.received(message)
    assert str(caught.value) == error


def test_audio_goes_in_packets_of_buffer_size_and_8k_is_resampled() -> None:
    protocol = AliyunAsrProtocol(AsrSettings.from_options(asr_options("ws://x/", buffer_size=1000)))
    packets = protocol.audio(LOUD) + protocol.audio(LOUD)      # 2 x 3200 bytes
    assert [len(p) for p in packets] == [1000] * 6
    assert [len(p) for p in protocol.flush()] == [400]
    assert protocol.flush() == []
    eight = AliyunAsrProtocol(AsrSettings.from_options(asr_options("ws://x/", samplerate=8000)))
    halves = eight.audio(LOUD[:801]) + eight.audio(LOUD[801:])   # an odd split waits for its pair
    assert [len(p) for p in halves] == [1600]                   # 100 ms at 8 kHz
    assert json.loads(eight.opening()[0])["payload"]["parameters"]["sample_rate"] == 8000


@pytest.mark.parametrize(("fields", "error"), [
    ({"secret_key": None}, "aliyun needs secretKey (option secretKey or env DASHSCOPE_API_KEY)"),
    ({"samplerate": 44100}, "aliyun: samplerate 44100 is not supported (16000 or 8000)"),
    ({"buffer_size": 7}, "aliyun: bufferSize 7 must be an even number of bytes from 2 to 65536"),
    ({"extra": {"heartbeat": "sometimes"}}, "aliyun: extra 'heartbeat' must be true or false, not 'sometimes'"),
    ({"extra": {"sample_rate": 8000}}, "aliyun: extra 'sample_rate' cannot be set: the audio is pcm at the "
                                       "call's samplerate"),
    ({"endpoint": None, "app_id": "ws/../x"}, "aliyun: appId 'ws/../x' is not a workspace id"),
])
def test_bad_asr_options_fail_before_connecting(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(ProviderError) as caught:
        run(AliyunAsr(LOOPBACK).open_stream(asr_options("ws://127.0.0.1:9/", **fields)))
    assert str(caught.value) == error and caught.value.sender == "asr"


def test_app_id_chooses_the_workspace_domain() -> None:
    settings = AsrSettings.from_options(asr_options(None, app_id="ws-123"))   # type: ignore[arg-type]
    assert settings.url == "wss://ws-123.cn-beijing.maas.aliyuncs.com/api-ws/v1/inference"
    assert AsrSettings.from_options(asr_options(None)).url == "wss://dashscope.aliyuncs.com/api-ws/v1/inference"  # type: ignore[arg-type]


def test_cosyvoice_published_frames() -> None:
    settings = TtsSettings.from_request(tts_request("ws://x/", subtitle=True, speaker="longanyang", speed=1.0,
                                                    samplerate=22050, extra={"pitch": "1.0", "enable_ssml": False}))
    text = COSYVOICE["continue_task"]["payload"]["input"]["text"]
    protocol = CosyVoiceProtocol(settings, text, task_id=DOC_TASK)
    sent = json.loads(protocol.opening()[0])
    published = COSYVOICE["run_task"]
    assert sent["header"] == published["header"]
    assert {k: v for k, v in sent["payload"].items() if k not in ("parameters", "model")} == \
        {k: v for k, v in published["payload"].items() if k not in ("parameters", "model")}
    assert sent["payload"]["model"] == "cosyvoice-v2"
    # the published parameters, with pcm for mp3, our volume left at its default, word times asked for
    expected = {**published["payload"]["parameters"], "format": "pcm", "word_timestamp_enabled": True}
    del expected["volume"]
    assert sent["payload"]["parameters"] == expected
    started = protocol.received(frame(COSYVOICE["task_started"]))
    assert [json.loads(r) for r in started.replies] == [COSYVOICE["continue_task"], COSYVOICE["finish_task"]]
    assert protocol.received(frame(COSYVOICE["sentence_begin"])) == protocol.received(
        frame(COSYVOICE["sentence_synthesis"])) == type(started)()
    end = protocol.received(frame(COSYVOICE["sentence_end"]))
    assert end.words == (WordMark(280 * 22050 // 1000, 0),)
    assert protocol.received(b"\x01\x00" * 10).pcm == b"\x01\x00" * 10
    assert protocol.received(frame(COSYVOICE["task_finished"])).done
    with pytest.raises(ProviderError) as failed:
        protocol.received(frame(COSYVOICE["task_failed"]))
    assert str(failed.value) == "aliyun task failed: CLIENT_ERROR: request timeout after 23 seconds."
    assert failed.value.sender == "tts"


def test_word_marks_are_words_of_the_request_text() -> None:
    text = "Good morning.  How are you today?"
    protocol = CosyVoiceProtocol(TtsSettings.from_request(tts_request("ws://x/", text, samplerate=16000)), text,
                                 task_id="t")
    protocol.received(json.dumps({"header": {"task_id": "t", "event": "task-started"}, "payload": {}}))

    def sentence(index: int, original: str, words: list[tuple[str, int, int]]) -> str:
        return json.dumps({"header": {"task_id": "t", "event": "result-generated"}, "payload": {"output": {
            "type": "sentence-end", "original_text": original, "sentence": {"index": index, "words": [
                {"text": w, "begin_index": i, "end_index": i + len(w), "begin_time": ms, "end_time": ms + 100}
                for w, i, ms in words]}}}})
    first = protocol.received(sentence(0, "Good morning.", [("Good", 0, 50), ("morning", 5, 400)]))
    # begin_index counted in another way than ours: the word's text places it
    second = protocol.received(sentence(1, "How are you today?", [("How", 0, 900), ("are", 1, 1100),
                                                                  ("you", 2, 1200), ("today", 3, 1300)]))
    assert first.words == (WordMark(800, 0), WordMark(6400, 1))
    assert second.words == (WordMark(14400, 2), WordMark(17600, 3), WordMark(19200, 4), WordMark(20800, 5))
    with pytest.raises(MalformedFrame) as caught:
        protocol.received(sentence(1, "x", [("How", -1, 5)]))
    assert str(caught.value) == ("a word without text, begin_index or begin_time: "
                                 "{'text': 'How', 'begin_index': -1, 'end_index': 2, 'begin_time': 5, 'end_time': ")


@pytest.mark.parametrize(("fields", "error"), [
    ({"secret_key": None}, "aliyun needs secretKey (option secretKey or env DASHSCOPE_API_KEY)"),
    ({"codec": "mp3"}, "aliyun: codec 'mp3' cannot be played: CosyVoice audio is requested as pcm (leave codec "
                       "out or set \"pcm\")"),
    ({"extra": {"seed": 1.5}}, "aliyun: extra 'seed' must be an integer, not 1.5"),
    ({"extra": {"model": 3}}, "aliyun: extra 'model' must be a string, not 3"),
])
def test_bad_tts_options_fail_before_connecting(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(ProviderError) as caught:
        run(collect(tts_request("ws://127.0.0.1:9/", **fields)))
    assert str(caught.value) == error and caught.value.sender == "tts"


# -- the provider classes against the local server ------------------------------------------------------
async def feed_until(stream: Any, condition: Any, chunks: int = 60) -> list[AsrResult]:
    """Feed loud 100 ms chunks until ``condition(results)``; results in order. A bounded loop, not a sleep:
    each feed waits on the socket."""
    results: list[AsrResult] = []
    for _ in range(chunks):
        results += await stream.feed(LOUD)
        if condition(results):
            return results
        await asyncio.sleep(0)
    raise AssertionError(f"condition not met; results {results}")


SCRIPT = [(300, {"text": "hello", "final": False}), (500, "heartbeat"), (600, {"text": "hello there", "final": False}),
          (800, {"text": "Hello there.", "final": True})]


def test_asr_session_partials_then_final_with_auth_and_audio_format() -> None:
    async def scenario() -> tuple[DashScopeServer, list[AsrResult], AsrResult | None]:
        async with dashscope_server(scripts=[SCRIPT]) as server:
            stream = await AliyunAsr(LOOPBACK).open_stream(asr_options(
                server.url, extra={"vocabulary_id": "v1", "semantic_punctuation_enabled": "true"}))
            results = await feed_until(stream, lambda r: any(x.final for x in r))
            last = await stream.end_utterance()
            await stream.close()
            await asyncio.wait_for(wait_finished(server), 2)
            return server, results, last

    server, results, last = run(scenario())
    [task] = server.tasks
    assert task.problems == []
    assert task.headers["Authorization"] == f"Bearer {KEY}"
    assert task.path == "/api-ws/v1/inference"
    assert task.run_task is not None and task.run_task["payload"]["model"] == "paraformer-realtime-v2"
    assert task.run_task["payload"]["parameters"] == {
        "format": "pcm", "sample_rate": 16000, "language_hints": ["en"], "vocabulary_id": "v1",
        "semantic_punctuation_enabled": True}
    assert [(r.text, r.final) for r in results] == [("hello", False), ("hello there", False), ("Hello there.", True)]
    assert results[-1].start_ms == 0 and results[-1].end_ms == 800
    assert last is None                                    # the final came with the audio
    # 100 ms frames of exactly what was fed, then finish-task
    assert set(task.packets) == {3200}
    assert bytes(task.audio) == LOUD.astype("<i2").tobytes() * len(task.packets)
    assert task.actions()[0] == "run-task" and task.actions()[-1] == "finish-task"


async def wait_finished(server: DashScopeServer) -> None:
    while not (server.tasks and server.tasks[-1].finished):
        await asyncio.sleep(0.01)


def test_asr_at_8k_sends_8k_audio() -> None:
    async def scenario() -> DashScopeServer:
        async with dashscope_server(scripts=[[(200, {"text": "eight", "final": True})]]) as server:
            stream = await AliyunAsr(LOOPBACK).open_stream(asr_options(server.url, samplerate=8000,
                                                                       model_type="paraformer-realtime-8k-v2"))
            await feed_until(stream, lambda r: any(x.final for x in r))
            await stream.close()
            return server

    [task] = run(scenario()).tasks
    assert task.problems == [] and set(task.packets) == {1600}
    assert task.run_task is not None and task.run_task["payload"]["model"] == "paraformer-realtime-8k-v2"
    audio = np.frombuffer(bytes(task.audio), "<i2")
    spectrum = np.abs(np.fft.rfft(audio[200:]))
    assert abs(np.argmax(spectrum) * 8000 / (2 * (len(spectrum) - 1)) - 440) < 10   # the tone, at 8 kHz


def test_asr_credentials_refused() -> None:
    async def scenario() -> None:
        async with dashscope_server(api_key="sk-other") as server:
            await AliyunAsr(LOOPBACK).open_stream(asr_options(server.url))

    with pytest.raises(ProviderError) as caught:
        run(scenario())
    assert caught.value.code == 401 and caught.value.sender == "asr"
    assert str(caught.value) == ('aliyun refused the credentials: HTTP 401: {"code": "InvalidApiKey", '
                                 '"message": "Invalid API-key provided."}')


def test_asr_connection_dropped_then_recognition_resumes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloud_asr, "BACKOFF_FIRST_S", 0.0)

    async def scenario() -> tuple[DashScopeServer, list[str], list[AsrResult]]:
        scripts = [[(300, {"text": "before", "final": True}), (500, "drop")], [(300, {"text": "after", "final": True})]]
        async with dashscope_server(scripts=scripts) as server:
            stream = await AliyunAsr(LOOPBACK).open_stream(asr_options(server.url))
            errors: list[str] = []
            results: list[AsrResult] = []
            for _ in range(40):
                try:
                    results += await stream.feed(LOUD)
                except ProviderError as exc:
                    errors.append(str(exc))
                if [r.text for r in results] == ["before", "after"]:
                    break
                await asyncio.sleep(0.01)
            await stream.close()
            return server, errors, results

    server, errors, results = run(scenario())
    assert errors == ["aliyun closed the connection: no close frame"]
    assert [r.text for r in results] == ["before", "after"]
    assert len(server.tasks) == 2 and all(t.problems == [] for t in server.tasks)
    assert server.tasks[0].task_id != server.tasks[1].task_id
    assert results[1].start_ms is not None and results[1].start_ms >= 500   # on the stream's clock


def test_asr_task_failed_mid_stream() -> None:
    async def scenario() -> ProviderError:
        async with dashscope_server(scripts=[[(200, "fail")]]) as server:
            stream = await AliyunAsr(LOOPBACK).open_stream(asr_options(server.url))
            try:
                await feed_until(stream, lambda r: False, chunks=30)
            except ProviderError as exc:
                return exc
            finally:
                await stream.close()
        raise AssertionError("no error")

    error = run(scenario())
    assert str(error) == "aliyun task failed: InvalidParameter: the scripted failure"
    assert error.code == 400


def test_asr_stall_after_end_of_speech() -> None:
    async def scenario() -> ProviderError:
        script = [(100, {"text": "half a", "final": False}), (200, "stall")]
        async with dashscope_server(scripts=[script]) as server:
            stream = await AliyunAsr(LOOPBACK).open_stream(asr_options(server.url))
            await feed_until(stream, lambda r: [x.text for x in r] == ["half a"])
            assert await stream.end_utterance() is None        # waited final_wait_s for the open sentence
            try:
                for _ in range(20):    # audio goes on in real time (a stall is time passing with nothing)
                    await stream.feed(LOUD)
                    await asyncio.sleep(CHUNK_MS / 1000)
            except ProviderError as exc:
                return exc
            finally:
                await stream.close()
        raise AssertionError("no error")

    assert str(run(scenario())) == "aliyun stalled: no result within 0.5 s of the end of speech"


def test_asr_silence_after_a_final_is_not_a_stall() -> None:
    """Paraformer says nothing after a sentence it has ended: that is no stall."""
    async def scenario() -> list[AsrResult]:
        async with dashscope_server(scripts=[[(100, {"text": "done", "final": True})]]) as server:
            stream = await AliyunAsr(LOOPBACK).open_stream(asr_options(server.url))
            results = await feed_until(stream, lambda r: bool(r))
            assert await stream.end_utterance() is None        # the final came with the audio
            for _ in range(10):    # 1 s of audio in real time, twice the stall timeout
                results += await stream.feed(LOUD)
                await asyncio.sleep(CHUNK_MS / 1000)
            await stream.close()
            assert len(server.tasks) == 1
            return results

    assert [r.text for r in run(scenario())] == ["done"]


def test_asr_malformed_frame_is_reported_and_the_stream_goes_on() -> None:
    async def scenario() -> tuple[list[str], list[AsrResult]]:
        script = [(200, "garbage"), (300, "binary"), (400, {"text": "still here", "final": True})]
        async with dashscope_server(scripts=[script]) as server:
            stream = await AliyunAsr(LOOPBACK).open_stream(asr_options(server.url))
            errors: list[str] = []
            results: list[AsrResult] = []
            for _ in range(40):
                try:
                    results += await stream.feed(LOUD)
                except ProviderError as exc:
                    errors.append(str(exc))
                if results:
                    break
                await asyncio.sleep(0.01)
            await stream.close()
            assert len(server.tasks) == 1
            return errors, results

    errors, results = run(scenario())
    assert "; ".join(errors) == ("aliyun sent a malformed frame: not JSON: '{this is not json'; "
                                 "aliyun sent a malformed frame: a binary frame of 3 bytes where an event was due")
    assert [r.text for r in results] == ["still here"]


def test_tts_session_audio_in_order_with_words() -> None:
    async def scenario() -> tuple[DashScopeServer, list[TtsChunk]]:
        async with dashscope_server() as server:
            chunks = await collect(tts_request(server.url, speaker="longxiaochun_v2", speed=1.5, subtitle=True,
                                               extra={"model": "cosyvoice-v1", "pitch": 1.2}))
            return server, chunks

    server, chunks = run(scenario())
    [task] = server.tasks
    assert task.problems == [] and task.headers["Authorization"] == f"Bearer {KEY}"
    assert task.run_task is not None and task.run_task["payload"]["model"] == "cosyvoice-v1"
    assert task.run_task["payload"]["parameters"] == {
        "text_type": "PlainText", "voice": "longxiaochun_v2", "format": "pcm", "sample_rate": 16000, "rate": 1.5,
        "word_timestamp_enabled": True, "pitch": 1.2}
    assert task.actions() == ["run-task", "continue-task", "finish-task"] and task.texts == [TEXT]
    pcm = np.concatenate([c.pcm for c in chunks])
    assert pcm.tobytes() == bytes(task.sent_audio)                 # every sample, in order
    words = [w for c in chunks for w in c.words]
    assert words == [WordMark(n * WORD_MS * 16, n) for n in range(len(TEXT.split()))]


def test_tts_at_a_rate_cosyvoice_lacks_is_resampled() -> None:
    async def scenario() -> tuple[DashScopeServer, list[TtsChunk]]:
        async with dashscope_server() as server:
            return server, await collect(tts_request(server.url, "one two", samplerate=32000))

    server, chunks = run(scenario())
    assert server.tasks[0].run_task["payload"]["parameters"]["sample_rate"] == 16000   # type: ignore[index]
    assert abs(sum(len(c.pcm) for c in chunks) - 2 * WORD_MS * 32) <= 64


@pytest.mark.parametrize(("fault", "error", "code"), [
    ("start-fail", "aliyun task failed: InvalidParameter: the scripted failure", 400),
    ("fail", "aliyun task failed: InvalidParameter: the scripted failure", 400),
    ("drop", "aliyun closed the connection before the audio was complete (no close frame)", None),
    ("stall", "aliyun stalled: nothing for 0.5 s", None),
    ("garbage", "aliyun sent a malformed frame: not JSON: '{this is not json'", None),
])
def test_tts_faults(fault: str, error: str, code: int | None) -> None:
    async def scenario() -> tuple[int, ProviderError]:
        async with dashscope_server(scripts=[fault]) as server:
            got = 0
            try:
                async for chunk in AliyunTts(LOOPBACK).synthesize(tts_request(server.url)):
                    got += len(chunk.pcm)
            except ProviderError as exc:
                return got, exc
        raise AssertionError("no error")

    got, exc = run(scenario())
    assert (str(exc), exc.code, exc.sender) == (error, code, "tts")
    assert got == (0 if fault == "start-fail" else len(word_tone(0, 16000)) // 2)


def test_tts_credentials_refused() -> None:
    async def scenario() -> None:
        async with dashscope_server(api_key="sk-other") as server:
            await collect(tts_request(server.url))

    with pytest.raises(ProviderError) as caught:
        run(scenario())
    assert (caught.value.code, caught.value.sender) == (401, "tts")


def test_the_key_comes_from_dashscope_api_key() -> None:
    """Through the registry, as a call gets its provider: the key from the environment."""
    async def scenario() -> tuple[DashScopeServer, list[TtsChunk]]:
        registry = builtin_registry(context=LOOPBACK, environ={"DASHSCOPE_API_KEY": KEY})
        async with dashscope_server(scripts=[[(100, {"text": "ok", "final": True})], None]) as server:
            stream = await registry.open_asr(TranscriptionOption(provider="aliyun", endpoint=server.url))
            await feed_until(stream, lambda r: bool(r))
            await stream.close()
            option = registry.tts_option(SynthesisOption(provider="aliyun", endpoint=server.url))
            request = TtsRequest.from_option("one", option, 16000)
            chunks = [c async for c in registry.tts(option).synthesize(request)]
            await registry.close()
            return server, chunks

    server, chunks = run(scenario())
    assert [t.headers["Authorization"] for t in server.tasks] == [f"Bearer {KEY}"] * 2
    assert sum(len(c.pcm) for c in chunks) == WORD_MS * 16


# -- through a call server ----------------------------------------------------------------------------
def invite(asr: dict[str, Any] | None = None, **option: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"codec": "pcm", "vad": {"type": "webrtc"}, **option}
    if asr is not None:
        body["asr"] = asr
    return {"command": "invite", "option": body}


PHRASE = "call stella and ask her to bring these things"


def test_call_recognises_speech_with_aliyun(tmp_path: Path) -> None:
    speech = espeak_speech(RATE, text=PHRASE)
    caller = np.concatenate([np.zeros(RATE // 2, np.int16), speech, np.zeros(RATE, np.int16)])
    script = [(300, {"text": "call stella", "final": False}),
              (900, {"text": "call stella and ask her", "final": False}),
              (1500, {"text": "Call Stella and ask her to bring these things.", "final": True})]

    async def scenario() -> tuple[DashScopeServer, list[dict[str, Any]]]:
        async with dashscope_server(scripts=[script]) as provider, \
                running_server(tmp_path, endpoint_allow_networks=["127.0.0.0/8"]) as (_, address), \
                Call.open(address) as call:
            await call.send(invite({"provider": "aliyun", "language": "en-US", "secretKey": KEY,
                                    "endpoint": provider.url}))
            await call.wait_event("answer")
            start = call.mark()
            await stream_realtime(call, caller)
            await call.wait_event("asrFinal", start, timeout=5)
            await call.wait(lambda: any(e["event"] == "metrics" and e["key"] == "completed.asr.aliyun"
                                        for e in call.events(start)))
            return provider, call.events(start)

    provider, events = run(scenario())
    [task] = provider.tasks
    assert task.problems == []
    asr = [(e["event"], e["text"]) for e in events if e["event"] in ("asrDelta", "asrFinal")]
    assert asr == [("asrDelta", "call stella"), ("asrDelta", "call stella and ask her"),
                   ("asrFinal", "Call Stella and ask her to bring these things.")]
    keys = [e["key"] for e in events if e["event"] == "metrics"]
    assert "ttfb.asr.aliyun" in keys and "completed.asr.aliyun" in keys
    assert not [e for e in events if e["event"] == "error"]
    # the provider heard the speech, at 16 kHz: as much audio as was spoken, and loud where it was spoken
    assert task.run_task is not None and task.run_task["payload"]["parameters"]["sample_rate"] == 16000
    heard = np.frombuffer(bytes(task.audio), "<i2").astype(np.float64)
    assert len(heard) >= len(speech)
    assert np.sqrt(np.mean(heard ** 2)) > 0.3 * np.sqrt(np.mean(speech.astype(np.float64) ** 2))


def test_call_asr_drop_is_an_error_then_recognition_resumes(tmp_path: Path) -> None:
    tone_s = tone(440, RATE, 3.0, 0.3)
    scripts = [[(300, "drop")], [(300, {"text": "after the drop", "final": True})]]

    async def scenario() -> list[dict[str, Any]]:
        async with dashscope_server(scripts=scripts) as provider, \
                running_server(tmp_path, endpoint_allow_networks=["127.0.0.0/8"]) as (_, address), \
                Call.open(address) as call:
            await call.send(invite({"provider": "aliyun", "secretKey": KEY, "endpoint": provider.url}))
            await call.wait_event("answer")
            start = call.mark()
            await stream_realtime(call, tone_s)
            await call.wait_event("asrFinal", start, timeout=5)
            assert len(provider.tasks) == 2
            return call.events(start)

    events = run(scenario())
    kinds = [(e["event"], e.get("sender")) for e in events if e["event"] in ("error", "asrFinal")]
    assert kinds == [("error", "asr"), ("asrFinal", None)]
    assert "aliyun closed the connection" in next(e["error"] for e in events if e["event"] == "error")


def test_call_asr_credentials_refused_is_an_error_event(tmp_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        async with dashscope_server(api_key="sk-other") as provider, \
                running_server(tmp_path, endpoint_allow_networks=["127.0.0.0/8"]) as (_, address), \
                Call.open(address) as call:
            await call.send(invite({"provider": "aliyun", "secretKey": KEY, "endpoint": provider.url}))
            error: dict[str, Any] = await call.wait_event("error", sender="asr")
            return error

    error = run(scenario())
    assert error["code"] == 401 and "aliyun refused the credentials: HTTP 401" in error["error"]


def test_call_speaks_with_aliyun_tts(tmp_path: Path) -> None:
    async def scenario() -> tuple[DashScopeServer, Call, list[dict[str, Any]], int]:
        async with dashscope_server() as provider, \
                running_server(tmp_path, endpoint_allow_networks=["127.0.0.0/8"]) as (_, address), \
                Call.open(address) as call:
            await call.send(invite())
            await call.wait_event("answer")
            start = call.mark()
            await call.send({"command": "tts", "text": TEXT, "playId": "a1",
                             "option": {"provider": "aliyun", "secretKey": KEY, "endpoint": provider.url,
                                        "speaker": "longxiaochun_v2"}})
            await call.wait_event("trackEnd", start, timeout=10, playId="a1")
            await call.wait(lambda: any(e["event"] == "metrics" and e["key"] == "completed.tts.aliyun"
                                        for e in call.events(start)))
            return provider, call, call.events(start), len(call.frames(start))

    provider, _, events, frames = run(scenario())
    [task] = provider.tasks
    assert task.problems == [] and task.texts == [TEXT]
    names = [e["event"] for e in events if e["event"] in ("trackStart", "trackEnd", "error")]
    assert names == ["trackStart", "trackEnd"]
    keys = [e["key"] for e in events if e["event"] == "metrics"]
    assert "ttfb.tts.aliyun" in keys and "completed.tts.aliyun" in keys
    end = next(e for e in events if e["event"] == "trackEnd")
    assert abs(end["duration"] - len(TEXT.split()) * WORD_MS) <= 40
    assert frames >= len(TEXT.split()) * WORD_MS // 20 - 2


@pytest.mark.parametrize("fault", ["drop", "stall"])
def test_call_tts_fault_is_an_error_then_track_end(tmp_path: Path, fault: str) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with dashscope_server(scripts=[fault]) as provider, \
                running_server(tmp_path, endpoint_allow_networks=["127.0.0.0/8"],
                               provider_timeout_secs=0.5) as (_, address), \
                Call.open(address) as call:
            await call.send(invite())
            await call.wait_event("answer")
            start = call.mark()
            await call.send({"command": "tts", "text": TEXT, "playId": "f1",
                             "option": {"provider": "aliyun", "secretKey": KEY, "endpoint": provider.url}})
            await call.wait_event("trackEnd", start, timeout=10, playId="f1")
            return call.events(start)

    events = run(scenario())
    names = [(e["event"], e.get("sender")) for e in events if e["event"] in ("trackStart", "trackEnd", "error")]
    # the audio before the fault is played: the track starts (before or after the error is reported) and ends
    assert sorted(names) == [("error", "tts"), ("trackEnd", None), ("trackStart", None)]
    assert names.index(("error", "tts")) < names.index(("trackEnd", None))
    error = next(e for e in events if e["event"] == "error")
    expected = {"drop": "aliyun closed the connection before the audio was complete (no close frame)",
                "stall": "aliyun stalled: nothing for 0.5 s"}[fault]
    assert expected in error["error"]

