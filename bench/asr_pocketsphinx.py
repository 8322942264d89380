"""PocketSphinx ASR provider: decoder creation, real-time factor, and event-loop stalls.

    python bench/asr_pocketsphinx.py [--seconds 20]

- Creation: wall seconds to get a ready decoder (bare = grammar/keywords, lm = language model), cold
  and from the provider's idle pool.
- RTF: process CPU seconds per second of audio, espeak-ng speech fed in 100 ms chunks through the
  provider's blocking recognizer (what a worker thread runs), per search mode.
- Event-loop stall: the largest lateness of a 5 ms asyncio ticker while one LM stream is fed 200 ms
  chunks on the provider's worker thread (the binding holds the GIL while it decodes), with the
  provider's 20 ms slicing and with whole chunks per process_raw call.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pbx.asr.pocketsphinx as ps_asr
from pbx.asr.base import AsrOptions
from pbx.asr.pocketsphinx import PocketsphinxAsr, parse_options
from support.audio import espeak_speech

RATE = 16000
SENTENCES = (
    "call stella and ask her to bring these things",
    "i would like to book a table for two",
    "what is the weather today",
    "please call stella and ask her to bring the phone",
)
GRAMMAR = (
    "#JSGF V1.0;\ngrammar bench;\npublic <s> = " + " | ".join(SENTENCES) + " | hang up the phone ;\n"
)
MODES = {
    "grammar (JSGF, 5 phrases)": AsrOptions(extra={"grammar": GRAMMAR}),
    "keywords (3 phrases)": AsrOptions(extra={"keywords": ["stella", "weather", "table"]}),
    "language model (en-us)": AsrOptions(),
}


def speech(seconds: float) -> np.ndarray:
    gap = np.zeros(RATE // 2, np.int16)
    parts: list[np.ndarray] = []
    while sum(len(p) for p in parts) < seconds * RATE:
        for text in SENTENCES:
            parts += [espeak_speech(RATE, text=text), gap]
    return np.concatenate(parts)[: int(seconds * RATE)]


def creation() -> list[str]:
    rows = []
    for label, options in (("bare (grammar)", MODES["grammar (JSGF, 5 phrases)"]),
                           ("lm", MODES["language model (en-us)"])):
        provider = PocketsphinxAsr()
        search = parse_options(options)
        timings = []
        start = time.perf_counter()
        first = provider.checkout(search)
        timings.append(("first (for lm: also loads the LM file)", time.perf_counter() - start))
        start = time.perf_counter()
        provider.checkout(search)
        timings.append(("second", time.perf_counter() - start))
        provider.checkin(first)
        start = time.perf_counter()
        provider.checkout(search)
        timings.append(("from the idle pool", time.perf_counter() - start))
        rows += [f"| {label} | {step} | {1000 * seconds:.1f} ms |" for step, seconds in timings]
    return rows


def rtf(provider: PocketsphinxAsr, audio: np.ndarray) -> list[str]:
    rows = []
    chunk = RATE // 10
    for label, options in MODES.items():
        recognizer = provider.checkout(parse_options(options))
        start = time.process_time()
        for i in range(0, len(audio), chunk):
            recognizer.feed(audio[i:i + chunk])
            if (i // chunk) % 30 == 29:            # an utterance every 3 s, as VAD would mark them
                recognizer.end_utterance()
        recognizer.end_utterance()
        cpu = time.process_time() - start
        rows.append(f"| {label} | {cpu / (len(audio) / RATE):.3f} | {len(audio) / RATE:.0f} s |")
        provider.checkin(recognizer)
    return rows


async def stall(audio: np.ndarray, slice_samples: int | None) -> tuple[float, float]:
    """Worst and p99 lateness of a 5 ms ticker while a stream decodes ``audio`` (None: no stream)."""
    ps_asr.SLICE_SAMPLES = slice_samples or RATE
    provider = PocketsphinxAsr(workers=1)
    stream = await provider.open_stream(AsrOptions())
    await stream.feed(audio[:RATE // 10])                  # the LM's first-use costs are not stalls
    worst = 0.0
    lates: list[float] = []
    done = False

    async def ticker() -> None:
        nonlocal worst
        loop = asyncio.get_running_loop()
        while not done:
            due = loop.time() + 0.005
            await asyncio.sleep(0.005)
            late = loop.time() - due
            lates.append(late)
            worst = max(worst, late)

    task = asyncio.create_task(ticker())
    chunk = RATE // 5
    for i in range(0, len(audio), chunk):
        if slice_samples is None:
            await asyncio.sleep(chunk / RATE / 10)
        else:
            await stream.feed(audio[i:i + chunk])
    done = True
    await task
    await stream.close()
    await provider.close()
    return 1000 * worst, 1000 * float(np.percentile(lates, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per RTF/stall measurement")
    args = parser.parse_args()
    audio = speech(args.seconds)
    provider = PocketsphinxAsr()

    print("| decoder | when | time to a ready decoder |\n| --- | --- | --- |")
    print("\n".join(creation()))
    print("\n| search | RTF (CPU s / audio s) | audio |\n| --- | --- | --- |")
    print("\n".join(rtf(provider, audio)))
    print("\n| LM stream fed 200 ms chunks | worst loop stall | p99 |\n| --- | --- | --- |")
    sliced = ps_asr.SLICE_SAMPLES
    for label, samples in (("no decoding (the machine's own noise)", None),
                           (f"sliced ({sliced} samples per call)", sliced),
                           ("whole chunk per call", RATE)):
        worst, p99 = asyncio.run(stall(audio[: 10 * RATE], samples))
        print(f"| {label} | {worst:.1f} ms | {p99:.1f} ms |")
    ps_asr.SLICE_SAMPLES = sliced


if __name__ == "__main__":
    main()
