"""RTP (RFC 3550/3551), RTCP SR/RR/BYE and RFC 4733 telephone events.

The C functions declared in ``rtp.pxd`` do the byte work without the GIL and
without Python objects; the engine cimports them and calls them per packet.
The Python classes here are thin owners of the same C structs, for the control
plane and the tests.

Every parse error on peer bytes raises :class:`pbx.core.errors.MalformedPacket`
(a ``ValueError``) with an exact message; bad arguments from our own callers
raise plain ``ValueError``/``TypeError``.

Lean per-packet entry points for Python callers: :func:`parse_rtp_into` fills a
reusable :class:`RtpHeaderView` without copying the payload, and
:func:`build_rtp_into` writes header and payload into a caller buffer.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memmove, memset

from pbx.core.errors import MalformedPacket

__all__ = [
    "RTCP_APP", "RTCP_BYE", "RTCP_RR", "RTCP_SDES", "RTCP_SR",
    "Bye", "ReceiverReport", "ReportBlock", "RtcpPacket", "RtcpUnknown", "RtpHeaderView", "RtpPacket",
    "SenderReport", "TelephoneEvent",
    "build_header_extensions", "build_rtcp", "build_rtp", "build_rtp_into",
    "build_telephone_event", "digit_event", "event_digit", "is_rtcp",
    "parse_header_extensions", "parse_rtcp", "parse_rtp", "parse_rtp_into",
    "parse_telephone_event", "parse_telephone_events",
]

# Python-visible copies of the packet type numbers.
RTCP_SR = RTCP_PT_SR
RTCP_RR = RTCP_PT_RR
RTCP_SDES = RTCP_PT_SDES
RTCP_BYE = RTCP_PT_BYE
RTCP_APP = RTCP_PT_APP

cdef enum:
    _MAX_EXT_LENGTH = 65535 * 4         # 16-bit length field counted in 32-bit words
    _MAX_RTCP_SIZE = 65536 * 4          # 16-bit length field: words minus one
    _CUMULATIVE_LOST_MIN = -(1 << 23)   # signed 24-bit
    _CUMULATIVE_LOST_MAX = (1 << 23) - 1


# ---------------------------------------------------------------------------
# Big-endian loads and stores (byte by byte: no alignment assumptions)

cdef inline uint16_t _load16(const uint8_t* p) noexcept nogil:
    return <uint16_t>((<uint16_t>p[0] << 8) | p[1])


cdef inline uint32_t _load32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline void _store16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 8)
    p[1] = <uint8_t>v


cdef inline void _store32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 24)
    p[1] = <uint8_t>(v >> 16)
    p[2] = <uint8_t>(v >> 8)
    p[3] = <uint8_t>v


# ---------------------------------------------------------------------------
# RTP, C level

cdef int rtp_parse(const uint8_t* buf, Py_ssize_t n, RtpHeader* out) noexcept nogil:
    cdef Py_ssize_t pos, end, ext_length
    cdef uint8_t b0, cc, pad
    cdef int i
    if n < RTP_HEADER_SIZE:
        return RTP_ERR_SHORT
    b0 = buf[0]
    if (b0 >> 6) != 2:
        return RTP_ERR_VERSION
    cc = b0 & 0x0F
    pos = RTP_HEADER_SIZE + 4 * cc
    if pos > n:
        return RTP_ERR_CSRC
    out.marker = buf[1] >> 7
    out.payload_type = buf[1] & 0x7F
    out.sequence = _load16(buf + 2)
    out.timestamp = _load32(buf + 4)
    out.ssrc = _load32(buf + 8)
    out.csrc_count = cc
    for i in range(cc):
        out.csrc[i] = _load32(buf + RTP_HEADER_SIZE + 4 * i)
    out.extension = (b0 >> 4) & 1
    if out.extension:
        if pos + 4 > n:
            return RTP_ERR_EXTENSION
        out.ext_profile = _load16(buf + pos)
        ext_length = 4 * <Py_ssize_t>_load16(buf + pos + 2)
        pos += 4
        if pos + ext_length > n:
            return RTP_ERR_EXTENSION
        out.ext_data = buf + pos
        out.ext_offset = pos
        out.ext_length = ext_length
        pos += ext_length
    else:
        out.ext_profile = 0
        out.ext_data = NULL
        out.ext_offset = 0
        out.ext_length = 0
    end = n
    out.padding_length = 0
    if b0 & 0x20:
        # The last octet counts the padding, itself included (RFC 3550 §5.1).
        pad = buf[n - 1]
        if pad == 0:
            return RTP_ERR_PADDING_ZERO
        if pad > n - pos:
            return RTP_ERR_PADDING
        out.padding_length = pad
        end -= pad
    out.payload_offset = pos
    out.payload_length = end - pos
    return RTP_OK


cdef Py_ssize_t rtp_header_size(const RtpHeader* h) noexcept nogil:
    cdef Py_ssize_t size = RTP_HEADER_SIZE + 4 * <Py_ssize_t>h.csrc_count
    if h.extension:
        size += 4 + h.ext_length
    return size


cdef inline bint _header_valid(const RtpHeader* h) noexcept nogil:
    if h.csrc_count > RTP_MAX_CSRC or h.payload_type > 127:
        return False
    if h.extension and (h.ext_length < 0 or h.ext_length > _MAX_EXT_LENGTH or h.ext_length % 4
                        or (h.ext_length > 0 and h.ext_data == NULL)):
        return False
    return True


cdef Py_ssize_t rtp_write_header(const RtpHeader* h, uint8_t* out, Py_ssize_t cap) noexcept nogil:
    cdef Py_ssize_t size, pos
    cdef int i
    if not _header_valid(h):
        return RTP_ERR_FIELD
    size = rtp_header_size(h)
    if size > cap:
        return RTP_ERR_CAPACITY
    out[0] = <uint8_t>(0x80 | (0x20 if h.padding_length else 0) | (0x10 if h.extension else 0)
                       | h.csrc_count)
    out[1] = <uint8_t>((0x80 if h.marker else 0) | h.payload_type)
    _store16(out + 2, h.sequence)
    _store32(out + 4, h.timestamp)
    _store32(out + 8, h.ssrc)
    pos = RTP_HEADER_SIZE
    for i in range(h.csrc_count):
        _store32(out + pos, h.csrc[i])
        pos += 4
    if h.extension:
        _store16(out + pos, h.ext_profile)
        _store16(out + pos + 2, <uint16_t>(h.ext_length // 4))
        if h.ext_length:
            memcpy(out + pos + 4, h.ext_data, <size_t>h.ext_length)
    return size


cdef Py_ssize_t rtp_build(const RtpHeader* h, const uint8_t* payload, Py_ssize_t n,
                          uint8_t* out, Py_ssize_t cap) noexcept nogil:
    cdef Py_ssize_t header, total
    if n < 0 or (n > 0 and payload == NULL) or not _header_valid(h):
        return RTP_ERR_FIELD
    header = rtp_header_size(h)
    total = header + n + h.padding_length
    if total > cap:
        return RTP_ERR_CAPACITY
    # Payload first: it may already sit inside `out` (encoded in place after the header).
    if n:
        memmove(out + header, payload, <size_t>n)
    rtp_write_header(h, out, cap)
    if h.padding_length:
        memset(out + header + n, 0, <size_t>(h.padding_length - 1))
        out[total - 1] = h.padding_length
    return total


# ---------------------------------------------------------------------------
# RTCP, C level

cdef int rtcp_parse_header(const uint8_t* buf, Py_ssize_t n, Py_ssize_t pos,
                           RtcpHeader* out) noexcept nogil:
    cdef const uint8_t* p
    cdef Py_ssize_t size, body
    cdef uint8_t pad = 0
    if pos < 0 or n - pos < RTCP_HEADER_SIZE:
        return RTCP_ERR_SHORT
    p = buf + pos
    if (p[0] >> 6) != 2:
        return RTCP_ERR_VERSION
    size = 4 * (<Py_ssize_t>_load16(p + 2) + 1)
    if size > n - pos:
        return RTCP_ERR_LENGTH
    body = size - RTCP_HEADER_SIZE
    if p[0] & 0x20:
        pad = p[size - 1]
        if pad == 0:
            return RTCP_ERR_PADDING_ZERO
        if pad > body:
            return RTCP_ERR_PADDING
    out.count = p[0] & 0x1F
    out.packet_type = p[1]
    out.length = _load16(p + 2)
    out.padding_length = pad
    out.size = size
    out.body_offset = pos + RTCP_HEADER_SIZE
    out.body_length = body - pad
    return RTP_OK


cdef void rtcp_read_sender_info(const uint8_t* p, RtcpSenderInfo* out) noexcept nogil:
    out.ntp_timestamp = (<uint64_t>_load32(p) << 32) | _load32(p + 4)
    out.rtp_timestamp = _load32(p + 8)
    out.packet_count = _load32(p + 12)
    out.octet_count = _load32(p + 16)


cdef void rtcp_read_report_block(const uint8_t* p, RtcpReportBlock* out) noexcept nogil:
    cdef int32_t lost = (<int32_t>p[5] << 16) | (<int32_t>p[6] << 8) | p[7]
    out.ssrc = _load32(p)
    out.fraction_lost = p[4]
    out.cumulative_lost = lost - 0x1000000 if lost & 0x800000 else lost
    out.highest_sequence = _load32(p + 8)
    out.jitter = _load32(p + 12)
    out.lsr = _load32(p + 16)
    out.dlsr = _load32(p + 20)


cdef void rtcp_write_header(uint8_t* out, uint8_t padding, uint8_t count, uint8_t packet_type,
                            Py_ssize_t size) noexcept nogil:
    out[0] = <uint8_t>(0x80 | (0x20 if padding else 0) | (count & 0x1F))
    out[1] = packet_type
    _store16(out + 2, <uint16_t>(size // 4 - 1))


cdef void rtcp_write_sender_info(uint8_t* out, const RtcpSenderInfo* info) noexcept nogil:
    _store32(out, <uint32_t>(info.ntp_timestamp >> 32))
    _store32(out + 4, <uint32_t>info.ntp_timestamp)
    _store32(out + 8, info.rtp_timestamp)
    _store32(out + 12, info.packet_count)
    _store32(out + 16, info.octet_count)


cdef void rtcp_write_report_block(uint8_t* out, const RtcpReportBlock* block) noexcept nogil:
    cdef uint32_t lost = <uint32_t>block.cumulative_lost & 0xFFFFFF
    _store32(out, block.ssrc)
    out[4] = block.fraction_lost
    out[5] = <uint8_t>(lost >> 16)
    out[6] = <uint8_t>(lost >> 8)
    out[7] = <uint8_t>lost
    _store32(out + 8, block.highest_sequence)
    _store32(out + 12, block.jitter)
    _store32(out + 16, block.lsr)
    _store32(out + 20, block.dlsr)


cdef inline bint _blocks_valid(const RtcpReportBlock* blocks, Py_ssize_t count) noexcept nogil:
    cdef Py_ssize_t i
    if count < 0 or count > RTCP_MAX_COUNT or (count > 0 and blocks == NULL):
        return False
    for i in range(count):
        if not _CUMULATIVE_LOST_MIN <= blocks[i].cumulative_lost <= _CUMULATIVE_LOST_MAX:
            return False
    return True


cdef Py_ssize_t rtcp_build_rr(uint32_t ssrc, const RtcpReportBlock* blocks, Py_ssize_t count,
                              uint8_t* out, Py_ssize_t cap) noexcept nogil:
    cdef Py_ssize_t size, i
    if not _blocks_valid(blocks, count):
        return RTP_ERR_FIELD
    size = 8 + RTCP_REPORT_BLOCK_SIZE * count
    if size > cap:
        return RTP_ERR_CAPACITY
    rtcp_write_header(out, 0, <uint8_t>count, RTCP_PT_RR, size)
    _store32(out + 4, ssrc)
    for i in range(count):
        rtcp_write_report_block(out + 8 + RTCP_REPORT_BLOCK_SIZE * i, &blocks[i])
    return size


cdef Py_ssize_t rtcp_build_sr(uint32_t ssrc, const RtcpSenderInfo* info,
                              const RtcpReportBlock* blocks, Py_ssize_t count,
                              uint8_t* out, Py_ssize_t cap) noexcept nogil:
    cdef Py_ssize_t size, i
    if info == NULL or not _blocks_valid(blocks, count):
        return RTP_ERR_FIELD
    size = 8 + RTCP_SENDER_INFO_SIZE + RTCP_REPORT_BLOCK_SIZE * count
    if size > cap:
        return RTP_ERR_CAPACITY
    rtcp_write_header(out, 0, <uint8_t>count, RTCP_PT_SR, size)
    _store32(out + 4, ssrc)
    rtcp_write_sender_info(out + 8, info)
    for i in range(count):
        rtcp_write_report_block(out + 28 + RTCP_REPORT_BLOCK_SIZE * i, &blocks[i])
    return size


cdef Py_ssize_t rtcp_build_bye(const uint32_t* ssrcs, Py_ssize_t count,
                               const uint8_t* reason, Py_ssize_t reason_length,
                               uint8_t* out, Py_ssize_t cap) noexcept nogil:
    """A BYE; pass reason=NULL for none.  The reason is zero-padded to 32 bits (RFC 3550 §6.6)."""
    cdef Py_ssize_t body, size, i, pos
    if count < 0 or count > RTCP_MAX_COUNT or (count > 0 and ssrcs == NULL):
        return RTP_ERR_FIELD
    body = 4 * count
    if reason != NULL:
        if reason_length < 0 or reason_length > 255:
            return RTP_ERR_FIELD
        body += (1 + reason_length + 3) & ~3
    size = RTCP_HEADER_SIZE + body
    if size > cap:
        return RTP_ERR_CAPACITY
    rtcp_write_header(out, 0, <uint8_t>count, RTCP_PT_BYE, size)
    pos = RTCP_HEADER_SIZE
    for i in range(count):
        _store32(out + pos, ssrcs[i])
        pos += 4
    if reason != NULL:
        memset(out + pos, 0, <size_t>(size - pos))
        out[pos] = <uint8_t>reason_length
        if reason_length:
            memcpy(out + pos + 1, reason, <size_t>reason_length)
    return size


# ---------------------------------------------------------------------------
# RFC 4733, C level

cdef int te_parse(const uint8_t* buf, Py_ssize_t n, TeEvent* out) noexcept nogil:
    if n < TELEPHONE_EVENT_SIZE:
        return TE_ERR_SHORT
    out.event = buf[0]
    out.end = buf[1] >> 7
    out.volume = buf[1] & 0x3F        # bit 6 (R) is reserved: ignored on receipt
    out.duration = _load16(buf + 2)
    return RTP_OK


cdef Py_ssize_t te_build(const TeEvent* ev, uint8_t* out, Py_ssize_t cap) noexcept nogil:
    if ev.volume > 63:
        return RTP_ERR_FIELD
    if cap < TELEPHONE_EVENT_SIZE:
        return RTP_ERR_CAPACITY
    out[0] = ev.event
    out[1] = <uint8_t>((0x80 if ev.end else 0) | ev.volume)
    _store16(out + 2, ev.duration)
    return TELEPHONE_EVENT_SIZE


# ---------------------------------------------------------------------------
# Python helpers

cdef object _check_int(object value, str name, object lo, object hi):
    """Range-checked int for a field set by our own caller (ValueError/TypeError, never Overflow)."""
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < lo or value > hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


cdef inline uint32_t _u32(object value, str name) except? 0xFFFFFFFF:
    return _check_int(value, name, 0, 0xFFFFFFFF)


cdef inline bytes _as_bytes(object value, str name):
    if isinstance(value, bytes):
        return <bytes>value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{name} must be bytes-like, not {type(value).__name__}")


cdef inline bytes _new_bytes(Py_ssize_t size):
    return PyBytes_FromStringAndSize(NULL, size)


cdef str _build_error(Py_ssize_t code, str what):
    if code == RTP_ERR_CAPACITY:
        return f"output buffer too small for the {what}"
    return f"{what} has a field out of range"


cdef object _rtp_error(int code, const uint8_t* buf, Py_ssize_t n):
    cdef str msg
    if code == RTP_ERR_SHORT:
        msg = f"RTP packet too short: {n} bytes"
    elif code == RTP_ERR_VERSION:
        msg = f"RTP version {buf[0] >> 6}, expected 2"
    elif code == RTP_ERR_CSRC:
        msg = f"RTP CSRC list exceeds packet: {buf[0] & 0x0F} CSRCs in {n} bytes"
    elif code == RTP_ERR_EXTENSION:
        msg = "RTP header extension exceeds packet"
    elif code == RTP_ERR_PADDING:
        msg = f"RTP padding length {buf[n - 1]} exceeds payload"
    elif code == RTP_ERR_PADDING_ZERO:
        msg = "RTP padding length 0 is invalid"
    else:
        msg = f"RTP parse error {code}"
    return MalformedPacket(msg)


# ---------------------------------------------------------------------------
# RTP, Python level

cdef class RtpPacket:
    """One RTP packet: header fields, raw extension and payload (owned bytes).

    ``extension_profile`` is None when the X bit is clear; ``extension`` holds
    the raw extension data (a multiple of 4 bytes; see
    :func:`parse_header_extensions` for RFC 8285 elements).  ``padding_length``
    counts the pad bytes including the final count byte (0 = no padding);
    serialization writes zero pad bytes.
    """

    cdef RtpHeader _h
    cdef bytes _payload
    cdef bytes _extension

    def __init__(self, payload_type=0, sequence=0, timestamp=0, ssrc=0, payload=b"", *,
                 marker=False, csrc=(), extension_profile=None, extension=b"", padding_length=0):
        self.payload_type = payload_type
        self.sequence = sequence
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.payload = payload
        self.marker = marker
        self.csrc = csrc
        self.extension_profile = extension_profile
        self.extension = extension
        self.padding_length = padding_length

    def __cinit__(self):
        self._payload = b""
        self._extension = b""

    @classmethod
    def parse(cls, data) -> RtpPacket:
        return parse_rtp(data)

    @property
    def version(self):
        return 2

    @property
    def marker(self):
        return bool(self._h.marker)

    @marker.setter
    def marker(self, value):
        self._h.marker = 1 if value else 0

    @property
    def payload_type(self):
        return self._h.payload_type

    @payload_type.setter
    def payload_type(self, value):
        self._h.payload_type = _check_int(value, "payload_type", 0, 127)

    @property
    def sequence(self):
        return self._h.sequence

    @sequence.setter
    def sequence(self, value):
        self._h.sequence = _check_int(value, "sequence", 0, 0xFFFF)

    @property
    def timestamp(self):
        return self._h.timestamp

    @timestamp.setter
    def timestamp(self, value):
        self._h.timestamp = _u32(value, "timestamp")

    @property
    def ssrc(self):
        return self._h.ssrc

    @ssrc.setter
    def ssrc(self, value):
        self._h.ssrc = _u32(value, "ssrc")

    @property
    def csrc(self):
        return tuple([self._h.csrc[i] for i in range(self._h.csrc_count)])

    @csrc.setter
    def csrc(self, value):
        cdef uint32_t tmp[15]
        cdef Py_ssize_t i = 0
        items = tuple(value)
        if len(items) > RTP_MAX_CSRC:
            raise ValueError(f"at most 15 CSRCs, got {len(items)}")
        for item in items:
            tmp[i] = _u32(item, "csrc")
            i += 1
        memcpy(self._h.csrc, tmp, sizeof(tmp))
        self._h.csrc_count = <uint8_t>i

    @property
    def extension_profile(self):
        return self._h.ext_profile if self._h.extension else None

    @extension_profile.setter
    def extension_profile(self, value):
        if value is None:
            self._h.extension = 0
            self._h.ext_profile = 0
        else:
            self._h.ext_profile = _check_int(value, "extension_profile", 0, 0xFFFF)
            self._h.extension = 1

    @property
    def extension(self):
        return self._extension

    @extension.setter
    def extension(self, value):
        cdef bytes data = _as_bytes(value, "extension")
        if len(data) % 4 or len(data) > _MAX_EXT_LENGTH:
            raise ValueError(f"extension must be a multiple of 4 bytes up to {_MAX_EXT_LENGTH}, "
                             f"got {len(data)}")
        self._extension = data

    @property
    def padding_length(self):
        return self._h.padding_length

    @padding_length.setter
    def padding_length(self, value):
        self._h.padding_length = _check_int(value, "padding_length", 0, 255)

    @property
    def payload(self):
        return self._payload

    @payload.setter
    def payload(self, value):
        self._payload = _as_bytes(value, "payload")

    cdef int _prepare(self, RtpHeader* h) except -1:
        h[0] = self._h
        h.ext_length = len(self._extension)
        h.ext_data = <const uint8_t*>PyBytes_AS_STRING(self._extension)
        if h.ext_length and not h.extension:
            raise ValueError("extension data set without an extension_profile")
        return 0

    def serialize(self) -> bytes:
        cdef RtpHeader h
        cdef Py_ssize_t n = len(self._payload), size, written
        self._prepare(&h)
        size = rtp_header_size(&h) + n + h.padding_length
        out = _new_bytes(size)
        written = rtp_build(&h, <const uint8_t*>PyBytes_AS_STRING(self._payload), n,
                            <uint8_t*>PyBytes_AS_STRING(out), size)
        if written < 0:
            raise ValueError(_build_error(written, "RTP packet"))
        return out

    def serialize_into(self, out) -> int:
        cdef RtpHeader h
        cdef Py_buffer view
        cdef Py_ssize_t written
        self._prepare(&h)
        PyObject_GetBuffer(out, &view, PyBUF_WRITABLE)
        try:
            written = rtp_build(&h, <const uint8_t*>PyBytes_AS_STRING(self._payload),
                                len(self._payload), <uint8_t*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        if written < 0:
            raise ValueError(_build_error(written, "RTP packet"))
        return written

    def __eq__(self, other):
        if not isinstance(other, RtpPacket):
            return NotImplemented
        return self._key() == (<RtpPacket>other)._key()

    cdef tuple _key(self):
        return (self.marker, self.payload_type, self.sequence, self.timestamp, self.ssrc, self.csrc,
                self.extension_profile, self._extension, self.padding_length, self._payload)

    __hash__ = None

    def __repr__(self):
        return (f"RtpPacket(payload_type={self.payload_type}, sequence={self.sequence}, "
                f"timestamp={self.timestamp}, ssrc={self.ssrc}, marker={self.marker}, "
                f"csrc={self.csrc}, extension_profile={self.extension_profile}, "
                f"extension={self._extension!r}, padding_length={self.padding_length}, "
                f"payload=<{len(self._payload)} bytes>)")


cdef class RtpHeaderView:
    """Header of the last packet given to :func:`parse_rtp_into`; the payload stays in
    the caller's buffer at ``payload_offset`` (``payload_length`` bytes).  Reused per
    packet; its fields are unspecified until a parse succeeds."""

    cdef RtpHeader _h

    @property
    def marker(self):
        return bool(self._h.marker)

    @property
    def payload_type(self):
        return self._h.payload_type

    @property
    def sequence(self):
        return self._h.sequence

    @property
    def timestamp(self):
        return self._h.timestamp

    @property
    def ssrc(self):
        return self._h.ssrc

    @property
    def csrc(self):
        return tuple([self._h.csrc[i] for i in range(self._h.csrc_count)])

    @property
    def extension_profile(self):
        return self._h.ext_profile if self._h.extension else None

    @property
    def extension_offset(self):
        return self._h.ext_offset

    @property
    def extension_length(self):
        return self._h.ext_length

    @property
    def padding_length(self):
        return self._h.padding_length

    @property
    def payload_offset(self):
        return self._h.payload_offset

    @property
    def payload_length(self):
        return self._h.payload_length


cdef RtpPacket _packet_from(const uint8_t* buf, Py_ssize_t n):
    cdef RtpPacket pkt = RtpPacket.__new__(RtpPacket)
    cdef int rc = rtp_parse(buf, n, &pkt._h)
    if rc != RTP_OK:
        raise _rtp_error(rc, buf, n)
    pkt._payload = PyBytes_FromStringAndSize(<const char*>buf + pkt._h.payload_offset,
                                             pkt._h.payload_length)
    if pkt._h.ext_length:
        pkt._extension = PyBytes_FromStringAndSize(<const char*>pkt._h.ext_data, pkt._h.ext_length)
    pkt._h.ext_data = NULL      # never keep a pointer into the caller's buffer
    return pkt


def parse_rtp(data) -> RtpPacket:
    """Parse one RTP packet (copies payload and extension); MalformedPacket on bad input."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _packet_from(<const uint8_t*>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


