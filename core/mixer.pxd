# Mixing and channel interleaving for the media engine.
#
# mix_c: out[i] = saturate16((sum_k inputs[k][i] * gains_q[k] + 2**(Q-1)) >> Q)
# with Q = GAIN_Q_BITS: gains are Q10 fixed point (1.0 == 1024), summed in 32 bits,
# rounded half up and saturated once.  Preconditions (the caller's to keep; the
# Python wrapper checks them): 0 <= n_inputs <= MIX_MAX_INPUTS and
# 0 <= gains_q[k] <= MIX_MAX_GAIN_Q.  Then |sum| <= 16 * 32768 * 4096 = 2**31 and
# the sum plus rounding offset fits an int32 (see mixer.pyx).
#
# interleave_stereo_c: out[2i] = left[i], out[2i + 1] = right[i]; out holds 2 * n.

from libc.stdint cimport int16_t, int32_t

cdef enum:
    GAIN_Q_BITS = 10
    MIX_MAX_INPUTS = 16
    MIX_MAX_GAIN_Q = 4 << GAIN_Q_BITS   # gain 4.0 (+12 dB)

cdef int32_t gain_to_q_c(double gain) noexcept nogil   # floor(gain * 1024 + 0.5), clamped to [0, 4.0]
cdef void mix_c(const int16_t** inputs, const int32_t* gains_q, int n_inputs,
                int16_t* out, Py_ssize_t n) noexcept nogil
cdef void interleave_stereo_c(const int16_t* left, const int16_t* right,
                              int16_t* out, Py_ssize_t n) noexcept nogil
