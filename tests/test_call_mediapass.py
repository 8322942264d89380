"""The media pass without I/O: the call core's decisions (explicit time, a real engine leg) and the
wire framings (pcm, Twilio Media Streams, checked against Twilio's published sample messages)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pbx.call.actions import CloseMediaPass, MediaPassMarks, OpenMediaPass
from pbx.core.g711 import ulaw_encode
from pbx.errors import ProviderError
from pbx.protocol import ErrorEvent, MediaPassOption
from pbx.server.mediapass import ACCOUNT_SID, Audio, Clear, Mark, PcmFraming, Refused, TwilioFraming
from tests.support.call_core import CallBench

FIXTURES = Path(__file__).parent / "fixtures" / "mediapass" / "twilio"
URL = "ws://127.0.0.1:9/media"
TTS_REFUSED = "tts refused: the mediaPass service plays to the caller while it is connected"


def tone(freq: float, seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def loud_frames(bench: CallBench, since: int = 0) -> int:
    """Frames (20 ms, pcm codec) with audio in them, from ``since`` on."""
    return sum(1 for f in bench.frames[since:] if np.abs(np.frombuffer(f, dtype="<i2")).max() > 1000)


def bench_with_pass(tmp_path: Path, **media_pass: Any) -> CallBench:
    bench = CallBench(tmp_path)
    option = {"url": URL, "inputSampleRate": 8000, "outputSampleRate": 8000, "protocol": "twilio", **media_pass}
    bench.send({"command": "invite", "option": {"codec": "pcm", "mediaPass": option, "extra": {"customer": "c-42",
                                                                                             "vip": True}}})
    return bench


def errors(bench: CallBench, since: int = 0) -> list[tuple[str, str, int | None]]:
    return [(e.sender, e.error, e.code) for e in bench.of(ErrorEvent, since)]


def test_answer_opens_the_pass_and_tts_play_are_refused_until_it_ends(tmp_path: Path) -> None:
    bench = bench_with_pass(tmp_path)
    [action] = bench.actions_of(OpenMediaPass)
    assert action.option.url == URL and action.option.protocol == "twilio"
    assert action.parameters == {"customer": "c-42", "vip": "True"}     # start.customParameters
    mark = len(bench.events)
    bench.send({"command": "tts", "text": "hello", "playId": "p"})         # opening: refused already
    bench.call.media_pass_opened(bench.now)
    bench.send({"command": "play", "url": "x.wav"})
    assert errors(bench, mark) == [("tts", TTS_REFUSED, None),
                                   ("play", TTS_REFUSED.replace("tts", "play", 1), None)]
    bench.call.media_pass_ended("gone", bench.now)
    bench.collect()
    assert errors(bench, mark)[-1] == ("mediaPass", "gone", None)
    pcm = np.full(320, 1000, dtype="<i2").tobytes()
    bench.send({"command": "tts", "text": base64.b64encode(pcm).decode(), "base64": True, "playId": "after"})
    bench.advance(100)
    assert "TrackEndEvent" in bench.names(mark)                         # the server plays again


def test_the_services_audio_plays_and_a_mark_is_answered_once_it_has_played(tmp_path: Path) -> None:
    bench = bench_with_pass(tmp_path)
    bench.call.media_pass_opened(bench.now)
    start = len(bench.frames)
    bench.call.media_pass_audio(tone(1000, 0.5), bench.now)
    bench.call.media_pass_mark("first", bench.now)
    bench.call.media_pass_audio(tone(1000, 0.3), bench.now)
    bench.call.media_pass_mark("second", bench.now)
    bench.collect()
    assert not bench.actions_of(MediaPassMarks)
    bench.advance(440)
    assert not bench.actions_of(MediaPassMarks)                     # 0.5 s not yet played
    bench.advance(120)
    assert [a.names for a in bench.actions_of(MediaPassMarks)] == [("first",)]
    bench.advance(300)
    assert [a.names for a in bench.actions_of(MediaPassMarks)] == [("first",), ("second",)]
    assert 39 <= loud_frames(bench, start) <= 41                    # 0.8 s, no gap between the items
    bench.call.media_pass_mark("idle", bench.now)                    # nothing queued: answered at once
    bench.collect()
    assert bench.actions_of(MediaPassMarks)[-1].names == ("idle",)
    assert not errors(bench)


def test_clear_drops_the_queued_audio_and_answers_its_marks(tmp_path: Path) -> None:
    bench = bench_with_pass(tmp_path)
    bench.call.media_pass_opened(bench.now)
    bench.call.media_pass_audio(tone(1000, 2.0), bench.now)
    bench.call.media_pass_mark("end-of-reply", bench.now)
    bench.advance(300)
    assert not bench.actions_of(MediaPassMarks)
    bench.call.media_pass_clear(bench.now)
    bench.advance(40)
    assert [a.names for a in bench.actions_of(MediaPassMarks)] == [("end-of-reply",)]
    after = len(bench.frames)
    bench.advance(500)
    assert loud_frames(bench, after) == 0
    bench.call.media_pass_audio(tone(1000, 0.2), bench.now)           # the service speaks again
    bench.advance(300)
    assert 9 <= loud_frames(bench, after) <= 11


def test_the_interrupt_command_cuts_the_services_audio(tmp_path: Path) -> None:
    bench = bench_with_pass(tmp_path)
    bench.call.media_pass_opened(bench.now)
    bench.call.media_pass_audio(tone(1000, 2.0), bench.now)
    bench.advance(200)
    bench.send({"command": "interrupt"})
    bench.advance(40)
    after = len(bench.frames)
    bench.advance(500)
    assert loud_frames(bench, after) == 0
    assert not errors(bench)


def test_failure_keeps_the_providers_code_and_the_call_goes_on(tmp_path: Path) -> None:
    bench = bench_with_pass(tmp_path)
    bench.call.media_pass_failed(ProviderError("mediaPass", "mediaPass refused the credentials: HTTP 403", 403),
                                 bench.now)
    bench.collect()
    assert errors(bench) == [("mediaPass", "mediaPass refused the credentials: HTTP 403", 403)]
    bench.call.media_pass_audio(tone(1000, 0.2), bench.now)           # late audio of a failed pass: ignored
    start = len(bench.frames)
    bench.advance(300)
    assert loud_frames(bench, start) == 0
    assert bench.call.media_pass is not None and not bench.call.media_pass.active


def test_hangup_closes_the_pass_before_the_call_closes(tmp_path: Path) -> None:
    bench = bench_with_pass(tmp_path)
    bench.call.media_pass_opened(bench.now)
    bench.send({"command": "hangup"})
    kinds = [type(a).__name__ for a in bench.actions]
    assert kinds.index("CloseMediaPass") < kinds.index("Close")
    assert len(bench.actions_of(CloseMediaPass)) == 1
    bench.call.media_pass_ended("late", bench.now)                     # nothing after the hangup
    bench.collect()
    assert not errors(bench)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("protocol", "sip", "mediaPass.protocol: 'sip' is not one of pcm, twilio"),
    ("inputSampleRate", 4000, "mediaPass.inputSampleRate: must be 8000-192000 Hz, got 4000"),
    ("packetSize", 3, "mediaPass.packetSize: must be an even number of bytes from 2 to 1048576, got 3"),
])
def test_a_bad_option_is_an_error_and_no_connection(tmp_path: Path, field: str, value: Any, message: str) -> None:
    bench = bench_with_pass(tmp_path, **{field: value})
    assert errors(bench) == [("mediaPass", message, None)]
    assert not bench.actions_of(OpenMediaPass)
    assert bench.call.media_pass is None


# -- the framings -----------------------------------------------------------------------------------------------
def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    assert data["source"].startswith("https://www.twilio.com/docs/voice/media-streams/websocket-messages")
    message: dict[str, Any] = data["message"]
    return message


def shape(value: Any) -> Any:
    """The keys of a message, recursively, with the JSON type of each leaf (customParameters: free keys)."""
    if isinstance(value, dict):
        return {k: "object" if k == "customParameters" else shape(v) for k, v in value.items()}
    return type(value).__name__


def twilio() -> TwilioFraming:
    option = MediaPassOption(url=URL, input_sample_rate=8000, output_sample_rate=8000, protocol="twilio")
    return TwilioFraming(option, "call-7", {"customer": "c-42"})


def test_twilio_messages_to_the_service_have_twilios_shape() -> None:
    framing = twilio()
    connected, start = (json.loads(m) for m in framing.opening())
    assert connected == fixture("connected")
    assert shape(start) == shape(fixture("start"))
    assert start["start"]["callSid"] == "call-7" and start["start"]["accountSid"] == ACCOUNT_SID
    assert start["start"]["customParameters"] == {"customer": "c-42"}
    assert start["start"]["mediaFormat"] == fixture("start")["start"]["mediaFormat"]
    media = [json.loads(m) for m in framing.audio(tone(440, 0.05))]    # 50 ms: two whole 20 ms chunks
    assert [m["media"]["chunk"] for m in media] == ["1", "2"]
    assert [m["media"]["timestamp"] for m in media] == ["0", "20"]
    assert [m["sequenceNumber"] for m in media] == ["2", "3"]
    assert {len(base64.b64decode(m["media"]["payload"])) for m in media} == {160}
    assert shape(media[0]) == shape(fixture("media"))
    [next_media] = [json.loads(m) for m in framing.audio(tone(440, 0.01))]   # with the 10 ms held back
    assert next_media["media"]["chunk"] == "3"
    [mark] = [json.loads(m) for m in framing.marks(("my label",))]
    assert shape(mark) == shape(fixture("mark_answer")) and mark["mark"] == {"name": "my label"}
    [stop] = [json.loads(m) for m in framing.closing()]
    assert shape(stop) == shape(fixture("stop")) and stop["stop"]["callSid"] == "call-7"
    assert len({m["streamSid"] for m in (start, *media, mark, stop)}) == 1


def test_twilio_messages_from_the_service() -> None:
    framing = twilio()
    assert framing.received(json.dumps(fixture("mark_from_service"))) == [Mark("my label")]
    assert framing.received(json.dumps(fixture("clear_from_service"))) == [Clear()]
    # Twilio's sample payload is not whole base64 ("a3242sa"): refused, and the connection goes on
    assert framing.received(json.dumps(fixture("media_from_service"))) == [
        Refused("mediaPass: media.payload is not base64: 'a3242sa'")]
    payload = base64.b64encode(ulaw_encode(tone(500, 0.1, 8000))).decode()
    [audio] = framing.received(json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": payload}}))
    assert isinstance(audio, Audio) and abs(len(audio.pcm) - 1600) <= 2      # 100 ms at 16 kHz
    assert framing.received("{") == [Refused("mediaPass: message is not JSON: '{'")]
    assert framing.received(b"\x00\x01") == [
        Refused("mediaPass: binary message ignored: protocol twilio takes JSON text messages")]
    assert framing.received('{"event": "dance"}') == [
        Refused("mediaPass: unknown event 'dance' (expected media, mark or clear)")]
    assert framing.received('{"event": "mark"}') == [Refused("mediaPass: mark message without mark.name")]


def test_pcm_framing_packets_rates_and_split_samples() -> None:
    option = MediaPassOption(url="ws://h/m?a=1", input_sample_rate=24000, output_sample_rate=8000, packet_size=320)
    framing = PcmFraming(option)
    assert framing.url() == "ws://h/m?a=1&sample_rate=8000&packet_size=320"
    packets = framing.audio(tone(440, 0.1))                         # 100 ms at 8 kHz: 1600 bytes
    assert [len(p) for p in packets] == [320] * 5
    back = np.frombuffer(tone(440, 0.1, 24000).astype("<i2").tobytes(), dtype=np.uint8)
    first = framing.received(back[:1001].tobytes())                  # a sample split across two messages
    second = framing.received(back[1001:].tobytes())
    got = sum(len(item.pcm) for item in (*first, *second) if isinstance(item, Audio))
    assert abs(got - 1600) <= 40                                     # 24 kHz -> 16 kHz (soxr holds a little)
    assert framing.received("hello")[0] == Refused(
        "mediaPass: text message ignored ('hello'): protocol pcm takes binary s16le PCM")
