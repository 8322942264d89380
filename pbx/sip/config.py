"""The ``[sip]`` and ``[webhook]`` tables of the server's configuration, checked.

These names are part of the contract with operators (the README's table documents them)::

    [sip]
    addr = "0.0.0.0:5060"        # UDP and TCP; port 0 picks a free one (tests)
    addr6 = ""                   # also listen on this IPv6 address (e.g. "[::]:5060") when addr is IPv4
    external_ip = ""             # advertised in SDP and Contact when behind NAT ("" = the bound address)
    rtp_ports = [20000, 30000]   # an even RTP port and its RTCP port + 1 per call
    user_agent = "pypbx"
    accept_refer = false         # act on a peer's REFER: call its target, who takes the peer's place (else 603)
    refer_mode = "bridge"        # refer places a new leg and bridges it; "sip" sends a real REFER
    rtp_timeout_secs = 30        # no RTP from the peer this long (not counted on hold): rtp_timeout; 0 = never

    [[sip.trunks]]               # outbound: a callee that matches goes through this trunk
    name = "carrier"
    proxy = "sip:127.0.0.1:5070"          # where the INVITE is sent (outbound proxy)
    number_template = "sip:{number}@carrier.example"   # a bare number callee becomes this URI
    match = "^\\+?[0-9]+$"                # callees (as given) this trunk takes; default every bare number
    username = "" ; password = "" ; realm = ""
    headers = { X-Account = "42" }

    [[sip.accounts]]             # REGISTER to a registrar and keep it refreshed
    username = "1001" ; password = "" ; realm = "" ; registrar = "sip:127.0.0.1:5070" ; expires = 3600

    [webhook]
    url = ""                     # inbound INVITEs are POSTed here; "" = inbound calls are refused (480)
    decision_timeout_secs = 30   # no accept/reject/ringing by then: 408
    timeout_secs = 5             # the POST itself; failure: 503
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from pbx.errors import ConfigError

DEFAULT_SIP_ADDR = "0.0.0.0:5060"
DEFAULT_TRUNK_MATCH = r"^\+?[0-9*#]+$"     # a bare number (the README's "phone number")


@dataclass(frozen=True, slots=True)
class Trunk:
    name: str
    proxy: str
    number_template: str = ""
    match: str = DEFAULT_TRUNK_MATCH
    username: str = ""
    password: str = field(default="", repr=False)
    realm: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def takes(self, callee: str) -> bool:
        return re.search(self.match, callee) is not None

    def uri_for(self, callee: str) -> str:
        """The Request-URI for ``callee``: a number through the template, a URI as it is."""
        if callee.startswith(("sip:", "sips:", "tel:")) or not self.number_template:
            return callee
        return self.number_template.format(number=callee)


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    registrar: str
    password: str = field(default="", repr=False)
    realm: str = ""
    expires: int = 3600


@dataclass(frozen=True, slots=True)
class SipConfig:
    addr: str = DEFAULT_SIP_ADDR
    addr6: str = ""
    external_ip: str = ""
    rtp_ports: tuple[int, int] = (20000, 30000)
    user_agent: str = "pypbx"
    accept_refer: bool = False
    refer_mode: str = "bridge"
    rtp_timeout_secs: float = 30.0
    trunks: tuple[Trunk, ...] = ()
    accounts: tuple[Account, ...] = ()

    @property
    def host_port(self) -> tuple[str, int]:
        return split_host_port(self.addr, "sip.addr")

    @property
    def host_port6(self) -> tuple[str, int] | None:
        """The second, IPv6 address to listen on (None: only ``addr``)."""
        return split_host_port(self.addr6, "sip.addr6") if self.addr6 else None

    def trunk_for(self, callee: str) -> Trunk | None:
        return next((t for t in self.trunks if t.takes(callee)), None)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str = ""
    decision_timeout_secs: float = 30.0
    timeout_secs: float = 5.0


def _ip_version(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def split_host_port(addr: str, key: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536 or not host:
        raise ConfigError(f"config key {key!r}: expected host:port, got {addr!r}")
    return host.strip("[]"), int(port)


def _table(where: str, raw: Any, fields: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"config key {where!r}: expected a table")
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key '{where}.{unknown[0]}'")
    for name, value in raw.items():
        expected = fields[name]
        if isinstance(value, bool) != (expected is bool) or not isinstance(value, expected):
            names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
            raise ConfigError(f"config key '{where}.{name}': expected {names}, got {type(value).__name__}")
    return dict(raw)


def _headers(where: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ConfigError(f"config key {where!r}: expected a table of strings")
    for name, value in raw.items():
        if not re.fullmatch(r"[A-Za-z0-9!%*_+`'~.-]+", name) or "\r" in value or "\n" in value:
            raise ConfigError(f"config key {where!r}: {name!r} is not a valid SIP header")
    return dict(raw)


def _sip_uri(where: str, value: str) -> str:
    if not value.startswith(("sip:", "sips:")):
        raise ConfigError(f"config key {where!r}: expected a sip: URI, got {value!r}")
    return value


def _trunk(i: int, raw: Any) -> Trunk:
    where = f"sip.trunks[{i}]"
    values = _table(where, raw, {"name": str, "proxy": str, "number_template": str, "match": str,
                                 "username": str, "password": str, "realm": str, "headers": dict})
    for required in ("name", "proxy"):
        if not values.get(required):
            raise ConfigError(f"config key '{where}.{required}' is required")
    _sip_uri(f"{where}.proxy", values["proxy"])
    try:
        re.compile(values.get("match", DEFAULT_TRUNK_MATCH))
    except re.error as exc:
        raise ConfigError(f"config key '{where}.match': not a regular expression: {exc}") from None
    template = values.get("number_template", "")
    if template and "{number}" not in template:
        raise ConfigError(f"config key '{where}.number_template': must contain {{number}}")
    if "headers" in values:
        values["headers"] = _headers(f"{where}.headers", values["headers"])
    return Trunk(**values)


def _account(i: int, raw: Any) -> Account:
    where = f"sip.accounts[{i}]"
    values = _table(where, raw, {"username": str, "registrar": str, "password": str, "realm": str,
                                 "expires": int})
    for required in ("username", "registrar"):
        if not values.get(required):
            raise ConfigError(f"config key '{where}.{required}' is required")
    _sip_uri(f"{where}.registrar", values["registrar"])
    if not 60 <= values.get("expires", 3600) <= 86400:
        raise ConfigError(f"config key '{where}.expires': must be between 60 and 86400 seconds")
    return Account(**values)


def sip_config(raw: Any) -> SipConfig:
    values = _table("sip", raw, {"addr": str, "addr6": str, "external_ip": str, "rtp_ports": list, "user_agent": str,
                                 "accept_refer": bool, "refer_mode": str, "rtp_timeout_secs": (int, float),
                                 "trunks": list, "accounts": list})
    if "addr" in values:
        split_host_port(values["addr"], "sip.addr")
    if values.get("addr6"):
        host6, _ = split_host_port(values["addr6"], "sip.addr6")
        host, _ = split_host_port(values.get("addr", DEFAULT_SIP_ADDR), "sip.addr")
        if _ip_version(host6) != 6 or _ip_version(host) != 4:
            raise ConfigError("config key 'sip.addr6': an IPv6 address (\"[::]:5060\") beside an IPv4 sip.addr")
    if values.get("external_ip"):
        try:
            ipaddress.ip_address(values["external_ip"])
        except ValueError:
            raise ConfigError(f"config key 'sip.external_ip': not an IP address: {values['external_ip']!r}") from None
    if "rtp_ports" in values:
        ports = values["rtp_ports"]
        if (len(ports) != 2 or not all(isinstance(p, int) and not isinstance(p, bool) for p in ports)
                or not 1024 <= ports[0] < ports[1] <= 65535 or ports[1] - ports[0] < 2):
            raise ConfigError("config key 'sip.rtp_ports': expected [low, high] with 1024 <= low < high <= 65535 "
                              "and room for one even/odd pair")
        values["rtp_ports"] = (ports[0], ports[1])
    if values.get("refer_mode", "bridge") not in ("bridge", "sip"):
        raise ConfigError(f"config key 'sip.refer_mode': expected bridge or sip, got {values['refer_mode']!r}")
    if "rtp_timeout_secs" in values:
        if not 0 <= values["rtp_timeout_secs"] <= 3600:
            raise ConfigError("config key 'sip.rtp_timeout_secs': must be between 0 and 3600 seconds")
        values["rtp_timeout_secs"] = float(values["rtp_timeout_secs"])
    if "user_agent" in values and ("\r" in values["user_agent"] or "\n" in values["user_agent"]):
        raise ConfigError("config key 'sip.user_agent': must be one line")
    values["trunks"] = tuple(_trunk(i, t) for i, t in enumerate(values.get("trunks", [])))
    values["accounts"] = tuple(_account(i, a) for i, a in enumerate(values.get("accounts", [])))
    return SipConfig(**values)


def webhook_config(raw: Any) -> WebhookConfig:
    values = _table("webhook", raw, {"url": str, "decision_timeout_secs": (int, float),
                                     "timeout_secs": (int, float)})
    url = values.get("url", "")
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"config key 'webhook.url': expected an http or https URL, got {url!r}")
    for name in ("decision_timeout_secs", "timeout_secs"):
        if name in values:
            if not 0 < values[name] <= 3600:
                raise ConfigError(f"config key 'webhook.{name}': must be between 0 and 3600 seconds")
            values[name] = float(values[name])
    return WebhookConfig(**values)