def parse_rtp_into(data, RtpHeaderView header not None) -> int:
    """Parse the header of ``data`` into ``header``; returns the payload length.

    The payload is ``data[header.payload_offset:][:length]``; nothing is copied.
    """
    cdef Py_buffer view
    cdef RtpHeader h
    cdef int rc
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        rc = rtp_parse(<const uint8_t*>view.buf, view.len, &h)
        if rc != RTP_OK:
            raise _rtp_error(rc, <const uint8_t*>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)
    h.ext_data = NULL
    header._h = h
    return h.payload_length


def build_rtp(payload_type, sequence, timestamp, ssrc, payload, *, marker=False, csrc=(),
              extension_profile=None, extension=b"", padding_length=0) -> bytes:
    """Serialize one RTP packet from its fields."""
    return RtpPacket(payload_type, sequence, timestamp, ssrc, payload, marker=marker, csrc=csrc,
                     extension_profile=extension_profile, extension=extension,
                     padding_length=padding_length).serialize()


def build_rtp_into(out, payload, int payload_type, long long sequence, long long timestamp,
                   long long ssrc, bint marker=False) -> int:
    """Write a plain RTP packet (no CSRC, extension or padding) into ``out``; returns its size.

    ``payload`` may alias ``out[12:]`` (a payload encoded in place).
    """
    cdef RtpHeader h
    cdef Py_buffer pview, oview
    cdef Py_ssize_t written
    if not 0 <= payload_type <= 127:
        raise ValueError(f"payload_type must be in [0, 127], got {payload_type}")
    if not 0 <= sequence <= 0xFFFF:
        raise ValueError(f"sequence must be in [0, 65535], got {sequence}")
    if not 0 <= timestamp <= 0xFFFFFFFF:
        raise ValueError(f"timestamp must be in [0, 4294967295], got {timestamp}")
    if not 0 <= ssrc <= 0xFFFFFFFF:
        raise ValueError(f"ssrc must be in [0, 4294967295], got {ssrc}")
    h.marker = marker
    h.payload_type = <uint8_t>payload_type
    h.sequence = <uint16_t>sequence
    h.timestamp = <uint32_t>timestamp
    h.ssrc = <uint32_t>ssrc
    h.csrc_count = 0
    h.extension = 0
    h.ext_length = 0
    h.ext_data = NULL
    h.padding_length = 0
    PyObject_GetBuffer(payload, &pview, PyBUF_SIMPLE)
    try:
        PyObject_GetBuffer(out, &oview, PyBUF_WRITABLE)
        try:
            written = rtp_build(&h, <const uint8_t*>pview.buf, pview.len, <uint8_t*>oview.buf,
                                oview.len)
        finally:
            PyBuffer_Release(&oview)
    finally:
        PyBuffer_Release(&pview)
    if written < 0:
        raise ValueError(_build_error(written, "RTP packet"))
    return written


