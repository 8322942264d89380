"""Playout queue: frame-exact starts, ends, interrupts, mutes and streaming underruns."""

from __future__ import annotations

import numpy as np
import pytest

from pbx.core.playout import PLAY_DROPPED_, PLAY_ENDED_, PLAY_STARTED_, Playout

FRAME = 320


def ramp(n: int, start: int = 1) -> np.ndarray:
    return (np.arange(n) % 30000 + start).astype(np.int16)


def test_items_play_back_to_back_with_exact_offsets() -> None:
    p = Playout()
    p.enqueue(1, track=7, pcm=ramp(500))
    p.enqueue(2, track=7, pcm=ramp(200, start=1000))
    first = p.pull(FRAME)
    assert np.array_equal(first, ramp(500)[:FRAME])
    assert p.drain_events() == [(PLAY_STARTED_, 1, 7, 0, 0, 0, 500, False)]
    second = p.pull(FRAME)
    # 180 samples finish item 1, then item 2 starts at offset 180 and supplies 140 samples.
    assert np.array_equal(second[:180], ramp(500)[FRAME:])
    assert np.array_equal(second[180:], ramp(200, start=1000)[:140])
    assert p.drain_events() == [
        (PLAY_ENDED_, 1, 7, 180, 500, 500, 500, False),
        (PLAY_STARTED_, 2, 7, 180, 0, 0, 200, False),
    ]
    third = p.pull(FRAME)
    assert np.array_equal(third[:60], ramp(200, start=1000)[140:])
    assert not third[60:].any()
    assert p.drain_events() == [(PLAY_ENDED_, 2, 7, 60, 200, 200, 200, False)]
    assert not p.active


def test_item_ending_on_frame_boundary_ends_in_that_pull() -> None:
    p = Playout()
    p.enqueue(1, track=0, pcm=ramp(2 * FRAME))
    p.pull(FRAME)
    p.pull(FRAME)
    assert p.drain_events()[-1] == (PLAY_ENDED_, 1, 0, FRAME, 2 * FRAME, 2 * FRAME, 2 * FRAME, False)


def test_immediate_interrupt_stops_at_the_current_frame_and_drops_the_queue() -> None:
    p = Playout()
    p.enqueue(1, track=1, pcm=ramp(10 * FRAME))
    p.enqueue(2, track=1, pcm=ramp(FRAME))
    p.pull(FRAME)
    p.pull(FRAME)
    p.drain_events()
    p.interrupt(graceful=False)
    assert p.drain_events() == [
        (PLAY_ENDED_, 1, 1, 0, 2 * FRAME, 2 * FRAME, 10 * FRAME, True),
        (PLAY_DROPPED_, 2, 1, 0, 0, 0, FRAME, True),
    ]
    assert not p.pull(FRAME).any()
    assert p.queued_samples == 0


def test_graceful_interrupt_finishes_the_current_item_only() -> None:
    p = Playout()
    p.enqueue(1, track=1, pcm=ramp(FRAME + 100))
    p.enqueue(2, track=1, pcm=ramp(FRAME))
    p.pull(FRAME)
    p.drain_events()
    p.interrupt(graceful=True)
    assert p.drain_events() == []
    out = p.pull(FRAME)
    assert np.array_equal(out[:100], ramp(FRAME + 100)[FRAME:])
    assert not out[100:].any()  # item 2 never plays
    assert p.drain_events() == [
        (PLAY_ENDED_, 1, 1, 100, FRAME + 100, FRAME + 100, FRAME + 100, False),
        (PLAY_DROPPED_, 2, 1, 100, 0, 0, FRAME, True),
    ]


def test_graceful_interrupt_when_idle_clears_unstarted_items() -> None:
    p = Playout()
    p.enqueue(1, track=1, pcm=ramp(FRAME))
    p.interrupt(graceful=True)
    assert p.drain_events() == [(PLAY_DROPPED_, 1, 1, 0, 0, 0, FRAME, True)]


def test_streaming_underrun_plays_silence_and_keeps_the_clock() -> None:
    p = Playout()
    p.enqueue(5, track=2, pcm=ramp(100), complete=False)
    out = p.pull(FRAME)
    assert np.array_equal(out[:100], ramp(100)) and not out[100:].any()
    p.pull(FRAME)  # nothing arrived: a whole frame of silence
    p.append(5, ramp(50, start=9), complete=True)
    out = p.pull(FRAME)
    assert np.array_equal(out[:50], ramp(50, start=9))
    events = p.drain_events()
    assert events[-1] == (PLAY_ENDED_, 5, 2, 50, 150, 2 * FRAME + 50, 150, False)


def test_muted_track_plays_silence_but_advances() -> None:
    p = Playout()
    p.mute_track(3, True)
    p.enqueue(1, track=3, pcm=ramp(FRAME + 10))
    assert not p.pull(FRAME).any()
    p.mute_track(3, False)
    out = p.pull(FRAME)
    assert np.array_equal(out[:10], ramp(FRAME + 10)[FRAME:])
    assert p.drain_events()[-1][:5] == (PLAY_ENDED_, 1, 3, 10, FRAME + 10)


def test_bounds_and_caller_errors() -> None:
    p = Playout(max_samples=1000)
    p.enqueue(1, track=0, pcm=ramp(900), complete=False)
    with pytest.raises(ValueError, match="playout queue full: 900 \\+ 200 samples exceeds 1000"):
        p.append(1, ramp(200))
    with pytest.raises(ValueError, match="playout item 1 already queued"):
        p.enqueue(1, track=0)
    with pytest.raises(KeyError):
        p.append(42, ramp(1))
    p.complete(1)
    with pytest.raises(ValueError, match="playout item 1 is already complete"):
        p.append(1, ramp(1))
    with pytest.raises(ValueError, match="max_samples must be positive, got 0"):
        Playout(max_samples=0)
    assert p.queued_samples == 900


def test_reserved_item_starts_only_when_its_audio_arrives() -> None:
    p = Playout()
    p.enqueue(1, track=0, pcm=None, complete=False)   # reserved while TTS synthesises
    assert not p.pull(FRAME).any()
    assert p.drain_events() == []
    p.append(1, ramp(100), complete=True)
    out = p.pull(FRAME)
    assert np.array_equal(out[:100], ramp(100))
    assert p.drain_events() == [(PLAY_STARTED_, 1, 0, 0, 0, 0, 100, False),
                                (PLAY_ENDED_, 1, 0, 100, 100, 100, 100, False)]


def test_complete_empty_item_starts_and_ends_at_once() -> None:
    p = Playout()
    p.enqueue(1, track=0, pcm=None, complete=False)
    p.complete(1)
    p.pull(FRAME)
    assert [e[0] for e in p.drain_events()] == [PLAY_STARTED_, PLAY_ENDED_]
