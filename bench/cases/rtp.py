"""RTP and RTCP packet handling per 20 ms frame, ours vs aiortc's pure-Python classes.

"RTP parse+build": one incoming 172-byte PCMU packet parsed and one outgoing
built, per frame.  Ours uses the lean entry points the engine's Python side
would use (parse_rtp_into into a reused header view, build_rtp_into into a
preallocated buffer); a second row shows the object API (parse_rtp +
RtpPacket.serialize) for a like-for-like comparison with aiortc's objects.

"RTCP RR parse+build": an RR+SDES compound parsed and an RR with one report
block built (both sides construct packet objects).
"""

from __future__ import annotations

import numpy as np
from aiortc import rtp as artp

from pbx.core import rtp

from harness import Case, FrameFn

SSRC_IN, SSRC_OUT = 0x5E1B3C4D, 0xA1B2C3D4
FRAME = 160             # PCMU bytes per 20 ms
PACKETS = 50


def incoming() -> tuple[list[bytes], list[bytes]]:
    """A second of PCMU packets as a peer sends them, and payloads for our outgoing ones."""
    rng = np.random.default_rng(7)
    payloads = [rng.integers(0, 256, FRAME, dtype=np.uint8).tobytes() for _ in range(PACKETS)]
    packets = [rtp.build_rtp(0, (1000 + i) & 0xFFFF, 160 * i, SSRC_IN, p) for i, p in enumerate(payloads)]
    return packets, payloads


def ours_lean() -> FrameFn:
    packets, payloads = incoming()
    view = rtp.RtpHeaderView()
    out = bytearray(12 + FRAME)
    parse_into, build_into = rtp.parse_rtp_into, rtp.build_rtp_into

    def step(i: int) -> object:
        parse_into(packets[i % PACKETS], view)
        return build_into(out, payloads[i % PACKETS], 0, i & 0xFFFF, (160 * i) & 0xFFFFFFFF, SSRC_OUT)

    return step


def ours_objects() -> FrameFn:
    packets, payloads = incoming()

    def step(i: int) -> object:
        rtp.parse_rtp(packets[i % PACKETS])
        packet = rtp.RtpPacket(0, i & 0xFFFF, (160 * i) & 0xFFFFFFFF, SSRC_OUT, payloads[i % PACKETS])
        return packet.serialize()

    return step


def aiortc_rtp() -> FrameFn:
    packets, payloads = incoming()

    def step(i: int) -> object:
        artp.RtpPacket.parse(packets[i % PACKETS])
        return artp.RtpPacket(payload_type=0, sequence_number=i & 0xFFFF, timestamp=(160 * i) & 0xFFFFFFFF,
                              ssrc=SSRC_OUT, payload=payloads[i % PACKETS]).serialize()

    return step


def rr_compound() -> bytes:
    block = rtp.ReportBlock(SSRC_OUT, 3, 12, 0x11A2B, 40, 0xB2C34000, 0x8000)
    sdes = rtp.RtcpUnknown(rtp.RTCP_SDES, 1, SSRC_IN.to_bytes(4, "big") + b"\x01\x10alice@192.0.2.10\0\0")
    return rtp.build_rtcp([rtp.ReceiverReport(SSRC_IN, [block]), sdes])


def ours_rtcp() -> FrameFn:
    data = rr_compound()

    def step(i: int) -> object:
        rtp.parse_rtcp(data)
        block = rtp.ReportBlock(SSRC_IN, i & 0xFF, i, 1000 + i, 20, 0, 0)
        return rtp.ReceiverReport(SSRC_OUT, [block]).serialize()

    return step


def aiortc_rtcp() -> FrameFn:
    data = rr_compound()

    def step(i: int) -> object:
        artp.RtcpPacket.parse(data)
        block = artp.RtcpReceiverInfo(ssrc=SSRC_IN, fraction_lost=i & 0xFF, packets_lost=i,
                                      highest_sequence=1000 + i, jitter=20, lsr=0, dlsr=0)
        return bytes(artp.RtcpRrPacket(ssrc=SSRC_OUT, reports=[block]))

    return step


def cases() -> list[Case]:
    return [
        Case("RTP parse+build", "172-byte PCMU packet in + out", ours_lean, "aiortc RtpPacket", aiortc_rtp),
        Case("RTP parse+build (objects)", "172-byte PCMU packet in + out", ours_objects, "aiortc RtpPacket",
             aiortc_rtp),
        Case("RTCP RR parse+build", "RR+SDES in, RR out", ours_rtcp, "aiortc RtcpPacket", aiortc_rtcp),
    ]