def is_rtcp(data) -> bool:
    """RFC 5761 demultiplexing: RTCP when the second byte is 192..223."""
    cdef Py_buffer view
    cdef bint result
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    result = view.len >= 2 and 192 <= (<const uint8_t*>view.buf)[1] <= 223
    PyBuffer_Release(&view)
    return result


def parse_header_extensions(profile, data) -> list:
    """RFC 8285 elements ``[(id, value), ...]`` of an extension with the given profile.

    One-byte form (profile 0xBEDE): ID 0 bytes are padding; ID 15 ends processing.
    Two-byte form (profile 0x1000-0x100F): zero bytes are padding.
    """
    cdef bytes raw = _as_bytes(data, "data")
    cdef Py_ssize_t n = len(raw), pos = 0, length
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(raw)
    cdef int ident
    cdef bint one_byte
    _check_int(profile, "profile", 0, 0xFFFF)
    if profile == 0xBEDE:
        one_byte = True
    elif (profile & 0xFFF0) == 0x1000:
        one_byte = False
    else:
        raise MalformedPacket(f"RTP header extension profile 0x{profile:04X} is not RFC 8285")
    elements = []
    while pos < n:
        if one_byte:
            ident = p[pos] >> 4
            if ident == 0:
                pos += 1
                continue
            if ident == 15:
                break
            length = (p[pos] & 0x0F) + 1
            pos += 1
        else:
            ident = p[pos]
            if ident == 0:
                pos += 1
                continue
            if pos + 2 > n:
                raise MalformedPacket(f"RTP header extension element {ident} exceeds extension data")
            length = p[pos + 1]
            pos += 2
        if pos + length > n:
            raise MalformedPacket(f"RTP header extension element {ident} exceeds extension data")
        elements.append((ident, raw[pos:pos + length]))
        pos += length
    return elements


