"""Malformed and hostile input on /call: each gets its ``error`` event (sender naming the component)
and the same socket keeps working, shown by a probe command's normal reply after each.

What the WebSocket layer itself refuses ends the connection, as RFC 6455 requires: a message over
``max_message_bytes`` is failed by ``websockets`` with close code 1009 (message too big), a text
frame that is not UTF-8 with 1007. No frame may follow a close frame, so such a client gets no
``hangup`` event; the session still ends the usual way (one ``hangup``, reason ``client_disconnect``,
written to the dump) and leaves ``/call/lists``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support.audio import espeak_speech, read_wav
from tests.support.calls import Call, Event, RawWebSocket, http, probe, running_server, stream_realtime

CALL_ID = "bad"
Expect = tuple[str, str | re.Pattern[str]]     # (sender, exact message or pattern)


def invite(**option: Any) -> str:
    return json.dumps({"command": "invite", "option": {"codec": "pcm", **option}})


def command(**fields: Any) -> str:
    return json.dumps(fields)


def nested(depth: int) -> str:
    return '{"command": "tts", "text": "hi", "x": ' + "[" * depth + "]" * depth + "}"


# Each message is sent to an answered call; it must give exactly these errors, then the probe its reply.
# Where the command creates a track before its failure shows (synthesis, loading), the fourth item is
# that track's playId: it also starts and ends (duration 0) by itself.
IN_CALL: list[tuple[str, str, list[Expect]] | tuple[str, str, list[Expect], str | None]] = [
    ("truncated JSON", "{", [("command", "invalid JSON: Expecting property name enclosed in double quotes "
                                         "at line 1 column 2")]),
    ("not JSON", "hello", [("command", "invalid JSON: Expecting value at line 1 column 1")]),
    ("empty message", "", [("command", "invalid JSON: Expecting value at line 1 column 1")]),
    ("array", "[1, 2]", [("command", "command must be a JSON object")]),
    ("string", '"invite"', [("command", "command must be a JSON object")]),
    ("null", "null", [("command", "command must be a JSON object")]),
    ("no command", '{"option": {}}', [("command", 'missing "command" field')]),
    ("command not a string", '{"command": 42}', [("command", '"command" field must be a string, got number')]),
    ("unknown command", command(command="dance"), [("command", 'unknown command "dance"')]),
    ("command in the wrong case", command(command="TTS", text="hi"), [("command", 'unknown command "TTS"')]),
    ("missing required field", command(command="tts"), [("command", 'tts: missing required field "text"')]),
    ("required field null", command(command="play", url=None), [("command", "play.url: expected string, got null")]),
    ("refer without callee", command(command="refer", caller="sip:a@b"),
     [("command", 'refer: missing required field "callee"')]),
    ("number for a string", command(command="tts", text=5), [("command", "tts.text: expected string, got number")]),
    ("string for a boolean", command(command="tts", text="hi", autoHangup="yes"),
     [("command", "tts.autoHangup: expected boolean, got string")]),
    ("number for a boolean", command(command="interrupt", graceful=1),
     [("command", "interrupt.graceful: expected boolean, got number")]),
    ("object for a string", command(command="mute", trackId={"id": 1}),
     [("command", "mute.trackId: expected string, got object")]),
    ("string for an option", command(command="tts", text="hi", option="loud"),
     [("command", "tts.option: expected object, got string")]),
    ("fraction for an integer", command(command="tts", text="hi", option={"volume": 5.5}),
     [("command", "tts.option.volume: expected integer, got 5.5")]),
    ("NaN", '{"command": "tts", "text": "hi", "waitInputTimeout": NaN}',
     [("command", "invalid JSON: NaN is not allowed")]),
    ("number out of range", '{"command": "tts", "text": "hi", "waitInputTimeout": 1e999}',
     [("command", "invalid JSON: number 1e999 is out of range")]),
    ("alias and field together", command(command="tts", text="hi", endOfStream=True, end_of_stream=True),
     [("command", 'tts: "endOfStream" and its alias "end_of_stream" both given')]),
    ("lone surrogate", '{"command": "tts", "text": "\\ud800"}',
     [("command", "invalid JSON: unpaired surrogate in a string")]),
    ("nested 1000 deep", nested(1000), [("command", "invalid JSON: nested deeper than 64 levels")]),
    ("nested 100000 deep", nested(100_000), [("command", "invalid JSON: nested deeper than 64 levels")]),
    ("huge command name", command(command="x" * 500_000), [("command", 'unknown command "' + "x" * 57 + '..."')]),
    ("invite again", invite(), [("command", "invite: the call is already answered")]),
    ("accept after invite", command(command="accept", option={}),
     [("command", "accept: the call is already answered")]),
    ("volume out of range", command(command="tts", text="hi", option={"volume": 11}),
     [("tts", "volume must be 1-10, got 11")]),
    ("samplerate zero", command(command="tts", text="AAAA", base64=True, option={"samplerate": 0}),
     [("tts", "samplerate must be 8000-192000 Hz, got 0")]),
    ("samplerate absurd", command(command="tts", text="AAAA", base64=True, option={"samplerate": 2**53 - 1}),
     [("tts", f"samplerate must be 8000-192000 Hz, got {2**53 - 1}")]),
    ("unknown tts provider", command(command="tts", text="hi", option={"provider": "nope"}),
     [("tts", "unknown tts provider 'nope'")]),
    ("unknown espeak voice", command(command="tts", text="hi", speaker="no-such-voice"),
     [("tts", "unknown espeak voice 'no-such-voice'")], None),
    ("bad base64", command(command="tts", text="not base64!", base64=True),
     [("tts", "base64 text is not valid base64")]),
    ("play outside the media directory", command(command="play", url="/etc/passwd"),
     [("play", re.compile(r".*/etc/passwd.*outside.*|.*outside.*/etc/passwd.*"))], "/etc/passwd"),
    ("play a file URL outside", command(command="play", url="file:///etc/passwd"),
     [("play", re.compile(r".*/etc/passwd.*outside.*|.*outside.*/etc/passwd.*"))], "file:///etc/passwd"),
    ("play an unsupported scheme", command(command="play", url="ftp://example.com/a.wav"),
     [("play", re.compile(r".*ftp.*"))], "ftp://example.com/a.wav"),
    ("mute an unknown track", command(command="mute", trackId="nope"),
     [("command", f"mute: no track 'nope' (tracks: '{CALL_ID}', 'serverSideTrack')")]),
    ("ringing on /call", command(command="ringing"),
     [("command", "ringing is not supported on /call (WebSocket audio) calls; it applies to SIP calls on /call/sip")]),
]

# Each is the first command of a fresh session: the call is answered, the option's component reports.
AT_INVITE: list[tuple[str, str, list[Expect]]] = [
    ("vad time beyond the engine's int", invite(vad={"speechPadding": 2**53 - 1}),
     [("vad", "vad option out of range: value too large to convert to int")]),
    ("unknown vad type", invite(vad={"type": "fancy"}),
     [("vad", "unknown vad type 'fancy'; expected webrtc, silero or ten")]),
    ("recorder samplerate beyond int", invite(recorder={"recorderFile": "a.wav", "samplerate": 2**53 - 1}),
     [("recorder", "cannot record to a.wav: value too large to convert to int")]),
    ("recorder samplerate zero", invite(recorder={"recorderFile": "a.wav", "samplerate": 0}),
     [("recorder", "cannot record to a.wav: sample_rate must be between 1 and 384000 Hz, got 0")]),
    ("recorder ptime beyond int", invite(recorder={"recorderFile": "a.wav", "ptime": 2**53 - 1}),
     [("recorder", "cannot record to a.wav: value too large to convert to int")]),
    ("recorder escaping its directory", invite(recorder={"recorderFile": "../../escape.wav"}),
     [("recorder", re.compile(r"recorderFile \.\./\.\./escape\.wav is outside the recordings directory .*"))]),
    ("unknown asr provider", invite(asr={"provider": "nope"}), [("asr", "unknown asr provider 'nope'")]),
    ("asr option the provider lacks", invite(asr={"provider": "pocketsphinx", "extra": {"grammer": "x"}}),
     [("asr", "pocketsphinx has no option 'grammer' (it takes: grammar, keywords)")]),
    ("asr grammar with an unknown word", invite(asr={"extra": {"grammar": "#JSGF V1.0;\ngrammar g;\n"
                                                                         "public <s> = call zzqxw ;\n"}}),
     [("asr", "pocketsphinx cannot use the grammar: The word 'zzqxw' is missing in the dictionary")]),
]


def summary(event: Event) -> tuple[str, str]:
    assert event["event"] == "error", event
    assert event["trackId"] == CALL_ID
    return event["sender"], event["error"]


def check(label: str, got: list[Event], expected: list[Expect]) -> None:
    errors = [summary(e) for e in got]
    assert len(errors) == len(expected), f"{label}: expected {expected}, got {errors}"
    for (sender, message), (want_sender, want) in zip(errors, expected, strict=True):
        assert sender == want_sender, f"{label}: {sender} != {want_sender}"
        if isinstance(want, re.Pattern):
            assert want.fullmatch(message), f"{label}: {message!r} !~ {want.pattern}"
        else:
            assert message == want, f"{label}: {message!r} != {want!r}"


async def probe_reply(call: Call, since: int, tag: str) -> list[Event]:
    """Send the probe; return what arrived from ``since`` up to its reply, the probe's own events left out."""
    await call.send(probe(tag))
    end = await call.wait_event("trackEnd", since, timeout=10.0, playId=tag)
    assert end["duration"] == 20
    return [e for e in call.events(since, call.position(end) + 1) if e.get("playId") != tag]


