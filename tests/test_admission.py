"""Admission control and the load it reads, sans-I/O (explicit time, synthetic measurements): a server
whose calls cost a known share of the loop is ramped at 50 calls a second and must refuse new calls
before the loop is full; noise with a few calls never refuses; skipped frames and draining refuse.
Then a real server process whose calls are made expensive (a test-only CPU burn per leg per tick)
refuses the call past capacity, by HTTP and by SIP, while its calls skip no frame."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pbx.server.admission import BUSY_FRESH_S, LATE_HOLD_S, OVERHEAD_ALPHA, OVERHEAD_PRIOR, Admission
from pbx.server.media import TEST_BURN_ENV
from pbx.server.tickstats import LoadSample, TickStats
from tests.support.calls import Call
from tests.support.served import served
from tests.support.sip import SIPP, sipp
from tests.test_drain import refused_websocket
from tests.test_server_e2e import tts_pcm

FRAME_S = 0.020


# -- TickStats -----------------------------------------------------------------------------------------------
def test_tick_durations_fill_the_histogram_buckets_with_the_last_one_for_everything_above() -> None:
    stats = TickStats((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.002, 0.01, 0.5):
        stats.record(seconds, 3)
    assert stats.bucket_counts == [2, 2, 1]          # le: bounds are inclusive, as Prometheus has them
    assert stats.count == 5 and stats.seconds_total == pytest.approx(0.5135)
    with pytest.raises(ValueError):
        TickStats((0.01, 0.001))


def test_the_per_leg_tick_cost_follows_recent_ticks_and_ignores_ticks_without_legs() -> None:
    stats = TickStats()
    stats.record(0.004, 0)
    assert stats.leg_seconds is None
    stats.record(0.004, 4)
    assert stats.leg_seconds == pytest.approx(0.001)
    for _ in range(500):                              # ten seconds of ticks at twice the cost
        stats.record(0.008, 4)
    assert stats.leg_seconds == pytest.approx(0.002, rel=0.01)


def test_a_window_is_busy_by_the_loop_threads_cpu_or_the_ticks_wall_time_whichever_is_larger() -> None:
    stats = TickStats()
    assert stats.sample(100.0, 5.0) is None           # opens the first window
    for _ in range(50):
        stats.record(0.002, 10)                       # 0.1 s of ticks in the window
    sample = stats.sample(101.0, 5.3)                 # 0.3 s of loop CPU in 1 s
    assert sample == LoadSample(100.0, 101.0, pytest.approx(0.3), 10.0, pytest.approx(0.3), pytest.approx(0.1))
    for _ in range(50):
        stats.record(0.010, 20, 0.002)                # ticks paused by the kernel: 0.5 s of wall time
    sample = stats.sample(102.0, 5.5)                 # but only 0.2 s of CPU, 0.1 s of it in ticks
    assert sample is not None and sample.busy == pytest.approx(0.5) and sample.legs == 20.0
    assert (sample.cpu, sample.tick) == (pytest.approx(0.2), pytest.approx(0.1))
    assert stats.leg_seconds < 0.0002      # a leg's cost is its CPU (0.1 ms, from 0.2), not its wall time (0.5 ms)
    assert stats.sample(102.0, 5.5) is None           # an empty window


# -- Admission: the ramp ------------------------------------------------------------------------------------------
class Loop:
    """A synthetic server: each established call costs ``per_call`` of the loop, ``tick_share`` of that in
    the media tick; each call set up costs ``setup_s`` of loop time (SIP, webhook, WebSocket, accept); plus
    ``base``. Measured every second with noise. Frames are late when the load passes 1."""

    def __init__(self, per_call: float, base: float = 0.02, tick_share: float = 0.8, noise: float = 0.03,
                 setup_s: float = 0.002) -> None:
        self.per_call, self.base, self.tick_share, self.noise, self.setup_s = per_call, base, tick_share, noise, setup_s
        self.random = random.Random(7)

    def load(self, calls: float, setups_per_s: float = 0.0) -> float:
        return self.base + self.per_call * calls + self.setup_s * setups_per_s

    def tick_leg_load(self) -> float:
        return self.per_call * self.tick_share

    def sample(self, start: float, legs: float, setups: int) -> LoadSample:
        busy = max(self.load(legs, setups) + self.random.uniform(-self.noise, self.noise), 0.0)
        return LoadSample(start, start + 1.0, busy, legs, busy, self.tick_leg_load() * legs)


def ramp(admission: Admission, loop: Loop, seconds: float, rate: float = 50.0, setup_s: float = 0.5,
         calls: int = 0) -> tuple[int, float, int]:
    """Offer ``rate`` new calls a second for ``seconds``; each admitted call takes ``setup_s`` before its
    leg exists (counted live all along). Returns the calls up, the highest true load, the refusals."""
    now, refused, peak = 0.0, 0, 0.0
    setting_up: list[float] = []
    legs = calls
    next_window, window_legs, window_ticks, window_setups = 1.0, 0, 0, 0
    next_offer = 0.0
    while now < seconds:
        now += FRAME_S
        legs += sum(1 for t in setting_up if t <= now)
        setting_up = [t for t in setting_up if t > now]
        window_legs += legs
        window_ticks += 1
        while next_offer <= now:
            next_offer += 1.0 / rate
            if admission.refusal(now, legs + len(setting_up), tick_leg_load=loop.tick_leg_load()) is None:
                setting_up.append(now + setup_s)
                window_setups += 1
            else:
                refused += 1
        if now >= next_window:
            mean = window_legs / window_ticks
            peak = max(peak, loop.load(mean, window_setups))
            admission.observe(loop.sample(next_window - 1.0, mean, window_setups), 0)
            next_window += 1.0
            window_legs = window_ticks = window_setups = 0
    return legs + len(setting_up), peak, refused


@pytest.mark.parametrize("per_call", [0.001, 0.003, 0.01])
def test_a_fresh_server_ramped_at_50_calls_a_second_refuses_before_the_loop_is_full(per_call: float) -> None:
    """Up to 1 % of a core a call (a SIP call with webrtc VAD and recording costs 0.1 %), 2 ms of setup
    each (10 % of the loop at 50 a second): refusals start before the loop is full, and once the ramp
    stalls the settled windows measure the calls, so that the server fills to near its capacity."""
    admission = Admission(0.8)
    loop = Loop(per_call)
    calls, peak, refused = ramp(admission, loop, seconds=40.0)
    capacity = (0.8 - loop.base) / per_call        # calls that fit in 80 % of the loop
    assert peak < 1.0, f"frames would be late: the loop reached {peak:.0%} with {calls} calls"
    assert refused > 0 and admission.refused["overload"] == refused
    assert 0.9 * capacity <= calls <= 1.05 * capacity, (calls, capacity)


def test_setup_work_during_a_ramp_is_not_charged_to_the_calls() -> None:
    """A hundred calls of 0.13 % each placed at 50 a second, 8 ms of loop work to set each up (40 % of the
    loop while the ramp lasts): the loop never passes 60 %, so nothing is refused."""
    admission = Admission(0.8)
    loop = Loop(0.0013, setup_s=0.008)
    calls, peak, refused = ramp(admission, loop, seconds=2.0)
    assert refused == 0 and calls >= 100 and peak < 0.6


@pytest.mark.parametrize("per_call", [0.01, 0.05, 0.1])
def test_a_measured_server_ramped_at_50_calls_a_second_refuses_before_the_loop_is_full(per_call: float) -> None:
    """Calls of up to 10 % of a core each (Pipecat's is 5 %), most of it outside the tick (a WebSocket
    call's audio), once settled windows have measured five."""
    admission = Admission(0.8)
    loop = Loop(per_call, noise=0.01, tick_share=0.3)
    for second in range(5):
        admission.observe(loop.sample(second - 5.0, 5, 0), 0)
    calls, peak, refused = ramp(admission, loop, seconds=10.0, calls=5)
    assert peak < 1.0, f"frames would be late: the loop reached {peak:.0%} with {calls} calls"
    assert refused > 0 and calls >= 0.8 * (0.8 - loop.base) / per_call


def test_calls_that_turn_expensive_at_once_stop_admission_within_a_second_by_the_tick_cost() -> None:
    admission = Admission(0.8)
    cheap = Loop(0.002)
    calls, _, refused = ramp(admission, cheap, seconds=2.0, rate=20.0)
    assert refused == 0 and calls >= 40
    # every call starts something five times dearer: the windows have not seen it yet, the tick has
    assert admission.refusal(2.0, 100, tick_leg_load=0.002 * 0.8) is None      # about 24 %
    assert admission.refusal(2.0, 100, tick_leg_load=0.010 * 0.8) is not None  # about 120 %


def test_few_calls_never_refuse_and_a_busy_window_with_few_legs_moves_the_estimate_little() -> None:
    admission = Admission(0.8)
    admission.observe(LoadSample(-1.0, 0.0, 0.01, 0.0, 0.01), 0)       # idle: 1 % of the loop is the server's own
    assert admission.idle == pytest.approx(0.01)
    # a model loading on the loop of a fresh server: one second 90 % busy with one leg
    admission.observe(LoadSample(0.0, 1.0, 0.90, 1.0, 0.90, 0.001), 0)
    for live in range(5):
        assert admission.refusal(1.0, live, tick_leg_load=0.001) is None
    assert admission.refusal(1.0, 5, tick_leg_load=0.001) is not None     # but the loop was 90 % busy
    assert admission.refusal(1.0 + BUSY_FRESH_S + 0.1, 5, tick_leg_load=0.001) is None
    # settled windows with ten legs: 20 % in ticks, 10 % outside them on top of the idle 1 %
    admission = Admission(0.8)
    admission.observe(LoadSample(-1.0, 0.0, 0.01, 0.0, 0.01), 0)
    for second in range(20):
        admission.observe(LoadSample(second, second + 1.0, 0.31, 10.0, 0.31, 0.2), 0)
    assert admission.overhead == pytest.approx(0.5, abs=0.001)
    for second in range(20):
        admission.observe(LoadSample(second, second + 1.0, 0.21, 10.0, 0.21, 0.2), 0)
    assert admission.overhead == pytest.approx(0.0, abs=0.001)
    # two legs' ticks (0.1 % of the loop) in a busy second: 29 outside per unit of tick, at a 0.1 weight
    admission.observe(LoadSample(40.0, 41.0, 0.04, 2.0, 0.04, 0.001), 0)
    assert admission.overhead == pytest.approx(0.3 * 0.1 * 29, rel=0.05)


def test_windows_with_setups_leave_the_overhead_as_it_is() -> None:
    admission = Admission(0.8)
    for live in range(5):
        assert admission.refusal(0.5, live, tick_leg_load=0.01) is None       # five calls taken
    admission.observe(LoadSample(0.0, 1.0, 0.5, 5.0, 0.5, 0.05), 0)                 # their setups in it
    assert admission.overhead == OVERHEAD_PRIOR
    assert not admission.refusing(1.5, 5, tick_leg_load=0.01)                  # probes are not setups
    admission.observe(LoadSample(1.0, 2.0, 0.1, 5.0, 0.1, 0.05), 0)                 # settled: 1 outside per tick
    assert admission.overhead == pytest.approx(OVERHEAD_PRIOR + OVERHEAD_ALPHA * (1.0 - OVERHEAD_PRIOR))


def test_without_any_measurement_nothing_is_refused_and_capacity_load_0_checks_no_load() -> None:
    assert Admission(0.8).refusal(0.0, 500) is None
    off = Admission(0.0)
    off.observe(LoadSample(0.0, 1.0, 0.99, 10.0, 0.99, 0.5), 0)
    assert off.refusal(1.0, 100, tick_leg_load=0.05) is None
    with pytest.raises(ValueError):
        Admission(1.5)


def test_the_refusal_says_the_load_the_cost_and_the_limit() -> None:
    admission = Admission(0.8)
    admission.observe(LoadSample(0.0, 1.0, 0.75, 50.0, 0.75, 0.5), 0)
    admission.overhead = 0.5                                         # as if measured so: 1.5 % a call
    assert admission.refusal(1.0, 52, tick_leg_load=0.01) is None    # 53 calls take 79.5 %
    assert admission.refusal(1.0, 59, tick_leg_load=0.01) == (
        "the server is at capacity: 60 calls would take 90% of its event loop (1.50% each, "
        "measured), above 80% (capacity_load); try again later")
    admission.observe(LoadSample(1.0, 2.0, 0.85, 50.0, 0.85, 0.5), 0)
    assert admission.refusal(2.0, 10, tick_leg_load=0.01) == (
        "the server is at capacity: its event loop was 85% busy in the last second, above 80% "
        "(capacity_load); try again later")


def test_an_outbound_leg_of_a_counted_call_is_refused_only_once_the_load_is_over() -> None:
    admission = Admission(0.8)
    admission.observe(LoadSample(0.0, 1.0, 0.5, 50.0, 0.5, 0.5), 0)      # 1 % a call, all of it in the tick
    admission.overhead = 0.0
    assert admission.refusal(1.0, 80, tick_leg_load=0.01) is not None          # a new call: 81 %
    assert admission.refusal(1.0, 80, extra=0, tick_leg_load=0.01) is None     # the 80th placing its leg: 80 %
    assert admission.refusal(1.0, 81, extra=0, tick_leg_load=0.01) is not None


def test_skipped_frames_refuse_new_calls_for_a_while_whatever_the_model_says() -> None:
    admission = Admission(0.8)
    admission.observe(LoadSample(0.0, 1.0, 0.1, 10.0), 3)      # skipped before: only the growth counts
    assert admission.refusal(1.0, 10) is None
    admission.observe(LoadSample(1.0, 2.0, 0.1, 10.0), 5)
    message = admission.refusal(2.5, 1)
    assert message is not None and "missed media frames" in message
    assert admission.refusal(2.0 + LATE_HOLD_S + 0.1, 10) is None
    assert admission.refused["late"] == 1


def test_draining_refuses_every_new_call_and_outbound_leg() -> None:
    admission = Admission(0.8)
    admission.start_draining()
    for extra in (0, 1):
        assert admission.refusal(0.0, 0, extra) == \
            "the server is shutting down and takes no new calls; try another server"
    assert admission.refused["draining"] == 2
    assert admission.refusing(0.0, 0) and admission.refused["draining"] == 2     # a probe counts nothing


# -- a real server whose calls are made expensive ------------------------------------------------------------------
BURN_US = 2500          # per leg per tick: each call takes 12.5 % of the loop


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")
def test_an_overloaded_server_refuses_new_calls_both_ways_while_its_calls_skip_no_frame(tmp_path: Path) -> None:
    """With ``PYPBX_TEST_TICK_BURN_US`` each leg burns 2.5 ms of every tick: five calls take 62 % of the
    loop; with ``capacity_load = 0.6`` the sixth is refused (HTTP 503, SIP 503) before any call skips a
    frame, the five go on at full rate, and when one ends a new call is taken again."""
    env = {**os.environ, TEST_BURN_ENV: str(BURN_US)}

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with served(tmp_path, "capacity_load = 0.6", env=env) as server, contextlib.AsyncExitStack() as stack:
            calls = []
            for i in range(5):
                call = await stack.enter_async_context(Call.open(server.address, f"id=c{i}&pingInterval=0"))
                await call.send({"command": "invite", "option": {"codec": "pcm"}})
                await call.wait_event("answer")
                calls.append(call)
            await asyncio.sleep(2.5)            # two load windows with five legs
            out["refused_ws"] = await refused_websocket(server.address)
            async with sipp("caller_refused.xml", server.sip_port, tmp_path / "sipp") as newcomer:
                result = await newcomer.finish(timeout=10)
                assert result.rc == 0, result.logs
                out["refused_sip"] = [m for m in newcomer.received() if m.status is not None and m.status >= 200]
            # an established call plays two seconds of audio, frame by frame, on time
            mark = calls[0].mark()
            started = time.monotonic()
            await calls[0].send(tts_pcm(np.full(2 * 16000, 1000, np.int16), "two-seconds"))
            await calls[0].wait_event("trackEnd", since=mark, playId="two-seconds")
            out["played"] = (len(calls[0].frames(mark)), time.monotonic() - started)
            out["health"] = await server.health()
            await calls[4].send({"command": "hangup"})
            await calls[4].wait_event("hangup")
            await asyncio.sleep(0.5)
            async with Call.open(server.address, "id=again&pingInterval=0") as again:
                await again.send({"command": "invite", "option": {"codec": "pcm"}})
                out["again"] = await again.wait_event("answer")
        return out

    out = asyncio.run(run())
    status, headers, body = out["refused_ws"]
    assert (status, headers.get("retry-after")) == (503, "5")
    assert re.fullmatch(r"the server is at capacity: 6 calls would take \d+% of its event loop \(\d+\.\d+% each, "
                        r"measured\), above 60% \(capacity_load\); try again later", body["error"]), body
    [refusal] = out["refused_sip"]
    assert refusal.status == 503 and refusal.headers.get("Retry-After") == "5"
    assert "at capacity" in refusal.headers.get("Warning", ""), refusal.headers
    health = out["health"]
    assert health["media_skipped_frames"] == 0
    assert 0.5 <= health["loop_busy"] < 1.0, health
    frames, seconds = out["played"]
    assert 98 <= frames <= 100 and 1.9 <= seconds <= 2.5, out["played"]   # the last may follow trackEnd
    assert out["again"]["event"] == "answer"


def test_the_same_calls_past_capacity_without_admission_control_skip_frames(tmp_path: Path) -> None:
    """The control for the test above: with ``capacity_load = 0`` nothing refuses the calls, and nine of
    them (22.5 ms of work per 20 ms frame) make every call late until the engine skips frames."""
    env = {**os.environ, TEST_BURN_ENV: str(BURN_US)}

    async def run() -> dict[str, Any]:
        async with served(tmp_path, "capacity_load = 0", env=env) as server, contextlib.AsyncExitStack() as stack:
            for i in range(9):
                call = await stack.enter_async_context(Call.open(server.address, f"id=c{i}&pingInterval=0"))
                await call.send({"command": "invite", "option": {"codec": "pcm"}})
                await call.wait_event("answer", timeout=10)
            for _ in range(40):
                health = await server.health()
                if health["media_skipped_frames"]:
                    break
                await asyncio.sleep(0.25)
            return health

    health = asyncio.run(run())
    assert health["calls"] == 9 and health["media_skipped_frames"] > 0, health
