"""``mediaPass`` in its Twilio Media Streams mode, with a real Pipecat bot as the service.

The bot is written as for Twilio: a FastAPI WebSocket endpoint that reads ``connected`` and
``start``, builds Pipecat's :class:`TwilioFrameSerializer` from the streamSid and callSid, and runs a
pipeline ``transport.input() -> recorder -> transport.output()`` over
:class:`FastAPIWebsocketTransport` (uvicorn on loopback). It plays a 1 kHz tone when the caller
connects and keeps every ``media`` message and audio frame it gets. Both ways are checked: the caller
hears the tone, and the bot gets the caller's audio as 20 ms of 8 kHz mu-law per message, carrying
what the caller sent (a /call caller's 440 Hz tone; a SIP phone's speech, sipp playing a pcap).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pipecat", reason="pipecat-ai is not installed (pip install 'pypbx[test]')")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install 'pypbx[test]')")

from fastapi import FastAPI, WebSocket  # noqa: E402
from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame  # noqa: E402
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.runner import PipelineRunner  # noqa: E402
from pipecat.pipeline.task import PipelineParams, PipelineTask  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.serializers.twilio import TwilioFrameSerializer  # noqa: E402
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport  # noqa: E402

from pbx.core.g711 import ulaw_decode  # noqa: E402
from tests.support.calls import FRAME, RATE, Call, running_server, stream_realtime  # noqa: E402
from tests.support.sip import SIPP, sipp  # noqa: E402
from tests.test_mediapass import dominant, rms, synchronous, tone  # noqa: E402

ALLOW = {"endpoint_allow_networks": ["127.0.0.0/8"], "provider_timeout_secs": 5.0}
BOT_TONE_HZ, BOT_TONE_S = 1000, 1.0
TWILIO_RATE = 8000


@dataclass
class Bot:
    """What the Pipecat bot saw: the two first messages, every media message, every audio frame."""

    url: str = ""
    first: list[dict[str, Any]] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)          # mu-law of each media message
    media: list[dict[str, Any]] = field(default_factory=list)
    frames: list[InputAudioRawFrame] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    wanted: int = 0                                               # media messages to wait for
    enough: asyncio.Event = field(default_factory=asyncio.Event)  # set when ``wanted`` arrived

    def pcm(self) -> np.ndarray:
        return np.frombuffer(b"".join(f.audio for f in self.frames), dtype=np.int16)


class Recorder(FrameProcessor):
    """Keeps the caller's audio frames as the pipeline delivers them."""

    def __init__(self, bot: Bot) -> None:
        super().__init__()
        self.bot = bot

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.bot.frames.append(frame)
        await self.push_frame(frame, direction)


