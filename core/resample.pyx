"""Streaming polyphase FIR resampler for the 20 ms real-time path (int16 in and out).

Why not soxr: streamed in 20 ms chunks, its quick mode ("QQ") leaves images
only ~6 dB down when up-sampling and does no anti-alias filtering when
down-sampling, and its good modes ("LQ" and up) hold back 20-115 ms of output
and release it in bursts (tests/test_resample.py and the bench measure both).
Here every call returns exactly ``n * out_rate / in_rate`` samples at once:
the filters are causal, so the only added latency is their group delay.

Pairs (``up/down`` = out_rate/in_rate in lowest terms; a call takes a multiple
of ``down`` samples, the input step): 8000<->16000, 8000<->48000,
16000<->24000, 16000<->48000.

Passband: 0 to 3400 Hz when either side is 8 kHz (telephony), else 0.85 x the
lower Nyquist frequency (6800 Hz when the lower rate is 16 kHz).  The bar,
measured with swept sines: for a tone anywhere in the passband, all output
energy other than the tone (images, aliases, noise) is at least 60 dB below it,
and an input tone that would alias into the passband (from ``out_rate - edge``
up to the input Nyquist frequency) comes out at least 60 dB down.  Between the
passband edge and its mirror image about the lower Nyquist frequency lies the
transition band, where nothing is promised.  Passband ripple +-0.01 dB.

Design: a Kaiser-windowed sinc (Kaiser's formula for 75 dB: beta = 7.306),
computed at construction at the up-sampled rate ``in_rate * up`` and cut off
at the lower Nyquist frequency, so the transition band is symmetric about it.
For the interpolators that cutoff is ``rate / (2 * up)``: every up-th tap from
the centre is zero and one output phase is a plain copy of the input (the
half-band saving for 8->16 kHz; a third saved for 16->48 and 16->24, a sixth
for 8->48 kHz).
Taps are rounded to Q15 with gain ``up``; each output sample is an exact
integer dot product of int16 history and int16 taps, rounded and saturated
once.  No float and no reassociation, so no -ffast-math question: gcc -O3
vectorises the dot product to SSE2 ``pmaddwd`` with the default flags.

================  =====  ========  ==========  ========  =========  ====================
pair (Hz)         taps   proto Hz  transition  stopband  taps/out   delay (out samples)
================  =====  ========  ==========  ========  =========  ====================
8000  -> 16000    63     16000     3400-4600   74.2 dB   32 (+copy) 31 (1.94 ms)
16000 -> 8000     63     16000     3400-4600   70.2 dB   64         15 (1.88 ms)
16000 -> 48000    95     48000     6800-9200   73.3 dB   32 (+copy) 47 (0.98 ms)
48000 -> 16000    95     48000     6800-9200   70.2 dB   96         15 (0.94 ms)
24000 -> 16000    95     48000     6800-9200   71.7 dB   48         15 (0.94 ms)
16000 -> 24000    95     48000     6800-9200   73.3 dB   32 (+copy) 23 (0.96 ms)
8000  -> 48000    189    48000     3400-4600   74.1 dB   32 (+copy) 94 (1.96 ms)
48000 -> 8000     189    48000     3400-4600   68.6 dB   192        15 (1.88 ms)
================  =====  ========  ==========  ========  =========  ====================

Stopband: worst response of the Q15 taps from the transition's upper edge to
the prototype's Nyquist frequency (the decimators' taps have gain 1, so
rounding costs them a few dB).  Passband ripple of the taps: +-0.003 dB.
taps/out: multiply-adds per output sample, rows zero-padded to a multiple of
16; the decimators also multiply their filters' zero taps, which is cheaper
than de-interleaving the input.  Polyphase: output ``m`` is the filtered up-sampled
signal at index ``m * down + p`` with ``p = centre mod down``, the latest
phase the current block of ``down`` inputs can feed, which makes the delay a
whole number of output samples (``centre // down``).
"""

from cpython.buffer cimport PyBuffer_Release
from libc.math cimport M_PI, floor, sin, sqrt
from libc.stdint cimport INT32_MAX, int16_t, int32_t, int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memmove, memset

import numpy as np

cimport numpy as cnp

from pbx.core.bufargs cimport ITEM_INT16, get_view

cnp.import_array()

cdef enum:
    CHUNK_SAMPLES = 1920       # input per pass: 40 ms at 48 kHz, divisible by every input step
    Q15_ONE = 32768

# Kaiser's formula for 75 dB of stopband attenuation: beta = 0.1102 * (75 - 8.7).
KAISER_BETA = 0.1102 * (75.0 - 8.7)

