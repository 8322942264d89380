"""Mixer and stereo interleaver: exact equality with the NumPy fixed-point oracle (64-bit sums)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.core import mixer
from support.audio import espeak_speech, frames
from support.oracles import mixer as oracle

FULL = np.full(320, 32767, np.int16)
NEG_FULL = np.full(320, -32768, np.int16)


def rng_pcm(seed: int, n: int = 320) -> np.ndarray:
    return np.random.default_rng(seed).integers(-32768, 32768, n).astype(np.int16)


def both(inputs: list[np.ndarray], gains: list[float]) -> np.ndarray:
    """Kernel result through both forms, checked against the oracle."""
    expected = oracle.mix(inputs, gains)
    got = mixer.mix(inputs, gains)
    out = np.empty(len(inputs[0]), np.int16)
    assert mixer.mix_into(inputs, gains, out) == len(out)
    assert np.array_equal(got, out) and np.array_equal(got, expected)
    return got


def test_constants_match_the_documented_fixed_point() -> None:
    assert (mixer.GAIN_Q_ONE, mixer.MAX_INPUTS, mixer.MAX_GAIN) == (1024, 16, 4.0)
    # The worst case the limits allow must fit an int32 (with the rounding offset).
    assert mixer.MAX_INPUTS * 32768 * round(mixer.MAX_GAIN * mixer.GAIN_Q_ONE) - 512 <= 2**31


@pytest.mark.parametrize(
    ("gain", "q"),
    [(0.0, 0), (1.0, 1024), (0.5, 512), (4.0, 4096), (0.7, 717), (2, 2048),
     (1 / 2048, 1), (1 / 2048 - 1e-9, 0)],
)
def test_gain_to_q_rounds_half_up(gain: float, q: int) -> None:
    assert mixer.gain_to_q(gain) == q == oracle.gain_to_q(gain)


def test_unity_gain_single_input_is_identity_and_gain_zero_is_silence() -> None:
    x = rng_pcm(1)
    assert np.array_equal(both([x], [1.0]), x)
    assert not both([x], [0.0]).any()
    assert np.array_equal(both([x, rng_pcm(2)], [1.0, 0.0]), x)


def test_two_full_scale_inputs_saturate() -> None:
    assert (both([FULL, FULL], [1.0, 1.0]) == 32767).all()
    assert (both([NEG_FULL, NEG_FULL], [1.0, 1.0]) == -32768).all()
    assert (both([FULL, NEG_FULL], [1.0, 1.0]) == -1).all()  # exact: 32767 - 32768


def test_saturation_happens_once_after_the_whole_sum() -> None:
    a = np.full(8, 30000, np.int16)
    # Clamping after each addition would give 32767 - 30000 = 2767.
    assert both([a, a, -a], [1.0, 1.0, 1.0]).tolist() == [30000] * 8


def test_gain_above_one_amplifies_and_saturates() -> None:
    x = np.array([0, 1000, -1000, 10000, -10000, 16383, -16384, 32767], np.int16)
    assert both([x], [2.5]).tolist() == [0, 2500, -2500, 25000, -25000, 32767, -32768, 32767]
    assert both([x], [4.0]).tolist()[:3] == [0, 4000, -4000]


def test_rounding_is_half_up_after_the_sum() -> None:
    x = np.array([1, -1, 3, -3, 5, -5], np.int16)
    # x * 512 / 1024 = x / 2: halves round toward +inf.
    assert both([x], [0.5]).tolist() == [1, 0, 2, -1, 3, -2]


def test_sixteen_inputs_at_the_gain_limit_do_not_overflow_32_bits() -> None:
    gains = [4.0] * 16
    assert (both([NEG_FULL] * 16, gains) == -32768).all()
    assert (both([FULL] * 16, gains) == 32767).all()
    # Half at +full, half at -full: the sum is -8 * 4096 = -32768 -> -32 after the shift.
    assert (both([FULL] * 8 + [NEG_FULL] * 8, gains) == -32).all()
    small = np.full(320, 2047, np.int16)
    assert (both([small] * 16, [1.0] * 16) == 32752).all()


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 16).flatmap(lambda k: st.tuples(
        st.lists(st.floats(0.0, 4.0), min_size=k, max_size=k),
        st.integers(0, 2**32 - 1),
        st.integers(0, 700),
    ))
)
def test_random_mixes_match_the_oracle(case: tuple[list[float], int, int]) -> None:
    gains, seed, n = case
    rng = np.random.default_rng(seed)
    inputs = [rng.integers(-32768, 32768, n).astype(np.int16) for _ in gains]
    both(inputs, gains)


def test_speech_over_speech() -> None:
    speech = frames(espeak_speech(16000), 320)
    out = np.empty(320, np.int16)
    for i in range(0, len(speech) - 40, 7):
        gains = [0.8, 1.7]
        assert mixer.mix_into([speech[i], speech[i + 40]], gains, out) == 320
        assert np.array_equal(out, oracle.mix([speech[i], speech[i + 40]], gains))


def test_mix_into_leaves_the_rest_of_out_alone() -> None:
    out = np.full(10, 9, np.int16)
    assert mixer.mix_into([np.arange(8, dtype=np.int16)], [1.0], out) == 8
    assert out.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 9, 9]


X = np.zeros(4, np.int16)


@pytest.mark.parametrize(
    ("args", "exc", "message"),
    [
        (([X, X], [1.0]), ValueError, "got 2 inputs and 1 gains"),
        (([], []), ValueError, "mix takes 1 to 16 inputs, got 0"),
        (([X] * 17, [1.0] * 17), ValueError, "mix takes 1 to 16 inputs, got 17"),
        (([X, X], [1.0, -0.5]), ValueError, "gains[1] = -0.5 is outside [0, 4]"),
        (([X], [4.001]), ValueError, "gains[0] = 4.001 is outside [0, 4]"),
        (([X], [math.nan]), ValueError, "gains[0] = nan is outside [0, 4]"),
        (([X], ["1"]), TypeError, "gains[0] must be a real number, not str"),
        (([X, np.zeros(5, np.int16)], [1.0, 1.0]), ValueError, "inputs[1] has 5 samples, inputs[0] has 4"),
        (([X, np.zeros(4, np.int32)], [1.0, 1.0]), TypeError,
         "inputs[1] must hold int16 samples, got format 'i'"),
        (([X, [0, 0, 0, 0]], [1.0, 1.0]), TypeError, "inputs[1] must be a buffer of int16 samples, not list"),
    ],
)
def test_bad_mix_arguments_raise_exact_errors(
    args: tuple[object, object], exc: type[Exception], message: str
) -> None:
    for call in (lambda: mixer.mix(*args), lambda: mixer.mix_into(*args, np.zeros(4, np.int16))):
        with pytest.raises(exc) as info:
            call()
        assert type(info.value) is exc and str(info.value) == message


def test_mix_into_checks_out() -> None:
    with pytest.raises(ValueError, match=r"^out holds 3 samples, need 4$"):
        mixer.mix_into([X], [1.0], np.zeros(3, np.int16))
    with pytest.raises(TypeError, match=r"^out is read-only$"):
        mixer.mix_into([X], [1.0], memoryview(bytes(8)).cast("h"))


# --- stereo interleave -------------------------------------------------------------

def test_interleave_matches_the_oracle() -> None:
    left, right = rng_pcm(3), rng_pcm(4)
    expected = oracle.interleave_stereo(left, right)
    assert expected[:4].tolist() == [left[0], right[0], left[1], right[1]]
    assert np.array_equal(mixer.interleave_stereo(left, right), expected)
    out = np.full(641, 5, np.int16)
    assert mixer.interleave_stereo_into(left, right, out) == 640
    assert np.array_equal(out[:640], expected) and out[640] == 5


def test_interleave_speech_and_empty() -> None:
    speech = frames(espeak_speech(16000), 320)
    out = np.empty(640, np.int16)
    for left, right in zip(speech[::9], speech[4::9], strict=False):
        assert mixer.interleave_stereo_into(left, right, out) == 640
        pairs = out.reshape(-1, 2)
        assert np.array_equal(pairs[:, 0], left) and np.array_equal(pairs[:, 1], right)
    assert mixer.interleave_stereo(np.empty(0, np.int16), np.empty(0, np.int16)).shape == (0,)


@pytest.mark.parametrize(
    ("args", "exc", "message"),
    [
        ((X, np.zeros(3, np.int16)), ValueError, "left has 4 samples, right has 3"),
        ((X.astype(np.float32), X), TypeError, "left must hold int16 samples, got format 'f'"),
        ((X, np.zeros(8, np.int16)[::2]), ValueError, "right must be C-contiguous"),
    ],
)
def test_bad_interleave_arguments_raise_exact_errors(
    args: tuple[object, object], exc: type[Exception], message: str
) -> None:
    out = np.zeros(8, np.int16)
    for call in (lambda: mixer.interleave_stereo(*args), lambda: mixer.interleave_stereo_into(*args, out)):
        with pytest.raises(exc) as info:
            call()
        assert type(info.value) is exc and str(info.value) == message


def test_interleave_into_checks_out() -> None:
    with pytest.raises(ValueError, match=r"^out holds 7 samples, need 8$"):
        mixer.interleave_stereo_into(X, X, np.zeros(7, np.int16))