def build_header_extensions(elements, *, two_byte=False) -> tuple:
    """``(profile, data)`` for RFC 8285 elements ``[(id, value), ...]``, zero-padded to 32 bits.

    Uses the one-byte form when every id is 1..14 and every value 1..16 bytes
    (unless ``two_byte``), else the two-byte form (ids 1..255, values 0..255 bytes).
    """
    items = [(_check_int(i, "extension id", 1, 255), _as_bytes(v, "extension value"))
             for i, v in elements]
    one_byte = not two_byte and all(i <= 14 and 1 <= len(v) <= 16 for i, v in items)
    parts = []
    for ident, value in items:
        if one_byte:
            parts.append(bytes([(ident << 4) | (len(value) - 1)]))
        else:
            if len(value) > 255:
                raise ValueError(f"extension value for id {ident} is {len(value)} bytes, max 255")
            parts.append(bytes([ident, len(value)]))
        parts.append(value)
    data = b"".join(parts)
    data += bytes(-len(data) & 3)
    if len(data) > _MAX_EXT_LENGTH:
        raise ValueError(f"extension data is {len(data)} bytes, max {_MAX_EXT_LENGTH}")
    return (0xBEDE if one_byte else 0x1000), data


# ---------------------------------------------------------------------------
# RTCP, Python level