def test_each_malformed_command_gets_one_error_and_the_call_goes_on(tmp_path: Path) -> None:
    async def run() -> list[tuple[str, list[Event]]]:
        seen = []
        async with running_server(tmp_path) as (server, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0") as call:
            await call.send(invite())
            await call.wait_event("answer")
            for n, (label, message, _, *track) in enumerate(IN_CALL):
                start = call.mark()
                await call.send(message)
                if track:
                    await call.wait_event("trackEnd", start, playId=track[0])
                seen.append((label, await probe_reply(call, start, f"probe-{n}")))
            assert list(server.sessions) == [CALL_ID]
        return seen

    for (label, got), (_, _, expected, *track) in zip(asyncio.run(run()), IN_CALL, strict=True):
        if track:
            play_id = track[0]
            ended = [e for e in got if e["event"] != "error"]
            assert sorted((e["event"], e.get("playId")) for e in ended) == [("trackEnd", play_id),
                                                                          ("trackStart", play_id)], label
            assert ended[-1]["duration"] == 0 and got[-1] is ended[-1], label   # the error came first
            got = [e for e in got if e["event"] == "error"]
        check(label, got, expected)


@pytest.mark.parametrize(("label", "message", "expected"), AT_INVITE, ids=[c[0] for c in AT_INVITE])
def test_an_unusable_invite_option_is_an_error_of_its_component(
        tmp_path: Path, label: str, message: str, expected: list[Expect]) -> None:
    async def run() -> tuple[Event, list[Event]]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0&dump=false") as call:
            await call.send(message)
            answer = await call.wait_event("answer")
            return answer, await probe_reply(call, call.position(answer) + 1, "probe")

    answer, got = asyncio.run(run())
    assert answer["trackId"] == CALL_ID
    check(label, got, expected)
    assert not (tmp_path.parent / "escape.wav").exists()


def test_commands_and_audio_before_the_call_is_answered(tmp_path: Path) -> None:
    async def run() -> tuple[list[Event], Event]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0&dump=false") as call:
            await call.send(b"\x00" * 640)
            await call.send(command(command="tts", text="hi"))
            await call.send(command(command="mute"))
            await call.send(invite(codec="opus"))
            await call.send(command(command="dance"))   # a reply certain to come last
            await call.wait_event("error", error='unknown command "dance"')
            before = call.events()
            await call.send(invite())
            return before, await call.wait_event("answer")

    before, answer = asyncio.run(run())
    check("before answer", before, [
        ("media", "audio received before the call was answered (send invite or accept first)"),
        ("command", "tts: no call is answered yet (send invite or accept first)"),
        ("command", "mute: no call is answered yet"),
        ("command", "invite.option.codec: 'opus' is not a WebSocket codec; use pcm, pcmu, pcma or g722"),
        ("command", 'unknown command "dance"'),
    ])
    assert answer["trackId"] == CALL_ID


def test_odd_sized_audio_messages_keep_their_samples_in_order(tmp_path: Path) -> None:
    """``pcm`` audio cut into odd-sized messages (samples split across two) is no error: the server
    joins the halves. VAD hears the speech, and the recording's caller channel is the audio sent."""
    speech = espeak_speech(16000, text="hang up the phone")
    audio = np.concatenate([speech, np.zeros(8000, np.int16)])

    async def run() -> list[Event]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0&dump=false") as call:
            await call.send(invite(vad={"type": "webrtc"}, recorder={"recorderFile": "odd.wav"}))
            await call.wait_event("answer")
            await stream_realtime(call, audio, chunk_bytes=333)
            await call.wait_event("silence")
            await call.send(command(command="hangup"))
            await call.wait_event("hangup")
            return call.events()

    events = asyncio.run(run())
    names = [e["event"] for e in events]
    assert names[0] == "answer" and names[1] == "speaking" and names[-2:] == ["silence", "hangup"]
    assert set(names[1:-1]) == {"speaking", "silence"}     # no error
    recorded, _ = read_wav(tmp_path / "recordings" / "odd.wav")
    left = recorded[:, 0]
    assert np.array_equal(left[left != 0], audio[audio != 0])


def test_queueing_more_than_the_playout_holds_is_an_error_not_a_crash(tmp_path: Path) -> None:
    tiny = base64.b64encode(b"\x10\x00" * 160).decode()
    minute = base64.b64encode(np.full(16000 * 60, 100, dtype="<i2").tobytes()).decode()

    async def run() -> tuple[list[Event], list[Event]]:
        async with running_server(tmp_path, max_message_bytes=4 << 20) as (_, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0&dump=false", max_size=None) as call:
            await call.send(invite())
            await call.wait_event("answer")
            # 70 items for one streaming track: the playout queue holds 64.
            start = call.mark()
            for _ in range(70):
                await call.send(command(command="tts", text=tiny, base64=True, streaming=True, playId="flood"))
            await call.send(command(command="interrupt"))
            flood = await probe_reply(call, start, "probe-1")
            # Eleven minutes of audio for one track: the queue holds ten.
            start = call.mark()
            for _ in range(11):
                await call.send(command(command="tts", text=minute, base64=True, streaming=True, playId="long"))
            await call.send(command(command="interrupt"))
            long = await probe_reply(call, start, "probe-2")
        return flood, long

    flood, long = asyncio.run(run())
    # (trackStart only if a media tick came before the interrupt: it may not have.)
    check("flood", [e for e in flood if e["event"] == "error"], [("tts", "playout queue full: 64 items")] * 6)
    assert [e["event"] for e in flood if e["event"] not in ("error", "trackStart")] == ["interruption", "trackEnd"]
    check("long", [e for e in long if e["event"] == "error"],
          [("tts", "playout queue full: 9600000 + 960000 samples exceeds 9600000")])
    assert [e["event"] for e in long if e["event"] not in ("error", "trackStart")] == ["interruption", "trackEnd"]


def test_a_failing_tts_command_does_not_cut_the_track_that_plays(tmp_path: Path) -> None:
    """A tts with another playId replaces the live track, but only once it is accepted: one that
    fails its checks (bad base64, unknown provider, volume) leaves the playing track alone."""
    failing = [
        (command(command="tts", text="not base64!", base64=True, playId="x1"), "base64 text is not valid base64"),
        (command(command="tts", text="hi", playId="x2", option={"provider": "nope"}), "unknown tts provider 'nope'"),
        (command(command="tts", text="hi", playId="x3", option={"volume": 0}), "volume must be 1-10, got 0"),
    ]

    async def run() -> list[Event]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0&dump=false") as call:
            await call.send(invite())
            await call.wait_event("answer")
            start = call.mark()
            await call.send(command(command="tts", text="A sentence that plays on while bad commands arrive.",
                                    playId="live"))
            await call.wait_event("trackStart", start, playId="live")
            for message, _ in failing:
                await call.send(message)
            await call.send(command(command="dance"))
            await call.wait_event("error", start, error='unknown command "dance"')
            await call.send(command(command="interrupt"))
            await call.wait_event("trackEnd", start, playId="live")
            return [e for e in call.events(start) if e["event"] != "metrics"]

    events = asyncio.run(run())
    assert [(e["event"], e.get("playId"), e.get("error")) for e in events] == [
        ("trackStart", "live", None),
        *[("error", None, message) for _, message in failing],
        ("error", None, 'unknown command "dance"'),
        ("interruption", "live", None),
        ("trackEnd", "live", None),
    ]


def test_a_huge_tts_text_plays_and_can_be_interrupted(tmp_path: Path) -> None:
    text = "word " * 180_000    # 900 kB, under the 1 MiB message limit: hours of speech

    async def run() -> list[Event]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0&dump=false") as call:
            await call.send(invite())
            await call.wait_event("answer")
            start = call.mark()
            await call.send(command(command="tts", text=text, playId="huge"))
            started = await call.wait_event("trackStart", start, playId="huge")
            await call.wait(lambda: len(call.frames(call.position(started))) >= 5)
            await call.send(command(command="interrupt"))
            await call.wait_event("trackEnd", start, playId="huge")
            return await probe_reply(call, start, "probe")

    events = asyncio.run(run())
    names = [e["event"] for e in events]
    assert sorted(names) == ["interruption", "metrics", "trackEnd", "trackStart"]
    interruption = next(e for e in events if e["event"] == "interruption")
    assert interruption["subtitle"] == text and 0 <= interruption["position"] < 10


def test_a_message_over_the_size_limit_closes_with_1009_and_ends_the_call(tmp_path: Path) -> None:
    async def run() -> tuple[int | None, Any, list[dict[str, Any]]]:
        async with running_server(tmp_path, max_message_bytes=65536) as (server, address):
            async with Call.open(address, f"id={CALL_ID}&pingInterval=0", max_size=None) as call:
                await call.send(invite(asr={"provider": "nope", "secretKey": "k-SECRET"}))
                await call.wait_event("answer")
                # A broken command that carries a secret: the dump masks it although it does not parse.
                await call.send('{"command": "invite", "option": {"sip": {"password": "p-SECRET"}')
                await call.wait(lambda: any(e["event"] == "error" and e["error"].startswith("invalid JSON")
                                            for e in call.events()))
                await call.send(command(command="tts", text="x" * 70_000))
                closed = await call.wait_closed()
                code = closed.rcvd.code if closed.rcvd else None
            await call.wait(lambda: not server.sessions, timeout=2.0)
            listed = await http(address, "GET", "/call/lists")
        dump = [json.loads(line) for line in (tmp_path / "dumps" / f"{CALL_ID}.jsonl").read_text().splitlines()]
        return code, listed, dump

    code, listed, dump = asyncio.run(run())
    assert code == 1009
    assert listed == (200, "application/json", {"calls": []})
    assert "SECRET" not in json.dumps(dump)
    assert dump[0]["command"]["option"]["asr"]["secretKey"] == "***"
    unparsed = [line["command"] for line in dump if isinstance(line.get("command"), str)]
    assert unparsed == ['{"command": "invite", "option": {"sip": {"password": "***"}']
    hangup = dump[-1]["event"]
    assert (hangup["event"], hangup["reason"], hangup["initiator"]) == ("hangup", "client_disconnect", "user")


def test_a_text_frame_that_is_not_utf8_closes_with_1007_and_ends_the_call(tmp_path: Path) -> None:
    async def run() -> tuple[bytes, list[dict[str, Any]]]:
        async with running_server(tmp_path) as (server, address):
            raw = await RawWebSocket.connect(address, f"/call?id={CALL_ID}&pingInterval=0")
            try:
                await raw.send_text(invite())
                opcode, payload = await raw.read_frame()
                assert opcode == 0x1 and json.loads(payload)["event"] == "answer"
                await raw.send_frame(0x1, b'{"command": "tts", "text": "\xff"}')
                while opcode != 0x8:
                    opcode, payload = await raw.read_frame()
            finally:
                raw.close()
            for _ in range(100):
                if not server.sessions:
                    break
                await asyncio.sleep(0.01)
            assert server.sessions == {}
        dump = [json.loads(line) for line in (tmp_path / "dumps" / f"{CALL_ID}.jsonl").read_text().splitlines()]
        return payload, dump

    close, dump = asyncio.run(run())
    assert int.from_bytes(close[:2], "big") == 1007
    assert dump[-1]["event"]["reason"] == "client_disconnect"
