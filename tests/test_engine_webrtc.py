"""WebRTC legs in the engine (``control=True``): STUN and DTLS go up to Python, SRTP is sent and received in
compiled code once keyed, and nothing leaves unencrypted. Loopback sockets, explicit engine time."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator

import numpy as np
import pylibsrtp
import pytest

from pbx.core.engine import Engine
from pbx.core.srtp import SrtpSession
from support.audio import tone
from tests.test_engine import pcmu_stream
from tests.test_media import peak_hz

PROFILE = "SRTP_AES128_CM_SHA1_80"


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = udp(), udp()
    yield a, b
    a.close()
    b.close()


def test_two_keyed_webrtc_legs_hear_each_other_over_srtp(sockets: tuple[socket.socket, socket.socket]) -> None:
    a_sock, b_sock = sockets
    e = Engine(4)
    a = e.add_leg("udp", "opus", 0.0, fd=a_sock.fileno(), remote=b_sock.getsockname(), control=True,
                  rtcp_interval_ms=200)
    b = e.add_leg("udp", "opus", 0.0, fd=b_sock.fileno(), remote=a_sock.getsockname(), control=True)
    a.playout.enqueue(1, 0, tone(1000, 16000, 2.0, 0.3))
    for k in range(10):                                   # not keyed: nothing may leave, the prompt waits
        e.tick(k * 20.0)
    assert a.tx_packets == 0 and b.rx_packets == 0 and a.playout.queued_samples == 32000
    a_to_b, b_to_a = os.urandom(30), os.urandom(30)
    e.set_srtp(a, SrtpSession(PROFILE, a_to_b, True), SrtpSession(PROFILE, b_to_a, False))
    e.set_srtp(b, SrtpSession(PROFILE, b_to_a, True), SrtpSession(PROFILE, a_to_b, False))
    e.set_asr_tap(b, True)
    for k in range(10, 110):
        e.tick(k * 20.0)
    assert a.tx_packets >= 95 and b.rx_packets >= 90 and b.rx_bad == 0
    assert a.rtcp_tx >= 5 and b.rtcp_rx >= 5                # SRTCP both ways, multiplexed
    heard = np.concatenate([pcm for _, pcm in e.drain_asr()])
    assert abs(peak_hz(heard[-16000:].astype(np.float64), 16000) - 1000) < 10


def test_stun_and_dtls_go_up_garbage_and_unkeyed_srtp_do_not(sockets: tuple[socket.socket, socket.socket]) -> None:
    leg_sock, peer = sockets
    e = Engine(4)
    leg = e.add_leg("udp", "pcmu", 0.0, fd=leg_sock.fileno(), control=True)
    stun = struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, os.urandom(12))
    dtls = b"\x16\xfe\xfd" + os.urandom(60)
    srtp = pylibsrtp.Session(policy=pylibsrtp.Policy(key=os.urandom(30),
                                                     ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    for data in (stun, dtls, b"\x47garbage", srtp.protect(pcmu_stream(tone(440, 8000, 0.1))[0][0])):
        peer.sendto(data, leg_sock.getsockname())
    e.tick(0.0)
    control = e.drain_control()
    assert [(slot, data) for slot, _, data in control] == [(leg.slot, stun), (leg.slot, dtls)]
    assert control[0][1] == peer.getsockname()
    assert leg.rx_control == 2 and leg.rx_bad == 1 and leg.rx_unkeyed == 1 and leg.rx_packets == 0
    assert e.drain_control() == []


def test_a_wrongly_keyed_peer_is_refused(sockets: tuple[socket.socket, socket.socket]) -> None:
    leg_sock, peer = sockets
    e = Engine(4)
    leg = e.add_leg("udp", "pcmu", 0.0, fd=leg_sock.fileno(), remote=peer.getsockname(), control=True)
    e.set_srtp(leg, SrtpSession(PROFILE, os.urandom(30), True), SrtpSession(PROFILE, os.urandom(30), False))
    stranger = pylibsrtp.Session(policy=pylibsrtp.Policy(key=os.urandom(30),
                                                         ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    for packet, _ in pcmu_stream(tone(440, 8000, 0.1)):
        peer.sendto(stranger.protect(packet), leg_sock.getsockname())
    e.tick(0.0)
    assert leg.rx_packets == 0 and leg.rx_bad == 5


def test_control_is_for_udp_legs_with_rtcp_multiplexed_and_keys_go_the_right_way(
        sockets: tuple[socket.socket, socket.socket]) -> None:
    leg_sock, rtcp_sock = sockets
    e = Engine(4)
    with pytest.raises(ValueError, match="control"):
        e.add_leg("packets", "pcmu", 0.0, control=True)
    with pytest.raises(ValueError, match="control"):
        e.add_leg("udp", "pcmu", 0.0, fd=leg_sock.fileno(), rtcp_fd=rtcp_sock.fileno(), latch=True, control=True)
    plain = e.add_leg("udp", "pcmu", 0.0, fd=leg_sock.fileno(), latch=True)
    key = os.urandom(30)
    with pytest.raises(ValueError, match="control"):
        e.set_srtp(plain, SrtpSession(PROFILE, key, True), SrtpSession(PROFILE, key, False))
    webrtc = e.add_leg("udp", "pcmu", 0.0, fd=rtcp_sock.fileno(), control=True)
    with pytest.raises(ValueError, match="outbound"):
        e.set_srtp(webrtc, SrtpSession(PROFILE, key, False), SrtpSession(PROFILE, key, True))
