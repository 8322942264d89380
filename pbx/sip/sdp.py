"""SDP, the Session Description Protocol (RFC 4566, RFC 8866): parse and build session descriptions.

:func:`parse` turns a body into a :class:`SessionDescription` (session-level fields and a list of
:class:`MediaDescription`) and ``serialize()`` turns one back into bytes with CRLF line ends, the lines in the
order RFC 4566 §5 gives. Attributes stay a list of ``(name, value)`` pairs in their order (value None for a
property attribute such as ``a=sendonly``); the media helpers (:attr:`MediaDescription.rtpmap`, ``fmtp``,
``ptime``, ``direction()``, ``rtcp_port``...) read them, and :func:`parse` checks the ones they read, so a
parsed description never makes a helper fail.

Tolerance (what real peers send): LF line ends as well as CRLF, blank lines at the end, white space at the end
of a line (dropped: ``s= `` reads as an empty name, written back as ``s= ``), an empty ``s=``, the
session-level lines in any order after ``v=`` (they are written back in the RFC's order), any amount of white
space between the fields of ``o=``, ``c=``, ``t=`` and ``m=``, bytes that are not UTF-8 (kept as surrogate
escapes so the round trip is exact). Payload-type formats of an RTP profile are numbers (0 to 127); other
profiles' formats stay strings.

Bounds: :data:`MAX_SIZE` bytes, :data:`MAX_LINES` lines, :data:`MAX_MEDIA` media descriptions.

Errors: :class:`SdpError` (a :class:`~pbx.sip.errors.SipParseError`, so also a ValueError: 400 Bad Request)
for a description the peer got wrong, its message naming the line; building one with a value that would
break the format (a CR or LF, a port out of range) raises :class:`~pbx.sip.errors.InvalidMessage`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pbx.sip.errors import InvalidMessage, SipParseError

__all__ = [
    "DIRECTIONS",
    "MAX_LINES",
    "MAX_MEDIA",
    "MAX_SIZE",
    "Connection",
    "MediaDescription",
    "Origin",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "Timing",
    "parse",
]

MAX_SIZE = 32768
MAX_LINES = 1024
MAX_MEDIA = 16
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

Attribute = tuple[str, str | None]

_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+")
_DIGITS = re.compile(r"[0-9]{1,32}")
_PORT = re.compile(r"([0-9]{1,5})(?:/([0-9]{1,5}))?")
_RTPMAP = re.compile(r"([0-9]{1,3}) +([^/\s]+)/([0-9]{1,7})(?:/([0-9]{1,2}))?\s*")
_FMTP = re.compile(r"(\S+) (.*)")
_NUMBER = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")
_RTCP = re.compile(r"([0-9]{1,5})(?: +(\S+) +(\S+) +(\S+))?\s*")
_BANDWIDTH = re.compile(r"([A-Za-z0-9_.-]+):([0-9]{1,12})")
_BAD_CHARS = re.compile(r"[\r\n\x00]")
_SESSION_SINGLE = "osiukzc"
_SESSION_TYPES = frozenset("vosiuepcbtrzka")
_MEDIA_TYPES = frozenset("icbka")
_NETTYPES = ("IN",)
_ADDRTYPES = ("IP4", "IP6")


class SdpError(SipParseError):
    """The peer's session description cannot be read (400 Bad Request)."""


def _show(text: str, limit: int = 60) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _check_text(what: str, value: str) -> str:
    if _BAD_CHARS.search(value):
        raise InvalidMessage(f"SDP {what} has a CR, LF or NUL: {_show(value)}")
    return value


def _check_word(what: str, value: str) -> str:
    if not value or any(c.isspace() for c in value) or _BAD_CHARS.search(value):
        raise InvalidMessage(f"SDP {what} must be one non-empty word, got {_show(value)}")
    return value


def _is_rtp(proto: str) -> bool:
    return "RTP/" in proto.upper()


