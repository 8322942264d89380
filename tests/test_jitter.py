"""pbx.core.jitter against its pure-Python oracle (support/oracles/jitter.py) and exact expectations.

Every scenario drives the compiled buffer and the oracle with the same calls through ``Twin``, which
requires identical results call by call; the tests then assert exact outputs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.core import jitter as core
from support.oracles import jitter as oracle
from support.oracles import jitter_trace as trace_mod
from support.oracles.jitter_trace import payload_for

FRAME, LOSS, EXPAND, EVENT = core.FRAME, core.LOSS, core.EXPAND, core.EVENT
SSRC = 0x5EED
TS0 = 1000


class Twin:
    """The compiled buffer and the oracle side by side; every call must give the same answer."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.core = core.JitterBuffer(*args, **kw)
        self.ref = oracle.JitterBuffer(*args, **kw)

    def put(self, seq: int, ts: int, ssrc: int, pt: int, marker: bool, payload: bytes,
            arrival_ms: float) -> int:
        got = self.core.put(seq, ts, ssrc, pt, marker, payload, arrival_ms)
        want = self.ref.put(seq, ts, ssrc, pt, marker, payload, arrival_ms)
        assert got == want, (seq, got, want)
        self.check()
        return got

    def pop(self, now_ms: float) -> tuple[Any, ...] | None:
        got = self.core.pop(now_ms)
        want = self.ref.pop(now_ms)
        assert got == want, (now_ms, got, want)
        self.check()
        return got

    def check(self) -> None:
        assert self.core.stats == self.ref.stats
        assert self.core.target_delay_ms == self.ref.target_delay_ms
        assert self.core.jitter_ms == self.ref.jitter_ms
        assert self.core.buffered == self.ref.buffered
        a, b = self.core.playout_delay_ms, self.ref.playout_delay_ms
        assert a == b or (math.isnan(a) and math.isnan(b))

    @property
    def stats(self) -> dict[str, int]:
        return self.core.stats


def audio(k: int, seq0: int = 0, ts0: int = TS0, marker: bool = False, pt: int = 0) -> tuple[Any, ...]:
    """Fields of the k-th 20 ms packet of a stream (8 kHz), minus the arrival time."""
    seq = (seq0 + k) & 0xFFFF
    return (seq, (ts0 + 160 * k) & 0xFFFFFFFF, SSRC, pt, marker, payload_for(seq))


def drive(tw: Twin, arrivals: list[tuple[float, tuple[Any, ...]]], until_ms: float,
          phase_ms: float = 0.0) -> tuple[list[tuple[Any, ...]], list[int]]:
    """Put ``(arrival, fields)`` in time order and pop at each 20 ms tick until ``until_ms``.
    Returns (outputs as (tick, kind, seq, ts, pt), put results in arrival order)."""
    todo = sorted(arrivals, key=lambda a: a[0])
    outputs: list[tuple[Any, ...]] = []
    results: list[int] = []
    i = 0
    tick = phase_ms
    while tick <= until_ms:
        while i < len(todo) and todo[i][0] <= tick:
            results.append(tw.put(*todo[i][1], todo[i][0]))
            i += 1
        while (item := tw.pop(tick)) is not None:
            kind, seq, ts, ssrc, pt, _marker, payload = item
            assert ssrc == SSRC
            if kind == FRAME:
                assert payload == payload_for(seq)
            outputs.append((tick, kind, seq, ts, pt))
        tick += 20.0
    return outputs, results


def frames(outputs: list[tuple[Any, ...]]) -> list[int]:
    return [seq for _t, kind, seq, _ts, _pt in outputs if kind == FRAME]


# -- basic playout --------------------------------------------------------------------------------

