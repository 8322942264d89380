"""pbx.core.rtp against the struct-based oracle (support/oracles/rtp.py) and aiortc.

Parsers are checked on captured-shape fixtures, on every truncation of them,
and on fuzzed input: the only exception a peer's bytes may cause is
MalformedPacket, with the same message the oracle gives.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

import numpy as np
import pytest
from aiortc import rtp as artp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.core import rtp
from pbx.core.errors import MalformedPacket
from support.oracles import rtp as oracle

# ---------------------------------------------------------------------------
# Fixtures: packets in the shape real endpoints send, written out per the RFC
# bit layouts (hex), with the fields each one exercises.

# A PCMU (PT 0) voice packet from a SIP phone, 20 ms = 160 samples.  V=2, P=0, X=0,
# CC=0, M=0, seq 0x3A5C, ts 160000, SSRC 0x5E1B3C4D.  The payload is real speech
# (espeak-ng, G.711 mu-law encoded).
PCMU_HEADER = "80003a5c000271005e1b3c4d"
PCMU_PAYLOAD = (
    "f7684b433e3e3c3d3c3d3e3f414752e1e759c8c9e9eefae3d4ea5f554e4f535c5e6a6b6d74f9f67d727772fbfb"
    "6d696ceed7cbc8cfe2e2dbcfe5503e3c4266d5c8bfbcb2aca5a1a3adbef5fd713e2d2321252d333d3f4852ebc4"
    "bcbed25d4d59666b5249484f6cded4d4d8deddd8d3d4ddff5c5352585d5e56515263e1ccc7cadaf1e3d1cbec49"
    "3b3d4dd8cbc2bfbcb3aba4a1a6b7d859dd723d292123293139"
)
PCMU = bytes.fromhex(PCMU_HEADER + PCMU_PAYLOAD)

# An Opus (PT 111) packet from a WebRTC browser at a talk-spurt start: M=1, X=1 with an
# RFC 8285 one-byte extension (profile 0xBEDE, 2 words): id 1 = audio level (V=1, 5 dBov),
# id 3 = abs-send-time (3 bytes), 2 padding zeros.  Payload: a 3-byte Opus DTX frame.
OPUS_EXT = bytes.fromhex("90ef1a2b000bb800a1b2c3d4" "bede0002" "1085320c8a3f0000" "f8fffe")

# A G.722 (PT 9) packet from a conference mixer: CC=2 (CSRCs 10 and 11) and P=1 with
# 4 padding bytes (3 zeros + the count), e.g. for SRTP block alignment.
MIXER_PADDED = bytes.fromhex("a20900070000050011223344" "0000000a0000000b" "55aa55aa55aa55aa" "00000004")

# RFC 4733 telephone-event (PT 101): the first packet of digit '5' (M=1, E=0, volume 10,
# duration 160) and the end packet (M=0, E=1, duration 800).
DTMF_START = bytes.fromhex("80e5002c0001f4000d0e0f10" "050a00a0")
DTMF_END = bytes.fromhex("8065002f0001f4000d0e0f10" "058a0320")

RTP_FIXTURES = {"pcmu": PCMU, "opus_ext": OPUS_EXT, "mixer_padded": MIXER_PADDED,
                "dtmf_start": DTMF_START, "dtmf_end": DTMF_END}

# RTCP compound from a softphone: SR (RC=1: sender info + one report block with
# fraction 10/256, 3 lost, jitter 20, LSR/DLSR set) then SDES with a 16-byte CNAME.
SR_SDES = bytes.fromhex(
    "81c8000c" "5e1b3c4d" "e9a1b2c340000000" "00027100" "00000032" "00001f40"
    "a1b2c3d4" "0a000003" "00011a2b" "00000014" "b2c34000" "00010000"
    "81ca0006" "5e1b3c4d" "0110" + b"alice@192.0.2.10".hex() + "0000"
)
# RTCP compound at hang-up: RR whose block reports cumulative lost -2 (duplicates,
# signed 24-bit 0xFFFFFE), then BYE (SC=1) with the 7-byte reason "hang up".
RR_BYE = bytes.fromhex(
    "81c90007" "a1b2c3d4" "5e1b3c4d" "00fffffe" "00003a70" "00000008" "00000000" "00000000"
    "81cb0003" "a1b2c3d4" "07" + b"hang up".hex()
)
RTCP_FIXTURES = {"sr_sdes": SR_SDES, "rr_bye": RR_BYE}


# ---------------------------------------------------------------------------
# Helpers: our objects in the oracle's terms, and outcome of a parse


def as_oracle(p: rtp.RtpPacket) -> oracle.Rtp:
    return oracle.Rtp(p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc, p.csrc,
                      p.extension_profile, p.extension, p.padding_length, p.payload)


def block_tuple(b: rtp.ReportBlock) -> oracle.Block:
    return (b.ssrc, b.fraction_lost, b.cumulative_lost, b.highest_sequence, b.jitter, b.lsr, b.dlsr)


def rtcp_tuple(p: rtp.RtcpPacket) -> tuple[object, ...]:
    if isinstance(p, rtp.SenderReport):
        return ("SR", p.ssrc, p.ntp_timestamp, p.rtp_timestamp, p.packet_count, p.octet_count,
                [block_tuple(b) for b in p.reports], p.extension)
    if isinstance(p, rtp.ReceiverReport):
        return ("RR", p.ssrc, [block_tuple(b) for b in p.reports], p.extension)
    if isinstance(p, rtp.Bye):
        return ("BYE", p.sources, p.reason)
    return ("UNKNOWN", p.packet_type, p.count, p.body)


def exact(message: str) -> str:
    """A pytest ``match`` pattern for exactly this message."""
    return "^" + re.escape(message) + "$"


def outcome(fn: Callable[[bytes], object], data: bytes) -> tuple[str, object]:
    """("ok", result) or ("err", message); any exception but MalformedPacket propagates."""
    try:
        return ("ok", fn(data))
    except MalformedPacket as exc:
        return ("err", str(exc))


def ours_rtp(data: bytes) -> oracle.Rtp:
    return as_oracle(rtp.parse_rtp(data))


def ours_rtcp(data: bytes) -> list[tuple[object, ...]]:
    return [rtcp_tuple(p) for p in rtp.parse_rtcp(data)]


def ours_events(data: bytes) -> list[oracle.Event]:
    return [(e.event, e.end, e.volume, e.duration) for e in rtp.parse_telephone_events(data)]


def check_rtp(data: bytes) -> tuple[str, object]:
    ours = outcome(ours_rtp, data)
    assert ours == outcome(oracle.parse_rtp, data)
    view = rtp.RtpHeaderView()
    if ours[0] == "ok":
        n = rtp.parse_rtp_into(data, view)
        assert data[view.payload_offset:view.payload_offset + n] == rtp.parse_rtp(data).payload
    else:
        with pytest.raises(MalformedPacket, match=exact(str(ours[1]))):
            rtp.parse_rtp_into(data, view)
    return ours


def check_rtcp(data: bytes) -> tuple[str, object]:
    ours = outcome(ours_rtcp, data)
    assert ours == outcome(oracle.parse_rtcp, data)
    return ours


def aiortc_map(**ids: int) -> artp.HeaderExtensionsMap:
    uris = {
        "audio_level": "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "mid": "urn:ietf:params:rtp-hdrext:sdes:mid",
        "abs_send_time": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    }
    m = artp.HeaderExtensionsMap()
    m.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=i, uri=uris[name]) for name, i in ids.items()]))
    return m


# ---------------------------------------------------------------------------
# RTP fixtures


def test_pcmu_fixture_fields() -> None:
    p = rtp.parse_rtp(PCMU)
    assert len(PCMU) == 172
    assert as_oracle(p) == oracle.Rtp(False, 0, 0x3A5C, 160000, 0x5E1B3C4D, payload=PCMU[12:])
    assert p.version == 2
    assert p.serialize() == PCMU


def test_opus_extension_fixture_fields() -> None:
    p = rtp.parse_rtp(OPUS_EXT)
    assert (p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc) == (True, 111, 0x1A2B, 768000,
                                                                           0xA1B2C3D4)
    assert p.extension_profile == 0xBEDE
    assert p.extension == bytes.fromhex("1085320c8a3f0000")
    assert rtp.parse_header_extensions(p.extension_profile, p.extension) == [
        (1, b"\x85"), (3, bytes.fromhex("0c8a3f"))]
    assert p.payload == b"\xf8\xff\xfe"
    assert p.serialize() == OPUS_EXT
    a = artp.RtpPacket.parse(OPUS_EXT, aiortc_map(audio_level=1, abs_send_time=3))
    assert a.extensions.audio_level == (True, 5)
    assert a.extensions.abs_send_time == 0x0C8A3F


def test_mixer_padded_fixture_fields() -> None:
    p = rtp.parse_rtp(MIXER_PADDED)
    assert p.csrc == (10, 11)
    assert (p.payload_type, p.sequence, p.timestamp, p.ssrc) == (9, 7, 0x500, 0x11223344)
    assert p.padding_length == 4
    assert p.payload == bytes.fromhex("55aa55aa55aa55aa")
    assert p.serialize() == MIXER_PADDED        # zero pad bytes, as in the fixture


def test_rtp_header_view_fields() -> None:
    view = rtp.RtpHeaderView()
    assert rtp.parse_rtp_into(MIXER_PADDED, view) == 8
    assert (view.payload_offset, view.payload_length, view.padding_length) == (20, 8, 4)
    assert view.csrc == (10, 11) and view.extension_profile is None
    assert rtp.parse_rtp_into(OPUS_EXT, view) == 3
    assert (view.marker, view.payload_type, view.sequence, view.timestamp, view.ssrc) == (
        True, 111, 0x1A2B, 768000, 0xA1B2C3D4)
    assert (view.extension_profile, view.extension_offset, view.extension_length) == (0xBEDE, 16, 8)
    assert view.payload_offset == 24 and view.csrc == ()


@pytest.mark.parametrize("name", sorted(RTP_FIXTURES))
def test_rtp_fixture_matches_oracle_and_aiortc(name: str) -> None:
    data = RTP_FIXTURES[name]
    p = rtp.parse_rtp(data)
    assert as_oracle(p) == oracle.parse_rtp(data)
    assert oracle.build_rtp(as_oracle(p)) == data == p.serialize()
    a = artp.RtpPacket.parse(data)
    assert (a.marker, a.payload_type, a.sequence_number, a.timestamp, a.ssrc, a.csrc, a.payload,
            a.padding_size) == (p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc,
                                list(p.csrc), p.payload, p.padding_length)


# ---------------------------------------------------------------------------
# Every truncation of a valid packet


def test_pcmu_truncations() -> None:
    for k in range(len(PCMU) + 1):
        result = check_rtp(PCMU[:k])
        if k < 12:
            assert result == ("err", f"RTP packet too short: {k} bytes")
        else:
            assert result[0] == "ok" and result[1].payload == PCMU[12:k]  # type: ignore[attr-defined]


def test_extension_truncations() -> None:
    for k in range(len(OPUS_EXT) + 1):
        result = check_rtp(OPUS_EXT[:k])
        if k < 12:
            assert result == ("err", f"RTP packet too short: {k} bytes")
        elif k < 24:    # extension header (4) + data (8) not complete
            assert result == ("err", "RTP header extension exceeds packet")
        else:
            assert result[0] == "ok" and result[1].payload == OPUS_EXT[24:k]  # type: ignore[attr-defined]


def test_csrc_and_padding_truncations() -> None:
    for k in range(len(MIXER_PADDED) + 1):
        result = check_rtp(MIXER_PADDED[:k])
        if k < 12:
            assert result == ("err", f"RTP packet too short: {k} bytes")
        elif k < 20:
            assert result == ("err", f"RTP CSRC list exceeds packet: 2 CSRCs in {k} bytes")
        else:
            # P stays set, so whatever byte is last now claims to be the pad count.
            pad = MIXER_PADDED[k - 1]
            if pad == 0:
                assert result == ("err", "RTP padding length 0 is invalid")
            elif pad > k - 20:
                assert result == ("err", f"RTP padding length {pad} exceeds payload")
            else:
                assert result[0] == "ok" and result[1].padding_length == pad  # type: ignore[attr-defined]
    assert check_rtp(MIXER_PADDED[:20]) == ("err", "RTP padding length 11 exceeds payload")


@pytest.mark.parametrize("name", sorted(RTCP_FIXTURES))
def test_rtcp_truncations(name: str) -> None:
    data = RTCP_FIXTURES[name]
    full = ours_rtcp(data)
    boundaries = {}
    pos = 0
    for i in range(len(full)):
        pos += 4 * (struct.unpack_from("!H", data, pos + 2)[0] + 1)
        boundaries[pos] = i + 1
    assert pos == len(data)
    starts = [0, *sorted(boundaries)]
    for k in range(len(data) + 1):
        result = check_rtcp(data[:k])
        if k in boundaries:
            assert result == ("ok", full[:boundaries[k]])
            continue
        start = max(s for s in starts if s <= k)
        left = k - start
        if left < 4:
            assert result == ("err", f"RTCP packet too short: {left} bytes")
        else:
            length = struct.unpack_from("!H", data, start + 2)[0]
            assert result == ("err", f"RTCP length field {length} exceeds packet: "
                                     f"{4 * (length + 1)} bytes, {left} left")


def test_rtcp_fixture_fields() -> None:
    sr, sdes = rtp.parse_rtcp(SR_SDES)
    assert isinstance(sr, rtp.SenderReport) and isinstance(sdes, rtp.RtcpUnknown)
    assert (sr.ssrc, sr.ntp_timestamp, sr.rtp_timestamp, sr.packet_count, sr.octet_count) == (
        0x5E1B3C4D, 0xE9A1B2C340000000, 160000, 50, 8000)
    assert sr.reports == [rtp.ReportBlock(0xA1B2C3D4, 10, 3, 0x11A2B, 20, 0xB2C34000, 0x10000)]
    assert (sdes.packet_type, sdes.count) == (rtp.RTCP_SDES, 1)
    assert sdes.body == bytes.fromhex("5e1b3c4d0110") + b"alice@192.0.2.10" + b"\0\0"
    rr, bye = rtp.parse_rtcp(RR_BYE)
    assert isinstance(rr, rtp.ReceiverReport) and isinstance(bye, rtp.Bye)
    assert rr.ssrc == 0xA1B2C3D4
    assert block_tuple(rr.reports[0]) == (0x5E1B3C4D, 0, -2, 0x3A70, 8, 0, 0)
    assert (bye.sources, bye.reason) == ([0xA1B2C3D4], b"hang up")
    assert rtp.build_rtcp([sr, sdes]) == SR_SDES
    assert rtp.build_rtcp([rr, bye]) == RR_BYE
    # aiortc reads the same values
    a_sr, a_sdes = artp.RtcpPacket.parse(SR_SDES)
    assert a_sr.sender_info.ntp_timestamp == sr.ntp_timestamp
    assert a_sdes.chunks[0].items == [(1, b"alice@192.0.2.10")]
    a_rr, a_bye = artp.RtcpPacket.parse(RR_BYE)
    assert a_rr.reports[0].packets_lost == -2 and a_bye.sources == bye.sources


# ---------------------------------------------------------------------------
# Fuzz: random and mutated input gives success or MalformedPacket, as the oracle says

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
rtp_like = st.builds(lambda b0, rest: bytes([b0]) + rest, st.integers(0x80, 0xBF), st.binary(max_size=90))
rtcp_like = st.lists(
    st.builds(lambda b0, pt, length, body: bytes([b0, pt]) + struct.pack("!H", length) + body,
              st.integers(0x80, 0xBF), st.sampled_from([200, 201, 202, 203, 204, 206]),
              st.integers(0, 12), st.binary(max_size=56)),
    min_size=1, max_size=4).map(b"".join)


@FUZZ
@given(st.one_of(st.binary(max_size=200), rtp_like))
def test_fuzz_rtp_random(data: bytes) -> None:
    check_rtp(data)


@FUZZ
@given(st.one_of(st.binary(max_size=200), rtcp_like))
def test_fuzz_rtcp_random(data: bytes) -> None:
    check_rtcp(data)


@st.composite
def mutated(draw: st.DrawFn, fixtures: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(fixtures)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "flip", "cut", "grow"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "set" and data:
            data[i] = draw(st.integers(0, 255))
        elif kind == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[i:]
        else:
            data += draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@FUZZ
@given(mutated(list(RTP_FIXTURES.values())))
def test_fuzz_rtp_mutated(data: bytes) -> None:
    check_rtp(data)


@FUZZ
@given(mutated(list(RTCP_FIXTURES.values())))
def test_fuzz_rtcp_mutated(data: bytes) -> None:
    check_rtcp(data)


@FUZZ
@given(st.binary(max_size=24))
def test_fuzz_telephone_events(data: bytes) -> None:
    assert outcome(ours_events, data) == outcome(oracle.parse_telephone_events, data)


@FUZZ
@given(st.sampled_from([0xBEDE, 0x1000, 0x100F, 0xBEDF, 0x2000]), st.binary(max_size=40))
def test_fuzz_header_extensions(profile: int, data: bytes) -> None:
    ours = outcome(lambda d: rtp.parse_header_extensions(profile, d), data)
    assert ours == outcome(lambda d: oracle.parse_header_extensions(profile, d), data)


# ---------------------------------------------------------------------------
# RTP build/parse round trips at the field extremes


EXTREMES = [
    dict(payload_type=0, sequence=0, timestamp=0, ssrc=0, payload=b""),
    dict(payload_type=127, sequence=65535, timestamp=2**32 - 1, ssrc=2**32 - 1, payload=b"\xff" * 160,
         marker=True),
    dict(payload_type=96, sequence=1, timestamp=1, ssrc=1, payload=b"x", csrc=tuple(range(15))),
    dict(payload_type=8, sequence=2, timestamp=3, ssrc=4, payload=b"ab", csrc=(2**32 - 1,) * 15,
         padding_length=255),
    dict(payload_type=0, sequence=9, timestamp=9, ssrc=9, payload=b"", padding_length=1),
    dict(payload_type=111, sequence=5, timestamp=6, ssrc=7, payload=b"op", extension_profile=0xBEDE),
    dict(payload_type=111, sequence=5, timestamp=6, ssrc=7, payload=b"op", extension_profile=0xFFFF,
         extension=bytes(range(256)) * 1023 + bytes(252), csrc=(1, 2), padding_length=3, marker=True),
]


@pytest.mark.parametrize("fields", EXTREMES)
def test_rtp_round_trip_extremes(fields: dict[str, object]) -> None:
    data = rtp.build_rtp(**fields)  # type: ignore[arg-type]
    p = rtp.parse_rtp(data)
    assert rtp.RtpPacket(**fields) == p  # type: ignore[arg-type]
    assert oracle.parse_rtp(data) == as_oracle(p)
    assert oracle.build_rtp(as_oracle(p)) == data == p.serialize()
    a = artp.RtpPacket.parse(data)
    assert (a.marker, a.payload_type, a.sequence_number, a.timestamp, a.ssrc, a.csrc, a.payload,
            a.padding_size) == (p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc,
                                list(p.csrc), p.payload, p.padding_length)
    out = bytearray(len(data) + 5)
    assert p.serialize_into(out) == len(data) and bytes(out[:len(data)]) == data


@settings(max_examples=200, deadline=None)
@given(st.builds(
    oracle.Rtp, st.booleans(), st.integers(0, 127), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1), st.lists(st.integers(0, 2**32 - 1), max_size=15).map(tuple),
    st.one_of(st.none(), st.integers(0, 0xFFFF)),
    st.binary(max_size=12).map(lambda b: b + bytes(-len(b) % 4)),
    st.integers(0, 255), st.binary(max_size=64)).filter(
        lambda r: r.extension_profile is not None or not r.extension))
def test_rtp_round_trip_random(fields: oracle.Rtp) -> None:
    data = oracle.build_rtp(fields)
    assert as_oracle(rtp.parse_rtp(data)) == fields
    assert rtp.build_rtp(fields.payload_type, fields.sequence, fields.timestamp, fields.ssrc,
                         fields.payload, marker=fields.marker, csrc=fields.csrc,
                         extension_profile=fields.extension_profile, extension=fields.extension,
                         padding_length=fields.padding_length) == data


def test_build_rtp_into_lean_path() -> None:
    out = np.zeros(200, dtype=np.uint8)
    n = rtp.build_rtp_into(out, PCMU[12:], 0, 0x3A5C, 160000, 0x5E1B3C4D)
    assert n == 172 and out[:n].tobytes() == PCMU
    marked = bytearray(20)
    assert rtp.build_rtp_into(marked, b"abc", 127, 65535, 2**32 - 1, 2**32 - 1, True) == 15
    assert rtp.parse_rtp(bytes(marked[:15])) == rtp.RtpPacket(127, 65535, 2**32 - 1, 2**32 - 1, b"abc",
                                                              marker=True)
    # A payload encoded in place after the header space.
    buf = bytearray(12) + bytearray(PCMU[12:])
    assert rtp.build_rtp_into(buf, memoryview(buf)[12:], 0, 0x3A5C, 160000, 0x5E1B3C4D) == 172
    assert bytes(buf) == PCMU
    with pytest.raises(ValueError, match=exact("output buffer too small for the RTP packet")):
        rtp.build_rtp_into(bytearray(171), PCMU[12:], 0, 1, 2, 3)
    with pytest.raises(ValueError, match=exact("payload_type must be in [0, 127], got 128")):
        rtp.build_rtp_into(out, b"", 128, 1, 2, 3)
    with pytest.raises(ValueError, match=exact("sequence must be in [0, 65535], got 65536")):
        rtp.build_rtp_into(out, b"", 0, 65536, 2, 3)
    with pytest.raises(ValueError, match=exact("timestamp must be in [0, 4294967295], got -1")):
        rtp.build_rtp_into(out, b"", 0, 0, -1, 3)
    with pytest.raises(ValueError, match=exact("ssrc must be in [0, 4294967295], got 4294967296")):
        rtp.build_rtp_into(out, b"", 0, 0, 0, 2**32)


def test_rtp_bad_arguments() -> None:
    with pytest.raises(ValueError, match=exact("payload_type must be in [0, 127], got 128")):
        rtp.RtpPacket(128)
    with pytest.raises(ValueError, match=exact("sequence must be in [0, 65535], got -1")):
        rtp.build_rtp(0, -1, 0, 0, b"")
    with pytest.raises(ValueError, match=exact("at most 15 CSRCs, got 16")):
        rtp.RtpPacket(csrc=range(16))
    with pytest.raises(ValueError, match=exact("csrc must be in [0, 4294967295], got -1")):
        rtp.RtpPacket(csrc=[-1])
    with pytest.raises(ValueError,
                       match=exact("extension must be a multiple of 4 bytes up to 262140, got 5")):
        rtp.RtpPacket(extension_profile=1, extension=b"12345")
    with pytest.raises(ValueError, match=exact("padding_length must be in [0, 255], got 256")):
        rtp.RtpPacket(padding_length=256)
    with pytest.raises(ValueError, match=exact("extension data set without an extension_profile")):
        rtp.RtpPacket(extension=b"1234").serialize()
    with pytest.raises(TypeError, match=exact("timestamp must be an int, not float")):
        rtp.RtpPacket(timestamp=1.5)
    with pytest.raises(TypeError, match=exact("payload must be bytes-like, not str")):
        rtp.RtpPacket(payload="abc")
    with pytest.raises(ValueError, match=exact("output buffer too small for the RTP packet")):
        rtp.RtpPacket(payload=b"abc").serialize_into(bytearray(14))
    with pytest.raises(TypeError):
        rtp.parse_rtp("not bytes")


def test_rtp_packet_setters_and_repr() -> None:
    p = rtp.parse_rtp(OPUS_EXT)
    p.extension_profile = None
    p.extension = b""
    p.marker = False
    p.sequence += 1
    assert rtp.parse_rtp(p.serialize()) == p
    assert repr(p).startswith("RtpPacket(payload_type=111, sequence=6700, ")
    assert p != rtp.parse_rtp(OPUS_EXT)
    assert rtp.RtpPacket.parse(PCMU) == rtp.parse_rtp(bytearray(PCMU))


# ---------------------------------------------------------------------------
# aiortc interop for RTP


def test_aiortc_packet_parsed_by_us() -> None:
    ext_map = aiortc_map(audio_level=1, mid=2, abs_send_time=3)
    a = artp.RtpPacket(payload_type=111, marker=1, sequence_number=65535, timestamp=2**32 - 1,
                       ssrc=0xDEADBEEF, payload=b"\xfc" + bytes(range(60)))
    a.csrc = [1, 2, 2**32 - 1]
    a.extensions.audio_level = (True, 42)
    a.extensions.mid = "audio0"
    a.extensions.abs_send_time = 0x123456
    a.padding_size = 7
    data = a.serialize(ext_map)
    p = rtp.parse_rtp(data)
    assert (p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc, list(p.csrc), p.payload,
            p.padding_length) == (True, 111, 65535, 2**32 - 1, 0xDEADBEEF, a.csrc, a.payload, 7)
    assert p.extension_profile == 0xBEDE
    assert rtp.parse_header_extensions(p.extension_profile, p.extension) == [
        (2, b"audio0"), (3, b"\x12\x34\x56"), (1, bytes([0x80 | 42]))]
    # Same bytes back, except aiortc's random pad bytes (ours are zero).
    ours = p.serialize()
    assert ours[:-7] == data[:-7] and ours[-1] == data[-1] == 7 and ours[-7:-1] == bytes(6)


def test_our_packet_parsed_by_aiortc() -> None:
    profile, ext = rtp.build_header_extensions([(1, b"\x9e"), (2, b"audio0")])
    data = rtp.build_rtp(111, 4242, 123456, 0x01020304, b"opus-frame", marker=True, csrc=(7, 8),
                         extension_profile=profile, extension=ext, padding_length=5)
    a = artp.RtpPacket.parse(data, aiortc_map(audio_level=1, mid=2))
    assert (a.marker, a.payload_type, a.sequence_number, a.timestamp, a.ssrc, a.csrc, a.payload,
            a.padding_size) == (1, 111, 4242, 123456, 0x01020304, [7, 8], b"opus-frame", 5)
    assert a.extensions.audio_level == (True, 30)
    assert a.extensions.mid == "audio0"


@pytest.mark.parametrize("elements", [
    [(1, b"\x01")],
    [(14, bytes(16)), (5, b"ab"), (1, b"xyz")],
    [(15, b"a")],                     # id 15 forces the two-byte form
    [(1, b"")],                       # empty value forces the two-byte form
    [(200, bytes(range(255))), (3, b"q")],
])
def test_header_extensions_match_aiortc(elements: list[tuple[int, bytes]]) -> None:
    profile, data = rtp.build_header_extensions(elements)
    assert (profile, data) == artp.pack_header_extensions(elements)
    assert rtp.parse_header_extensions(profile, data) == artp.unpack_header_extensions(profile, data)
    assert rtp.parse_header_extensions(profile, data) == elements


def test_header_extension_rules() -> None:
    # one-byte: ID 0 bytes are padding, ID 15 stops processing (RFC 8285 §4.2)
    assert rtp.parse_header_extensions(0xBEDE, bytes.fromhex("00 10 41 00 f3 99 99 99")) == [(1, b"\x41")]
    # two-byte with appbits 0x5: zero bytes are padding, zero-length values are allowed
    assert rtp.parse_header_extensions(0x1005, bytes.fromhex("00 07 00 08 01 ff")) == [(7, b""), (8, b"\xff")]
    assert rtp.build_header_extensions([(3, b"a")], two_byte=True) == (0x1000, bytes.fromhex("030161 00"))
    with pytest.raises(MalformedPacket, match=exact("RTP header extension element 4 exceeds extension data")):
        rtp.parse_header_extensions(0xBEDE, bytes.fromhex("41 00"))
    with pytest.raises(MalformedPacket, match=exact("RTP header extension element 9 exceeds extension data")):
        rtp.parse_header_extensions(0x1000, bytes.fromhex("09"))
    with pytest.raises(MalformedPacket, match=exact("RTP header extension profile 0xABCD is not RFC 8285")):
        rtp.parse_header_extensions(0xABCD, b"")
    with pytest.raises(ValueError, match=exact("extension id must be in [1, 255], got 0")):
        rtp.build_header_extensions([(0, b"a")])
    with pytest.raises(ValueError, match=exact("extension value for id 3 is 256 bytes, max 255")):
        rtp.build_header_extensions([(3, bytes(256))])


def test_is_rtcp_demux() -> None:
    assert rtp.is_rtcp(SR_SDES) and rtp.is_rtcp(RR_BYE)
    assert not rtp.is_rtcp(PCMU) and not rtp.is_rtcp(OPUS_EXT) and not rtp.is_rtcp(b"\x80")
    assert [artp.is_rtcp(d) for d in (SR_SDES, PCMU, DTMF_START)] == [
        rtp.is_rtcp(d) for d in (SR_SDES, PCMU, DTMF_START)]


# ---------------------------------------------------------------------------
# RTP errors, exact messages


@pytest.mark.parametrize("data, message", [
    (b"", "RTP packet too short: 0 bytes"),
    (PCMU[:11], "RTP packet too short: 11 bytes"),
    (b"\x40" + PCMU[1:], "RTP version 1, expected 2"),
    (b"\x00" + PCMU[1:], "RTP version 0, expected 2"),
    (b"\xc0" + PCMU[1:], "RTP version 3, expected 2"),
    (b"\x8f" + PCMU[1:60], "RTP CSRC list exceeds packet: 15 CSRCs in 60 bytes"),
    (b"\x90" + PCMU[1:12] + b"\xbe\xde", "RTP header extension exceeds packet"),
    (b"\x90" + PCMU[1:12] + b"\xbe\xde\x00\x02" + bytes(7), "RTP header extension exceeds packet"),
    (b"\xa0" + PCMU[1:12] + bytes(38) + b"\x28", "RTP padding length 40 exceeds payload"),
    (b"\xa0" + PCMU[1:12] + b"\x00", "RTP padding length 0 is invalid"),
    (b"\xa0" + PCMU[1:11] + b"\x05", "RTP padding length 5 exceeds payload"),  # pad byte inside header
])
def test_rtp_malformed_messages(data: bytes, message: str) -> None:
    with pytest.raises(MalformedPacket, match=exact(message)) as info:
        rtp.parse_rtp(data)
    assert isinstance(info.value, ValueError)
    with pytest.raises(MalformedPacket, match=exact(message)):
        oracle.parse_rtp(data)


def test_padding_may_fill_the_whole_payload() -> None:
    p = rtp.parse_rtp(b"\xa0" + PCMU[1:12] + bytes(39) + b"\x27")
    assert p.padding_length == 39 and p.payload == b"\x00"
    p = rtp.parse_rtp(b"\xa0" + PCMU[1:12] + bytes(3) + b"\x04")
    assert p.padding_length == 4 and p.payload == b""


# ---------------------------------------------------------------------------
# RTCP


BLOCK_EXTREMES = [
    rtp.ReportBlock(0, 0, 0, 0, 0, 0, 0),
    rtp.ReportBlock(2**32 - 1, 255, 2**23 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1),
    rtp.ReportBlock(1, 128, -(2**23), 65536 + 5, 160, 0xB2C34000, 65536),
    rtp.ReportBlock(3, 1, -1, 7, 8, 9, 10),
]


def test_cumulative_lost_is_signed_24_bit() -> None:
    data = rtp.ReceiverReport(1, BLOCK_EXTREMES).serialize()
    assert data[8 + 24 + 5:8 + 24 + 8] == b"\x7f\xff\xff"
    assert data[8 + 48 + 5:8 + 48 + 8] == b"\x80\x00\x00"
    assert data[8 + 72 + 5:8 + 72 + 8] == b"\xff\xff\xff"
    assert [artp.RtcpReceiverInfo.parse(data[8 + 24 * i:32 + 24 * i]).packets_lost
            for i in range(4)] == [0, 2**23 - 1, -(2**23), -1]


@pytest.mark.parametrize("count", [0, 1, 4, 31])
def test_sr_rr_round_trip(count: int) -> None:
    blocks = [BLOCK_EXTREMES[i % 4] for i in range(count)]
    sr = rtp.SenderReport(0xFFFFFFFF, 2**64 - 1, 2**32 - 1, 123, 456, blocks)
    rr = rtp.ReceiverReport(7, blocks)
    data = rtp.build_rtcp([sr, rr])
    tuples = [block_tuple(b) for b in blocks]
    assert data == (oracle.build_sr(0xFFFFFFFF, 2**64 - 1, 2**32 - 1, 123, 456, tuples)
                    + oracle.build_rr(7, tuples))
    assert rtp.parse_rtcp(data) == [sr, rr]
    assert ours_rtcp(data) == oracle.parse_rtcp(data)
    a_sr, a_rr = artp.RtcpPacket.parse(data)
    assert (a_sr.ssrc, a_sr.sender_info.ntp_timestamp, len(a_sr.reports)) == (0xFFFFFFFF, 2**64 - 1, count)
    assert [(r.ssrc, r.fraction_lost, r.packets_lost, r.highest_sequence, r.jitter, r.lsr, r.dlsr)
            for r in a_rr.reports] == tuples


def test_report_extension_and_padding_round_trip() -> None:
    sr = rtp.SenderReport(1, 2, 3, 4, 5, [BLOCK_EXTREMES[2]], extension=b"profile-ext!")
    rr = rtp.ReceiverReport(9, extension=b"odd")        # not 32-bit aligned: RTCP padding added
    data = rtp.build_rtcp([sr, rr])
    assert data[0] == 0x81 and data[len(sr.serialize())] == 0xA0
    assert data == oracle.build_sr(1, 2, 3, 4, 5, [block_tuple(BLOCK_EXTREMES[2])], b"profile-ext!") + \
        oracle.build_rr(9, [], b"odd")
    assert rtp.parse_rtcp(data) == [sr, rr]


@pytest.mark.parametrize("sources, reason", [
    ([], None), ([1], b""), ([1, 2, 3], b"hang up"), (list(range(31)), bytes(range(255))),
    ([2**32 - 1], "bye ünicode".encode()),
])
def test_bye_round_trip(sources: list[int], reason: bytes | None) -> None:
    bye = rtp.Bye(sources, reason)
    data = bye.serialize()
    assert data == oracle.build_bye(sources, reason)
    assert len(data) % 4 == 0
    assert rtp.parse_rtcp(data) == [bye]
    assert artp.RtcpPacket.parse(data)[0].sources == sources


def test_aiortc_built_rtcp_parsed_by_us() -> None:
    info = artp.RtcpSenderInfo(ntp_timestamp=0xE9A1B2C340000000, rtp_timestamp=160000, packet_count=50,
                               octet_count=8000)
    report = artp.RtcpReceiverInfo(ssrc=0xA1B2C3D4, fraction_lost=10, packets_lost=-3,
                                   highest_sequence=0x11A2B, jitter=20, lsr=0xB2C34000, dlsr=65536)
    packets = [
        artp.RtcpSrPacket(ssrc=0x5E1B3C4D, sender_info=info, reports=[report]),
        artp.RtcpRrPacket(ssrc=0x5E1B3C4D, reports=[report, report]),
        artp.RtcpSdesPacket(chunks=[artp.RtcpSourceInfo(ssrc=0x5E1B3C4D, items=[(1, b"cname")])]),
        artp.RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=2),
        artp.RtcpRtpfbPacket(fmt=1, ssrc=1, media_ssrc=2, lost=[10, 12]),
        artp.RtcpByePacket(sources=[0x5E1B3C4D, 7]),
    ]
    data = b"".join(bytes(p) for p in packets)
    ours = rtp.parse_rtcp(data)
    block = rtp.ReportBlock(0xA1B2C3D4, 10, -3, 0x11A2B, 20, 0xB2C34000, 65536)
    assert ours[0] == rtp.SenderReport(0x5E1B3C4D, 0xE9A1B2C340000000, 160000, 50, 8000, [block])
    assert ours[1] == rtp.ReceiverReport(0x5E1B3C4D, [block, block])
    assert [(p.packet_type, p.count) for p in ours[2:5]] == [(202, 1), (206, 1), (205, 1)]
    assert ours[5] == rtp.Bye([0x5E1B3C4D, 7])
    # Our SR/RR/BYE are byte-identical to aiortc's, and unknown packets re-serialize unchanged.
    assert [p.serialize() for p in ours] == [bytes(p) for p in packets]
    assert artp.RtcpPacket.parse(rtp.build_rtcp(ours)) == packets
    assert ours_rtcp(data) == oracle.parse_rtcp(data)


@pytest.mark.parametrize("data, message", [
    (b"", "RTCP packet too short: 0 bytes"),
    (b"\x80\xc9\x00", "RTCP packet too short: 3 bytes"),
    (b"\x40\xc9\x00\x01" + bytes(4), "RTCP version 1, expected 2"),
    (b"\x80\xc9\x00\x01" + bytes(3), "RTCP length field 1 exceeds packet: 8 bytes, 7 left"),
    (RR_BYE[:32] + b"\x81\xcb\x00\x09" + bytes(8), "RTCP length field 9 exceeds packet: 40 bytes, 12 left"),
    (b"\xa0\xc9\x00\x01" + bytes(4), "RTCP padding length 0 is invalid"),
    (b"\xa0\xc9\x00\x00", "RTCP padding length 0 is invalid"),
    (b"\xa0\xc9\x00\x01" + bytes(3) + b"\x05", "RTCP padding length 5 exceeds packet"),
    (b"\x80\xc8\x00\x01" + bytes(4), "RTCP SR with 0 report blocks needs 28 bytes, got 8"),
    (b"\x81\xc8\x00\x06" + bytes(24), "RTCP SR with 1 report blocks needs 52 bytes, got 28"),
    (b"\x80\xc9\x00\x00", "RTCP RR with 0 report blocks needs 8 bytes, got 4"),
    (b"\xa2\xc9\x00\x07" + bytes(27) + b"\x04", "RTCP RR with 2 report blocks needs 56 bytes, got 28"),
    (b"\x82\xcb\x00\x01" + bytes(4), "RTCP BYE with 2 sources needs 12 bytes, got 8"),
    (b"\x81\xcb\x00\x02" + bytes(4) + b"\x04abc", "RTCP BYE reason length 4 exceeds packet"),
    (SR_SDES + b"\x80", "RTCP packet too short: 1 bytes"),
])
def test_rtcp_malformed_messages(data: bytes, message: str) -> None:
    with pytest.raises(MalformedPacket, match=exact(message)):
        rtp.parse_rtcp(data)
    with pytest.raises(MalformedPacket, match=exact(message)):
        oracle.parse_rtcp(data)


def test_rtcp_bad_arguments() -> None:
    with pytest.raises(ValueError,
                       match=exact("cumulative_lost must be in [-8388608, 8388607], got 8388608")):
        rtp.ReportBlock(cumulative_lost=2**23)
    with pytest.raises(ValueError, match=exact("at most 31 report blocks, got 32")):
        rtp.ReceiverReport(1, [rtp.ReportBlock()] * 32).serialize()
    with pytest.raises(TypeError, match=exact("reports must hold ReportBlock, not int")):
        rtp.SenderReport(1, reports=[5]).serialize()
    with pytest.raises(ValueError, match=exact("at most 31 BYE sources, got 32")):
        rtp.Bye(range(32)).serialize()
    with pytest.raises(ValueError, match=exact("BYE reason is 256 bytes, max 255")):
        rtp.Bye([1], bytes(256))
    with pytest.raises(ValueError, match=exact("source must be in [0, 4294967295], got -1")):
        rtp.Bye([-1]).serialize()
    with pytest.raises(ValueError, match=exact("count must be in [0, 31], got 32")):
        rtp.RtcpUnknown(202, 32)
    with pytest.raises(ValueError,
                       match=exact("RTCP packet of 262148 bytes exceeds the 16-bit length field")):
        rtp.ReceiverReport(1, extension=bytes(262140)).serialize()


def test_rtcp_unknown_types_round_trip() -> None:
    app = rtp.RtcpUnknown(rtp.RTCP_APP, 3, b"nameDATA")
    odd = rtp.RtcpUnknown(210, 0, b"12345")
    data = rtp.build_rtcp([rtp.ReceiverReport(1), app, odd])
    assert rtp.parse_rtcp(data) == [rtp.ReceiverReport(1), app, odd]
    assert ours_rtcp(data) == oracle.parse_rtcp(data)


# ---------------------------------------------------------------------------
# RFC 4733 telephone events


def test_dtmf_fixtures() -> None:
    start, end = rtp.parse_rtp(DTMF_START), rtp.parse_rtp(DTMF_END)
    assert start.marker and not end.marker and start.payload_type == end.payload_type == 101
    ev = rtp.parse_telephone_event(start.payload)
    assert (ev.event, ev.digit, ev.end, ev.volume, ev.duration) == (5, "5", False, 10, 160)
    ev = rtp.parse_telephone_event(end.payload)
    assert (ev.event, ev.digit, ev.end, ev.volume, ev.duration) == (5, "5", True, 10, 800)
    assert ev.serialize() == end.payload == rtp.build_telephone_event(5, True, 10, 800)


@pytest.mark.parametrize("event, end, volume, duration", [
    (0, False, 0, 0), (11, True, 63, 65535), (16, True, 36, 1280), (255, False, 1, 1),
])
def test_telephone_event_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    data = rtp.build_telephone_event(event, end, volume, duration)
    assert data == oracle.build_telephone_event(event, end, volume, duration)
    ev = rtp.parse_telephone_event(data)
    assert (ev.event, ev.end, ev.volume, ev.duration) == (event, end, volume, duration)
    assert ev == rtp.TelephoneEvent(event, end, volume, duration)


def test_telephone_event_reserved_bit_ignored_and_packed_events() -> None:
    assert rtp.parse_telephone_event(b"\x0b\x4a\x01\x00") == rtp.TelephoneEvent(11, False, 10, 256)
    data = rtp.build_telephone_event(1, True, 10, 400) + rtp.build_telephone_event(2, False, 10, 160)
    assert ours_events(data) == oracle.parse_telephone_events(data)
    assert ours_events(data) == [(1, True, 10, 400), (2, False, 10, 160)]
    with pytest.raises(MalformedPacket, match=exact("RFC 4733 payload holds 2 events, expected 1")):
        rtp.parse_telephone_event(data)
    with pytest.raises(MalformedPacket, match=exact("RFC 4733 payload too short: 3 bytes")):
        rtp.parse_telephone_event(b"\x01\x02\x03")
    with pytest.raises(MalformedPacket, match=exact("RFC 4733 payload length 6 is not a multiple of 4")):
        rtp.parse_telephone_events(bytes(6))
    with pytest.raises(ValueError, match=exact("volume must be in [0, 63], got 64")):
        rtp.build_telephone_event(1, False, 64, 0)
    with pytest.raises(ValueError, match=exact("duration must be in [0, 65535], got 65536")):
        rtp.TelephoneEvent(duration=65536)


def test_dtmf_digit_mapping() -> None:
    digits = "0123456789*#ABCD"
    assert [rtp.event_digit(e) for e in range(16)] == list(digits)
    assert rtp.event_digit(16) is None and rtp.event_digit(255) is None
    assert [rtp.digit_event(d) for d in digits] == list(range(16))
    assert rtp.digit_event("a") == 12 and rtp.digit_event("d") == 15
    with pytest.raises(ValueError, match=exact("not a DTMF digit: 'E'")):
        rtp.digit_event("E")
    with pytest.raises(ValueError, match=exact("not a DTMF digit: '12'")):
        rtp.digit_event("12")
    with pytest.raises(ValueError, match=exact("event must be in [0, 255], got 256")):
        rtp.event_digit(256)
