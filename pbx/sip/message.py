"""SIP messages (RFC 3261 §7, §8.2, §18.3): parse a datagram, check a request the way a UAS must, build and
serialise requests and responses. Sans-I/O: bytes in, typed messages out.

Parsing (:func:`parse_message`, and :class:`~pbx.sip.stream.StreamParser` for TCP) takes only the framing and
the start line on trust; header values stay text in :class:`Headers` and are parsed when asked for (the
``cseq``, ``vias``, ``from_`` ... properties) or all at once by :func:`check_request` / :func:`check_response`.
So a message with a broken header the receiver does not need still reaches it (RFC 4475 §3.1.1.1's
UnknownHeaderWithUnusualValue), and one it does need fails with the status the RFC asks for.

Framing rules:

- Lines end in CRLF; a bare LF is tolerated as a line end (robustness; RFC 5118's archive uses it), a bare CR
  inside a header line is an error. Leading CRLFs before the start line are skipped (§7.5, RFC 5626
  keep-alives). Header lines folded with leading white space are joined with one space (§7.3.1).
- Request-Line: exactly ``Method SP Request-URI SP SIP-Version`` (RFC 4475 §3.1.2.7-10 are refused with 400);
  a version other than SIP/2.0 is :class:`~pbx.sip.errors.UnsupportedVersion` (505). Status-Line: a
  three-digit code 100-699; the reason phrase may be empty, with or without its SP (§3.1.1.13).
- Body: ``Content-Length`` octets after the empty line. On a datagram a missing Content-Length means the rest
  of the datagram, octets past it are discarded (§18.3, RFC 4475 §3.1.1.8), more than are present, a value
  that is not a number, or two values that disagree are 400 (§3.1.2.2, §3.1.2.3, §3.3.9). A datagram whose
  header section lacks the closing empty line is read as headers only.
- Limits (:class:`Limits`): a message larger than ``max_size`` or with more than ``max_headers`` header
  fields is :class:`~pbx.sip.errors.MessageTooLarge` (513); a Request-URI longer than ``max_uri`` is
  :class:`~pbx.sip.errors.RequestUriTooLong` (414).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from pbx.sip.errors import (
    BadExtension,
    InvalidMessage,
    MessageTooLarge,
    MethodNotAllowed,
    MethodNotImplemented,
    NotAcceptable,
    RequestUriTooLong,
    SipParseError,
    UnsupportedMediaType,
    UnsupportedUriScheme,
    UnsupportedVersion,
)
from pbx.sip.headers import SCHEMES, CSeq, NameAddr, SipUri, Via, _show, split_list

__all__ = [
    "DEFAULT_LIMITS",
    "KNOWN_METHODS",
    "Headers",
    "Limits",
    "Message",
    "Request",
    "Response",
    "canonical_name",
    "check_request",
    "check_response",
    "content_length",
    "head_end",
    "parse_head",
    "parse_message",
    "response_for_error",
    "response_to",
    "skip_blank_lines",
]

# RFC 3261 §7.3.3 and the extensions that define compact forms
COMPACT_FORMS = {
    "a": "Accept-Contact",          # RFC 3841
    "b": "Referred-By",             # RFC 3892
    "c": "Content-Type",
    "d": "Request-Disposition",     # RFC 3841
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",          # RFC 3841
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",           # RFC 4474
    "o": "Event",                   # RFC 6665
    "r": "Refer-To",                # RFC 3515
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",            # RFC 6665
    "v": "Via",
    "x": "Session-Expires",         # RFC 4028
    "y": "Identity",                # RFC 8224
}
KNOWN_HEADERS = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact", "Content-Disposition",
    "Content-Encoding", "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Diversion",
    "Error-Info", "Event", "Expires", "From", "History-Info", "Identity", "Identity-Info", "In-Reply-To",
    "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE", "Organization", "P-Asserted-Identity",
    "P-Preferred-Identity", "Path", "Priority", "Privacy", "Proxy-Authenticate", "Proxy-Authorization",
    "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Replaces",
    "Reply-To", "Request-Disposition", "Require", "Retry-After", "Route", "RSeq", "Security-Client",
    "Security-Server", "Security-Verify", "Server", "Service-Route", "Session-Expires", "SIP-ETag",
    "SIP-If-Match", "Subject", "Subscription-State", "Supported", "Target-Dialog", "Timestamp", "To",
    "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
)
_CANONICAL = {name.lower(): name for name in KNOWN_HEADERS} | COMPACT_FORMS
# header fields whose values are comma-separated lists (RFC 3261 §7.3.1); every other field (the
# authentication ones, Date, unknown extension headers, ...) is one value however many commas it has
LIST_HEADERS = frozenset(name.lower() for name in (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
    "Call-Info", "Contact", "Content-Encoding", "Content-Language", "Diversion", "Error-Info", "History-Info",
    "In-Reply-To", "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Proxy-Require", "Reason",
    "Record-Route", "Reject-Contact", "Request-Disposition", "Require", "Route", "Security-Client",
    "Security-Server", "Security-Verify", "Service-Route", "Supported", "Unsupported", "Via", "Warning",
))
# header fields a request or response may carry once (RFC 3261 §7.3.1, §20; RFC 4475 §3.3.8)
SINGLE_HEADERS = (
    "Call-ID", "Content-Disposition", "Content-Length", "Content-Type", "CSeq", "Date", "Event", "Expires",
    "From", "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE", "Organization", "Priority", "RAck",
    "Refer-To", "Referred-By", "Replaces", "Reply-To", "Retry-After", "RSeq", "Server", "Session-Expires",
    "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State", "Target-Dialog", "Timestamp", "To",
    "User-Agent",
)
KNOWN_METHODS = frozenset((
    "ACK", "BYE", "CANCEL", "INFO", "INVITE", "MESSAGE", "NOTIFY", "OPTIONS", "PRACK", "PUBLISH", "REFER",
    "REGISTER", "SUBSCRIBE", "UPDATE",
))
_NAME = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_DIGITS = re.compile(r"[0-9]+")
_VERSION = re.compile(r"SIP/([0-9]{1,5})\.([0-9]{1,5})", re.IGNORECASE)
_URI_TEXT = re.compile(r"[!-~]+")
_URI_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_STATUS = re.compile(r"[1-6][0-9][0-9]")
T = TypeVar("T")


def canonical_name(name: str) -> str:
    """The canonical spelling of a header field name: compact forms expanded (``v`` is ``Via``), known
    names in their RFC spelling, unknown names as given."""
    return _CANONICAL.get(name.lower(), name)


class Headers:
    """An ordered multi-map of header fields, one entry per header field line.

    Names are case-insensitive and compact forms are the same field as their long forms; :meth:`items`
    gives canonical names. :meth:`get_all` splits comma-separated list fields (Via, Contact, Route, Allow,
    ...; see ``LIST_HEADERS``) at the commas outside quotes and ``<>``, and never splits any other field
    (WWW-Authenticate, Authorization, Date, unknown extension headers). Values are stored as given (folded
    lines already joined).
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items:
            self.add(name, value)

    def get(self, name: str) -> str | None:
        """The first value of ``name`` (the first element, for a list field), or None."""
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        key = canonical_name(name).lower()
        lines = [value for field_name, value in self._items if field_name.lower() == key]
        if key in LIST_HEADERS:
            return [item for line in lines for item in split_list(line)]
        return lines

    def add(self, name: str, value: str) -> None:
        """Append a header field line; raises InvalidMessage for a name that is not a token or a value
        with CR or LF (which would let it forge header fields)."""
        if not _NAME.fullmatch(name):
            raise InvalidMessage(f"bad header field name {_show(name)}")
        if "\r" in value or "\n" in value:
            raise InvalidMessage(f"CR or LF in the value of {name}: {_show(value)}")
        self._items.append((canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` line with one (where the first one was, else at the end)."""
        key = canonical_name(name).lower()
        index = next((i for i, (field_name, _) in enumerate(self._items) if field_name.lower() == key), None)
        self.remove(name)
        self.add(name, value)
        if index is not None:
            self._items.insert(index, self._items.pop())

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._items = [item for item in self._items if item[0].lower() != key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_name(name).lower()
        return any(field_name.lower() == key for field_name, _ in self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def copy(self) -> Headers:
        copy = Headers()
        copy._items = list(self._items)
        return copy

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class _Parsed:
    """The header properties Request and Response share; each parses on access and raises SipParseError
    (naming the field) for a missing or malformed one."""

    __slots__ = ()
    headers: Headers

    def _value(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header field")
        return value

    @property
    def call_id(self) -> str:
        return self._value("Call-ID")

    @property
    def cseq(self) -> CSeq:
        return _parse_field("CSeq", self._value("CSeq"), CSeq.parse)

    @property
    def vias(self) -> list[Via]:
        """Every Via value, the top one first."""
        return [_parse_field("Via", value, Via.parse) for value in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        return _parse_field("Via", self._value("Via"), Via.parse)

    @property
    def branch(self) -> str | None:
        """The top Via's branch (None when it has none: an RFC 2543 peer)."""
        return self.top_via.branch

    @property
    def from_(self) -> NameAddr:
        return _parse_field("From", self._value("From"), NameAddr.parse)

    @property
    def to(self) -> NameAddr:
        return _parse_field("To", self._value("To"), NameAddr.parse)


def _parse_field(name: str, value: str, parse: Callable[[str], T]) -> T:
    """``parse(value)``, an error naming the field (``name``) it came from."""
    try:
        return parse(value)
    except SipParseError as exc:
        label = name if name == "Request-URI" else f"{name} header field"
        raise SipParseError(f"bad {label}: {exc}") from exc


def _serialize(start: str, headers: Headers, body: bytes) -> bytes:
    lines = [start]
    length_written = False
    for name, value in headers:
        if name == "Content-Length":
            if length_written:
                continue
            value = str(len(body))
            length_written = True
        lines.append(f"{name}: {value}\r\n")
    if not length_written:
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n")
    try:
        return "".join(lines).encode("utf-8", "surrogateescape") + body
    except UnicodeEncodeError as exc:
        raise InvalidMessage(f"cannot encode the message: {exc}") from exc


@dataclass(slots=True)
class Request(_Parsed):
    """A SIP request; ``uri`` is the Request-URI as text (:func:`check_request` parses it)."""

    method: str
    uri: str
    headers: Headers
    body: bytes = b""

    def serialize(self) -> bytes:
        """The wire form, SIP/2.0, with Content-Length set from the body."""
        if not _NAME.fullmatch(self.method):
            raise InvalidMessage(f"bad method {_show(self.method)}")
        if not _URI_TEXT.fullmatch(self.uri):
            raise InvalidMessage(f"bad Request-URI {_show(self.uri)}")
        return _serialize(f"{self.method} {self.uri} SIP/2.0\r\n", self.headers, self.body)


@dataclass(slots=True)
class Response(_Parsed):
    """A SIP response."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def serialize(self) -> bytes:
        """The wire form, SIP/2.0, with Content-Length set from the body."""
        if not 100 <= self.status <= 699:
            raise InvalidMessage(f"bad status code {self.status}")
        if "\r" in self.reason or "\n" in self.reason:
            raise InvalidMessage(f"CR or LF in the reason phrase {_show(self.reason)}")
        return _serialize(f"SIP/2.0 {self.status} {self.reason}\r\n", self.headers, self.body)


Message: TypeAlias = Request | Response


@dataclass(frozen=True, slots=True)
class Limits:
    """What a peer may make us buffer and parse; the defaults fit any message that fits a UDP datagram."""

    max_size: int = 65535          # octets of one message, header section and body (513 beyond)
    max_headers: int = 128         # header field lines (513 beyond)
    max_uri: int = 4096            # octets of the Request-URI (414 beyond)


DEFAULT_LIMITS = Limits()


# -- parsing --------------------------------------------------------------------------------------------------
def head_end(data: bytes | bytearray, start: int = 0) -> tuple[int | None, int]:
    """Where the body starts: just past the empty line that ends the header section found at or after
    ``start`` (CRLF or bare LF line ends). Returns ``(None, resume)`` when there is none yet, ``resume``
    being where a later search (after more data arrived) must start."""
    n = len(data)
    i = data.find(b"\n", start)
    while i != -1:
        j = i + 1
        if j >= n or (data[j] == 0x0D and j + 1 >= n):
            return None, i
        if data[j] == 0x0A:
            return j + 1, j + 1
        if data[j] == 0x0D and data[j + 1] == 0x0A:
            return j + 2, j + 2
        i = data.find(b"\n", j)
    return None, n


def skip_blank_lines(data: bytes | bytearray) -> int:
    """How many CR and LF octets open ``data`` (keep-alives and stray line ends before a start line)."""
    i = 0
    while i < len(data) and data[i] in (0x0D, 0x0A):
        i += 1
    return i


def parse_head(head: bytes, limits: Limits) -> Message:
    """The start line and header fields of ``head`` (everything before the body), as a message with an
    empty body."""
    lines = head.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if lines and lines[-1] in (b"", b"\r"):
        lines.pop()
    if not lines:
        raise SipParseError("empty message")
    text: list[str] = []
    for raw in lines:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if b"\r" in raw:
            raise SipParseError(f"bare CR in {_show(raw.decode('utf-8', 'surrogateescape'))}")
        text.append(raw.decode("utf-8", "surrogateescape"))
    message = _start_line(text[0], limits)
    fields: list[tuple[str, list[str]]] = []        # name, the value's pieces (folded lines)
    for line in text[1:]:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipParseError(f"continuation line before the first header field: {_show(line)}")
            fields[-1][1].append(line.strip(" \t"))
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon:
            raise SipParseError(f"header line without a colon: {_show(line)}")
        if not _NAME.fullmatch(name):
            raise SipParseError(f"bad header field name {_show(name)}")
        if len(fields) == limits.max_headers:
            raise MessageTooLarge(f"more than {limits.max_headers} header fields")
        fields.append((name, [value.strip(" \t")]))
    headers = message.headers
    for name, pieces in fields:
        headers.add(name, " ".join(piece for piece in pieces if piece))
    return message


def _start_line(line: str, limits: Limits) -> Message:
    if line[:4].upper() == "SIP/":
        version, _, rest = line.partition(" ")
        _check_version(version)
        status, _, reason = rest.partition(" ")
        if not _STATUS.fullmatch(status):
            raise SipParseError(f"bad status code {_show(status)}")
        return Response(int(status), reason, Headers())
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError(f"malformed Request-Line {_show(line)}")
    method, uri, version = parts
    if not _NAME.fullmatch(method):
        raise SipParseError(f"bad method {_show(method)}")
    if len(uri) > limits.max_uri:
        raise RequestUriTooLong(f"Request-URI of {len(uri)} characters (the limit is {limits.max_uri})")
    if not _URI_TEXT.fullmatch(uri) or not _URI_SCHEME.match(uri):
        raise SipParseError(f"bad Request-URI {_show(uri)}")
    _check_version(version)
    return Request(method, uri, Headers())


def _check_version(version: str) -> None:
    match = _VERSION.fullmatch(version)
    if match is None:
        raise SipParseError(f"bad SIP version {_show(version)}")
    if (int(match.group(1)), int(match.group(2))) != (2, 0):
        raise UnsupportedVersion(f"SIP version {version} is not supported")


def content_length(headers: Headers) -> int | None:
    """The Content-Length, None when absent; 400 for a value that is not a number or values that differ.
    A value too large to matter reads as 10**15 (larger than any limit)."""
    values = headers.get_all("Content-Length")
    if not values:
        return None
    if len(set(values)) > 1:
        raise SipParseError(f"conflicting Content-Length values {', '.join(values)}")
    value = values[0]
    if not _DIGITS.fullmatch(value):
        raise SipParseError(f"bad Content-Length {_show(value)}")
    digits = value.lstrip("0") or "0"
    return int(digits) if len(digits) <= 15 else 10**15


def parse_message(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """One SIP message from one datagram (RFC 3261 §18.3). Raises SipParseError."""
    if len(data) > limits.max_size:
        raise MessageTooLarge(f"message of {len(data)} octets (the limit is {limits.max_size})")
    start = skip_blank_lines(data)
    if start == len(data):
        raise SipParseError("empty message")
    end, _ = head_end(data, start)
    if end is None:
        end = len(data)
    message = parse_head(data[start:end], limits)
    present = len(data) - end
    length = content_length(message.headers)
    if length is None:
        length = present
    elif length > present:
        raise SipParseError(f"Content-Length {length} is larger than the {present} octets of body present")
    message.body = data[end:end + length]
    return message


# -- checks ---------------------------------------------------------------------------------------------------
def _check_fields(message: Message, mandatory: tuple[str, ...]) -> None:
    headers = message.headers
    missing = [name for name in mandatory if name not in headers]
    if missing:
        raise SipParseError(f"missing header fields: {', '.join(missing)}")
    repeated = sorted((name for name in SINGLE_HEADERS if len(headers.get_all(name)) > 1), key=str.lower)
    if repeated:
        raise SipParseError(f"header fields given more than once: {', '.join(repeated)}")
    for name in ("To", "From"):
        _parse_field(name, message._value(name), NameAddr.parse)
    call_id = message.call_id
    if any(char in call_id for char in " \t"):
        raise SipParseError(f"bad Call-ID header field {_show(call_id)}")
    _parse_field("CSeq", message._value("CSeq"), CSeq.parse)
    max_forwards = headers.get("Max-Forwards")
    if max_forwards is not None and (not _DIGITS.fullmatch(max_forwards)
                                     or len(max_forwards.lstrip("0")) > 3 or int(max_forwards) > 255):
        raise SipParseError(f"bad Max-Forwards header field {_show(max_forwards)}")
    vias = message.vias
    if vias and vias[0].branch == "z9hG4bK":
        raise SipParseError("the top Via's branch is the magic cookie z9hG4bK alone")
    for name in ("Contact", "Route", "Record-Route"):
        values = headers.get_all(name)
        for value in values:
            if name == "Contact" and value == "*" and len(values) == 1:
                continue
            _parse_field(name, value, NameAddr.parse)
    length = content_length(headers)
    if length is not None and length != len(message.body):
        raise SipParseError(f"Content-Length {length} does not match the {len(message.body)} octets of body")
    if message.body and "Content-Type" not in headers:
        raise SipParseError("a body without a Content-Type header field")


def check_request(request: Request, *, methods: Collection[str] | None = None, supported: Collection[str] = (),
                  accept: Collection[str] | None = None, schemes: Collection[str] = SCHEMES) -> None:
    """The checks a UAS makes before it acts on a request (RFC 3261 §8.2, RFC 4475); raises the
    SipParseError whose status is the response the RFC asks for.

    In order: the mandatory fields (Via, From, To, Call-ID, CSeq; Max-Forwards may be missing, as from an
    RFC 2543 peer, RFC 4475 §3.4.1) are there, the single-valued fields appear once, and To, From, Call-ID,
    CSeq, Max-Forwards (0-255), every Via, Contact, Route and Record-Route value, Content-Length and the
    Request-URI of a known scheme parse (400; a top Via branch that is the bare ``z9hG4bK`` cookie too,
    RFC 4475 §3.2.1); the method is one of ``methods`` when given (405 for one SIP defines, 501 for one it
    does not, §8.2.1); the CSeq method is the request's (400); the Request-URI scheme is one of ``schemes``
    (416, §8.2.2.1); every Require option tag is in ``supported`` (420 with Unsupported, §8.2.2.3; not for
    ACK and CANCEL); and when ``accept`` is given, the body's type is one of those (415 with Accept,
    §8.2.3) and an INVITE's Accept admits one of them (406, RFC 4475 §3.3.15).

    Not checked here: Proxy-Require (a proxy's), Date (RFC 4475 §3.1.2.12: only if it mattered), dialog
    state, loops, authentication. A version other than SIP/2.0 already failed in :func:`parse_message`
    (505).
    """
    _check_fields(request, ("Call-ID", "CSeq", "From", "To", "Via"))
    match = _URI_SCHEME.match(request.uri)
    scheme_text = match.group(1) if match else ""
    scheme = scheme_text.lower()
    if scheme in SCHEMES:
        uri = _parse_field("Request-URI", request.uri, SipUri.parse)
        if uri.headers:
            raise SipParseError(f"headers in the Request-URI {_show(request.uri)}")
    method = request.method
    if methods is not None and method not in methods:
        if method in KNOWN_METHODS:
            raise MethodNotAllowed(f"method {method} is not allowed here", methods)
        raise MethodNotImplemented(f"method {_show(method)} is not implemented", methods)
    cseq = request.cseq
    if cseq.method != method:
        raise SipParseError(f"CSeq method {cseq.method} does not match the request method {method}")
    if scheme not in schemes:
        raise UnsupportedUriScheme(f"unsupported Request-URI scheme {_show(scheme_text or request.uri)}")
    if method not in ("ACK", "CANCEL"):
        unsupported = [tag for tag in request.headers.get_all("Require") if tag not in supported]
        if unsupported:
            raise BadExtension(f"unsupported option tags: {', '.join(unsupported)}", unsupported)
    if accept is not None:
        _check_media(request, accept)


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip(" \t").lower()


def _check_media(request: Request, accept: Collection[str]) -> None:
    ours = [kind.lower() for kind in accept]
    if request.body:
        kind = _media_type(request.headers.get("Content-Type") or "")
        if kind not in ours:
            raise UnsupportedMediaType(f"unsupported body type {_show(kind)}", accept)
    if request.method == "INVITE" and "Accept" in request.headers:
        ranges = [_media_type(value) for value in request.headers.get_all("Accept")]
        if not any(_media_matches(kind, ranges) for kind in ours):
            raise NotAcceptable(f"none of {', '.join(accept)} is acceptable to the caller (Accept: "
                                f"{', '.join(ranges) or 'nothing'})")


def _media_matches(kind: str, ranges: list[str]) -> bool:
    major = kind.split("/", 1)[0]
    return any(item in (kind, "*/*", f"{major}/*") for item in ranges)


def check_response(response: Response) -> None:
    """The fields a UAC needs from a response (Via, From, To, Call-ID, CSeq, each once and well formed, as
    :func:`check_request` checks them); a response that fails is dropped (RFC 4475 §3.1.2.5)."""
    _check_fields(response, ("Call-ID", "CSeq", "From", "To", "Via"))


# -- building -------------------------------------------------------------------------------------------------
def response_to(request: Request, status: int, reason: str, to_tag: str | None = None) -> Response:
    """A response to ``request`` (RFC 3261 §8.2.6.2): its Via values in order, From, To, Call-ID and CSeq
    copied, ``to_tag`` added to a To that has no tag yet, and for a 100 the Timestamp (§8.2.6.1). Fields the
    request lacks are left out, so this also answers a request that failed :func:`check_request`."""
    headers = Headers()
    for via in request.headers.get_all("Via"):
        headers.add("Via", via)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is None:
            continue
        if name == "To" and to_tag is not None:
            address = _parse_field("To", value, NameAddr.parse)
            if address.tag is None:
                value = str(address.with_tag(to_tag))
        headers.add(name, value)
    timestamp = request.headers.get("Timestamp")
    if status == 100 and timestamp is not None:
        headers.add("Timestamp", timestamp)
    return Response(status, reason, headers)


def response_for_error(request: Request, error: SipParseError, to_tag: str | None = None) -> Response:
    """The response that refuses ``request`` for ``error``: its status and reason, and the header fields
    the error carries (Allow, Accept, Unsupported)."""
    response = response_to(request, error.status, error.reason, to_tag)
    for name, value in error.headers:
        response.headers.add(name, value)
    return response

