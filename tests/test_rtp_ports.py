"""RTP/RTCP port pairs from a configured range, on 127.0.0.1 with small ranges."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

import pytest

from pbx.media.rtp_ports import PortsExhausted, RtpPortPool, RtpSockets

HOST = "127.0.0.1"


def bindable(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((HOST, port))
    except OSError:
        return False
    finally:
        s.close()
    return True


@pytest.fixture
def base() -> int:
    """An even port starting 8 free ports (below Linux's ephemeral range, so nothing grabs them meanwhile)."""
    for start in range(23000, 32000, 8):
        if all(bindable(p) for p in range(start, start + 8)):
            return start
    pytest.skip("no 8 free UDP ports on 127.0.0.1")


@pytest.fixture
def held() -> Iterator[list[RtpSockets]]:
    got: list[RtpSockets] = []
    yield got
    for s in got:
        s.close()


def test_allocates_an_even_rtp_port_and_the_next_for_rtcp(base: int, held: list[RtpSockets]) -> None:
    pool = RtpPortPool(base, base + 7, HOST)
    s = pool.allocate()
    held.append(s)
    assert s.port == base and s.rtp.getsockname() == (HOST, base) and s.rtcp.getsockname() == (HOST, base + 1)
    assert s.rtp.type == s.rtcp.type == socket.SOCK_DGRAM
    assert not s.rtp.getblocking() and not s.rtcp.getblocking()
    assert (pool.pairs, pool.in_use) == (4, 1)


def test_round_robin_does_not_reuse_a_just_released_pair(base: int, held: list[RtpSockets]) -> None:
    pool = RtpPortPool(base, base + 5, HOST)            # three pairs
    first = pool.allocate()
    pool.release(first)
    assert first.rtp.fileno() == -1 and first.rtcp.fileno() == -1   # closed
    ports = []
    for _ in range(4):
        s = pool.allocate()
        ports.append(s.port)
        pool.release(s)
    assert ports == [base + 2, base + 4, base, base + 2]


def test_an_odd_low_end_and_a_high_end_cut_a_pair(base: int, held: list[RtpSockets]) -> None:
    pool = RtpPortPool(base + 1, base + 6, HOST)        # pairs base+2/3, base+4/5; base+6 alone
    held += [pool.allocate(), pool.allocate()]
    assert [s.port for s in held] == [base + 2, base + 4] and pool.pairs == 2
    with pytest.raises(PortsExhausted):
        pool.allocate()


def test_ports_in_use_by_others_are_skipped(base: int, held: list[RtpSockets]) -> None:
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind((HOST, base + 1))                      # the first pair's RTCP port
    try:
        pool = RtpPortPool(base, base + 3, HOST)
        s = pool.allocate()
        held.append(s)
        assert s.port == base + 2
        with pytest.raises(PortsExhausted, match=r"^no free RTP port pair in \d+-\d+ \(1 of 2 held by this pool\)$"):
            pool.allocate()
    finally:
        squatter.close()
    held.append(pool.allocate())                         # free again once the other program let go
    assert held[-1].port == base


def test_exhaustion_names_the_range_after_trying_each_pair_once(base: int, held: list[RtpSockets]) -> None:
    tried: list[int] = []

    class Counting(RtpPortPool):
        def _bind(self, port: int) -> RtpSockets | None:
            tried.append(port)
            return super()._bind(port)

    pool = Counting(base, base + 3, HOST)
    held += [pool.allocate(), pool.allocate()]
    tried.clear()
    message = rf"^no free RTP port pair in {base}-{base + 3} \(2 of 2 held by this pool\)$"
    with pytest.raises(PortsExhausted, match=message):
        pool.allocate()
    assert tried == []                                   # held pairs cost no system call
    pool.release(held.pop())
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind((HOST, base + 2))
    try:
        with pytest.raises(PortsExhausted):
            pool.allocate()
    finally:
        squatter.close()
    assert tried == [base + 2]                           # one scan of the range, then give up


def test_release_refuses_sockets_it_does_not_hold(base: int, held: list[RtpSockets]) -> None:
    pool = RtpPortPool(base, base + 3, HOST)
    s = pool.allocate()
    pool.release(s)
    with pytest.raises(ValueError, match=rf"^RTP port {base} is not held by this pool$"):
        pool.release(s)
    mine = pool.allocate()
    other = RtpPortPool(base, base + 3, HOST).allocate()  # another pool's pair
    held += [mine, other]
    assert (mine.port, other.port) == (base + 2, base)
    with pytest.raises(ValueError, match=rf"^RTP port {base} is not held by this pool$"):
        pool.release(other)
    with pytest.raises(ValueError, match=rf"^RTP port {base + 2} is not held by this pool$"):
        pool.release(RtpSockets(other.rtp, other.rtcp, base + 2))   # a port it holds, not the sockets it gave
    assert pool.in_use == 1 and mine.rtp.fileno() >= 0


@pytest.mark.parametrize(("low", "high", "host", "ipv6", "message"), [
    (30000, 30000, HOST, False, r"^RTP port range 30000-30000: expected 1 <= low < high <= 65535$"),
    (0, 10, HOST, False, r"^RTP port range 0-10: expected 1 <= low < high <= 65535$"),
    (30001, 30002, HOST, False, r"^RTP port range 30001-30002 holds no even/odd port pair$"),
    (30000, 30010, "localhost", False, r"^RTP host must be a numeric IP address, got 'localhost'$"),
    (30000, 30010, "::1", False, r"^RTP host '::1' is not an IPv4 address$"),
    (30000, 30010, HOST, True, r"^RTP host '127.0.0.1' is not an IPv6 address$"),
])
def test_caller_errors(low: int, high: int, host: str, ipv6: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RtpPortPool(low, high, host, ipv6=ipv6)


def test_a_host_that_is_not_ours_is_a_configuration_error(base: int) -> None:
    pool = RtpPortPool(base, base + 3, "192.0.2.1")     # TEST-NET-1: not an address of this machine
    with pytest.raises(OSError) as info:
        pool.allocate()
    assert info.value.errno == errno.EADDRNOTAVAIL and pool.in_use == 0


def test_ipv6(base: int, held: list[RtpSockets]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    pool = RtpPortPool(base, base + 3, "::1", ipv6=True)
    try:
        s = pool.allocate()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    held.append(s)
    assert s.rtp.family == socket.AF_INET6 and s.rtcp.getsockname()[:2] == ("::1", s.port + 1)
