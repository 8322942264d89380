"""ITU-T G.722 at 64 kbit/s (mode 1): 16 kHz int16 audio, one byte per two samples.

The transmit QMF splits each pair of input samples into a lower and a higher
sub-band sample at 8 kHz; the lower band is coded by a 6-bit ADPCM coder
(blocks 1L-4L), the higher band by a 2-bit one (1H-4H).  Each coder has a
backward-adaptive quantizer scale (LOGSCL/SCALEL) and a 2-pole 6-zero adaptive
predictor (block 4).  The decoder runs the same coders, takes the lower-band
output from the full 6-bit code (INVQBL, mode 1) and recombines the bands with
the receive QMF.  A codeword is ``ih << 6 | il``.

Arithmetic is the 16-bit arithmetic of the ITU-T reference code (G.191 STL
g722), carried in int32: a value is saturated where the reference saturates and
only there; where a saturation provably cannot trigger, a comment says so and
the clamp is left out.  Output is bit-exact with that reference; the tests check
it against a straight Python transcription (support/oracles/g722.py) and against
the ``g722`` package (spandsp lineage), which matches except that it does not
limit the transmit QMF outputs to 15 bits (only full-scale input reaches that).

Kernels: :class:`G722Encoder` and :class:`G722Decoder`, whose C-level
``encode_frame``/``decode_frame`` take pointer plus length (see g722.pxd).
Python wrappers take any 1-D C-contiguous buffer (numpy arrays fastest):
``encode(pcm) -> bytes``, ``encode_into(pcm, out) -> int`` (bytes written),
``decode(data) -> ndarray[int16]``, ``decode_into(data, out) -> int`` (samples
written), ``reset()``.  ``out`` may be longer than needed.
"""

from cpython.buffer cimport PyBuffer_Release
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int16_t, int32_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memmove, memset

cimport numpy as cnp

from pbx.core.bufargs cimport ITEM_BYTE, ITEM_INT16, get_view

cnp.import_array()

cdef extern from *:
    """
    /* QMF coefficients h(0)..h(23), symmetric: h(i) == h(23 - i). */
    /* Analysis over a 24-sample window, oldest first (w[23] = the pair's second sample):
       lower band  = sum h(p) w[p]                 (xA + xB)
       higher band = sum (+-1)^p h(p) w[p], + at odd p  (xA - xB) */
    static const int16_t G722_QMF_SUM[24] = {
        3, -11, -11, 53, 12, -156, 32, 362, -210, -805, 951, 3876,
        3876, 951, -805, -210, 362, 32, -156, 12, 53, -11, -11, 3};
    static const int16_t G722_QMF_DIFF[24] = {
        -3, -11, 11, 53, -12, -156, -32, 362, 210, -805, -951, 3876,
        -3876, 951, 805, -210, -362, 32, 156, 12, -53, -11, 11, 3};
    /* Synthesis over 12 past values, oldest first: xout1 from rl - rh with h(2t+1),
       xout2 from rl + rh with h(2t). */
    static const int16_t G722_QMF_ODD[12] = {-11, 53, -156, 362, -805, 3876, 951, -210, 32, 12, -11, 3};
    static const int16_t G722_QMF_EVEN[12] = {3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11};

    /* QUANTL decision levels Q6(1..29), padded to 32 with -1 (see QUANTL_LEVELS). */
    static const int16_t G722_Q6[32] = {
        35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714,
        786, 858, 940, 1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919,
        -1, -1, -1};
    /* 6-bit code of interval mil (1..30): [0] negative difference (ILN), [1] positive (ILP). */
    static const uint8_t G722_IL[2][32] = {
        {0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15,
         14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 0},
        {0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43,
         42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32, 0}};
    /* Inverse quantizers, already signed and scaled: 4-bit (INVQAL, by il >> 2),
       6-bit (INVQBL mode 1, by il) and 2-bit (INVQAH, by ih). */
    static const int32_t G722_QM4[16] = {
        0, -20456, -12896, -8968, -6288, -4240, -2584, -1200,
        20456, 12896, 8968, 6288, 4240, 2584, 1200, 0};
    static const int32_t G722_QM6[64] = {
        -136, -136, -136, -136, -24808, -21904, -19008, -16704,
        -14984, -13512, -12280, -11192, -10232, -9360, -8576, -7856,
        -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576,
        -3168, -2776, -2400, -2032, -1688, -1360, -1040, -728,
        24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192,
        10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456,
        4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032,
        1688, 1360, 1040, 728, 432, 136, -432, -136};
    static const int32_t G722_QM2[4] = {-7408, -1616, 7408, 1616};
    /* LOGSCL multiplier by il >> 2 (WL through RIL4) and LOGSCH multiplier by ih. */
    static const int32_t G722_WL4[16] = {
        -60, 3042, 1198, 538, 334, 172, 58, -30, 3042, 1198, 538, 334, 172, 58, -30, -60};
    static const int32_t G722_WH2[4] = {798, -214, 798, -214};
    /* SCALEL/SCALEH antilog table. */
    static const int32_t G722_ILB[32] = {
        2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656,
        2714, 2774, 2834, 2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520,
        3597, 3676, 3756, 3838, 3922, 4008};
    """
    const int16_t G722_QMF_SUM[24]
    const int16_t G722_QMF_DIFF[24]
    const int16_t G722_QMF_ODD[12]
    const int16_t G722_QMF_EVEN[12]
    const int16_t G722_Q6[32]
    const uint8_t G722_IL[2][32]
    const int32_t G722_QM4[16]
    const int32_t G722_QM6[64]
    const int32_t G722_QM2[4]
    const int32_t G722_WL4[16]
    const int32_t G722_WH2[4]
    const int32_t G722_ILB[32]