cdef class ReportBlock:
    """An RTCP reception report block (RFC 3550 §6.4.1)."""

    cdef RtcpReportBlock _b

    def __init__(self, ssrc=0, fraction_lost=0, cumulative_lost=0, highest_sequence=0, jitter=0,
                 lsr=0, dlsr=0):
        self.ssrc = ssrc
        self.fraction_lost = fraction_lost
        self.cumulative_lost = cumulative_lost
        self.highest_sequence = highest_sequence
        self.jitter = jitter
        self.lsr = lsr
        self.dlsr = dlsr

    @property
    def ssrc(self):
        return self._b.ssrc

    @ssrc.setter
    def ssrc(self, value):
        self._b.ssrc = _u32(value, "ssrc")

    @property
    def fraction_lost(self):
        return self._b.fraction_lost

    @fraction_lost.setter
    def fraction_lost(self, value):
        self._b.fraction_lost = _check_int(value, "fraction_lost", 0, 255)

    @property
    def cumulative_lost(self):
        return self._b.cumulative_lost

    @cumulative_lost.setter
    def cumulative_lost(self, value):
        self._b.cumulative_lost = _check_int(value, "cumulative_lost", _CUMULATIVE_LOST_MIN,
                                             _CUMULATIVE_LOST_MAX)

    @property
    def highest_sequence(self):
        return self._b.highest_sequence

    @highest_sequence.setter
    def highest_sequence(self, value):
        self._b.highest_sequence = _u32(value, "highest_sequence")

    @property
    def jitter(self):
        return self._b.jitter

    @jitter.setter
    def jitter(self, value):
        self._b.jitter = _u32(value, "jitter")

    @property
    def lsr(self):
        return self._b.lsr

    @lsr.setter
    def lsr(self, value):
        self._b.lsr = _u32(value, "lsr")

    @property
    def dlsr(self):
        return self._b.dlsr

    @dlsr.setter
    def dlsr(self, value):
        self._b.dlsr = _u32(value, "dlsr")

    cdef tuple _key(self):
        return (self._b.ssrc, self._b.fraction_lost, self._b.cumulative_lost,
                self._b.highest_sequence, self._b.jitter, self._b.lsr, self._b.dlsr)

    def __eq__(self, other):
        if not isinstance(other, ReportBlock):
            return NotImplemented
        return self._key() == (<ReportBlock>other)._key()

    __hash__ = None

    def __repr__(self):
        return ("ReportBlock(ssrc={}, fraction_lost={}, cumulative_lost={}, highest_sequence={}, "
                "jitter={}, lsr={}, dlsr={})".format(*self._key()))


