# C-level API of pbx.core.rtp: RTP (RFC 3550), RTCP SR/RR/BYE and RFC 4733
# telephone events, parsed and built over caller-owned byte buffers.
#
# Every function here is `noexcept nogil`, allocates nothing and touches no
# Python object, so the engine can call them per packet from compiled code.
# Parsers return RTP_OK (0) or a negative RtpStatus; builders return the number
# of bytes written or a negative RtpStatus.  Multi-byte fields are big-endian on
# the wire and host-order in the structs.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t

cdef enum:
    RTP_HEADER_SIZE = 12        # fixed header, before CSRCs and extension
    RTP_MAX_CSRC = 15           # the CC field is 4 bits
    RTCP_HEADER_SIZE = 4
    RTCP_REPORT_BLOCK_SIZE = 24
    RTCP_SENDER_INFO_SIZE = 20
    RTCP_MAX_COUNT = 31         # the RC/SC field is 5 bits
    TELEPHONE_EVENT_SIZE = 4

    RTCP_PT_SR = 200
    RTCP_PT_RR = 201
    RTCP_PT_SDES = 202
    RTCP_PT_BYE = 203
    RTCP_PT_APP = 204

cdef enum RtpStatus:
    RTP_OK = 0
    # RTP parse
    RTP_ERR_SHORT = -1          # fewer than 12 bytes
    RTP_ERR_VERSION = -2        # V != 2
    RTP_ERR_CSRC = -3           # CSRC list runs past the end
    RTP_ERR_EXTENSION = -4      # extension header or data runs past the end
    RTP_ERR_PADDING = -5        # pad count larger than what follows the header
    RTP_ERR_PADDING_ZERO = -6   # pad count 0 (it counts itself, so >= 1)
    # builders (RTP, RTCP, RFC 4733)
    RTP_ERR_CAPACITY = -7       # output buffer too small
    RTP_ERR_FIELD = -8          # a field out of range (caller bug, not peer data)
    # RTCP parse
    RTCP_ERR_SHORT = -11        # fewer than 4 bytes left for a header
    RTCP_ERR_VERSION = -12
    RTCP_ERR_LENGTH = -13       # length field runs past the end
    RTCP_ERR_PADDING = -14
    RTCP_ERR_PADDING_ZERO = -15
    RTCP_ERR_BODY = -16         # body too short for its type and count
    RTCP_ERR_BYE_REASON = -17   # BYE reason length runs past the body
    # RFC 4733
    TE_ERR_SHORT = -21

cdef struct RtpHeader:
    uint8_t marker              # 0 or 1
    uint8_t payload_type        # 0..127
    uint16_t sequence
    uint32_t timestamp
    uint32_t ssrc
    uint8_t csrc_count          # 0..15
    uint32_t csrc[15]
    uint8_t extension           # X bit; an extension may be present with 0 data bytes
    uint16_t ext_profile        # "defined by profile" (0xBEDE, 0x100x for RFC 8285)
    const uint8_t* ext_data     # parse: points into the parsed buffer; build: read from here
    Py_ssize_t ext_offset       # parse only: offset of ext_data in the packet
    Py_ssize_t ext_length       # bytes, a multiple of 4
    uint8_t padding_length      # 0 = no P bit; else pad bytes including the count byte
    Py_ssize_t payload_offset   # parse only
    Py_ssize_t payload_length   # parse only (padding excluded)

cdef struct RtcpHeader:
    uint8_t count               # RC / SC / subtype field
    uint8_t packet_type
    uint16_t length             # the raw length field: 32-bit words minus one
    uint8_t padding_length      # 0 when P is clear
    Py_ssize_t size             # bytes of this packet, header included
    Py_ssize_t body_offset      # absolute offset just after the 4-byte header
    Py_ssize_t body_length      # body bytes, padding excluded

cdef struct RtcpSenderInfo:
    uint64_t ntp_timestamp      # 32.32 fixed point
    uint32_t rtp_timestamp
    uint32_t packet_count
    uint32_t octet_count

cdef struct RtcpReportBlock:
    uint32_t ssrc
    uint8_t fraction_lost
    int32_t cumulative_lost     # signed 24-bit on the wire
    uint32_t highest_sequence   # extended highest sequence number received
    uint32_t jitter
    uint32_t lsr
    uint32_t dlsr

cdef struct TeEvent:
    uint8_t event
    uint8_t end                 # E bit, 0 or 1
    uint8_t volume              # 0..63 (-dBm0)
    uint16_t duration           # timestamp units

# RTP
cdef int rtp_parse(const uint8_t* buf, Py_ssize_t n, RtpHeader* out) noexcept nogil
cdef Py_ssize_t rtp_header_size(const RtpHeader* h) noexcept nogil
cdef Py_ssize_t rtp_write_header(const RtpHeader* h, uint8_t* out, Py_ssize_t cap) noexcept nogil
cdef Py_ssize_t rtp_build(const RtpHeader* h, const uint8_t* payload, Py_ssize_t n,
                          uint8_t* out, Py_ssize_t cap) noexcept nogil

# RTCP: walk a compound with rtcp_parse_header(buf, n, pos) then pos += hdr.size.
cdef int rtcp_parse_header(const uint8_t* buf, Py_ssize_t n, Py_ssize_t pos,
                           RtcpHeader* out) noexcept nogil
cdef void rtcp_read_sender_info(const uint8_t* p, RtcpSenderInfo* out) noexcept nogil
cdef void rtcp_read_report_block(const uint8_t* p, RtcpReportBlock* out) noexcept nogil
cdef void rtcp_write_header(uint8_t* out, uint8_t padding, uint8_t count, uint8_t packet_type,
                            Py_ssize_t size) noexcept nogil
cdef void rtcp_write_sender_info(uint8_t* out, const RtcpSenderInfo* info) noexcept nogil
cdef void rtcp_write_report_block(uint8_t* out, const RtcpReportBlock* block) noexcept nogil
cdef Py_ssize_t rtcp_build_rr(uint32_t ssrc, const RtcpReportBlock* blocks, Py_ssize_t count,
                              uint8_t* out, Py_ssize_t cap) noexcept nogil
cdef Py_ssize_t rtcp_build_sr(uint32_t ssrc, const RtcpSenderInfo* info,
                              const RtcpReportBlock* blocks, Py_ssize_t count,
                              uint8_t* out, Py_ssize_t cap) noexcept nogil
cdef Py_ssize_t rtcp_build_bye(const uint32_t* ssrcs, Py_ssize_t count,
                               const uint8_t* reason, Py_ssize_t reason_length,
                               uint8_t* out, Py_ssize_t cap) noexcept nogil

# RFC 4733
cdef int te_parse(const uint8_t* buf, Py_ssize_t n, TeEvent* out) noexcept nogil
cdef Py_ssize_t te_build(const TeEvent* ev, uint8_t* out, Py_ssize_t cap) noexcept nogil
