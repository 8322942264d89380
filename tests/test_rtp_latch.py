"""RTP legs of SIP calls over loopback sockets: symmetric RTP without RTP bleed, RTCP on its own port,
the RTP timeout during hold, receive and peer statistics. Explicit times, no sleeps."""

from __future__ import annotations

import itertools
import socket
import struct
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from pbx.core import engine as eng
from pbx.core.engine import Engine, Leg
from pbx.core.rtp import ReceiverReport, ReportBlock, SenderReport, build_rtcp, parse_rtcp
from pbx.media.rtp_ports import RtpPortPool, RtpSockets

HOST = "127.0.0.1"
PAYLOAD = b"\xff" * 160          # 20 ms of PCMU silence
Addr = tuple[str, int]


def rtp(pt: int, seq: int, ssrc: int, payload: bytes = PAYLOAD) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + payload


def udp(host: str = HOST) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.setblocking(False)
    return s


def addr(s: socket.socket) -> Addr:
    name: Addr = s.getsockname()
    return name


def drain(s: socket.socket) -> list[bytes]:
    """What ``s`` holds now (loopback delivers within sendto)."""
    got = []
    while True:
        try:
            got.append(s.recv(4096))
        except BlockingIOError:
            return got


def kinds(events: list[tuple[int, int, int, int, int, int, int]], kind: int) -> list[tuple[int, ...]]:
    return [ev for ev in events if ev[1] == kind]