cdef ReportBlock _read_block(const uint8_t* p):
    cdef ReportBlock block = ReportBlock.__new__(ReportBlock)
    rtcp_read_report_block(p, &block._b)
    return block


cdef list _read_blocks(const uint8_t* p, Py_ssize_t count):
    return [_read_block(p + RTCP_REPORT_BLOCK_SIZE * i) for i in range(count)]


cdef int _check_blocks(list reports) except -1:
    if len(reports) > RTCP_MAX_COUNT:
        raise ValueError(f"at most 31 report blocks, got {len(reports)}")
    for block in reports:
        if not isinstance(block, ReportBlock):
            raise TypeError(f"reports must hold ReportBlock, not {type(block).__name__}")
    return 0


cdef bytes _rtcp_packet(uint8_t count, uint8_t packet_type, Py_ssize_t body_length, uint8_t** body):
    """A fresh RTCP packet of ``body_length`` body bytes; RTCP padding (RFC 3550 §6.4.1 P bit)
    aligns a body that is not a multiple of 4.  The caller fills ``*body``."""
    cdef Py_ssize_t pad = -body_length & 3
    cdef Py_ssize_t size = RTCP_HEADER_SIZE + body_length + pad
    cdef bytes out
    cdef uint8_t* p
    if size > _MAX_RTCP_SIZE:
        raise ValueError(f"RTCP packet of {size} bytes exceeds the 16-bit length field")
    out = _new_bytes(size)
    p = <uint8_t*>PyBytes_AS_STRING(out)
    rtcp_write_header(p, pad != 0, count, packet_type, size)
    if pad:
        memset(p + size - pad, 0, <size_t>pad)
        p[size - 1] = <uint8_t>pad
    body[0] = p + RTCP_HEADER_SIZE
    return out


cdef bytes _serialize_report(uint32_t ssrc, const RtcpSenderInfo* info, list reports,
                             bytes extension):
    """SR (``info`` given) or RR through the C builders, then any profile extension,
    RTCP-padded to 32 bits when it is not aligned."""
    cdef RtcpReportBlock blocks[31]
    cdef Py_ssize_t i, count, base, size, written
    cdef Py_ssize_t ext_length = len(extension), pad = -len(extension) & 3
    cdef uint8_t* p
    _check_blocks(reports)
    count = len(reports)
    for i in range(count):
        blocks[i] = (<ReportBlock>reports[i])._b
    base = 8 + (RTCP_SENDER_INFO_SIZE if info != NULL else 0) + RTCP_REPORT_BLOCK_SIZE * count
    size = base + ext_length + pad
    if size > _MAX_RTCP_SIZE:
        raise ValueError(f"RTCP packet of {size} bytes exceeds the 16-bit length field")
    out = _new_bytes(size)
    p = <uint8_t*>PyBytes_AS_STRING(out)
    if info != NULL:
        written = rtcp_build_sr(ssrc, info, blocks, count, p, size)
    else:
        written = rtcp_build_rr(ssrc, blocks, count, p, size)
    if written != base:
        raise ValueError(_build_error(written, "RTCP report"))
    if ext_length or pad:
        memcpy(p + base, PyBytes_AS_STRING(extension), <size_t>ext_length)
        if pad:
            memset(p + size - pad, 0, <size_t>pad)
            p[size - 1] = <uint8_t>pad
        rtcp_write_header(p, pad != 0, <uint8_t>count, p[1], size)
    return out


cdef class _Report:
    """What an SR and an RR share: the reporter's SSRC, report blocks and profile extension bytes."""

    cdef uint32_t _ssrc
    cdef public list reports
    cdef bytes _extension

    def __cinit__(self):
        self._extension = b""
        self.reports = []

    @property
    def ssrc(self):
        return self._ssrc

    @ssrc.setter
    def ssrc(self, value):
        self._ssrc = _u32(value, "ssrc")

    @property
    def extension(self):
        return self._extension

    @extension.setter
    def extension(self, value):
        self._extension = _as_bytes(value, "extension")

    cdef tuple _key(self):
        return (self._ssrc, self.reports, self._extension)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == (<_Report>other)._key()

    __hash__ = None


cdef class SenderReport(_Report):
    """RTCP SR (RFC 3550 §6.4.1): sender info plus report blocks.  ``extension`` holds any
    profile-specific bytes after the blocks."""

    cdef RtcpSenderInfo _info

    def __init__(self, ssrc=0, ntp_timestamp=0, rtp_timestamp=0, packet_count=0, octet_count=0,
                 reports=None, extension=b""):
        self.ssrc = ssrc
        self.ntp_timestamp = ntp_timestamp
        self.rtp_timestamp = rtp_timestamp
        self.packet_count = packet_count
        self.octet_count = octet_count
        self.reports = [] if reports is None else list(reports)
        self.extension = extension

    @property
    def packet_type(self):
        return RTCP_PT_SR

    @property
    def ntp_timestamp(self):
        return self._info.ntp_timestamp

    @ntp_timestamp.setter
    def ntp_timestamp(self, value):
        self._info.ntp_timestamp = _check_int(value, "ntp_timestamp", 0, 0xFFFFFFFFFFFFFFFF)

    @property
    def rtp_timestamp(self):
        return self._info.rtp_timestamp

    @rtp_timestamp.setter
    def rtp_timestamp(self, value):
        self._info.rtp_timestamp = _u32(value, "rtp_timestamp")

    @property
    def packet_count(self):
        return self._info.packet_count

    @packet_count.setter
    def packet_count(self, value):
        self._info.packet_count = _u32(value, "packet_count")

    @property
    def octet_count(self):
        return self._info.octet_count

    @octet_count.setter
    def octet_count(self, value):
        self._info.octet_count = _u32(value, "octet_count")

    def serialize(self) -> bytes:
        return _serialize_report(self._ssrc, &self._info, self.reports, self._extension)

    cdef tuple _key(self):
        return (self._ssrc, self._info.ntp_timestamp, self._info.rtp_timestamp,
                self._info.packet_count, self._info.octet_count, self.reports, self._extension)

    def __repr__(self):
        return ("SenderReport(ssrc={}, ntp_timestamp={}, rtp_timestamp={}, packet_count={}, "
                "octet_count={}, reports={!r}, extension={!r})".format(*self._key()))


