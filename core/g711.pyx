"""G.711 PCMU (mu-law) and PCMA (A-law), bit-exact with the ITU-T G.191 reference.

The reference (g711.c) keeps only the 14 most significant bits of a 16-bit
sample for mu-law and 13 for A-law, and folds negative samples with the one's
complement.  So a code depends only on ``x >> 2`` (mu-law) or ``x >> 4`` plus
the sign (A-law, i.e. the 12 bits ``uint16(x) >> 4``): the encoders are lookups
in 16 KiB and 4 KiB tables indexed by those top bits, the decoders lookups in
256-entry tables.  All four tables are filled once at import from closed-form
expressions of the standard (tests check them against a literal transcription
of g711.c on all 65536 inputs and 256 codes).

Python wrappers take any 1-D C-contiguous buffer (numpy arrays fastest):
``*_encode(pcm) -> bytes``, ``*_encode_into(pcm, out) -> int`` (codes written),
``*_decode(data) -> ndarray[int16]``, ``*_decode_into(data, out) -> int``
(samples written).  ``out`` may be longer than needed.
"""

from cpython.buffer cimport PyBuffer_Release
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int16_t, uint8_t, uint16_t

cimport numpy as cnp

from pbx.core.bufargs cimport ITEM_BYTE, ITEM_INT16, get_view

cnp.import_array()

ctypedef void (*encode_fn)(const int16_t*, uint8_t*, Py_ssize_t) noexcept nogil
ctypedef void (*decode_fn)(const uint8_t*, int16_t*, Py_ssize_t) noexcept nogil

cdef uint8_t ULAW_ENCODE[1 << 14]   # index: uint16(x) >> 2
cdef uint8_t ALAW_ENCODE[1 << 12]   # index: uint16(x) >> 4
cdef int16_t ULAW_DECODE[256]
cdef int16_t ALAW_DECODE[256]


cdef int bit_length(int v) noexcept nogil:
    cdef int bits = 0
    while v:
        bits += 1
        v >>= 1
    return bits


cdef uint8_t ulaw_code(int16_t x) noexcept nogil:
    # Biased magnitude of the 14-bit sample, clipped to 13 bits; its exponent is
    # the bit position of the leading 1 above bit 5 (the bias 33 guarantees one).
    cdef int biased = ((~x if x < 0 else x) >> 2) + 33
    if biased > 0x1FFF:
        biased = 0x1FFF
    cdef int exponent = bit_length(biased) - 6
    cdef int mantissa = (biased >> (exponent + 1)) & 0xF
    cdef int code = 0x7F - ((exponent << 4) | mantissa)    # mu-law sends the magnitude inverted
    return <uint8_t>(code | 0x80 if x >= 0 else code)


cdef uint8_t alaw_code(int16_t x) noexcept nogil:
    # 12-bit magnitude; segment 0 and 1 share the step size, so the mantissa
    # shift is exponent - 1 from segment 1 on.
    cdef int magnitude = (~x if x < 0 else x) >> 4
    cdef int exponent = bit_length(magnitude) - 4
    if exponent < 0:
        exponent = 0
    cdef int mantissa = (magnitude >> (exponent - 1 if exponent > 1 else 0)) & 0xF
    cdef int code = (exponent << 4) | mantissa
    if x >= 0:
        code |= 0x80
    return <uint8_t>(code ^ 0x55)                            # A-law toggles the even bits


cdef int16_t ulaw_value(uint8_t code) noexcept nogil:
    cdef int inverted = ~code & 0xFF
    cdef int exponent = (inverted >> 4) & 0x7
    cdef int magnitude = ((((inverted & 0xF) << 3) + 0x84) << exponent) - 0x84
    return <int16_t>(-magnitude if inverted & 0x80 else magnitude)


cdef int16_t alaw_value(uint8_t code) noexcept nogil:
    cdef int toggled = code ^ 0x55
    cdef int exponent = (toggled >> 4) & 0x7
    cdef int magnitude = ((toggled & 0xF) << 4) + 8        # mid-point of the step
    if exponent > 0:
        magnitude = (magnitude + 0x100) << (exponent - 1)  # implicit leading 1
    return <int16_t>(magnitude if code & 0x80 else -magnitude)