# -- the structured lines -----------------------------------------------------------------------------------
@dataclass(slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>``."""

    username: str
    sess_id: int
    sess_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"

    @classmethod
    def parse(cls, value: str, line: int = 0) -> Origin:
        fields = value.split()
        if len(fields) != 6:
            raise SdpError(f"line {line}: bad o= line {_show(value)}")
        username, sess_id, sess_version, nettype, addrtype, address = fields
        if not _DIGITS.fullmatch(sess_id):
            raise SdpError(f"line {line}: bad session id {sess_id!r}")
        if not _DIGITS.fullmatch(sess_version):
            raise SdpError(f"line {line}: bad session version {sess_version!r}")
        return cls(username, int(sess_id), int(sess_version), nettype, addrtype, address)

    def __str__(self) -> str:
        if self.sess_id < 0 or self.sess_version < 0:
            raise InvalidMessage(f"SDP session id and version must not be negative: {self.sess_id} "
                                 f"{self.sess_version}")
        words = [_check_word(what, value) for what, value in (
            ("origin username", self.username), ("network type", self.nettype),
            ("address type", self.addrtype), ("origin address", self.address))]
        return f"{words[0]} {self.sess_id} {self.sess_version} {words[1]} {words[2]} {words[3]}"


@dataclass(slots=True)
class Connection:
    """``c=<nettype> <addrtype> <address>``: ``IN IP4`` or ``IN IP6``. ``address`` is kept as sent (a
    multicast one keeps its ``/ttl``)."""

    addrtype: str
    address: str
    nettype: str = "IN"

    @classmethod
    def parse(cls, value: str, line: int = 0) -> Connection:
        fields = value.split()
        if len(fields) != 3:
            raise SdpError(f"line {line}: bad c= line {_show(value)}")
        nettype, addrtype, address = fields
        if nettype not in _NETTYPES:
            raise SdpError(f"line {line}: unsupported network type {nettype!r} (IN)")
        if addrtype not in _ADDRTYPES:
            raise SdpError(f"line {line}: unsupported address type {addrtype!r} (IP4 or IP6)")
        return cls(addrtype, address, nettype)

    @property
    def ipv6(self) -> bool:
        return self.addrtype == "IP6"

    @property
    def unspecified(self) -> bool:
        """``0.0.0.0`` (or ``::``): the old way to put a stream on hold (RFC 3264 §8.4)."""
        return self.address in ("0.0.0.0", "::")

    def __str__(self) -> str:
        return (f"{_check_word('network type', self.nettype)} {_check_word('address type', self.addrtype)} "
                f"{_check_word('connection address', self.address)}")


@dataclass(slots=True)
class Timing:
    """``t=<start> <stop>`` with its ``r=`` lines (kept as text)."""

    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, value: str, line: int = 0) -> Timing:
        fields = value.split()
        if len(fields) != 2 or not all(_DIGITS.fullmatch(f) for f in fields):
            raise SdpError(f"line {line}: bad t= line {_show(value)}")
        return cls(int(fields[0]), int(fields[1]))


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]``; ``channels`` is 1 when absent."""

    encoding: str
    clock_rate: int
    channels: int = 1

    def __str__(self) -> str:
        base = f"{self.encoding}/{self.clock_rate}"
        return base if self.channels == 1 else f"{base}/{self.channels}"


def _parse_rtpmap(value: str) -> tuple[int, RtpMap] | None:
    match = _RTPMAP.fullmatch(value)
    if match is None:
        return None
    pt, encoding, clock, channels = match.groups()
    if int(pt) > 127 or int(clock) == 0 or (channels is not None and int(channels) == 0):
        return None
    return int(pt), RtpMap(encoding, int(clock), int(channels) if channels else 1)


def _parse_rtcp(value: str) -> tuple[int, str | None] | None:
    match = _RTCP.fullmatch(value)
    if match is None or int(match.group(1)) > 65535:
        return None
    return int(match.group(1)), match.group(4)


def _direction(attributes: list[Attribute]) -> str | None:
    for name, _ in attributes:
        if name in DIRECTIONS:
            return name
    return None


def _attribute_line(name: str, value: str | None) -> str:
    if not _TOKEN.fullmatch(name):
        raise InvalidMessage(f"SDP attribute name must be a token, got {_show(name)}")
    return f"a={name}" if value is None else f"a={name}:{_check_text('attribute value', value)}"


def _first(attributes: list[Attribute], name: str) -> str | None:
    for n, v in attributes:
        if n == name:
            return v if v is not None else ""
    return None


# -- media descriptions ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class MediaDescription:
    """One ``m=`` section: ``m=<media> <port>[/<count>] <proto> <fmt> ...`` and its ``i=``, ``c=``, ``b=``,
    ``k=`` and ``a=`` lines. ``formats`` are payload-type numbers for an RTP profile, strings otherwise."""

    media: str
    port: int
    proto: str
    formats: list[int | str]
    port_count: int | None = None
    information: str | None = None
    connection: Connection | None = None
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)

    # -- attributes --
    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=<name>`` (``""`` for one without a value), None if there is none."""
        return _first(self.attributes, name)

    def values(self, name: str) -> list[str]:
        return [v if v is not None else "" for n, v in self.attributes if n == name]

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.attributes)

    @property
    def payload_types(self) -> list[int]:
        return [f for f in self.formats if isinstance(f, int)]

    @property
    def rtpmap(self) -> dict[int, RtpMap]:
        """``a=rtpmap`` by payload type (the first one wins if a peer repeats one)."""
        result: dict[int, RtpMap] = {}
        for value in self.values("rtpmap"):
            parsed = _parse_rtpmap(value)
            if parsed is not None and parsed[0] not in result:
                result[parsed[0]] = parsed[1]
        return result

    @property
    def fmtp(self) -> dict[int | str, str]:
        """``a=fmtp`` parameters by format (a number for a payload type)."""
        result: dict[int | str, str] = {}
        for value in self.values("fmtp"):
            match = _FMTP.fullmatch(value)
            if match is None:
                continue
            fmt, params = match.groups()
            key: int | str = int(fmt) if fmt.isdigit() else fmt
            result.setdefault(key, params.strip())
        return result

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in whole milliseconds, None if absent."""
        value = self.attribute("ptime")
        return round(float(value)) if value is not None and _NUMBER.fullmatch(value) else None

    @property
    def maxptime(self) -> int | None:
        value = self.attribute("maxptime")
        return round(float(value)) if value is not None and _NUMBER.fullmatch(value) else None

    def direction(self, default: str = "sendrecv") -> str:
        """``sendrecv``, ``sendonly``, ``recvonly`` or ``inactive``: this section's own attribute, else
        ``default`` (pass the session-level direction, :attr:`SessionDescription.direction`)."""
        return _direction(self.attributes) or default

    @property
    def rtcp_port(self) -> int | None:
        """The port of ``a=rtcp`` (RFC 3605), None if absent (RTCP is then on the RTP port + 1)."""
        value = self.attribute("rtcp")
        parsed = _parse_rtcp(value) if value is not None else None
        return parsed[0] if parsed is not None else None

    @property
    def rtcp_address(self) -> str | None:
        value = self.attribute("rtcp")
        parsed = _parse_rtcp(value) if value is not None else None
        return parsed[1] if parsed is not None else None

    @property
    def rtcp_mux(self) -> bool:
        return self.has("rtcp-mux")

    # -- wire form --
    def lines(self) -> list[str]:
        if not 0 <= self.port <= 65535:
            raise InvalidMessage(f"SDP port must be 0 to 65535, got {self.port}")
        if self.port_count is not None and not 1 <= self.port_count <= 65535:
            raise InvalidMessage(f"SDP port count must be 1 to 65535, got {self.port_count}")
        if not self.formats:
            raise InvalidMessage("an SDP media description needs at least one format")
        formats = []
        for fmt in self.formats:
            if isinstance(fmt, int) and not 0 <= fmt <= 127:
                raise InvalidMessage(f"SDP payload type must be 0 to 127, got {fmt}")
            formats.append(_check_word("format", str(fmt)))
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        out = [f"m={_check_word('media type', self.media)} {port} {_check_word('protocol', self.proto)} "
               + " ".join(formats)]
        if self.information is not None:
            out.append("i=" + _check_text("information", self.information))
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"b={_check_word('bandwidth type', t)}:{v}" for t, v in self.bandwidths)
        if self.key is not None:
            out.append("k=" + _check_text("key", self.key))
        out.extend(_attribute_line(n, v) for n, v in self.attributes)
        return out


