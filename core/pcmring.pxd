# A bounded int16 FIFO (C struct + inline functions): inbound audio fed by Python, the ASR tap,
# and PCM waiting to be played. No Python objects; the owner calls ring_init/ring_free.
from libc.stdint cimport int16_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

cdef struct PcmRing:
    int16_t* buf
    Py_ssize_t cap
    Py_ssize_t head      # index of the oldest sample
    Py_ssize_t size      # samples held
    Py_ssize_t dropped   # samples refused (push) or discarded (push_overwrite) because the ring was full

cdef inline int ring_init(PcmRing* r, Py_ssize_t cap) noexcept nogil:
    r.buf = <int16_t*>malloc(cap * sizeof(int16_t)) if cap > 0 else NULL
    r.cap = cap if r.buf != NULL else 0
    r.head = 0
    r.size = 0
    r.dropped = 0
    return 0 if (cap <= 0 or r.buf != NULL) else -1

cdef inline void ring_free(PcmRing* r) noexcept nogil:
    free(r.buf)
    r.buf = NULL
    r.cap = r.size = r.head = 0

cdef inline void ring_clear(PcmRing* r) noexcept nogil:
    r.head = 0
    r.size = 0

cdef inline Py_ssize_t ring_push(PcmRing* r, const int16_t* src, Py_ssize_t n) noexcept nogil:
    """Append up to the free space; returns samples taken (the rest are counted as dropped)."""
    cdef Py_ssize_t room = r.cap - r.size
    cdef Py_ssize_t take = n if n < room else room
    cdef Py_ssize_t tail = (r.head + r.size) % r.cap if r.cap else 0
    cdef Py_ssize_t first = take if take < r.cap - tail else r.cap - tail
    if take > 0:
        memcpy(r.buf + tail, src, first * sizeof(int16_t))
        if take > first:
            memcpy(r.buf, src + first, (take - first) * sizeof(int16_t))
        r.size += take
    r.dropped += n - take
    return take

cdef inline void ring_push_overwrite(PcmRing* r, const int16_t* src, Py_ssize_t n) noexcept nogil:
    """Append all of ``src``, discarding the oldest samples if full (a capped history)."""
    cdef Py_ssize_t excess
    if r.cap == 0:
        r.dropped += n
        return
    if n > r.cap:
        r.dropped += n - r.cap
        src += n - r.cap
        n = r.cap
    excess = r.size + n - r.cap
    if excess > 0:
        ring_skip(r, excess)      # excess <= size, since n <= cap
        r.dropped += excess
    ring_push(r, src, n)

cdef inline Py_ssize_t ring_peek(const PcmRing* r, int16_t* dst, Py_ssize_t n) noexcept nogil:
    """Copy up to ``n`` of the oldest samples into ``dst`` without consuming them."""
    cdef Py_ssize_t take = n if n < r.size else r.size
    cdef Py_ssize_t first = take if take < r.cap - r.head else r.cap - r.head
    if take > 0:
        memcpy(dst, r.buf + r.head, first * sizeof(int16_t))
        if take > first:
            memcpy(dst + first, r.buf, (take - first) * sizeof(int16_t))
    return take


cdef inline void ring_skip(PcmRing* r, Py_ssize_t n) noexcept nogil:
    """Discard up to ``n`` of the oldest samples."""
    if n > r.size:
        n = r.size
    if n > 0:
        r.head = (r.head + n) % r.cap
        r.size -= n


cdef inline Py_ssize_t ring_pop(PcmRing* r, int16_t* dst, Py_ssize_t n) noexcept nogil:
    """Move up to ``n`` of the oldest samples into ``dst``; returns the count."""
    cdef Py_ssize_t take = ring_peek(r, dst, n)
    ring_skip(r, take)
    return take
