# L16 sample formats: RTP L16 (RFC 3551 section 4.5.11: 16-bit two's complement in
# network byte order, i.e. big-endian) and s16le (little-endian, as WAV files and
# most AI-agent audio streams carry it), both <-> native int16.
#
# C-level API: ``n`` is the number of samples; byte buffers hold 2 * n bytes.
# The code composes bytes explicitly, so it is right on either host byte order.

from libc.stdint cimport int16_t, uint8_t

cdef void l16_decode_c(const uint8_t* src, int16_t* dst, Py_ssize_t n) noexcept nogil
cdef void l16_encode_c(const int16_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil
cdef void s16le_decode_c(const uint8_t* src, int16_t* dst, Py_ssize_t n) noexcept nogil
cdef void s16le_encode_c(const int16_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil
