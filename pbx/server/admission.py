"""Admission control: whether this server process takes one more call now (sans-I/O).

A server process is one asyncio loop on one core; its media tick must finish every 20 ms. Past what
the loop can carry, every established call starts losing frames at once, so a new call is refused
(HTTP 503 for a WebSocket, SIP 503 for an INVITE, an error event for an application's outbound
``invite``) *before* that happens. The capacity is measured, not configured:

- a call's cost is its share of the media tick, measured every tick (:class:`TickStats.leg_seconds
  <pbx.server.tickstats.TickStats>`, CPU seconds per leg over the 20 ms frame: it follows within a
  second when calls turn expensive), times ``1 + overhead``: the loop's work outside the tick (WebSocket
  and SIP messages, call events) per unit of tick work. ``overhead`` is measured from each window of
  about a second (:class:`~pbx.server.tickstats.LoadSample`) as (cpu - idle - tick) / tick (CPU
  shares of the loop thread and of its ticks), where ``idle`` is the CPU share of windows with no leg
  (timers, health probes; the smallest seen), EWMA-smoothed from a prior of :data:`OVERHEAD_PRIOR`.
  Only settled windows measure it: one in which new calls were more than :data:`SETTLED_SETUPS` of
  its legs also holds their setup work (SIP, the webhook, the WebSocket handshake, the accept), which
  is not a cost per established call; charging it to the calls made a server ramped at 50 calls a
  second refuse 36 of its first 100 calls while it used an eighth of a core (0.13 % a call, on a
  shared machine). A window counts in proportion to its ticks' share of the loop up to
  :data:`FULL_WEIGHT_TICK`, as the ratio of a few legs' ticks is mostly noise;
- a new call is refused when ``cost * (live + 1)`` (``live``: legs, plus calls still setting up)
  is above ``capacity_load`` of the loop, or when the last window (if recent) was busier than that
  already: setup work, or work the model does not see, can fill the loop by itself;
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
# loop work outside the tick per unit of tick work, until measured: a SIP call's, from its profile
# (bench/RESULTS.md, "Where a SIP call's CPU goes": the tick ~78 % of the loop, the rest ~22 %)
OVERHEAD_PRIOR = 0.3
OVERHEAD_ALPHA = 0.3       # EWMA weight of one settled window at full weight
FULL_WEIGHT_TICK = 0.01    # a window whose ticks took 1 % of the loop or more weighs fully in the overhead estimate
SETTLED_SETUPS = 0.02      # new calls in a window, as a share of its legs, up to which it measures the overhead
BUSY_FRESH_S = 2.5         # the last window's busy fraction refuses calls this long after its end
LATE_HOLD_S = 10.0         # after frames were skipped, new calls are refused this long


class Admission:
    def __init__(self, capacity_load: float = 0.8, *, min_calls: int = MIN_CALLS) -> None:
        """``capacity_load``: the fraction of the loop calls may take (0: the load is never checked)."""
        if not 0.0 <= capacity_load <= 1.0:
            raise ValueError(f"capacity_load must be between 0 and 1, got {capacity_load}")
        self.capacity_load = capacity_load
        self.min_calls = min_calls
        self.draining = False
        self.overhead = OVERHEAD_PRIOR     # loop work outside the tick per unit of tick work (EWMA)
        self.idle: float | None = None     # the loop's CPU share with no leg (the smallest window seen)
        self.last: LoadSample | None = None
        self.refused: dict[str, int] = {"draining": 0, "overload": 0, "late": 0}
        self._skipped: int | None = None
        self._late_until = float("-inf")
        self._admitted = 0                 # calls taken since the last window closed

    def start_draining(self) -> None:
        self.draining = True

    def observe(self, sample: LoadSample, skipped_frames: int) -> None:
        """One window of measured load, and the engine's skipped-frame count at its end."""
        self.last = sample
        if self._skipped is not None and skipped_frames > self._skipped:
            self._late_until = sample.end + LATE_HOLD_S
        self._skipped = skipped_frames
        admitted, self._admitted = self._admitted, 0
        if sample.legs == 0.0 and admitted == 0:
            self.idle = sample.cpu if self.idle is None else min(self.idle, sample.cpu)
            return
        if sample.legs < 1.0 or sample.tick <= 0.0 or admitted > SETTLED_SETUPS * sample.legs:
            return                  # nothing to divide by, or setups in it: the estimate stands
        ratio = max(sample.cpu - (self.idle or 0.0) - sample.tick, 0.0) / sample.tick
        weight = min(1.0, sample.tick / FULL_WEIGHT_TICK)
        self.overhead += OVERHEAD_ALPHA * weight * (ratio - self.overhead)

    def cost(self, tick_leg_load: float | None) -> float | None:
        """The loop fraction one call takes, given the tick's share per leg (``tick_leg_load``);
        None before any tick with a leg."""
        return None if tick_leg_load is None else tick_leg_load * (1.0 + self.overhead)

    def refusal(self, now: float, live: int, extra: int = 1, tick_leg_load: float | None = None) -> str | None:
        """Why ``extra`` more calls (1: a new call; 0: an outbound leg of a call already counted) are
        refused at ``now`` with ``live`` calls up, or None to take them. ``tick_leg_load``: the media
        tick's CPU seconds per leg over the 20 ms frame, recent (:attr:`TickStats.leg_seconds`)."""
        kind, message = self._why(now, live, extra, tick_leg_load)
        if kind is None:
            self._admitted += extra
            return None
        self.refused[kind] += 1
        return message

    def refusing(self, now: float, live: int, tick_leg_load: float | None = None) -> bool:
        """Whether a new call would be refused now; counts nothing (a probe, not a call)."""
        return self._why(now, live, 1, tick_leg_load)[0] is not None

    def _why(self, now: float, live: int, extra: int, tick_leg_load: float | None) -> tuple[str | None, str]:
        if self.draining:
            return "draining", "the server is shutting down and takes no new calls; try another server"
        if now < self._late_until:
            return "late", ("the server is overloaded: its calls missed media frames in the last "
                            f"{LATE_HOLD_S:g} s; try again later")
        if self.capacity_load <= 0.0 or live < self.min_calls:
            return None, ""
        cost = self.cost(tick_leg_load)
        if cost is not None and (projected := cost * (live + extra)) > self.capacity_load:
            return "overload", (f"the server is at capacity: {live + extra} calls would take {projected:.0%} of "
                                f"its event loop ({cost:.2%} each, measured), above {self.capacity_load:.0%} "
                                "(capacity_load); try again later")
        last = self.last
        if last is not None and now - last.end <= BUSY_FRESH_S and last.busy > self.capacity_load:
            return "overload", (f"the server is at capacity: its event loop was {last.busy:.0%} busy in the last "
                                f"second, above {self.capacity_load:.0%} (capacity_load); try again later")
        return None, ""