def test_in_order_stream_starts_after_min_delay_and_plays_every_tick() -> None:
    tw = Twin(8000, 160)
    assert tw.pop(0.0) is None                                   # nothing before the first packet
    arrivals = [(20.0 * k + 5.0, audio(k)) for k in range(10)]
    outputs, results = drive(tw, arrivals, 400.0)
    assert results == [core.PUT_OK] * 10
    # transit 5 ms, target 20 ms: the first slot is due at 25 ms, i.e. the tick at 40 ms
    assert outputs[0] == (40.0, FRAME, 0, TS0, 0)
    assert [(t, s) for t, _k, s, _ts, _pt in outputs[:10]] == [(40.0 + 20 * k, k) for k in range(10)]
    assert tw.core.target_delay_ms == 20.0
    assert tw.core.playout_delay_ms == 35.0 or math.isnan(tw.core.playout_delay_ms)
    # after the stream ends: 5 concealed slots, then the clock stops
    assert [k for _t, k, *_ in outputs[10:]] == [LOSS] * 5
    assert tw.stats["played"] == 10 and tw.stats["lost"] == 5


def test_pop_returns_nothing_until_due_and_one_item_per_call() -> None:
    tw = Twin(8000, 160)
    tw.put(*audio(0), 0.0)
    tw.put(*audio(1), 20.0)                                      # both transit 0 ms
    assert tw.pop(19.0) is None
    item = tw.pop(20.0)
    assert item is not None and item[:2] == (FRAME, 0)
    assert tw.pop(20.0) is None                                  # the next slot is due at 40
    assert tw.pop(29.9) is None
    item = tw.pop(30.0)                                          # due from half a frame before
    assert item is not None and item[:2] == (FRAME, 1)
    # a caller that fell behind loops: one item per call
    items = []
    while (it := tw.pop(200.0)) is not None:
        items.append(it[0])
    assert items == [LOSS] * 5


def test_reordered_packets_play_in_sequence_order() -> None:
    tw = Twin(8000, 160)
    times = [5.0, 25.0, 52.0, 46.0, 85.0, 110.0, 104.0, 145.0]  # 3 before 2, 6 before 5
    arrivals = [(t, audio(k)) for k, t in enumerate(times)]
    outputs, _ = drive(tw, arrivals, 300.0)
    assert frames(outputs) == list(range(8))
    assert tw.stats["late"] == 0 and tw.stats["lost"] == 5


def test_reorder_before_playout_starts_lowers_the_start_point() -> None:
    tw = Twin(8000, 160)
    tw.put(*audio(1), 0.0)
    tw.put(*audio(0), 1.0)
    got = []
    for now in (40.0, 60.0):
        item = tw.pop(now)
        assert item is not None
        got.append(item[1])
    assert got == [0, 1]


def test_duplicates_are_dropped_and_counted() -> None:
    tw = Twin(8000, 160)
    assert tw.put(*audio(0), 0.0) == core.PUT_OK
    assert tw.put(*audio(0), 1.0) == core.PUT_DUPLICATE          # waiting
    assert tw.put(*audio(1), 2.0) == core.PUT_OK
    item = tw.pop(20.0)
    assert item is not None and item[1] == 0
    assert tw.put(*audio(0), 21.0) == core.PUT_DUPLICATE         # already played
    item = tw.pop(40.0)
    assert item is not None and item[1] == 1
    assert tw.stats["duplicates"] == 2 and tw.stats["played"] == 2


def test_late_packet_is_concealed_at_its_slot_then_dropped() -> None:
    tw = Twin(8000, 160)
    arrivals = [(20.0 * k + 5.0, audio(k)) for k in range(8) if k != 3]
    arrivals.append((200.0, audio(3)))                           # its slot (tick 100) has passed
    outputs, results = drive(tw, arrivals, 240.0)
    assert (100.0, LOSS, 3, TS0 + 480, 0) in outputs
    assert frames(outputs) == [0, 1, 2, 4, 5, 6, 7]
    assert results[-1] == core.PUT_LATE
    assert tw.stats["late"] == 1
    assert tw.put(*audio(3), 210.0) == core.PUT_DUPLICATE        # the same late packet again


