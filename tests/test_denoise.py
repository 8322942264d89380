"""Per-leg noise suppression: real espeak-ng speech in noise, measured in speech pauses and in speech.

The scene is 0.5 s of silence, the espeak sentence pair, 0.5 s of silence, with noise added over the
whole length at a given SNR against the speech's mean power.  20 ms frames of the clean signal are
"speech" when within 30 dB of the loudest frame and "pause" when 60 dB below it; measurements skip the
first 0.5 s (the suppressor is still learning the noise) and compare input with the output shifted
back by the suppressor's delay.  Level 2 measured (noise seeds 1..6): white 10 dB SNR -> 11.6-11.7 dB
less noise in pauses, hum + noise -> 17.7-18.3 dB (the always-on high-pass filter alone gives 6.4 dB of
that), speech segments -0.9 and -1.1 dB.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from pbx.core import denoise
from pbx.core.denoise import DELAY_SAMPLES, FRAME, DenoiseBank
from pbx.core.errors import CoreError
from support.audio import espeak_speech, frames, snr_db
from support.oracles import denoise as oracle

RATE = 16000
SKIP_FRAMES = 25  # 0.5 s of adaptation at the start of a leg

Int16 = npt.NDArray[np.int16]
Float = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Scene:
    clean: Float
    speech: npt.NDArray[np.bool_]   # per 20 ms frame
    pause: npt.NDArray[np.bool_]
    power: float                    # mean power of the espeak utterance

    def noisy(self, noise: Float) -> Int16:
        return to_int16(self.clean + noise)


def to_int16(x: Float) -> Int16:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def scene() -> Scene:
    speech = espeak_speech(RATE).astype(np.float64)
    pad = np.zeros(RATE // 2)
    clean = np.concatenate([pad, speech, pad])
    clean = clean[: len(clean) // FRAME * FRAME]
    energy = (clean.reshape(-1, FRAME) ** 2).mean(axis=1)
    measured = np.arange(len(energy)) >= SKIP_FRAMES
    measured[-1] = False  # the aligned output's last frame is partly padding
    return Scene(clean, (energy > energy.max() * 1e-3) & measured, (energy < energy.max() * 1e-6) & measured,
                 float(np.mean(speech**2)))


def white(n: int, power: float, snr: float, seed: int) -> Float:
    w = np.random.default_rng(seed).standard_normal(n)
    return w * np.sqrt(power / 10 ** (snr / 10)) / w.std()


def hum_and_noise(n: int, power: float, seed: int) -> Float:
    """50 Hz mains hum with 100/150 Hz harmonics 6 dB under the speech, plus white noise 20 dB under it."""
    t = np.arange(n) / RATE
    hum = sum(a * np.sin(2 * np.pi * f * t) for f, a in ((50, 1.0), (100, 0.5), (150, 0.3)))
    return hum * np.sqrt(power / 10 ** (6 / 10)) / hum.std() + white(n, power, 20, seed)


def run(signal: Int16, level: int = 2) -> Int16:
    """A whole signal through a fresh bank, one 20 ms frame at a time."""
    bank = DenoiseBank(1, level)
    bank.enable(0)
    return np.concatenate([bank.process(0, f) for f in frames(signal, FRAME)])


def aligned(out: Int16) -> Int16:
    """The output moved back by the suppressor's delay, on the input's timeline."""
    return np.concatenate([out[DELAY_SAMPLES:], np.zeros(DELAY_SAMPLES, np.int16)])


def energy_db(signal: Int16 | Float, mask: npt.NDArray[np.bool_]) -> float:
    seg = np.asarray(signal, np.float64).reshape(-1, FRAME)[mask]
    return float(10 * np.log10(np.mean(seg**2)))


def lag_samples(ref: Int16 | Float, out: Int16, max_lag: int = 400) -> int:
    """The delay of ``out`` against ``ref`` at the cross-correlation peak."""
    n = len(ref) + len(out)
    xc = np.fft.irfft(np.fft.rfft(np.asarray(out, np.float64), n) * np.conj(np.fft.rfft(ref, n)), n)
    lags = np.r_[0 : max_lag + 1, -max_lag:0]
    return int(lags[np.argmax(np.r_[xc[: max_lag + 1], xc[-max_lag:]])])


def reduction(scene: Scene, noisy: Int16, level: int = 2) -> tuple[float, float]:
    """(noise reduction in pauses, speech energy change), both in dB."""
    out = aligned(run(noisy, level))
    return (energy_db(noisy, scene.pause) - energy_db(out, scene.pause),
            energy_db(out, scene.speech) - energy_db(noisy, scene.speech))


# --- what it does to audio ------------------------------------------------------------------------

def test_constants() -> None:
    assert (denoise.RATE, denoise.CHUNK, denoise.FRAME, denoise.DELAY_SAMPLES, denoise.MAX_LEVEL) == (
        16000, 160, 320, 96, 4)


def test_scene_has_pauses_and_speech_to_measure(scene: Scene) -> None:
    assert scene.speech.sum() > 250 and scene.pause.sum() > 60


@pytest.mark.parametrize("seed", [1, 2])
def test_white_noise_at_10_db_snr(scene: Scene, seed: int) -> None:
    noise = white(len(scene.clean), scene.power, 10, seed)
    assert 10 * np.log10(scene.power / np.mean(noise**2)) == pytest.approx(10, abs=0.01)
    noisy = scene.noisy(noise)
    noise_db, speech_db = reduction(scene, noisy)
    assert noise_db >= 10.5          # measured 11.6..11.7
    assert -2.0 <= speech_db <= 0.5  # measured -0.9


@pytest.mark.parametrize("seed", [1, 2])
def test_hum_plus_noise(scene: Scene, seed: int) -> None:
    noisy = scene.noisy(hum_and_noise(len(scene.clean), scene.power, seed))
    noise_db, speech_db = reduction(scene, noisy)
    assert noise_db >= 16.0          # measured 17.7..18.3; the high-pass filter alone gives 6.4
    assert -2.0 <= speech_db <= 0.5  # measured -1.1


def test_stronger_levels_remove_more_noise(scene: Scene) -> None:
    noisy = scene.noisy(white(len(scene.clean), scene.power, 10, 3))
    got = [reduction(scene, noisy, level) for level in (1, 2, 3, 4)]
    noise = [g[0] for g in got]
    assert noise == sorted(noise) and noise[0] >= 5.0 and noise[3] >= 18.0  # measured 6.0 / 19.6
    assert all(-2.0 <= g[1] <= 0.5 for g in got)


def test_output_is_closer_to_the_clean_speech(scene: Scene) -> None:
    """Against the clean speech through the same high-pass filter (library level 0: HPF only, no delay)."""
    noisy = scene.noisy(white(len(scene.clean), scene.power, 10, 4))
    hpf = oracle.processor(0)
    reference = np.empty(len(scene.clean), np.int16)
    oracle.denoise_frame_into(hpf, to_int16(scene.clean), reference)
    before = np.empty_like(reference)
    oracle.denoise_frame_into(oracle.processor(0), noisy, before)
    out = run(noisy)
    gain = snr_db(reference[:-DELAY_SAMPLES], out[DELAY_SAMPLES:]) - snr_db(reference, before)
    assert gain >= 2.5  # measured 3.8 dB


@pytest.mark.parametrize("noise", ["none", "white"])
def test_latency_is_96_samples(scene: Scene, noise: str) -> None:
    signal = scene.noisy(white(len(scene.clean), scene.power, 10, 5) if noise == "white" else 0 * scene.clean)
    assert lag_samples(scene.clean, run(signal)) == DELAY_SAMPLES == 96


@pytest.mark.parametrize("gain", [1.0, 0.03])
def test_agc_is_off_speech_keeps_its_level(scene: Scene, gain: float) -> None:
    """Clean speech, loud or 30 dB down, leaves at the level it came in (an AGC would lift the quiet one)."""
    speech = to_int16(scene.clean * gain)
    out = aligned(run(speech))
    assert energy_db(out, scene.speech) - energy_db(speech, scene.speech) == pytest.approx(0, abs=1.0)


def test_bit_identical_to_the_library_called_plainly(scene: Scene) -> None:
    noisy = scene.noisy(hum_and_noise(len(scene.clean), scene.power, 6))
    for level in (1, 4):
        assert np.array_equal(run(noisy, level), oracle.denoise(noisy, level))


# --- legs, frames, wrappers -----------------------------------------------------------------------

def interleaved(bank: DenoiseBank, streams: dict[int, Int16]) -> dict[int, Int16]:
    """Frame i of every slot before frame i + 1 of any, as the engine's tick does."""
    chunks = {slot: frames(sig, FRAME) for slot, sig in streams.items()}
    outs: dict[int, list[Int16]] = {slot: [] for slot in streams}
    for i in range(min(len(c) for c in chunks.values())):
        for slot in streams:
            outs[slot].append(bank.process(slot, chunks[slot][i]))
    return {slot: np.concatenate(o) for slot, o in outs.items()}


