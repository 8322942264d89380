"""Shared prompts (issue 13): memory of N calls playing one 60 s file, shared buffer against a copy per call.

    python bench/prompts.py [--calls 200] [--seconds 60] [--ticks 250]

One engine with N in-memory legs (``stream`` transport, ``pcm`` codec, output discarded), each
process measured fresh (one child process per mode, so no mode inherits another's heap):

- ``none``: the legs, nothing played;
- ``loaded``: the same, and the prompt decoded into the loader's cache (the decoder's libraries and
  the one decoded copy), nothing played: the baseline of the per-call figures;
- ``copy``: every leg plays the prompt the way ``play`` did before issue 13: ``EngineLeg.append``
  copies the decoded file into the leg's playout queue;
- ``shared``: every leg plays it the way ``play`` does now: ``EngineLeg.share`` keeps a reference
  to the loader's read-only array.

The prompt is espeak-ng speech looped to ``--seconds`` at 16 kHz, written as a WAV into a temporary
media directory and decoded by :class:`pbx.media.loader.MediaLoader` (once: its cache hands every
call the same array). After the plays are queued the engine runs ``--ticks`` 20 ms frames (not paced
by the clock: this measures memory, and the frames make every leg actually play), then the child
reports VmRSS and its CPU per leg per tick. The parent prints RSS per mode, what playing adds per
call (mode - loaded) / N, and the ratio of the copy's cost to the shared buffer's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pbx.core.engine import Engine  # noqa: E402
from pbx.media.loader import MediaLoader  # noqa: E402
from pbx.memory import release_free_memory  # noqa: E402
from pbx.server.media import LegSink, MediaRunner  # noqa: E402
from support.audio import espeak_speech, write_wav  # noqa: E402

RATE = 16000
MODES = ("none", "loaded", "copy", "shared")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_prompt(media: Path, seconds: float) -> None:
    speech = espeak_speech(RATE)
    loops = -(-int(seconds * RATE) // len(speech))
    write_wav(media / "prompt.wav", np.tile(speech, loops)[:int(seconds * RATE)], RATE)


def child(mode: str, calls: int, ticks: int, media: Path) -> dict[str, float]:
    runner = MediaRunner(Engine(calls), audio_max_bytes=4_000_000_000)
    runner.serve(0.0)
    sink = LegSink(lambda event: None, lambda frame: None, lambda pcm: None)
    legs = [runner.add_leg(sink, "stream", "pcm", 0.0) for _ in range(calls)]
    runner.serve(20.0)
    loader = MediaLoader(media, cache_bytes=64 * 1024 * 1024)    # holds the decoded prompt for all modes
    if mode == "loaded":
        asyncio.run(loader.load("prompt.wav", RATE))
    elif mode != "none":
        for item, leg in enumerate(legs, 1):          # as the driver does: one load per call, cache hits
            pcm = asyncio.run(loader.load("prompt.wav", RATE))
            leg.enqueue(item, 1)
            if mode == "copy":
                leg.append(item, pcm)
            else:
                leg.share(item, pcm)
            leg.complete(item)
        del pcm
    started = time.process_time()
    for t in range(ticks):
        runner.serve(40.0 + 20.0 * t)
    cpu = time.process_time() - started
    release_free_memory()
    playing = sum(1 for leg in legs if leg.leg.playout.active)
    return {"rss_mb": rss_mb(), "us_per_leg_tick": cpu * 1e6 / (calls * ticks), "playing": playing,
            "budget_mb": runner.budget.total * 2 / 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--ticks", type=int, default=250)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--media", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.calls, args.ticks, args.media)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        media = Path(tmp)
        make_prompt(media, args.seconds)
        results = {}
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--media", str(media),
                                  "--calls", str(args.calls), "--ticks", str(args.ticks)],
                                 check=True, capture_output=True, text=True).stdout
            results[mode] = json.loads(out)
    prompt_mb = args.seconds * RATE * 2 / 1e6
    print(f"{args.calls} calls playing one {args.seconds:g} s prompt ({prompt_mb:.2f} MB decoded), "
          f"{args.ticks} frames played\n")
    print("| mode | RSS MB | playing adds, MB/call | budget counts MB | legs still playing | µs/leg/tick |")
    print("|---|---:|---:|---:|---:|---:|")
    base = results["loaded"]["rss_mb"]
    for mode in MODES:
        r = results[mode]
        per_call = f"{(r['rss_mb'] - base) / args.calls:.3f}" if mode in ("copy", "shared") else ""
        print(f"| {mode} | {r['rss_mb']:.1f} | {per_call} | {r['budget_mb']:.1f} | {r['playing']:.0f} "
              f"| {r['us_per_leg_tick']:.2f} |")
    copy_cost = results["copy"]["rss_mb"] - base
    shared_cost = results["shared"]["rss_mb"] - base
    idle = results["none"]["rss_mb"]
    print(f"\nwhat playing adds to the loaded prompt: copy {copy_cost:.1f} MB, shared {shared_cost:.1f} MB; "
          f"RSS with playback / without (none): copy {results['copy']['rss_mb'] / idle:.2f}x, "
          f"shared {results['shared']['rss_mb'] / idle:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
