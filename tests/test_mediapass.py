"""``mediaPass`` end to end over loopback: a /call caller, our server, and a plain ``websockets`` service.

Issue 12's acceptance: the caller hears what the service sends, and the service receives the caller's
audio at the requested rate and packet size (a tone service, an echo service). Then the faults: a
refused url, a url the address policy refuses, a refused handshake, a service that drops mid-call,
and tts/play while the service plays; each is an error event and the call goes on.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.server import Request, Response, ServerConnection, serve

from pbx.core.g711 import ulaw_encode
from tests.support.calls import FRAME, RATE, Call, Event, probe, running_server, stream_realtime

ALLOW = {"endpoint_allow_networks": ["127.0.0.0/8"], "provider_timeout_secs": 3.0}
TTS_REFUSED = "tts refused: the mediaPass service plays to the caller while it is connected"
PLAY_REFUSED = "play refused: the mediaPass service plays to the caller while it is connected"


def synchronous(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on its own event loop (the suite uses no asyncio plugin)."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))
    return run


def tone(freq: float, rate: int, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def dominant(pcm: np.ndarray, rate: int) -> float:
    """The strongest frequency (Hz) of int16 audio."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm))


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


def heard(call: Call, since: int = 0) -> np.ndarray:
    """What the caller received (pcm codec: 16 kHz s16le frames)."""
    return np.frombuffer(b"".join(call.frames(since)), dtype="<i2")


def invite(**media_pass: Any) -> Event:
    return {"command": "invite", "option": {"codec": "pcm", "mediaPass": media_pass}}


