"""G.711: bit-exact against a literal transcription of the G.191 reference, on every input."""

from __future__ import annotations

import array
import warnings
from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest

from pbx.core import g711
from support.audio import espeak_speech, frames, snr_db
from support.oracles import g711 as oracle

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)   # deprecated in 3.11/3.12; audioop-lts on 3.13+
    try:
        import audioop as _audioop
    except ImportError:
        _audioop = None
audioop: ModuleType | None = _audioop

ALL_INPUTS = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))
LAWS = ["ulaw", "alaw"]


def kernel(law: str, op: str) -> Callable[..., object]:
    fn: Callable[..., object] = getattr(g711, f"{law}_{op}")
    return fn


@pytest.mark.parametrize(("law", "reference"),
                         [("ulaw", oracle.ulaw_compress), ("alaw", oracle.alaw_compress)])
def test_encode_matches_g191_on_all_65536_inputs(law: str, reference: Callable[[int], int]) -> None:
    expected = bytes(reference(int(x)) for x in ALL_INPUTS)
    assert kernel(law, "encode")(ALL_INPUTS) == expected


@pytest.mark.parametrize(("law", "reference"), [("ulaw", oracle.ulaw_expand), ("alaw", oracle.alaw_expand)])
def test_decode_matches_g191_on_all_256_codes(law: str, reference: Callable[[int], int]) -> None:
    decoded = kernel(law, "decode")(ALL_CODES)
    assert isinstance(decoded, np.ndarray) and decoded.dtype == np.int16
    assert decoded.tolist() == [reference(c) for c in ALL_CODES]


def test_known_values() -> None:
    # Fixed points of the standard: silence, full scale, decoder extremes.
    assert g711.ulaw_encode(np.array([0, -1, 32767, -32768], np.int16)) == bytes([0xFF, 0x7F, 0x80, 0x00])
    assert g711.alaw_encode(np.array([0, -1, 32767, -32768], np.int16)) == bytes([0xD5, 0x55, 0xAA, 0x2A])
    assert g711.ulaw_decode(bytes([0x80, 0x00, 0xFF, 0x7F])).tolist() == [32124, -32124, 0, 0]
    assert g711.alaw_decode(bytes([0xAA, 0x2A, 0xD5, 0x55])).tolist() == [32256, -32256, 8, -8]


def test_reencoding_a_decoded_code_gives_the_code_back() -> None:
    ulaw_back = g711.ulaw_encode(g711.ulaw_decode(ALL_CODES))
    # 0x7F is mu-law's "negative zero": it decodes to 0, which encodes as 0xFF.
    assert [c for c in ALL_CODES if ulaw_back[c] != c] == [0x7F]
    assert ulaw_back[0x7F] == 0xFF
    assert g711.alaw_encode(g711.alaw_decode(ALL_CODES)) == ALL_CODES


@pytest.mark.parametrize("law", LAWS)
def test_speech_frames_through_the_into_forms(law: str) -> None:
    speech = espeak_speech(8000)
    reference = getattr(oracle, f"{law}_encode")
    encode_into, decode_into = kernel(law, "encode_into"), kernel(law, "decode_into")
    code = np.empty(160, np.uint8)
    pcm = np.empty(160, np.int16)
    chunks = frames(speech, 160)
    decoded = []
    for chunk in chunks[::10]:
        assert encode_into(chunk, code) == 160
        assert code.tobytes() == reference(chunk.tolist())
        assert decode_into(code, pcm) == 160
        decoded.append(pcm.copy())
    original = np.concatenate(chunks[::10])
    # G.711 gives about 38 dB on speech; a table off by a step would show here.
    assert snr_db(original, np.concatenate(decoded)) > 30


@pytest.mark.parametrize("law", LAWS)
def test_into_forms_write_only_n_items_and_return_n(law: str) -> None:
    pcm = ALL_INPUTS[::409].copy()  # 161 samples across the range
    code = np.full(200, 0x11, np.uint8)
    assert kernel(law, "encode_into")(pcm, code) == 161
    assert code[:161].tobytes() == kernel(law, "encode")(pcm)
    assert (code[161:] == 0x11).all()
    out = np.full(300, 7, np.int16)
    assert kernel(law, "decode_into")(code[:161], out) == 161
    assert np.array_equal(out[:161], kernel(law, "decode")(code[:161]))
    assert (out[161:] == 7).all()


@pytest.mark.parametrize("law", LAWS)
def test_other_buffer_types_are_accepted(law: str) -> None:
    pcm = np.array([0, 1000, -1000, 32767, -32768], np.int16)
    expected = kernel(law, "encode")(pcm)
    assert kernel(law, "encode")(array.array("h", pcm.tolist())) == expected
    assert kernel(law, "encode")(memoryview(pcm.tobytes()).cast("h")) == expected
    assert kernel(law, "encode")(pcm.astype("<i2")) == expected            # native on this host
    out = bytearray(5)
    assert kernel(law, "encode_into")(pcm, out) == 5 and bytes(out) == expected
    decoded = kernel(law, "decode")(expected)
    for data in (bytearray(expected), memoryview(expected), np.frombuffer(expected, np.int8)):
        assert np.array_equal(kernel(law, "decode")(data), decoded)
    sink = array.array("h", [0] * 5)
    assert kernel(law, "decode_into")(expected, sink) == 5 and list(sink) == decoded.tolist()