cdef extern from *:
    """
    /* Block 4, zero section: UPZERO, the DELAYA shift of DLT and FILTEZ for one sub-band
       coder, on BL1..BL6 and DLT delayed 1..6 held in lanes 0..5 of b[8] and d[8] (lanes
       6 and 7 stay 0).  Returns SZ with the reference's per-tap 16-bit saturation.  In C
       because it is one SSE2 vector per array; the portable version (other CPUs, or
       PBX_G722_PORTABLE defined) gives identical results. */
    #include <stdint.h>

    #if defined(__SSE2__) && !defined(PBX_G722_PORTABLE)
    #define PBX_G722_SSE2 1
    #include <emmintrin.h>
    #else
    #define PBX_G722_SSE2 0
    #endif

    static inline int32_t g722_sat16(int32_t x)
    {
        return x > 32767 ? 32767 : (x < -32768 ? -32768 : x);
    }

    /* FILTEZ saturates after each tap, oldest first; used when a partial sum might leave 16 bits. */
    static inline int32_t g722_filtez_saturating(const int16_t *terms)
    {
        int32_t sz = 0;
        for (int i = 5; i >= 0; i--)
            sz = g722_sat16(sz + terms[i]);
        return sz;
    }

    #if PBX_G722_SSE2

    /* (a * b) >> 15 per 16-bit lane, for results that fit 16 bits. */
    static inline __m128i g722_mulq15(__m128i a, __m128i b)
    {
        return _mm_or_si128(_mm_slli_epi16(_mm_mulhi_epi16(a, b), 1),
                            _mm_srli_epi16(_mm_mullo_epi16(a, b), 15));
    }

    static inline int32_t g722_zero_section(int16_t *b, int16_t *d, int32_t dlt)
    {
        const __m128i taps = _mm_setr_epi16(-1, -1, -1, -1, -1, -1, 0, 0);
        const __m128i ones = _mm_set1_epi16(1);
        __m128i vb = _mm_loadu_si128((const __m128i *)b);
        __m128i vd = _mm_loadu_si128((const __m128i *)d);
        /* UPZERO: BL * (1 - 2**-8) + 2**-7 sgn(DLT) sgn(DLTi), no step when DLT is 0;
         * in [-32768, 32767] for any 16-bit BL. */
        __m128i step = _mm_set1_epi16(dlt != 0 ? 128 : 0);
        __m128i flip = _mm_xor_si128(_mm_srai_epi16(vd, 15), _mm_set1_epi16(dlt < 0 ? -1 : 0));
        __m128i adj = _mm_sub_epi16(_mm_xor_si128(step, flip), flip);
        vb = _mm_and_si128(_mm_add_epi16(g722_mulq15(vb, _mm_set1_epi16(32640)), adj), taps);
        /* DELAYA: DLT enters at delay 1. */
        vd = _mm_and_si128(_mm_insert_epi16(_mm_slli_si128(vd, 2), dlt, 0), taps);
        _mm_storeu_si128((__m128i *)b, vb);
        _mm_storeu_si128((__m128i *)d, vd);
        /* FILTEZ terms BLi * 2 DLTi >> 15: |DLT| <= 10228, so 2 DLT and the term fit 16 bits. */
        __m128i t = g722_mulq15(vb, _mm_add_epi16(vd, vd));
        __m128i mag = _mm_max_epi16(t, _mm_sub_epi16(_mm_setzero_si128(), t));
        __m128i s4 = _mm_madd_epi16(t, ones), m4 = _mm_madd_epi16(mag, ones);
        __m128i w = _mm_add_epi32(_mm_unpacklo_epi32(s4, m4), _mm_unpackhi_epi32(s4, m4));
        w = _mm_add_epi32(w, _mm_shuffle_epi32(w, 0x4E));
        int32_t sz = _mm_cvtsi128_si32(w);
        /* With sum |term| <= 32767 no partial sum leaves 16 bits: the plain sum is exact. */
        if (__builtin_expect(_mm_cvtsi128_si32(_mm_srli_si128(w, 4)) > 32767, 0)) {
            int16_t terms[8];
            _mm_storeu_si128((__m128i *)terms, t);
            sz = g722_filtez_saturating(terms);
        }
        return sz;
    }

    #else

    static inline int32_t g722_zero_section(int16_t *b, int16_t *d, int32_t dlt)
    {
        int16_t terms[8];
        int32_t step = dlt != 0 ? 128 : 0, sgd = dlt < 0 ? -1 : 0, sz = 0, mag = 0;
        for (int i = 5; i >= 0; i--) {
            int32_t flip = (d[i] < 0 ? -1 : 0) ^ sgd;
            int32_t bi = ((b[i] * 32640) >> 15) + ((step ^ flip) - flip);
            int32_t dn = i ? d[i - 1] : dlt;
            b[i] = (int16_t)bi;
            d[i] = (int16_t)dn;
            terms[i] = (int16_t)((bi * (dn + dn)) >> 15);
            sz += terms[i];
            mag += terms[i] < 0 ? -terms[i] : terms[i];
        }
        return mag > 32767 ? g722_filtez_saturating(terms) : sz;
    }

    #endif
    """
    int32_t g722_zero_section(int16_t* b, int16_t* d, int32_t dlt) noexcept nogil

