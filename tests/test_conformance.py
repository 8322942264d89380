"""Every command example of the spec, sent as written to a running server on ``/call``.

The examples are read from the spec file at test time (the ```json block under each ``### <Command>``
heading of its "Commands" section), so the test follows the contract as it is written. Each example
must parse, and cause exactly the events of :data:`EXPECTED`, nothing more; after each, a probe command
shows that the session still works.

Decisions the table encodes (on ``/call``, audio over the WebSocket):

- ``invite``/``accept`` answer at once (``answer`` with an empty sdp). Of the example's options,
  ``denoise``, ``caller``/``callee`` (the hangup's ``from``/``to``) and the silero VAD apply; ``sip: {}``
  (registration settings for /call/sip) is ignored. The ASR stream opens at answer, so the tencent ASR
  without credentials is one ``asr`` error then; TTS is opened per ``tts`` command, so the tencent TTS
  gives no error at invite, only when a tts command uses it (the tts example names tencent itself).
  The call goes on either way.
- ``reject`` and ``ringing`` apply to SIP calls: one ``command`` error each saying so; ``refer`` dials a SIP leg;
  nothing of ``ringing`` (its ringtone URL, its out-of-directory recorderFile) is attempted.
- ``tts`` with a provider that has no credentials: one ``tts`` error, before any track exists (no
  ``trackStart``/``trackEnd``, and a track that plays is not interrupted).
- ``play`` of an unreachable URL: the play track exists from the command on, so ``trackStart`` (its item
  reaches the head of the playout queue; the fetch races it), one ``play`` error, and ``trackEnd``
  with ``duration`` 0, the URL as ``playId``. Its ``waitInputTimeout`` (30 s) outlives the test.
- ``interrupt`` while an espeak TTS plays: ``interruption`` then ``trackEnd`` of that track.
- ``mute``/``unmute`` of ``track-123``, a track the call does not have: one ``command`` error naming
  the call's tracks (the call id and ``serverSideTrack``).
- ``hangup``: the ``hangup`` event echoing reason and initiator, then the server closes the socket (1000).

Extra: the CallOption example of the Options section as an invite (its ``/path/to/recording.wav`` is
outside the recordings directory: one ``recorder`` error), and the SIP-only commands on /call/sip.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pbx.protocol import parse_command
from tests.support.calls import Call, Event, probe, running_server

SPEC = Path("/work/shared/spec/websocket-api.md")
CALL_ID = "conformance"
ASR_TENCENT = TTS_TENCENT = ("tencent needs appId, secretId, secretKey (options appId, secretId, secretKey or env "
                             "TENCENT_APPID, TENCENT_SECRET_ID, TENCENT_SECRET_KEY)")
PLAY_URL = "http://example.com/audio.mp3"
# The fetch fails as this machine allows: no DNS, no route, or a server that answers with no audio.
PLAY_FAILED = re.compile(r"(cannot reach example\.com|connection .* failed|timed out|HTTP \d+ fetching"
                         r"|.*decode).*", re.S)


def not_on_call(command: str) -> str:
    return f"{command} is not supported on /call (WebSocket audio) calls; it applies to SIP calls on /call/sip"


def no_track(command: str) -> str:
    return f"{command}: no track 'track-123' (tracks: '{CALL_ID}', 'serverSideTrack')"


def positive(value: Any) -> bool:
    return isinstance(value, int) and value > 0


Expected = tuple[Any, ...]   # a summary (see summary()) whose items are values, regexes or predicates


@dataclass(frozen=True)
class Outcome:
    events: tuple[Expected, ...]       # in order, unless any_order
    fresh: bool = False                # the first command of a new session
    while_playing: bool = False        # sent while an espeak TTS track ("long") plays
    any_order: bool = False
    ends_call: bool = False


EXPECTED: dict[str, Outcome] = {
    "invite": Outcome((("answer", ""), ("error", "asr", ASR_TENCENT)), fresh=True),
    "accept": Outcome((("answer", ""), ("error", "asr", ASR_TENCENT)), fresh=True),
    "reject": Outcome((("error", "command", not_on_call("reject")),)),
    "ringing": Outcome((("error", "command", not_on_call("ringing")),)),
    "tts": Outcome((("error", "tts", TTS_TENCENT),)),
    "play": Outcome((("trackStart", PLAY_URL), ("error", "play", PLAY_FAILED), ("trackEnd", PLAY_URL, 0)),
                    any_order=True),
    "interrupt": Outcome((("interruption", "long"), ("trackEnd", "long", positive)), while_playing=True),
    # refer places a SIP leg (see loopback_refer): its hold music cannot load, the callee never answers
    "refer": Outcome((("trackStart", "hold_music.wav"), ("error", "play", re.compile(".*hold_music.wav.*")),
                      ("trackEnd", "hold_music.wav", 0), ("reject", 408, re.compile("no answer from .*"))),
                     any_order=True),
    "mute": Outcome((("error", "command", no_track("mute")),)),
    "unmute": Outcome((("error", "command", no_track("unmute")),)),
    "hangup": Outcome((("hangup", "user_requested", "user"),), ends_call=True),
}

LONG_TTS = {"command": "tts", "playId": "long", "speaker": "en-us", "option": {"provider": "espeak"},
            "text": "This sentence is long enough to be still playing when the interrupt command arrives."}


def command_examples() -> dict[str, dict[str, Any]]:
    """``{command name: example}`` from the spec's Commands section."""
    text = SPEC.read_text(encoding="utf-8")
    section = text.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    examples = {}
    for block in re.split(r"^### ", section, flags=re.M)[1:]:
        found = re.search(r"```json\n(.*?)```", block, re.S)
        assert found is not None, f"no json example under ### {block.splitlines()[0]}"
        example = json.loads(found.group(1))
        examples[example["command"]] = example
    return examples