class Net:
    """Our leg's socket and the peers around it; closes them all."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []

    def sock(self, host: str = HOST) -> socket.socket:
        s = udp(host)
        self.socks.append(s)
        return s

    def close(self) -> None:
        for s in self.socks:
            s.close()


@pytest.fixture
def net() -> Iterator[Net]:
    n = Net()
    yield n
    n.close()


@pytest.fixture
def pairs() -> Iterator[Callable[[], RtpSockets]]:
    """Allocates RTP/RTCP socket pairs (even port, port + 1) for our legs and their peers."""
    pool = RtpPortPool(41000, 41999, HOST)
    held: list[RtpSockets] = []

    def allocate() -> RtpSockets:
        held.append(pool.allocate())
        return held[-1]

    yield allocate
    for s in held:
        pool.release(s)


def latched_leg(e: Engine, net: Net, **options: object) -> tuple[Leg, socket.socket, socket.socket]:
    """A latching leg already latched to ``peer`` (SSRC 0xA), and its own socket."""
    ours, peer = net.sock(), net.sock()
    leg = e.add_leg("udp", "pcmu", 0.0, fd=ours.fileno(), latch=True, **options)  # type: ignore[arg-type]
    peer.sendto(rtp(0, 1, 0xA), addr(ours))
    assert len(kinds(e.tick(0.0), eng.LATCHED)) == 1
    assert leg.remote == addr(peer) and leg.latched
    drain(peer)
    return leg, ours, peer


# -- latching ---------------------------------------------------------------------------------------


def test_the_first_valid_packet_latches_not_garbage_or_other_payload_types(net: Net) -> None:
    ours, sdp, bleeder, peer = net.sock(), net.sock(), net.sock(), net.sock()
    e = Engine(2)
    leg = e.add_leg("udp", "pcmu", 0.0, fd=ours.fileno(), remote=addr(sdp), latch=True, dtmf_payload_type=101)
    assert e.tick(0.0) == [] and len(drain(sdp)) == 1          # sent to the SDP's address until latched
    assert leg.remote == addr(sdp) and not leg.latched
    bleeder.sendto(b"not rtp at all", addr(ours))                # version bits 1: garbage
    bleeder.sendto(rtp(8, 1, 0xB), addr(ours))                   # PCMA: not the negotiated PT
    bleeder.sendto(build_rtcp([ReceiverReport(ssrc=0xB)]), addr(ours))
    peer.sendto(rtp(0, 1, 0xA), addr(ours))
    bleeder.sendto(rtp(0, 1, 0xB), addr(ours))                   # valid, but the leg has latched
    events = e.tick(20.0)
    assert kinds(events, eng.LATCHED) == [(leg.slot, eng.LATCHED, 20, 0, 0, 0, 0)]
    assert leg.remote == addr(peer) and leg.latched
    stats = leg.stats
    assert (stats["rx_packets"], stats["rx_foreign"], stats["rx_bad"], stats["rx_other_pt"]) == (1, 4, 0, 0)
    assert (stats["latched"], stats["latches"]) == (True, 1)
    e.tick(40.0)
    assert len(drain(peer)) == 2 and drain(sdp) == [] and drain(bleeder) == []


def test_a_telephone_event_packet_latches_too(net: Net) -> None:
    ours, peer = net.sock(), net.sock()
    e = Engine(2)
    leg = e.add_leg("udp", "pcmu", 0.0, fd=ours.fileno(), latch=True, dtmf_payload_type=101)
    peer.sendto(rtp(101, 1, 0xA, b"\x01\x0a\x00\xa0"), addr(ours))
    assert len(kinds(e.tick(0.0), eng.LATCHED)) == 1 and leg.remote == addr(peer)


def test_packets_from_the_signalled_address_count_before_latching(net: Net) -> None:
    ours, sdp = net.sock(), net.sock()
    e = Engine(2)
    leg = e.add_leg("udp", "pcmu", 0.0, fd=ours.fileno(), remote=addr(sdp), latch=True)
    sdp.sendto(b"\x80\x00", addr(ours))                           # garbage from the peer: bad, not foreign
    sdp.sendto(rtp(8, 1, 0xA), addr(ours))
    e.tick(0.0)
    assert (leg.rx_bad, leg.rx_other_pt, leg.rx_foreign, leg.latched) == (1, 1, 0, False)
    sdp.sendto(rtp(0, 2, 0xA), addr(ours))
    assert len(kinds(e.tick(20.0), eng.LATCHED)) == 1 and leg.remote == addr(sdp)


def test_foreign_packets_are_dropped_and_counted(net: Net) -> None:
    e = Engine(2)
    leg, ours, peer = latched_leg(e, net)
    stranger = net.sock()
    for seq in range(2):
        stranger.sendto(rtp(0, 100 + seq, 0xB), addr(ours))
    stranger.sendto(b"junk", addr(ours))
    peer.sendto(rtp(0, 2, 0xA), addr(ours))
    events = e.tick(20.0)
    assert kinds(events, eng.LATCHED) == []
    assert (leg.rx_packets, leg.rx_foreign) == (2, 3) and leg.remote == addr(peer)
    assert leg.stats["jitter"]["received"] == 2                   # nothing of the stranger's got in


def test_relatch_after_exactly_three_valid_packets_of_a_new_ssrc(net: Net) -> None:
    e = Engine(2)
    leg, ours, peer = latched_leg(e, net)
    mover = net.sock()
    mover.sendto(rtp(0, 500, 0xB), addr(ours))
    mover.sendto(rtp(0, 501, 0xB), addr(ours))
    assert kinds(e.tick(20.0), eng.LATCHED) == []                 # two: not yet (the run spans ticks)
    assert leg.remote == addr(peer) and len(drain(peer)) == 1 and drain(mover) == []
    mover.sendto(rtp(0, 502, 0xB), addr(ours))
    assert kinds(e.tick(40.0), eng.LATCHED) == [(leg.slot, eng.LATCHED, 40, 0, 0, 0, 0)]
    assert leg.remote == addr(mover) and leg.latches == 2
    assert (leg.rx_packets, leg.rx_foreign) == (2, 2)             # the third is taken, the first two were not
    assert len(drain(mover)) == 1 and drain(peer) == []           # this frame's packet went to the new source
    peer.sendto(rtp(0, 3, 0xA), addr(ours))                       # the old source is foreign now
    e.tick(60.0)
    assert leg.rx_foreign == 3 and leg.remote == addr(mover)


def test_no_relatch_when_the_latched_source_interleaves(net: Net) -> None:
    e = Engine(2)
    leg, ours, peer = latched_leg(e, net)
    stale = net.sock()
    seq = 10
    for _ in range(4):           # a stale stream interleaved with the live peer, two packets a turn
        stale.sendto(rtp(0, 900 + seq, 0xB), addr(ours))
        stale.sendto(rtp(0, 901 + seq, 0xB), addr(ours))
        peer.sendto(rtp(0, seq, 0xA), addr(ours))
        seq += 2
    assert kinds(e.tick(20.0), eng.LATCHED) == [] and leg.remote == addr(peer)
    assert leg.rx_foreign == 8


def test_no_relatch_with_mixed_ssrcs_and_a_changed_ssrc_restarts_the_count(net: Net) -> None:
    e = Engine(2)
    leg, ours, _ = latched_leg(e, net)
    mover = net.sock()
    for k, ssrc in enumerate([0xB, 0xC, 0xB, 0xC, 0xB, 0xB, 0xC, 0xC]):
        mover.sendto(rtp(0, 700 + k, ssrc), addr(ours))
    assert kinds(e.tick(20.0), eng.LATCHED) == [] and leg.rx_foreign == 8
    mover.sendto(rtp(0, 708, 0xC), addr(ours))                    # the third 0xC in a row
    assert len(kinds(e.tick(40.0), eng.LATCHED)) == 1 and leg.remote == addr(mover)


def test_two_candidates_alternating_never_relatch(net: Net) -> None:
    e = Engine(2)
    leg, ours, _ = latched_leg(e, net)
    b, c = net.sock(), net.sock()
    for k in range(6):
        b.sendto(rtp(0, 300 + k, 0xB), addr(ours))
        c.sendto(rtp(0, 300 + k, 0xB), addr(ours))               # same SSRC, another address
    assert kinds(e.tick(20.0), eng.LATCHED) == [] and leg.rx_foreign == 12


def test_the_latched_ssrc_from_elsewhere_never_relatches(net: Net) -> None:
    e = Engine(2)
    leg, ours, peer = latched_leg(e, net)
    copy = net.sock()
    for k in range(5):
        copy.sendto(rtp(0, 2 + k, 0xA), addr(ours))
    assert kinds(e.tick(20.0), eng.LATCHED) == [] and leg.remote == addr(peer) and leg.rx_foreign == 5


def test_non_valid_datagrams_neither_count_nor_break_a_run(net: Net) -> None:
    e = Engine(2)
    leg, ours, _ = latched_leg(e, net)
    mover = net.sock()
    mover.sendto(rtp(0, 1, 0xB), addr(ours))
    mover.sendto(b"garbage", addr(ours))
    mover.sendto(rtp(0, 2, 0xB), addr(ours))
    mover.sendto(rtp(18, 3, 0xB), addr(ours))                     # G.729: not ours
    mover.sendto(build_rtcp([ReceiverReport(ssrc=0xB)]), addr(ours))
    assert kinds(e.tick(20.0), eng.LATCHED) == []
    mover.sendto(rtp(0, 4, 0xB), addr(ours))
    assert len(kinds(e.tick(40.0), eng.LATCHED)) == 1 and leg.remote == addr(mover)


def test_a_new_ssrc_from_the_latched_source_is_a_new_stream(net: Net) -> None:
    e = Engine(2)
    leg, ours, peer = latched_leg(e, net)
    peer.sendto(rtp(0, 5000, 0xD), addr(ours))
    events = e.tick(20.0)
    assert kinds(events, eng.LATCHED) == [] and leg.rx_packets == 2 and leg.rx_foreign == 0
    assert leg.stats["jitter"]["resyncs"] == 1
    # the new SSRC is the latched one now: a stranger sending the old one may take over
    mover = net.sock()
    for k in range(3):
        mover.sendto(rtp(0, 10 + k, 0xA), addr(ours))
    assert len(kinds(e.tick(40.0), eng.LATCHED)) == 1 and leg.remote == addr(mover)


def test_set_remote_keeps_the_latch_for_the_same_address_and_unlatches_for_a_move(net: Net) -> None:
    ours, sdp, nat, sdp2, moved = net.sock(), net.sock(), net.sock(), net.sock(), net.sock()
    e = Engine(2)
    leg = e.add_leg("udp", "pcmu", 0.0, fd=ours.fileno(), remote=addr(sdp), latch=True)
    nat.sendto(rtp(0, 1, 0xA), addr(ours))                        # a NATed peer: not from the SDP's address
    assert len(kinds(e.tick(0.0), eng.LATCHED)) == 1 and leg.remote == addr(nat)
    e.set_remote(leg, addr(sdp))                                  # a re-INVITE for hold repeats the address
    assert leg.latched and leg.remote == addr(nat)
    nat.sendto(rtp(0, 2, 0xA), addr(ours))                        # in the socket when the peer moves
    e.set_remote(leg, addr(sdp2))
    assert not leg.latched and leg.remote == addr(sdp2) and leg.rx_foreign == 1
    assert kinds(e.tick(20.0), eng.LATCHED) == [] and len(drain(sdp2)) == 1
    moved.sendto(rtp(0, 3, 0xA), addr(ours))                      # same SSRC, new address: the first valid packet
    assert len(kinds(e.tick(40.0), eng.LATCHED)) == 1 and leg.remote == addr(moved)
    assert leg.rx_packets == 2


def test_set_remote_moves_a_leg_that_does_not_latch(net: Net) -> None:
    ours, old, new = net.sock(), net.sock(), net.sock()
    e = Engine(2)
    leg = e.add_leg("udp", "pcmu", 0.0, fd=ours.fileno(), remote=addr(old))
    e.set_remote(leg, addr(new))
    old.sendto(rtp(0, 1, 0xA), addr(ours))
    new.sendto(rtp(0, 2, 0xA), addr(ours))
    e.tick(0.0)
    assert (leg.rx_packets, leg.rx_foreign, leg.latched) == (1, 1, False)
    assert len(drain(new)) == 1 and drain(old) == []


# -- RTCP on its own port -------------------------------------------------------------------------------


def test_rtcp_on_its_own_port_both_ways(pairs: Callable[[], RtpSockets]) -> None:
    ours, peer = pairs(), pairs()
    e = Engine(2)
    e.epoch_offset_ms = 1_700_000_000_000.0
    leg = e.add_leg("udp", "pcmu", 0.0, fd=ours.rtp.fileno(), rtcp_fd=ours.rtcp.fileno(),
                    remote=(HOST, peer.port), latch=True, rtcp_interval_ms=100)
    assert leg.rtcp_remote == (HOST, peer.port + 1)
    for seq in [k for k in range(100, 110) if k != 103]:          # one lost of ten
        peer.rtp.sendto(rtp(0, seq, 0x1234), (HOST, ours.port))
    peer.rtcp.sendto(build_rtcp([SenderReport(ssrc=0x1234, ntp_timestamp=1 << 40, rtp_timestamp=1,
                                              packet_count=9, octet_count=1440)]), (HOST, ours.port + 1))
    for k in range(15):
        e.tick(k * 20.0)
    on_rtp = drain(peer.rtp)
    assert len(on_rtp) == 15 and all(p[1] & 0x7F == 0 for p in on_rtp)   # RTP only: no RTCP on the RTP port
    reports = [parse_rtcp(p) for p in drain(peer.rtcp)]
    assert reports and leg.rtcp_tx == len(reports) and leg.rtcp_rx == 1
    sr = reports[-1][0]
    assert isinstance(sr, SenderReport) and sr.ssrc == leg.ssrc
    (block,) = sr.reports
    assert (block.ssrc, block.cumulative_lost, block.highest_sequence) == (0x1234, 1, 109)
    assert block.lsr == (1 << 40) >> 16 & 0xFFFFFFFF
    stats = leg.stats
    assert (stats["rx_expected"], stats["rx_lost"], stats["rx_loss_percent"]) == (10, 1, 10.0)
    assert stats["remote_reports"] == 0

    # the peer's receiver report on our stream, from its RTCP port to ours
    peer.rtcp.sendto(build_rtcp([ReceiverReport(ssrc=0x1234, reports=[ReportBlock(
        ssrc=leg.ssrc, fraction_lost=64, cumulative_lost=7, highest_sequence=500, jitter=80,
        lsr=0, dlsr=0)])]), (HOST, ours.port + 1))
    e.tick(300.0)
    stats = leg.stats
    assert stats["rtcp_rx"] == 2 and stats["remote_reports"] == 1
    assert (stats["remote_fraction_lost"], stats["remote_loss_percent"], stats["remote_cumulative_lost"],
            stats["remote_jitter"], stats["remote_jitter_ms"]) == (64, 25.0, 7, 80, 10.0)


def test_rtcp_sockets_are_read_when_the_tick_finds_them_ready(pairs: Callable[[], RtpSockets]) -> None:
    """The engine polls every leg's RTCP socket once per tick (epoll) and reads only those that hold
    something: RTCP arriving at any tick, to any leg, is read at the next tick, and by that leg only."""
    legs, peers = [], []
    e = Engine(32)
    for _ in range(20):
        ours, peer = pairs(), pairs()
        legs.append(e.add_leg("udp", "pcmu", 0.0, fd=ours.rtp.fileno(), rtcp_fd=ours.rtcp.fileno(),
                              remote=(HOST, peer.port)))
        peers.append((ours, peer))
    sent = [0] * 20
    for k in range(30):
        for i in ((3, 17) if k == 5 else (3,) if k == 20 else (0, 19) if k == 29 else ()):
            ours, peer = peers[i]
            peer.rtcp.sendto(build_rtcp([ReceiverReport(ssrc=0x1234)]), (HOST, ours.port + 1))
            sent[i] += 1
        e.tick(k * 20.0)
        assert [leg.rtcp_rx for leg in legs] == sent
    assert sent[3] == 2 and sum(sent) == 5
    assert all(leg.rx_foreign == 0 and leg.rx_bad == 0 for leg in legs)


def test_rtcp_socket_closed_before_its_leg_is_removed_does_not_stop_another_legs_rtcp(net: Net) -> None:
    """A socket closed while its leg is still in the engine leaves the poll set by itself; its fd number
    reused by a new leg's RTCP socket must stay polled when the old leg is removed."""
    e = Engine(4)
    peer = net.sock()
    old_rtp, old_rtcp = net.sock(), udp()
    old = e.add_leg("udp", "pcmu", 0.0, fd=old_rtp.fileno(), rtcp_fd=old_rtcp.fileno(), remote=addr(peer))
    number = old_rtcp.fileno()
    old_rtcp.close()
    new_rtp, new_rtcp = net.sock(), net.sock()
    if new_rtcp.fileno() != number and new_rtp.fileno() == number:
        new_rtp, new_rtcp = new_rtcp, new_rtp
    assert number in (new_rtcp.fileno(), new_rtp.fileno())
    new = e.add_leg("udp", "pcmu", 0.0, fd=new_rtp.fileno(), rtcp_fd=new_rtcp.fileno(), remote=addr(peer))
    e.tick(0.0)
    e.remove_leg(old)
    for k in range(1, 4):
        peer.sendto(build_rtcp([ReceiverReport(ssrc=0x1234)]), addr(new_rtcp))
        e.tick(k * 20.0)
        assert new.rtcp_rx == k


