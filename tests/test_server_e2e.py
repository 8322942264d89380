"""The call server end to end over real sockets: a /call session with local VAD, ASR and TTS, caller
audio streamed in real time, the recording, the REST endpoints, pings, dumps and mute.

Real-time streaming makes a few of these take seconds (the audio's own duration); the rest are quick.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from pbx.config import IceServer
from support.audio import espeak_speech, read_wav, tone
from tests.support.calls import (
    FRAME,
    RATE,
    Call,
    Event,
    RawWebSocket,
    http,
    running_server,
    stream_realtime,
)

PHRASE = "call stella and ask her to bring these things"
SHORT_PHRASE = "hang up the phone"
GRAMMAR = f"""#JSGF V1.0;
grammar commands;
public <command> = {PHRASE} | {SHORT_PHRASE} | call bob and tell him to stop ;
"""
ANSWER_TEXT = "Hello there, how can I help you?"
LONG_TEXT = "This is a much longer sentence, which the caller is going to interrupt somewhere in the middle."
ENERGY_FLOOR = 3400.0        # the engine's VAD floor (-55 dBFS as a mean square)


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def pcm(frames: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(frames), dtype="<i2").astype(np.int16)


def voiced_span_ms(audio: np.ndarray) -> tuple[int, int]:
    """Start and end (ms) of the 20 ms frames above the VAD's energy floor."""
    n = len(audio) // FRAME
    power = (audio[:n * FRAME].astype(np.float64).reshape(n, FRAME) ** 2).mean(axis=1)
    loud = np.flatnonzero(power >= ENERGY_FLOOR)
    return int(loud[0]) * 20, (int(loud[-1]) + 1) * 20


def invite(**option: Any) -> Event:
    return {"command": "invite", "option": {"codec": "pcm", **option}}


def tts_pcm(samples: np.ndarray, play_id: str) -> Event:
    return {"command": "tts", "text": base64.b64encode(samples.astype("<i2").tobytes()).decode(),
            "base64": True, "playId": play_id}


