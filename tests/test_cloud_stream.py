"""The shared cloud loops (pbx.cloud) on a minimal protocol against a local WebSocket server:
refused handshakes, the address policy, drops, reconnects with backoff, stalls and malformed frames.

The protocol here is this test's own (one JSON object per result); each provider's real protocol is
tested in its own test_provider_*.py against a server that speaks it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Response

from pbx.asr.base import AsrResult
from pbx.cloud import asr as cloud_asr
from pbx.cloud.asr import AsrProtocol, MalformedFrame, Message, WebSocketAsrStream
from pbx.cloud.tts import TtsFrame, TtsProtocol, synthesize_ws
from pbx.cloud.ws import ProviderContext
from pbx.errors import ProviderError
from pbx.media.netpolicy import AddressPolicy
from pbx.tts.base import TtsRequest, WordMark

LOOPBACK = ProviderContext(AddressPolicy(["127.0.0.0/8"]), timeout_s=0.5)
CHUNK = np.zeros(1600, np.int16)          # 100 ms at 16 kHz


class JsonProtocol(AsrProtocol):
    provider = "json"
    final_wait_s = 0.5

    def __init__(self, url: str) -> None:
        self._url = url

    def url(self) -> str:
        return self._url

    def headers(self) -> dict[str, str]:
        return {"Authorization": "Token secret"}

    def audio(self, pcm: Any) -> list[Message]:
        return [pcm.tobytes()]

    def flush(self) -> list[Message]:
        return ['{"type":"flush"}']

    def received(self, message: Message) -> list[AsrResult]:
        try:
            frame = json.loads(message)
            if "error" in frame:
                raise ProviderError("asr", f"json: {frame['error']}", frame.get("code"))
            return [AsrResult(frame["text"], frame["final"], frame.get("start"), frame.get("end"))]
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedFrame(f"{message!r:.40}: {exc}") from None


Handler = Callable[[ServerConnection], Any]


@asynccontextmanager
async def provider(handler: Handler, refuse: int | None = None) -> AsyncIterator[tuple[str, list[Any]]]:
    """A local server running ``handler`` per connection; yields its URL and the connections' requests."""
    seen: list[Any] = []

    def check(connection: ServerConnection, request: Any) -> Response | None:
        seen.append(request)
        if refuse is not None:
            return connection.respond(refuse, "bad key\n")
        return None

    async with serve(handler, "127.0.0.1", 0, process_request=check) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/listen", seen


async def results_for(stream: WebSocketAsrStream, chunks: int) -> list[AsrResult | ProviderError]:
    """Feed ``chunks`` 100 ms chunks in real time; collect what each returns or raises."""
    out: list[AsrResult | ProviderError] = []
    for _ in range(chunks):
        try:
            out.extend(await stream.feed(CHUNK))
        except ProviderError as exc:
            out.append(exc)
        await asyncio.sleep(0.1)
    return out


def test_a_refused_key_is_an_error_with_the_http_status() -> None:
    async def run() -> None:
        async with provider(lambda ws: None, refuse=401) as (url, seen):
            stream = WebSocketAsrStream(lambda: JsonProtocol(url), LOOPBACK)
            with pytest.raises(ProviderError) as info:
                await stream.open()
            assert str(info.value) == "json refused the credentials: HTTP 401: bad key"
            assert info.value.code == 401 and seen[0].headers["Authorization"] == "Token secret"

    asyncio.run(run())


def test_the_address_policy_applies_to_endpoints() -> None:
    async def run() -> None:
        stream = WebSocketAsrStream(lambda: JsonProtocol("ws://127.0.0.1:9/x"), ProviderContext())
        with pytest.raises(ProviderError, match=r"^json: not connecting to 127\.0\.0\.1: 127\.0\.0\.1 is a loopback "
                                                r"address, which providers may not reach \(config "
                                                r"endpoint_allow_networks allows networks\)$"):
            await stream.open()
        with pytest.raises(ProviderError, match=r"^json: bad endpoint 'http://x/' \(expected ws:// or wss://"):
            await WebSocketAsrStream(lambda: JsonProtocol("http://x/"), LOOPBACK).open()

    asyncio.run(run())


