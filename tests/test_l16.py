"""L16: RTP big-endian and s16le byte streams <-> native int16, against NumPy byte-order conversions."""

from __future__ import annotations

import array
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.core import l16
from pbx.core.errors import MalformedPacket
from support.audio import espeak_speech, frames
from support.oracles import l16 as oracle

EXTREMES = np.array([0, 1, -1, 255, 256, -256, 0x1234, -0x1234, 32767, -32768], np.int16)


def test_l16_is_big_endian_on_the_wire() -> None:
    assert l16.l16_encode(np.array([0x1234, -2], np.int16)) == b"\x12\x34\xff\xfe"
    assert l16.l16_decode(b"\x12\x34\xff\xfe").tolist() == [0x1234, -2]
    assert l16.s16le_encode(np.array([0x1234, -2], np.int16)) == b"\x34\x12\xfe\xff"
    assert l16.s16le_decode(b"\x34\x12\xfe\xff").tolist() == [0x1234, -2]


def test_matches_numpy_byteswap_on_all_16_bit_values() -> None:
    every = np.arange(-32768, 32768, dtype=np.int16)
    assert l16.l16_encode(every) == every.astype(">i2").tobytes()
    native_be = every.byteswap() if sys.byteorder == "little" else every
    assert l16.l16_encode(every) == native_be.tobytes()
    assert np.array_equal(l16.l16_decode(every.astype(">i2").tobytes()), every)
    assert l16.s16le_encode(every) == every.astype("<i2").tobytes()
    assert np.array_equal(l16.s16le_decode(every.astype("<i2").tobytes()), every)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1000).map(lambda b: b[: len(b) & ~1]))
def test_decode_any_even_payload_like_numpy(payload: bytes) -> None:
    decoded = l16.l16_decode(payload)
    assert decoded.dtype == np.int16 and np.array_equal(decoded, oracle.l16_decode(payload))
    assert l16.l16_encode(decoded) == payload
    little = l16.s16le_decode(payload)
    assert np.array_equal(little, oracle.s16le_decode(payload))
    assert l16.s16le_encode(little) == payload


def test_speech_frames_through_the_into_forms() -> None:
    pcm = np.empty(320, np.int16)
    wire = np.empty(640, np.uint8)
    for chunk in frames(espeak_speech(16000), 320)[::5]:
        assert l16.l16_encode_into(chunk, wire) == 640
        assert wire.tobytes() == oracle.l16_encode(chunk)
        assert l16.l16_decode_into(wire, pcm) == 320
        assert np.array_equal(pcm, chunk)
        assert l16.s16le_encode_into(chunk, wire) == 640
        assert wire.tobytes() == oracle.s16le_encode(chunk)
        assert l16.s16le_decode_into(wire, pcm) == 320
        assert np.array_equal(pcm, chunk)


def test_into_forms_leave_the_rest_of_out_alone() -> None:
    wire = bytearray(b"\xaa" * 24)
    assert l16.l16_encode_into(EXTREMES, wire) == 20
    assert bytes(wire[:20]) == oracle.l16_encode(EXTREMES) and wire[20:] == b"\xaa" * 4
    out = np.full(12, 7, np.int16)
    assert l16.l16_decode_into(bytes(wire[:20]), out) == 10
    assert np.array_equal(out[:10], EXTREMES) and out[10:].tolist() == [7, 7]


def test_other_buffer_types_are_accepted() -> None:
    payload = oracle.l16_encode(EXTREMES)
    assert l16.l16_encode(array.array("h", EXTREMES.tolist())) == payload
    assert np.array_equal(l16.l16_decode(memoryview(payload)), EXTREMES)
    assert np.array_equal(l16.l16_decode(np.frombuffer(payload, np.uint8)), EXTREMES)
    sink = array.array("h", [0] * 10)
    assert l16.s16le_decode_into(bytearray(oracle.s16le_encode(EXTREMES)), sink) == 10
    assert list(sink) == EXTREMES.tolist()


def test_odd_rtp_payload_is_a_malformed_packet() -> None:
    for call in (lambda: l16.l16_decode(b"\x00\x01\x02"),
                 lambda: l16.l16_decode_into(b"\x00\x01\x02", np.empty(4, np.int16))):
        with pytest.raises(MalformedPacket) as info:
            call()
        assert str(info.value) == "L16 payload has odd length 3"
        assert isinstance(info.value, ValueError)


def test_odd_s16le_data_is_a_value_error() -> None:
    for call in (lambda: l16.s16le_decode(b"\x00"),
                 lambda: l16.s16le_decode_into(b"\x00", np.empty(4, np.int16))):
        with pytest.raises(ValueError) as info:
            call()
        assert type(info.value) is ValueError and str(info.value) == "s16le data has odd length 1"


@pytest.mark.parametrize(
    ("fn", "args", "exc", "message"),
    [
        (l16.l16_encode, (np.zeros(4, np.int32),), TypeError, "pcm must hold int16 samples, got format 'i'"),
        (l16.s16le_encode, (b"\x00\x00",), TypeError, "pcm must hold int16 samples, got format 'B'"),
        (l16.l16_encode, (np.zeros(8, np.int16)[::2],), ValueError, "pcm must be C-contiguous"),
        (l16.l16_decode, (np.zeros(4, np.int16),), TypeError, "data must hold bytes, got format 'h'"),
        (l16.l16_decode, (1234,), TypeError, "data must be a buffer of bytes, not int"),
        (l16.l16_encode_into, (np.zeros(4, np.int16), bytearray(7)), ValueError, "out holds 7 bytes, need 8"),
        (l16.s16le_encode_into, (np.zeros(4, np.int16), b"\x00" * 8), TypeError, "out is read-only"),
        (l16.l16_decode_into, (bytes(8), np.zeros(3, np.int16)), ValueError, "out holds 3 samples, need 4"),
        (l16.s16le_decode_into, (bytes(8), np.zeros(4, np.float32)), TypeError,
         "out must hold int16 samples, got format 'f'"),
    ],
)
def test_bad_arguments_raise_exact_errors(
    fn: object, args: tuple[object, ...], exc: type[Exception], message: str
) -> None:
    assert callable(fn)
    with pytest.raises(exc) as info:
        fn(*args)
    assert type(info.value) is exc and str(info.value) == message


def test_empty() -> None:
    assert l16.l16_encode(np.empty(0, np.int16)) == b""
    assert l16.l16_decode(b"").shape == (0,)
    assert l16.s16le_decode_into(b"", np.empty(0, np.int16)) == 0