def test_slots_do_not_share_state(scene: Scene) -> None:
    a = scene.noisy(white(len(scene.clean), scene.power, 10, 7))
    b = to_int16(hum_and_noise(len(scene.clean), scene.power, 8) + np.roll(scene.clean, 4000) * 0.5)
    bank = DenoiseBank(4)
    bank.enable(0)
    bank.enable(3)
    both = interleaved(bank, {0: a, 3: b})
    assert np.array_equal(both[0], run(a)) and np.array_equal(both[3], run(b))
    assert not np.array_equal(both[0], both[3][: len(both[0])])


def test_enable_again_resets_the_slot(scene: Scene) -> None:
    noisy = scene.noisy(white(len(scene.clean), scene.power, 10, 9))
    bank = DenoiseBank(2)
    bank.enable(1)
    for f in frames(noisy, FRAME)[:100]:
        bank.process(1, f)
    bank.enable(1)
    assert np.array_equal(np.concatenate([bank.process(1, f) for f in frames(noisy, FRAME)]), run(noisy))


def test_frame_length_does_not_change_the_result(scene: Scene) -> None:
    noisy = scene.noisy(white(len(scene.clean), scene.power, 10, 10))[: 160 * 300]
    bank = DenoiseBank(1)
    bank.enable(0)
    tens = np.concatenate([bank.process(0, f) for f in frames(noisy, 160)])
    bank.enable(0)
    forties = np.concatenate([bank.process(0, f) for f in frames(noisy, 640)])
    assert np.array_equal(tens, forties) and np.array_equal(tens, run(noisy))