cdef class ReceiverReport(_Report):
    """RTCP RR (RFC 3550 §6.4.2).  ``extension`` holds any profile-specific bytes after the blocks."""

    def __init__(self, ssrc=0, reports=None, extension=b""):
        self.ssrc = ssrc
        self.reports = [] if reports is None else list(reports)
        self.extension = extension

    @property
    def packet_type(self):
        return RTCP_PT_RR

    def serialize(self) -> bytes:
        return _serialize_report(self._ssrc, NULL, self.reports, self._extension)

    def __repr__(self):
        return "ReceiverReport(ssrc={}, reports={!r}, extension={!r})".format(*self._key())


cdef class Bye:
    """RTCP BYE (RFC 3550 §6.6): the leaving SSRCs and an optional reason (raw bytes, UTF-8 by
    convention; None when absent)."""

    cdef public list sources
    cdef object _reason

    def __init__(self, sources=(), reason=None):
        self.sources = list(sources)
        self.reason = reason

    def __cinit__(self):
        self.sources = []
        self._reason = None

    @property
    def packet_type(self):
        return RTCP_PT_BYE

    @property
    def reason(self):
        return self._reason

    @reason.setter
    def reason(self, value):
        if value is None:
            self._reason = None
            return
        data = _as_bytes(value, "reason")
        if len(data) > 255:
            raise ValueError(f"BYE reason is {len(data)} bytes, max 255")
        self._reason = data

    def serialize(self) -> bytes:
        cdef uint32_t ssrcs[31]
        cdef Py_ssize_t i, count = len(self.sources), size, written
        cdef const uint8_t* reason = NULL
        cdef Py_ssize_t reason_length = 0
        if count > RTCP_MAX_COUNT:
            raise ValueError(f"at most 31 BYE sources, got {count}")
        for i in range(count):
            ssrcs[i] = _u32(self.sources[i], "source")
        size = RTCP_HEADER_SIZE + 4 * count
        if self._reason is not None:
            reason = <const uint8_t*>PyBytes_AS_STRING(self._reason)
            reason_length = len(self._reason)
            size += (1 + reason_length + 3) & ~3
        out = _new_bytes(size)
        written = rtcp_build_bye(ssrcs, count, reason, reason_length,
                                 <uint8_t*>PyBytes_AS_STRING(out), size)
        if written != size:
            raise ValueError(_build_error(written, "RTCP BYE"))
        return out

    def __eq__(self, other):
        if not isinstance(other, Bye):
            return NotImplemented
        return self.sources == (<Bye>other).sources and self._reason == (<Bye>other)._reason

    __hash__ = None

    def __repr__(self):
        return f"Bye(sources={self.sources!r}, reason={self._reason!r})"


cdef class RtcpUnknown:
    """An RTCP packet of a type this module does not decode (SDES, APP, feedback...):
    its type, count field and body (RTCP padding removed), so callers can see it."""

    cdef public int packet_type
    cdef public int count
    cdef bytes _body

    def __init__(self, packet_type, count=0, body=b""):
        self.packet_type = _check_int(packet_type, "packet_type", 0, 255)
        self.count = _check_int(count, "count", 0, RTCP_MAX_COUNT)
        self.body = body

    def __cinit__(self):
        self._body = b""

    @property
    def body(self):
        return self._body

    @body.setter
    def body(self, value):
        self._body = _as_bytes(value, "body")

    def serialize(self) -> bytes:
        cdef uint8_t* body
        _check_int(self.packet_type, "packet_type", 0, 255)
        _check_int(self.count, "count", 0, RTCP_MAX_COUNT)
        out = _rtcp_packet(<uint8_t>self.count, <uint8_t>self.packet_type, len(self._body), &body)
        if self._body:
            memcpy(body, PyBytes_AS_STRING(self._body), len(self._body))
        return out

    def __eq__(self, other):
        if not isinstance(other, RtcpUnknown):
            return NotImplemented
        cdef RtcpUnknown o = <RtcpUnknown>other
        return (self.packet_type, self.count, self._body) == (o.packet_type, o.count, o._body)

    __hash__ = None

    def __repr__(self):
        return f"RtcpUnknown(packet_type={self.packet_type}, count={self.count}, body={self._body!r})"


cdef object _rtcp_error(int code, const uint8_t* buf, Py_ssize_t n, Py_ssize_t pos):
    cdef const uint8_t* p = buf + pos
    cdef Py_ssize_t length
    cdef str msg
    if code == RTCP_ERR_SHORT:
        msg = f"RTCP packet too short: {n - pos} bytes"
    elif code == RTCP_ERR_VERSION:
        msg = f"RTCP version {p[0] >> 6}, expected 2"
    elif code == RTCP_ERR_LENGTH:
        length = _load16(p + 2)
        msg = f"RTCP length field {length} exceeds packet: {4 * (length + 1)} bytes, {n - pos} left"
    elif code == RTCP_ERR_PADDING_ZERO:
        msg = "RTCP padding length 0 is invalid"
    elif code == RTCP_ERR_PADDING:
        msg = f"RTCP padding length {p[4 * (_load16(p + 2) + 1) - 1]} exceeds packet"
    else:
        msg = f"RTCP parse error {code}"
    return MalformedPacket(msg)


cdef object _body_error(str name, int count, str what, Py_ssize_t need, Py_ssize_t got):
    return MalformedPacket(f"RTCP {name} with {count} {what} needs {need} bytes, got {got}")


