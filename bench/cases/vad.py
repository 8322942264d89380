"""Voice activity detection: batched silero, the WebRTC bank, and the speaking/silence state machine.

- silero: one ``SileroBatch.infer_into`` over 128 legs (real speech and silence) every 128th call, so the
  harness's per-call figure is the cost per leg per 32 ms window, amortised over the batch; the baseline
  is single-stream onnxruntime (one ``session.run`` of one row per leg per window, support/oracles/silero.py).
- webrtc: ``WebRtcBank.is_speech`` on one 20 ms frame vs the webrtcvad package's ``Vad.is_speech`` on bytes.
- state machine: ``VadBank.feed_many`` over 128 legs every 128th call (per leg per window), and one
  ``VadBank.feed`` per call, vs the pure-Python oracle.

``quality()`` tabulates silero wall and CPU µs per leg per window for N = 1, 32, 128, 256.
"""

from __future__ import annotations

import importlib.metadata
import statistics
import time

import numpy as np
import webrtcvad

from pbx.core import silero
from pbx.core.silero import SileroBatch
from pbx.core.vad import VadBank, WebRtcBank
from support.audio import espeak_speech, frames
from support.oracles import silero as silero_oracle
from support.oracles.vad import VadOracle

from harness import Case, FrameFn

LEGS = 128
BATCHES = 8          # distinct batches of windows cycled through
WINDOW = silero.WINDOW


def leg_windows(n_legs: int, batches: int) -> np.ndarray:
    """float32 [batches, n_legs, 512]: every leg reads real speech at its own offset, every 4th is silent."""
    speech = espeak_speech(16000).astype(np.float32) / 32768
    out = np.zeros((batches, n_legs, WINDOW), np.float32)
    for leg in range(n_legs):
        if leg % 4 == 3:
            continue
        for b in range(batches):
            start = (leg * 4099 + b * WINDOW) % (len(speech) - WINDOW)
            out[b, leg] = speech[start:start + WINDOW]
    return out