@dataclass
class Service:
    """A media pass service on loopback: records what it gets; ``behaviour`` decides what it sends."""

    behaviour: Callable[[Service, ServerConnection], Awaitable[None]]
    reject: int | None = None                    # answer the handshake with this HTTP status
    url: str = ""
    paths: list[str] = field(default_factory=list)
    messages: list[bytes | str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # when each message arrived (behaviours that note it)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.paths[0]).query)

    def audio(self) -> np.ndarray:
        return np.frombuffer(b"".join(m for m in self.messages if isinstance(m, bytes)), dtype="<i2")

    async def _handler(self, ws: ServerConnection) -> None:
        self.paths.append(ws.request.path if ws.request else "")
        self.connected.set()
        try:
            await self.behaviour(self, ws)
        finally:
            self.done.set()

    def _process(self, ws: ServerConnection, request: Request) -> Response | None:
        if self.reject is not None:
            return ws.respond(HTTPStatus(self.reject), "go away\n")
        return None


@asynccontextmanager
async def service(behaviour: Callable[[Service, ServerConnection], Awaitable[None]],
                  reject: int | None = None) -> AsyncIterator[Service]:
    svc = Service(behaviour, reject)
    async with serve(svc._handler, "127.0.0.1", 0, process_request=svc._process) as server:
        port = server.sockets[0].getsockname()[1]
        svc.url = f"ws://127.0.0.1:{port}/media"
        yield svc


async def record(svc: Service, ws: ServerConnection) -> None:
    async for message in ws:
        svc.messages.append(message)


def tone_service(freq: float, rate: int, seconds: float) -> Callable[[Service, ServerConnection], Awaitable[None]]:
    """Sends a tone at once (in 100 ms messages), then records the caller's audio."""
    async def behaviour(svc: Service, ws: ServerConnection) -> None:
        data = tone(freq, rate, seconds).astype("<i2").tobytes()
        step = rate // 10 * 2
        for i in range(0, len(data), step):
            await ws.send(data[i:i + step])
        await record(svc, ws)
    return behaviour


async def echo(svc: Service, ws: ServerConnection) -> None:
    async for message in ws:
        svc.messages.append(message)
        await ws.send(message)


async def answered(call: Call, option: Event) -> None:
    await call.send(option)
    await call.wait_event("answer")


@synchronous
async def test_tone_service_heard_and_caller_audio_at_rate_and_packet_size(tmp_path: Path) -> None:
    async with (service(tone_service(1000, 8000, 1.0)) as svc, running_server(tmp_path, **ALLOW) as (_, address),
                Call.open(address) as call):
        await answered(call, invite(url=svc.url, inputSampleRate=8000, outputSampleRate=24000, packetSize=1920))
        await asyncio.wait_for(svc.connected.wait(), 5)
        await stream_realtime(call, tone(440, RATE, 1.5))
        await call.wait(lambda: len(svc.messages) >= 20)
        await call.send({"command": "hangup"})
        await call.wait_event("hangup")
        await asyncio.wait_for(svc.done.wait(), 5)
    # the service: the query parameters, then 1920-byte packets of 24 kHz s16le carrying the caller's 440 Hz
    assert svc.query() == {"sample_rate": ["24000"], "packet_size": ["1920"]}
    assert all(isinstance(m, bytes) and len(m) == 1920 for m in svc.messages)
    got = svc.audio()
    assert len(got) >= 24000 // 2                   # 40 ms per packet, most of the 1.5 s
    assert dominant(got[2400:], 24000) == pytest.approx(440, abs=5)
    assert rms(got[2400:]) > 0.2 * 32767 * 0.7      # the caller's level (0.3 full scale: rms 0.21)
    # the caller: the service's 1 kHz tone (8 kHz in, played at 16 kHz), about a second of it
    pcm = heard(call)
    loud = np.array([rms(pcm[i:i + FRAME]) for i in range(0, len(pcm) - FRAME + 1, FRAME)])
    assert 45 <= int(np.sum(loud > 3000)) <= 52     # 50 frames of 20 ms
    assert dominant(pcm[np.repeat(loud > 3000, FRAME)[:len(pcm)]], RATE) == pytest.approx(1000, abs=5)
    assert not [e for e in call.events() if e["event"] == "error"]


@synchronous
async def test_echo_service_caller_hears_itself(tmp_path: Path) -> None:
    async with (service(echo) as svc, running_server(tmp_path, **ALLOW) as (_, address), Call.open(address) as call):
        await answered(call, invite(url=svc.url, inputSampleRate=16000, outputSampleRate=16000))
        await asyncio.wait_for(svc.connected.wait(), 5)
        mark = call.mark()
        await stream_realtime(call, tone(697, RATE, 1.2))
        await stream_realtime(call, np.zeros(RATE // 2, dtype=np.int16))   # the echo comes back meanwhile
    assert svc.query() == {"sample_rate": ["16000"], "packet_size": ["2560"]}
    assert all(isinstance(m, bytes) and len(m) == 2560 for m in svc.messages)   # the default packet
    assert dominant(svc.audio(), RATE) == pytest.approx(697, abs=5)
    pcm = heard(call, mark)
    loud = np.array([rms(pcm[i:i + FRAME]) for i in range(0, len(pcm) - FRAME + 1, FRAME)])
    echoed = int(np.sum(loud > 3000))
    assert 50 <= echoed <= 62                       # 1.2 s of tone, cut into 80 ms packets
    assert dominant(pcm[np.repeat(loud > 3000, FRAME)[:len(pcm)]], RATE) == pytest.approx(697, abs=5)


@synchronous
async def test_tts_and_play_refused_while_the_service_plays(tmp_path: Path) -> None:
    async with (service(record) as svc, running_server(tmp_path, **ALLOW) as (_, address),
                Call.open(address) as call):
        await answered(call, invite(url=svc.url, inputSampleRate=16000, outputSampleRate=16000))
        await asyncio.wait_for(svc.connected.wait(), 5)
        mark = call.mark()
        await call.send(probe("p1"))
        error = await call.wait_event("error", mark)
        assert (error["sender"], error["error"]) == ("tts", TTS_REFUSED)
        await call.send({"command": "play", "url": "http://127.0.0.1:1/x.wav"})
        error = await call.wait_event("error", call.position(error) + 1)
        assert (error["sender"], error["error"]) == ("play", PLAY_REFUSED)
        assert not [e for e in call.events(mark) if e["event"] in ("trackStart", "trackEnd")]


async def drop_after_audio(svc: Service, ws: ServerConnection) -> None:
    """Receives one packet, sends 200 ms of tone, and goes away with an error close."""
    svc.messages.append(await ws.recv())
    await ws.send(tone(1000, 16000, 0.2).astype("<i2").tobytes())
    await ws.close(1011, "bot crashed")


@synchronous
async def test_service_drops_mid_call(tmp_path: Path) -> None:
    async with (service(drop_after_audio) as svc, running_server(tmp_path, **ALLOW) as (_, address),
                Call.open(address) as call):
        await answered(call, invite(url=svc.url, inputSampleRate=16000, outputSampleRate=16000))
        sender = asyncio.create_task(stream_realtime(call, tone(440, RATE, 1.0)))
        error = await call.wait_event("error")
        assert error["sender"] == "mediaPass"
        assert error["error"] == ("the mediaPass service closed the connection (code 1011: bot crashed); "
                                  "its audio stops")
        await sender
        # the call goes on: the server plays again, and the call ends normally
        mark = call.mark()
        await call.send(probe("after"))
        await call.wait_event("trackEnd", mark, playId="after")
        await call.send({"command": "hangup"})
        hangup = await call.wait_event("hangup")
    assert hangup.get("initiator") == "user" and "reason" not in hangup
    assert len([e for e in call.events() if e["event"] == "error"]) == 1


@pytest.mark.parametrize(("config", "url", "message", "code"), [
    (ALLOW, "ws://127.0.0.1:{closed}/media",
     "mediaPass: cannot connect to 127.0.0.1:{closed}: [Errno 111] Connect call failed ('127.0.0.1', {closed})", None),
    ({}, "ws://127.0.0.1:{closed}/media",
     "mediaPass: not connecting to 127.0.0.1: {reason}, which providers may not reach (config "
     "endpoint_allow_networks allows networks)", None),
    (ALLOW, "http://127.0.0.1/media", "mediaPass: bad endpoint 'http://127.0.0.1/media?sample_rate=16000&"
     "packet_size=2560' (expected ws:// or wss://host/...)", None),
])
@synchronous
async def test_unusable_url_is_an_error_and_the_call_goes_on(tmp_path: Path, config: dict[str, Any], url: str,
                                                             message: str, code: int | None) -> None:
    closed = await free_port()
    async with running_server(tmp_path, **config) as (_, address), Call.open(address) as call:
        await answered(call, invite(url=url.format(closed=closed), inputSampleRate=16000, outputSampleRate=16000))
        error = await call.wait_event("error")
        assert error["sender"] == "mediaPass"
        if "{reason}" in message:
            assert error["error"].startswith("mediaPass: not connecting to 127.0.0.1: ")
            assert error["error"].endswith(message.split("{reason}")[1])
        else:
            assert error["error"] == message.format(closed=closed)
        assert error.get("code") == code
        mark = call.mark()
        await call.send(probe("after"))                     # no media pass: the server plays again
        await call.wait_event("trackEnd", mark, playId="after")


@synchronous
async def test_refused_handshake_keeps_the_status(tmp_path: Path) -> None:
    async with (service(record, reject=403) as svc, running_server(tmp_path, **ALLOW) as (_, address),
                Call.open(address) as call):
        await answered(call, invite(url=svc.url, inputSampleRate=16000, outputSampleRate=16000))
        error = await call.wait_event("error")
        assert (error["sender"], error["code"]) == ("mediaPass", 403)
        assert error["error"] == "mediaPass refused the credentials: HTTP 403: go away"
        mark = call.mark()
        await call.send(probe("after"))
        await call.wait_event("trackEnd", mark, playId="after")


@synchronous
async def test_bad_option_is_an_error(tmp_path: Path) -> None:
    async with running_server(tmp_path, **ALLOW) as (_, address), Call.open(address) as call:
        await answered(call, invite(url="ws://127.0.0.1:1/", inputSampleRate=16000, outputSampleRate=16000,
                                    protocol="sip"))
        error = await call.wait_event("error")
        assert (error["sender"], error["error"]) == ("mediaPass", "mediaPass.protocol: 'sip' is not one of pcm, twilio")


async def free_port() -> int:
    """A loopback port with nothing listening (bound, then closed)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port



async def twilio_marks(svc: Service, ws: ServerConnection) -> None:
    """A Twilio-mode service: 0.5 s of tone and a mark; when it comes back, 2 s more, a mark, and a clear
    at once; done when that mark comes back. ``svc.times``: when each message arrived."""
    def media(seconds: float) -> str:
        payload = base64.b64encode(ulaw_encode(tone(1000, 8000, seconds))).decode()
        return json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": payload}})

    def mark(name: str) -> str:
        return json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": name}})

    await ws.send(media(0.5))
    await ws.send(mark("short"))
    async for message in ws:
        svc.messages.append(message)
        svc.times.append(time.monotonic())
        event = json.loads(message)
        if event["event"] == "mark" and event["mark"]["name"] == "short":
            await ws.send(media(2.0))
            await ws.send(mark("long"))
            await ws.send(json.dumps({"event": "clear", "streamSid": "MZ1"}))
        elif event["event"] == "mark":
            return


@synchronous
async def test_twilio_marks_come_back_when_played_or_cleared(tmp_path: Path) -> None:
    async with (service(twilio_marks) as svc, running_server(tmp_path, **ALLOW) as (_, address),
                Call.open(address) as call):
        await answered(call, invite(url=svc.url, inputSampleRate=8000, outputSampleRate=8000, protocol="twilio"))
        await asyncio.wait_for(svc.connected.wait(), 5)
        started = time.monotonic()
        sender = asyncio.create_task(stream_realtime(call, np.zeros(RATE * 2, dtype=np.int16)))
        await asyncio.wait_for(svc.done.wait(), 5)
        await sender
    events = [json.loads(m) for m in svc.messages if isinstance(m, str)]
    assert [e["event"] for e in events[:2]] == ["connected", "start"]
    marks = [(e["mark"]["name"], t - started) for e, t in zip(events, svc.times, strict=True) if e["event"] == "mark"]
    assert [name for name, _ in marks] == ["short", "long"]
    (_, short_at), (_, long_at) = marks
    assert 0.4 <= short_at <= 1.0                    # once its 0.5 s had played
    assert long_at - short_at < 0.3                  # cleared at once, not after 2 s
    pcm = heard(call)
    loud = np.array([rms(pcm[i:i + FRAME]) for i in range(0, len(pcm) - FRAME + 1, FRAME)])
    assert 23 <= int(np.sum(loud > 3000)) <= 30      # the 0.5 s, and little of the cleared 2 s
