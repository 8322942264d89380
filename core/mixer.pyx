"""Mix int16 streams with per-input gains; interleave two mono streams into stereo.

Fixed point, chosen so the 32-bit sum cannot overflow: a gain is Q10
(``gain_q = floor(gain * 1024 + 0.5)``, 1.0 == 1024, resolution 0.0085 dB at
unity) limited to [0, 4.0] (+12 dB), and at most 16 inputs are mixed.  The
largest possible magnitude of the sum is then 16 * 32768 * 4096 = 2**31, reached
only by the negative extreme, where -2**31 + 512 (the rounding offset) is still
an int32.  Q10 rather than Q12/Q15: the budget is 31 bits = 15 (sample) +
4 (16 inputs) + 2 (gain up to 4) + Q, so Q10 is the finest scale that keeps
gains above 1 and 16 inputs.  The sum is rounded half up (``+512 >> 10``) and
saturated to int16 once, at the end.

Python wrappers: ``mix(inputs, gains) -> ndarray[int16]`` and
``mix_into(inputs, gains, out) -> int`` (samples written); gains are floats.
``interleave_stereo(left, right) -> ndarray[int16]`` and
``interleave_stereo_into(left, right, out) -> int`` (int16 values written, 2 n).
"""

from cpython.buffer cimport PyBuffer_Release
from libc.math cimport floor
from libc.stdint cimport int16_t, int32_t

cimport numpy as cnp

from pbx.core.bufargs cimport ITEM_INT16, get_view, pbx_view_clear

cnp.import_array()

GAIN_Q_ONE = 1 << GAIN_Q_BITS
MAX_INPUTS = MIX_MAX_INPUTS
cdef double MAX_GAIN_C = MIX_MAX_GAIN_Q / <double>(1 << GAIN_Q_BITS)
MAX_GAIN = MAX_GAIN_C

cdef enum:
    MIX_BLOCK = 256   # the int32 accumulator lives on the stack, this many samples at a time


# --- C-level kernels -------------------------------------------------------------

cdef void mix_c(const int16_t** inputs, const int32_t* gains_q, int n_inputs,
                int16_t* out, Py_ssize_t n) noexcept nogil:
    cdef int32_t acc[MIX_BLOCK]
    cdef Py_ssize_t start = 0, m, i
    cdef int k
    cdef int32_t v
    cdef int16_t gain                                  # <= MIX_MAX_GAIN_Q: a 16x16->32 multiply
    cdef const int16_t* src
    while start < n:
        m = n - start if n - start < MIX_BLOCK else MIX_BLOCK
        for i in range(m):
            acc[i] = 1 << (GAIN_Q_BITS - 1)           # rounding offset, added once
        # One pass per input over a block: each loop is a vectorisable multiply-add.
        for k in range(n_inputs):
            src = inputs[k] + start
            gain = gains_q[k]
            for i in range(m):
                acc[i] += src[i] * gain
        for i in range(m):
            v = acc[i] >> GAIN_Q_BITS
            if v > 32767:
                v = 32767
            elif v < -32768:
                v = -32768
            out[start + i] = <int16_t>v
        start += m


