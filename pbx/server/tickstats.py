"""What the media tick and the event loop cost, measured: the input of admission control and of /metrics.

One server process is one asyncio loop on one core. Every 20 ms the media tick runs on it
(:class:`~pbx.server.media.MediaRunner`), and between ticks the loop serves SIP, WebSockets and call
events. :class:`TickStats` keeps

- each tick's wall duration in a histogram (``count``, ``seconds_total``, ``bucket_bounds``,
  ``bucket_counts``: the Prometheus shape) and, per tick with legs, an EWMA of its CPU seconds per leg
  (CPU, not wall: on a host shared with other processes the kernel pauses ticks, which says how busy
  the host is, not what a call costs; frames late by it show up as skipped frames);
- once a window (:meth:`sample`, about every second): the loop's busy fraction over that window, the
  loop thread's CPU seconds over wall seconds (everything the loop did: ticks, SIP, WebSockets), or the
  ticks' own wall share when that is larger (a tick the kernel paused still makes frames late); the
  loop thread's and the ticks' CPU share; and the mean number of legs the ticks of that window served.

Time is passed in (``now``, ``cpu_seconds``): the tick reads the clocks, this module does not.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

# seconds: a tick of 1000 webrtc legs takes about 14 ms; past 20 ms frames are late
TICK_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.05, 0.1, 0.25)
LEG_COST_ALPHA = 0.02     # per tick: about the last second (50 ticks) of tick cost per leg


@dataclass(frozen=True, slots=True)
class LoadSample:
    """One window of the loop's load: ``busy`` fraction of the wall time from ``start`` to ``end``
    (seconds), while the media ticks served ``legs`` legs on average; ``cpu``: the loop thread's CPU
    share of it, ``tick``: the ticks' CPU share (both 0 when not measured)."""

    start: float
    end: float
    busy: float
    legs: float
    cpu: float = 0.0
    tick: float = 0.0


class TickStats:
    def __init__(self, bucket_bounds: tuple[float, ...] = TICK_BUCKETS_S) -> None:
        if list(bucket_bounds) != sorted(bucket_bounds) or not bucket_bounds:
            raise ValueError("bucket bounds must be ascending and not empty")
        self.bucket_bounds = bucket_bounds
        self.bucket_counts = [0] * (len(bucket_bounds) + 1)    # the last one: above every bound (+Inf)
        self.count = 0
        self.seconds_total = 0.0
        self.seconds_max = 0.0
        self.leg_seconds: float | None = None     # EWMA of a tick's CPU seconds per leg, ticks with legs only
        self.last: LoadSample | None = None
        # the open window
        self._start: float | None = None
        self._cpu_start = 0.0
        self._tick_seconds = 0.0
        self._tick_cpu = 0.0
        self._leg_sum = 0
        self._ticks = 0

    def record(self, seconds: float, legs: int, cpu_seconds: float | None = None) -> None:
        """One tick took ``seconds`` (wall) and ``cpu_seconds`` of its thread's CPU (the wall time when not
        given) serving ``legs`` legs."""
        cpu = seconds if cpu_seconds is None else cpu_seconds
        self._tick_cpu += cpu
        self.count += 1
        self.seconds_total += seconds
        self.seconds_max = max(self.seconds_max, seconds)
        self.bucket_counts[bisect.bisect_left(self.bucket_bounds, seconds)] += 1
        self._tick_seconds += seconds
        self._leg_sum += legs
        self._ticks += 1
        if legs > 0:
            per_leg = cpu / legs
            self.leg_seconds = per_leg if self.leg_seconds is None else \
                self.leg_seconds + LEG_COST_ALPHA * (per_leg - self.leg_seconds)

    def sample(self, now: float, cpu_seconds: float) -> LoadSample | None:
        """Close the window at ``now`` (seconds, monotonic) given the loop thread's CPU time so far
        (``time.thread_time()``); the first call only opens one. Returns the closed window."""
        start = self._start
        self._start = now
        cpu_start, self._cpu_start = self._cpu_start, cpu_seconds
        tick_seconds, tick_cpu, leg_sum, ticks = self._tick_seconds, self._tick_cpu, self._leg_sum, self._ticks
        self._tick_seconds, self._tick_cpu, self._leg_sum, self._ticks = 0.0, 0.0, 0, 0
        if start is None or now <= start:
            return None
        wall = now - start
        cpu = max(cpu_seconds - cpu_start, 0.0)
        self.last = LoadSample(start, now, max(cpu, tick_seconds) / wall, leg_sum / ticks if ticks else 0.0,
                               cpu / wall, tick_cpu / wall)
        return self.last
