"""Timing harness shared by the kernel benchmarks.

Each case gives two factories (ours and its reference) that return a callable
processing frame ``i``: the harness calls it once per 20 ms frame, exactly as
the engine would, and measures process CPU time for the whole run.  Every
figure is the median of ``runs`` runs; the ratio is reference / ours measured
in the same process.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

FrameFn = Callable[[int], object]


@dataclass(frozen=True)
class Case:
    kernel: str                                   # what is measured, e.g. "G.711 PCMU encode+decode"
    frame: str                                    # what one call handles, e.g. "160 samples @ 8 kHz"
    ours: Callable[[], FrameFn]                   # fresh state per run
    baseline: str                                 # the reference's name
    reference: Callable[[], FrameFn] | None
    frames: int = 5000                            # frames per run
    bar_us: float | None = None                   # acceptance bar, µs per frame


@dataclass(frozen=True)
class Result:
    case: Case
    ours_us: float
    ref_us: float | None

    @property
    def ratio(self) -> float | None:
        return None if self.ref_us is None else self.ref_us / self.ours_us


def per_frame_us(factory: Callable[[], FrameFn], frames: int, runs: int) -> float:
    """Median over ``runs`` of CPU µs per call, calling a fresh instance once per frame."""
    samples = []
    for run in range(runs + 1):
        fn = factory()
        fn(0)  # warm caches and lazy initialisation outside the timed loop
        start = time.process_time_ns()
        for i in range(frames):
            fn(i)
        if run:  # the first run only warms caches, branch predictors and the CPU clock
            samples.append((time.process_time_ns() - start) / frames / 1000.0)
    return statistics.median(samples)


def run_case(case: Case, runs: int = 5) -> Result:
    ours = per_frame_us(case.ours, case.frames, runs)
    ref = None if case.reference is None else per_frame_us(case.reference, case.frames, runs)
    return Result(case, ours, ref)


def markdown(results: list[Result]) -> str:
    lines = [
        "| kernel | per call | ours µs | baseline | baseline µs | speed-up | bar µs | meets bar |",
        "|---|---|---:|---|---:|---:|---:|---|",
    ]
    for r in results:
        c = r.case
        ref = "-" if r.ref_us is None else f"{r.ref_us:.3f}"
        ratio = "-" if r.ratio is None else f"{r.ratio:.1f}x"
        bar = "-" if c.bar_us is None else f"{c.bar_us:g}"
        ok = "-"
        if c.bar_us is not None:
            ok = "yes" if r.ours_us <= c.bar_us and (r.ratio is None or r.ratio >= 1.0) else "NO"
        lines.append(f"| {c.kernel} | {c.frame} | {r.ours_us:.3f} | {c.baseline} | {ref} | {ratio} | {bar} | {ok} |")
    return "\n".join(lines)
