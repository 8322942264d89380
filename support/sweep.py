"""Swept-sine measurements of a streaming resampler (used by tests and bench).

A resampler is given as a factory of per-frame functions (fresh state per tone)
and is fed 20 ms frames, exactly as on the real-time path.  For each test tone
the steady-state output (after ``SETTLE_S``) is least-squares fitted with a
sine at the tone's frequency:

- passband tones (50 Hz .. passband edge): everything but the fitted tone is
  the residual (images, aliases, noise), in dB relative to the tone; the fitted
  amplitude against the input's gives the passband gain;
- tones that would alias into the passband when down-sampling (from
  ``out_rate - edge`` up to the input Nyquist frequency): the whole output, in
  dB relative to the input tone.

Passband edge: 3400 Hz when either side is 8 kHz (telephony), else 0.85 x the
lower Nyquist frequency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]
FrameFn = Callable[[Pcm], Pcm]

AMPLITUDE = 0.5 * 32767      # test tones at -6 dBFS
SETTLE_S = 0.05              # output skipped before measuring (start-up transient)


def passband_edge(in_rate: int, out_rate: int) -> float:
    lower = min(in_rate, out_rate)
    return 3400.0 if lower == 8000 else 0.85 * lower / 2


def tone(freq: float, rate: int, seconds: float) -> Pcm:
    t = np.arange(round(rate * seconds)) / rate
    return np.round(AMPLITUDE * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def stream(make: Callable[[], FrameFn], signal: Pcm, rate: int) -> Pcm:
    """Feed ``signal`` in 20 ms frames to a fresh instance; the outputs joined."""
    process = make()
    size = rate // 50
    parts = [process(signal[i:i + size]) for i in range(0, len(signal) - size + 1, size)]
    return np.concatenate(parts)


def fit_tone(y: Pcm, freq: float, rate: int) -> tuple[float, float]:
    """(amplitude of the best-fitting sine at ``freq``, residual power in dB relative to it)."""
    t = np.arange(len(y)) / rate
    basis = np.column_stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)])
    coef, *_ = np.linalg.lstsq(basis, y.astype(np.float64), rcond=None)
    fitted = basis @ coef
    residual = y - fitted
    return float(np.hypot(*coef)), float(10 * np.log10(np.mean(residual**2) / np.mean(fitted**2)))


def power_db(y: Pcm) -> float:
    """Power of ``y`` in dB relative to a test tone's."""
    power = max(float(np.mean(y.astype(np.float64) ** 2)), 1e-3)   # an all-zero output: -111 dB
    return float(10 * np.log10(power / (AMPLITUDE**2 / 2)))


@dataclass(frozen=True)
class Sweep:
    worst_residual_db: float     # passband tones: largest non-tone output relative to the tone
    worst_residual_hz: float
    worst_alias_db: float | None  # alias-band tones: largest output relative to the input
                                  # (None when the pair has no such band: up-sampling)
    worst_alias_hz: float | None
    gain_db: tuple[float, float]  # passband gain, (min, max)


def sweep(make: Callable[[], FrameFn], in_rate: int, out_rate: int,
          points: int = 41, seconds: float = 0.5) -> Sweep:
    edge = passband_edge(in_rate, out_rate)
    skip = int(out_rate * SETTLE_S)
    residuals, gains = [], []
    passband = np.linspace(50.0, edge, points)
    for freq in passband:
        amp, res = fit_tone(stream(make, tone(freq, in_rate, seconds), in_rate)[skip:], freq, out_rate)
        residuals.append(res)
        gains.append(20 * np.log10(amp / AMPLITUDE))
    worst = int(np.argmax(residuals))
    alias_db = alias_hz = None
    if out_rate - edge < in_rate / 2:
        band = np.linspace(out_rate - edge, in_rate / 2 - 50.0, points)
        levels = [power_db(stream(make, tone(f, in_rate, seconds), in_rate)[skip:]) for f in band]
        alias_db, alias_hz = float(max(levels)), float(band[int(np.argmax(levels))])
    return Sweep(float(residuals[worst]), float(passband[worst]), alias_db, alias_hz,
                 (float(min(gains)), float(max(gains))))