def test_a_call_with_vad_asr_tts_recording_listing_and_dump(tmp_path: Path) -> None:
    speech = espeak_speech(RATE, text=PHRASE)
    caller = np.concatenate([np.zeros(RATE // 2, np.int16), speech, np.zeros(RATE * 6 // 5, np.int16)])
    recordings = tmp_path / "recs"
    option = {
        "vad": {"type": "webrtc"},
        "asr": {"provider": "pocketsphinx", "language": "en-US", "extra": {"grammar": GRAMMAR}},
        "tts": {"provider": "espeak", "speaker": "en-us"},
        "recorder": {"recorderFile": "calls/e2e.wav"},
        "caller": "sip:alice@example.com", "callee": "sip:bot@example.com",
        "sip": {"username": "alice", "password": "sip-SECRET"},
        "extra": {"customer": "c-42", "apiKey": "extra-SECRET"},
    }

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with running_server(tmp_path, recordings_dir=recordings) as (_, address):
            async with Call.open(address, "id=e2e&pingInterval=0") as call:
                await call.send(invite(**option))
                out["answer"] = await call.wait_event("answer")
                out["listed"] = await http(address, "GET", "/call/lists")

                # The caller speaks, in real time.
                start = call.mark()
                await stream_realtime(call, caller)
                out["final"] = await call.wait_event("asrFinal", start, timeout=5.0)
                out["vad"] = [e for e in call.events(start) if e["event"] in ("speaking", "silence")]
                out["asr"] = [e for e in call.events(start) if e["event"] in ("asrDelta", "asrFinal", "metrics")]

                # The bot answers: a TTS track, every frame of it.
                start = call.mark()
                await call.send({"command": "tts", "text": ANSWER_TEXT, "playId": "answer-1"})
                out["p1_start"] = await call.wait_event("trackStart", start, playId="answer-1")
                out["p1_end"] = await call.wait_event("trackEnd", start, timeout=10.0, playId="answer-1")
                after_start = call.position(out["p1_start"])
                # The frame with the last samples follows trackEnd.
                await call.wait(lambda: len(call.frames(after_start)) * 20 >= out["p1_end"]["duration"])
                out["p1_events"] = call.events(start)
                out["p1_frames"] = call.frames(after_start)

                # A second TTS, interrupted mid-sentence.
                start = call.mark()
                await call.send({"command": "tts", "text": LONG_TEXT, "playId": "answer-2"})
                started = await call.wait_event("trackStart", start, playId="answer-2")
                await call.wait(lambda: len(call.frames(call.position(started))) >= 40)   # 0.8 s played
                await call.send({"command": "interrupt"})
                out["p2_end"] = await call.wait_event("trackEnd", start, playId="answer-2")
                await call.wait(lambda: len(call.frames(call.position(started))) * 20 >= out["p2_end"]["duration"])
                out["p2_events"] = [e for e in call.events(start) if e["event"] != "metrics"]
                out["p2_frames"] = call.frames(call.position(started))

                start = call.mark()
                await call.send({"command": "hangup", "reason": "done"})
                out["hangup"] = await call.wait_event("hangup", start)
                closed = await call.wait_closed()
                out["close_code"] = closed.rcvd.code if closed.rcvd else None
                out["after_hangup"] = call.events(call.position(out["hangup"]) + 1)
                out["all_frames"] = call.frames()
            out["listed_after"] = await http(address, "GET", "/call/lists")
        return out

    out = asyncio.run(run())

    # GET /call/lists while the call lives: the option as sent, secrets masked.
    status, content_type, body = out["listed"]
    assert (status, content_type) == (200, "application/json")
    [listed] = body["calls"]
    assert listed["id"] == "e2e" and listed["call_type"] == "websocket"
    datetime.fromisoformat(listed["created_at"])
    assert listed["option"]["extra"] == {"customer": "c-42", "apiKey": "***"}
    assert listed["option"]["sip"] == {"username": "alice", "password": "***"}
    assert listed["option"]["asr"]["extra"] == {"grammar": GRAMMAR}
    assert "SECRET" not in json.dumps(body)
    assert out["listed_after"] == (200, "application/json", {"calls": []})

    # The recording: the caller on the left, what we played on the right, sample for sample.
    hangup = out["hangup"]
    start_ms, answer_ms, end_ms = (iso_ms(hangup[k]) for k in ("startTime", "answerTime", "hangupTime"))
    recorded, rate = read_wav(recordings / "calls" / "e2e.wav")
    assert rate == RATE and recorded.shape[1] == 2
    assert abs(len(recorded) * 1000 // RATE - (end_ms - answer_ms)) < 100
    left, right = recorded[:, 0], recorded[:, 1]
    assert np.array_equal(left[left != 0], caller[caller != 0])
    played = pcm(out["all_frames"])
    assert np.array_equal(right[right != 0], played[played != 0])
    assert np.flatnonzero(left)[-1] < np.flatnonzero(right)[0]   # the caller spoke, then the bot

    # VAD: speaking and silence alternate (the default 100 ms silencePadding also ends speech at the pauses
    # between words), from the phrase's onset to its end. The left channel shows when the engine took the
    # caller's audio (the recording starts with the leg, within a frame): the events must say the same.
    onset_ms, offset_ms = (out["answer"]["timestamp"] + t for t in voiced_span_ms(left))
    names = [e["event"] for e in out["vad"]]
    assert names[::2] == ["speaking"] * (len(names) // 2) and names[1::2] == ["silence"] * (len(names) // 2)
    assert 2 <= len(names) <= 8
    speaking, silence = out["vad"][0], out["vad"][-1]
    assert abs(speaking["startTime"] - onset_ms) <= 60
    assert abs(silence["startTime"] - offset_ms) <= 60
    assert silence["duration"] == silence["timestamp"] - silence["startTime"] >= 100
    # ASR: partials that grow along the phrase, then the phrase, timed like the speech (the recogniser
    # ends the last word a little before the VAD's offset: its final fricative).
    final = out["final"]
    assert final["text"] == PHRASE and final["index"] == 1 and final["trackId"] == "e2e"
    assert abs(final["startTime"] - speaking["startTime"]) <= 100
    assert -300 <= final["endTime"] - silence["startTime"] <= 100
    deltas = [e for e in out["asr"] if e["event"] == "asrDelta"]
    assert deltas and all(PHRASE.startswith(d["text"]) and d["index"] == 1 for d in deltas)
    assert [e["event"] for e in out["asr"]][-2:] == ["asrFinal", "metrics"]
    assert out["asr"][-1]["key"] == "completed.asr.pocketsphinx"
    assert next(e["key"] for e in out["asr"] if e["event"] == "metrics") == "ttfb.asr.pocketsphinx"

    # TTS: the frames of the track add up to its trackEnd duration.
    # (ttfb metrics and trackStart race: the track starts when its item reaches the playout queue's head.)
    assert sorted(e["event"] for e in out["p1_events"]) == ["metrics", "metrics", "trackEnd", "trackStart"]
    assert out["p1_events"][-1]["event"] == "trackEnd"
    assert [e["key"] for e in out["p1_events"] if e["event"] == "metrics"] == ["ttfb.tts.espeak",
                                                                              "completed.tts.espeak"]
    p1_end = out["p1_end"]
    assert p1_end["trackId"] == "serverSideTrack" and p1_end["playId"] == "answer-1"
    assert all(len(f) == 2 * FRAME for f in out["p1_frames"])
    assert abs(len(out["p1_frames"]) * 20 - p1_end["duration"]) <= 40
    assert p1_end["duration"] > 1000
    assert np.sqrt(np.mean(pcm(out["p1_frames"]).astype(np.float64) ** 2)) > 500   # speech, not silence

    # Interrupt: interruption then trackEnd, mid-sentence.
    assert [e["event"] for e in out["p2_events"]] == ["trackStart", "interruption", "trackEnd"]
    interruption, p2_end = out["p2_events"][1:]
    assert interruption["playId"] == "answer-2" and interruption["subtitle"] == LONG_TEXT
    assert 0 < interruption["position"] < len(LONG_TEXT.split()) - 1
    assert 800 <= interruption["current"] < interruption["totalDuration"]
    assert 800 <= p2_end["duration"] < interruption["totalDuration"]
    assert abs(len(out["p2_frames"]) * 20 - p2_end["duration"]) <= 40

    # Hangup: reason echoed, ISO 8601 times in order, from/to/extra of the call.
    assert (hangup["reason"], hangup["initiator"]) == ("done", "user")
    assert start_ms <= answer_ms <= end_ms
    assert abs(answer_ms - out["answer"]["timestamp"]) <= 1
    assert end_ms - answer_ms > 5000
    assert hangup["from"] == {"username": "alice", "realm": "example.com", "source": "sip:alice@example.com"}
    assert hangup["to"] == {"username": "bot", "realm": "example.com", "source": "sip:bot@example.com"}
    assert hangup["extra"] == option["extra"]
    assert out["after_hangup"] == [] and out["close_code"] == 1000

    # The dump: every command and event as JSON lines, secrets masked.
    dump = (tmp_path / "dumps" / "e2e.jsonl").read_text(encoding="utf-8")
    assert "SECRET" not in dump
    lines = [json.loads(line) for line in dump.splitlines()]
    commands = [line["command"]["command"] for line in lines if "command" in line]
    events = [line["event"]["event"] for line in lines if "event" in line]
    assert commands == ["invite", "tts", "tts", "interrupt", "hangup"]
    assert lines[0]["command"]["option"]["sip"]["password"] == "***"
    assert events[0] == "answer" and events[-1] == "hangup"
    assert {"speaking", "silence", "asrFinal", "trackStart", "trackEnd", "interruption"} <= set(events)
    assert all(isinstance(line["ts"], int) for line in lines)


def test_kill_ice_servers_and_health(tmp_path: Path) -> None:
    ice = [IceServer(["stun:stun.example.org:3478"]),
           IceServer(["turn:turn.example.org:3478"], "user", "pass")]

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with running_server(tmp_path, ice_servers=ice) as (server, address):
            out["ice"] = await http(address, "GET", "/iceservers")
            out["not_found"] = await http(address, "GET", "/nope")
            out["not_allowed"] = await http(address, "DELETE", "/call/lists")
            out["no_upgrade"] = await http(address, "GET", "/call")
            async with Call.open(address, "id=to-kill&pingInterval=0&dump=false") as call:
                await call.send(invite())
                await call.wait_event("answer")
                out["health"] = await http(address, "GET", "/health")
                out["unknown"] = await http(address, "POST", "/call/kill/nobody")
                out["kill"] = await http(address, "POST", "/call/kill/to-kill")
                out["hangup"] = await call.wait_event("hangup")
                closed = await call.wait_closed()
                out["close_code"] = closed.rcvd.code if closed.rcvd else None
            out["again"] = await http(address, "POST", "/call/kill/to-kill")
            out["health_after"] = await http(address, "GET", "/health")
            out["sessions"] = dict(server.sessions)
        return out

    out = asyncio.run(run())
    assert out["ice"] == (200, "application/json", [
        {"urls": ["stun:stun.example.org:3478"], "username": None, "credential": None},
        {"urls": ["turn:turn.example.org:3478"], "username": "user", "credential": "pass"},
    ])
    status, _, health = out["health"]
    assert status == 200 and health["status"] == "ok" and health["calls"] == 1 and health["legs"] == 1
    assert out["health_after"][2]["calls"] == 0 and out["health_after"][2]["legs"] == 0
    assert out["unknown"] == (404, "application/json", {"error": "no call with id 'nobody'"})
    assert out["kill"] == (200, "application/json", True)
    assert (out["hangup"]["reason"], out["hangup"]["initiator"]) == ("killed", "system")
    assert out["close_code"] == 1000
    assert out["again"][0] == 404 and out["sessions"] == {}
    assert list((tmp_path / "dumps").iterdir()) == []    # dump=false writes nothing
    assert out["not_found"] == (404, "application/json", {"error": "no such endpoint: /nope"})
    assert out["not_allowed"] == (405, "application/json", {"error": "DELETE not allowed on /call/lists"})
    assert out["no_upgrade"] == (426, "application/json", {"error": "/call is a WebSocket endpoint"})


def test_ping_events_arrive_at_the_ping_interval(tmp_path: Path) -> None:
    """pingInterval is whole seconds in the spec; the server takes fractions, which keeps this short."""
    async def run() -> list[Event]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, "id=pinged&pingInterval=0.2&dump=false") as call:
            await call.send(invite())
            await call.wait(lambda: len(call.events(pings=True)) >= 6, timeout=3.0)   # answer + 5 pings
            await call.send({"command": "hangup"})
            await call.wait_event("hangup")
            return call.events(pings=True)

    events = asyncio.run(run())
    pings = [e for e in events if e["event"] == "ping"]
    assert len(pings) >= 5
    gaps = np.diff([p["timestamp"] for p in pings])
    assert np.all((gaps >= 150) & (gaps <= 400)) and abs(np.mean(gaps) - 200) < 40, gaps
    assert events[-1]["event"] == "hangup"
    assert all(set(p) == {"event", "timestamp"} for p in pings)


def test_a_client_that_stops_answering_pings_is_disconnected(tmp_path: Path) -> None:
    async def run() -> tuple[list[tuple[int, bytes]], int, Any]:
        async with running_server(tmp_path) as (server, address):
            raw = await RawWebSocket.connect(address, "/call?id=silent&pingInterval=0.2")
            try:
                await raw.send_text(json.dumps(invite()))
                frames = []
                while True:
                    opcode, payload = await raw.read_frame(timeout=3.0)
                    frames.append((opcode, payload))
                    if opcode == 0x8:
                        break
                listed = await http(address, "GET", "/call/lists")
                assert server.sessions == {}
            finally:
                raw.close()
            return frames, raw.pings, listed

    frames, pings, listed = asyncio.run(run())
    texts = [json.loads(payload) for opcode, payload in frames if opcode == 0x1]
    # Two pings go unanswered; at the third interval the call ends: the hangup event, then the close.
    assert pings == 2
    assert [e["event"] for e in texts] == ["answer", "ping", "ping", "hangup"]
    assert (texts[-1]["reason"], texts[-1]["initiator"]) == ("ping_timeout", "system")
    assert 550 <= texts[-1]["timestamp"] - texts[0]["timestamp"] <= 1000    # three intervals of 200 ms
    close = frames[-1][1]
    assert int.from_bytes(close[:2], "big") == 1011 and close[2:] == b"ping timeout"
    assert listed == (200, "application/json", {"calls": []})
    dump = [json.loads(line) for line in (tmp_path / "dumps" / "silent.jsonl").read_text().splitlines()]
    hangup = dump[-1]["event"]
    assert (hangup["event"], hangup["reason"], hangup["initiator"]) == ("hangup", "ping_timeout", "system")


def test_muting_the_server_track_sends_silence_and_keeps_the_clock(tmp_path: Path) -> None:
    sound = tone(440, RATE, 0.3, amplitude=0.3)

    async def play(call: Call, play_id: str) -> tuple[Event, np.ndarray]:
        start = call.mark()
        await call.send(tts_pcm(sound, play_id))
        end = await call.wait_event("trackEnd", start, playId=play_id)
        await call.wait(lambda: len(call.frames(start)) >= 15)   # the last frame follows trackEnd
        return end, pcm(call.frames(start))

    async def run() -> list[tuple[Event, np.ndarray]]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, "id=muted&pingInterval=0&dump=false") as call:
            await call.send(invite())
            await call.wait_event("answer")
            heard = [await play(call, "loud")]
            await call.send({"command": "mute", "trackId": "serverSideTrack"})
            heard.append(await play(call, "muted"))
            await call.send({"command": "unmute", "trackId": "serverSideTrack"})
            heard.append(await play(call, "loud-again"))
            errors = [e for e in call.events() if e["event"] == "error"]
            assert errors == []
            return heard

    (end1, loud), (end2, muted), (end3, again) = asyncio.run(run())
    assert end1["duration"] == end2["duration"] == end3["duration"] == 300
    assert np.array_equal(loud[:len(sound)], sound) and not loud[len(sound):].any()
    assert len(muted) == len(loud) == 15 * FRAME and not muted.any()   # the frames still go out, silent
    assert np.array_equal(again, loud)


def test_muting_the_caller_track_hides_speech_from_vad_and_recording(tmp_path: Path) -> None:
    speech = espeak_speech(RATE, text=SHORT_PHRASE)
    burst = np.concatenate([speech, np.zeros(RATE * 2 // 5, np.int16)])

    async def run() -> tuple[list[Event], list[Event]]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, "id=deaf&pingInterval=0&dump=false") as call:
            await call.send(invite(vad={"type": "webrtc"}, recorder={"recorderFile": "deaf.wav"}))
            await call.wait_event("answer")
            await call.send({"command": "mute", "trackId": "deaf"})
            start = call.mark()
            await stream_realtime(call, burst)
            await asyncio.sleep(0.3)   # the engine takes the last 100 ms sent ahead, muted
            while_muted = call.events(start)
            await call.send({"command": "unmute", "trackId": "deaf"})
            start = call.mark()
            await stream_realtime(call, burst)
            await call.wait_event("silence", start)
            after = call.events(start)
            await call.send({"command": "hangup"})
            await call.wait_event("hangup", start)
            return while_muted, after

    while_muted, after = asyncio.run(run())
    assert while_muted == []
    assert [e["event"] for e in after] == ["speaking", "silence"]
    recorded, _ = read_wav(tmp_path / "recordings" / "deaf.wav")
    left = recorded[:, 0]
    assert np.array_equal(left[left != 0], speech[speech != 0])    # only the unmuted burst was heard


def test_the_recording_is_complete_when_the_hangup_event_arrives(tmp_path: Path) -> None:
    """The server creates and finishes the file off the event loop, but before the hangup event: a
    client that reads the recording on hangup gets all of it, including the part after the last flush."""
    caller = tone(440, RATE, 1.5, amplitude=0.3)

    async def run() -> tuple[Event, Event, np.ndarray, int]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, "id=whole&pingInterval=0&dump=false") as call:
            await call.send(invite(recorder={"recorderFile": "whole.wav", "ptime": 1000}))
            answer = await call.wait_event("answer")
            await stream_realtime(call, caller)
            await asyncio.sleep(0.2)   # the engine has taken the last frame sent
            await call.send({"command": "hangup"})
            hangup = await call.wait_event("hangup")
            recorded, rate = read_wav(tmp_path / "recordings" / "whole.wav")   # the server still runs
            return answer, hangup, recorded, rate

    answer, hangup, recorded, rate = asyncio.run(run())
    assert rate == RATE and recorded.shape[1] == 2
    call_ms = iso_ms(hangup["hangupTime"]) - iso_ms(hangup["answerTime"])
    assert call_ms >= 1500
    # 1000 ms flushes: without the final flush before the event the file would hold 1000 ms
    assert abs(len(recorded) * 1000 // RATE - call_ms) < 100
    left = recorded[:, 0]
    assert np.array_equal(left[left != 0], caller[caller != 0])
    assert answer["trackId"] == "whole"
