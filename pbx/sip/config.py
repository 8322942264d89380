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
    # defences (docs/sip-security.md; pbx.sip.guard, pbx.sip.registrar, pbx.sip.dial_allow)
    max_message_bytes = 16384    # a larger SIP message is refused 513
    max_messages_per_sec = 1000  # per source address, every datagram; over it: 503 once, then dropped; 0 = off
    max_new_requests_per_sec = 200   # per source address, requests outside a dialog (INVITE, REGISTER, ...)
    rate_cooloff_secs = 10       # how long a source over its rate stays dropped
    allow_networks = []          # inbound SIP only from these networks ([] = any); others dropped
    deny_networks = []           # never from these (checked first)
    auth_realm = "pypbx"
    auth_algorithms = ["SHA-256", "MD5"]   # challenged in this order (put "MD5" first for UAs reading only one)
    users = {}                   # username = password: inbound INVITE and REGISTER must authenticate (digest)
    auth_max_failures = 10       # failed digest answers from one address in auth_failure_window_secs ...
    auth_failure_window_secs = 60
    auth_block_secs = 300        # ... block it this long (403 once, then dropped)
    dial_allow = []              # callee patterns (globs) invite/refer may dial ([] = any, warned about)
    rtp_source = "latch"         # "latch": symmetric RTP; "sdp": only from the SDP's address and port

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
    max_message_bytes: int = 16384
    max_messages_per_sec: float = 1000.0
    max_new_requests_per_sec: float = 200.0
    rate_cooloff_secs: float = 10.0
    allow_networks: tuple[str, ...] = ()
    deny_networks: tuple[str, ...] = ()
    auth_realm: str = "pypbx"
    auth_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    users: dict[str, str] = field(default_factory=dict, repr=False)
    auth_max_failures: int = 10
    auth_failure_window_secs: float = 60.0
    auth_block_secs: float = 300.0
    dial_allow: tuple[str, ...] = ()
    rtp_source: str = "latch"

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
                                 "trunks": list, "accounts": list, **_DEFENCE_KEYS})
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
    _defences(values)
    return SipConfig(**values)


_DEFENCE_KEYS: dict[str, type | tuple[type, ...]] = {
    "max_message_bytes": int, "max_messages_per_sec": (int, float), "max_new_requests_per_sec": (int, float),
    "rate_cooloff_secs": (int, float), "allow_networks": list, "deny_networks": list, "auth_realm": str,
    "auth_algorithms": list, "users": dict, "auth_max_failures": int, "auth_failure_window_secs": (int, float),
    "auth_block_secs": (int, float), "dial_allow": list, "rtp_source": str}


def _strings(where: str, raw: list[Any]) -> tuple[str, ...]:
    if not all(isinstance(v, str) and v for v in raw):
        raise ConfigError(f"config key {where!r}: expected a list of non-empty strings")
    return tuple(raw)


def _defences(values: dict[str, Any]) -> None:
    """Check and normalise the keys of the SIP defences (docs/sip-security.md), in place."""
    if not 1024 <= values.get("max_message_bytes", 16384) <= 65535:
        raise ConfigError("config key 'sip.max_message_bytes': must be between 1024 and 65535")
    for name, top in (("max_messages_per_sec", 1e6), ("max_new_requests_per_sec", 1e6), ("rate_cooloff_secs", 86400),
                      ("auth_failure_window_secs", 86400), ("auth_block_secs", 86400)):
        if name in values:
            if not 0 <= values[name] <= top:
                raise ConfigError(f"config key 'sip.{name}': must be between 0 and {top:g}")
            values[name] = float(values[name])
    if not 1 <= values.get("auth_max_failures", 10) <= 1000:
        raise ConfigError("config key 'sip.auth_max_failures': must be between 1 and 1000")
    for name in ("allow_networks", "deny_networks"):
        if name in values:
            values[name] = _strings(f"sip.{name}", values[name])
            for network in values[name]:
                try:
                    ipaddress.ip_network(network, strict=False)
                except ValueError:
                    raise ConfigError(f"config key 'sip.{name}': not a network: {network!r}") from None
    if "dial_allow" in values:
        values["dial_allow"] = _strings("sip.dial_allow", values["dial_allow"])
    if "auth_algorithms" in values:
        algorithms = _strings("sip.auth_algorithms", values["auth_algorithms"])
        known = {"MD5": "MD5", "SHA-256": "SHA-256", "SHA-512-256": "SHA-512-256"}
        if not algorithms or any(a.upper() not in known for a in algorithms):
            raise ConfigError("config key 'sip.auth_algorithms': expected a list of MD5, SHA-256, SHA-512-256")
        values["auth_algorithms"] = tuple(known[a.upper()] for a in algorithms)
    realm = values.get("auth_realm", "pypbx")
    if not realm or any(c in realm for c in '"\\\r\n'):
        raise ConfigError("config key 'sip.auth_realm': must be non-empty, without quotes, backslashes or line breaks")
    users = values.get("users", {})
    if not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in users.items()):
        raise ConfigError("config key 'sip.users': expected a table of username = \"password\" (non-empty strings)")
    if any(c in name for name in users for c in '"\\\r\n'):
        raise ConfigError("config key 'sip.users': a username has a quote, backslash or line break")
    if values.get("rtp_source", "latch") not in ("latch", "sdp"):
        raise ConfigError(f"config key 'sip.rtp_source': expected latch or sdp, got {values['rtp_source']!r}")


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