cdef enum:
    CHUNK = 160              # codewords per inner block: bounds the stack scratch (one 20 ms frame)
    NBL_MAX = 18432          # LOGSCL upper limit
    NBH_MAX = 22528          # LOGSCH upper limit
    DETL_INIT = 32           # reset values of the quantizer scale factors
    DETH_INIT = 8

# SCALEL / SCALEH, tabulated by nb >> 6 (NBL_MAX >> 6 = 288, NBH_MAX >> 6 = 352).
cdef int32_t DET_LOW[289]
cdef int32_t DET_HIGH[353]
# QUANTL decision levels (Q6(i) * DETL) >> 12, i = 1..29, for DETL = DET_LOW[k], k = NBL >> 6,
# padded with three -1 (always <= |EL|) to 32 entries: QUANTL is then a count of levels at
# or below |EL| over a row, which the compiler vectorizes, and needs no product per sample.
cdef int16_t QUANTL_LEVELS[289][32]
# G722_QM4 and G722_WL4 of the code G722_IL[sign][mil].
cdef int32_t QM4_BY_MIL[2][32]
cdef int32_t WL4_BY_MIL[2][32]


cdef void _fill_det(int32_t* table, int count, int bias) noexcept:
    """DET = (ILB[(nb >> 6) & 31] shifted right by bias - (nb >> 11)) << 2, for nb >> 6 = k."""
    cdef int k, shift
    for k in range(count):
        shift = bias - (k >> 5)
        if shift >= 0:
            table[k] = (G722_ILB[k & 31] >> shift) << 2
        else:
            table[k] = (G722_ILB[k & 31] << -shift) << 2


