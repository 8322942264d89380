"""L16 (RTP, big-endian) and s16le byte streams <-> native int16 samples.

Python wrappers take any 1-D C-contiguous buffer (numpy arrays fastest):
``*_decode(data) -> ndarray[int16]``, ``*_decode_into(data, out) -> int``
(samples written), ``*_encode(pcm) -> bytes``, ``*_encode_into(pcm, out) -> int``
(bytes written).  ``out`` may be longer than needed.  An odd number of bytes
cannot be 16-bit samples: for an RTP L16 payload (bytes from a peer) that is a
:class:`~pbx.core.errors.MalformedPacket`, for s16le a plain ``ValueError``.
"""

from cpython.buffer cimport PyBuffer_Release
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int16_t, uint8_t, uint16_t

cimport numpy as cnp

from pbx.core.bufargs cimport ITEM_BYTE, ITEM_INT16, get_view

from pbx.core.errors import MalformedPacket

cnp.import_array()

ctypedef void (*encode_fn)(const int16_t*, uint8_t*, Py_ssize_t) noexcept nogil
ctypedef void (*decode_fn)(const uint8_t*, int16_t*, Py_ssize_t) noexcept nogil


# --- C-level kernels -------------------------------------------------------------
# Written as byte composition rather than a host-dependent swap or memcpy: GCC
# turns these loops into vector byte shuffles (or plain copies) for the host.

cdef void l16_decode_c(const uint8_t* src, int16_t* dst, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = <int16_t>(<uint16_t>((src[2 * i] << 8) | src[2 * i + 1]))


cdef void l16_encode_c(const int16_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint16_t v
    for i in range(n):
        v = <uint16_t>src[i]
        dst[2 * i] = <uint8_t>(v >> 8)
        dst[2 * i + 1] = <uint8_t>(v & 0xFF)


cdef void s16le_decode_c(const uint8_t* src, int16_t* dst, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = <int16_t>(<uint16_t>(src[2 * i] | (src[2 * i + 1] << 8)))


cdef void s16le_encode_c(const int16_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint16_t v
    for i in range(n):
        v = <uint16_t>src[i]
        dst[2 * i] = <uint8_t>(v & 0xFF)
        dst[2 * i + 1] = <uint8_t>(v >> 8)


# --- Python wrappers -------------------------------------------------------------

cdef int check_even(Py_ssize_t nbytes, bint from_peer) except -1:
    if nbytes & 1:
        if from_peer:
            raise MalformedPacket(f"L16 payload has odd length {nbytes}")
        raise ValueError(f"s16le data has odd length {nbytes}")
    return 0


cdef cnp.ndarray decode(object data, decode_fn kernel, bint from_peer):
    cdef Py_buffer src
    cdef cnp.npy_intp n
    cdef cnp.ndarray out
    get_view(data, &src, ITEM_BYTE, False, "data")
    try:
        check_even(src.len, from_peer)
        n = src.len // 2
        out = cnp.PyArray_EMPTY(1, &n, cnp.NPY_INT16, 0)
        kernel(<const uint8_t*>src.buf, <int16_t*>cnp.PyArray_DATA(out), n)
    finally:
        PyBuffer_Release(&src)
    return out


cdef Py_ssize_t decode_into(object data, object out, decode_fn kernel, bint from_peer) except -1:
    cdef Py_buffer src, dst
    cdef Py_ssize_t n
    get_view(data, &src, ITEM_BYTE, False, "data")
    try:
        get_view(out, &dst, ITEM_INT16, True, "out")
        try:
            check_even(src.len, from_peer)
            n = src.len // 2
            if dst.len // 2 < n:
                raise ValueError(f"out holds {dst.len // 2} samples, need {n}")
            kernel(<const uint8_t*>src.buf, <int16_t*>dst.buf, n)
        finally:
            PyBuffer_Release(&dst)
    finally:
        PyBuffer_Release(&src)
    return n


cdef bytes encode(object pcm, encode_fn kernel):
    cdef Py_buffer src
    get_view(pcm, &src, ITEM_INT16, False, "pcm")
    try:
        out = PyBytes_FromStringAndSize(NULL, src.len)
        kernel(<const int16_t*>src.buf, <uint8_t*>PyBytes_AS_STRING(out), src.len // 2)
    finally:
        PyBuffer_Release(&src)
    return out


cdef Py_ssize_t encode_into(object pcm, object out, encode_fn kernel) except -1:
    cdef Py_buffer src, dst
    cdef Py_ssize_t nbytes
    get_view(pcm, &src, ITEM_INT16, False, "pcm")
    try:
        get_view(out, &dst, ITEM_BYTE, True, "out")
        try:
            nbytes = src.len
            if dst.len < nbytes:
                raise ValueError(f"out holds {dst.len} bytes, need {nbytes}")
            kernel(<const int16_t*>src.buf, <uint8_t*>dst.buf, nbytes // 2)
        finally:
            PyBuffer_Release(&dst)
    finally:
        PyBuffer_Release(&src)
    return nbytes


def l16_decode(payload):
    """RTP L16 payload (big-endian) -> int16 samples (numpy array)."""
    return decode(payload, l16_decode_c, True)


def l16_decode_into(payload, out):
    """RTP L16 payload -> int16 samples written to ``out``; returns the number of samples."""
    return decode_into(payload, out, l16_decode_c, True)


def l16_encode(pcm):
    """int16 samples -> RTP L16 payload (big-endian bytes)."""
    return encode(pcm, l16_encode_c)


def l16_encode_into(pcm, out):
    """int16 samples -> big-endian bytes written to ``out``; returns the number of bytes."""
    return encode_into(pcm, out, l16_encode_c)


def s16le_decode(data):
    """Little-endian 16-bit bytes -> int16 samples (numpy array)."""
    return decode(data, s16le_decode_c, False)


def s16le_decode_into(data, out):
    """Little-endian 16-bit bytes -> int16 samples written to ``out``; returns the number of samples."""
    return decode_into(data, out, s16le_decode_c, False)


def s16le_encode(pcm):
    """int16 samples -> little-endian 16-bit bytes."""
    return encode(pcm, s16le_encode_c)


def s16le_encode_into(pcm, out):
    """int16 samples -> little-endian bytes written to ``out``; returns the number of bytes."""
    return encode_into(pcm, out, s16le_encode_c)