# prototype rate, passband edge, stopband edge (Hz), taps (odd)
DESIGNS = {
    "16k": (16000, 3400.0, 4600.0, 63),
    "48k-wide": (48000, 6800.0, 9200.0, 95),
    "48k-narrow": (48000, 3400.0, 4600.0, 189),
}
# (in_rate, out_rate) -> (up, down, design)
PAIRS = {
    (8000, 16000): (2, 1, "16k"),
    (16000, 8000): (1, 2, "16k"),
    (16000, 48000): (3, 1, "48k-wide"),
    (48000, 16000): (1, 3, "48k-wide"),
    (24000, 16000): (2, 3, "48k-wide"),
    (16000, 24000): (3, 2, "48k-wide"),
    (8000, 48000): (6, 1, "48k-narrow"),
    (48000, 8000): (1, 6, "48k-narrow"),
}
SUPPORTED = "8000<->16000, 8000<->48000, 16000<->24000, 16000<->48000"


cdef double bessel_i0(double x) noexcept:
    """Modified Bessel function of the first kind, order 0 (power series)."""
    cdef double term = 1.0, total = 1.0, half = x / 2.0
    cdef int k = 1
    while term > 1e-17 * total:
        term *= (half / k) * (half / k)
        total += term
        k += 1
    return total


def design_taps(int up, int proto_rate, double f_pass, double f_stop, int ntaps):
    """Kaiser-windowed sinc cut off mid-transition, gain ``up``, rounded to Q15 (int32 array)."""
    cdef double cutoff = (f_pass + f_stop) / proto_rate   # mid-transition, as a fraction of Nyquist
    cdef double centre = (ntaps - 1) / 2.0
    cdef double i0_beta = bessel_i0(KAISER_BETA)
    cdef double n, arg, sinc, ratio, window
    cdef int i
    taps = np.empty(ntaps, dtype=np.int32)
    for i in range(ntaps):
        n = i - centre
        if n == 0:
            sinc = 1.0
        else:
            arg = M_PI * (cutoff * n)
            sinc = sin(arg) / arg
        ratio = n / centre
        window = bessel_i0(KAISER_BETA * sqrt(1.0 - ratio * ratio)) / i0_beta
        taps[i] = <int32_t>floor(up * cutoff * sinc * window * Q15_ONE + 0.5)
    return taps


cdef inline int64_t dot_q15(const int16_t* x, const int16_t* taps, Py_ssize_t n) noexcept nogil:
    """Exact sum of x[i] * taps[i] over n (even) samples.

    A full-scale input whose signs follow the taps' can need more than 32 bits
    (a sinc row's absolute sum exceeds 2.0), so each half of the row is summed
    in its own int32 (the design bounds each below 2**31) and the halves are
    added in 64 bits.  One flat loop: gcc -O3 turns it into pmaddwd even under
    CPython's -fwrapv, which defeats the vectoriser on nested loops.
    """
    cdef int32_t older = 0, newer = 0
    cdef Py_ssize_t i, half = n >> 1
    cdef const int16_t* x2 = x + half
    cdef const int16_t* taps2 = taps + half
    for i in range(half):
        older += <int32_t>x[i] * <int32_t>taps[i]
        newer += <int32_t>x2[i] * <int32_t>taps2[i]
    return <int64_t>older + newer


cdef inline int16_t round_q15(int64_t acc) noexcept nogil:
    cdef int64_t v = (acc + (Q15_ONE >> 1)) >> 15
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return <int16_t>v


