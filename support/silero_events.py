"""Silero VAD decisions the way the engine makes them, for tests and benches that compare configurations:
espeak-ng conversations with pauses over a chosen background, the engine's silero path (20 ms pushes, one
``run_ready`` a tick, probabilities gated at the energy floor, a VadBank) and the events it gives."""

from __future__ import annotations

import numpy as np

from pbx.core.silero import SileroBatch
from pbx.core.vad import VadBank
from support.audio import espeak_speech

FLOOR = 3400.0            # core/engine.pyx ENERGY_FLOOR: -55 dBFS as a mean square
TOLERANCE_MS = 64         # two windows


def conversation(seed: int, background_dbfs: float | None) -> np.ndarray:
    """Three utterances with pauses of 0.6-2.5 s, over white noise at ``background_dbfs`` (None: none)."""
    rng = np.random.default_rng(seed)
    parts = []
    for text in ("Hello, I am calling about my order.", "Yes.",
                 "Could you check whether it left the warehouse?"):
        parts.append(np.zeros(int(rng.uniform(0.6, 2.5) * 16000), np.float32))
        parts.append(espeak_speech(16000, text).astype(np.float32))
    parts.append(np.zeros(16000, np.float32))
    x = np.concatenate(parts)
    if background_dbfs is not None:
        x += rng.standard_normal(x.shape[0]).astype(np.float32) * 32768.0 * 10 ** (background_dbfs / 20)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def engine_path(signals: list[np.ndarray], batch: SileroBatch) -> list[list[tuple[int, int]]]:
    """The engine's silero path: 20 ms pushes, one run_ready per tick, gated probabilities to VadBank."""
    vad = VadBank(batch.max_legs)
    events: list[list[tuple[int, int]]] = [[] for _ in signals]
    tick = batch.rate // 50                             # 20 ms of samples at the batch's rate
    for t in range(min(len(s) for s in signals) // tick):
        for leg, s in enumerate(signals):
            batch.push(leg, s[t * tick:(t + 1) * tick], t * 20)
        if batch.run_ready():
            slots, probs, starts = batch.results()
            gated = np.where(batch.result_energies() >= FLOOR, probs, 0).astype(np.float32)
            vad.feed_many(slots, gated, starts, 32)
        for slot, kind, _time, start, _dur in vad.drain():
            events[slot].append((kind, start))
    return events


def agreement(ref: list[list[tuple[int, int]]], got: list[list[tuple[int, int]]],
              tolerance_ms: int = TOLERANCE_MS) -> dict[str, int]:
    """How many of ``ref``'s events ``got`` has (same kind, within ``tolerance_ms``), at the same ms, and
    how many more events ``got`` has, over all legs; ``max_diff`` of the matched ones, in ms."""
    total = matched = same = extra = max_diff = 0
    for leg_ref, leg_got in zip(ref, got, strict=True):
        for kind, start in leg_ref:
            total += 1
            diffs = [abs(s - start) for k, s in leg_got if k == kind]
            if diffs and min(diffs) <= tolerance_ms:
                matched += 1
                same += min(diffs) == 0
                max_diff = max(max_diff, min(diffs))
        extra += max(0, len(leg_got) - len(leg_ref))
    return {"events": total, "matched": matched, "same_ms": same, "extra": extra, "max_diff": max_diff}
