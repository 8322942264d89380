"""Generated network traces for the jitter buffer, and the driver that plays them.

Shared by ``tests/test_jitter.py`` and ``bench/cases/jitter.py`` so both judge the same trace.

The trace (``generate``): one 20 ms packet per frame (8 kHz, 160 samples) sent at ``k * 20`` ms for
``seconds``; each packet is lost with probability ``loss`` (independently); a delivered packet arrives at
``send + base_ms + J`` where ``J = spread * (U1 + U2) / 2`` with U1, U2 independent uniform on [0, 1), i.e.
a triangular distribution on [0, spread) whose p95 is ``0.8419 * spread``.  ``spread`` is chosen so that
the p95 of J (the p95 of transit delay minus the fastest possible transit) is ``jitter_ms``: 30 ms jitter
means J spans 0..35.6 ms, mean 17.8 ms.  Packets overtake each other whenever two consecutive J differ by
more than 20 ms (about 6 % of them with 30 ms jitter): that is the reordering.  Sequence numbers and
timestamps start close to their wraparound points so every long trace crosses 65535 -> 0 and 2**32 -> 0.

The driver (``run``): the receiver ticks every 20 ms at ``tick_phase_ms + k * 20`` and at each tick pops
until the buffer returns nothing; packets that arrive at the same instant as a tick are put first.

Metrics (``Quality``), from the packets and the buffer's output only:
- late loss: packets that arrived but were never played (too late, or skipped to shrink the delay, or
  dropped by overflow), as a fraction of the packets that arrived;
- added delay: mean over played packets of (tick at which it was popped - send time), minus the fastest
  transit of the whole trace, i.e. the latency the buffer adds beyond the fastest packet;
- the trace's own p95 jitter (p95 of transit minus the fastest transit), for the bar "added delay <= p95
  jitter + 20 ms".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

FRAME_MS = 20.0
CLOCK_RATE = 8000
FRAME_SAMPLES = 160
# p95 of (U1 + U2) / 2: upper tail 2 t**2 = 0.05 -> t = sqrt(0.025)
TRIANGULAR_P95 = 1.0 - 0.025 ** 0.5


@dataclass(frozen=True, slots=True)
class Packet:
    seq: int
    ts: int
    ssrc: int
    pt: int
    marker: bool
    payload: bytes
    send_ms: float
    arrival_ms: float          # NaN when lost in the network


@dataclass(frozen=True, slots=True)
class Trace:
    packets: list[Packet]      # in send order
    jitter_ms: float           # requested p95 jitter
    loss: float

    def arrivals(self) -> list[Packet]:
        """Delivered packets in arrival order (stable for equal times)."""
        got = [p for p in self.packets if p.arrival_ms == p.arrival_ms]
        return sorted(got, key=lambda p: p.arrival_ms)

    def p95_jitter_ms(self) -> float:
        transit = np.array([p.arrival_ms - p.send_ms for p in self.arrivals()])
        return float(np.percentile(transit - transit.min(), 95))

    def fastest_transit_ms(self) -> float:
        return min(p.arrival_ms - p.send_ms for p in self.arrivals())


def payload_for(seq: int, size: int = 160) -> bytes:
    """A payload that names its packet (first two bytes = seq), so outputs can be checked."""
    return seq.to_bytes(2, "big") + bytes((seq + i) & 0xFF for i in range(size - 2))


def generate(seconds: float = 60.0, jitter_ms: float = 30.0, loss: float = 0.01, base_ms: float = 40.0,
             seed: int = 1, seq0: int = 65000, ts0: int = 2**32 - 160 * 1000, ssrc: int = 0x1234ABCD,
             pt: int = 0, payload_size: int = 160) -> Trace:
    rng = np.random.default_rng(seed)
    count = round(seconds * 1000.0 / FRAME_MS)
    spread = jitter_ms / TRIANGULAR_P95
    jitter = spread * (rng.random(count) + rng.random(count)) / 2.0
    lost = rng.random(count) < loss
    packets = []
    for k in range(count):
        seq = (seq0 + k) & 0xFFFF
        send = k * FRAME_MS
        arrival = float("nan") if lost[k] else send + base_ms + float(jitter[k])
        packets.append(Packet(seq, (ts0 + k * FRAME_SAMPLES) & 0xFFFFFFFF, ssrc, pt, k == 0,
                              payload_for(seq, payload_size), send, arrival))
    return Trace(packets, jitter_ms, loss)


class Buffer(Protocol):
    def put(self, seq: int, ts: int, ssrc: int, pt: int, marker: bool, payload: bytes,
            arrival_ms: float) -> int: ...
    def pop(self, now_ms: float) -> tuple[Any, ...] | None: ...


@dataclass(frozen=True, slots=True)
class Quality:
    arrived: int
    played: int
    late_loss: float           # fraction of arrived packets never played
    added_delay_ms: float      # mean (pop tick - send) - fastest transit
    wait_ms: float             # mean (pop tick - arrival): time spent in the buffer
    p95_jitter_ms: float
    outputs: list[tuple[Any, ...]]   # (now, *item) for every item popped


def run(buffer: Buffer, trace: Trace, tick_phase_ms: float = 0.0, tail_ms: float = 400.0) -> Quality:
    """Feed ``trace`` to ``buffer`` in time order, pop at every tick, and measure what was played."""
    arrivals = trace.arrivals()
    end = trace.packets[-1].send_ms + tail_ms + 1000.0
    outputs: list[tuple[Any, ...]] = []
    i = 0
    tick = tick_phase_ms
    while tick <= end:
        while i < len(arrivals) and arrivals[i].arrival_ms <= tick:
            p = arrivals[i]
            buffer.put(p.seq, p.ts, p.ssrc, p.pt, p.marker, p.payload, p.arrival_ms)
            i += 1
        while (item := buffer.pop(tick)) is not None:
            outputs.append((tick, *item))
        tick += FRAME_MS
    return measure(trace, outputs)


def measure(trace: Trace, outputs: list[tuple[Any, ...]]) -> Quality:
    by_seq = {p.seq: p for p in trace.packets}
    played_at: dict[int, float] = {}
    for now, kind, seq, *_ in outputs:
        if kind == 1:                                   # FRAME
            played_at.setdefault(seq, now)
    arrived = trace.arrivals()
    fastest = trace.fastest_transit_ms()
    delays = [now - by_seq[seq].send_ms - fastest for seq, now in played_at.items()]
    waits = [now - by_seq[seq].arrival_ms for seq, now in played_at.items()]
    return Quality(
        arrived=len(arrived),
        played=len(played_at),
        late_loss=(len(arrived) - len(played_at)) / len(arrived),
        added_delay_ms=float(np.mean(delays)),
        wait_ms=float(np.mean(waits)),
        p95_jitter_ms=trace.p95_jitter_ms(),
        outputs=outputs,
    )