def test_results_in_order_finals_from_the_provider_and_from_a_flush() -> None:
    async def handler(ws: ServerConnection) -> None:
        count = 0
        async for message in ws:
            if isinstance(message, bytes):
                count += 1
                if count == 2:
                    await ws.send(json.dumps({"text": "hel", "final": False, "start": 0, "end": 200}))
                if count == 4:
                    await ws.send(json.dumps({"text": "hello", "final": True, "start": 0, "end": 400}))
            elif json.loads(message)["type"] == "flush":
                await ws.send(json.dumps({"text": "world", "final": True, "start": 500, "end": 700}))

    async def run() -> None:
        async with provider(handler) as (url, _):
            stream = WebSocketAsrStream(lambda: JsonProtocol(url), LOOPBACK)
            await stream.open()
            got = await results_for(stream, 6)
            final = await stream.end_utterance()
            await stream.close()
        assert got == [AsrResult("hel", False, 0, 200), AsrResult("hello", True, 0, 400)]
        assert final == AsrResult("world", True, 500, 700)

    asyncio.run(run())


def test_a_dropped_connection_is_one_error_then_the_stream_reconnects_on_the_same_clock(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloud_asr, "BACKOFF_FIRST_S", 0.2)
    connections: list[int] = []

    async def handler(ws: ServerConnection) -> None:
        connections.append(1)
        received = 0
        async for message in ws:
            received += isinstance(message, bytes)
            if received == 3:
                await ws.send(json.dumps({"text": f"connection {len(connections)}", "final": True,
                                          "start": 100, "end": 200}))
                if len(connections) == 1:
                    await ws.close(1011, "internal error")

    async def run() -> tuple[list[AsrResult | ProviderError], WebSocketAsrStream]:
        async with provider(handler) as (url, _):
            stream = WebSocketAsrStream(lambda: JsonProtocol(url), LOOPBACK)
            await stream.open()
            got = await results_for(stream, 10)
            await stream.close()
            return got, stream

    got, stream = asyncio.run(run())
    errors = [g for g in got if isinstance(g, ProviderError)]
    assert [str(e) for e in errors] == ["json closed the connection: code 1011: internal error"]
    assert errors[0].code == 1011 and stream.reconnects == 1 and 100 <= stream.dropped_ms <= 300
    finals = [g for g in got if isinstance(g, AsrResult)]
    assert finals[0] == AsrResult("connection 1", True, 100, 200)
    # the second connection's times are shifted by the audio fed before it opened
    assert finals[1].text == "connection 2" and finals[1].start_ms is not None and finals[1].start_ms >= 500


def test_a_provider_that_stays_down_is_retried_with_growing_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloud_asr, "BACKOFF_FIRST_S", 0.1)

    async def run() -> list[AsrResult | ProviderError]:
        async def once(ws: ServerConnection) -> None:
            await ws.close(1001, "going away")

        async with provider(once) as (url, _):
            stream = WebSocketAsrStream(lambda: JsonProtocol(url), LOOPBACK)
            await stream.open()
        # the server is gone: every reconnect fails, each an error, further and further apart
        return await results_for(stream, 12)

    got = asyncio.run(run())
    messages = [str(g) for g in got if isinstance(g, ProviderError)]
    assert messages[0] == "json closed the connection: code 1001: going away"
    assert [m.split("; ")[-1] for m in messages[1:]] == ["trying again in 0.2 s", "trying again in 0.4 s",
                                                          "trying again in 0.8 s"]
    assert all(m.startswith("json: cannot connect to 127.0.0.1:") for m in messages[1:])


