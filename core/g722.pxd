# C-level API of pbx.core.g722: ITU-T G.722 at 64 kbit/s (mode 1), 16 kHz int16 audio.
#
# One codeword (byte) per two input samples: bits 0-5 the lower-band ADPCM code,
# bits 6-7 the higher-band code.  The encoder and decoder are separate objects,
# each owning the state of both sub-band ADPCM coders and of its QMF delay line.

from libc.stdint cimport int16_t, int32_t, uint8_t


# One sub-band ADPCM coder (lower or higher band).  Every field holds a value in
# the 16-bit range of the Recommendation: int32_t spares the casts, and b, d are
# int16_t lanes of one SIMD vector each (see adapt() in g722.pyx).
cdef struct G722Band:
    int32_t s           # predicted signal (SL / SH)
    int32_t sz          # zero-section part of the prediction (SZL / SZH)
    int32_t nb          # log scale factor (NBL / NBH)
    int32_t det         # quantizer scale factor (DETL / DETH)
    int32_t a1, a2      # pole-section coefficients
    int32_t p1, p2      # past partially reconstructed signals (PLT)
    int32_t rr1         # last reconstructed signal RLT1, doubled with saturation (FILTEP input)
    int16_t b[8]        # zero-section coefficients BL1..BL6 in [0..5]; [6], [7] stay 0
    int16_t d[8]        # quantized differences DLT delayed 1..6 in [0..5]; [6], [7] stay 0


cdef struct G722EncoderState:
    G722Band low
    G722Band high
    int16_t x[22]       # last 22 input samples, oldest first (analysis QMF history)


cdef struct G722DecoderState:
    G722Band low
    G722Band high
    int16_t xd[11]      # last 11 rl - rh values, oldest first (synthesis QMF history)
    int16_t xs[11]      # last 11 rl + rh values, oldest first


cdef class G722Encoder:
    cdef G722EncoderState* _st

    # Encodes n samples (n even; an odd last sample is ignored) into n/2 codewords at out;
    # returns n/2.
    cdef Py_ssize_t encode_frame(self, const int16_t* pcm, Py_ssize_t n, uint8_t* out) noexcept nogil
    # Back to the initial state (as new).
    cdef void reset_state(self) noexcept nogil


cdef class G722Decoder:
    cdef G722DecoderState* _st

    # Decodes n codewords into 2n samples at out; returns 2n.
    cdef Py_ssize_t decode_frame(self, const uint8_t* data, Py_ssize_t n, int16_t* out) noexcept nogil
    # Back to the initial state (as new).
    cdef void reset_state(self) noexcept nogil
