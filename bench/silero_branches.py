"""What one silero window costs by model and sample rate, batched as the engine runs it.

    python bench/silero_branches.py [--rows 64,250,400] [--runs 30] [--agree-legs 12]

The shipped float model holds an 8 kHz graph (256 new samples + 32 of context a 32 ms window) beside
the 16 kHz one (512 + 64); each int8 model holds one of them quantised (silero_vad_int8.onnx,
silero_vad_int8_8k.onnx). A SIP
call's audio is 8 kHz (G.711): with ``silero_rate = "auto"`` it runs the 8 kHz graph on it, else the
16 kHz graph on it upsampled. This
bench times ``session.run`` on random audio for batches of ``--rows`` legs (one session, one thread,
the engine's options, bench/RESULTS.md "A thousand calls") and prints µs per row (per leg per window)
with the ratio to float at 16 kHz of the same batch size: the baseline, measured in the same run.

Then how far the decisions move (``--agree-legs`` espeak-ng conversations a line, three utterances
over 0.6-2.5 s pauses, decimated to 8 kHz, support/silero_events.py): the events of the engine's
silero path for each graph against the 16 kHz float graph on the same audio upsampled (what the
engine runs with ``silero_rate = "16000"``), skipping on in both; over digital silence and over
-70 and -45 dBFS white noise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from pbx.core.silero import SileroBatch, make_session, model_bytes

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]          # the checkout: support/
from support.audio import resampled  # noqa: E402
from support.silero_events import FLOOR, TOLERANCE_MS, agreement, conversation, engine_path  # noqa: E402

SHAPES = (("float", 16000, 576), ("float", 8000, 288), ("int8", 16000, 576), ("int8", 8000, 288))
SHAPES_TRIED = (("float", 8000), ("int8", 8000), ("int8", 16000))      # against float 16 kHz


def per_row_us(session: object, rate: int, width: int, rows: int, runs: int) -> float:
    rng = np.random.default_rng(rows)
    feed = {"input": (rng.standard_normal((rows, width)) * 0.1).astype(np.float32),
            "state": np.zeros((2, rows, 128), np.float32), "sr": np.array(rate, np.int64)}
    for _ in range(5):
        session.run(None, feed)                                  # type: ignore[attr-defined]
    best = float("inf")
    for _ in range(3):                                           # best of three: the machine may be shared
        started = time.perf_counter()
        for _ in range(runs):
            session.run(None, feed)                              # type: ignore[attr-defined]
        best = min(best, (time.perf_counter() - started) / runs / rows * 1e6)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="64,250,400", help="batch sizes (legs with a window due)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--agree-legs", type=int, default=12, help="conversations a line in the agreement runs")
    args = parser.parse_args()
    sizes = [int(r) for r in args.rows.split(",") if r.strip()]
    sessions = {(model, rate): make_session(1, model_bytes(model, rate)) for model, rate, _ in SHAPES}
    print(f"# command: python bench/silero_branches.py {' '.join(sys.argv[1:])}")
    print("| model | rate | rows | µs per row | vs float 16 kHz |")
    print("|---|---:|---:|---:|---:|")
    for rows in sizes:
        base = per_row_us(sessions["float", 16000], 16000, 576, rows, args.runs)
        for model, rate, width in SHAPES:
            us = base if (model, rate) == ("float", 16000) else \
                per_row_us(sessions[model, rate], rate, width, rows, args.runs)
            print(f"| {model} | {rate} | {rows} | {us:.1f} | {us / base:.2f}x |", flush=True)
    print()
    print(f"| line | graph | events | matched within {TOLERANCE_MS} ms | same ms | extra |")
    print("|---|---|---:|---:|---:|---:|")
    for background in (None, -70.0, -45.0):
        narrow = [resampled(conversation(seed, background), 16000, 8000) for seed in range(10, 10 + args.agree_legs)]
        wide = [resampled(x, 8000, 16000) for x in narrow]
        ref = engine_path(wide, SileroBatch(len(wide), skip_below=FLOOR))
        for model, rate in SHAPES_TRIED:
            batch = SileroBatch(len(wide), skip_below=FLOOR, model=model, rate=rate)
            found = agreement(ref, engine_path(narrow if rate == 8000 else wide, batch))
            line = "digital silence" if background is None else f"{background:g} dBFS noise"
            print(f"| {line} | {model} {rate // 1000} kHz | {found['events']} | "
                  f"{100 * found['matched'] / found['events']:.1f} % | {found['same_ms']} | {found['extra']} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
