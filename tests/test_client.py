"""pbx.client against a real server started in-process on 127.0.0.1:0 (and a scripted WebSocket
server for what ours never sends), plus the examples run end to end in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from pbx.client import (
    AudioDecoder,
    AudioEncoder,
    CallClient,
    ClientClosed,
    MalformedEvent,
    call_url,
    connect,
    event_name,
)
from pbx.config import Config
from pbx.core import g711
from pbx.core.g722 import G722Decoder, G722Encoder
from pbx.core.resample import Resampler
from pbx.protocol import (
    AnswerEvent,
    AsrFinalEvent,
    CallOption,
    ErrorEvent,
    HangupEvent,
    InviteCommand,
    MetricsEvent,
    PingEvent,
    TrackEndEvent,
    TrackStartEvent,
    UnknownEvent,
    parse_command,
)
from pbx.server.app import CallServer
from support.audio import espeak_speech, tone, write_wav
from tests.support.calls import LOOPBACK_SIP

ROOT = Path(__file__).resolve().parent.parent
STELLA = "call stella and ask her to bring these things"
HANG_UP = "hang up the phone"
GRAMMAR = f"#JSGF V1.0;\ngrammar g;\npublic <s> = {STELLA} | {HANG_UP} ;\n"


@contextlib.asynccontextmanager
async def call_server(tmp_path: Path) -> AsyncIterator[str]:
    server = CallServer(Config(data_dir=tmp_path, sip=LOOPBACK_SIP))
    host, port = await server.start(host="127.0.0.1", port=0)
    try:
        yield f"ws://{host}:{port}"
    finally:
        await server.stop()


def run(scenario: Callable[[str], Awaitable[Any]], tmp_path: Path, limit: float = 30.0) -> Any:
    """Run ``scenario(server_url)`` against a fresh server, bounded by ``limit`` seconds."""
    async def main() -> Any:
        async with call_server(tmp_path) as url:
            return await asyncio.wait_for(scenario(url), limit)
    return asyncio.run(main())


# ---------------------------------------------------------------------------
# URL


@pytest.mark.parametrize(("url", "kwargs", "expected"), [
    ("ws://h:8080", {}, "ws://h:8080/call"),
    ("ws://h:8080/", {"call_type": "sip"}, "ws://h:8080/call/sip"),
    ("http://h:8080", {"call_type": "webrtc"}, "ws://h:8080/call/webrtc"),
    ("https://h/pbx/", {}, "wss://h/pbx/call"),
    ("ws://h/call/sip", {}, "ws://h/call/sip"),
    ("ws://h/call", {"call_type": "websocket"}, "ws://h/call"),
    ("ws://h:8080/call", {"call_id": "dlg 1&x", "dump": False, "ping_interval": 5, "server_side_track": "bot"},
     "ws://h:8080/call?id=dlg+1%26x&dump=false&pingInterval=5&serverSideTrack=bot"),
    ("ws://h/call?token=abc&dump=false", {"dump": True}, "ws://h/call?token=abc&dump=true"),
])
def test_call_url(url: str, kwargs: dict[str, Any], expected: str) -> None:
    assert call_url(url, **kwargs) == expected


@pytest.mark.parametrize(("url", "kwargs", "message"), [
    ("ftp://h/call", {}, "expected a ws://, wss://, http:// or https:// URL, got 'ftp://h/call'"),
    ("ws://h/call/sip", {"call_type": "websocket"},
     "URL path '/call/sip' is a sip call path, but call_type is 'websocket'"),
    ("ws://h", {"call_type": "rtp"}, "call_type must be websocket, sip or webrtc, not 'rtp'"),
    ("ws://h", {"ping_interval": -1}, "ping_interval must be >= 0 seconds, not -1"),
])
def test_call_url_refuses(url: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        call_url(url, **kwargs)
    assert str(info.value) == message


# ---------------------------------------------------------------------------
# Codecs: compositions of the core kernels, checked against them


def test_encoders_match_the_codec_kernels() -> None:
    pcm = tone(440, 16000, 0.1)
    assert AudioEncoder("pcm").encode(pcm) == pcm.astype("<i2").tobytes()
    assert AudioEncoder("PCMU").encode(pcm) == g711.ulaw_encode(Resampler(16000, 8000).process(pcm))
    assert AudioEncoder("pcma").encode(pcm) == g711.alaw_encode(Resampler(16000, 8000).process(pcm))
    # State carries across calls: two halves encode like the whole.
    enc, whole = AudioEncoder("g722"), G722Encoder().encode(pcm)
    assert enc.encode(pcm[:800]) + enc.encode(pcm[800:]) == whole
    down = AudioEncoder("pcmu")
    assert down.encode(pcm[:800]) + down.encode(pcm[800:]) == AudioEncoder("pcmu").encode(pcm)


def test_decoders_match_the_codec_kernels() -> None:
    pcm = tone(440, 16000, 0.1)
    raw = pcm.astype("<i2").tobytes()
    dec = AudioDecoder("pcm")
    got = np.concatenate([dec.decode(raw[:101]), dec.decode(raw[101:])])   # an odd split keeps the byte
    assert np.array_equal(got, pcm)
    ulaw = g711.ulaw_encode(Resampler(16000, 8000).process(pcm))
    assert np.array_equal(AudioDecoder("pcmu").decode(ulaw), Resampler(8000, 16000).process(g711.ulaw_decode(ulaw)))
    data = G722Encoder().encode(pcm)
    assert np.array_equal(AudioDecoder("g722").decode(data), G722Decoder().decode(data))


def test_codec_errors() -> None:
    with pytest.raises(ValueError) as info:
        AudioEncoder("opus")
    assert str(info.value) == "codec must be one of pcm, pcmu, pcma, g722, not 'opus'"
    with pytest.raises(ValueError) as info:
        AudioEncoder("g722").encode(np.zeros(3, dtype=np.int16))
    assert str(info.value) == "g722 encodes an even number of 16 kHz samples, got 3"


# ---------------------------------------------------------------------------
# Against the server


def test_invite_answers_with_a_typed_event_and_the_query_parameters_apply(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        async with connect(url, call_id="call-1", dump=True, server_side_track="bot") as client:
            assert client.url == f"{url}/call?id=call-1&dump=true&serverSideTrack=bot"
            await client.invite(CallOption(codec="pcm"))
            answer = await client.wait_for(AnswerEvent)
            assert isinstance(answer, AnswerEvent)
            assert answer.track_id == "call-1"
            assert client.codec == "pcm"
            await client.tts("hi", play_id="p")
            start = await client.wait_for("trackStart")
            assert isinstance(start, TrackStartEvent)
            assert (start.track_id, start.play_id) == ("bot", "p")
        assert client.closed
    run(scenario, tmp_path)
    assert (tmp_path / "dumps" / "call-1.jsonl").is_file()


def test_dump_false_writes_no_dump(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        async with connect(url, call_id="quiet", dump=False) as client:
            await client.invite({"codec": "pcm"})
            await client.wait_for(AnswerEvent)
    run(scenario, tmp_path)
    assert not (tmp_path / "dumps" / "quiet.jsonl").exists()


def test_ping_interval_brings_ping_events(tmp_path: Path) -> None:
    async def scenario(url: str) -> PingEvent:
        async with connect(url, dump=False, ping_interval=1) as client:
            return await client.wait_for(PingEvent, timeout=5)
    assert isinstance(run(scenario, tmp_path), PingEvent)


def test_tts_track_start_audio_frames_and_track_end(tmp_path: Path) -> None:
    async def scenario(url: str) -> tuple[TrackEndEvent, list[bytes], CallClient]:
        async with connect(url, dump=False) as client:
            await client.invite({"codec": "pcm"})
            await client.wait_for(AnswerEvent)
            await client.tts("Hello there, how are you today?", play_id="greeting")
            start = await client.wait_for(TrackStartEvent)
            first = await client.recv_audio(timeout=5)
            end = await client.wait_for(TrackEndEvent, predicate=lambda e: e.play_id == "greeting")
            assert start.play_id == "greeting"
            await client.hangup()
            await client.wait_for(HangupEvent)
            await client.wait_closed(5)      # every frame sent before the hangup event has arrived
            return end, [first, *client.drain_audio()], client
    end, frames, client = run(scenario, tmp_path)
    assert all(len(f) == 640 for f in frames)           # 20 ms of s16le at 16 kHz
    assert abs(len(frames) * 20 - end.duration) <= 40
    speech = AudioDecoder("pcm").decode(b"".join(frames)).astype(np.float64)
    assert np.sqrt(np.mean(speech**2)) > 300             # speech, not silence
    assert client.dropped_audio == 0


def test_wait_for_predicate_and_timeout(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        async with connect(url, dump=False) as client:
            await client.invite({"codec": "pcm"})
            await client.wait_for(AnswerEvent)
            await client.tts("one", play_id="a")
            await client.tts("two", play_id="b")     # replaces track a: a ends, then b plays
            end_b = await client.wait_for(TrackEndEvent, predicate=lambda e: e.play_id == "b")
            assert end_b.play_id == "b"
            # Track a's end arrived first and stayed pending for this wait.
            end_a = await client.wait_for(TrackEndEvent, predicate=lambda e: e.play_id == "a", timeout=0)
            assert end_a.play_id == "a"
            began = time.monotonic()
            with pytest.raises(TimeoutError):
                await client.wait_for(TrackEndEvent, timeout=0.2)
            assert time.monotonic() - began >= 0.19
            with pytest.raises(TimeoutError):
                await client.wait_for("answer", predicate=lambda e: False, timeout=0.05)
            with pytest.raises(TypeError):
                await client.wait_for(42, timeout=0)  # type: ignore[call-overload]
    run(scenario, tmp_path)


def test_events_received_before_a_wait_are_not_lost(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        async with connect(url, dump=False) as client:
            await client.invite({"codec": "pcm"})
            await client.tts("Hello", play_id="x")
            # Wait for the last event first: answer, two metrics and trackStart arrive meanwhile
            # (the track starts when its audio reaches the playout queue: it races the metrics).
            end = await client.wait_for(TrackEndEvent)
            names = [event_name(e) for e in client.pending]
            assert names[0] == "answer" and sorted(names[1:]) == ["metrics", "metrics", "trackStart"]
            start = await client.wait_for(TrackStartEvent, timeout=0)
            assert start.play_id == "x"
            answer = await client.wait_for(AnswerEvent, timeout=0)
            metrics = [await client.next_event(timeout=0), await client.next_event(timeout=0)]
            assert all(isinstance(m, MetricsEvent) for m in metrics)
            assert list(client.pending) == []
            assert [event_name(e) for e in client.history] == [*names, "trackEnd"]
            assert client.history[-1] is end and answer in client.history and start in client.history
            # Iteration gives what no wait took, in order, then ends when the call is closed.
            await client.tts("Bye", play_id="y")
            await client.wait_for(TrackEndEvent, predicate=lambda e: e.play_id == "y")
            await client.hangup()
            seen = [event_name(e) async for e in client.events()]
            assert sorted(seen[:-1]) == ["metrics", "metrics", "trackStart"] and seen[-1] == "hangup"
            assert client.closed
    run(scenario, tmp_path)


def test_a_predicate_that_raises_fails_its_wait_only(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        async with connect(url, dump=False) as client:
            broken = asyncio.create_task(client.wait_for(AnswerEvent, predicate=lambda e: 1 // 0 > 0))
            await asyncio.sleep(0)
            await client.invite({"codec": "pcm"})
            with pytest.raises(ZeroDivisionError):
                await broken
            assert isinstance(await client.wait_for(AnswerEvent), AnswerEvent)   # it stayed pending
            await client.tts("ok")
            assert isinstance(await client.wait_for(TrackStartEvent), TrackStartEvent)
    run(scenario, tmp_path)


def test_a_wait_for_takes_precedence_over_an_iterator(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        async with connect(url, dump=False) as client:
            iterated: list[str] = []

            async def iterate() -> None:
                async for event in client.events():
                    iterated.append(event_name(event))

            task = asyncio.create_task(iterate())
            await asyncio.sleep(0)                   # the iterator waits first
            waiting = asyncio.create_task(client.wait_for(AnswerEvent))
            await asyncio.sleep(0)
            await client.invite({"codec": "pcm"})
            assert isinstance(await waiting, AnswerEvent)
            await client.hangup()
            await task
            assert iterated == ["hangup"]
    run(scenario, tmp_path)


def test_an_event_handed_to_a_wait_cancelled_meanwhile_goes_back_to_pending(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        async with connect(url, dump=False) as client:
            waiting = asyncio.create_task(client.wait_for(PingEvent, timeout=None))
            await asyncio.sleep(0)                   # the wait is registered
            ping = PingEvent(timestamp=7)
            client._deliver(ping)                    # handed over: the task has not resumed yet...
            waiting.cancel()                         # ...when it is cancelled
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert list(client.pending) == [ping]
            assert await client.wait_for(PingEvent, timeout=0) is ping
    run(scenario, tmp_path)


def test_malformed_commands_give_error_events_and_the_call_goes_on(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        async with connect(url, dump=False) as client:
            await client.send_raw('{"command": "dance"}')
            error = await client.wait_for(ErrorEvent)
            assert (error.sender, error.error) == ("command", 'unknown command "dance"')
            await client.send_raw("{not json")
            error = await client.wait_for(ErrorEvent)
            assert error.sender == "command"
            assert error.error.startswith("invalid JSON: ")
            await client.invite({"codec": "pcm"})
            assert isinstance(await client.wait_for(AnswerEvent), AnswerEvent)
    run(scenario, tmp_path)


def test_option_dicts_are_checked_before_sending() -> None:
    from pbx.client import _option
    from pbx.errors import ProtocolError

    with pytest.raises(ProtocolError) as info:
        _option(CallOption, {"vad": {"speechPadding": "x"}}, "invite.option")
    assert str(info.value) == "invite.option.vad.speechPadding: expected number, got string"


def test_hangup_gives_the_hangup_event_and_closes_the_client(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        async with connect(url, dump=False) as client:
            await client.invite({"codec": "pcm", "caller": "sip:alice@example.com"})
            await client.wait_for(AnswerEvent)
            await client.hangup(reason="done", initiator="caller")
            hangup = await client.wait_for(HangupEvent)
            assert (hangup.reason, hangup.initiator) == ("done", "caller")
            assert hangup.from_ is not None and hangup.from_.username == "alice"
            await client.wait_closed(5)
            assert client.closed
            assert client.close_code == 1000
            with pytest.raises(ClientClosed):
                await client.wait_for(AnswerEvent)
            with pytest.raises(ClientClosed):
                await client.tts("too late")
            with pytest.raises(ClientClosed):
                await client.recv_audio()
            assert [f async for f in client.audio()] == []
    run(scenario, tmp_path)


def test_stream_pcm_arrives_exactly_and_in_real_time(tmp_path: Path) -> None:
    pcm = espeak_speech(22050, text=HANG_UP)

    async def scenario(url: str) -> tuple[int, float]:
        async with connect(url, dump=False) as client:
            await client.invite({"codec": "pcm", "recorder": {"recorderFile": "in.wav"}})
            await client.wait_for(AnswerEvent)
            began = time.monotonic()
            count = await client.stream_pcm(pcm, rate=22050, frame_ms=40)
            elapsed = time.monotonic() - began
            await client.hangup()
            await client.wait_for(HangupEvent)
            return count, elapsed
    count, elapsed = run(scenario, tmp_path)
    sent = AudioEncoder("pcm")
    expected = np.frombuffer(sent.encode(_resampled(pcm, 22050)), dtype="<i2")
    assert count == -(-len(expected) // 640)
    assert elapsed >= (count - 1) * 0.040 * 0.95
    with wave.open(str(tmp_path / "recordings" / "in.wav"), "rb") as w:
        channels = w.getnchannels()
        recorded = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, channels)[:, 0]
    # The hangup came right after the last frame: what the server had not consumed yet (well under
    # 100 ms) is not recorded.  The rest is exactly what we sent.
    assert len(expected) - 1600 <= len(recorded)
    assert np.array_equal(recorded, expected[:len(recorded)])


def _resampled(pcm: np.ndarray, rate: int) -> np.ndarray:
    from pbx.client import _as_pcm
    return _as_pcm(pcm, rate)


def test_stream_pcm_checks_its_input(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        async with connect(url, dump=False) as client:
            with pytest.raises(RuntimeError):
                await client.stream_pcm(b"\0\0")        # no codec before invite
            await client.send_command(InviteCommand(option=CallOption(codec="g722")))
            assert client.codec == "g722"
            with pytest.raises(TypeError):
                await client.stream_pcm(np.zeros(4, dtype=np.float32))  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                await client.stream_pcm(b"\0\0\0")
            with pytest.raises(ValueError):
                await client.stream_pcm(b"\0\0", frame_ms=25)
            assert await client.stream_pcm(bytes(960), realtime=False) == 2   # 480 samples: two frames
    run(scenario, tmp_path)


def test_send_audio_with_vad_and_asr_gives_asr_final(tmp_path: Path) -> None:
    speech = espeak_speech(16000, text=STELLA)

    async def scenario(url: str) -> AsrFinalEvent:
        async with connect(url, dump=False) as client:
            await client.invite({"codec": "g722", "vad": {"silencePadding": 500},
                                 "asr": {"provider": "pocketsphinx", "extra": {"grammar": GRAMMAR}}})
            await client.wait_for(AnswerEvent)
            encoder = AudioEncoder("g722")
            audio = np.concatenate([speech, np.zeros(16000, dtype=np.int16)])
            audio = audio[:len(audio) // 320 * 320]
            for i in range(0, len(audio), 320 * 50):        # one second per message, as fast as it goes
                await client.send_audio(encoder.encode(audio[i:i + 320 * 50]))
            return await client.wait_for(AsrFinalEvent, timeout=15)
    assert run(scenario, tmp_path).text == STELLA


# ---------------------------------------------------------------------------
# What our server never sends: a scripted WebSocket server


async def scripted(messages: list[str | bytes], scenario: Callable[[str], Awaitable[Any]]) -> Any:
    async def handler(ws: ServerConnection) -> None:
        for message in messages:
            await ws.send(message)
        await ws.close()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        return await asyncio.wait_for(scenario(f"ws://127.0.0.1:{port}"), 10)


def test_malformed_events_are_kept_and_never_stop_the_client(caplog: pytest.LogCaptureFixture) -> None:
    answer = '{"event":"answer","trackId":"t","timestamp":1,"sdp":""}'
    messages: list[str | bytes] = [
        "{oops", '{"event":"answer","trackId":"t"}', "[1, 2]", '{"event":"future","x":1}', b"\x01\x02", answer,
    ]

    async def scenario(url: str) -> CallClient:
        client = await connect(url)
        await client.wait_closed(5)
        return client
    client = asyncio.run(scripted(messages, scenario))
    bad, missing, array, future, good = client.history
    assert isinstance(bad, MalformedEvent) and bad.name == "" and bad.data == {"text": "{oops"}
    assert bad.error.startswith("invalid JSON: ")
    assert isinstance(missing, MalformedEvent) and missing.name == "answer"
    assert missing.error == 'answer: missing required field "timestamp"'
    assert missing.data == {"event": "answer", "trackId": "t"}
    assert isinstance(array, MalformedEvent) and array.error == "event must be a JSON object"
    assert type(future) is UnknownEvent and future == UnknownEvent("future", {"event": "future", "x": 1})
    assert good == AnswerEvent(track_id="t", timestamp=1, sdp="")
    assert client.malformed_events == 3
    assert client.drain_audio() == [b"\x01\x02"]
    assert "malformed event" in caplog.text


def test_pending_history_and_audio_are_bounded() -> None:
    events = [f'{{"event":"ping","timestamp":{i}}}' for i in range(5)]
    frames = [bytes([i]) for i in range(4)]

    async def scenario(url: str) -> CallClient:
        from websockets.asyncio.client import connect as ws_connect
        client = CallClient(await ws_connect(url), url, history_size=4, pending_size=3, audio_frames=2)
        await client.wait_closed(5)
        return client
    client = asyncio.run(scripted([*events, *frames], scenario))
    assert [e.timestamp for e in client.pending if isinstance(e, PingEvent)] == [2, 3, 4]
    assert [e.timestamp for e in client.history if isinstance(e, PingEvent)] == [1, 2, 3, 4]
    assert client.dropped_events == 2
    assert client.drain_audio() == [b"\x02", b"\x03"]
    assert client.dropped_audio == 2


def test_commands_go_out_as_the_protocol_serialises_them() -> None:
    received: list[str] = []

    async def scenario(url: str) -> None:
        async with connect(url) as client:
            await client.invite({"codec": "g722", "vad": {"type": "silero"}})
            await client.accept()
            await client.reject("Busy Here", 486)
            await client.ringing(early_media=True, ringtone="http://x/r.wav", recorder={"recorderFile": "r.wav"})
            await client.tts("hi", play_id="p", speaker="s", auto_hangup=True, streaming=True, end_of_stream=True,
                             wait_input_timeout=3, option={"speed": 1.5}, base64=False)
            await client.play("http://x/a.wav", auto_hangup=True, wait_input_timeout=2.5)
            await client.interrupt(graceful=True)
            await client.refer("sip:a@x", "sip:b@x", {"timeout": 30})
            await client.mute("t1")
            await client.unmute()
            await client.hangup("bye", "user")

    async def main() -> None:
        async def handler(ws: ServerConnection) -> None:
            async for message in ws:
                received.append(str(message))

        async with serve(handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            await scenario(f"ws://127.0.0.1:{port}")
    asyncio.run(main())
    commands = [json.loads(m) for m in received]
    assert commands == [
        {"command": "invite", "option": {"codec": "g722", "vad": {"type": "silero"}}},
        {"command": "accept", "option": {}},
        {"command": "reject", "reason": "Busy Here", "code": 486},
        {"command": "ringing", "recorder": {"recorderFile": "r.wav"}, "earlyMedia": True,
         "ringtone": "http://x/r.wav"},
        {"command": "tts", "text": "hi", "speaker": "s", "playId": "p", "autoHangup": True, "streaming": True,
         "endOfStream": True, "waitInputTimeout": 3, "option": {"speed": 1.5}, "base64": False},
        {"command": "play", "url": "http://x/a.wav", "autoHangup": True, "waitInputTimeout": 2.5},
        {"command": "interrupt", "graceful": True},
        {"command": "refer", "caller": "sip:a@x", "callee": "sip:b@x", "options": {"timeout": 30}},
        {"command": "mute", "trackId": "t1"},
        {"command": "unmute"},
        {"command": "hangup", "reason": "bye", "initiator": "user"},
    ]
    assert all(parse_command(m) for m in received)


# ---------------------------------------------------------------------------
# The examples, end to end


async def run_example(url: str, script: str, *args: str, limit: float = 25.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / script), "--url", f"{url}/call", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(f"{script} did not finish in {limit} s: {out.decode()} {err.decode()}")
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_say_what_you_heard_prints_the_phrase(tmp_path: Path) -> None:
    grammar = tmp_path / "g.jsgf"
    grammar.write_text(GRAMMAR)
    code, out, err = run(lambda url: run_example(url, "say_what_you_heard.py", "--text", STELLA,
                                                 "--grammar", str(grammar)), tmp_path)
    assert (code, out) == (0, f"heard: {STELLA}\n"), err


def test_echo_bot_repeats_what_the_caller_said(tmp_path: Path) -> None:
    grammar = tmp_path / "g.jsgf"
    grammar.write_text(GRAMMAR)
    caller = tmp_path / "caller.wav"
    write_wav(caller, espeak_speech(16000, text=HANG_UP), 16000)
    code, out, err = run(lambda url: run_example(
        url, "echo_bot.py", "--caller-wav", str(caller), "--grammar", str(grammar), "--max-replies", "1",
        "--duration", "15"), tmp_path)
    assert code == 0, err
    assert out.splitlines() == [
        "bot: Hello! I am the echo bot. Say something and I will repeat it.",
        f"caller: {HANG_UP}",
        f"bot: You said: {HANG_UP}",
    ], err


def test_echo_bot_without_a_caller_greets_and_stops_after_its_duration(tmp_path: Path) -> None:
    code, out, err = run(lambda url: run_example(url, "echo_bot.py", "--duration", "1", "--greeting", "Hi"),
                         tmp_path)
    assert (code, out) == (0, "bot: Hi\n"), err