def test_a_stall_after_speech_drops_the_connection_and_a_malformed_frame_is_skipped() -> None:
    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            if isinstance(message, str):      # the flush: garbage, then nothing ever again
                await ws.send("{not json")
                await ws.wait_closed()

    async def run() -> tuple[AsrResult | None, list[AsrResult | ProviderError]]:
        async with provider(handler) as (url, _):
            stream = WebSocketAsrStream(lambda: JsonProtocol(url), LOOPBACK)
            await stream.open()
            await stream.feed(CHUNK)
            try:
                final = await stream.end_utterance()
            except ProviderError as exc:
                final = None
                first = exc
            got = [first, *await results_for(stream, 8)]
            await stream.close()
            return final, got

    final, got = asyncio.run(run())
    messages = [str(g) for g in got if isinstance(g, ProviderError)]
    assert final is None
    assert messages[0] == ("json sent a malformed frame: '{not json': Expecting property name enclosed in double "
                           "quotes: line 1 column 2 (char 1)")
    assert "json stalled: no result within 0.5 s of the end of speech" in messages[1]


def test_an_error_frame_of_the_provider_keeps_its_code() -> None:
    async def handler(ws: ServerConnection) -> None:
        async for _ in ws:
            await ws.send(json.dumps({"error": "quota exceeded", "code": 4003}))
            await ws.wait_closed()

    async def run() -> list[AsrResult | ProviderError]:
        async with provider(handler) as (url, _):
            stream = WebSocketAsrStream(lambda: JsonProtocol(url), LOOPBACK)
            await stream.open()
            got = await results_for(stream, 3)
            await stream.close()
            return got

    errors = [g for g in asyncio.run(run()) if isinstance(g, ProviderError)]
    assert [(str(e), e.code) for e in errors] == [("json: quota exceeded", 4003)]


class ChunkedTts(TtsProtocol):
    provider = "chunks"
    rate = 8000

    def __init__(self, url: str) -> None:
        self._url = url

    def url(self) -> str:
        return self._url

    def opening(self) -> list[Message]:
        return ['{"speak":"one two"}']

    def received(self, message: Message) -> TtsFrame:
        if isinstance(message, bytes):
            return TtsFrame(pcm=message)
        frame = json.loads(message)
        if frame.get("type") == "word":
            return TtsFrame(words=(WordMark(frame["sample"], frame["index"]),))
        if frame.get("type") == "done":
            return TtsFrame(done=True)
        raise MalformedFrame(f"unknown type {frame.get('type')!r}")


def test_tts_audio_is_resampled_with_its_word_marks_and_faults_say_what_happened() -> None:
    async def good(ws: ServerConnection) -> None:
        assert json.loads(await ws.recv()) == {"speak": "one two"}
        await ws.send(json.dumps({"type": "word", "sample": 0, "index": 0}))
        await ws.send(np.full(801, 1000, np.int16).tobytes()[:-1])     # an odd byte: carried to the next frame
        await ws.send(json.dumps({"type": "word", "sample": 800, "index": 1}))
        await ws.send(np.full(800, 1000, np.int16).tobytes()[-1:] + np.full(799, 1000, np.int16).tobytes())
        await ws.send(json.dumps({"type": "done"}))
        await ws.wait_closed()

    async def drops(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(np.zeros(800, np.int16).tobytes())
        await ws.close(1011, "synthesis failed")

    async def stalls(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.wait_closed()

    async def garbage(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send('{"type":"surprise"}')
        await ws.wait_closed()

    async def synth(handler: Handler) -> tuple[list[Any], ProviderError | None]:
        async with provider(handler) as (url, _):
            chunks: list[Any] = []
            try:
                async for chunk in synthesize_ws(ChunkedTts(url), TtsRequest("one two", samplerate=16000), LOOPBACK):
                    chunks.append(chunk)
            except ProviderError as exc:
                return chunks, exc
            return chunks, None

    async def run() -> None:
        chunks, error = await synth(good)
        assert error is None
        pcm = np.concatenate([c.pcm for c in chunks])
        assert abs(len(pcm) - 3200) <= 2 and [w for c in chunks for w in c.words] == [WordMark(0, 0),
                                                                                       WordMark(1600, 1)]
        _, error = await synth(drops)
        assert error is not None and str(error) == ("chunks closed the connection before the audio was complete "
                                                    "(code 1011: synthesis failed)") and error.code == 1011
        _, error = await synth(stalls)
        assert error is not None and str(error) == "chunks stalled: nothing for 0.5 s"
        _, error = await synth(garbage)
        assert error is not None and str(error) == "chunks sent a malformed frame: unknown type 'surprise'"

    asyncio.run(run())
