"""STUN messages (RFC 5389 / RFC 8489), as ICE uses them: parse, build, MESSAGE-INTEGRITY and FINGERPRINT.

Only what connectivity checks need: Binding requests and responses with the ICE attributes (RFC 8445
§16.1: PRIORITY, USE-CANDIDATE, ICE-CONTROLLED, ICE-CONTROLLING), USERNAME, XOR-MAPPED-ADDRESS,
ERROR-CODE, SOFTWARE. Short-term credentials only: the MESSAGE-INTEGRITY key is the password itself
(RFC 5389 §15.4). :func:`parse` never raises anything but :class:`StunError` for what a peer sent.
Checked against the test vectors of RFC 5769 (tests/test_webrtc_stun.py).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass, field

MAGIC_COOKIE = 0x2112A442
HEADER = struct.Struct("!HHI12s")
FINGERPRINT_XOR = 0x5354554E
MAX_MESSAGE = 1500          # a check never needs more; anything longer is not ours

# methods and classes (RFC 5389 §6: the class bits are interleaved with the method's)
BINDING = 0x001
REQUEST, INDICATION, SUCCESS, ERROR = 0x000, 0x010, 0x100, 0x110

# attributes
MAPPED_ADDRESS = 0x0001
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
UNKNOWN_ATTRIBUTES = 0x000A
XOR_MAPPED_ADDRESS = 0x0020
PRIORITY = 0x0024
USE_CANDIDATE = 0x0025
SOFTWARE = 0x8022
FINGERPRINT = 0x8028
ICE_CONTROLLED = 0x8029
ICE_CONTROLLING = 0x802A


class StunError(ValueError):
    """Bytes that are not a well-formed STUN message."""


@dataclass(slots=True)
class StunMessage:
    method: int
    klass: int
    transaction_id: bytes
    attributes: list[tuple[int, bytes]] = field(default_factory=list)

    def get(self, kind: int) -> bytes | None:
        """The first attribute of ``kind``, or None."""
        return next((value for k, value in self.attributes if k == kind), None)

    def has(self, kind: int) -> bool:
        return any(k == kind for k, _ in self.attributes)


def is_stun(data: bytes) -> bool:
    """Whether a datagram on a media port is STUN (RFC 7983: first byte 0-3, and the magic cookie)."""
    return len(data) >= 20 and data[0] < 4 and int.from_bytes(data[4:8], "big") == MAGIC_COOKIE


def parse(data: bytes) -> StunMessage:
    """A STUN message; :class:`StunError` when it is not one (its attributes are not checked here)."""
    if len(data) < 20 or len(data) > MAX_MESSAGE:
        raise StunError(f"{len(data)} bytes cannot be a STUN message")
    kind, length, cookie, transaction_id = HEADER.unpack_from(data)
    if kind & 0xC000 or cookie != MAGIC_COOKIE:
        raise StunError("no STUN header (top bits or magic cookie)")
    if length % 4 or 20 + length != len(data):
        raise StunError(f"the header says {length} bytes of attributes, {len(data) - 20} came")
    message = StunMessage(_method(kind), kind & 0x0110, transaction_id)
    pos = 20
    while pos < len(data):
        if pos + 4 > len(data):
            raise StunError("a truncated attribute header")
        attr, size = struct.unpack_from("!HH", data, pos)
        end = pos + 4 + size
        if end > len(data):
            raise StunError(f"attribute 0x{attr:04x} runs past the message")
        message.attributes.append((attr, data[pos + 4:end]))
        pos = end + (-size % 4)
    return message


def serialize(message: StunMessage, *, integrity_key: bytes | None = None, fingerprint: bool = True) -> bytes:
    """The message's bytes, with MESSAGE-INTEGRITY (HMAC-SHA1 under ``integrity_key``) and FINGERPRINT
    appended last, in that order (RFC 5389 §15.4, §15.5)."""
    body = b"".join(_attribute(kind, value) for kind, value in message.attributes)
    head = _header(message, len(body))
    if integrity_key is not None:
        mac = hmac.new(integrity_key, _header(message, len(body) + 24) + body, hashlib.sha1).digest()
        body += _attribute(MESSAGE_INTEGRITY, mac)
        head = _header(message, len(body))
    if fingerprint:
        crc = binascii.crc32(_header(message, len(body) + 8) + body) ^ FINGERPRINT_XOR
        body += _attribute(FINGERPRINT, struct.pack("!I", crc))
        head = _header(message, len(body))
    return head + body


def check_integrity(data: bytes, key: bytes) -> bool:
    """Whether ``data`` (a whole message) carries a MESSAGE-INTEGRITY that ``key`` produced: the HMAC covers
    everything before that attribute, with the header's length counting up to its end."""
    start = _find(data, MESSAGE_INTEGRITY)
    if start is None or start + 24 > len(data):
        return False
    covered = bytearray(data[:start])
    struct.pack_into("!H", covered, 2, start + 24 - 20)
    expected = hmac.new(key, bytes(covered), hashlib.sha1).digest()
    return hmac.compare_digest(expected, data[start + 4:start + 24])