def test_process_into_in_place_and_separate(scene: Scene) -> None:
    noisy = scene.noisy(white(len(scene.clean), scene.power, 10, 11))
    banks = [DenoiseBank(1) for _ in range(3)]
    for b in banks:
        b.enable(0)
    out = np.empty(FRAME + 5, np.int16)
    for f in frames(noisy, FRAME)[:80]:
        kept = f.copy()
        expected = banks[0].process(0, f)
        assert np.array_equal(f, kept)  # process() leaves its input alone
        assert banks[1].process_into(0, f, out) == FRAME
        assert np.array_equal(out[:FRAME], expected) and np.array_equal(f, kept)
        assert banks[2].process_into(0, f, f) == FRAME
        assert np.array_equal(f, expected)


def test_enable_disable_and_queries() -> None:
    bank = DenoiseBank(3, level=4)
    assert (bank.max_legs, bank.level) == (3, 4)
    assert DenoiseBank(1).level == 2
    assert [bank.is_enabled(s) for s in range(3)] == [False] * 3
    bank.enable(2)
    assert [bank.is_enabled(s) for s in range(3)] == [False, False, True]
    bank.disable(2)
    bank.disable(2)
    assert not bank.is_enabled(2)
    with pytest.raises(ValueError, match=r"^slot 2 is not enabled$"):
        bank.process(2, np.zeros(FRAME, np.int16))