def test_rtcp_from_another_host_is_foreign_and_garbage_is_bad(pairs: Callable[[], RtpSockets], net: Net) -> None:
    ours, peer = pairs(), pairs()
    e = Engine(2)
    leg = e.add_leg("udp", "pcmu", 0.0, fd=ours.rtp.fileno(), rtcp_fd=ours.rtcp.fileno(),
                    remote=(HOST, peer.port))
    other_host = net.sock("127.0.0.2")
    other_host.sendto(build_rtcp([ReceiverReport(ssrc=0x99)]), (HOST, ours.port + 1))
    nat_port = net.sock()                                          # the peer's host, another port: taken
    nat_port.sendto(build_rtcp([ReceiverReport(ssrc=0x1234)]), (HOST, ours.port + 1))
    peer.rtcp.sendto(rtp(0, 1, 0x1234), (HOST, ours.port + 1))    # RTP on the RTCP port
    e.tick(0.0)
    assert (leg.rtcp_rx, leg.rx_foreign, leg.rx_bad) == (1, 1, 1)


def test_rtcp_destination_follows_the_latch_unless_given(pairs: Callable[[], RtpSockets]) -> None:
    ours, other, nat, sdp = pairs(), pairs(), pairs(), pairs()
    e = Engine(4)
    follows = e.add_leg("udp", "pcmu", 0.0, fd=ours.rtp.fileno(), rtcp_fd=ours.rtcp.fileno(),
                        remote=(HOST, sdp.port), latch=True, rtcp_interval_ms=20)
    given = e.add_leg("udp", "pcmu", 0.0, fd=other.rtp.fileno(), rtcp_fd=other.rtcp.fileno(),
                      remote=(HOST, sdp.port), latch=True, rtcp_remote=(HOST, sdp.port + 1))
    assert follows.rtcp_remote == given.rtcp_remote == (HOST, sdp.port + 1)
    nat.rtp.sendto(rtp(0, 1, 0xA), (HOST, ours.port))
    nat.rtp.sendto(rtp(0, 1, 0xA), (HOST, other.port))
    for k in range(3):
        e.tick(k * 20.0)
    assert follows.remote == given.remote == (HOST, nat.port)
    assert follows.rtcp_remote == (HOST, nat.port + 1) and given.rtcp_remote == (HOST, sdp.port + 1)
    assert len(drain(nat.rtcp)) == follows.rtcp_tx > 0 and drain(sdp.rtcp) == []
    e.set_remote(given, (HOST, sdp.port))                          # no rtcp_remote now: port + 1 again
    assert given.rtcp_remote == (HOST, nat.port + 1)
    e.set_remote(given, (HOST, sdp.port), rtcp_remote=(HOST, 5000))
    assert given.rtcp_remote == (HOST, 5000)


