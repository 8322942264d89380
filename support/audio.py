"""Real test audio: espeak-ng speech and generated tones, as int16 numpy arrays.

Speech is synthesised by the espeak-ng command line (Debian package) once and
cached under ``support/.fixtures``; it is resampled with soxr (very high quality,
whole-file) to the rate a test asks for.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import soxr

FIXTURES = Path(__file__).resolve().parent / ".fixtures"
DEFAULT_TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "Please call Stella and ask her to bring these things with her from the store."
)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono or multi-channel 16-bit WAV -> (int16 array [frames, channels] or [frames], rate)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit samples, got {8 * w.getsampwidth()}-bit")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
        channels = w.getnchannels()
        rate = w.getframerate()
    if channels > 1:
        data = data.reshape(-1, channels)
    return data, rate


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    """Mono 16-bit WAV of ``pcm``."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def espeak_speech(rate: int = 16000, text: str = DEFAULT_TEXT, voice: str = "en-us") -> np.ndarray:
    """Speech from espeak-ng at ``rate`` Hz (int16 mono), cached on disk."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (make deps installs it)")
    key = hashlib.sha1(f"{voice}|{text}".encode()).hexdigest()[:16]
    FIXTURES.mkdir(parents=True, exist_ok=True)
    raw = FIXTURES / f"espeak-{key}.wav"
    if not raw.exists():
        tmp = raw.with_suffix(f".tmp{os.getpid()}.wav")     # processes making the same file at once
        subprocess.run([exe, "-v", voice, "-w", str(tmp), text], check=True, capture_output=True)
        tmp.rename(raw)
    data, src_rate = read_wav(raw)
    if src_rate == rate:
        return data
    out = soxr.resample(data.astype(np.float32) / 32768.0, src_rate, rate, quality="VHQ")
    return np.clip(np.round(out * 32768.0), -32768, 32767).astype(np.int16)


def resampled(pcm: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """int16 audio at ``rate_in`` resampled to ``rate_out`` (soxr's default quality), rounded and clipped."""
    return np.clip(np.round(soxr.resample(pcm.astype(np.float32), rate_in, rate_out)), -32768, 32767).astype(np.int16)


def tone(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    """A sine tone as int16 (amplitude relative to full scale)."""
    t = np.arange(round(rate * seconds)) / rate
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def frames(signal: np.ndarray, size: int) -> list[np.ndarray]:
    """Split a signal into whole frames of ``size`` samples (the tail is dropped)."""
    n = len(signal) // size
    return [np.ascontiguousarray(signal[i * size:(i + 1) * size]) for i in range(n)]


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-noise ratio of ``test`` against ``reference`` in dB."""
    ref = reference.astype(np.float64)
    err = ref - test.astype(np.float64)
    return float(10 * np.log10(np.sum(ref * ref) / max(np.sum(err * err), 1e-12)))
