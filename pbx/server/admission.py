"""Admission control: whether this server process takes one more call now (sans-I/O).

A server process is one asyncio loop on one core; its media tick must finish every 20 ms. Past what
the loop can carry, every established call starts losing frames at once, so a new call is refused
(HTTP 503 for a WebSocket, SIP 503 for an INVITE, an error event for an application's outbound
``invite``) *before* that happens. The capacity is measured, not configured:

- each window of about a second (:class:`~pbx.server.tickstats.LoadSample`) gives the loop's busy
  fraction and the mean number of legs the tick served; their ratio is the cost of one leg in loop
  time, which folds in everything a call makes the loop do (its tick work, its WebSocket or SIP
  messages, its events). That per-leg cost is smoothed (EWMA); a window with few legs counts for
  less (and none before a first one with ``min_calls``), since its ratio is mostly noise and fixed
  overhead;
- the tick's own cost per leg (EWMA over ticks, a share of the 20 ms frame) is a lower bound of that
  cost that follows within a second: before the first window (a fresh server taking 50 calls a
  second) and when calls turn expensive all at once, the larger of the two counts;
- a new call is refused when ``cost * (live + 1)`` (``live``: legs, plus calls still setting up)
  is above ``capacity_load`` of the loop. Linear with no fixed part, the model overestimates the
  cost of a call at low counts (fixed overhead is charged to the few calls there are), so it errs
  towards refusing early, never late;
- below ``min_calls`` live calls the load is not checked at all: a one-second hiccup (a model
  loading, a large file decoding) with three calls up must not refuse the fourth;
- frames skipped by the engine (the loop was late by more than the catch-up allows) refuse new calls
  for :data:`LATE_HOLD_S`, whatever the model says: the measurement was wrong, the symptom is not;
- ``start_draining()`` (graceful shutdown) refuses every new call from then on.

``max_calls`` stays the hard cap on engine legs (:class:`~pbx.server.media.CapacityError` when a leg
would pass it), ``max_connections`` the cap on WebSocket connections.

Time is passed in; the server feeds :meth:`Admission.observe` and asks :meth:`Admission.refusal`.
"""

from __future__ import annotations

from pbx.server.tickstats import LoadSample

RETRY_AFTER_S = 5          # told to a refused client (HTTP and SIP Retry-After)
MIN_CALLS = 5              # live calls below which the load never refuses
COST_ALPHA = 0.3           # EWMA weight of one window with at least MIN_CALLS legs
LATE_HOLD_S = 10.0         # after frames were skipped, new calls are refused this long


class Admission:
    def __init__(self, capacity_load: float = 0.8, *, min_calls: int = MIN_CALLS) -> None:
        """``capacity_load``: the fraction of the loop calls may take (0: the load is never checked)."""
        if not 0.0 <= capacity_load <= 1.0:
            raise ValueError(f"capacity_load must be between 0 and 1, got {capacity_load}")
        self.capacity_load = capacity_load
        self.min_calls = min_calls
        self.draining = False
        self.leg_cost: float | None = None    # fraction of the loop one leg takes (EWMA)
        self.last: LoadSample | None = None
        self.refused: dict[str, int] = {"draining": 0, "overload": 0, "late": 0}
        self._skipped: int | None = None
        self._late_until = float("-inf")

    def start_draining(self) -> None:
        self.draining = True

    def observe(self, sample: LoadSample, skipped_frames: int) -> None:
        """One window of measured load, and the engine's skipped-frame count at its end."""
        self.last = sample
        if self._skipped is not None and skipped_frames > self._skipped:
            self._late_until = sample.end + LATE_HOLD_S
        self._skipped = skipped_frames
        if sample.legs < 1.0:
            return                  # nothing to divide by: the last estimate stands
        cost = sample.busy / sample.legs
        weight = min(1.0, sample.legs / max(self.min_calls, 1))
        if self.leg_cost is None:
            if weight == 1.0:       # a first estimate from a window with few legs would be mostly noise
                self.leg_cost = cost
        else:
            self.leg_cost += COST_ALPHA * weight * (cost - self.leg_cost)

    def cost(self, tick_leg_load: float | None = None) -> float | None:
        """The loop fraction one call takes: the measured per-leg cost, or the tick's share per leg
        (``tick_leg_load``) when that is larger; None before any measurement."""
        known = [c for c in (self.leg_cost, tick_leg_load) if c is not None]
        return max(known) if known else None

    def refusal(self, now: float, live: int, extra: int = 1, tick_leg_load: float | None = None) -> str | None:
        """Why ``extra`` more calls (1: a new call; 0: an outbound leg of a call already counted) are
        refused at ``now`` with ``live`` calls up, or None to take them. ``tick_leg_load``: the media
        tick's seconds per leg over the 20 ms frame, recent (:attr:`TickStats.leg_seconds`)."""
        kind, message = self._why(now, live, extra, self.cost(tick_leg_load))
        if kind is None:
            return None
        self.refused[kind] += 1
        return message

    def _why(self, now: float, live: int, extra: int, cost: float | None) -> tuple[str | None, str]:
        if self.draining:
            return "draining", "the server is shutting down and takes no new calls; try another server"
        if now < self._late_until:
            return "late", ("the server is overloaded: its calls missed media frames in the last "
                            f"{LATE_HOLD_S:g} s; try again later")
        if self.capacity_load <= 0.0 or live < self.min_calls or cost is None:
            return None, ""
        projected = cost * (live + extra)
        if projected > self.capacity_load:
            return "overload", (f"the server is at capacity: {live + extra} calls would take {projected:.0%} of "
                                f"its event loop ({cost:.2%} each, measured), above {self.capacity_load:.0%} "
                                "(capacity_load); try again later")
        return None, ""
