"""The call core's timers and media, with explicit time: no sockets, no sleeps.

Every timer fires at its moment and not after the call ended: ``autoHangup``, ``waitInputTimeout``,
the ping timeout, ``handshakeTimeout`` and ASR endpointing. The leg is a real engine leg (playout,
VAD and recorder as in production), ticked at the times :class:`CallBench` chooses.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pbx.asr.base import AsrResult
from pbx.call.actions import Close, Disconnect, OpenAsr, SendPing, Synthesize
from pbx.call.media import Dtmf, InboundOverflow, Latched, RecorderError, RtcpBye, RtpTimeout, Silence, Speaking
from pbx.call.speech import ENDPOINT_MS, MAX_BACKLOG_MS, EndUtterance, Feed
from pbx.call.state import CallState
from pbx.protocol import (
    AsrDeltaEvent,
    AsrFinalEvent,
    DtmfEvent,
    ErrorEvent,
    HangupEvent,
    MetricsEvent,
    PingEvent,
    SilenceEvent,
    SpeakingEvent,
    TrackEndEvent,
    TrackStartEvent,
)
from pbx.tts.base import TtsChunk, WordMark
from support.audio import espeak_speech
from tests.support.call_core import CallBench

RATE = 16000


def pcm_tts(ms: int, play_id: str = "p", **fields: object) -> dict[str, object]:
    samples = np.full(RATE * ms // 1000, 3000, dtype="<i2").tobytes()
    return {"command": "tts", "text": base64.b64encode(samples).decode(), "base64": True, "playId": play_id,
            **fields}


def invite(**option: object) -> dict[str, object]:
    return {"command": "invite", "option": {"codec": "pcm", **option}}


def answered(tmp_path: Path, **kwargs: object) -> CallBench:
    bench = CallBench(tmp_path, **kwargs)  # type: ignore[arg-type]
    bench.send(invite())
    assert bench.state is CallState.ANSWERED
    return bench


def hangups(bench: CallBench) -> list[HangupEvent]:
    return bench.of(HangupEvent)


# -- autoHangup ------------------------------------------------------------------------------------
def test_auto_hangup_ends_the_call_the_moment_its_track_ends(tmp_path: Path) -> None:
    bench = answered(tmp_path)
    bench.send(pcm_tts(200, autoHangup=True))
    bench.advance(180)
    assert not hangups(bench)
    bench.advance(100)
    assert bench.names()[-2:] == ["TrackEndEvent", "HangupEvent"]
    end, hangup = bench.of(TrackEndEvent)[0], hangups(bench)[0]
    assert end.duration == 200
    assert (hangup.reason, hangup.initiator) == ("autohangup", "system")
    # trackEnd carries media time, which runs up to one frame ahead of the tick that reports it
    assert -20 <= hangup.timestamp - end.timestamp <= 0
    assert bench.closed() == Close(1000, "call ended")


def test_auto_hangup_does_not_fire_after_the_call_ended_or_an_interrupt(tmp_path: Path) -> None:
    bench = CallBench(tmp_path)
    bench.send(invite(recorder={"recorderFile": "a.wav"}))
    bench.send(pcm_tts(300, autoHangup=True))
    bench.advance(100)
    bench.send({"command": "hangup", "reason": "bye"})
    assert bench.state is CallState.ENDING
    bench.advance(1000)          # the track would have ended; the recording is still closing
    bench.close_recordings()
    assert [(h.reason, h.initiator) for h in hangups(bench)] == [("bye", "user")]

    bench = answered(tmp_path)
    bench.send(pcm_tts(300, autoHangup=True))
    bench.advance(100)
    bench.send({"command": "interrupt"})
    bench.advance(1000)
    assert hangups(bench) == [] and bench.state is CallState.ANSWERED


# -- waitInputTimeout --------------------------------------------------------------------------------
def test_wait_input_timeout_reports_silence_of_the_server_track_at_its_moment(tmp_path: Path) -> None:
    bench = answered(tmp_path)
    bench.send(pcm_tts(100, waitInputTimeout=1.5))
    bench.advance(200)
    end = bench.of(TrackEndEvent)[0]
    ended_at = bench.call.get_timer()
    assert ended_at is not None
    bench.advance(ended_at - bench.now - 1)
    assert not bench.of(SilenceEvent)
    bench.advance(1)
    (silence,) = bench.of(SilenceEvent)
    assert silence.track_id == "serverSideTrack"
    assert silence.start_time == end.timestamp
    assert silence.duration == silence.timestamp - silence.start_time
    assert silence.duration == 1500                    # from the track's end in media time
    bench.advance(5000)
    assert len(bench.of(SilenceEvent)) == 1            # once


@pytest.mark.parametrize("cancel", ["speaking", "dtmf", "tts", "hangup"])
def test_wait_input_is_cancelled_by_input_and_by_the_end(tmp_path: Path, cancel: str) -> None:
    bench = answered(tmp_path)
    bench.send(pcm_tts(100, waitInputTimeout=1.0))
    bench.advance(300)
    if cancel == "speaking":
        bench.call.media_event(Speaking(300, 250), bench.now)
    elif cancel == "dtmf":
        bench.call.media_event(Dtmf(300, "5"), bench.now)
    elif cancel == "tts":
        bench.send(pcm_tts(100, play_id="q"))
    else:
        bench.send({"command": "hangup"})
    bench.collect()
    bench.advance(3000)
    assert [s for s in bench.of(SilenceEvent) if s.track_id == "serverSideTrack"] == []


# -- pings -------------------------------------------------------------------------------------------
def test_pings_go_out_at_the_interval_and_two_unanswered_end_the_call(tmp_path: Path) -> None:
    bench = CallBench(tmp_path, ping_interval_s=1.0)
    start = bench.now
    bench.advance(999)
    assert not bench.of(PingEvent)
    bench.advance(1)
    assert [p.timestamp for p in bench.of(PingEvent)] == [bench.epoch(start + 1000)]
    bench.call.pong(bench.now + 5)            # answered
    bench.advance(1000)
    bench.advance(1000)                         # the ping at 2 s went unanswered: one missed
    bench.advance(999)
    assert len(bench.of(PingEvent)) == 3 and not hangups(bench)
    bench.advance(1)                            # at 4 s the second missed ping ends the call
    assert len(bench.actions_of(SendPing)) == 3
    (hangup,) = hangups(bench)
    assert (hangup.reason, hangup.initiator) == ("ping_timeout", "system")
    assert hangup.timestamp == bench.epoch(start + 4000)
    assert bench.closed() == Close(1011, "ping timeout")
    assert bench.call.get_timer() is None
    bench.advance(10_000)
    assert len(bench.of(PingEvent)) == 3


def test_pings_stop_when_the_call_ends(tmp_path: Path) -> None:
    bench = CallBench(tmp_path, ping_interval_s=0.5)
    bench.advance(600)
    bench.send({"command": "hangup"})
    bench.advance(5000)
    assert len(bench.of(PingEvent)) == 1 and len(hangups(bench)) == 1
    assert CallBench(tmp_path, ping_interval_s=0).call.get_timer() is None


def test_without_ping_events_websocket_pings_still_check_the_client(tmp_path: Path) -> None:
    bench = CallBench(tmp_path, ping_interval_s=0, liveness_interval_s=1.0)
    start = bench.now
    bench.advance(2999)
    assert len(bench.actions_of(SendPing)) == 2 and not hangups(bench)
    bench.advance(1)
    assert bench.of(PingEvent) == []                       # the client asked for no ping events
    (hangup,) = hangups(bench)
    assert (hangup.reason, hangup.timestamp) == ("ping_timeout", bench.epoch(start + 3000))


def test_a_connection_that_never_invites_is_ended(tmp_path: Path) -> None:
    bench = CallBench(tmp_path, invite_timeout_s=5.0)
    start = bench.now
    bench.advance(4999)
    assert not hangups(bench)
    bench.advance(1)
    (hangup,) = hangups(bench)
    assert (hangup.reason, hangup.initiator, hangup.timestamp) == ("handshake_timeout", "system",
                                                                   bench.epoch(start + 5000))
    assert bench.closed() == Close(1000, "call ended")
    for first in ({"command": "invite", "option": {"codec": "pcm"}}, {"command": "ringing"}):
        bench = CallBench(tmp_path, invite_timeout_s=5.0)
        bench.advance(4000)
        bench.send(first)
        bench.advance(10_000)
        assert not hangups(bench), first


# -- handshakeTimeout ----------------------------------------------------------------------------------
def test_handshake_timeout_ends_a_call_not_answered_in_time(tmp_path: Path) -> None:
    bench = CallBench(tmp_path, auto_answer=False)
    start = bench.now
    bench.send(invite(handshakeTimeout="2s"))
    assert bench.state is CallState.CALLING
    bench.advance(1999)
    assert not hangups(bench)
    bench.advance(1)
    (hangup,) = hangups(bench)
    assert (hangup.reason, hangup.initiator) == ("handshake_timeout", "system")
    assert hangup.timestamp == bench.epoch(start + 2000)
    assert bench.actions_of(Disconnect) == [Disconnect("handshake_timeout")]   # the transport cancels


def test_handshake_timeout_is_cleared_by_the_answer(tmp_path: Path) -> None:
    bench = CallBench(tmp_path, auto_answer=False)
    bench.send(invite(handshakeTimeout="500ms"))
    bench.advance(400)
    bench.answer()
    bench.advance(5000)
    assert not hangups(bench) and bench.state is CallState.ANSWERED


# -- ASR ----------------------------------------------------------------------------------------------------
def asr_call(tmp_path: Path) -> CallBench:
    bench = CallBench(tmp_path)
    bench.send(invite(vad={"type": "webrtc"}, asr={"provider": "pocketsphinx"}))
    assert [a.option.provider for a in bench.actions_of(OpenAsr)] == ["pocketsphinx"]
    bench.open_asr()
    return bench


def jobs(bench: CallBench) -> list[type]:
    out = []
    while (job := bench.call.next_asr_job(bench.now)) is not None:
        out.append(type(job))
    return out


def test_an_utterance_ends_half_a_second_into_a_silence(tmp_path: Path) -> None:
    bench = asr_call(tmp_path)
    bench.call.media_event(Speaking(0, 0), bench.now)
    bench.call.media_event(Silence(100, 0, 100), bench.now)   # 100 ms of silence so far
    silence_at = bench.now
    assert bench.call.get_timer() == silence_at + ENDPOINT_MS - 100
    bench.advance(ENDPOINT_MS - 100 - 1)
    assert EndUtterance not in jobs(bench)
    bench.advance(1)
    assert jobs(bench)[-1] is EndUtterance


def test_speech_that_resumes_keeps_the_utterance_and_the_end_stops_endpointing(tmp_path: Path) -> None:
    bench = asr_call(tmp_path)
    bench.call.media_event(Speaking(0, 0), bench.now)
    bench.call.media_event(Silence(100, 0, 100), bench.now)
    bench.advance(200)
    bench.call.media_event(Speaking(300, 300), bench.now)      # the speaker goes on
    bench.advance(1000)
    assert EndUtterance not in jobs(bench)
    bench.call.media_event(Silence(1400, 1300, 100), bench.now)
    bench.send({"command": "hangup"})
    bench.advance(2000)
    assert EndUtterance not in jobs(bench)


def test_a_segment_cap_ends_the_utterance_at_once(tmp_path: Path) -> None:
    from pbx.call.media import SegmentCap
    bench = asr_call(tmp_path)
    bench.call.media_event(Speaking(0, 0), bench.now)
    bench.call.media_event(SegmentCap(1000, 0), bench.now)
    assert jobs(bench)[-1] is EndUtterance


def test_recognised_text_becomes_delta_final_and_metrics_events_in_media_time(tmp_path: Path) -> None:
    bench = asr_call(tmp_path)
    stream_zero = bench.call.recognition.stream_epoch_ms if bench.call.recognition else 0
    bench.call.asr_partials([AsrResult("call", False, 200, 500)], bench.now)   # before the onset: no metric
    bench.call.media_event(Speaking(0, 0), bench.now)
    onset = bench.now
    bench.call.media_event(Silence(100, 0, 500), bench.now)    # already 500 ms: ends at once
    bench.advance(0)
    bench.call.handle_timer(bench.now)
    assert jobs(bench)[-1] is EndUtterance
    bench.now += 37
    bench.call.asr_final(AsrResult("call stella", True, 200, 900), bench.now)
    bench.call.asr_final(None, bench.now)              # nothing recognised in the next: no event
    bench.collect()
    delta, final = bench.of(AsrDeltaEvent)[0], bench.of(AsrFinalEvent)[0]
    assert (delta.index, delta.text, delta.start_time, delta.end_time) == (1, "call", stream_zero + 200,
                                                                          stream_zero + 500)
    assert (final.index, final.text, final.start_time, final.end_time) == (1, "call stella", stream_zero + 200,
                                                                          stream_zero + 900)
    took = round(bench.now - onset)
    assert [(m.key, m.duration, m.data) for m in bench.of(MetricsEvent)] == [
        ("ttfb.asr.pocketsphinx", took, {"index": 1, "provider": "pocketsphinx"}),
        ("completed.asr.pocketsphinx", took, {"index": 1, "provider": "pocketsphinx"})]
    assert len(bench.of(AsrFinalEvent)) == 1 and bench.call.recognition is not None
    assert bench.call.recognition.index == 2


def test_a_recogniser_that_ends_sentences_itself_gives_finals_with_its_partials(tmp_path: Path) -> None:
    bench = asr_call(tmp_path)
    bench.call.media_event(Speaking(0, 0), bench.now)
    bench.now += 120
    bench.call.asr_partials([AsrResult("hello", False, 0, 300)], bench.now)
    bench.now += 200
    bench.call.asr_partials([AsrResult("hello there", True, 0, 600), AsrResult("how", False, 700, 900)],
                            bench.now)
    bench.now += 50
    bench.call.asr_final(None, bench.now)              # the flush found nothing more
    bench.call.media_event(Speaking(2000, 2000), bench.now)   # the next utterance: a new onset
    bench.now += 400
    bench.call.asr_partials([AsrResult("how are you", True, 700, 1900)], bench.now)
    bench.collect()
    assert [(e.index, e.text) for e in bench.of(AsrFinalEvent)] == [(1, "hello there"), (2, "how are you")]
    assert [(e.index, e.text) for e in bench.of(AsrDeltaEvent)] == [(1, "hello"), (2, "how")]
    assert [(m.key, m.duration, m.data["index"]) for m in bench.of(MetricsEvent)] == [
        ("ttfb.asr.pocketsphinx", 120, 1), ("completed.asr.pocketsphinx", 320, 1),
        ("ttfb.asr.pocketsphinx", 400, 2), ("completed.asr.pocketsphinx", 400, 2)]   # "how" came before its onset


def test_the_asr_backlog_is_bounded_and_says_so_once(tmp_path: Path) -> None:
    bench = asr_call(tmp_path)
    chunk = np.zeros(RATE // 10, np.int16)          # 100 ms
    for _ in range(MAX_BACKLOG_MS // 100 + 50):      # the provider never takes a job: 15 s of audio
        bench.call.asr_audio(chunk, bench.now)
    bench.collect()
    recognition = bench.call.recognition
    assert recognition is not None and recognition.backlog_ms == MAX_BACKLOG_MS
    assert recognition.dropped_ms == 5000
    assert [(e.sender, e.error) for e in bench.of(ErrorEvent)] == [
        ("asr", "pocketsphinx is more than 10 s behind the call; the oldest audio was dropped")]
    assert set(jobs(bench)) == {Feed}


def test_real_speech_through_the_engine_gives_vad_events_in_media_time(tmp_path: Path) -> None:
    bench = CallBench(tmp_path)
    bench.send(invite(vad={"type": "webrtc"}))
    leg = bench.call.leg
    assert leg is not None
    speech = espeak_speech(RATE, text="hang up the phone")
    audio = np.concatenate([np.zeros(RATE // 2, np.int16), speech, np.zeros(RATE, np.int16)])
    leg.feed(audio.astype("<i2").tobytes())       # type: ignore[attr-defined]  (the stream leg of /call)
    bench.advance(len(audio) * 1000 // RATE + 100)
    names = [type(e).__name__ for e in bench.events if isinstance(e, SpeakingEvent | SilenceEvent)]
    assert names[0] == "SpeakingEvent" and names[-1] == "SilenceEvent"
    first = bench.of(SpeakingEvent)[0]
    answered_at = bench.call.answered_ms or 0
    assert abs(first.start_time - answered_at - 500) <= 80          # the speech starts 500 ms in
    assert all(e.timestamp >= e.start_time for e in bench.of(SpeakingEvent))


# -- other media events ------------------------------------------------------------------------------------
def test_every_media_event_has_its_outcome(tmp_path: Path) -> None:
    bench = answered(tmp_path)
    call = bench.call
    call.media_event(Dtmf(40, "#"), bench.now)
    call.media_event(RecorderError(60, 28), bench.now)
    call.media_event(InboundOverflow(80, 480), bench.now)
    call.media_event(Latched(100), bench.now)
    call.media_event(RtcpBye(120), bench.now)
    bench.collect()
    assert [type(e) for e in bench.events[1:]] == [DtmfEvent, ErrorEvent, ErrorEvent]
    assert bench.events[1].digit == "#"
    assert [(e.sender, e.error) for e in bench.of(ErrorEvent)] == [
        ("recorder", "recording stopped: No space left on device"),
        ("media", "inbound audio buffer full: 480 samples dropped (send audio in real time)")]
    start = bench.call.leg.start_ms if bench.call.leg else 0
    assert call.latched_ms == round(start + 100 + bench.runner.engine.epoch_offset_ms)
    assert call.rtcp_bye_ms == round(start + 120 + bench.runner.engine.epoch_offset_ms)
    call.media_event(RtpTimeout(5000, 5000), bench.now)
    bench.collect()
    assert (hangups(bench)[0].reason, hangups(bench)[0].initiator) == ("rtp_timeout", "system")


# -- playback work ------------------------------------------------------------------------------------------
def test_synthesis_is_an_action_and_its_chunks_play_in_order(tmp_path: Path) -> None:
    bench = answered(tmp_path)
    bench.send({"command": "tts", "text": "hello world", "playId": "t", "option": {"volume": 10}})
    (synth,) = bench.actions_of(Synthesize)
    assert synth.request.text == "hello world" and synth.request.samplerate == RATE
    assert synth.request.volume == 10 and synth.option.volume == 10
    bench.now += 25
    chunk = np.full(1600, 1000, np.int16)
    bench.call.tts_chunk(synth.item_id, TtsChunk(chunk, (WordMark(0, 0),)), bench.now)
    bench.call.tts_chunk(synth.item_id, TtsChunk(chunk, (WordMark(1600, 1),)), bench.now)   # from the text's start
    bench.now += 10
    bench.call.work_done(synth.item_id, None, bench.now)
    bench.collect()
    assert [(m.key, m.duration, m.data) for m in bench.of(MetricsEvent)] == [
        ("ttfb.tts.espeak", 25, {"playId": "t", "provider": "espeak"}),
        ("completed.tts.espeak", 35, {"playId": "t", "provider": "espeak"})]
    bench.advance(400)
    assert [type(e) for e in bench.events if isinstance(e, TrackStartEvent | TrackEndEvent)] == [
        TrackStartEvent, TrackEndEvent]
    assert bench.of(TrackEndEvent)[0].duration == 200
    played = np.frombuffer(b"".join(bench.frames), dtype="<i2")
    assert set(played[played != 0].tolist()) == {2000}        # volume 10: twice the amplitude


def test_the_call_core_does_no_io() -> None:
    """It never imports asyncio, websockets, the engine or the server."""
    code = ("import sys, pbx.call.core\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('asyncio', 'websockets', 'socket')"
            " or m.startswith(('pbx.core', 'pbx.server'))]\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_utterance_ends_after_twenty_seconds_of_audio_whatever_vad_says(tmp_path: Path) -> None:
    from pbx.call.speech import MAX_UTTERANCE_MS
    bench = asr_call(tmp_path)
    chunk = np.zeros(RATE // 10, np.int16)
    ends = []
    for i in range(MAX_UTTERANCE_MS // 100 * 2 + 5):       # 40.5 s of audio, no silence event
        bench.call.asr_audio(chunk, bench.now)
        ends += [i for job in jobs(bench) if job is EndUtterance]
    assert ends == [MAX_UTTERANCE_MS // 100, 2 * MAX_UTTERANCE_MS // 100 + 1]


# -- inbound SIP: the ringtone on early media, the parties in hangup ---------------------------------
def test_a_ringtone_plays_on_early_media_until_the_answer_and_hangup_names_the_caller(tmp_path: Path) -> None:
    from pbx.call.actions import Load, Ring
    from pbx.protocol import IncomingEvent, InterruptionEvent

    bench = CallBench(tmp_path, auto_answer=False)
    bench.call.incoming("sip:alice@127.0.0.1:5062", "sip:bot@127.0.0.1", "v=0", bench.now)
    bench.collect()
    assert [(e.caller, e.callee) for e in bench.of(IncomingEvent)] == [("sip:alice@127.0.0.1:5062",
                                                                      "sip:bot@127.0.0.1")]
    bench.send({"command": "ringing", "earlyMedia": True, "ringtone": "ring.wav"})
    assert [(a.early_media, a.ringtone) for a in bench.actions_of(Ring)] == [(True, "ring.wav")]
    assert bench.actions_of(Load) == []                 # no leg yet: nothing to play on
    bench.call.early_media(bench.new_leg(), bench.now)
    bench.collect()
    (load,) = bench.actions_of(Load)
    assert load.url == "ring.wav"
    bench.call.play_loaded(load.item_id, np.full(RATE * 5, 2000, dtype=np.int16), bench.now)
    bench.call.work_done(load.item_id, None, bench.now)
    bench.advance(200)
    assert bench.names()[-1] == "TrackStartEvent"
    mark = len(bench.events)
    bench.send({"command": "accept", "option": {"codec": "pcm"}})
    bench.call.answered(None, "v=0", bench.now)
    bench.collect()
    bench.advance(100)
    assert bench.names(mark)[:2] == ["AnswerEvent", "InterruptionEvent"] and bench.of(InterruptionEvent, mark)
    bench.send({"command": "hangup"})
    bench.close_recordings()
    (hangup,) = hangups(bench)
    assert hangup.from_ is not None and (hangup.from_.username, hangup.from_.realm) == ("alice", "127.0.0.1")
    assert hangup.to is not None and hangup.to.username == "bot"
    assert hangup.extra is None        # a stream leg carries no RTP figures


# -- dtmf (our extension) ----------------------------------------------------------------------------
def test_dtmf_goes_out_as_rfc_4733_events_and_bad_digits_get_an_error(tmp_path: Path) -> None:
    bench = CallBench(tmp_path, dtmf_payload_type=101)
    bench.send(invite(codec="pcmu"))
    assert bench.send({"command": "dtmf", "digits": "1#"}) == []
    bench.advance(1500)
    events = [(packet[12], bool(packet[13] & 0x80)) for packet in bench.frames if packet[1] & 0x7F == 101]
    assert [code for code, end in events if end][::3] == [1, 11]       # each end is sent three times
    assert {code for code, _ in events} == {1, 11}
    for digits, why in (("12x", "is not 1 to 32 of 0-9"), ("", "is not 1 to 32"), ("1" * 33, "is not 1 to 32")):
        (error,) = bench.send({"command": "dtmf", "digits": digits})
        assert isinstance(error, ErrorEvent) and why in error.error


def test_dtmf_needs_telephone_event_and_an_answered_call(tmp_path: Path) -> None:
    bench = answered(tmp_path)                  # a stream leg: no telephone-event
    (error,) = bench.send({"command": "dtmf", "digits": "5"})
    assert isinstance(error, ErrorEvent) and "telephone-event" in error.error
    early = CallBench(tmp_path / "new")
    (error,) = early.send({"command": "dtmf", "digits": "5"})
    assert isinstance(error, ErrorEvent) and error.error == "dtmf: no call is answered yet"