# -- session descriptions -------------------------------------------------------------------------------------
@dataclass(slots=True)
class SessionDescription:
    """A whole session description. ``session_name`` "" is written ``s= `` (RFC 4566 §5.3)."""

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    timing: list[Timing] = field(default_factory=lambda: [Timing()])
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    time_zones: str | None = None
    key: str | None = None

    @classmethod
    def parse(cls, data: str | bytes, *, max_size: int = MAX_SIZE, max_media: int = MAX_MEDIA,
              max_lines: int = MAX_LINES) -> SessionDescription:
        return _Parser(max_media, max_lines).parse(data, max_size)

    def attribute(self, name: str) -> str | None:
        """The value of the first session-level ``a=<name>`` (``""`` for one without a value)."""
        return _first(self.attributes, name)

    @property
    def direction(self) -> str | None:
        """The session-level direction attribute, None if there is none."""
        return _direction(self.attributes)

    def connection_of(self, media: MediaDescription) -> Connection | None:
        """Where ``media`` goes: its own ``c=``, else the session's."""
        return media.connection if media.connection is not None else self.connection

    def direction_of(self, media: MediaDescription) -> str:
        return media.direction(self.direction or "sendrecv")

    def lines(self) -> list[str]:
        if not self.timing:
            raise InvalidMessage("an SDP session description needs at least one t= line")
        out = [f"v={self.version}", f"o={self.origin}",
               "s=" + (_check_text("session name", self.session_name) or " ")]
        for letter, value in (("i", self.information), ("u", self.uri)):
            if value is not None:
                out.append(f"{letter}={_check_text(letter + '= line', value)}")
        out.extend("e=" + _check_text("e= line", v) for v in self.emails)
        out.extend("p=" + _check_text("p= line", v) for v in self.phones)
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"b={_check_word('bandwidth type', t)}:{v}" for t, v in self.bandwidths)
        for timing in self.timing:
            out.append(f"t={timing.start} {timing.stop}")
            out.extend("r=" + _check_text("r= line", r) for r in timing.repeats)
        if self.time_zones is not None:
            out.append("z=" + _check_text("z= line", self.time_zones))
        if self.key is not None:
            out.append("k=" + _check_text("key", self.key))
        out.extend(_attribute_line(n, v) for n, v in self.attributes)
        for media in self.media:
            out.extend(media.lines())
        return out

    def serialize(self) -> bytes:
        return ("\r\n".join(self.lines()) + "\r\n").encode("utf-8", "surrogateescape")

    def __bytes__(self) -> bytes:
        return self.serialize()