_fill_det(DET_LOW, 289, 8)
_fill_det(DET_HIGH, 353, 10)


cdef void _fill_levels() noexcept:
    cdef int k, i
    for k in range(289):
        for i in range(32):
            QUANTL_LEVELS[k][i] = <int16_t>((G722_Q6[i] * DET_LOW[k]) >> 12) if i < 29 else -1


_fill_levels()


cdef void _fill_by_mil() noexcept:
    cdef int sign, mil
    for sign in range(2):
        for mil in range(32):
            QM4_BY_MIL[sign][mil] = G722_QM4[G722_IL[sign][mil] >> 2]
            WL4_BY_MIL[sign][mil] = G722_WL4[G722_IL[sign][mil] >> 2]


_fill_by_mil()


cdef inline int32_t sat16(int32_t x) noexcept nogil:
    return 32767 if x > 32767 else (-32768 if x < -32768 else x)


cdef inline int32_t limit15(int32_t x) noexcept nogil:
    """Block LIMIT: the 15-bit range of the sub-band signals."""
    return 16383 if x > 16383 else (-16384 if x < -16384 else x)


cdef inline void band_reset(G722Band* bd, int32_t det) noexcept nogil:
    memset(bd, 0, sizeof(G722Band))
    bd.det = det


cdef inline void adapt(G722Band* bd, int32_t dlt) noexcept nogil:
    """Block 4: RECONS, PARREC, UPPOL2, UPPOL1, UPZERO, DELAYA, FILTEP, FILTEZ, PREDIC.

    ``dlt`` is the 4-bit (lower) or 2-bit (higher) quantized difference; its
    magnitude is at most 16384 * 20456 >> 15 = 10228, so twice it fits 16 bits
    (the zero section relies on that).
    """
    cdef int32_t r0 = sat16(bd.s + dlt)
    cdef int32_t p0 = sat16(bd.sz + dlt)
    # Sign agreement of PLT with PLT1 and PLT2 as masks, 0 when equal and -1 otherwise:
    # branch-free, as these signs are close to random.
    cdef int32_t differ1 = (p0 ^ bd.p1) >> 31
    cdef int32_t differ2 = (p0 ^ bd.p2) >> 31
    cdef int32_t wd, a1, a2, lim, sz, sp

    # UPPOL2: f(AL1) = 4 AL1 saturated, negated when PLT and PLT1 agree, times 2**-7.
    # Clamping to +-32767 rather than [-32768, 32767] gives the same value after the
    # shift and keeps the negation in range.
    wd = bd.a1 * 4
    wd = 32767 if wd > 32767 else (-32767 if wd < -32767 else wd)
    wd = (wd ^ ~differ1) - ~differ1
    a2 = (wd >> 7) + (128 - (differ2 & 256)) + ((bd.a2 * 32512) >> 15)
    a2 = 12288 if a2 > 12288 else (-12288 if a2 < -12288 else a2)
    # UPPOL1 (|AL1| <= 27648 keeps the sum in 16 bits), limited by the new AL2
    a1 = (192 - (differ1 & 384)) + ((bd.a1 * 32640) >> 15)
    lim = 15360 - a2
    a1 = lim if a1 > lim else (-lim if a1 < -lim else a1)

    # UPZERO, DELAYA and FILTEZ (C above: the six taps as one vector)
    sz = g722_zero_section(bd.b, bd.d, dlt)

    # FILTEP (RLT1, RLT2 enter doubled with saturation: keep RLT1 that way) and PREDIC
    r0 = sat16(r0 + r0)
    sp = sat16(((a1 * r0) >> 15) + ((a2 * bd.rr1) >> 15))
    bd.rr1 = r0
    bd.p2 = bd.p1
    bd.p1 = p0
    bd.a1 = a1
    bd.a2 = a2
    bd.sz = sz
    bd.s = sat16(sp + sz)