def test_rtcp_options_are_checked(net: Net) -> None:
    ours, second = net.sock(), net.sock()
    e = Engine(4)
    with pytest.raises(ValueError, match=r"^rtcp_fd must be a second socket, not the RTP socket's fd$"):
        e.add_leg("udp", "pcmu", 0.0, fd=ours.fileno(), rtcp_fd=ours.fileno(), latch=True)
    with pytest.raises(ValueError, match=r"^rtcp_remote needs rtcp_fd \(without it RTCP is multiplexed "
                                         r"on the RTP port\)$"):
        e.add_leg("udp", "pcmu", 0.0, fd=ours.fileno(), latch=True, rtcp_remote=(HOST, 9))
    with pytest.raises(ValueError, match=r"^rtcp_fd is for udp legs, not packets legs$"):
        e.add_leg("packets", "pcmu", 0.0, rtcp_fd=second.fileno())
    leg = e.add_leg("udp", "pcmu", 0.0, fd=ours.fileno(), latch=True, rtcp_fd=second.fileno())
    assert leg.rtcp_remote is None and leg.remote is None          # nothing known yet: nothing sent
    with pytest.raises(ValueError, match=r"^rtcp_remote needs rtcp_fd"):
        e.set_remote(e.add_leg("udp", "pcmu", 0.0, fd=ours.fileno(), latch=True), (HOST, 9),
                     rtcp_remote=(HOST, 10))
    assert e.leg_count == 2