def parse(data: str | bytes, *, max_size: int = MAX_SIZE, max_media: int = MAX_MEDIA,
          max_lines: int = MAX_LINES) -> SessionDescription:
    """Parse a session description (see the module docstring for what is tolerated); raises :class:`SdpError`."""
    return SessionDescription.parse(data, max_size=max_size, max_media=max_media, max_lines=max_lines)


# -- the parser -------------------------------------------------------------------------------------------------
class _Parser:
    __slots__ = ("max_lines", "max_media")

    def __init__(self, max_media: int, max_lines: int) -> None:
        self.max_media = max_media
        self.max_lines = max_lines

    def parse(self, data: str | bytes, max_size: int) -> SessionDescription:
        raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
        if len(raw) > max_size:
            raise SdpError(f"SDP is {len(raw)} bytes, over the limit of {max_size}")
        text = raw.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
        lines = text.split("\n")
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines:
            raise SdpError("SDP is empty")
        if len(lines) > self.max_lines:
            raise SdpError(f"SDP has {len(lines)} lines, over the limit of {self.max_lines}")
        origin: Origin | None = None
        name: str | None = None
        connection: Connection | None = None
        texts: dict[str, str] = {}          # i= u= z= k=
        timing: list[Timing] = []
        attributes: list[Attribute] = []
        media: list[MediaDescription] = []
        emails: list[str] = []
        phones: list[str] = []
        bandwidths: list[tuple[str, int]] = []
        seen: set[str] = set()
        media_seen: set[str] = set()
        current: MediaDescription | None = None
        for number, line in enumerate(lines, 1):
            if line.endswith("\r"):
                line = line[:-1]
            line = line.rstrip(" \t")
            if "\r" in line or "\x00" in line:
                raise SdpError(f"line {number}: stray CR or NUL in {_show(line)}")
            if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
                raise SdpError(f"line {number}: expected <type>=<value>, got {_show(line)}")
            kind, value = line[0], line[2:]
            if number == 1:
                if kind != "v":
                    raise SdpError("SDP must start with v=0")
                if value != "0":
                    raise SdpError(f"line 1: unsupported SDP version {value!r}")
                seen.add("v")
                continue
            if kind == "m":
                if len(media) == self.max_media:
                    raise SdpError(f"SDP has more than {self.max_media} media descriptions")
                current = self._media(value, number)
                media.append(current)
                media_seen = set()
                continue
            if current is not None:
                if kind not in _MEDIA_TYPES:
                    if kind in _SESSION_TYPES:
                        raise SdpError(f"line {number}: {kind}= is not allowed in a media description")
                    raise SdpError(f"line {number}: unknown line type {kind + '='!r}")
                if kind in "ick":
                    if kind in media_seen:
                        raise SdpError(f"line {number}: duplicate {kind}= line in media description {len(media)}")
                    media_seen.add(kind)
                if kind == "i":
                    current.information = value
                elif kind == "c":
                    current.connection = Connection.parse(value, number)
                elif kind == "b":
                    current.bandwidths.append(self._bandwidth(value, number))
                elif kind == "k":
                    current.key = value
                else:
                    self._attribute(current.attributes, value, number, current)
                continue
            if kind not in _SESSION_TYPES:
                raise SdpError(f"line {number}: unknown line type {kind + '='!r}")
            if kind in _SESSION_SINGLE or kind == "v":
                if kind in seen:
                    raise SdpError(f"line {number}: duplicate {kind}= line")
                seen.add(kind)
            if kind == "o":
                origin = Origin.parse(value, number)
            elif kind == "s":
                name = value
            elif kind == "c":
                connection = Connection.parse(value, number)
            elif kind in "iuzk":
                texts[kind] = value
            elif kind == "e":
                emails.append(value)
            elif kind == "p":
                phones.append(value)
            elif kind == "b":
                bandwidths.append(self._bandwidth(value, number))
            elif kind == "t":
                timing.append(Timing.parse(value, number))
            elif kind == "r":
                if not timing:
                    raise SdpError(f"line {number}: r= without a t= line before it")
                timing[-1].repeats.append(value)
            else:
                self._attribute(attributes, value, number, None)
        if origin is None:
            raise SdpError("SDP has no o= line")
        if name is None:
            raise SdpError("SDP has no s= line")
        if not timing:
            raise SdpError("SDP has no t= line")
        for index, m in enumerate(media, 1):
            if m.port != 0 and m.connection is None and connection is None:
                raise SdpError(f"media description {index} has no c= line and there is none at session level")
        return SessionDescription(origin, name, connection, timing, attributes, media, 0, texts.get("i"),
                                  texts.get("u"), emails, phones, bandwidths, texts.get("z"), texts.get("k"))

    @staticmethod
    def _media(value: str, number: int) -> MediaDescription:
        fields = value.split()
        if len(fields) < 4:
            raise SdpError(f"line {number}: bad m= line {_show(value)}")
        kind, port_text, proto, *raw_formats = fields
        match = _PORT.fullmatch(port_text)
        if match is None or int(match.group(1)) > 65535:
            raise SdpError(f"line {number}: bad port {port_text!r}")
        count = match.group(2)
        if count is not None and not 1 <= int(count) <= 65535:
            raise SdpError(f"line {number}: bad port {port_text!r}")
        formats: list[int | str] = []
        if _is_rtp(proto):
            for fmt in raw_formats:
                if not fmt.isdigit() or len(fmt) > 3 or int(fmt) > 127:
                    raise SdpError(f"line {number}: bad payload type {fmt!r}")
                formats.append(int(fmt))
        else:
            formats.extend(raw_formats)
        return MediaDescription(kind, int(match.group(1)), proto, formats, int(count) if count else None)

    @staticmethod
    def _bandwidth(value: str, number: int) -> tuple[str, int]:
        match = _BANDWIDTH.fullmatch(value.strip())
        if match is None:
            raise SdpError(f"line {number}: bad b= line {_show(value)}")
        return match.group(1), int(match.group(2))

    @staticmethod
    def _attribute(attributes: list[Attribute], value: str, number: int, media: MediaDescription | None) -> None:
        name, colon, rest = value.partition(":")
        if not _TOKEN.fullmatch(name):
            raise SdpError(f"line {number}: bad attribute name {_show(name)}")
        attr_value = rest if colon else None
        if name in DIRECTIONS:
            if _direction(attributes) is not None:
                raise SdpError(f"line {number}: a second direction attribute a={name}")
        elif name == "rtpmap":
            if attr_value is None or _parse_rtpmap(attr_value) is None:
                raise SdpError(f"line {number}: bad a=rtpmap value {_show(attr_value or '')}")
        elif name == "fmtp":
            if attr_value is None or _FMTP.fullmatch(attr_value) is None:
                raise SdpError(f"line {number}: bad a=fmtp value {_show(attr_value or '')}")
        elif name in ("ptime", "maxptime"):
            stripped = (attr_value or "").strip()       # str.strip takes more than float() ignores (\x1c-\x1f)
            if attr_value is None or not _NUMBER.fullmatch(stripped) or float(stripped) <= 0:
                raise SdpError(f"line {number}: bad a={name} value {_show(attr_value or '')}")
            attr_value = stripped
        elif name == "rtcp" and media is not None and (attr_value is None or _parse_rtcp(attr_value) is None):
            raise SdpError(f"line {number}: bad a=rtcp value {_show(attr_value or '')}")
        attributes.append((name, attr_value))
