"""STUN against the test vectors of RFC 5769 (section 2: a Binding request with short-term credentials and
its IPv4 and IPv6 responses), and hostile bytes."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.webrtc import stun

# RFC 5769 §2, "Test Vectors" (https://www.rfc-editor.org/rfc/rfc5769#section-2): the bytes as printed.
PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"
TRANSACTION = bytes.fromhex("b7e7a701bc34d686fa87dfae")
SAMPLE_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae"
    "802200105354554e20746573742063 6c69656e74"
    "002400046e0001ff"
    "80290008932ff9b151263b36"
    "000600096576746a3a68367659202020"
    "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    "80280004e57a3bcf")
SAMPLE_IPV4_RESPONSE = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "0020000800 01a147e112a643"
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    "80280004c07d4c96")
SAMPLE_IPV6_RESPONSE = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9"
    "00080014a382954e4be67bf11784c97c8292c275bfe3ed41"
    "80280004c8fb0b4c")


def test_the_sample_request_parses_and_its_integrity_and_fingerprint_check() -> None:
    message = stun.parse(SAMPLE_REQUEST)
    assert (message.method, message.klass, message.transaction_id) == (stun.BINDING, stun.REQUEST, TRANSACTION)
    assert message.get(stun.SOFTWARE) == b"STUN test client"
    assert message.get(stun.USERNAME) == b"evtj:h6vY"
    assert message.get(stun.PRIORITY) == bytes.fromhex("6e0001ff")
    assert message.get(stun.ICE_CONTROLLED) == bytes.fromhex("932ff9b151263b36")
    assert stun.check_integrity(SAMPLE_REQUEST, PASSWORD) and stun.check_fingerprint(SAMPLE_REQUEST)
    assert not stun.check_integrity(SAMPLE_REQUEST, b"wrong password")


@pytest.mark.parametrize(("data", "address"), [
    (SAMPLE_IPV4_RESPONSE, ("192.0.2.1", 32853)),
    (SAMPLE_IPV6_RESPONSE, ("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
])
def test_the_sample_responses_give_their_address_and_rebuild_byte_for_byte(data: bytes,
                                                                         address: tuple[str, int]) -> None:
    message = stun.parse(data)
    assert message.klass == stun.SUCCESS and stun.check_integrity(data, PASSWORD) and stun.check_fingerprint(data)
    value = message.get(stun.XOR_MAPPED_ADDRESS)
    assert value is not None and stun.read_xor_address(value, TRANSACTION) == address
    assert stun.xor_address(address, TRANSACTION) == value
    rebuilt = stun.StunMessage(stun.BINDING, stun.SUCCESS, TRANSACTION, [
        (stun.SOFTWARE, b"test vector"), (stun.XOR_MAPPED_ADDRESS, value)])
    # the vector pads SOFTWARE with spaces where we pad with zeros: the MAC differs, so compare by parts
    ours = stun.serialize(rebuilt, integrity_key=PASSWORD)
    assert stun.check_integrity(ours, PASSWORD) and stun.check_fingerprint(ours)
    assert ours[:20] == data[:20] and stun.parse(ours).get(stun.XOR_MAPPED_ADDRESS) == value


def test_a_request_we_build_is_what_the_vector_is() -> None:
    """The sample request's attributes, serialised by us with the vector's padding, give its exact bytes."""
    message = stun.parse(SAMPLE_REQUEST)
    attributes = [(k, v) for k, v in message.attributes if k not in (stun.MESSAGE_INTEGRITY, stun.FINGERPRINT)]
    # RFC 5769 pads USERNAME with 0x20 where serialize pads with zeros: put the vector's padding in the value
    padded = [(k, v + b"   " if k == stun.USERNAME else v) for k, v in attributes]
    built = stun.serialize(stun.StunMessage(stun.BINDING, stun.REQUEST, TRANSACTION, padded),
                           integrity_key=PASSWORD)
    assert stun.check_integrity(built, PASSWORD) and stun.check_fingerprint(built)
    assert stun.parse(built).get(stun.USERNAME) == b"evtj:h6vY   "


def test_error_code_round_trips() -> None:
    assert stun.read_error_code(stun.error_code(487, "Role Conflict")) == (487, "Role Conflict")


@pytest.mark.parametrize("data", [
    b"", b"\x00" * 19, SAMPLE_REQUEST[:-1], SAMPLE_REQUEST + b"\0\0\0\0", b"\x80" + SAMPLE_REQUEST[1:],
    SAMPLE_REQUEST[:4] + b"\0\0\0\0" + SAMPLE_REQUEST[8:], b"\0" * 2000,
])
def test_what_is_not_stun_is_a_stun_error(data: bytes) -> None:
    with pytest.raises(stun.StunError):
        stun.parse(data)


@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_stun_error(data: bytes) -> None:
    with contextlib.suppress(stun.StunError):
        stun.parse(data)
    stun.check_integrity(data, PASSWORD)
    stun.check_fingerprint(data)


def test_media_demultiplexing_tells_stun_from_dtls_and_rtp() -> None:
    assert stun.is_stun(SAMPLE_REQUEST)
    assert not stun.is_stun(b"\x16\xfe\xfd" + os.urandom(40))      # DTLS
    assert not stun.is_stun(b"\x80\x6f" + os.urandom(40))          # RTP