@pytest.mark.parametrize(("args", "message"), [
    ((0,), "max_legs must be positive"),
    ((2, 0), "level must be 1..4, got 0"),
    ((2, 5), "level must be 1..4, got 5"),
])
def test_bad_construction(args: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        DenoiseBank(*args)


def test_bad_arguments() -> None:
    bank = DenoiseBank(2)
    bank.enable(0)
    frame = np.zeros(FRAME, np.int16)
    for call in (bank.enable, bank.disable, bank.is_enabled, lambda s: bank.process(s, frame)):
        for slot in (-1, 2):
            with pytest.raises(ValueError, match=rf"^slot {slot} out of range 0\.\.1$"):
                call(slot)
    for n in (0, 100, 330):
        with pytest.raises(ValueError, match=rf"^frame must be a positive multiple of 160 samples "
                                             rf"\(10 ms at 16 kHz\), got {n}$"):
            bank.process(0, np.zeros(n, np.int16))
    with pytest.raises(ValueError, match=r"^out holds 319 samples, need 320$"):
        bank.process_into(0, frame, np.zeros(319, np.int16))
    with pytest.raises(TypeError, match=r"^frame must hold int16 samples, got format 'f'$"):
        bank.process(0, np.zeros(FRAME, np.float32))
    read_only = np.zeros(FRAME, np.int16)
    read_only.setflags(write=False)
    with pytest.raises(TypeError, match=r"^out is read-only$"):
        bank.process_into(0, frame, read_only)
    untouched = np.arange(FRAME, dtype=np.int16)
    with pytest.raises(ValueError, match="not enabled"):
        bank.process_into(1, frame, untouched)
    assert np.array_equal(untouched, np.arange(FRAME, dtype=np.int16))  # checked before anything is written


# --- the library boundary, with stand-ins --------------------------------------------------------

class Result:
    def __init__(self, audio: object) -> None:
        self.audio = audio
        self.is_speech = False


class Recorder:
    """A stand-in processor: records how it was made and every chunk it saw, echoes or returns ``reply``."""

    def __init__(self, auto_gain: int, noise_suppression: int, reply: object = None) -> None:
        self.args = (auto_gain, noise_suppression)
        self.seen: list[bytes] = []
        self.reply = reply

    def Process10ms(self, chunk: bytes) -> Result:  # the library's name
        self.seen.append(chunk)  # keeps a reference, as a careless library might
        return Result(chunk[::-1] if self.reply is None else self.reply)


def bank_with(reply: object = None) -> tuple[DenoiseBank, list[Recorder]]:
    made: list[Recorder] = []

    def factory(auto_gain: int, noise_suppression: int) -> Any:
        made.append(Recorder(auto_gain, noise_suppression, reply))
        return made[-1]

    return DenoiseBank(2, level=3, processor=factory), made


def test_processor_is_made_with_agc_off_and_the_level() -> None:
    bank, made = bank_with()
    bank.enable(1)
    assert [m.args for m in made] == [(0, 3)]  # auto_gain=0: AGC off


def test_chunks_handed_to_the_library_are_never_rewritten() -> None:
    bank, made = bank_with()
    bank.enable(0)
    a = np.arange(FRAME, dtype=np.int16)
    b = -np.arange(FRAME, dtype=np.int16)
    out_a, out_b = bank.process(0, a), bank.process(0, b)
    seen = made[0].seen
    assert [np.frombuffer(s, np.int16).tolist() for s in seen] == [
        a[:160].tolist(), a[160:].tolist(), b[:160].tolist(), b[160:].tolist()]
    assert np.array_equal(out_a[:160], np.frombuffer(a[:160].tobytes()[::-1], np.int16))
    assert np.array_equal(out_b[160:], np.frombuffer(b[160:].tobytes()[::-1], np.int16))


@pytest.mark.parametrize(("reply", "message"), [
    (bytes(318), "webrtc-noise-gain returned 318 bytes of audio, expected 320"),
    (bytearray(320), "webrtc-noise-gain returned bytearray audio, expected bytes"),
])
def test_library_misbehaviour_is_a_core_error(reply: object, message: str) -> None:
    bank, _ = bank_with(reply)
    bank.enable(0)
    with pytest.raises(CoreError, match=f"^{message}$"):
        bank.process(0, np.zeros(FRAME, np.int16))


@pytest.fixture
def no_library(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(sys.modules, "webrtc_noise_gain", None)
    yield


@pytest.mark.usefixtures("no_library")
def test_missing_library_says_what_to_install() -> None:
    with pytest.raises(ImportError, match=r"^denoise needs the webrtc-noise-gain package "
                                          r"\(pip install webrtc-noise-gain\)$"):
        DenoiseBank(1)
    DenoiseBank(1, processor=Recorder)  # a given processor needs no library
