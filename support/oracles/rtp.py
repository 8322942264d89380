"""Pure-Python reference for pbx.core.rtp, written from RFC 3550 / 4733 / 8285 with ``struct``.

It follows the same rules and raises the same MalformedPacket messages, so the
tests can compare outcome for outcome (including on truncated and fuzzed input).
Results are plain tuples/dataclasses so they compare independently of the
compiled classes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pbx.core.errors import MalformedPacket

RTCP_SR, RTCP_RR, RTCP_BYE = 200, 201, 203


@dataclass(frozen=True)
class Rtp:
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrc: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension: bytes = b""
    padding_length: int = 0
    payload: bytes = b""


def parse_rtp(data: bytes) -> Rtp:
    n = len(data)
    if n < 12:
        raise MalformedPacket(f"RTP packet too short: {n} bytes")
    b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
    if b0 >> 6 != 2:
        raise MalformedPacket(f"RTP version {b0 >> 6}, expected 2")
    cc = b0 & 0x0F
    pos = 12 + 4 * cc
    if pos > n:
        raise MalformedPacket(f"RTP CSRC list exceeds packet: {cc} CSRCs in {n} bytes")
    csrc = struct.unpack_from(f"!{cc}I", data, 12)
    profile = None
    extension = b""
    if b0 & 0x10:
        if pos + 4 > n:
            raise MalformedPacket("RTP header extension exceeds packet")
        profile, words = struct.unpack_from("!HH", data, pos)
        pos += 4
        if pos + 4 * words > n:
            raise MalformedPacket("RTP header extension exceeds packet")
        extension = data[pos:pos + 4 * words]
        pos += 4 * words
    padding = 0
    if b0 & 0x20:
        padding = data[-1]
        if padding == 0:
            raise MalformedPacket("RTP padding length 0 is invalid")
        if padding > n - pos:
            raise MalformedPacket(f"RTP padding length {padding} exceeds payload")
    payload = data[pos:n - padding]
    return Rtp(bool(b1 >> 7), b1 & 0x7F, seq, ts, ssrc, tuple(csrc), profile, bytes(extension),
               padding, bytes(payload))


def build_rtp(p: Rtp) -> bytes:
    b0 = 0x80 | (0x20 if p.padding_length else 0) | (0x10 if p.extension_profile is not None else 0)
    out = struct.pack("!BBHII", b0 | len(p.csrc), (0x80 if p.marker else 0) | p.payload_type,
                      p.sequence, p.timestamp, p.ssrc)
    out += b"".join(struct.pack("!I", c) for c in p.csrc)
    if p.extension_profile is not None:
        out += struct.pack("!HH", p.extension_profile, len(p.extension) // 4) + p.extension
    out += p.payload
    if p.padding_length:
        out += bytes(p.padding_length - 1) + bytes([p.padding_length])
    return out


def parse_header_extensions(profile: int, data: bytes) -> list[tuple[int, bytes]]:
    if profile == 0xBEDE:
        one_byte = True
    elif profile >> 4 == 0x100:
        one_byte = False
    else:
        raise MalformedPacket(f"RTP header extension profile 0x{profile:04X} is not RFC 8285")
    out = []
    i = 0
    while i < len(data):
        if one_byte:
            ident, length = data[i] >> 4, (data[i] & 0x0F) + 1
            if ident == 0:
                i += 1
                continue
            if ident == 15:
                break
            start = i + 1
        else:
            ident = data[i]
            if ident == 0:
                i += 1
                continue
            if i + 1 >= len(data):
                raise MalformedPacket(f"RTP header extension element {ident} exceeds extension data")
            length = data[i + 1]
            start = i + 2
        if start + length > len(data):
            raise MalformedPacket(f"RTP header extension element {ident} exceeds extension data")
        out.append((ident, bytes(data[start:start + length])))
        i = start + length
    return out


# RTCP packets as tuples:
#   ("SR", ssrc, ntp, rtp_ts, packets, octets, [block...], extension)
#   ("RR", ssrc, [block...], extension)
#   ("BYE", [ssrc...], reason | None)
#   ("UNKNOWN", packet_type, count, body)
# with block = (ssrc, fraction_lost, cumulative_lost, highest_sequence, jitter, lsr, dlsr).
Block = tuple[int, int, int, int, int, int, int]


def _block(data: bytes, pos: int) -> Block:
    ssrc, word, highest, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", data, pos)
    lost = word & 0xFFFFFF
    if lost >= 1 << 23:
        lost -= 1 << 24
    return (ssrc, word >> 24, lost, highest, jitter, lsr, dlsr)


def parse_rtcp(data: bytes) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    pos = 0
    while True:
        left = len(data) - pos
        if left < 4:
            raise MalformedPacket(f"RTCP packet too short: {left} bytes")
        b0, pt, length = struct.unpack_from("!BBH", data, pos)
        if b0 >> 6 != 2:
            raise MalformedPacket(f"RTCP version {b0 >> 6}, expected 2")
        size = 4 * (length + 1)
        if size > left:
            raise MalformedPacket(f"RTCP length field {length} exceeds packet: {size} bytes, {left} left")
        body = data[pos + 4:pos + size]
        if b0 & 0x20:
            pad = body[-1] if body else data[pos + 3]
            if pad == 0:
                raise MalformedPacket("RTCP padding length 0 is invalid")
            if pad > len(body):
                raise MalformedPacket(f"RTCP padding length {pad} exceeds packet")
            body = body[:len(body) - pad]
        count = b0 & 0x1F
        out.append(_rtcp_body(pt, count, bytes(body)))
        pos += size
        if pos >= len(data):
            return out


def _rtcp_body(pt: int, count: int, body: bytes) -> tuple[object, ...]:
    if pt == RTCP_SR:
        need = 24 + 24 * count
        if len(body) < need:
            raise MalformedPacket(f"RTCP SR with {count} report blocks needs {4 + need} bytes, "
                                  f"got {4 + len(body)}")
        ssrc, ntp, rtp_ts, packets, octets = struct.unpack_from("!IQIII", body)
        blocks = [_block(body, 24 + 24 * i) for i in range(count)]
        return ("SR", ssrc, ntp, rtp_ts, packets, octets, blocks, body[need:])
    if pt == RTCP_RR:
        need = 4 + 24 * count
        if len(body) < need:
            raise MalformedPacket(f"RTCP RR with {count} report blocks needs {4 + need} bytes, "
                                  f"got {4 + len(body)}")
        (ssrc,) = struct.unpack_from("!I", body)
        return ("RR", ssrc, [_block(body, 4 + 24 * i) for i in range(count)], body[need:])
    if pt == RTCP_BYE:
        need = 4 * count
        if len(body) < need:
            raise MalformedPacket(f"RTCP BYE with {count} sources needs {4 + need} bytes, "
                                  f"got {4 + len(body)}")
        sources = list(struct.unpack_from(f"!{count}I", body))
        reason = None
        if len(body) > need:
            length = body[need]
            if need + 1 + length > len(body):
                raise MalformedPacket(f"RTCP BYE reason length {length} exceeds packet")
            reason = body[need + 1:need + 1 + length]
        return ("BYE", sources, reason)
    return ("UNKNOWN", pt, count, body)


def _pack_block(b: Block) -> bytes:
    ssrc, fraction, lost, highest, jitter, lsr, dlsr = b
    return struct.pack("!IIIIII", ssrc, (fraction << 24) | (lost & 0xFFFFFF), highest, jitter, lsr, dlsr)


def _rtcp(pt: int, count: int, body: bytes) -> bytes:
    pad = -len(body) % 4
    if pad:
        body += bytes(pad - 1) + bytes([pad])
    return struct.pack("!BBH", 0x80 | (0x20 if pad else 0) | count, pt, len(body) // 4) + body


def build_sr(ssrc: int, ntp: int, rtp_ts: int, packets: int, octets: int, blocks: list[Block],
             extension: bytes = b"") -> bytes:
    body = struct.pack("!IQIII", ssrc, ntp, rtp_ts, packets, octets)
    return _rtcp(RTCP_SR, len(blocks), body + b"".join(map(_pack_block, blocks)) + extension)


def build_rr(ssrc: int, blocks: list[Block], extension: bytes = b"") -> bytes:
    body = struct.pack("!I", ssrc) + b"".join(map(_pack_block, blocks)) + extension
    return _rtcp(RTCP_RR, len(blocks), body)


def build_bye(sources: list[int], reason: bytes | None = None) -> bytes:
    body = b"".join(struct.pack("!I", s) for s in sources)
    if reason is not None:
        text = bytes([len(reason)]) + reason
        body += text + bytes(-len(text) % 4)
    return _rtcp(RTCP_BYE, len(sources), body)


# RFC 4733: (event, end, volume, duration)
Event = tuple[int, bool, int, int]


def parse_telephone_events(payload: bytes) -> list[Event]:
    n = len(payload)
    if n < 4:
        raise MalformedPacket(f"RFC 4733 payload too short: {n} bytes")
    if n % 4:
        raise MalformedPacket(f"RFC 4733 payload length {n} is not a multiple of 4")
    out = []
    for i in range(0, n, 4):
        event, flags, duration = struct.unpack_from("!BBH", payload, i)
        out.append((event, bool(flags & 0x80), flags & 0x3F, duration))
    return out


def build_telephone_event(event: int, end: bool, volume: int, duration: int) -> bytes:
    return struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)
