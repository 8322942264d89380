"""The ``[webrtc]`` table of the server's configuration, checked::

    [webrtc]
    addr = ""                    # our host candidate (IPv4): "" = the address of the default route
    addr6 = ""                   # the host candidate of calls with enableIpv6 ("" = such calls use addr)
    external_ip = ""             # told to browsers instead of addr, for a server behind 1:1 NAT
    rtp_ports = [30000, 40000]   # one UDP port per call (RTP, RTCP, STUN and DTLS multiplexed)

The server is an ICE-lite agent (pbx.webrtc.ice): its only candidates are these host addresses. The
``ice_servers`` list goes to browsers (``GET /iceservers``) so that they can reach it through their own NAT.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from pbx.errors import ConfigError

DEFAULT_PORTS = (30000, 40000)


@dataclass(frozen=True, slots=True)
class WebRtcConfig:
    addr: str = ""
    addr6: str = ""
    external_ip: str = ""
    rtp_ports: tuple[int, int] = DEFAULT_PORTS


def _address(key: str, value: Any, version: int | None) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"config key 'webrtc.{key}': expected str, got {type(value).__name__}")
    if value:
        try:
            ip = ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            raise ConfigError(f"config key 'webrtc.{key}': not an IP address: {value!r}") from None
        if version is not None and ip.version != version:
            raise ConfigError(f"config key 'webrtc.{key}': expected an IPv{version} address, got {value!r}")
        if ip.is_unspecified:
            raise ConfigError(f"config key 'webrtc.{key}': a candidate must be a host's address, not {value!r}")
        return str(ip)
    return ""


def webrtc_config(raw: Any) -> WebRtcConfig:
    if not isinstance(raw, dict):
        raise ConfigError("config key 'webrtc': expected a table")
    unknown = sorted(set(raw) - {"addr", "addr6", "external_ip", "rtp_ports"})
    if unknown:
        raise ConfigError(f"unknown config key 'webrtc.{unknown[0]}'")
    ports = raw.get("rtp_ports", list(DEFAULT_PORTS))
    if (not isinstance(ports, list) or len(ports) != 2
            or not all(isinstance(p, int) and not isinstance(p, bool) for p in ports)
            or not 1024 <= ports[0] < ports[1] <= 65535 or ports[1] - ports[0] < 2):
        raise ConfigError("config key 'webrtc.rtp_ports': expected [low, high] with 1024 <= low < high <= 65535")
    return WebRtcConfig(addr=_address("addr", raw.get("addr", ""), 4), addr6=_address("addr6", raw.get("addr6", ""), 6),
                        external_ip=_address("external_ip", raw.get("external_ip", ""), None),
                        rtp_ports=(ports[0], ports[1]))