cdef inline int32_t quantl_interval(int32_t wd, const int16_t* thresholds) noexcept nogil:
    """QUANTL: the interval mil (1..30) with Q6(mil-1) <= wd < Q6(mil), levels scaled by det."""
    # mil - 1 counts the decision levels at or below wd; the three pads (-1) always count.
    cdef int32_t count = 0
    cdef int i
    for i in range(32):
        count += thresholds[i] <= wd
    return count - 2


cdef inline int32_t encode_low(G722Band* bd, int32_t xl) noexcept nogil:
    """Blocks 1L-4L for one lower-band sample; returns the 6-bit code."""
    cdef int32_t el = sat16(xl - bd.s)                       # SUBTRA
    cdef int32_t wd = el ^ (el >> 31)                         # |el|, as -(el + 1) when negative
    cdef int32_t positive = (el >> 31) + 1
    cdef int32_t mil = quantl_interval(wd, QUANTL_LEVELS[bd.nb >> 6])
    # INVQAL and LOGSCL straight from (sign, mil): one table load less on the critical path.
    cdef int32_t dlt = (bd.det * QM4_BY_MIL[positive][mil]) >> 15
    cdef int32_t nb = ((bd.nb * 127) >> 7) + WL4_BY_MIL[positive][mil]
    nb = 0 if nb < 0 else (NBL_MAX if nb > NBL_MAX else nb)
    bd.nb = nb
    bd.det = DET_LOW[nb >> 6]                                 # SCALEL
    adapt(bd, dlt)
    return G722_IL[positive][mil]


cdef inline int32_t encode_high(G722Band* bd, int32_t xh) noexcept nogil:
    """Blocks 1H-4H for one higher-band sample; returns the 2-bit code."""
    cdef int32_t eh = sat16(xh - bd.s)
    cdef int32_t wd = eh ^ (eh >> 31)
    cdef int32_t outer = wd >= ((564 * bd.det) >> 12)         # QUANTH: mih == 2
    # IHN / IHP: 1, 0 for a negative difference (inner, outer), 3, 2 for a positive one.
    cdef int32_t ih = 2 * ((eh >> 31) + 1) + 1 - outer
    cdef int32_t dh = (bd.det * G722_QM2[ih]) >> 15            # INVQAH
    cdef int32_t nb = ((bd.nb * 127) >> 7) + G722_WH2[ih]      # LOGSCH
    nb = 0 if nb < 0 else (NBH_MAX if nb > NBH_MAX else nb)
    bd.nb = nb
    bd.det = DET_HIGH[nb >> 6]                                # SCALEH
    adapt(bd, dh)
    return ih


cdef inline void qmf_analysis(const int16_t* win, Py_ssize_t pairs, int32_t* xl, int32_t* xh) noexcept nogil:
    """Transmit QMF: win holds 22 history samples then 2 * pairs new ones, oldest first."""
    cdef Py_ssize_t k
    cdef int p
    cdef int32_t lo, hi
    for k in range(pairs):
        lo = 0
        hi = 0
        for p in range(24):
            lo += <int32_t>G722_QMF_SUM[p] * win[2 * k + p]
            hi += <int32_t>G722_QMF_DIFF[p] * win[2 * k + p]
        # The reference limits both sub-band samples to 15 bits (spandsp does not).
        xl[k] = limit15(lo >> 14)
        xh[k] = limit15(hi >> 14)


cdef inline void qmf_synthesis(const int16_t* xd, const int16_t* xs, Py_ssize_t n, int16_t* out) noexcept nogil:
    """Receive QMF: xd / xs hold 11 history values then n new ones, oldest first."""
    cdef Py_ssize_t k
    cdef int t
    cdef int32_t acc1, acc2
    for k in range(n):
        acc1 = 0
        acc2 = 0
        for t in range(12):
            acc1 += <int32_t>G722_QMF_ODD[t] * xd[k + t]
            acc2 += <int32_t>G722_QMF_EVEN[t] * xs[k + t]
        out[2 * k] = <int16_t>sat16(acc1 >> 11)
        out[2 * k + 1] = <int16_t>sat16(acc2 >> 11)


