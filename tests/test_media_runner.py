"""The media runner: engine event tuples become typed events once, and go to the leg's sink."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from pbx.call import media as typed
from pbx.core import engine as eng
from pbx.core.engine import Engine
from pbx.server.media import LegSink, MediaRunner, UnknownMediaEvent, decode_event

KINDS = {
    eng.SPEAKING: typed.Speaking(10, 5), eng.SILENCE: typed.Silence(10, 5, 100),
    eng.SEGMENT_CAP: typed.SegmentCap(10, 5), eng.DTMF: typed.Dtmf(10, "7"),
    eng.PLAY_STARTED_: typed.PlayStarted(10, 5), eng.PLAY_ENDED_: typed.PlayEnded(10, 5, 100, 120, True),
    eng.PLAY_DROPPED_: typed.PlayDropped(10, 5), eng.RTP_TIMEOUT: typed.RtpTimeout(10, 5),
    eng.LATCHED: typed.Latched(10), eng.RECORDER_ERROR: typed.RecorderError(10, 5),
    eng.INBOUND_OVERFLOW: typed.InboundOverflow(10, 5), eng.RTCP_BYE_: typed.RtcpBye(10),
}
ARGS = {eng.SILENCE: (5, 100, 0, 0), eng.DTMF: (ord("7"), 0, 0, 0), eng.PLAY_ENDED_: (5, 100, 120, 1)}


def test_every_kind_the_engine_reports_has_its_typed_event() -> None:
    engine_kinds = {value for name, value in vars(eng).items()
                    if name.isupper() and isinstance(value, int) and name not in ("INBOUND_BUFFER_SECONDS",)}
    assert engine_kinds == set(KINDS)
    for kind, expected in KINDS.items():
        assert decode_event(kind, 10, *ARGS.get(kind, (5, 0, 0, 0))) == expected


def test_an_unknown_kind_is_an_error() -> None:
    unknown = max(KINDS) + 1
    with pytest.raises(UnknownMediaEvent, match=f"unknown kind {unknown}"):
        decode_event(unknown, 0, 0, 0, 0, 0)


def test_serve_routes_typed_events_and_frames_to_the_sink() -> None:
    runner = MediaRunner(Engine(4))
    events: list[typed.MediaEvent] = []
    frames: list[bytes] = []
    runner.serve(0.0)
    leg = runner.add_leg(LegSink(events.append, frames.append, lambda pcm: None), "stream", "pcm", 0.0)
    leg.enqueue(1, 1)
    leg.append(1, np.full(640, 500, np.int16))
    leg.complete(1)
    for t in range(20, 200, 20):
        runner.serve(float(t))
    assert [type(e) for e in events] == [typed.PlayStarted, typed.PlayEnded]
    assert events[1] == typed.PlayEnded(events[1].at_ms, 1, 40, 40, False)
    assert len(frames) == 2 and all(len(f) == 640 for f in frames)
    assert leg.release() is None and leg.release() is None      # released once
    assert leg.feed(base64.b64decode("AAAA")) == 0              # audio after release is dropped
    runner.serve(220.0)
    assert runner.engine.leg_count == 0