# -- hold: the RTP timeout ----------------------------------------------------------------------------


def test_set_rtp_timeout_off_during_hold_and_back_on() -> None:
    e = Engine(2)
    leg = e.add_leg("packets", "pcmu", 0.0, rtp_timeout_ms=100)
    e.set_rtp_timeout(leg, 0)                                     # on hold: no media is fine
    assert leg.rtp_timeout_ms == 0
    events = []
    for k in range(51):
        events += e.tick(k * 20.0)
    assert kinds(events, eng.RTP_TIMEOUT) == []
    e.set_rtp_timeout(leg, 100)                                   # resumed at t=1000: the clock restarts
    for k in range(51, 80):
        events += e.tick(k * 20.0)
    assert kinds(events, eng.RTP_TIMEOUT) == [(leg.slot, eng.RTP_TIMEOUT, 1120, 100, 0, 0, 0)]
    e.set_rtp_timeout(leg, 100)                                   # set again: it may fire again
    for k in range(80, 90):
        events += e.tick(k * 20.0)
    assert [ev[2] for ev in kinds(events, eng.RTP_TIMEOUT)] == [1120, 1700]
    with pytest.raises(ValueError, match=r"^rtp_timeout_ms must be >= 0, got -1\.0$"):
        e.set_rtp_timeout(leg, -1)
    with pytest.raises(ValueError, match=r"^rtp_timeout_ms must be >= 0, got nan$"):
        e.set_rtp_timeout(leg, float("nan"))