def silero_batched(n_legs: int) -> FrameFn:
    batch = SileroBatch(n_legs)
    windows = leg_windows(n_legs, BATCHES)
    slots = np.arange(n_legs, dtype=np.int32)
    out = np.empty(n_legs, np.float32)
    infer_into = batch.infer_into

    def step(i: int) -> object:
        if i % n_legs == 0:   # one batch per n_legs calls: per call = per leg per window
            return infer_into(slots, windows[(i // n_legs) % BATCHES], out)
        return None

    return step


def silero_single_stream() -> FrameFn:
    session = silero_oracle.make_session(silero.model_bytes())
    streams = [silero_oracle.SileroStream(session) for _ in range(LEGS)]
    windows = leg_windows(LEGS, BATCHES)

    def step(i: int) -> object:
        return streams[i % LEGS](windows[(i // LEGS) % BATCHES, i % LEGS])

    return step


def speech_frames() -> list[np.ndarray]:
    speech = espeak_speech(16000)
    pause = np.zeros(8000, np.int16)
    return frames(np.concatenate([pause, speech, pause]), 320)


def webrtc_ours() -> FrameFn:
    chunks = speech_frames()
    bank = WebRtcBank(1)
    bank.configure(0, 0.5)
    is_speech = bank.is_speech
    count = len(chunks)

    def step(i: int) -> object:
        return is_speech(0, chunks[i % count])

    return step


def webrtc_package() -> FrameFn:
    chunks = speech_frames()
    vad = webrtcvad.Vad(2)
    count = len(chunks)

    def step(i: int) -> object:
        return vad.is_speech(chunks[i % count].tobytes(), 16000)

    return step


def decisions(n_legs: int, windows: int) -> np.ndarray:
    """float32 [windows, n_legs] speech probabilities: runs of speech (0.6..1) and silence (0..0.4)."""
    rng = np.random.default_rng(7)
    out = np.empty((windows, n_legs), np.float32)
    for leg in range(n_legs):
        t = 0
        voiced = bool(leg % 2)
        while t < windows:
            n = int(rng.integers(3, 60))
            lo = 0.6 if voiced else 0.0
            out[t:t + n, leg] = lo + 0.4 * rng.random(min(n, windows - t))
            t += n
            voiced = not voiced
    return out


STATE_WINDOWS = 512


def state_machine_batched() -> FrameFn:
    bank = VadBank(LEGS)
    for slot in range(LEGS):
        bank.configure(slot, silence_timeout_ms=1000)
    values = decisions(LEGS, STATE_WINDOWS)
    slots = np.arange(LEGS, dtype=np.int32)
    starts = np.zeros(LEGS, np.int64)
    feed_many = bank.feed_many
    drain = bank.drain

    def step(i: int) -> object:
        if i % LEGS == 0:
            w = i // LEGS
            starts.fill(32 * w)
            feed_many(slots, values[w % STATE_WINDOWS], starts, 32)
            return drain()
        return None

    return step


def state_machine_single() -> FrameFn:
    bank = VadBank(1)
    bank.configure(0, silence_timeout_ms=1000)
    values = decisions(1, STATE_WINDOWS)[:, 0].tolist()
    feed = bank.feed
    drain = bank.drain

    def step(i: int) -> object:
        if feed(0, values[i % STATE_WINDOWS], 32 * i, 32):
            drain()
        return None

    return step


def state_machine_oracle() -> FrameFn:
    oracles = [VadOracle(silence_timeout_ms=1000) for _ in range(LEGS)]
    values = decisions(LEGS, STATE_WINDOWS)

    def step(i: int) -> object:
        w = i // LEGS
        return oracles[i % LEGS].feed(float(values[w % STATE_WINDOWS, i % LEGS]), 32 * w, 32)

    return step


def cases() -> list[Case]:
    return [
        Case("silero batched N=128 (per leg per 32 ms window)", "512 samples @ 16 kHz, 1 of 128 legs",
             lambda: silero_batched(LEGS), "onnxruntime single-stream", silero_single_stream,
             frames=LEGS * 40, bar_us=35.0),
        Case("webrtc VAD per 20 ms frame", "320 samples @ 16 kHz, mode 2",
             webrtc_ours, "webrtcvad.Vad.is_speech(bytes)", webrtc_package),
        Case("state machine feed, feed_many N=128 (per leg per window)", "1 decision, 1 of 128 legs",
             state_machine_batched, "Python oracle", state_machine_oracle, frames=LEGS * 200),
        Case("state machine feed, one feed() call", "1 decision",
             state_machine_single, "Python oracle", state_machine_oracle),
    ]


def silero_cost(n_legs: int, runs: int = 5) -> tuple[float, float, float]:
    """Median wall, best wall and median CPU µs per leg per window of one batched inference over n_legs.

    The best wall time shows the cost without interference from other processes on the machine."""
    batch = SileroBatch(n_legs)
    windows = leg_windows(n_legs, BATCHES)
    slots = np.arange(n_legs, dtype=np.int32)
    out = np.empty(n_legs, np.float32)
    batches = max(20, 2560 // n_legs)
    for b in range(BATCHES):
        batch.infer_into(slots, windows[b], out)
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter_ns(), time.process_time_ns()
        for b in range(batches):
            batch.infer_into(slots, windows[b % BATCHES], out)
        walls.append((time.perf_counter_ns() - wall) / batches / n_legs / 1000)
        cpus.append((time.process_time_ns() - cpu) / batches / n_legs / 1000)
    return statistics.median(walls), min(walls), statistics.median(cpus)


def quality() -> str:
    session = silero.make_session()
    names = ", ".join(f"{i.name} {i.type} {i.shape}" for i in session.get_inputs())
    outs = ", ".join(f"{o.name} {o.type} {o.shape}" for o in session.get_outputs())
    lines = [
        f"silero VAD (onnxruntime {importlib.metadata.version('onnxruntime')}, 1 intra-op thread; "
        f"inputs: {names}; outputs: {outs})",
        "",
        "| legs per batch | wall µs per leg per window (median) | wall µs (best of 5) "
        "| CPU µs per leg per window | % of a core per leg |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n in (1, 32, 128, 256):
        wall, best, cpu = silero_cost(n)
        lines.append(f"| {n} | {wall:.1f} | {best:.1f} | {cpu:.1f} | {cpu / 32e3 * 100:.3f} |")
    return "\n".join(lines)
