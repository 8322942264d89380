"""Playout queue: frame-exact starts, ends, interrupts, mutes and streaming underruns."""

from __future__ import annotations

import sys

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


# -- shared buffers (a decoded file several calls play) ---------------------------------------------
def shared(n: int, start: int = 1) -> np.ndarray:
    pcm = ramp(n, start)
    pcm.flags.writeable = False
    return pcm


def playing(pcm: np.ndarray) -> Playout:
    q = Playout()
    q.enqueue(1, track=1, pcm=None, complete=False)
    q.share(1, pcm)
    return q


def test_shared_buffer_plays_by_reference_in_many_queues_and_is_released_at_the_end() -> None:
    pcm = shared(3 * FRAME + 100)
    base = sys.getrefcount(pcm)
    queues = [playing(pcm) for _ in range(3)]
    assert sys.getrefcount(pcm) == base + 3       # a reference per queue, no copy
    assert [q.queued_samples for q in queues] == [0, 0, 0]
    assert [q.shared_samples for q in queues] == [len(pcm)] * 3
    assert all(q.shared_buffers()[0] is pcm for q in queues)
    queues[1].pull(FRAME)                          # the queues play it at their own pace
    played = np.concatenate([queues[0].pull(FRAME) for _ in range(4)])
    assert np.array_equal(played[:len(pcm)], pcm) and not played[len(pcm):].any()
    assert queues[0].drain_events()[-1] == (PLAY_ENDED_, 1, 1, 100, len(pcm), len(pcm), len(pcm), False)
    assert sys.getrefcount(pcm) == base + 2 and queues[0].shared_samples == 0 and not queues[0].shared_buffers()
    queues[1].interrupt(graceful=False)            # cut mid-item
    assert queues[1].drain_events()[-1] == (PLAY_ENDED_, 1, 1, 0, FRAME, FRAME, len(pcm), True)
    assert sys.getrefcount(pcm) == base + 1
    del queues[2]                                  # a leg removed with the item queued
    assert sys.getrefcount(pcm) == base


def test_shared_item_keeps_order_mute_and_graceful_interrupt() -> None:
    p = Playout()
    p.enqueue(1, track=1, pcm=ramp(100))
    p.enqueue(2, track=1, pcm=None, complete=False)
    p.enqueue(3, track=1, pcm=ramp(50))
    p.share(2, shared(FRAME))
    first = p.pull(FRAME)
    assert np.array_equal(first[:100], ramp(100)) and np.array_equal(first[100:], shared(FRAME)[:220])
    p.interrupt(graceful=True)                     # item 2 plays to its end, item 3 is dropped
    p.mute_all_tracks(True)
    second = p.pull(FRAME)
    assert not second.any()                        # muted: silence, the shared buffer untouched
    assert p.drain_events()[-2:] == [(PLAY_ENDED_, 2, 1, 100, FRAME, FRAME, FRAME, False),
                                     (PLAY_DROPPED_, 3, 1, 100, 0, 0, 50, True)]
    assert not p.active and p.shared_samples == 0


def test_share_errors_leave_the_item_as_it_was() -> None:
    p = Playout(max_samples=1000)
    with pytest.raises(KeyError):
        p.share(9, shared(10))
    p.enqueue(1, track=0, pcm=None, complete=False)
    with pytest.raises(ValueError, match="shared playout audio must be a read-only contiguous 1-D int16 array"):
        p.share(1, ramp(10))                       # writeable: could change while it plays
    with pytest.raises(ValueError, match="read-only contiguous"):
        p.share(1, shared(20)[::2])
    p.share(1, shared(5000))                       # not counted against the queue's own max_samples
    assert (p.queued_samples, p.shared_samples) == (0, 5000)
    with pytest.raises(ValueError, match="playout item 1 is already complete"):
        p.share(1, shared(10))
    with pytest.raises(ValueError, match="already complete"):
        p.append(1, ramp(10))


def test_share_into_an_item_with_audio_copies_and_an_empty_buffer_completes() -> None:
    p = Playout()
    p.enqueue(1, track=0, pcm=ramp(10), complete=False)
    p.share(1, shared(20, start=500))
    assert (p.queued_samples, p.shared_samples, p.shared_buffers()) == (30, 0, [])
    out = p.pull(FRAME)
    assert np.array_equal(out[:30], np.concatenate([ramp(10), shared(20, start=500)]))
    p.enqueue(2, track=0, pcm=None, complete=False)
    p.share(2, shared(0))
    p.pull(FRAME)
    assert [e[:2] for e in p.drain_events()][-2:] == [(PLAY_STARTED_, 2), (PLAY_ENDED_, 2)]