def option_example(name: str) -> dict[str, Any]:
    text = SPEC.read_text(encoding="utf-8")
    block = text.split(f"\n### {name}\n", 1)[1]
    found = re.search(r"```json\n(.*?)```", block, re.S)
    assert found is not None
    parsed: dict[str, Any] = json.loads(found.group(1))
    return parsed


def summary(event: Event) -> Expected:
    name = event["event"]
    if name == "error":
        return (name, event["sender"], event["error"])
    if name in ("trackStart", "interruption"):
        return (name, event.get("playId"))
    if name == "trackEnd":
        return (name, event.get("playId"), event["duration"])
    if name == "hangup":
        return (name, event.get("reason"), event.get("initiator"))
    if name == "answer":
        return (name, event["sdp"])
    if name == "reject":
        return (name, event.get("code"), event.get("reason"))
    return (name,)


def matches(expected: Expected, got: Expected) -> bool:
    def item(want: Any, value: Any) -> bool:
        if isinstance(want, re.Pattern):
            return isinstance(value, str) and want.fullmatch(value) is not None
        if callable(want):
            return bool(want(value))
        return bool(want == value)
    return len(expected) == len(got) and all(item(w, v) for w, v in zip(expected, got, strict=True))


def assert_outcome(name: str, outcome: Outcome, events: list[Event]) -> None:
    got = [summary(e) for e in events]
    wanted = list(outcome.events)
    if outcome.any_order:
        unmatched = list(got)
        for want in wanted:
            hit = next((g for g in unmatched if matches(want, g)), None)
            assert hit is not None, f"{name}: expected {want} among {got}"
            unmatched.remove(hit)
        assert not unmatched, f"{name}: unexpected {unmatched}"
    else:
        assert len(got) == len(wanted) and all(map(matches, wanted, got)), f"{name}: expected {wanted}, got {got}"
    for event in events:
        assert event["timestamp"] > 1_600_000_000_000, event
        if event["event"] == "error":
            assert event["trackId"] == CALL_ID


def is_probe(event: Event) -> bool:
    return event["event"] in ("trackStart", "trackEnd") and str(event.get("playId", "")).startswith("probe-")


async def run_example(call: Call, name: str, example: dict[str, Any], outcome: Outcome) -> list[Event]:
    """Send one example; wait for its outcome, then for a probe's reply; return what the example caused."""
    if outcome.while_playing:
        before = call.mark()
        await call.send(LONG_TTS)
        await call.wait_event("trackStart", before, playId="long")
        await call.wait(lambda: len(call.frames(before)) >= 10)   # 200 ms of it played
        await call.wait_event("metrics", before, key="ttfb.tts.espeak")
    start = call.mark()
    await call.send(example)
    want = len(outcome.events)
    await call.wait(lambda: len(call.events(start)) >= want, timeout=15.0)
    if outcome.ends_call:
        closed = await call.wait_closed()
        assert closed.rcvd is not None and closed.rcvd.code == 1000
        return call.events(start)
    tag = f"probe-{name}"
    await call.send(probe(tag))
    end = await call.wait_event("trackEnd", start, playId=tag)
    assert end["duration"] == 20
    return [e for e in call.events(start, call.position(end) + 1) if not is_probe(e)]


