"""The host's own address, for what the server advertises when it is bound to every interface."""

from __future__ import annotations

import socket


def default_route_address(ipv6: bool) -> str:
    """The source address of the host's default route (loopback when there is none). Connecting a UDP
    socket sends nothing: it only asks the kernel for a route (to TEST-NET-1 or the IPv6 documentation
    prefix, never real hosts)."""
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    probe = "2001:db8::1" if ipv6 else "192.0.2.1"
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return "::1" if ipv6 else "127.0.0.1"