def test_lost_packet_gives_loss_at_the_right_slot() -> None:
    tw = Twin(8000, 160)
    arrivals = [(20.0 * k + 5.0, audio(k, pt=8)) for k in range(10) if k != 4]
    outputs, _ = drive(tw, arrivals, 230.0)
    # slot k is due at tick 40 + 20 k; the LOSS carries the missing seq, its timestamp and the last pt
    assert outputs[4] == (120.0, LOSS, 4, TS0 + 4 * 160, 8)
    assert outputs[5] == (140.0, FRAME, 5, TS0 + 5 * 160, 8)
    assert tw.stats["lost"] == 1 and tw.stats["played"] == 9


def test_sequence_wraparound() -> None:
    tw = Twin(8000, 160)
    seq0 = 65531
    times = [20.0 * k + 5.0 for k in range(10)]
    times[4], times[5] = times[5], times[4] - 1.0                # 0 arrives before 65535
    arrivals = [(t, audio(k, seq0=seq0, ts0=2**32 - 480)) for k, t in enumerate(times)]
    outputs, results = drive(tw, arrivals, 220.0)
    assert results == [core.PUT_OK] * 10
    assert frames(outputs) == [65531, 65532, 65533, 65534, 65535, 0, 1, 2, 3, 4]
    assert [ts for _t, k, _s, ts, _p in outputs if k == FRAME][2:5] == [2**32 - 160, 0, 160]


# -- resync ---------------------------------------------------------------------------------------

def test_ssrc_change_flushes_and_restarts() -> None:
    tw = Twin(8000, 160)
    for k in range(3):
        tw.put(*audio(k), 5.0 + k)
    item = tw.pop(40.0)
    assert item is not None and item[1] == 0
    seq, ts, _ssrc, pt, marker, payload = audio(0, seq0=500, ts0=77)
    assert tw.put(seq, ts, 0xBEEF, pt, marker, payload, 50.0) == core.PUT_RESYNC
    assert tw.stats["resyncs"] == 1 and tw.core.buffered == 1
    assert tw.pop(60.0) is None                                  # new playout clock: due at 70
    item = tw.pop(80.0)
    assert item is not None and item[:4] == (FRAME, 500, 77, 0xBEEF)


def test_timestamp_jump_resyncs() -> None:
    tw = Twin(8000, 160)
    arrivals = [(20.0 * k + 5.0, audio(k)) for k in range(5)]
    # same SSRC, sequence continues, timestamp leaps 10 s ahead
    arrivals += [(20.0 * k + 5.0, audio(k, ts0=TS0 + 80000)) for k in range(5, 10)]
    outputs, results = drive(tw, arrivals, 400.0)
    assert results[5] == core.PUT_RESYNC and results[6:] == [core.PUT_OK] * 4
    assert tw.stats["resyncs"] == 1
    # packet 4 was still waiting when the flush came; the new clock starts at packet 5
    assert frames(outputs) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert (140.0, FRAME, 5, TS0 + 80000 + 5 * 160, 0) in outputs


def test_sequence_jump_forward_resyncs_backward_needs_confirmation() -> None:
    tw = Twin(8000, 160)
    tw.put(*audio(0), 0.0)
    tw.put(*audio(1), 20.0)
    assert tw.put(*audio(5000), 40.0) == core.PUT_RESYNC          # > 3000 ahead
    assert tw.put(*audio(5001), 60.0) == core.PUT_OK
    # 200 behind: a stray old packet is dropped as late ...
    assert tw.put(*audio(4801), 80.0) == core.PUT_LATE
    assert tw.put(*audio(4700), 81.0) == core.PUT_LATE
    # ... unless the next packet continues from it
    assert tw.put(*audio(4701), 82.0) == core.PUT_RESYNC
    assert tw.stats["resyncs"] == 2 and tw.stats["late"] == 2


# -- bounds ---------------------------------------------------------------------------------------

def test_capacity_overflow_drops_and_counts() -> None:
    tw = Twin(8000, 160, capacity=8)
    results = [tw.put(*audio(k), 0.0) for k in range(20)]
    assert results == [core.PUT_OK] * 8 + [core.PUT_OVERFLOW] * 12
    assert tw.stats["overflow"] == 12 and tw.core.buffered == 8
    outputs, _ = drive(tw, [], 200.0)
    assert frames(outputs) == list(range(8))


