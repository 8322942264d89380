"""RTP/RTCP port pairs for SIP calls: an even RTP port with RTCP on port + 1, from a configured range.

:class:`RtpPortPool` hands out pairs of bound, non-blocking UDP sockets (:class:`RtpSockets`) for the
media engine to borrow (``fd`` and ``rtcp_fd`` of a UDP leg), and takes them back with
:meth:`RtpPortPool.release`. Rules:

- The range ``low..high`` includes both ends (``rtp_ports = [20000, 30000]``); a pair is ``(p, p + 1)``
  with ``p`` even and both inside it (RFC 3550 11: RTP on an even port, RTCP on the next one).
- Round robin: the search starts just after the pair handed out last, so a pair just released is
  offered again only once the rest of the range has been (late packets of the previous call then
  reach a closed port, not the next call).
- A pair another program holds (binding either port fails with EADDRINUSE or EACCES) is skipped;
  a pair this pool holds is skipped without a system call. Any other bind error (the host is not
  one of ours: EADDRNOTAVAIL) is a configuration error and propagates as the ``OSError`` it is.
- Bounded work: one allocation tries each pair of the range at most once, then raises
  :class:`PortsExhausted` (a capacity error, not a caller mistake: a SIP layer answers 503).

Caller mistakes (a range without a pair, a host of the wrong family, releasing sockets this pool
did not hand out or already took back) raise ``ValueError``.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass

SKIPPED_ERRNOS = frozenset({errno.EADDRINUSE, errno.EACCES})


class PortsExhausted(Exception):
    """Every pair of the range is held, by this pool or by other sockets."""


@dataclass(slots=True, eq=False)
class RtpSockets:
    """A bound, non-blocking UDP socket pair: ``rtp`` on the even ``port``, ``rtcp`` on ``port + 1``."""

    rtp: socket.socket
    rtcp: socket.socket
    port: int

    def close(self) -> None:
        """Close both sockets (again is harmless)."""
        self.rtp.close()
        self.rtcp.close()


class RtpPortPool:
    """Even/odd UDP port pairs from ``low..high`` (both included), bound on ``host``."""

    def __init__(self, low: int, high: int, host: str, *, ipv6: bool = False) -> None:
        if not 1 <= low < high <= 65535:
            raise ValueError(f"RTP port range {low}-{high}: expected 1 <= low < high <= 65535")
        first = low + (low & 1)
        if first + 1 > high:
            raise ValueError(f"RTP port range {low}-{high} holds no even/odd port pair")
        try:
            version = ipaddress.ip_address(host).version
        except ValueError:
            raise ValueError(f"RTP host must be a numeric IP address, got {host!r}") from None
        if version != (6 if ipv6 else 4):
            raise ValueError(f"RTP host {host!r} is not an IPv{6 if ipv6 else 4} address")
        self.low = low
        self.high = high
        self.host = host
        self.family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self._first = first
        self._pairs = (high - first + 1) // 2
        self._next = 0                       # index of the pair the next search starts at
        self._held: dict[int, RtpSockets] = {}   # pair index -> the sockets handed out, until released

    @property
    def pairs(self) -> int:
        """Pairs in the range."""
        return self._pairs

    @property
    def in_use(self) -> int:
        """Pairs handed out and not yet released."""
        return len(self._held)

    def allocate(self) -> RtpSockets:
        """Bind the next free pair; :class:`PortsExhausted` once every pair was tried."""
        for i in range(self._pairs):
            k = (self._next + i) % self._pairs
            if k in self._held:
                continue
            sockets = self._bind(self._first + 2 * k)
            if sockets is None:
                continue
            self._held[k] = sockets
            self._next = (k + 1) % self._pairs
            return sockets
        raise PortsExhausted(f"no free RTP port pair in {self.low}-{self.high} "
                             f"({len(self._held)} of {self._pairs} held by this pool)")

    def release(self, sockets: RtpSockets) -> None:
        """Close the pair and make its ports available again (after the rest of the range)."""
        k = (sockets.port - self._first) // 2
        if self._held.get(k) is not sockets:
            raise ValueError(f"RTP port {sockets.port} is not held by this pool")
        del self._held[k]
        sockets.close()

    def _socket(self) -> socket.socket:
        """IPv6 only for an IPv6 pool: an IPv4 pool on the same range then holds the same ports."""
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        if self.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        return sock

    def _bind(self, port: int) -> RtpSockets | None:
        """Both sockets bound, or None if either port is taken."""
        rtp = self._socket()
        rtcp = None
        try:
            rtp.bind((self.host, port))
            rtcp = self._socket()
            rtcp.bind((self.host, port + 1))
        except OSError as exc:
            rtp.close()
            if rtcp is not None:
                rtcp.close()
            if exc.errno in SKIPPED_ERRNOS:
                return None
            raise
        rtp.setblocking(False)
        rtcp.setblocking(False)
        return RtpSockets(rtp, rtcp, port)