cdef object _parse_one(const uint8_t* buf, const RtcpHeader* hdr):
    cdef const uint8_t* body = buf + hdr.body_offset
    cdef Py_ssize_t blen = hdr.body_length, need, pos
    cdef SenderReport sr
    cdef ReceiverReport rr
    cdef Bye bye
    cdef RtcpUnknown unknown
    cdef int i, reason_length
    if hdr.packet_type == RTCP_PT_SR:
        need = 4 + RTCP_SENDER_INFO_SIZE + RTCP_REPORT_BLOCK_SIZE * hdr.count
        if blen < need:
            raise _body_error("SR", hdr.count, "report blocks", 4 + need, 4 + blen)
        sr = SenderReport.__new__(SenderReport)
        sr._ssrc = _load32(body)
        rtcp_read_sender_info(body + 4, &sr._info)
        sr.reports = _read_blocks(body + 24, hdr.count)
        if blen > need:
            sr._extension = PyBytes_FromStringAndSize(<const char*>body + need, blen - need)
        return sr
    if hdr.packet_type == RTCP_PT_RR:
        need = 4 + RTCP_REPORT_BLOCK_SIZE * hdr.count
        if blen < need:
            raise _body_error("RR", hdr.count, "report blocks", 4 + need, 4 + blen)
        rr = ReceiverReport.__new__(ReceiverReport)
        rr._ssrc = _load32(body)
        rr.reports = _read_blocks(body + 4, hdr.count)
        if blen > need:
            rr._extension = PyBytes_FromStringAndSize(<const char*>body + need, blen - need)
        return rr
    if hdr.packet_type == RTCP_PT_BYE:
        need = 4 * hdr.count
        if blen < need:
            raise _body_error("BYE", hdr.count, "sources", 4 + need, 4 + blen)
        bye = Bye.__new__(Bye)
        bye.sources = [_load32(body + 4 * i) for i in range(hdr.count)]
        if blen > need:
            reason_length = body[need]
            if need + 1 + reason_length > blen:
                raise MalformedPacket(f"RTCP BYE reason length {reason_length} exceeds packet")
            bye._reason = PyBytes_FromStringAndSize(<const char*>body + need + 1, reason_length)
        return bye
    unknown = RtcpUnknown.__new__(RtcpUnknown)
    unknown.packet_type = hdr.packet_type
    unknown.count = hdr.count
    unknown._body = PyBytes_FromStringAndSize(<const char*>body, blen)
    return unknown


def parse_rtcp(data) -> list:
    """Every packet of an RTCP compound, in order: SenderReport, ReceiverReport, Bye, or
    RtcpUnknown for other types (SDES, APP, feedback).  MalformedPacket on bad input,
    including an empty datagram."""
    cdef Py_buffer view
    cdef RtcpHeader hdr
    cdef Py_ssize_t pos = 0
    cdef const uint8_t* buf
    cdef int rc
    packets = []
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        buf = <const uint8_t*>view.buf
        while True:
            rc = rtcp_parse_header(buf, view.len, pos, &hdr)
            if rc != RTP_OK:
                raise _rtcp_error(rc, buf, view.len, pos)
            packets.append(_parse_one(buf, &hdr))
            pos += hdr.size
            if pos >= view.len:
                break
    finally:
        PyBuffer_Release(&view)
    return packets


# What parse_rtcp returns, for annotations and isinstance checks.
RtcpPacket = SenderReport | ReceiverReport | Bye | RtcpUnknown


def build_rtcp(packets) -> bytes:
    """A compound RTCP datagram: the packets serialized back to back."""
    return b"".join([p.serialize() for p in packets])


# ---------------------------------------------------------------------------
# RFC 4733, Python level

_DIGITS = "0123456789*#ABCD"


def event_digit(event) -> object:
    """The DTMF character of an event code (0-9, *, #, A-D for 0..15), None for other events."""
    _check_int(event, "event", 0, 255)
    return _DIGITS[event] if event < 16 else None


def digit_event(digit) -> int:
    """The event code of a DTMF character (0-9, *, #, A-D, case-insensitive)."""
    if not isinstance(digit, str):
        raise TypeError(f"digit must be a str, not {type(digit).__name__}")
    index = _DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return index


cdef class TelephoneEvent:
    """One RFC 4733 event report: event code, end bit, volume (0..63, -dBm0) and duration
    (timestamp units)."""

    cdef TeEvent _e

    def __init__(self, event=0, end=False, volume=0, duration=0):
        self.event = event
        self.end = end
        self.volume = volume
        self.duration = duration

    @property
    def event(self):
        return self._e.event

    @event.setter
    def event(self, value):
        self._e.event = _check_int(value, "event", 0, 255)

    @property
    def end(self):
        return bool(self._e.end)

    @end.setter
    def end(self, value):
        self._e.end = 1 if value else 0

    @property
    def volume(self):
        return self._e.volume

    @volume.setter
    def volume(self, value):
        self._e.volume = _check_int(value, "volume", 0, 63)

    @property
    def duration(self):
        return self._e.duration

    @duration.setter
    def duration(self, value):
        self._e.duration = _check_int(value, "duration", 0, 0xFFFF)

    @property
    def digit(self):
        return _DIGITS[self._e.event] if self._e.event < 16 else None

    def serialize(self) -> bytes:
        out = _new_bytes(TELEPHONE_EVENT_SIZE)
        te_build(&self._e, <uint8_t*>PyBytes_AS_STRING(out), TELEPHONE_EVENT_SIZE)
        return out

    def __eq__(self, other):
        if not isinstance(other, TelephoneEvent):
            return NotImplemented
        cdef TelephoneEvent o = <TelephoneEvent>other
        return (self._e.event == o._e.event and self._e.end == o._e.end
                and self._e.volume == o._e.volume and self._e.duration == o._e.duration)

    __hash__ = None

    def __repr__(self):
        return (f"TelephoneEvent(event={self.event}, end={self.end}, volume={self.volume}, "
                f"duration={self.duration})")


cdef list _parse_events(object data, bint single):
    cdef Py_buffer view
    cdef Py_ssize_t n, i
    cdef TelephoneEvent ev
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        n = view.len
        if n < TELEPHONE_EVENT_SIZE:
            raise MalformedPacket(f"RFC 4733 payload too short: {n} bytes")
        if n % TELEPHONE_EVENT_SIZE:
            raise MalformedPacket(f"RFC 4733 payload length {n} is not a multiple of 4")
        if single and n != TELEPHONE_EVENT_SIZE:
            raise MalformedPacket(f"RFC 4733 payload holds {n // 4} events, expected 1")
        events = []
        for i in range(0, n, TELEPHONE_EVENT_SIZE):
            ev = TelephoneEvent.__new__(TelephoneEvent)
            te_parse(<const uint8_t*>view.buf + i, TELEPHONE_EVENT_SIZE, &ev._e)
            events.append(ev)
        return events
    finally:
        PyBuffer_Release(&view)


def parse_telephone_event(payload) -> TelephoneEvent:
    """The single event report of an RFC 4733 payload (exactly 4 bytes)."""
    return _parse_events(payload, True)[0]


def parse_telephone_events(payload) -> list:
    """Every event report of an RFC 4733 payload (RFC 4733 §2.5.1.5 allows several per packet)."""
    return _parse_events(payload, False)


def build_telephone_event(event, end=False, volume=0, duration=0) -> bytes:
    """The 4-byte RFC 4733 payload of one event report."""
    return TelephoneEvent(event, end, volume, duration).serialize()