def test_idle_buffer_moves_its_window_to_a_far_packet() -> None:
    tw = Twin(8000, 160, capacity=8)
    outputs, _ = drive(tw, [(5.0, audio(0)), (605.0, audio(30))], 700.0)
    assert frames(outputs) == [0, 30]
    assert tw.stats["overflow"] == 0


def test_oversized_payload_is_dropped_not_crashing() -> None:
    tw = Twin(8000, 160, max_payload=100)
    seq, ts, ssrc, pt, marker, _ = audio(0)
    assert tw.put(seq, ts, ssrc, pt, marker, bytes(101), 0.0) == core.PUT_OVERSIZED
    assert tw.put(seq, ts, ssrc, pt, marker, bytes(100), 0.0) == core.PUT_OK
    assert tw.stats["oversized"] == 1
    item = tw.pop(20.0)
    assert item is not None and item[6] == bytes(100)


# -- adaptation -----------------------------------------------------------------------------------

def jitter_profile(seconds: float, jitter_at: Any, seed: int = 7) -> list[tuple[float, tuple[Any, ...]]]:
    rng = np.random.default_rng(seed)
    count = int(seconds * 50)
    return [(20.0 * k + 30.0 + float(rng.random()) * jitter_at(20.0 * k), audio(k, seq0=100))
            for k in range(count)]


def test_target_rises_under_jitter_and_falls_back_when_calm() -> None:
    tw = Twin(8000, 160)

    def spread(t: float) -> float:
        return 80.0 if 5000.0 <= t < 15000.0 else 4.0

    arrivals = jitter_profile(35.0, spread)
    samples = {}
    todo = sorted(arrivals, key=lambda a: a[0])
    i = 0
    tick = 0.0
    while tick <= 35000.0:
        while i < len(todo) and todo[i][0] <= tick:
            tw.put(*todo[i][1], todo[i][0])
            i += 1
        while tw.pop(tick) is not None:
            pass
        if tick in (4000.0, 14000.0, 34000.0):
            samples[tick] = (tw.core.target_delay_ms, tw.core.playout_delay_ms)
        tick += 20.0
    calm, jittery, calm_again = samples[4000.0], samples[14000.0], samples[34000.0]
    assert calm[0] == 20.0                                       # clamped to min_delay_ms
    assert 75.0 <= jittery[0] <= 81.0                            # ~ p99.5 of uniform 0..80
    assert jittery[1] >= jittery[0]                              # the playout delay followed
    assert calm_again[0] == 20.0
    assert calm_again[1] < 20.0 + 20.0 + 2.0                     # shrunk back within one frame
    assert tw.stats["expanded"] >= 3 and tw.stats["skipped"] >= 2
    assert tw.stats["late"] <= 30


def test_target_is_clamped_to_max_delay() -> None:
    tw = Twin(8000, 160, min_delay_ms=40.0, max_delay_ms=120.0)
    arrivals = jitter_profile(12.0, lambda t: 400.0)
    drive(tw, arrivals, 12000.0)
    assert tw.core.target_delay_ms == 120.0


def test_silence_gap_restarts_the_clock_with_the_target_delay() -> None:
    tw = Twin(8000, 160)
    first = [(20.0 * k + 5.0, audio(k)) for k in range(5)]
    # 1 s of silence: sequence numbers continue, the timestamp jumps, the marker bit starts the talkspurt
    second = [(1100.0 + 20.0 * k + 5.0, audio(k + 5, ts0=TS0 + 8000, marker=(k == 0))) for k in range(5)]
    outputs, _ = drive(tw, first + second, 1400.0)
    assert frames(outputs) == list(range(10))
    # 5 slots concealed at the start of the silence (nothing says it is silence), then idle
    assert [k for _t, k, *_ in outputs[5:10]] == [LOSS] * 5
    # the second talkspurt starts at arrival + target (20 ms), on the next tick: 1125 -> 1140
    assert outputs[10][:3] == (1140.0, FRAME, 5)
    assert tw.stats["late"] == 0 and tw.stats["resyncs"] == 0