@pytest.mark.parametrize("law", LAWS)
def test_empty_input(law: str) -> None:
    assert kernel(law, "encode")(np.empty(0, np.int16)) == b""
    assert kernel(law, "decode")(b"").shape == (0,)
    assert kernel(law, "encode_into")(np.empty(0, np.int16), bytearray()) == 0


PCM = np.zeros(160, np.int16)
CODES = bytes(160)


@pytest.mark.parametrize("law", LAWS)
@pytest.mark.parametrize(
    ("op", "args", "exc", "message"),
    [
        ("encode", ([0, 1, 2],), TypeError, "pcm must be a buffer of int16 samples, not list"),
        ("encode", (np.zeros(160),), TypeError, "pcm must hold int16 samples, got format 'd'"),
        ("encode", (np.zeros(160, np.uint16),), TypeError, "pcm must hold int16 samples, got format 'H'"),
        ("encode", (CODES,), TypeError, "pcm must hold int16 samples, got format 'B'"),
        ("encode", (np.zeros(160, ">i2"),), TypeError, "pcm must hold int16 samples, got format '>h'"),
        ("encode", (np.zeros((2, 80), np.int16),), ValueError,
         "pcm must be one-dimensional, got 2 dimensions"),
        ("encode", (np.zeros(320, np.int16)[::2],), ValueError, "pcm must be C-contiguous"),
        ("encode_into", (PCM, bytes(160)), TypeError, "out is read-only"),
        ("encode_into", (PCM, np.zeros(159, np.uint8)), ValueError, "out holds 159 bytes, need 160"),
        ("encode_into", (PCM, np.zeros(160, np.int16)), TypeError, "out must hold bytes, got format 'h'"),
        ("decode", ("abc",), TypeError, "data must be a buffer of bytes, not str"),
        ("decode", (PCM,), TypeError, "data must hold bytes, got format 'h'"),
        ("decode_into", (CODES, np.zeros(159, np.int16)), ValueError, "out holds 159 samples, need 160"),
        ("decode_into", (CODES, bytearray(320)), TypeError, "out must hold int16 samples, got format 'B'"),
        ("decode_into", (CODES, None), TypeError, "out must be a buffer of int16 samples, not NoneType"),
    ],
)
def test_bad_arguments_raise_exact_errors(
    law: str, op: str, args: tuple[object, ...], exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc) as info:
        kernel(law, op)(*args)
    assert type(info.value) is exc and str(info.value) == message


def test_read_only_numpy_out_is_refused() -> None:
    out = np.zeros(160, np.int16)
    out.flags.writeable = False
    with pytest.raises(TypeError, match=r"^out is read-only$"):
        g711.ulaw_decode_into(CODES, out)


# --- audioop (the stdlib baseline) against G.191 ----------------------------------

def audioop_mismatches(law: str) -> tuple[list[int], list[int]]:
    """Inputs where audioop's lin2{law} differs from G.191, and codes where {law}2lin differs."""
    assert audioop is not None
    encoded = np.frombuffer(getattr(audioop, f"lin2{law}")(ALL_INPUTS.tobytes(), 2), np.uint8)
    expected = np.frombuffer(kernel(law, "encode")(ALL_INPUTS), np.uint8)
    decoded = np.frombuffer(getattr(audioop, f"{law}2lin")(ALL_CODES, 2), np.int16)
    return (ALL_INPUTS[encoded != expected].tolist(),
            [c for c in ALL_CODES if decoded[c] != kernel(law, "decode")(ALL_CODES)[c]])


@pytest.mark.skipif(audioop is None, reason="audioop (audioop-lts on Python 3.13+) is not installed")
def test_where_audioop_differs_from_g191(capsys: pytest.CaptureFixture[str]) -> None:
    ulaw_enc, ulaw_dec = audioop_mismatches("ulaw")
    alaw_enc, alaw_dec = audioop_mismatches("alaw")
    with capsys.disabled():
        print(f"\naudioop vs G.191: mu-law encode differs on {len(ulaw_enc)} inputs "
              f"({ulaw_enc[:8]} ... {ulaw_enc[-8:]}), mu-law decode on {ulaw_dec}, "
              f"A-law encode on {alaw_enc}, A-law decode on {alaw_dec}")
    # audioop (from the Sun g711.c) takes the magnitude of a negative 14-bit mu-law
    # sample as -(x >> 2), G.191 as ~x >> 2, one less: audioop encodes every negative
    # x like G.191 encodes x - 4.  That moves each of the 127 decision thresholds
    # between negative codes by one 14-bit step, so 4 16-bit inputs per threshold
    # differ: 4 * 127 = 508 inputs, all negative (the last group, -4..-1, is coded
    # 0x7F by G.191 and 0x7E by audioop).  For A-law both fold negatives with the
    # one's complement, and both decoders agree on all 256 codes.
    shifted = [x for x in range(-32768, 0)
               if x - 4 >= -32768 and oracle.ulaw_compress(x - 4) != oracle.ulaw_compress(x)]
    assert ulaw_enc == shifted
    assert len(ulaw_enc) == 508
    assert ulaw_enc[:8] == [-31612, -31611, -31610, -31609, -30588, -30587, -30586, -30585]
    assert ulaw_enc[-8:] == [-12, -11, -10, -9, -4, -3, -2, -1]
    assert ulaw_dec == [] and alaw_enc == [] and alaw_dec == []