def check_fingerprint(data: bytes) -> bool:
    """Whether ``data`` ends with a correct FINGERPRINT (CRC-32 of what precedes it, xor 0x5354554E)."""
    if len(data) < 28 or struct.unpack_from("!HH", data, len(data) - 8) != (FINGERPRINT, 4):
        return False
    crc = binascii.crc32(data[:-8]) ^ FINGERPRINT_XOR
    return int.from_bytes(data[-4:], "big") == crc


def xor_address(address: tuple[str, int], transaction_id: bytes) -> bytes:
    """XOR-MAPPED-ADDRESS's value for ``address`` (RFC 5389 §15.2)."""
    ip = ipaddress.ip_address(address[0])
    family = 0x01 if ip.version == 4 else 0x02
    mask = struct.pack("!I", MAGIC_COOKIE) + (transaction_id if ip.version == 6 else b"")
    xored = bytes(a ^ b for a, b in zip(ip.packed, mask, strict=True))
    return struct.pack("!BBH", 0, family, address[1] ^ (MAGIC_COOKIE >> 16)) + xored


def read_xor_address(value: bytes, transaction_id: bytes) -> tuple[str, int]:
    """The address an XOR-MAPPED-ADDRESS value holds; StunError when it is malformed."""
    if len(value) not in (8, 20) or value[1] not in (1, 2) or len(value) != (8 if value[1] == 1 else 20):
        raise StunError("a malformed XOR-MAPPED-ADDRESS")
    port = struct.unpack_from("!H", value, 2)[0] ^ (MAGIC_COOKIE >> 16)
    mask = struct.pack("!I", MAGIC_COOKIE) + (transaction_id if value[1] == 2 else b"")
    raw = bytes(a ^ b for a, b in zip(value[4:], mask, strict=True))
    return str(ipaddress.ip_address(raw)), port


def error_code(code: int, reason: str) -> bytes:
    """ERROR-CODE's value (RFC 5389 §15.6)."""
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode()


def read_error_code(value: bytes) -> tuple[int, str]:
    if len(value) < 4:
        raise StunError("a malformed ERROR-CODE")
    return (value[2] & 0x7) * 100 + value[3], value[4:].decode("utf-8", "replace")


# -- internals ----------------------------------------------------------------------------------------------
def _method(kind: int) -> int:
    return (kind & 0x000F) | ((kind & 0x00E0) >> 1) | ((kind & 0x3E00) >> 2)


def _type(method: int, klass: int) -> int:
    return (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | klass


def _header(message: StunMessage, length: int) -> bytes:
    return HEADER.pack(_type(message.method, message.klass), length, MAGIC_COOKIE, message.transaction_id)


def _attribute(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def _find(data: bytes, kind: int) -> int | None:
    """The offset of the first attribute ``kind`` in a message already known to parse."""
    pos = 20
    while pos + 4 <= len(data):
        attr, size = struct.unpack_from("!HH", data, pos)
        if attr == kind:
            return pos
        pos += 4 + size + (-size % 4)
    return None