def test_short_pause_with_continuous_sequence_is_not_a_loss() -> None:
    tw = Twin(8000, 160)
    first = [(20.0 * k + 5.0, audio(k)) for k in range(5)]
    # a 60 ms pause (3 frames not sent): the next packet is in time, seq continues, ts jumps
    second = [(20.0 * (k + 8) + 5.0, audio(k + 5, ts0=TS0 + 3 * 160)) for k in range(5)]
    outputs, _ = drive(tw, first + second, 400.0)
    assert frames(outputs) == list(range(10))
    # slots 5 and 6 are concealed while nothing is known; packet 5 (at 165 ms) shows the pause,
    # and it plays at its own slot with the same delay: ts slot 8, tick 40 + 8 * 20
    assert [(t, k) for t, k, *_ in outputs[5:8]] == [(140.0, LOSS), (160.0, LOSS), (200.0, FRAME)]
    assert tw.stats["late"] == 0


# -- telephone events -----------------------------------------------------------------------------

def test_dtmf_events_pass_through_once_each_in_order() -> None:
    tw = Twin(8000, 160, event_pt=101)
    arrivals: list[tuple[float, tuple[Any, ...]]] = [(20.0 * k + 5.0, audio(k)) for k in range(5)]
    # event packets take seqs 5..10 and keep one timestamp (the last three carry the end bit);
    # event 9 overtakes 8, and 7 comes twice
    ev_ts = TS0 + 5 * 160
    ev_times = [106.0, 126.0, 146.0, 166.0, 161.0, 206.0]
    for j, t in enumerate(ev_times):
        body = bytes([1, 0x80 if j >= 3 else 0x0A]) + (160 * (j + 1)).to_bytes(2, "big")
        arrivals.append((t, (5 + j, ev_ts, SSRC, 101, j == 0, body)))
    arrivals.append((150.0, (7, ev_ts, SSRC, 101, False, bytes([1, 0x0A, 1, 224]))))
    # the audio goes on meanwhile, numbered after the events: seq 11..17 for slots 5..11
    arrivals += [(20.0 * k + 5.0, audio(k, seq0=6)) for k in range(5, 12)]
    outputs, results = drive(tw, arrivals, 500.0)
    events = [(t, s) for t, k, s, _ts, _pt in outputs if k == EVENT]
    # once each, in sequence order, on the first pop after arrival (whatever the audio clock says)
    assert events == [(120.0, 5), (140.0, 6), (160.0, 7), (180.0, 8), (180.0, 9), (220.0, 10)]
    assert all(ts == ev_ts and pt == 101 for _t, k, _s, ts, pt in outputs if k == EVENT)
    assert results.count(core.PUT_DUPLICATE) == 1
    assert frames(outputs) == [0, 1, 2, 3, 4, 11, 12, 13, 14, 15, 16, 17]
    # the audio clock was not disturbed: every frame on its tick, no loss before the stream ends
    assert [t for t, k, *_ in outputs if k == FRAME] == [40.0 + 20 * k for k in range(12)]
    assert [k for _t, k, *_ in outputs if k in (LOSS, EXPAND)] == [LOSS] * 5
    assert tw.stats["resyncs"] == 0 and tw.stats["late"] == 0 and tw.stats["events"] == 6