cdef void fill_tables() noexcept nogil:
    cdef int i
    for i in range(1 << 14):
        ULAW_ENCODE[i] = ulaw_code(<int16_t><uint16_t>(i << 2))
    for i in range(1 << 12):
        ALAW_ENCODE[i] = alaw_code(<int16_t><uint16_t>(i << 4))
    for i in range(256):
        ULAW_DECODE[i] = ulaw_value(<uint8_t>i)
        ALAW_DECODE[i] = alaw_value(<uint8_t>i)


fill_tables()


# --- C-level kernels -------------------------------------------------------------

cdef void ulaw_encode_c(const int16_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = ULAW_ENCODE[<uint16_t>src[i] >> 2]


cdef void ulaw_decode_c(const uint8_t* src, int16_t* dst, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = ULAW_DECODE[src[i]]


cdef void alaw_encode_c(const int16_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = ALAW_ENCODE[<uint16_t>src[i] >> 4]


cdef void alaw_decode_c(const uint8_t* src, int16_t* dst, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = ALAW_DECODE[src[i]]


# --- Python wrappers -------------------------------------------------------------

cdef bytes encode(object pcm, encode_fn kernel):
    cdef Py_buffer src
    get_view(pcm, &src, ITEM_INT16, False, "pcm")
    try:
        n = src.len // 2
        out = PyBytes_FromStringAndSize(NULL, n)
        kernel(<const int16_t*>src.buf, <uint8_t*>PyBytes_AS_STRING(out), n)
    finally:
        PyBuffer_Release(&src)
    return out


cdef Py_ssize_t encode_into(object pcm, object out, encode_fn kernel) except -1:
    cdef Py_buffer src, dst
    cdef Py_ssize_t n
    get_view(pcm, &src, ITEM_INT16, False, "pcm")
    try:
        get_view(out, &dst, ITEM_BYTE, True, "out")
        try:
            n = src.len // 2
            if dst.len < n:
                raise ValueError(f"out holds {dst.len} bytes, need {n}")
            kernel(<const int16_t*>src.buf, <uint8_t*>dst.buf, n)
        finally:
            PyBuffer_Release(&dst)
    finally:
        PyBuffer_Release(&src)
    return n


cdef cnp.ndarray decode(object data, decode_fn kernel):
    cdef Py_buffer src
    cdef cnp.npy_intp n
    cdef cnp.ndarray out
    get_view(data, &src, ITEM_BYTE, False, "data")
    try:
        n = src.len
        out = cnp.PyArray_EMPTY(1, &n, cnp.NPY_INT16, 0)
        kernel(<const uint8_t*>src.buf, <int16_t*>cnp.PyArray_DATA(out), n)
    finally:
        PyBuffer_Release(&src)
    return out


cdef Py_ssize_t decode_into(object data, object out, decode_fn kernel) except -1:
    cdef Py_buffer src, dst
    cdef Py_ssize_t n
    get_view(data, &src, ITEM_BYTE, False, "data")
    try:
        get_view(out, &dst, ITEM_INT16, True, "out")
        try:
            n = src.len
            if dst.len // 2 < n:
                raise ValueError(f"out holds {dst.len // 2} samples, need {n}")
            kernel(<const uint8_t*>src.buf, <int16_t*>dst.buf, n)
        finally:
            PyBuffer_Release(&dst)
    finally:
        PyBuffer_Release(&src)
    return n


def ulaw_encode(pcm):
    """int16 samples -> mu-law (PCMU) bytes."""
    return encode(pcm, ulaw_encode_c)


def ulaw_encode_into(pcm, out):
    """int16 samples -> mu-law codes written to ``out``; returns the number written."""
    return encode_into(pcm, out, ulaw_encode_c)


def ulaw_decode(data):
    """mu-law (PCMU) bytes -> int16 samples (numpy array)."""
    return decode(data, ulaw_decode_c)


def ulaw_decode_into(data, out):
    """mu-law bytes -> int16 samples written to ``out``; returns the number written."""
    return decode_into(data, out, ulaw_decode_c)


def alaw_encode(pcm):
    """int16 samples -> A-law (PCMA) bytes."""
    return encode(pcm, alaw_encode_c)


def alaw_encode_into(pcm, out):
    """int16 samples -> A-law codes written to ``out``; returns the number written."""
    return encode_into(pcm, out, alaw_encode_c)


def alaw_decode(data):
    """A-law (PCMA) bytes -> int16 samples (numpy array)."""
    return decode(data, alaw_decode_c)


def alaw_decode_into(data, out):
    """A-law bytes -> int16 samples written to ``out``; returns the number written."""
    return decode_into(data, out, alaw_decode_c)