# -- receive statistics -----------------------------------------------------------------------------


def push(e: Engine, leg: Leg, packets: list[tuple[bytes, float]]) -> None:
    blob = b"".join(p for p, _ in packets)
    offsets = np.cumsum([0] + [len(p) for p, _ in packets]).astype(np.int64)
    slots = np.full(len(packets), leg.slot, dtype=np.int32)
    arrivals = np.array([a for _, a in packets], dtype=np.float64)
    assert e.push_packets(slots, blob, offsets, arrivals) == len(packets)


def a8_jitter(streams: list[list[tuple[int, float]]]) -> float:
    """RFC 3550 A.8 over (RTP timestamp, arrival ms) in arrival order; J carries across streams."""
    j = 0.0
    for packets in streams:
        for (ts0, t0), (ts1, t1) in itertools.pairwise(packets):
            d = (t1 - t0) - (ts1 - ts0) / 8.0
            j += (abs(d) - j) / 16.0
    return j


def test_loss_and_jitter_over_two_streams_against_rfc3550() -> None:
    rng = np.random.default_rng(3)
    e = Engine(2)
    leg = e.add_leg("packets", "pcmu", 0.0)
    first = [s for s in range(100, 150) if s not in (110, 120, 121)]
    second = [s for s in range(5000, 5010) if s != 5004]
    streams: list[list[tuple[int, float]]] = []
    for ssrc, seqs, start in ((0xA, first, 0.0), (0xB, second, 2000.0)):
        packets, timing = [], []
        for seq in seqs:
            arrival = start + (seq - seqs[0]) * 20.0 + float(rng.uniform(0, 15))
            packets.append((rtp(0, seq, ssrc), arrival))
            timing.append((seq * 160, arrival))
        push(e, leg, packets)
        streams.append(timing)
    stats = leg.stats
    assert (stats["rx_expected"], stats["rx_lost"]) == (60, 4)
    assert stats["rx_loss_percent"] == pytest.approx(100 * 4 / 60)
    assert isinstance(stats["rx_jitter_ms"], float)
    assert stats["rx_jitter_ms"] == pytest.approx(a8_jitter(streams), abs=1e-9) and stats["rx_jitter_ms"] > 1
    assert stats["rx_packets"] == 56


