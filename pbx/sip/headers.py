"""The structured SIP header values (RFC 3261 §19, §20, §25; RFC 5118 for IPv6): URIs, name-addr, Via, CSeq,
parameters and lists.

Each is a slotted dataclass with a ``parse`` class method (raising :class:`~pbx.sip.errors.SipParseError`
for what the peer got wrong) and ``__str__`` (the wire form). ``X.parse(str(x)) == x`` holds for every value
``parse`` returns.

Conventions:

- URI components are stored **unescaped** (``sip:%75ser@h`` has ``user == "user"``, RFC 4475 §3.1.1.3) and
  escaped again by ``__str__`` where their grammar requires it; a ``%`` that is not followed by two hex digits
  is an error. Undecodable UTF-8 survives as surrogate escapes, so the round trip is exact.
- An IPv6 host is stored without brackets (``"2001:db8::10"``); ``__str__`` and :attr:`SipUri.host_port` add
  them. RFC 5118 §4.10: the three-colon form RFC 3261's ABNF wrongly allows (``2001:db8:::192.0.2.1``) is
  tolerated and stored as the two-colon address it means.
- Parameter names are case-insensitive and stored in lower case; a parameter without a value maps to None.
  Header-parameter values that are quoted strings keep their quotes and escapes (``unquote`` reads them), so
  they go back on the wire as they came.
- Header parameters allow linear white space around ``;`` and ``=`` (RFC 3261 §25.1 SEMI, EQUAL); URIs allow
  none at all (RFC 4475 §3.1.2.14).
"""

from __future__ import annotations

import ipaddress
import re
import string
import urllib.parse
from dataclasses import dataclass, field
from typing import Literal

from pbx.sip.errors import SipParseError, UnsupportedUriScheme

__all__ = [
    "TOKEN_CHARS",
    "CSeq",
    "NameAddr",
    "SipUri",
    "Via",
    "format_params",
    "parse_params",
    "quote",
    "split_list",
    "unquote",
]

ALNUM = string.ascii_letters + string.digits
TOKEN_CHARS = frozenset(ALNUM + "-.!%*_+`'~")
_UNRESERVED = ALNUM + "-_.!~*'()"
_USER_CHARS = frozenset(_UNRESERVED + "%&=+$,;?/")
_PASSWORD_CHARS = frozenset(_UNRESERVED + "%&=+$,")
_PARAM_CHARS = frozenset(_UNRESERVED + "%[]/:&+$")
_HEADER_CHARS = frozenset(_UNRESERVED + "%[]/?:+$")
_TEL_CHARS = frozenset(_UNRESERVED + "%&=+$,/#")
# what a header-parameter value may hold when it is not a quoted string: token, host (IPv6 in brackets or not,
# RFC 5118 §4.5) and a little more that real peers send
_VALUE_CHARS = frozenset(TOKEN_CHARS | set(":[]/"))
_WSP = " \t"
_WHITESPACE = frozenset(" \t\r\n")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\.?")
_DOTTED = re.compile(r"[0-9.]+")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DIGITS = re.compile(r"[0-9]+")
_VIA_PROTOCOL = re.compile(r"([^\s/]+)[ \t]*/[ \t]*([^\s/]+)[ \t]*/[ \t]*([^\s/;:]+)")
_CSEQ = re.compile(r"[ \t]*([0-9]+)[ \t]+([^\s]+)[ \t]*")
SCHEMES = ("sip", "sips", "tel")
MAX_CSEQ = 2**32 - 1


