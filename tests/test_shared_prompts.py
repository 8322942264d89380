"""Shared prompts (issue 13): calls playing one file share its decoded buffer instead of each holding a copy.

The loader decodes a file once (its cache hands every caller the same read-only array), each leg's
playout queue keeps a reference to it, the server's audio budget counts it once, and it is freed
when the last call has played it and the cache has let it go.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

import numpy as np
import pytest

from pbx.call import media as typed
from pbx.core.engine import Engine
from pbx.core.playout import Playout
from pbx.media.loader import MediaLoader
from pbx.server.media import EngineLeg, LegSink, MediaRunner
from support.audio import espeak_speech, tone, write_wav
from tests.support.calls import FRAME, Call, running_server

RATE = 16000


class Collected:
    """What one leg sent out: its typed events and its outbound frames (the pcm codec: 16 kHz int16)."""

    def __init__(self) -> None:
        self.events: list[typed.MediaEvent] = []
        self.frames: list[bytes] = []

    def sink(self) -> LegSink:
        return LegSink(self.events.append, self.frames.append, lambda pcm: None)

    def audio(self) -> np.ndarray:
        return np.frombuffer(b"".join(self.frames), dtype="<i2")


def load(media: Path, name: str) -> np.ndarray:
    async def run() -> np.ndarray:
        loader = MediaLoader(media)
        try:
            first, again = await asyncio.gather(loader.load(name), loader.load(name))   # one decode
            cached = await loader.load(name)
            assert first is again is cached and not first.flags.writeable
            return first
        finally:
            await loader.close()
    return asyncio.run(run())


def play_shared(runner: MediaRunner, pcm: np.ndarray, n: int) -> list[tuple[EngineLeg, Collected]]:
    legs = []
    for _ in range(n):
        out = Collected()
        leg = runner.add_leg(out.sink(), "stream", "pcm", 0.0)
        leg.enqueue(1, 1)
        leg.share(1, pcm)
        leg.complete(1)
        legs.append((leg, out))
    return legs


def test_calls_playing_one_file_share_one_buffer_and_each_hears_all_of_it(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    write_wav(media / "prompt.wav", espeak_speech(8000), 8000)    # resampled to 16 kHz once
    pcm = load(media, "prompt.wav")
    runner = MediaRunner(Engine(8))
    runner.serve(0.0)
    legs = play_shared(runner, pcm, 3)
    assert runner.budget.total == len(pcm)                        # counted once, not three times
    assert all(leg.leg.playout.queued_samples == 0 for leg, _ in legs)
    frames = -(-len(pcm) // FRAME) + 2
    for t in range(1, frames + 1):
        runner.serve(20.0 * t)
    for _, out in legs:
        heard = out.audio()
        assert np.array_equal(heard[:len(pcm)], pcm) and not heard[len(pcm):].any()
        started, ended = out.events
        assert isinstance(started, typed.PlayStarted) and isinstance(ended, typed.PlayEnded)
        assert (ended.played_ms, ended.interrupted) == (len(pcm) * 1000 // RATE, False)
    runner.budget.recount(runner.engine)
    assert runner.budget.total == 0


def test_interrupt_of_one_call_leaves_the_others_playing_and_the_buffer_goes_with_the_last(
        tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    write_wav(media / "tone.wav", tone(440, RATE, 1.0), RATE)
    pcm = load(media, "tone.wav")
    gone = weakref.ref(pcm)
    runner = MediaRunner(Engine(8))
    runner.serve(0.0)
    (cut, cut_out), (graceful, graceful_out), (_, whole_out) = play_shared(runner, pcm, 3)
    graceful.enqueue(2, 1)
    graceful.share(2, pcm)                   # the same prompt twice in one queue: dropped by graceful
    graceful.complete(2)
    for t in range(1, 11):
        runner.serve(20.0 * t)
    cut.interrupt(False)
    graceful.interrupt(True)
    for t in range(11, 60):
        runner.serve(20.0 * t)
    assert cut_out.events[-1] == typed.PlayEnded(cut_out.events[-1].at_ms, 1, 200, 200, True)
    assert [type(e) for e in graceful_out.events] == [typed.PlayStarted, typed.PlayEnded, typed.PlayDropped]
    assert whole_out.events[-1] == typed.PlayEnded(whole_out.events[-1].at_ms, 1, 1000, 1000, False)
    assert np.array_equal(whole_out.audio()[:len(pcm)], pcm)
    assert not cut_out.audio()[10 * FRAME:].any()
    del pcm
    gc.collect()
    assert gone() is not None                # the budget holds it until its recount sees no leg playing it
    runner.budget.recount(runner.engine)
    assert gone() is None


def test_the_budget_bounds_distinct_shared_buffers_and_copies(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    for name, freq in (("a.wav", 300), ("b.wav", 500), ("c.wav", 700)):
        write_wav(media / name, tone(freq, RATE, 1.0), RATE)
    a, b, c = (load(media, name) for name in ("a.wav", "b.wav", "c.wav"))
    runner = MediaRunner(Engine(16), audio_max_bytes=2 * 2 * RATE + 1000)    # two seconds and a bit
    runner.serve(0.0)
    play_shared(runner, a, 4)
    play_shared(runner, b, 2)
    assert runner.budget.total == 2 * RATE
    (leg, _), = play_shared(runner, b, 1)    # b again: nothing more to count
    with pytest.raises(ValueError, match=r"maximum of 0\.065 MB of audio to play \(playout_max_bytes\)"):
        play_shared(runner, c, 1)
    leg.enqueue(2, 1)
    with pytest.raises(ValueError, match=r"maximum of 0\.065 MB"):
        leg.append(2, np.array(a))            # a copy counts for its leg, even of a shared file
    for t in range(1, 60):
        runner.serve(20.0 * t)
    runner.budget.recount(runner.engine)
    assert runner.budget.total == 0
    play_shared(runner, c, 1)                # played out: room again


def test_server_calls_playing_one_file_each_get_their_track_and_audio(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    prompt = tone(600, RATE, 0.6)
    write_wav(tmp_path / "media" / "prompt.wav", prompt, RATE)

    async def run() -> tuple[list[dict[str, object]], list[list[bytes]], int]:
        async with running_server(tmp_path) as (server, address), \
                Call.open(address, "id=s1&pingInterval=0&dump=false") as one, \
                Call.open(address, "id=s2&pingInterval=0&dump=false") as two:
            for call in (one, two):
                await call.send({"command": "invite", "option": {"codec": "pcm"}})
                await call.wait_event("answer")
            marks = [one.mark(), two.mark()]
            for call in (one, two):
                await call.send({"command": "play", "url": "prompt.wav"})
            for call in (one, two):
                await call.wait_event("trackStart", playId="prompt.wav")
            counted = server.media.budget.total
            ends = [await call.wait_event("trackEnd", mark, timeout=5.0, playId="prompt.wav")
                    for call, mark in zip((one, two), marks, strict=True)]
            await asyncio.sleep(0.1)
            frames = [call.frames(mark) for call, mark in zip((one, two), marks, strict=True)]
            return ends, frames, counted

    ends, frames, counted = asyncio.run(run())
    assert counted == len(prompt)            # both calls' queues refer to one buffer
    assert [e["duration"] for e in ends] == [600, 600]
    for call_frames in frames:
        heard = np.frombuffer(b"".join(call_frames), dtype="<i2")
        start = int(np.flatnonzero(heard)[0])
        assert np.array_equal(heard[start:start + len(prompt) - 1], prompt[1:])   # the tone starts at 0


def test_a_file_evicted_from_the_cache_while_calls_play_it_is_not_decoded_again(tmp_path: Path) -> None:
    for name, freq in (("a.wav", 300), ("b.wav", 500)):
        write_wav(tmp_path / name, tone(freq, RATE, 1.0), RATE)
    queue = Playout()

    async def run() -> tuple[bool, int, bool, int]:
        loader = MediaLoader(tmp_path, cache_bytes=2 * RATE + 100)       # room for one of them
        try:
            a = await loader.load("a.wav")
            playing = weakref.ref(a)
            queue.enqueue(1, 1, None, complete=False)
            queue.share(1, a)                    # a call plays it
            del a
            await loader.load("b.wav")           # evicts a
            found = await loader.load("a.wav") is playing()     # the array the call plays, not a new decode
            cached = loader.cached_bytes         # a is cached again (b evicted)
            queue.interrupt()                    # nobody plays a now
            await loader.load("b.wav")           # evicts a: nothing keeps it
            gc.collect()
            freed = playing() is None
            return found, cached, freed, loader.cached_bytes
        finally:
            await loader.close()

    found, cached, freed, cached_after = asyncio.run(run())
    assert found and freed and cached == cached_after == 2 * RATE