def test_a_leg_without_packets_reports_no_loss() -> None:
    e = Engine(2)
    stats = e.add_leg("packets", "pcmu", 0.0).stats
    assert (stats["rx_expected"], stats["rx_lost"], stats["rx_loss_percent"], stats["rx_jitter_ms"]) == (0, 0, 0.0, 0.0)
    assert (stats["remote_reports"], stats["remote_jitter_ms"], stats["latched"], stats["latches"]) == \
        (0, 0.0, False, 0)


def test_ipv6_latch_and_rtcp_port(net: Net) -> None:
    try:
        ours, rtcp, peer = (socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) for _ in range(3))
    except OSError:
        pytest.skip("no IPv6")
    net.socks += [ours, rtcp, peer]
    try:
        for s in (ours, rtcp, peer):
            s.bind(("::1", 0))
            s.setblocking(False)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    e = Engine(2)
    leg = e.add_leg("udp", "pcmu", 0.0, fd=ours.fileno(), rtcp_fd=rtcp.fileno(), latch=True)
    peer.sendto(rtp(0, 1, 0xA), ours.getsockname())
    assert len(kinds(e.tick(0.0), eng.LATCHED)) == 1
    port = peer.getsockname()[1]
    assert leg.remote == ("::1", port) and leg.rtcp_remote == ("::1", port + 1)
    assert len(drain(peer)) == 1