def test_audio_replaced_by_events_resumes_without_loss_or_resync() -> None:
    tw = Twin(8000, 160, event_pt=101)
    arrivals: list[tuple[float, tuple[Any, ...]]] = [(20.0 * k + 5.0, audio(k)) for k in range(5)]
    ev_ts = TS0 + 5 * 160
    for j in range(10):                                          # 200 ms of event, no audio
        body = bytes([3, 0x80 if j >= 7 else 0x0A]) + (160 * min(j + 1, 8)).to_bytes(2, "big")
        arrivals.append((105.0 + 20.0 * j, (5 + j, ev_ts, SSRC, 101, j == 0, body)))
    # audio resumes after the event with the next sequence number and a later timestamp
    arrivals += [(20.0 * k + 5.0, audio(k, seq0=10, marker=(k == 15))) for k in range(15, 20)]
    outputs, results = drive(tw, arrivals, 600.0)
    assert [s for _t, k, s, *_ in outputs if k == EVENT] == list(range(5, 15))
    assert frames(outputs) == [0, 1, 2, 3, 4, 25, 26, 27, 28, 29]
    first = next(o for o in outputs if o[1] == FRAME and o[2] == 25)
    assert first[0] == 340.0                                     # arrival 305 + 20 ms target, next tick
    assert core.PUT_LATE not in results and tw.stats["resyncs"] == 0


def test_events_only_stream_and_reordered_event() -> None:
    tw = Twin(8000, 160, event_pt=101)
    body = bytes([5, 0x0A, 0, 160])
    assert tw.put(10, 5000, SSRC, 101, True, body, 0.0) == core.PUT_OK
    assert tw.put(12, 5000, SSRC, 101, False, body, 1.0) == core.PUT_OK
    assert tw.put(11, 5000, SSRC, 101, False, body, 2.0) == core.PUT_OK   # before 12 was delivered
    got = []
    while (item := tw.pop(3.0)) is not None:
        got.append(item[1])
    assert got == [10, 11, 12]
    assert tw.put(9, 5000, SSRC, 101, False, body, 4.0) == core.PUT_LATE  # older than delivered
    assert tw.put(12, 5000, SSRC, 101, False, body, 5.0) == core.PUT_DUPLICATE


# -- the generated 60 s trace ---------------------------------------------------------------------

PHASES = [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0]


def test_trace_quality_meets_the_bars_and_matches_the_oracle() -> None:
    trace = trace_mod.generate(seconds=60.0, jitter_ms=30.0, loss=0.01, seed=1)
    p95 = trace.p95_jitter_ms()
    assert 29.0 <= p95 <= 31.0
    delays = []
    for phase in PHASES:
        ours = trace_mod.run(core.JitterBuffer(8000, 160), trace, phase)
        ref = trace_mod.run(oracle.JitterBuffer(8000, 160), trace, phase)
        assert ours.outputs == ref.outputs
        assert ours.late_loss <= 0.005, phase
        delays.append(ours.added_delay_ms)
    # added delay is quantised to the tick grid (see the module docstring of jitter_trace): averaged
    # over tick phases it must stay within p95 jitter + 20 ms
    assert np.mean(delays) <= p95 + 20.0
    assert min(delays) >= 30.0                                   # it did not cheat on the jitter


# -- Python wrappers ------------------------------------------------------------------------------

def test_pop_into_matches_pop() -> None:
    a = core.JitterBuffer(8000, 160, max_payload=200)
    b = core.JitterBuffer(8000, 160, max_payload=200)
    out = np.zeros(200, np.uint8)
    for k in range(3):
        a.put(*audio(k), 0.0)
        b.put(*audio(k), 0.0)
    for now in (20.0, 40.0, 60.0, 60.0, 80.0):
        item = a.pop(now)
        kind = b.pop_into(now, out)
        if item is None:
            assert kind == core.NOTHING
            continue
        assert kind == item[0]
        assert (b.last_seq, b.last_timestamp, b.last_ssrc, b.last_payload_type, b.last_marker) == item[1:6]
        assert bytes(out[: b.last_length]) == item[6]
    with pytest.raises(ValueError, match=r"^out must hold at least max_payload \(200\) bytes$"):
        b.pop_into(100.0, np.zeros(199, np.uint8))