cdef class Resampler:
    """Resample int16 audio from ``in_rate`` to ``out_rate``, streaming (state kept across calls)."""

    def __cinit__(self, int in_rate, int out_rate):
        pair = PAIRS.get((in_rate, out_rate))
        if pair is None:
            raise ValueError(f"unsupported resampling {in_rate} -> {out_rate} Hz; supported pairs: {SUPPORTED}")
        up, down, name = pair
        proto_rate, f_pass, f_stop, n_proto = DESIGNS[name]
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.ratio_up = up
        self.ratio_down = down
        taps = design_taps(up, proto_rate, f_pass, f_stop, n_proto)
        self._taps = taps
        cdef Py_ssize_t centre = (n_proto - 1) // 2
        cdef Py_ssize_t phase0 = centre % down    # latest phase the current input block can feed
        self.delay_samples = centre // down
        self.ntaps = ((n_proto + up - 1) // up + 15) // 16 * 16
        self.hist = self.ntaps
        self.chunk = CHUNK_SAMPLES // down * down
        self.buf = <int16_t*>calloc(self.hist + self.chunk, sizeof(int16_t))
        self.coefs = <int16_t*>calloc(up * self.ntaps, sizeof(int16_t))
        if self.buf == NULL or self.coefs == NULL:
            raise MemoryError()
        cdef Py_ssize_t r, t, index, phase
        for r in range(up):
            index = r * down + phase0                  # up-sampled index of slot r in block 0
            phase = index % up
            self.newest[r] = (index - phase) // up
            row = taps[phase::up]
            nonzero = np.flatnonzero(row)
            if len(nonzero) == 1 and row[nonzero[0]] == Q15_ONE:
                self.copy_back[r] = nonzero[0]         # this phase is a pure delay
                continue
            self.copy_back[r] = -1
            padded = np.zeros(self.ntaps, dtype=np.int64)
            padded[self.ntaps - len(row):] = row[::-1]        # oldest sample first
            halves = np.abs(padded).reshape(2, -1).sum(axis=1)
            if np.abs(row).max() > 32767 or 32768 * int(halves.max()) > INT32_MAX:
                raise RuntimeError(f"filter design for {in_rate} -> {out_rate} Hz overflows Q15")
            for t in range(self.ntaps):
                self.coefs[r * self.ntaps + t] = <int16_t>padded[t]

    def __dealloc__(self):
        free(self.buf)
        free(self.coefs)

    cdef void clear(self) noexcept nogil:
        memset(self.buf, 0, self.hist * sizeof(int16_t))

    cdef Py_ssize_t process_c(self, const int16_t* src, Py_ssize_t n, int16_t* dst) noexcept nogil:
        cdef Py_ssize_t up = self.ratio_up, down = self.ratio_down
        if n < 0 or n % down:
            return -1
        cdef Py_ssize_t ntaps = self.ntaps, hist = self.hist
        cdef int16_t* buf = self.buf
        cdef const int16_t* row
        cdef const int16_t* x
        cdef int16_t* out
        cdef Py_ssize_t done = 0, written = 0, step, blocks, r, b, back
        while done < n:
            step = min(n - done, self.chunk)
            memcpy(buf + hist, src + done, step * sizeof(int16_t))
            blocks = step // down
            for r in range(up):
                out = dst + written + r
                x = buf + hist + self.newest[r]      # newest input of slot r in block 0
                back = self.copy_back[r]
                if back >= 0:
                    x -= back
                    for b in range(blocks):
                        out[b * up] = x[b * down]
                else:
                    row = self.coefs + r * ntaps
                    x -= ntaps - 1
                    for b in range(blocks):
                        out[b * up] = round_q15(dot_q15(x + b * down, row, ntaps))
            memmove(buf, buf + step, hist * sizeof(int16_t))
            done += step
            written += blocks * up
        return written

    cdef Py_ssize_t output_length(self, Py_ssize_t n) except -1:
        if n % self.ratio_down:
            raise ValueError(
                f"pcm holds {n} samples, not a multiple of {self.ratio_down} "
                f"(the input step of {self.in_rate} -> {self.out_rate} Hz)"
            )
        return n // self.ratio_down * self.ratio_up

    def process(self, pcm) -> cnp.ndarray:
        """Resample one chunk; returns ``len(pcm) * out_rate / in_rate`` samples (int16)."""
        cdef Py_buffer src
        cdef cnp.npy_intp m
        cdef cnp.ndarray out
        get_view(pcm, &src, ITEM_INT16, False, "pcm")
        try:
            m = self.output_length(src.len // 2)
            out = cnp.PyArray_EMPTY(1, &m, cnp.NPY_INT16, 0)
            self.process_c(<const int16_t*>src.buf, src.len // 2, <int16_t*>cnp.PyArray_DATA(out))
        finally:
            PyBuffer_Release(&src)
        return out

    def process_into(self, pcm, out) -> int:
        """Resample one chunk into ``out`` (may be longer); returns the samples written."""
        cdef Py_buffer src, dst
        cdef Py_ssize_t m
        get_view(pcm, &src, ITEM_INT16, False, "pcm")
        try:
            get_view(out, &dst, ITEM_INT16, True, "out")
            try:
                m = self.output_length(src.len // 2)
                if dst.len // 2 < m:
                    raise ValueError(f"out holds {dst.len // 2} samples, need {m}")
                self.process_c(<const int16_t*>src.buf, src.len // 2, <int16_t*>dst.buf)
            finally:
                PyBuffer_Release(&dst)
        finally:
            PyBuffer_Release(&src)
        return m

    def reset(self) -> None:
        """Forget the history: the next call starts from silence, as a new instance would."""
        self.clear()

    @property
    def ratio(self) -> tuple:
        """``(up, down)``: out_rate / in_rate in lowest terms; inputs come in multiples of ``down``."""
        return (self.ratio_up, self.ratio_down)

    @property
    def taps(self) -> cnp.ndarray:
        """The prototype filter at ``in_rate * up`` Hz: Q15 int32 taps with gain ``up`` (a copy)."""
        return self._taps.copy()
