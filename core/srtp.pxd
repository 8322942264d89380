# SRTP and SRTCP protection of one direction of a leg (libsrtp2): see srtp.pyx.
from libc.stdint cimport uint8_t, uint64_t
from pbx.core.includes.srtp cimport srtp_t

cdef enum:
    SRTP_TRAILER_MAX = 148           # what protect may append (SRTP_MAX_TRAILER_LEN of libsrtp2 2.x, + SRTCP index)

cdef class SrtpSession:
    cdef srtp_t session
    cdef readonly str profile
    cdef readonly bint outbound
    cdef readonly uint64_t failures  # packets refused by unprotect (authentication, replay) or protect

    cdef int protect(self, uint8_t* buf, int* length, bint rtcp) noexcept nogil
    cdef int unprotect(self, uint8_t* buf, int* length, bint rtcp) noexcept nogil
    cdef bytes _apply(self, bytes packet, bint rtcp, bint protect)
