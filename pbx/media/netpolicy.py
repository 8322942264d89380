"""Which addresses ``play`` may fetch from: public ones, and the networks an operator allows.

A client names the URL, so without a policy the server would fetch for it from places only the
server can reach: its own REST port on loopback, a cloud's metadata service on a link-local address,
the private network behind it. Loopback, private, link-local, multicast, unspecified, reserved and
other non-global addresses (shared CGNAT space, documentation ranges, IPv4-mapped forms of any of
these) are refused unless they lie in an allowed network (``play_allow_networks``, for operators who
serve prompts internally). The check is made on the address the connection will use: the fetcher
resolves a host once per hop, checks, and connects to that address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def classify(address: IPAddress) -> str | None:
    """The kind of non-public address ``address`` is ("loopback", "private", ...), or None if public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return classify(address.ipv4_mapped)
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-public"
    return None


class AddressPolicy:
    def __init__(self, allow: Iterable[str | IPNetwork] = ()) -> None:
        """``allow``: networks (CIDR) fetched from even though they are not public; ValueError if bad."""
        self.allow: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in allow)

    def refusal(self, address: IPAddress | str) -> str | None:
        """Why ``address`` may not be fetched from (its kind), or None."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        kind = classify(ip)
        if kind is None:
            return None
        plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
        if any(plain.version == net.version and plain in net for net in self.allow):
            return None
        return kind


class AddressRefused(Exception):
    """No address of a host may be reached: ``reason`` says why (DNS failure, or the kind of address)."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(reason)
        self.host = host
        self.reason = reason


async def allowed_addresses(host: str, port: int, policy: AddressPolicy) -> list[str]:
    """The addresses of ``host`` that ``policy`` allows, resolved once: connect to these, not to the name,
    so that nothing is looked up again between the check and the connect. AddressRefused if none."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:  # DNS failure (socket.gaierror)
        raise AddressRefused(host, f"cannot reach {host}: {exc.strerror or exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    allowed = [a for a in addresses if policy.refusal(a) is None]
    if not allowed:
        first = addresses[0]
        where = f"{host} is" if host == first else f"{host} resolves to {first},"
        raise AddressRefused(host, f"{where} a {policy.refusal(first)} address")
    return allowed
