"""pbx.protocol against the wire contract, websocket-api.md.

The spec's JSON examples and field tables are read from the markdown at test time (so these
tests break when the spec changes): every example parses as its command/event/option and
serialises back to the same JSON, and every table row matches our field (name, type,
required, default).  Then: exact error messages, aliases, defaults, durations, times,
redaction, option merging, and fuzzing -- arbitrary input gives a command or ProtocolError,
never another exception, and everything we build round-trips.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx import protocol as p
from pbx.errors import ProtocolError

# ---------------------------------------------------------------------------
# The spec, split into sections


def _spec_path() -> Path | None:
    root = Path(__file__).resolve().parent.parent
    candidates = [os.environ.get("PYPBX_SPEC"), root / "docs" / "websocket-api.md",
                  "/work/shared/spec/websocket-api.md"]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


@dataclass
class Section:
    examples: list[Any] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)


def _read_spec() -> dict[str, dict[str, Section]]:
    """{"Commands": {"Invite - Initiate Call": Section}, "Events": ..., "Options": ...}"""
    path = _spec_path()
    if path is None:
        pytest.skip("websocket-api.md not found (set PYPBX_SPEC)")
    out: dict[str, dict[str, Section]] = {}
    part = sub = ""
    lines = path.read_text(encoding="utf-8").splitlines()
    header: list[str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            part, sub, header = line[3:].strip(), "", None
            out.setdefault(part, {})
        elif line.startswith("### "):
            sub, header = line[4:].strip(), None
            out[part][sub] = Section()
        elif line.strip() == "```json" and sub:
            end = lines.index("```", i + 1)
            out[part][sub].examples.append(json.loads("\n".join(lines[i + 1:end])))
            i = end
        elif line.startswith("|") and sub:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not set("".join(cells)) <= set("-: "):
                out[part][sub].rows.append(dict(zip(header, cells, strict=True)))
        i += 1
    return out


@pytest.fixture(scope="module")
def spec() -> dict[str, dict[str, Section]]:
    return _read_spec()


def _wire_name(heading: str, part: str) -> str:
    word = heading.split(" - ")[0].strip()
    return word.lower() if part == "Commands" else word[0].lower() + word[1:]


def _commands(spec: dict[str, dict[str, Section]]) -> dict[str, Section]:
    return {_wire_name(h, "Commands"): s for h, s in spec["Commands"].items()}


def _events(spec: dict[str, dict[str, Section]]) -> dict[str, Section]:
    return {_wire_name(h, "Events"): s for h, s in spec["Events"].items()}


COMMAND_CLASSES = {cls.COMMAND: cls for cls in typing.get_args(p.Command)}
EVENT_CLASSES = {cls.EVENT: cls for cls in typing.get_args(p.Event) if cls is not p.UnknownEvent}
OPTION_CLASSES = {cls.__name__: cls for cls in (
    p.CallOption, p.RecorderOption, p.TranscriptionOption, p.SynthesisOption, p.VADOption,
    p.MediaPassOption, p.ReferOption, p.SipOption, p.Attendee)}
TIME_KEYS = ("startTime", "hangupTime", "answerTime", "ringingTime")
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_spec_lists_every_command_event_and_option(spec: dict[str, dict[str, Section]]) -> None:
    assert sorted(_commands(spec)) == sorted(set(COMMAND_CLASSES) - p.EXTENSION_COMMANDS)
    assert len(COMMAND_CLASSES) - len(p.EXTENSION_COMMANDS) == 11
    assert sorted(_events(spec)) == sorted(EVENT_CLASSES)
    assert len(EVENT_CLASSES) == 18
    assert sorted(spec["Options"]) == sorted(OPTION_CLASSES)
    for sections in (spec["Commands"], spec["Events"], spec["Options"]):
        assert all(len(s.examples) == 1 and s.rows for s in sections.values())


# ---------------------------------------------------------------------------
# Examples: parse as their type and serialise back to the same JSON


def test_command_examples_parse_and_round_trip(spec: dict[str, dict[str, Section]]) -> None:
    for name, section in _commands(spec).items():
        example = section.examples[0]
        assert example["command"] == name
        cmd = p.parse_command(json.dumps(example))
        assert type(cmd) is COMMAND_CLASSES[name]
        # Commands also write the defaults the example leaves out (e.g. tts "base64": false).
        defaults = {f.key: f.default for f in p.wire_fields(type(cmd)) if f.default is not None}
        assert json.loads(p.serialize_command(cmd)) == {"command": name, **defaults, **example}, name
        assert p.parse_command(p.serialize_command(cmd)) == cmd


def _instants(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["event"] != "hangup":
        return obj
    return {k: p.parse_iso8601(v) if k in TIME_KEYS else v for k, v in obj.items()}


def test_event_examples_parse_and_round_trip(spec: dict[str, dict[str, Section]]) -> None:
    for name, section in _events(spec).items():
        example = section.examples[0]
        assert example["event"] == name
        event = p.parse_event(json.dumps(example))
        assert type(event) is EVENT_CLASSES[name]
        ours = json.loads(p.serialize_event(event))
        # Hangup times: same instants; ours always carry milliseconds ("...:00.000Z").
        assert _instants(ours) == _instants(example), name
        if name == "hangup":
            assert all(ISO_MS.fullmatch(ours[k]) for k in TIME_KEYS if k in ours)
        assert p.parse_event(p.serialize_event(event)) == event


def test_option_examples_parse_and_round_trip(spec: dict[str, dict[str, Section]]) -> None:
    for name, section in spec["Options"].items():
        example = section.examples[0]
        option = p.option_from_dict(OPTION_CLASSES[name], example)
        assert p.to_dict(option) == example, name


def test_spec_example_values() -> None:
    invite = p.parse_command(json.dumps({
        "command": "invite",
        "option": {"denoise": True, "callee": "sip:alice@192.168.3.197:12345",
                   "caller": "sip:192.168.3.197:3050", "vad": {"type": "silero", "silenceTimeout": 5000},
                   "asr": {"provider": "tencent"}, "tts": {"provider": "tencent", "speaker": "601003"},
                   "sip": {}}}))
    assert isinstance(invite, p.InviteCommand)
    opt = invite.option
    assert opt.denoise is True and opt.codec == "pcmu" and opt.enable_ipv6 is False
    assert opt.vad == p.VADOption(type="silero", silence_timeout=5000)
    assert opt.vad.speech_padding == 250
    assert opt.asr == p.TranscriptionOption(provider="tencent")
    assert opt.tts == p.SynthesisOption(provider="tencent", speaker="601003")
    assert opt.sip == p.SipOption()
    assert opt.recorder is None and opt.media_pass is None and opt.handshake_timeout is None


# ---------------------------------------------------------------------------
# Field tables: names, types, required, defaults


TYPE_KINDS = {
    "string": {p.FieldKind.STRING, p.FieldKind.DURATION, p.FieldKind.TIME},
    "boolean": {p.FieldKind.BOOLEAN},
    "number": {p.FieldKind.INTEGER, p.FieldKind.NUMBER},
    "object": {p.FieldKind.OBJECT, p.FieldKind.STRING_MAP},
    "array": {p.FieldKind.BYTES},
}


def _check_row(cls: type[Any], row: dict[str, str], required: bool | None) -> None:
    key = row["Field"].strip("`")
    fields = {f.key: f for f in p.wire_fields(cls)}
    assert key in fields, f"{cls.__name__}: no field {key}"
    f = fields[key]
    kind = row["Type"]
    if kind in TYPE_KINDS:
        assert f.kind in TYPE_KINDS[kind], (cls.__name__, key)
    else:
        assert f.kind is p.FieldKind.OPTION and f.option is not None, (cls.__name__, key)
        assert f.option.__name__ == kind
    if required is not None:
        assert f.required is required, (cls.__name__, key)
    default = row.get("Default", "-")
    if default != "-":
        assert f.default == json.loads(default), (cls.__name__, key)
        assert type(f.default) is type(json.loads(default)) or f.kind is p.FieldKind.NUMBER
    elif not f.required:
        assert f.default is None, (cls.__name__, key)


def _table_keys(section: Section, skip: str = "") -> set[str]:
    return {r["Field"].strip("`") for r in section.rows} - {skip}


def test_command_tables(spec: dict[str, dict[str, Section]]) -> None:
    for name, section in _commands(spec).items():
        cls = COMMAND_CLASSES[name]
        assert _table_keys(section, "command") == {f.key for f in p.wire_fields(cls)}, name
        for row in section.rows:
            if row["Field"] != "`command`":
                _check_row(cls, row, row["Required"] == "✓")


def test_event_tables(spec: dict[str, dict[str, Section]]) -> None:
    for name, section in _events(spec).items():
        cls = EVENT_CLASSES[name]
        assert _table_keys(section, "event") == {f.key for f in p.wire_fields(cls)}, name
        for row in section.rows:
            if row["Field"] != "`event`":
                _check_row(cls, row, not re.search(r"\boptional\b", row["Description"]))


def test_option_tables(spec: dict[str, dict[str, Section]]) -> None:
    for name, section in spec["Options"].items():
        cls = OPTION_CLASSES[name]
        # SynthesisOption's example also shows "emotion", which its table omits.
        extension = getattr(cls, "EXTENSION_KEYS", frozenset())   # our keys beyond the spec (mediaPass.protocol)
        assert _table_keys(section) | set(section.examples[0]) == {f.key for f in p.wire_fields(cls)} - extension
        for row in section.rows:
            required = {"✓": True, "✗": False}.get(row.get("Required", ""))
            _check_row(cls, row, required)


def test_defaults() -> None:
    assert p.CallOption().codec == "pcmu"
    assert (p.CallOption().denoise, p.CallOption().enable_ipv6) == (False, False)
    vad = p.VADOption()
    assert (vad.type, vad.samplerate, vad.speech_padding, vad.silence_padding) == ("webrtc", 16000, 250, 100)
    assert (vad.ratio, vad.voice_threshold, vad.max_buffer_duration_secs) == (0.5, 0.5, 50)
    assert vad.silence_timeout is None
    rec = p.RecorderOption(recorder_file="/r.wav")
    assert (rec.samplerate, rec.ptime) == (16000, 200)
    tts = p.SynthesisOption()
    assert (tts.volume, tts.speed, tts.samplerate, tts.subtitle) == (5, 1.0, 16000, False)
    asr = p.TranscriptionOption()
    assert (asr.samplerate, asr.start_when_answer) == (16000, False)
    assert p.MediaPassOption(url="ws://x", input_sample_rate=8000, output_sample_rate=16000).packet_size == 2560
    refer = p.ReferOption()
    assert (refer.denoise, refer.auto_hangup, refer.timeout) == (False, False, None)
    cmd = p.parse_command('{"command":"tts","text":"hi"}')
    assert cmd == p.TtsCommand(text="hi")
    assert isinstance(cmd, p.TtsCommand)
    assert (cmd.auto_hangup, cmd.streaming, cmd.end_of_stream, cmd.base64) == (False,) * 4
    assert p.parse_command('{"command":"ringing"}') == p.RingingCommand(early_media=False)
    assert p.parse_command('{"command":"interrupt"}') == p.InterruptCommand(graceful=False)
    # Empty option objects get every default.
    invite = p.parse_command('{"command":"invite","option":{"vad":{},"tts":{},"asr":{}}}')
    assert isinstance(invite, p.InviteCommand)
    assert (invite.option.vad, invite.option.tts, invite.option.asr) == (vad, tts, asr)


# ---------------------------------------------------------------------------
# Errors


def _invite(**option: Any) -> str:
    return json.dumps({"command": "invite", "option": option})


ERRORS = [
    ("", "invalid JSON: Expecting value at line 1 column 1"),
    ("   ", "invalid JSON: Expecting value at line 1 column 4"),
    ('{"command": "tts",}', "invalid JSON: Expecting property name enclosed in double quotes at line 1 column 19"),
    ("{", "invalid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    ('{"command":"tts"} x', "invalid JSON: Extra data at line 1 column 19"),
    ('{"command":"tts","text":NaN}', "invalid JSON: NaN is not allowed"),
    ('{"command":"tts","text":-Infinity}', "invalid JSON: -Infinity is not allowed"),
    ('{"command":"tts","text":1e999}', "invalid JSON: number 1e999 is out of range"),
    ("[" * 65 + "]" * 65, "invalid JSON: nested deeper than 64 levels"),
    ("[" * 100_000 + "]" * 100_000, "invalid JSON: nested deeper than 64 levels"),
    ('{"command":"tts","text":"\\ud800"}', "invalid JSON: unpaired surrogate in a string"),
    ('{"command":"tts","text":"x","\\udfff":1}', "invalid JSON: unpaired surrogate in a string"),
    ('{"command":"tts","text":"\ud800"}', "invalid JSON: unpaired surrogate in a string"),
    ("[]", "command must be a JSON object"),
    ('"invite"', "command must be a JSON object"),
    ("null", "command must be a JSON object"),
    ("{}", 'missing "command" field'),
    ('{"text":"hi"}', 'missing "command" field'),
    ('{"command":1}', '"command" field must be a string, got number'),
    ('{"command":null}', '"command" field must be a string, got null'),
    ('{"command":"foo"}', 'unknown command "foo"'),
    ('{"command":"Invite"}', 'unknown command "Invite"'),
    ('{"command":"' + "x" * 100 + '"}', 'unknown command "' + "x" * 57 + '..."'),
    ('{"command":"tts"}', 'tts: missing required field "text"'),
    ('{"command":"tts","text":null}', "tts.text: expected string, got null"),
    ('{"command":"tts","text":5}', "tts.text: expected string, got number"),
    ('{"command":"tts","text":"x","autoHangup":"yes"}', "tts.autoHangup: expected boolean, got string"),
    ('{"command":"tts","text":"x","autoHangup":1}', "tts.autoHangup: expected boolean, got number"),
    ('{"command":"tts","text":"x","waitInputTimeout":"30"}', "tts.waitInputTimeout: expected number, got string"),
    ('{"command":"tts","text":"x","waitInputTimeout":true}', "tts.waitInputTimeout: expected number, got boolean"),
    ('{"command":"tts","text":"x","option":"fast"}', "tts.option: expected object, got string"),
    ('{"command":"tts","text":"x","option":{"speed":"fast"}}', "tts.option.speed: expected number, got string"),
    ('{"command":"tts","text":"x","option":{"volume":5.5}}', "tts.option.volume: expected integer, got 5.5"),
    ('{"command":"tts","text":"x","endOfStream":true,"end_of_stream":true}',
     'tts: "endOfStream" and its alias "end_of_stream" both given'),
    ('{"command":"tts","text":"x","end_of_stream":"no"}', "tts.end_of_stream: expected boolean, got string"),
    ('{"command":"play"}', 'play: missing required field "url"'),
    ('{"command":"reject"}', 'reject: missing required field "reason"'),
    ('{"command":"reject","reason":"x","code":486.5}', "reject.code: expected integer, got 486.5"),
    ('{"command":"reject","reason":"x","code":-1}', "reject.code: expected non-negative integer, got -1"),
    ('{"command":"reject","reason":"x","code":true}', "reject.code: expected number, got boolean"),
    ('{"command":"reject","reason":"x","code":9007199254740992}',
     "reject.code: expected integer at most 9007199254740991, got 9007199254740992"),
    ('{"command":"refer","callee":"sip:b@x"}', 'refer: missing required field "caller"'),
    ('{"command":"refer","caller":"sip:a@x"}', 'refer: missing required field "callee"'),
    ('{"command":"refer","caller":"a","callee":"b","options":{"sip":{"password":1}}}',
     "refer.options.sip.password: expected string, got number"),
    ('{"command":"refer","caller":"a","callee":"b","options":{"timeout":"30s"}}',
     "refer.options.timeout: expected number, got string"),
    ('{"command":"ringing","recorder":{}}', 'ringing.recorder: missing required field "recorderFile"'),
    ('{"command":"ringing","recorder":{"recorderFile":"/r","ptime":"200"}}',
     "ringing.recorder.ptime: expected number, got string"),
    ('{"command":"ringing","earlyMedia":"true"}', "ringing.earlyMedia: expected boolean, got string"),
    ('{"command":"mute","trackId":7}', "mute.trackId: expected string, got number"),
    ('{"command":"hangup","reason":[]}', "hangup.reason: expected string, got array"),
    ('{"command":"invite"}', 'invite: missing required field "option"'),
    ('{"command":"invite","option":null}', "invite.option: expected object, got null"),
    ('{"command":"accept","option":[]}', "accept.option: expected object, got array"),
    (_invite(vad={"speechPadding": "250"}), "invite.option.vad.speechPadding: expected number, got string"),
    (_invite(vad={"samplerate": 16000.5}), "invite.option.vad.samplerate: expected integer, got 16000.5"),
    (_invite(vad={"sampleRate": "16k"}), "invite.option.vad.sampleRate: expected number, got string"),
    (_invite(vad={"samplerate": 8000, "sampleRate": 8000}),
     'invite.option.vad: "samplerate" and its alias "sampleRate" both given'),
    (_invite(asr={"apiKey": 1}), "invite.option.asr.apiKey: expected string, got number"),
    (_invite(asr={"secretKey": "a", "apiKey": "b"}),
     'invite.option.asr: "secretKey" and its alias "apiKey" both given'),
    (_invite(asr={"modelType": "a", "model": "b"}), 'invite.option.asr: "modelType" and its alias "model" both given'),
    (_invite(asr={"startWhenAnswer": "yes"}), "invite.option.asr.startWhenAnswer: expected boolean, got string"),
    (_invite(mediaPass={"url": "ws://x", "outputSampleRate": 16000}),
     'invite.option.mediaPass: missing required field "inputSampleRate"'),
    (_invite(mediaPass={"inputSampleRate": 16000, "outputSampleRate": 16000}),
     'invite.option.mediaPass: missing required field "url"'),
    (_invite(mediaPass={"url": "ws://x", "inputSampleRate": 16000}),
     'invite.option.mediaPass: missing required field "outputSampleRate"'),
    (_invite(recorder={"samplerate": 8000}), 'invite.option.recorder: missing required field "recorderFile"'),
    (_invite(extra=[1]), "invite.option.extra: expected object, got array"),
    (_invite(extra="a=b"), "invite.option.extra: expected object, got string"),
    (_invite(sip={"headers": {"X-A": 1}}), "invite.option.sip.headers.X-A: expected string, got number"),
    (_invite(sip={"headers": ["X-A: 1"]}), "invite.option.sip.headers: expected object, got array"),
    (_invite(denoise="true"), "invite.option.denoise: expected boolean, got string"),
    (_invite(codec=0), "invite.option.codec: expected string, got number"),
    (_invite(handshakeTimeout="soon"),
     'invite.option.handshakeTimeout: expected a duration such as "30s", "500ms", "2m" or a number of seconds,'
     ' got "soon"'),
    (_invite(handshakeTimeout="-5s"),
     'invite.option.handshakeTimeout: expected a duration such as "30s", "500ms", "2m" or a number of seconds,'
     ' got "-5s"'),
    (_invite(handshakeTimeout=-5),
     'invite.option.handshakeTimeout: expected a duration such as "30s", "500ms", "2m" or a number of seconds,'
     " got -5"),
    (_invite(handshakeTimeout=True),
     'invite.option.handshakeTimeout: expected a duration such as "30s", "500ms", "2m" or a number of seconds,'
     " got boolean"),
    (_invite(handshakeTimeout={"s": 30}),
     'invite.option.handshakeTimeout: expected a duration such as "30s", "500ms", "2m" or a number of seconds,'
     " got object"),
    (_invite(tts={"speed": 10**400}), "invite.option.tts.speed: number " + "1" + "0" * 56 + "... is out of range"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_command_errors(text: str, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        p.parse_command(text)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError) and info.value.sender == "command"


def test_bytes_input() -> None:
    assert p.parse_command(b'{"command":"hangup"}') == p.HangupCommand()
    assert p.parse_command('{"command":"tts","text":"你好"}'.encode()) == p.TtsCommand(text="你好")
    with pytest.raises(ProtocolError, match=r"^invalid JSON: not UTF-8 text$"):
        p.parse_command(b'{"command":"tts","text":"\xff"}')


def test_unknown_fields_are_ignored() -> None:
    cmd = p.parse_command('{"command":"hangup","reason":"bye","headers":{"X":"1"},"future":[1,2]}')
    assert cmd == p.HangupCommand(reason="bye")
    cmd = p.parse_command(_invite(codec="g722", futureOption={"a": 1}, vad={"mode": 3}))
    assert isinstance(cmd, p.InviteCommand) and cmd.option.codec == "g722" and cmd.option.vad == p.VADOption()


def test_null_is_absent() -> None:
    cmd = p.parse_command('{"command":"tts","text":"x","speaker":null,"autoHangup":null,"option":null}')
    assert cmd == p.TtsCommand(text="x")
    cmd = p.parse_command(_invite(codec=None, vad={"samplerate": None}))
    assert isinstance(cmd, p.InviteCommand)
    assert cmd.option.codec == "pcmu" and cmd.option.vad == p.VADOption()


def test_numbers() -> None:
    cmd = p.parse_command(_invite(vad={"samplerate": 8000.0, "ratio": 1, "speechPadding": 300}))
    assert isinstance(cmd, p.InviteCommand) and cmd.option.vad is not None
    assert cmd.option.vad.samplerate == 8000 and type(cmd.option.vad.samplerate) is int
    assert cmd.option.vad.ratio == 1.0 and type(cmd.option.vad.ratio) is float
    tts = p.parse_command('{"command":"tts","text":"x","waitInputTimeout":2.5,"option":{"speed":1}}')
    assert isinstance(tts, p.TtsCommand) and tts.option is not None
    assert tts.wait_input_timeout == 2.5 and tts.option.speed == 1.0
    # Integral floats go out as ints: upstream reads several "number" fields as integers.
    assert '"waitInputTimeout":30,' in p.serialize_command(p.TtsCommand(text="x", wait_input_timeout=30.0))
    assert '"waitInputTimeout":2.5' in p.serialize_command(p.TtsCommand(text="x", wait_input_timeout=2.5))


# ---------------------------------------------------------------------------
# Aliases


def test_aliases() -> None:
    tts = p.parse_command('{"command":"tts","text":"x","end_of_stream":true}')
    assert tts == p.TtsCommand(text="x", end_of_stream=True)
    invite = p.parse_command(_invite(
        asr={"apiKey": "k1", "model": "16k_zh", "sampleRate": 8000},
        tts={"apiKey": "k2", "sampleRate": 24000},
        vad={"apiKey": "k3", "sampleRate": 8000},
        recorder={"recorderFile": "/r.wav", "sampleRate": 8000},
    ))
    assert isinstance(invite, p.InviteCommand)
    o = invite.option
    assert o.asr == p.TranscriptionOption(secret_key="k1", model_type="16k_zh", samplerate=8000)
    assert o.tts == p.SynthesisOption(secret_key="k2", samplerate=24000)
    assert o.vad == p.VADOption(secret_key="k3", samplerate=8000)
    assert o.recorder == p.RecorderOption(recorder_file="/r.wav", samplerate=8000)
    ringing = p.parse_command('{"command":"ringing","recorder":{"recorderFile":"/r","sampleRate":8000}}')
    assert isinstance(ringing, p.RingingCommand) and ringing.recorder is not None
    assert ringing.recorder.samplerate == 8000
    # Serialised under the canonical names.
    out = json.loads(p.serialize_command(invite))["option"]
    assert out["asr"] == {"secretKey": "k1", "modelType": "16k_zh", "samplerate": 8000}
    assert out["recorder"] == {"recorderFile": "/r.wav", "samplerate": 8000}
    assert "endOfStream" in json.loads(p.serialize_command(tts))
    # Not aliases elsewhere: a tts option's "model" or a media pass "sampleRate" are unknown keys.
    other = p.parse_command('{"command":"tts","text":"x","option":{"model":"m"}}')
    assert isinstance(other, p.TtsCommand) and other.option == p.SynthesisOption()
    for f in p.wire_fields(p.CallOption) + p.wire_fields(p.MediaPassOption) + p.wire_fields(p.SipOption):
        assert f.aliases == ()


def test_alias_table() -> None:
    aliases = {(cls.__name__, f.key, a) for cls in (*OPTION_CLASSES.values(), *COMMAND_CLASSES.values())
               for f in p.wire_fields(cls) for a in f.aliases}
    assert aliases == {
        ("TtsCommand", "endOfStream", "end_of_stream"),
        ("TranscriptionOption", "secretKey", "apiKey"),
        ("SynthesisOption", "secretKey", "apiKey"),
        ("VADOption", "secretKey", "apiKey"),
        ("TranscriptionOption", "modelType", "model"),
        ("RecorderOption", "samplerate", "sampleRate"),
        ("TranscriptionOption", "samplerate", "sampleRate"),
        ("SynthesisOption", "samplerate", "sampleRate"),
        ("VADOption", "samplerate", "sampleRate"),
    }


# ---------------------------------------------------------------------------
# handshakeTimeout and other durations


@pytest.mark.parametrize(("value", "seconds"), [
    ("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("1.5s", 1.5), ("100ms", 0.1),
    ("30", 30.0), (" 30 s ", 30.0), ("0", 0.0), (".5", 0.5), ("1e-3s", 0.001), (30, 30.0), (2.5, 2.5),
])
def test_handshake_timeout_forms(value: str | float, seconds: float) -> None:
    cmd = p.parse_command(_invite(handshakeTimeout=value))
    assert isinstance(cmd, p.InviteCommand)
    assert cmd.option.handshake_timeout == seconds and type(cmd.option.handshake_timeout) is float
    assert p.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "s", "30x", "30 ms s", "1e999s", "inf", "nan", "-1", "1,5s", "½s", True, None])
def test_bad_durations(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^expected a duration such as"):
        p.parse_duration(value)


def test_duration_serialisation() -> None:
    assert json.loads(p.serialize_command(p.InviteCommand(option=p.CallOption(handshake_timeout=30.0)))) == {
        "command": "invite", "option": {"handshakeTimeout": "30s"}}
    assert p.to_dict(p.CallOption(handshake_timeout=0.5)) == {"handshakeTimeout": "0.5s"}
    assert p.to_dict(p.CallOption(handshake_timeout=1e-5)) == {"handshakeTimeout": "1e-05s"}
    with pytest.raises(ValueError):
        p.to_dict(p.CallOption(handshake_timeout=-1.0))


# ---------------------------------------------------------------------------
# Events out


def test_event_serialisation_exact() -> None:
    assert p.serialize_event(p.PingEvent(timestamp=1640995200000)) == '{"event":"ping","timestamp":1640995200000}'
    assert p.serialize_event(p.PingEvent(timestamp=1, payload="x")) == '{"event":"ping","timestamp":1,"payload":"x"}'
    metrics = p.MetricsEvent(timestamp=5, key="ttfb.tts.espeak", duration=150, data={"index": 1})
    assert p.serialize_event(metrics) == (
        '{"event":"metrics","timestamp":5,"key":"ttfb.tts.espeak","duration":150,"data":{"index":1}}')
    hangup = p.HangupEvent(track_id="t", timestamp=1704110730000, reason=p.HangupReason.AUTOHANGUP,
                           initiator=p.Initiator.SYSTEM, start_time=1704110400000,
                           hangup_time=1704110730123, to=p.Attendee(username="bob", realm="x.com",
                                                                    source="sip:bob@x.com"))
    assert p.serialize_event(hangup) == (
        '{"event":"hangup","trackId":"t","timestamp":1704110730000,"reason":"autohangup",'
        '"initiator":"system","startTime":"2024-01-01T12:00:00.000Z","hangupTime":"2024-01-01T12:05:30.123Z",'
        '"to":{"username":"bob","realm":"x.com","source":"sip:bob@x.com"}}')
    assert p.parse_event(p.serialize_event(hangup)) == hangup
    trackend = p.TrackEndEvent(track_id="t", timestamp=1, duration=0, ssrc=0)
    assert p.serialize_event(trackend) == '{"event":"trackEnd","trackId":"t","timestamp":1,"duration":0,"ssrc":0}'
    binary = p.BinaryEvent(track_id="t", timestamp=1, data=b"\x00\x01\xff")
    assert p.serialize_event(binary) == '{"event":"binary","trackId":"t","timestamp":1,"data":[0,1,255]}'
    asr = p.AsrFinalEvent(track_id="t", timestamp=1, index=0, text="你好")
    assert p.serialize_event(asr) == '{"event":"asrFinal","trackId":"t","timestamp":1,"index":0,"text":"你好"}'
    assert "null" not in p.serialize_event(p.ErrorEvent(track_id="t", timestamp=1, sender="asr", error="x"))


def test_ping_and_metrics_have_no_track_id() -> None:
    assert "trackId" not in {f.key for f in p.wire_fields(p.PingEvent)}
    assert "trackId" not in {f.key for f in p.wire_fields(p.MetricsEvent)}
    for cls in EVENT_CLASSES.values():
        if cls not in (p.PingEvent, p.MetricsEvent):
            assert p.wire_fields(cls)[0].key == "trackId" or cls is p.AsrDeltaEvent


def test_event_errors() -> None:
    cases = [
        ("[]", "event must be a JSON object"),
        ('{"trackId":"t"}', 'missing "event" field'),
        ('{"event":5}', '"event" field must be a string, got number'),
        ('{"event":"ping"}', 'ping: missing required field "timestamp"'),
        ('{"event":"ping","timestamp":"now"}', "ping.timestamp: expected number, got string"),
        ('{"event":"dtmf","timestamp":1,"digit":"1"}', 'dtmf: missing required field "trackId"'),
        ('{"event":"hangup","trackId":"t","timestamp":1,"startTime":"yesterday","hangupTime":"x"}',
         'hangup.startTime: expected ISO 8601 time, got "yesterday"'),
        ('{"event":"hangup","trackId":"t","timestamp":1,"startTime":1,"hangupTime":1}',
         "hangup.startTime: expected string, got number"),
        ('{"event":"hangup","trackId":"t","timestamp":1,"startTime":"2024-01-01T00:00:00Z",'
         '"hangupTime":"2024-01-01T00:00:00Z","from":{"username":"a","realm":"b"}}',
         'hangup.from: missing required field "source"'),
        ('{"event":"binary","trackId":"t","timestamp":1,"data":[0,256]}',
         "binary.data[1]: expected integer from 0 to 255, got 256"),
        ('{"event":"binary","trackId":"t","timestamp":1,"data":[true]}',
         "binary.data[0]: expected integer from 0 to 255, got True"),
        ('{"event":"binary","trackId":"t","timestamp":1,"data":"AAE="}', "binary.data: expected array, got string"),
        ('{"event":"metrics","timestamp":1,"key":"k","duration":1,"data":[]}',
         "metrics.data: expected object, got array"),
        ('{"event":"ringing","trackId":"t","timestamp":1}', 'ringing: missing required field "earlyMedia"'),
    ]
    for text, message in cases:
        with pytest.raises(ProtocolError) as info:
            p.parse_event(text)
        assert str(info.value) == message


def test_unknown_event() -> None:
    text = '{"event":"eou","trackId":"t","timestamp":1,"completed":true}'
    event = p.parse_event(text)
    assert event == p.UnknownEvent("eou", {"event": "eou", "trackId": "t", "timestamp": 1, "completed": True})
    assert json.loads(p.serialize_event(event)) == json.loads(text)
    assert p.serialize_event(p.UnknownEvent("x", {"a": 1})) == '{"event":"x","a":1}'
    # Extra fields of known events (upstream adds e.g. "refer", "isFiller") are ignored.
    event = p.parse_event('{"event":"answer","trackId":"t","timestamp":1,"sdp":"v=0","refer":true}')
    assert event == p.AnswerEvent(track_id="t", timestamp=1, sdp="v=0")


# ---------------------------------------------------------------------------
# Times


@pytest.mark.parametrize(("ms", "text"), [
    (0, "1970-01-01T00:00:00.000Z"),
    (1640995200123, "2022-01-01T00:00:00.123Z"),
    (1704110730000, "2024-01-01T12:05:30.000Z"),
    (-1, "1969-12-31T23:59:59.999Z"),
    (-62135596800000, "0001-01-01T00:00:00.000Z"),
    (253402300799999, "9999-12-31T23:59:59.999Z"),
])
def test_iso8601(ms: int, text: str) -> None:
    assert p.iso8601(ms) == text
    assert p.parse_iso8601(text) == ms


def test_parse_iso8601_forms() -> None:
    base = 1704110400000      # 2024-01-01T12:00:00Z
    assert p.parse_iso8601("2024-01-01T12:00:00Z") == base
    assert p.parse_iso8601("2024-01-01T12:00:00") == base
    assert p.parse_iso8601("2024-01-01T14:00:00+02:00") == base
    assert p.parse_iso8601("2024-01-01T12:00:00.123456789+00:00") == base + 123
    assert p.parse_iso8601("2024-01-01T12:00:00.9999Z") == base + 999
    for outside in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        with pytest.raises(ValueError, match="outside years 1 to 9999 UTC"):
            p.parse_iso8601(outside)


# ---------------------------------------------------------------------------
# Redaction


SECRET_OPTION: dict[str, Any] = {
    "caller": "sip:a@x",
    "asr": {"provider": "tencent", "secretId": "id1", "secretKey": "key1", "appId": "app"},
    "tts": {"provider": "openai", "apiKey": "key2", "extra": {"api_key": "key3", "voice": "v"}},
    "vad": {"type": "silero", "secretKey": "key4"},
    "sip": {"username": "u", "password": "pw", "headers": {"X-A": "1"}},
    "extra": {"list": [{"apiKey": "key5"}, "plain"], "nothing": None, "secretKey": None},
}


def test_redact_dict_nested_and_not_mutating() -> None:
    original = copy.deepcopy(SECRET_OPTION)
    out = p.redact(SECRET_OPTION)
    assert original == SECRET_OPTION
    assert out == {
        "caller": "sip:a@x",
        "asr": {"provider": "tencent", "secretId": "***", "secretKey": "***", "appId": "app"},
        "tts": {"provider": "openai", "apiKey": "***", "extra": {"api_key": "***", "voice": "v"}},
        "vad": {"type": "silero", "secretKey": "***"},
        "sip": {"username": "u", "password": "***", "headers": {"X-A": "1"}},
        "extra": {"list": [{"apiKey": "***"}, "plain"], "nothing": None, "secretKey": None},
    }
    out["sip"]["headers"]["X-A"] = "changed"
    assert SECRET_OPTION["sip"]["headers"]["X-A"] == "1"    # a deep copy


def test_redact_dataclasses() -> None:
    cmd = p.parse_command(json.dumps({"command": "invite", "option": SECRET_OPTION}))
    assert isinstance(cmd, p.InviteCommand)
    before = copy.deepcopy(cmd.option.raw)
    red = p.redact(cmd)
    assert cmd.option.raw == before and cmd.option.sip is not None and cmd.option.sip.password == "pw"
    o = red.option
    assert o.asr is not None and (o.asr.secret_id, o.asr.secret_key, o.asr.app_id) == ("***", "***", "app")
    assert o.tts is not None and o.tts.secret_key == "***" and o.tts.extra == {"api_key": "***", "voice": "v"}
    assert o.vad is not None and o.vad.secret_key == "***"
    assert o.sip is not None and (o.sip.username, o.sip.password) == ("u", "***")
    assert o.raw == p.redact(SECRET_OPTION)
    assert o.asr.secret_id is not None and o.vad.secret_id is None    # None stays None
    refer = p.parse_command('{"command":"refer","caller":"a","callee":"b",'
                            '"options":{"sip":{"password":"pw"},"asr":{"apiKey":"k"}}}')
    red_refer = p.redact(refer)
    assert isinstance(red_refer, p.ReferCommand) and red_refer.options is not None
    assert red_refer.options.sip == p.SipOption(password="***")
    assert red_refer.options.asr == p.TranscriptionOption(secret_key="***")
    assert "***" not in repr(refer)


def test_secrets_stay_out_of_reprs() -> None:
    cmd = p.parse_command(json.dumps({"command": "invite", "option": SECRET_OPTION}))
    text = repr(cmd)
    for secret in ("key1", "key2", "key4", "pw", "id1"):
        assert secret not in text
    assert "tencent" in text


def test_call_option_echo() -> None:
    cmd = p.parse_command(json.dumps({"command": "invite", "option": {**SECRET_OPTION, "futureKey": 1}}))
    assert isinstance(cmd, p.InviteCommand)
    echo = cmd.option.echo()
    assert echo == p.redact({**SECRET_OPTION, "futureKey": 1})     # as sent, unknown keys too
    built = p.CallOption(caller="1234567890", callee="0987654321", sip=p.SipOption(password="x"))
    assert built.echo() == {"caller": "1234567890", "callee": "0987654321", "sip": {"password": "***"}}


# ---------------------------------------------------------------------------
# Option merging: a per-command option overrides only what it sets


def test_merge_option() -> None:
    call = p.SynthesisOption(provider="tencent", speaker="a", speed=1.2, samplerate=8000, secret_key="k")
    cmd = p.parse_command('{"command":"tts","text":"x","option":{"speaker":"b","volume":5}}')
    assert isinstance(cmd, p.TtsCommand) and cmd.option is not None
    assert cmd.option.fields_set == {"speaker", "volume"}
    merged = p.merge_option(call, cmd.option)
    assert merged == p.SynthesisOption(provider="tencent", speaker="b", speed=1.2, samplerate=8000,
                                       secret_key="k", volume=5)
    # Built in code: non-default values count as set.
    assert p.merge_option(call, p.SynthesisOption(speed=2.0)).speed == 2.0
    assert p.merge_option(call, p.SynthesisOption(speed=2.0)).samplerate == 8000
    assert p.merge_option(call, None) is call
    with pytest.raises(TypeError):
        p.merge_option(call, p.VADOption())


def test_options_serialise_what_was_given() -> None:
    cmd = p.parse_command('{"command":"tts","text":"x","option":{"speed":1.0,"volume":5}}')
    assert json.loads(p.serialize_command(cmd))["option"] == {"speed": 1, "volume": 5}
    assert p.to_dict(p.SynthesisOption()) == {}
    assert p.to_dict(p.SynthesisOption(speed=1.5)) == {"speed": 1.5}


# ---------------------------------------------------------------------------
# Fuzzing and round trips


json_leaves = (st.none() | st.booleans() | st.integers(-(2**64), 2**64)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(json_leaves, lambda c: st.lists(c, max_size=4)
                           | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=20)


def _all_keys() -> list[str]:
    keys = {"command", "event"}
    for cls in (*OPTION_CLASSES.values(), *COMMAND_CLASSES.values(), *EVENT_CLASSES.values()):
        for f in p.wire_fields(cls):
            keys.update((f.key, *f.aliases))
    return sorted(keys)


KEYS = _all_keys()
# Objects built from the protocol's own keys, so that fuzzing reaches the field checks.
keyed_values = st.recursive(
    json_leaves | st.sampled_from(["30s", "500ms", "2024-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
                                   "sip:a@b", *COMMAND_CLASSES]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(KEYS), c, max_size=6),
    max_leaves=30)


def _check_command_outcome(text: str | bytes) -> None:
    try:
        cmd = p.parse_command(text)
    except ProtocolError:
        return
    out = p.serialize_command(cmd)
    out.encode("utf-8")
    assert p.parse_command(out) == cmd


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_fuzz_any_json_value(value: Any) -> None:
    _check_command_outcome(json.dumps(value))


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(COMMAND_CLASSES)), st.dictionaries(st.sampled_from(KEYS), keyed_values, max_size=8))
def test_fuzz_keyed_commands(name: str, body: dict[str, Any]) -> None:
    _check_command_outcome(json.dumps({**body, "command": name}))


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_fuzz_raw_text(text: str) -> None:
    _check_command_outcome(text)


@settings(max_examples=300)
@given(st.binary(max_size=60))
def test_fuzz_raw_bytes(data: bytes) -> None:
    _check_command_outcome(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([*sorted(EVENT_CLASSES), "custom"]),
       st.dictionaries(st.sampled_from(KEYS), keyed_values, max_size=8))
def test_fuzz_keyed_events(name: str, body: dict[str, Any]) -> None:
    try:
        event = p.parse_event(json.dumps({**body, "event": name}))
    except ProtocolError:
        return
    assert p.parse_event(p.serialize_event(event)) == event


def _deferred(cls: type[Any] | None) -> typing.Callable[[], st.SearchStrategy[Any]]:
    assert cls is not None
    return lambda: _strategy(cls)


def _strategy(cls: type[Any]) -> st.SearchStrategy[Any]:
    simple: dict[p.FieldKind, st.SearchStrategy[Any]] = {
        p.FieldKind.STRING: st.text(max_size=12),
        p.FieldKind.BOOLEAN: st.booleans(),
        p.FieldKind.INTEGER: st.integers(0, p.MAX_INT),
        p.FieldKind.NUMBER: st.floats(allow_nan=False, allow_infinity=False),
        p.FieldKind.OBJECT: st.dictionaries(st.text(max_size=8), json_values, max_size=3),
        p.FieldKind.STRING_MAP: st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
        p.FieldKind.BYTES: st.binary(max_size=32),
        p.FieldKind.DURATION: st.floats(min_value=0, allow_infinity=False),
        p.FieldKind.TIME: st.integers(-62135596800000, 253402300799999),
    }
    kwargs = {}
    for f in p.wire_fields(cls):
        s = st.deferred(_deferred(f.option)) if f.kind is p.FieldKind.OPTION else simple[f.kind]
        kwargs[f.attr] = s if f.required or f.default is not None else st.none() | s
    return st.builds(cls, **kwargs)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of([_strategy(cls) for cls in COMMAND_CLASSES.values()]))
def test_commands_round_trip(cmd: Any) -> None:
    text = p.serialize_command(cmd)
    assert p.parse_command(text) == cmd
    assert p.parse_command(text.encode()) == cmd


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of([_strategy(cls) for cls in EVENT_CLASSES.values()]))
def test_events_round_trip(event: Any) -> None:
    text = p.serialize_event(event)
    assert p.parse_event(text) == event
    assert None not in json.loads(text).values()      # absent fields are omitted, never null


@given(st.integers(-62135596800000, 253402300799999))
def test_iso8601_round_trip(ms: int) -> None:
    text = p.iso8601(ms)
    assert ISO_MS.fullmatch(text)
    assert p.parse_iso8601(text) == ms


@given(st.floats(min_value=0, allow_infinity=False))
def test_duration_round_trip(seconds: float) -> None:
    text = p.to_dict(p.CallOption(handshake_timeout=seconds))["handshakeTimeout"]
    assert p.parse_duration(text) == seconds
    assert math.isfinite(p.parse_duration(text))