def test_the_spec_has_an_expected_outcome_for_each_command_example() -> None:
    examples = command_examples()
    assert list(examples) == ["invite", "accept", "reject", "ringing", "tts", "play", "interrupt", "refer",
                              "mute", "unmute", "hangup"]
    assert set(examples) == set(EXPECTED)
    for example in examples.values():
        parse_command(json.dumps(example))   # raises ProtocolError if the spec's own example does not parse


def loopback_refer(example: dict[str, Any], port: int) -> dict[str, Any]:
    """The refer example with its callee and hold music on loopback (tests dial nothing else), and a
    1 s timeout: the callee's port is bound but never answers."""
    options = {**example["options"], "timeout": 1, "moh": "hold_music.wav"}
    return {**example, "callee": f"sip:charlie@127.0.0.1:{port}", "options": options}


def test_every_command_example_on_call(tmp_path: Path) -> None:
    examples = command_examples()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    examples["refer"] = loopback_refer(examples["refer"], silent.getsockname()[1])

    async def run() -> dict[str, list[Event]]:
        seen: dict[str, list[Event]] = {}
        async with running_server(tmp_path, download_timeout_secs=5.0) as (server, address):
            # Session 1: invite, then every other example in the spec's order; hangup last.
            async with Call.open(address, f"id={CALL_ID}&pingInterval=0") as call:
                for name, example in examples.items():
                    if name == "accept":
                        continue
                    seen[name] = await run_example(call, name, example, EXPECTED[name])
                assert server.sessions == {}
            # Session 2: accept as the first command.
            async with Call.open(address, f"id={CALL_ID}&pingInterval=0") as call:
                seen["accept"] = await run_example(call, "accept", examples["accept"], EXPECTED["accept"])
        return seen

    seen = asyncio.run(run())
    silent.close()
    for name, outcome in EXPECTED.items():
        assert_outcome(name, outcome, seen[name])
    # The hangup of the invite session carries the example's caller and callee.
    hangup = seen["hangup"][0]
    assert hangup["from"] == {"username": "", "realm": "192.168.3.197", "source": "sip:192.168.3.197:3050"}
    assert hangup["to"] == {"username": "alice", "realm": "192.168.3.197",
                            "source": "sip:alice@192.168.3.197:12345"}
    assert hangup["trackId"] == CALL_ID
    # No example failed to parse: no command error other than the table's.
    parse_errors = [e for events in seen.values() for e in events
                    if e["event"] == "error" and e["sender"] == "command"
                    and re.match(r"invalid JSON|missing|unknown command|\w+(\.\w+)+: expected", e["error"])]
    assert parse_errors == []


def test_the_calloption_example_as_an_invite(tmp_path: Path) -> None:
    """Its recorderFile is outside the recordings directory and its ASR has no credentials: one
    recorder error and one asr error; the call is answered (g722) and goes on."""
    option = option_example("CallOption")
    assert option["recorder"]["recorderFile"] == "/path/to/recording.wav"

    async def run() -> tuple[list[Event], Path]:
        async with running_server(tmp_path) as (server, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0") as call:
            outcome = Outcome((("answer", ""), ("error", "recorder", ...), ("error", "asr", ASR_TENCENT)))
            events = await run_example(call, "calloption", {"command": "invite", "option": option}, outcome)
            return events, server.config.directory("recordings").resolve()

    events, recordings = asyncio.run(run())
    assert [summary(e) for e in events] == [
        ("answer", ""),
        ("error", "recorder", f"recorderFile /path/to/recording.wav is outside the recordings directory {recordings}"),
        ("error", "asr", ASR_TENCENT),
    ]
    assert not Path("/path/to/recording.wav").exists()


@pytest.mark.parametrize(("name", "expected"), [
    ("ringing", [("reject", 486, "no pending call"), ("hangup", "rejected", "callee")]),
    ("reject", [("hangup", "rejected", "user")]),
    ("refer", [("error", "command", "refer: no call is answered yet"), ("hangup", None, "user")]),
])
def test_sip_commands_on_call_sip_without_a_pending_call(tmp_path: Path, name: str, expected: list[Expected]) -> None:
    """The spec's examples of the SIP-only commands on a /call/sip connection whose id names no pending
    INVITE: ringing is refused as accept is (486 "no pending call", as the upstream server answers)."""
    example = command_examples()[name]

    async def run() -> list[Event]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0", path="/call/sip") as call:
            start = call.mark()
            await call.send(example)
            await call.send({"command": "hangup"})
            await call.wait_event("hangup", start)
            return call.events(start)

    assert [summary(e) for e in asyncio.run(run())] == expected
