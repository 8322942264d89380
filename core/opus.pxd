# C-level API of pbx.core.opus: Opus encoder/decoder state owned by cdef classes.
# encode_frame/decode_frame return libopus' result unchanged (a count, or a negative
# libopus error code); pass failures through check_opus() to raise CodecError.

from libc.stdint cimport int16_t, uint8_t

from pbx.core.includes cimport opus as libopus


cdef int check_opus(int code) except -1


cdef class OpusEncoder:
    cdef libopus.OpusEncoder* _enc
    cdef readonly int sample_rate
    cdef readonly int channels

    # Encodes one frame of frame_size samples per channel (interleaved) into out.
    # Returns the packet length in bytes, or a negative libopus error code.
    cdef Py_ssize_t encode_frame(self, const int16_t* pcm, int frame_size,
                                 uint8_t* out, Py_ssize_t max_bytes) noexcept nogil
    cdef int _set(self, int request, libopus.opus_int32 value) except -1
    cdef libopus.opus_int32 _get(self, int request) except? -1


cdef class OpusDecoder:
    cdef libopus.OpusDecoder* _dec
    cdef readonly int sample_rate
    cdef readonly int channels

    # Decodes one packet into out (room for frame_size samples per channel).
    # data NULL or n 0: packet loss concealment for frame_size samples.
    # fec: recover the frame before this packet from its in-band FEC data.
    # Returns samples per channel decoded, or a negative libopus error code.
    cdef int decode_frame(self, const uint8_t* data, Py_ssize_t n, int16_t* out,
                          int frame_size, bint fec) noexcept nogil
    cdef libopus.opus_int32 _get(self, int request) except? -1
    cdef int _default_frame_size(self, const uint8_t* data, Py_ssize_t n) except -1