def _show(text: str, limit: int = 80) -> str:
    """``text`` for an error message: repr'd, long values cut."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


# -- escaping -------------------------------------------------------------------------------------------------
def _decode(text: str, what: str) -> str:
    if "%" not in text:
        return text
    if _BAD_ESCAPE.search(text):
        raise SipParseError(f"bad escape in {what} {_show(text)}")
    return urllib.parse.unquote(text, encoding="utf-8", errors="surrogateescape")


def _encode(text: str, safe: str) -> str:
    return urllib.parse.quote(text, safe=safe, encoding="utf-8", errors="surrogateescape")


_USER_SAFE = "!*'()&=+$,;?/"
_PASSWORD_SAFE = "!*'()&=+$,"
_PARAM_SAFE = "!*'()[]/:&+$"
_HEADER_SAFE = "!*'()[]/?:+$"
_TEL_SAFE = "!*'()&=+$,/#"


# -- quoted strings, parameters and lists ---------------------------------------------------------------------
def _quoted_end(text: str, start: int) -> int:
    """The index just past the quoted string that opens at ``text[start]`` (a ``"``)."""
    i, n = start + 1, len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            i += 2
        elif char == '"':
            return i + 1
        else:
            i += 1
    raise SipParseError(f"unterminated quoted string in {_show(text)}")


def unquote(value: str) -> str:
    """The text of a quoted string (quotes removed, quoted-pairs resolved); other values as they are."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    out: list[str] = []
    i, end = 1, len(value) - 1
    while i < end:
        if value[i] == "\\" and i + 1 < end:
            i += 1
        out.append(value[i])
        i += 1
    return "".join(out)


def quote(text: str) -> str:
    """``text`` as a quoted string. ``\\`` and ``"`` are escaped, as are the control characters a
    quoted-pair can carry; CR and LF (which nothing can carry) become spaces."""
    out = ['"']
    for char in text:
        if char in "\r\n":
            out.append(" ")
        elif char in '"\\' or (char < " " and char != "\t") or char == "\x7f":
            out.append("\\" + char)
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _WSP:
        i += 1
    return i


def parse_params(text: str) -> dict[str, str | None]:
    """``;name=value;flag`` header parameters (generic-param), white space allowed around ``;`` and ``=``."""
    params: dict[str, str | None] = {}
    i, n = 0, len(text)
    while True:
        i = _skip_ws(text, i)
        if i == n:
            return params
        if text[i] != ";":
            raise SipParseError(f"expected ';' at {_show(text[i:])}")
        i = _skip_ws(text, i + 1)
        j = i
        while j < n and text[j] in TOKEN_CHARS:
            j += 1
        if j == i:
            raise SipParseError(f"empty parameter in {_show(text)}")
        name = text[i:j].lower()
        i = _skip_ws(text, j)
        value: str | None = None
        if i < n and text[i] == "=":
            i = _skip_ws(text, i + 1)
            if i < n and text[i] == '"':
                j = _quoted_end(text, i)
            else:
                j = i
                while j < n and text[j] in _VALUE_CHARS:
                    j += 1
                if j == i:
                    raise SipParseError(f"parameter {name!r} has no value in {_show(text)}")
            value = text[i:j]
            i = j
        params[name] = value


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params.items())


def split_list(value: str) -> list[str]:
    """The elements of a comma-separated header value: commas inside quoted strings and ``<>`` do not
    split; elements are stripped and empty ones dropped."""
    items: list[str] = []
    start = 0
    quoted = angled = False
    i, n = 0, len(value)
    while i < n:
        char = value[i]
        if quoted:
            if char == "\\":
                i += 1
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "<":
            angled = True
        elif char == ">":
            angled = False
        elif char == "," and not angled:
            items.append(value[start:i].strip(_WSP))
            start = i + 1
        i += 1
    items.append(value[start:].strip(_WSP))
    return [item for item in items if item]


# -- hosts and ports ------------------------------------------------------------------------------------------
def _ipv6(text: str) -> str:
    try:
        ipaddress.IPv6Address(text)
        return text
    except ValueError:
        pass
    if ":::" in text:     # RFC 5118 §4.10: tolerate RFC 3261's ABNF bug, mean the two-colon form
        fixed = text.replace(":::", "::", 1)
        try:
            ipaddress.IPv6Address(fixed)
            return fixed
        except ValueError:
            pass
    raise SipParseError(f"bad IPv6 address {_show(text)}")


def _hostname(text: str) -> str:
    if _DOTTED.fullmatch(text):
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            raise SipParseError(f"bad host {_show(text)}") from None
        return text
    if not _HOSTNAME.fullmatch(text):
        raise SipParseError(f"bad host {_show(text)}")
    return text


def _port(text: str) -> int:
    if not _DIGITS.fullmatch(text) or len(text) > 5 or int(text) > 65535:
        raise SipParseError(f"bad port {_show(text)}")
    return int(text)


def _host_port(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def _split_host_port(text: str, whole: str) -> tuple[str, int | None, str]:
    """``host[:port]`` at the start of ``text``; returns host, port and what follows."""
    if text.startswith("["):
        close = text.find("]")
        if close == -1:
            raise SipParseError(f"unterminated IPv6 reference in {_show(whole)}")
        host = _ipv6(text[1:close])
        rest = text[close + 1:]
    else:
        end = len(text)
        for stop in ":;?":
            index = text.find(stop)
            if index != -1:
                end = min(end, index)
        if text[end:end + 1] == ":" and ":" in text[end + 1:].split(";", 1)[0].split("?", 1)[0]:
            raise SipParseError(f"an IPv6 address must be in brackets: {_show(whole)}")
        host = _hostname(text[:end])
        rest = text[end:]
    port = None
    if rest.startswith(":"):
        end = len(rest)
        for stop in ";?":
            index = rest.find(stop)
            if index != -1:
                end = min(end, index)
        port = _port(rest[1:end])
        rest = rest[end:]
    if rest and rest[0] not in ";?":
        raise SipParseError(f"junk after the host in {_show(whole)}")
    return host, port, rest


# -- URIs -----------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class SipUri:
    """A ``sip:``, ``sips:`` or ``tel:`` URI (RFC 3261 §19.1, RFC 3966).

    For ``tel:`` the number is in ``user``, ``host`` is empty and ``port`` None. ``headers`` are the URI's
    ``?name=value`` headers (RFC 3261 §19.1.1), unescaped.
    """

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        if not text:
            raise SipParseError("empty URI")
        if not _WHITESPACE.isdisjoint(text):
            raise SipParseError(f"white space in URI {_show(text)}")
        colon = text.find(":")
        if colon <= 0 or not _SCHEME.fullmatch(text[:colon]):
            raise SipParseError(f"not a URI: {_show(text)}")
        scheme = text[:colon].lower()
        if scheme not in SCHEMES:
            raise UnsupportedUriScheme(f"unsupported URI scheme {scheme!r}")
        rest = text[colon + 1:]
        if scheme == "tel":
            number, _, param_text = rest.partition(";")
            if not number or not _TEL_CHARS.issuperset(number):
                raise SipParseError(f"bad telephone number in {_show(text)}")
            return cls(scheme, _decode(number, "telephone number"), None, "", None,
                       _uri_params(";" + param_text if param_text else "", text))
        user: str | None = None
        password: str | None = None
        at = rest.find("@")
        if at != -1:
            userinfo, rest = rest[:at], rest[at + 1:]
            user_text, has_password, password_text = userinfo.partition(":")
            if not user_text or not _USER_CHARS.issuperset(user_text):
                raise SipParseError(f"bad user part in {_show(text)}")
            user = _decode(user_text, "user part")
            if has_password:
                if not _PASSWORD_CHARS.issuperset(password_text):
                    raise SipParseError(f"bad password in {_show(text)}")
                password = _decode(password_text, "password")
        if not rest:
            raise SipParseError(f"no host in {_show(text)}")
        host, port, rest = _split_host_port(rest, text)
        param_text, has_headers, header_text = rest.partition("?")
        params = _uri_params(param_text, text)
        headers: dict[str, str] = {}
        if has_headers:
            for item in header_text.split("&"):
                name, equals, value = item.partition("=")
                if not name or not equals or not _HEADER_CHARS.issuperset(name + value):
                    raise SipParseError(f"bad URI header {_show(item)} in {_show(text)}")
                headers[_decode(name, "URI header")] = _decode(value, "URI header")
        return cls(scheme, user, password, host, port, params, headers)

    @property
    def host_port(self) -> str:
        """``host[:port]``, an IPv6 host in brackets."""
        return _host_port(self.host, self.port)

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.scheme == "tel":
            parts.append(_encode(self.user or "", _TEL_SAFE))
        else:
            if self.user is not None:
                parts.append(_encode(self.user, _USER_SAFE))
                if self.password is not None:
                    parts += [":", _encode(self.password, _PASSWORD_SAFE)]
                parts.append("@")
            parts.append(self.host_port)
        for name, value in self.params.items():
            parts += [";", _encode(name, _PARAM_SAFE)]
            if value is not None:
                parts += ["=", _encode(value, _PARAM_SAFE)]
        if self.headers:
            parts.append("?")
            parts.append("&".join(f"{_encode(name, _HEADER_SAFE)}={_encode(value, _HEADER_SAFE)}"
                                  for name, value in self.headers.items()))
        return "".join(parts)


def _uri_params(text: str, whole: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if not text:
        return params
    for item in text.split(";")[1:]:
        name, equals, value = item.partition("=")
        if not name or (equals and not value) or not _PARAM_CHARS.issuperset(item.replace("=", "", 1)):
            raise SipParseError(f"bad URI parameter {_show(item)} in {_show(whole)}")
        params[_decode(name, "URI parameter").lower()] = _decode(value, "URI parameter") if equals else None
    return params


# -- name-addr ------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class NameAddr:
    """``"Display" <uri>;params`` or ``uri;params`` (To, From, Contact, Route, ...; RFC 3261 §20.10).

    ``display`` is the display name's text (quoted-pairs resolved; None when there is none). An unquoted
    display name must be tokens (RFC 4475 §3.1.2.15); no white space is needed before ``<`` (§3.1.1.6). In the
    addr-spec form (no ``<>``) the parameters after the URI are header parameters, and a URI with ``?`` or
    ``,`` is refused (RFC 3261 §20.10, RFC 4475 §3.1.2.13). ``__str__`` always writes the ``<>`` form.
    """

    display: str | None
    uri: SipUri
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip(_WSP)
        display: str | None = None
        if text.startswith('"'):
            end = _quoted_end(text, 0)
            display = unquote(text[:end])
            rest = text[end:].lstrip(_WSP)
            if not rest.startswith("<"):
                raise SipParseError(f"expected '<' after the display name in {_show(text)}")
            return cls._bracketed(display, rest, text)
        angle = text.find("<")
        if angle != -1 and ":" not in text[:angle]:
            tokens = text[:angle].split()
            for token in tokens:
                if not TOKEN_CHARS.issuperset(token):
                    raise SipParseError(f"bad display name {_show(text[:angle].strip(_WSP))}")
            return cls._bracketed(" ".join(tokens) if tokens else None, text[angle:], text)
        uri_text, semi, param_text = text.partition(";")
        uri_text = uri_text.rstrip(_WSP)
        if "?" in uri_text or "," in uri_text:
            raise SipParseError(f"a URI with '?' or ',' must be enclosed in '<>': {_show(text)}")
        return cls(None, SipUri.parse(uri_text), parse_params(semi + param_text))

    @classmethod
    def _bracketed(cls, display: str | None, rest: str, text: str) -> NameAddr:
        close = rest.find(">")
        if close == -1:
            raise SipParseError(f"missing '>' in {_show(text)}")
        return cls(display, SipUri.parse(rest[1:close]), parse_params(rest[close + 1:]))

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        """A copy with ``tag`` set (replacing any tag there was)."""
        params = dict(self.params)
        params["tag"] = tag
        return NameAddr(self.display, self.uri, params)

    def __str__(self) -> str:
        head = f"<{self.uri}>" if self.display is None else f"{quote(self.display)} <{self.uri}>"
        return head + format_params(self.params)


# -- Via ------------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Via:
    """One Via header field value (RFC 3261 §20.42): ``SIP/2.0/UDP host:port;branch=...``.

    ``transport`` is upper case. White space is allowed around the slashes and before the parameters
    (RFC 4475 §3.1.1.1). ``received`` may be written with or without the brackets of an IPv6 reference
    (RFC 5118 §4.5); :attr:`received` returns it without.
    """

    transport: str
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        text = text.strip(_WSP)
        match = _VIA_PROTOCOL.match(text)
        if match is None:
            raise SipParseError(f"bad Via {_show(text)}")
        name, version, transport = match.groups()
        if name.upper() != "SIP" or version != "2.0":
            raise SipParseError(f"unsupported Via protocol {name}/{version}")
        if not TOKEN_CHARS.issuperset(transport):
            raise SipParseError(f"bad Via transport {_show(transport)}")
        i = match.end()
        j = _skip_ws(text, i)
        if j == i or j == len(text):
            raise SipParseError(f"bad Via {_show(text)}")
        sent_by = text[j:]
        if sent_by.startswith("["):
            close = sent_by.find("]")
            if close == -1:
                raise SipParseError(f"unterminated IPv6 reference in {_show(text)}")
            host = _ipv6(sent_by[1:close])
            rest = sent_by[close + 1:]
        else:
            end = 0
            while end < len(sent_by) and sent_by[end] not in ":;" + _WSP:
                end += 1
            host = _hostname(sent_by[:end])
            rest = sent_by[end:]
        port = None
        rest = rest.lstrip(_WSP)
        if rest.startswith(":"):
            rest = rest[1:].lstrip(_WSP)
            end = 0
            while end < len(rest) and rest[end] in string.digits:
                end += 1
            port = _port(rest[:end])
            rest = rest[end:]
        params = parse_params(rest)
        rport = params.get("rport")
        if rport and not _DIGITS.fullmatch(rport):
            raise SipParseError(f"bad rport {_show(rport)} in {_show(text)}")
        return cls(transport.upper(), host, port, params)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The ``received`` address without brackets; None when absent."""
        value = self.params.get("received")
        return value.strip("[]") if value else None

    @property
    def rport(self) -> int | Literal[True] | None:
        """RFC 3581: None when absent, True when present without a value (asks for one), else the port."""
        if "rport" not in self.params:
            return None
        value = self.params["rport"]
        return int(value) if value else True

    @property
    def host_port(self) -> str:
        return _host_port(self.host, self.port)

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.host_port}{format_params(self.params)}"


# -- CSeq -----------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class CSeq:
    """``CSeq: 4711 INVITE`` (RFC 3261 §20.16): the number fits 32 bits (§8.1.1.5, RFC 4475 §3.1.2.4)."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        match = _CSEQ.fullmatch(text)
        if match is None or not TOKEN_CHARS.issuperset(match.group(2)):
            raise SipParseError(f"bad CSeq {_show(text)}")
        digits = match.group(1).lstrip("0") or "0"
        if len(digits) > 10 or int(digits) > MAX_CSEQ:
            raise SipParseError(f"CSeq number {_show(match.group(1))} is larger than 2**32-1")
        return cls(int(digits), match.group(2))

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"
