"""The engine's SRTP (libsrtp2 through pbx.core.srtp) against pylibsrtp, aiortc's binding, in both
directions and both profiles; tampered and replayed packets are refused."""

from __future__ import annotations

import os
import struct

import pylibsrtp
import pytest

from pbx.core.srtp import KEY_LENGTHS, SrtpError, SrtpSession

PROFILES = {"SRTP_AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
            "SRTP_AES128_CM_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80}


def rtp(seq: int, payload: bytes = b"\x55" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, 111, seq, seq * 960, 0x1234ABCD) + payload


def rtcp_rr() -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, 0x1234ABCD)


def theirs(profile: str, key: bytes, outbound: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(policy=pylibsrtp.Policy(key=key, ssrc_type=kind, srtp_profile=PROFILES[profile]))


@pytest.mark.parametrize("profile", list(PROFILES))
def test_what_we_protect_pylibsrtp_unprotects_and_back(profile: str) -> None:
    key = os.urandom(KEY_LENGTHS[profile])
    ours_out, ours_in = SrtpSession(profile, key, True), SrtpSession(profile, key, False)
    their_in, their_out = theirs(profile, key, False), theirs(profile, key, True)
    for seq in range(100, 110):
        packet = rtp(seq)
        protected = ours_out.protect_packet(packet)
        assert protected != packet and len(protected) > len(packet)
        assert their_in.unprotect(protected) == packet
        assert ours_in.unprotect_packet(their_out.protect(packet)) == packet
    report = rtcp_rr()
    assert their_in.unprotect_rtcp(ours_out.protect_packet(report, rtcp=True)) == report
    assert ours_in.unprotect_packet(their_out.protect_rtcp(report), rtcp=True) == report


def test_tampered_replayed_and_wrongly_keyed_packets_are_refused() -> None:
    profile = "SRTP_AES128_CM_SHA1_80"
    key = os.urandom(30)
    sender, receiver = SrtpSession(profile, key, True), SrtpSession(profile, key, False)
    protected = sender.protect_packet(rtp(7))
    assert receiver.unprotect_packet(protected) == rtp(7)
    with pytest.raises(SrtpError):
        receiver.unprotect_packet(protected)                       # a replay
    tampered = bytearray(sender.protect_packet(rtp(8)))
    tampered[20] ^= 1
    with pytest.raises(SrtpError):
        receiver.unprotect_packet(bytes(tampered))
    stranger = SrtpSession(profile, os.urandom(30), True)
    with pytest.raises(SrtpError):
        receiver.unprotect_packet(stranger.protect_packet(rtp(9)))
    assert receiver.failures == 3


def test_bad_keys_and_profiles_are_refused() -> None:
    with pytest.raises(SrtpError, match="needs 28 bytes"):
        SrtpSession("SRTP_AEAD_AES_128_GCM", b"short", True)
    with pytest.raises(SrtpError, match="unknown SRTP profile"):
        SrtpSession("SRTP_NULL", os.urandom(30), True)