def test_put_accepts_buffers() -> None:
    jb = core.JitterBuffer(8000, 160)
    seq, ts, ssrc, pt, marker, payload = audio(0)
    assert jb.put(seq, ts, ssrc, pt, marker, np.frombuffer(payload, np.uint8), 0.0) == core.PUT_OK
    assert jb.put(seq + 1, ts + 160, ssrc, pt, marker, bytearray(payload), 0.0) == core.PUT_OK
    assert jb.put(seq + 2, ts + 320, ssrc, pt, marker, memoryview(payload), 0.0) == core.PUT_OK
    with pytest.raises(TypeError, match=r"^payload must be a buffer of bytes, not str$"):
        jb.put(seq + 3, ts, ssrc, pt, marker, "x", 0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(("args", "message"), [
    ((70000, 0, 1, 0, False, b"", 0.0), "seq must be in 0..65535"),
    ((0, -1, 1, 0, False, b"", 0.0), "ts must be in 0..4294967295"),
    ((0, 0, 2**32, 0, False, b"", 0.0), "ssrc must be in 0..4294967295"),
    ((0, 0, 1, 128, False, b"", 0.0), "pt must be in 0..127"),
    ((0, 0, 1, 0, False, b"", math.nan), "arrival_ms must be finite"),
])
def test_put_rejects_bad_arguments(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        core.JitterBuffer(8000, 160).put(*args)


@pytest.mark.parametrize(("kw", "message"), [
    ({"clock_rate": 0}, "clock_rate must be positive"),
    ({"frame_samples": 0}, "frame_samples must be positive"),
    ({"min_delay_ms": 50.0, "max_delay_ms": 40.0}, "need 0 <= min_delay_ms <= max_delay_ms"),
    ({"capacity": 1}, r"capacity must be in 2..32768"),
    ({"max_payload": 0}, r"max_payload must be in 1..65536"),
    ({"event_pt": 128}, r"event_pt must be -1 \(none\) or a payload type 0..127"),
    ({"resync_ms": 0.0}, "resync_ms must be positive"),
])
def test_constructor_rejects_bad_arguments(kw: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"clock_rate": 8000, "frame_samples": 160, **kw}
    with pytest.raises(ValueError, match=f"^{message}$"):
        core.JitterBuffer(**args)


def test_pop_rejects_non_finite_time() -> None:
    with pytest.raises(ValueError, match=r"^now_ms must be finite$"):
        core.JitterBuffer(8000, 160).pop(math.inf)


# -- random traffic: the compiled buffer and the oracle never disagree ----------------------------

op = st.one_of(
    st.tuples(st.just("put"), st.integers(-3, 6), st.integers(-2, 3), st.sampled_from([0, 0, 0, 101]),
              st.booleans(), st.floats(0.0, 60.0), st.integers(0, 20)),
    st.tuples(st.just("pop"), st.floats(0.0, 45.0)),
    st.tuples(st.just("jump"), st.sampled_from(["ssrc", "seq", "ts", "back"])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=120), st.integers(0, 65535), st.integers(0, 2**32 - 1),
       st.sampled_from([4, 8, 64]))
def test_random_traffic_matches_oracle(ops: list[Any], seq0: int, ts0: int, capacity: int) -> None:
    tw = Twin(8000, 160, capacity=capacity, max_payload=16, event_pt=101)
    now = 0.0
    k = 0
    ssrc = SSRC
    for o in ops:
        if o[0] == "put":
            _, dk, dts, pt, marker, delay, size = o
            kk = max(k + dk, 0)
            seq = (seq0 + kk) & 0xFFFF
            ts = (ts0 + 160 * kk + 160 * dts) & 0xFFFFFFFF
            tw.put(seq, ts, ssrc, pt, marker, bytes([kk & 0xFF]) * size, now + delay)
            k = max(k, kk + 1)
        elif o[0] == "pop":
            now += o[1]
            while tw.pop(now) is not None:
                pass
        elif o[1] == "ssrc":
            ssrc = (ssrc + 1) & 0xFFFFFFFF
        elif o[1] == "seq":
            seq0 = (seq0 + 4000) & 0xFFFF
        elif o[1] == "ts":
            ts0 = (ts0 + 160 * 700) & 0xFFFFFFFF
        else:
            seq0 = (seq0 - 150) & 0xFFFF