cdef Py_ssize_t codewords_for(Py_ssize_t samples) except -1:
    if samples & 1:
        raise ValueError(f"pcm holds {samples} samples; G.722 codes them in pairs, so the count must be even")
    return samples >> 1


cdef class G722Encoder:
    """G.722 64 kbit/s encoder: 2n int16 samples at 16 kHz in, n bytes out.

    State carries across calls, so a stream may be fed in pieces of any even length
    (the engine's 20 ms frames are 320 samples).
    """

    def __cinit__(self):
        self._st = <G722EncoderState*>malloc(sizeof(G722EncoderState))
        if self._st == NULL:
            raise MemoryError("cannot allocate the G.722 encoder state")
        self.reset_state()

    def __dealloc__(self):
        free(self._st)

    cdef void reset_state(self) noexcept nogil:
        memset(self._st.x, 0, sizeof(self._st.x))
        band_reset(&self._st.low, DETL_INIT)
        band_reset(&self._st.high, DETH_INIT)

    cdef Py_ssize_t encode_frame(self, const int16_t* pcm, Py_ssize_t n, uint8_t* out) noexcept nogil:
        cdef G722EncoderState* st = self._st
        # Local copies, so that stores through out (a byte pointer, which may alias
        # anything) do not force the coder state back to memory on every codeword.
        cdef G722Band low = st.low
        cdef G722Band high = st.high
        cdef int16_t win[22 + 2 * CHUNK]
        cdef int32_t xl[CHUNK]
        cdef int32_t xh[CHUNK]
        cdef Py_ssize_t pairs = n >> 1
        cdef Py_ssize_t done = 0
        cdef Py_ssize_t m, k
        memcpy(win, st.x, sizeof(st.x))
        while done < pairs:
            m = pairs - done if pairs - done < CHUNK else CHUNK
            memcpy(&win[22], &pcm[2 * done], 2 * m * sizeof(int16_t))
            qmf_analysis(win, m, xl, xh)
            for k in range(m):
                out[done + k] = <uint8_t>(encode_low(&low, xl[k]) | (encode_high(&high, xh[k]) << 6))
            memmove(win, &win[2 * m], sizeof(st.x))
            done += m
        memcpy(st.x, win, sizeof(st.x))
        st.low = low
        st.high = high
        return pairs

    def encode(self, pcm):
        """int16 samples (an even count) -> G.722 bytes, one per pair."""
        cdef Py_buffer src
        cdef Py_ssize_t n
        get_view(pcm, &src, ITEM_INT16, False, "pcm")
        try:
            n = codewords_for(src.len // 2)
            out = PyBytes_FromStringAndSize(NULL, n)
            self.encode_frame(<const int16_t*>src.buf, 2 * n, <uint8_t*>PyBytes_AS_STRING(out))
        finally:
            PyBuffer_Release(&src)
        return out

    def encode_into(self, pcm, out):
        """int16 samples (an even count) -> G.722 bytes written to ``out``; returns the number written."""
        cdef Py_buffer src, dst
        cdef Py_ssize_t n
        get_view(pcm, &src, ITEM_INT16, False, "pcm")
        try:
            get_view(out, &dst, ITEM_BYTE, True, "out")
            try:
                n = codewords_for(src.len // 2)
                if dst.len < n:
                    raise ValueError(f"out holds {dst.len} bytes, need {n}")
                self.encode_frame(<const int16_t*>src.buf, 2 * n, <uint8_t*>dst.buf)
            finally:
                PyBuffer_Release(&dst)
        finally:
            PyBuffer_Release(&src)
        return n

    def reset(self):
        """Back to the state of a new encoder."""
        self.reset_state()


cdef class G722Decoder:
    """G.722 64 kbit/s decoder: n bytes in, 2n int16 samples at 16 kHz out.

    State carries across calls, so a stream may be fed in pieces of any length.
    """

    def __cinit__(self):
        self._st = <G722DecoderState*>malloc(sizeof(G722DecoderState))
        if self._st == NULL:
            raise MemoryError("cannot allocate the G.722 decoder state")
        self.reset_state()

    def __dealloc__(self):
        free(self._st)

    cdef void reset_state(self) noexcept nogil:
        memset(self._st.xd, 0, sizeof(self._st.xd))
        memset(self._st.xs, 0, sizeof(self._st.xs))
        band_reset(&self._st.low, DETL_INIT)
        band_reset(&self._st.high, DETH_INIT)

    cdef Py_ssize_t decode_frame(self, const uint8_t* data, Py_ssize_t n, int16_t* out) noexcept nogil:
        cdef G722DecoderState* st = self._st
        cdef G722Band low = st.low
        cdef G722Band high = st.high
        cdef int16_t xd[11 + CHUNK]
        cdef int16_t xs[11 + CHUNK]
        cdef Py_ssize_t done = 0
        cdef Py_ssize_t m, k
        cdef int32_t code, il, ih, rl, rh, nb, dlt, dh
        memcpy(xd, st.xd, sizeof(st.xd))
        memcpy(xs, st.xs, sizeof(st.xs))
        while done < n:
            m = n - done if n - done < CHUNK else CHUNK
            for k in range(m):
                code = data[done + k]
                il = code & 0x3F
                ih = code >> 6
                # Lower band: the output from the full 6-bit code (INVQBL, RECONS, LIMIT),
                # the coder update from its 4 most significant bits, as in the encoder.
                rl = limit15(low.s + ((low.det * G722_QM6[il]) >> 15))
                dlt = (low.det * G722_QM4[il >> 2]) >> 15            # INVQAL
                nb = ((low.nb * 127) >> 7) + G722_WL4[il >> 2]      # LOGSCL
                nb = 0 if nb < 0 else (NBL_MAX if nb > NBL_MAX else nb)
                low.nb = nb
                low.det = DET_LOW[nb >> 6]                           # SCALEL
                adapt(&low, dlt)
                # Higher band
                dh = (high.det * G722_QM2[ih]) >> 15                 # INVQAH
                rh = limit15(high.s + dh)
                nb = ((high.nb * 127) >> 7) + G722_WH2[ih]           # LOGSCH
                nb = 0 if nb < 0 else (NBH_MAX if nb > NBH_MAX else nb)
                high.nb = nb
                high.det = DET_HIGH[nb >> 6]                         # SCALEH
                adapt(&high, dh)
                # rl and rh are 15-bit, so their difference and sum fit 16 bits.
                xd[11 + k] = <int16_t>(rl - rh)
                xs[11 + k] = <int16_t>(rl + rh)
            qmf_synthesis(xd, xs, m, &out[2 * done])
            memmove(xd, &xd[m], sizeof(st.xd))
            memmove(xs, &xs[m], sizeof(st.xs))
            done += m
        memcpy(st.xd, xd, sizeof(st.xd))
        memcpy(st.xs, xs, sizeof(st.xs))
        st.low = low
        st.high = high
        return 2 * n

    def decode(self, data):
        """G.722 bytes -> int16 samples (numpy array), two per byte."""
        cdef Py_buffer src
        cdef cnp.npy_intp n
        cdef cnp.ndarray out
        get_view(data, &src, ITEM_BYTE, False, "data")
        try:
            n = 2 * src.len
            out = cnp.PyArray_EMPTY(1, &n, cnp.NPY_INT16, 0)
            self.decode_frame(<const uint8_t*>src.buf, src.len, <int16_t*>cnp.PyArray_DATA(out))
        finally:
            PyBuffer_Release(&src)
        return out

    def decode_into(self, data, out):
        """G.722 bytes -> int16 samples written to ``out``; returns the number written."""
        cdef Py_buffer src, dst
        cdef Py_ssize_t n
        get_view(data, &src, ITEM_BYTE, False, "data")
        try:
            get_view(out, &dst, ITEM_INT16, True, "out")
            try:
                n = 2 * src.len
                if dst.len // 2 < n:
                    raise ValueError(f"out holds {dst.len // 2} samples, need {n}")
                self.decode_frame(<const uint8_t*>src.buf, src.len, <int16_t*>dst.buf)
            finally:
                PyBuffer_Release(&dst)
        finally:
            PyBuffer_Release(&src)
        return n

    def reset(self):
        """Back to the state of a new decoder."""
        self.reset_state()