cdef void interleave_stereo_c(const int16_t* left, const int16_t* right,
                              int16_t* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[2 * i] = left[i]
        out[2 * i + 1] = right[i]


# --- Python wrappers -------------------------------------------------------------

cdef int32_t gain_to_q_c(double gain) noexcept nogil:
    # Clamped, for C callers; NaN maps to 0.  Same rounding as the checked Python path.
    if not (gain > 0.0):
        return 0
    if gain >= MAX_GAIN_C:
        return MIX_MAX_GAIN_Q
    return <int32_t>floor(gain * (1 << GAIN_Q_BITS) + 0.5)


cdef int32_t to_gain_q(object gain, Py_ssize_t index) except -1:
    cdef double g
    try:
        g = gain
    except TypeError:
        raise TypeError(f"gains[{index}] must be a real number, not {type(gain).__name__}") from None
    if not (0.0 <= g <= MAX_GAIN_C):                      # also rejects NaN
        raise ValueError(f"gains[{index}] = {gain!r} is outside [0, {MAX_GAIN_C:g}]")
    return gain_to_q_c(g)


def gain_to_q(gain):
    """The Q10 fixed-point integer the mixer uses for ``gain`` (0 <= gain <= 4)."""
    return to_gain_q(gain, 0)


INPUT_NAMES = tuple(f"inputs[{k}]" for k in range(MIX_MAX_INPUTS))   # built once, for messages


cdef Py_ssize_t acquire_inputs(object inputs, object gains, Py_buffer* views, const int16_t** ptrs,
                               int32_t* gains_q, int* acquired) except -1:
    """Check the arguments, convert the gains and take a view of every input.

    Returns the common input length; ``acquired[0]`` counts the views the caller
    must release (also on error).
    """
    cdef Py_ssize_t n_inputs = len(inputs), k, n = 0, m
    if len(gains) != n_inputs:
        raise ValueError(f"got {n_inputs} inputs and {len(gains)} gains")
    if n_inputs < 1 or n_inputs > MIX_MAX_INPUTS:
        raise ValueError(f"mix takes 1 to {MIX_MAX_INPUTS} inputs, got {n_inputs}")
    for k in range(n_inputs):
        gains_q[k] = to_gain_q(gains[k], k)
    for k in range(n_inputs):
        get_view(inputs[k], &views[k], ITEM_INT16, False, INPUT_NAMES[k])
        acquired[0] += 1
        ptrs[k] = <const int16_t*>views[k].buf
        m = views[k].len // 2
        if k == 0:
            n = m
        elif m != n:
            raise ValueError(f"inputs[{k}] has {m} samples, inputs[0] has {n}")
    return n


cdef inline void release_all(Py_buffer* views, int count) noexcept:
    cdef int k
    for k in range(count):
        PyBuffer_Release(&views[k])


def mix(inputs, gains):
    """Mix equal-length int16 ``inputs`` with float ``gains`` -> new int16 array."""
    cdef Py_buffer views[MIX_MAX_INPUTS]
    cdef const int16_t* ptrs[MIX_MAX_INPUTS]
    cdef int32_t gains_q[MIX_MAX_INPUTS]
    cdef int acquired = 0
    cdef cnp.npy_intp n
    cdef cnp.ndarray out
    try:
        n = acquire_inputs(inputs, gains, views, ptrs, gains_q, &acquired)
        out = cnp.PyArray_EMPTY(1, &n, cnp.NPY_INT16, 0)
        mix_c(ptrs, gains_q, acquired, <int16_t*>cnp.PyArray_DATA(out), n)
    finally:
        release_all(views, acquired)
    return out


def mix_into(inputs, gains, out):
    """Mix equal-length int16 ``inputs`` with float ``gains`` into ``out``; returns the samples written."""
    cdef Py_buffer views[MIX_MAX_INPUTS]
    cdef Py_buffer dst
    cdef const int16_t* ptrs[MIX_MAX_INPUTS]
    cdef int32_t gains_q[MIX_MAX_INPUTS]
    cdef int acquired = 0
    cdef Py_ssize_t n
    try:
        n = acquire_inputs(inputs, gains, views, ptrs, gains_q, &acquired)
        get_view(out, &dst, ITEM_INT16, True, "out")
        try:
            if dst.len // 2 < n:
                raise ValueError(f"out holds {dst.len // 2} samples, need {n}")
            mix_c(ptrs, gains_q, acquired, <int16_t*>dst.buf, n)
        finally:
            PyBuffer_Release(&dst)
    finally:
        release_all(views, acquired)
    return n


cdef Py_ssize_t acquire_pair(object left, object right, Py_buffer* lv, Py_buffer* rv) except -1:
    """Views of both channels (the caller releases both, also on error); returns their length."""
    get_view(left, lv, ITEM_INT16, False, "left")
    get_view(right, rv, ITEM_INT16, False, "right")
    if lv.len != rv.len:
        raise ValueError(f"left has {lv.len // 2} samples, right has {rv.len // 2}")
    return lv.len // 2


def interleave_stereo(left, right):
    """Two int16 channels -> new interleaved int16 array [L0, R0, L1, R1, ...]."""
    cdef Py_buffer lv, rv
    cdef cnp.npy_intp n, total
    cdef cnp.ndarray out
    pbx_view_clear(&lv)
    pbx_view_clear(&rv)
    try:
        n = acquire_pair(left, right, &lv, &rv)
        total = 2 * n
        out = cnp.PyArray_EMPTY(1, &total, cnp.NPY_INT16, 0)
        interleave_stereo_c(<const int16_t*>lv.buf, <const int16_t*>rv.buf,
                            <int16_t*>cnp.PyArray_DATA(out), n)
    finally:
        PyBuffer_Release(&rv)
        PyBuffer_Release(&lv)
    return out


def interleave_stereo_into(left, right, out):
    """Two int16 channels -> interleaved samples written to ``out``; returns the values written (2 n)."""
    cdef Py_buffer lv, rv, dst
    cdef Py_ssize_t n
    pbx_view_clear(&lv)
    pbx_view_clear(&rv)
    try:
        n = acquire_pair(left, right, &lv, &rv)
        get_view(out, &dst, ITEM_INT16, True, "out")
        try:
            if dst.len // 2 < 2 * n:
                raise ValueError(f"out holds {dst.len // 2} samples, need {2 * n}")
            interleave_stereo_c(<const int16_t*>lv.buf, <const int16_t*>rv.buf, <int16_t*>dst.buf, n)
        finally:
            PyBuffer_Release(&dst)
    finally:
        PyBuffer_Release(&rv)
        PyBuffer_Release(&lv)
    return 2 * n
