# One leg's codec: encoder + decoder state for the negotiated audio codec, dispatched by kind.
from libc.stdint cimport int16_t, uint8_t, uint32_t

cdef enum CodecKind:
    CODEC_PCMU = 0
    CODEC_PCMA = 1
    CODEC_G722 = 2
    CODEC_L16 = 3        # RTP L16: big-endian samples
    CODEC_PCM = 4        # s16le samples (WebSocket "pcm")
    CODEC_OPUS = 5

cdef enum:
    CODEC_MAX_FRAME = 960        # samples per 20 ms at 48 kHz: the largest frame any codec produces
    CODEC_MAX_PAYLOAD = 1920     # bytes of the largest 20 ms payload (L16 at 48 kHz)

cdef class Codec:
    cdef readonly int kind
    cdef readonly int audio_rate         # PCM rate in and out of this codec
    cdef readonly int clock_rate         # RTP timestamp rate (8000 for G.722, 48000 for Opus)
    cdef readonly int frame_samples      # PCM samples per 20 ms frame
    cdef readonly int frame_ticks        # RTP timestamp increment per 20 ms frame
    cdef object _g722_enc, _g722_dec, _opus_enc, _opus_dec
    cdef int16_t last_frame[CODEC_MAX_FRAME]   # for G.711/L16 concealment
    cdef int conceal_run                 # consecutive concealed frames

    # Decode one payload; returns PCM samples written (<= max_samples) or -1 on a bad payload.
    cdef int decode_c(self, const uint8_t* payload, Py_ssize_t n, int16_t* pcm, int max_samples) noexcept nogil
    # A lost frame: frame_samples of concealment (codec PLC, or a fading repeat for stateless codecs).
    cdef int conceal_c(self, int16_t* pcm) noexcept nogil
    # Encode exactly frame_samples; returns payload bytes or -1.
    cdef int encode_c(self, const int16_t* pcm, uint8_t* payload) noexcept nogil