class RecordingSerializer(TwilioFrameSerializer):
    """Pipecat's serializer, noting each media message on its way in."""

    def __init__(self, bot: Bot, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bot = bot

    async def deserialize(self, data: str | bytes) -> Frame | None:
        message = json.loads(data)
        if message.get("event") == "media":
            self.bot.media.append(message)
            self.bot.payloads.append(base64.b64decode(message["media"]["payload"]))
            if self.bot.wanted and len(self.bot.payloads) >= self.bot.wanted:
                self.bot.enough.set()
        return await super().deserialize(data)


def bot_app(bot: Bot) -> FastAPI:
    app = FastAPI()

    @app.websocket("/twilio")
    async def twilio(websocket: WebSocket) -> None:
        await websocket.accept()
        for _ in range(2):                       # connected, start: as every Twilio bot reads them
            bot.first.append(json.loads(await websocket.receive_text()))
        start = bot.first[1]["start"]
        serializer = RecordingSerializer(bot, start["streamSid"], start["callSid"],
                                         params=TwilioFrameSerializer.InputParams(auto_hang_up=False))
        transport = FastAPIWebsocketTransport(websocket, FastAPIWebsocketParams(
            audio_in_enabled=True, audio_out_enabled=True, add_wav_header=False, serializer=serializer))
        task = PipelineTask(Pipeline([transport.input(), Recorder(bot), transport.output()]),
                            params=PipelineParams(audio_in_sample_rate=TWILIO_RATE,
                                                  audio_out_sample_rate=TWILIO_RATE))

        @transport.event_handler("on_client_connected")
        async def greet(transport: Any, client: Any) -> None:
            audio = tone(BOT_TONE_HZ, TWILIO_RATE, BOT_TONE_S).astype("<i2").tobytes()
            await task.queue_frames([OutputAudioRawFrame(audio=audio, sample_rate=TWILIO_RATE, num_channels=1)])

        @transport.event_handler("on_client_disconnected")
        async def gone(transport: Any, client: Any) -> None:
            await task.cancel()

        try:
            await PipelineRunner(handle_sigint=False).run(task)
        finally:
            bot.ended.set()

    return app


@contextlib.asynccontextmanager
async def pipecat_bot() -> AsyncIterator[Bot]:
    bot = Bot()
    config = uvicorn.Config(bot_app(bot), host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                            ws="websockets-sansio")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    bot.url = f"ws://127.0.0.1:{port}/twilio"
    try:
        yield bot
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


def twilio_pass(bot: Bot) -> dict[str, Any]:
    return {"url": bot.url, "inputSampleRate": 8000, "outputSampleRate": 8000, "protocol": "twilio"}


def check_start(bot: Bot, call_id: str) -> None:
    connected, start = bot.first
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert start["event"] == "start" and start["sequenceNumber"] == "1"
    meta = start["start"]
    assert meta["callSid"] == call_id and meta["accountSid"] == "AC" + "0" * 32
    assert meta["streamSid"] == start["streamSid"] and meta["streamSid"].startswith("MZ")
    assert meta["tracks"] == ["inbound"]
    assert meta["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}


def check_media(bot: Bot) -> None:
    """20 ms of 8 kHz mu-law per message, numbered as Twilio numbers them, and Pipecat's 8 kHz frames."""
    assert len(bot.payloads) >= 50
    assert {len(p) for p in bot.payloads} == {160}
    chunks = [int(m["media"]["chunk"]) for m in bot.media]
    assert chunks == list(range(1, len(chunks) + 1))
    assert [int(m["media"]["timestamp"]) for m in bot.media] == [20 * (c - 1) for c in chunks]
    sequence = [int(m["sequenceNumber"]) for m in bot.media]
    assert sequence == list(range(2, len(sequence) + 2))       # start was 1
    assert {m["media"]["track"] for m in bot.media} == {"inbound"}
    assert {(f.sample_rate, f.num_channels) for f in bot.frames} == {(TWILIO_RATE, 1)}


def tone_frames(pcm: np.ndarray, rate: int, level: float = 3000) -> np.ndarray:
    """The 20 ms frames of ``pcm`` louder than ``level``, joined."""
    n = rate // 50
    frames = [pcm[i:i + n] for i in range(0, len(pcm) - n + 1, n)]
    loud = [f for f in frames if rms(f) > level]
    return np.concatenate(loud) if loud else np.zeros(0, dtype=np.int16)


@synchronous
async def test_pipecat_twilio_bot_on_a_websocket_call(tmp_path: Path) -> None:
    logging.getLogger("loguru").setLevel(logging.WARNING)
    async with (pipecat_bot() as bot, running_server(tmp_path, **ALLOW) as (_, address),
                Call.open(address, "id=pipecat-1&pingInterval=0") as call):
        await call.send({"command": "invite", "option": {"codec": "pcm", "mediaPass": twilio_pass(bot)}})
        await call.wait_event("answer")
        caller = tone(440, RATE, 2.0)
        await stream_realtime(call, caller)
        await stream_realtime(call, np.zeros(RATE // 5, dtype=np.int16))
        await call.send({"command": "hangup"})
        await call.wait_event("hangup")
        await asyncio.wait_for(bot.ended.wait(), 10)
    assert not [e for e in call.events() if e["event"] == "error"], call.events()
    check_start(bot, "pipecat-1")
    check_media(bot)
    # the bot got the caller's tone: the mu-law on the wire and Pipecat's frames alike
    wire = ulaw_decode(b"".join(bot.payloads))
    assert dominant(tone_frames(wire, TWILIO_RATE), TWILIO_RATE) == pytest.approx(440, abs=5)
    got = tone_frames(bot.pcm(), TWILIO_RATE)
    assert len(got) >= TWILIO_RATE * 1.5                        # most of the 2 s
    assert rms(got) == pytest.approx(rms(caller), rel=0.15)
    # the caller heard the bot's tone, about a second of it
    heard = np.frombuffer(b"".join(call.frames()), dtype="<i2")
    played = tone_frames(heard, RATE)
    assert BOT_TONE_S * 0.9 <= len(played) / RATE <= BOT_TONE_S * 1.1
    assert dominant(played, RATE) == pytest.approx(BOT_TONE_HZ, abs=5)


def read_stereo(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data.reshape(-1, channels), rate


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")
@synchronous
async def test_pipecat_twilio_bot_on_a_sip_call(tmp_path: Path) -> None:
    """sipp calls, sends speech (a PCMA pcap) and waits for our BYE; the application accepts with the
    bot as media pass. The caller's side of the line: the recording's right channel, what the call
    sent to the phone; the bot's side: the speech in its media messages."""
    from pbx.sip.config import SipConfig, WebhookConfig
    from tests.support.sip import WebhookReceiver

    async with (pipecat_bot() as bot, WebhookReceiver.running("ok") as hooks,
                running_server(tmp_path / "data", webhook=WebhookConfig(url=hooks.url),
                               sip=SipConfig(addr="127.0.0.1:0"), **ALLOW) as (server, address)):
        assert server.sip is not None and server.sip.address is not None
        async with sipp("caller_waits_for_bye.xml", server.sip.address[1], tmp_path / "sipp", timeout_s=20.0) as run:
            hook = await hooks.next_post()
            async with Call.open(address, f"id={hook['dialogId']}&pingInterval=0", path="/call/sip") as call:
                await call.wait_event("incoming")
                await call.send({"command": "accept", "option": {
                    "codec": "pcma", "recorder": {"recorderFile": "bot.wav", "samplerate": 16000},
                    "mediaPass": twilio_pass(bot)}})
                await call.wait_event("answer")
                bot.wanted = 250                        # 5 s of the phone's audio
                await asyncio.wait_for(bot.enough.wait(), 10.0)
                await call.send({"command": "hangup"})
                await call.wait_event("hangup")
            result = await run.finish()
            assert result.rc == 0, result.logs
        await asyncio.wait_for(bot.ended.wait(), 10)
    assert not [e for e in call.events() if e["event"] == "error"], call.events()
    check_start(bot, hook["dialogId"])
    check_media(bot)
    # the bot heard the phone: speech in most of its first 4.5 s, at a speech level
    wire = ulaw_decode(b"".join(bot.payloads))[:int(4.5 * TWILIO_RATE)]
    voiced = [rms(wire[i:i + 160]) > 300 for i in range(0, len(wire) - 159, 160)]
    assert sum(voiced) >= len(voiced) // 3
    assert rms(bot.pcm()[:int(4.5 * TWILIO_RATE)]) > 300
    # the phone was sent the bot's tone: a second of 1 kHz on the recording's outbound channel
    pcm, rate = read_stereo(tmp_path / "data" / "recordings" / "bot.wav")
    played = tone_frames(pcm[:, 1].copy(), rate)
    assert BOT_TONE_S * 0.9 <= len(played) / rate <= BOT_TONE_S * 1.1
    assert dominant(played, rate) == pytest.approx(BOT_TONE_HZ, abs=5)
    assert FRAME == RATE // 50
