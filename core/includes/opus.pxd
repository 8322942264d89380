# libopus (opus.h, opus_defines.h): the subset pbx.core.opus uses.
# The request ids are the numeric values behind the OPUS_SET_*/OPUS_GET_* macros;
# SET requests take an opus_int32 vararg, GET requests an opus_int32*.

cdef extern from "opus.h" nogil:
    ctypedef short opus_int16
    ctypedef int opus_int32

    ctypedef struct OpusEncoder:
        pass

    ctypedef struct OpusDecoder:
        pass

    enum:
        OPUS_OK
        OPUS_BAD_ARG
        OPUS_BUFFER_TOO_SMALL
        OPUS_INTERNAL_ERROR
        OPUS_INVALID_PACKET
        OPUS_UNIMPLEMENTED
        OPUS_INVALID_STATE
        OPUS_ALLOC_FAIL

        OPUS_APPLICATION_VOIP
        OPUS_APPLICATION_AUDIO
        OPUS_APPLICATION_RESTRICTED_LOWDELAY

        OPUS_AUTO
        OPUS_BITRATE_MAX

        OPUS_RESET_STATE
        OPUS_GET_APPLICATION_REQUEST
        OPUS_SET_BITRATE_REQUEST
        OPUS_GET_BITRATE_REQUEST
        OPUS_SET_VBR_REQUEST
        OPUS_GET_VBR_REQUEST
        OPUS_SET_COMPLEXITY_REQUEST
        OPUS_GET_COMPLEXITY_REQUEST
        OPUS_SET_INBAND_FEC_REQUEST
        OPUS_GET_INBAND_FEC_REQUEST
        OPUS_SET_PACKET_LOSS_PERC_REQUEST
        OPUS_GET_PACKET_LOSS_PERC_REQUEST
        OPUS_SET_DTX_REQUEST
        OPUS_GET_DTX_REQUEST
        OPUS_GET_LOOKAHEAD_REQUEST
        OPUS_GET_SAMPLE_RATE_REQUEST
        OPUS_GET_FINAL_RANGE_REQUEST
        OPUS_GET_LAST_PACKET_DURATION_REQUEST
        OPUS_GET_IN_DTX_REQUEST

    const char* opus_strerror(int error)
    const char* opus_get_version_string()

    int opus_encoder_get_size(int channels)
    OpusEncoder* opus_encoder_create(opus_int32 Fs, int channels, int application, int* error)
    int opus_encoder_init(OpusEncoder* st, opus_int32 Fs, int channels, int application)
    opus_int32 opus_encode(OpusEncoder* st, const opus_int16* pcm, int frame_size,
                           unsigned char* data, opus_int32 max_data_bytes)
    opus_int32 opus_encode_float(OpusEncoder* st, const float* pcm, int frame_size,
                                 unsigned char* data, opus_int32 max_data_bytes)
    void opus_encoder_destroy(OpusEncoder* st)
    int opus_encoder_ctl(OpusEncoder* st, int request, ...)

    int opus_decoder_get_size(int channels)
    OpusDecoder* opus_decoder_create(opus_int32 Fs, int channels, int* error)
    int opus_decoder_init(OpusDecoder* st, opus_int32 Fs, int channels)
    int opus_decode(OpusDecoder* st, const unsigned char* data, opus_int32 len,
                    opus_int16* pcm, int frame_size, int decode_fec)
    int opus_decode_float(OpusDecoder* st, const unsigned char* data, opus_int32 len,
                          float* pcm, int frame_size, int decode_fec)
    int opus_decoder_ctl(OpusDecoder* st, int request, ...)
    void opus_decoder_destroy(OpusDecoder* st)

    int opus_packet_get_bandwidth(const unsigned char* data)
    int opus_packet_get_samples_per_frame(const unsigned char* data, opus_int32 Fs)
    int opus_packet_get_nb_channels(const unsigned char* data)
    int opus_packet_get_nb_frames(const unsigned char* packet, opus_int32 len)
    int opus_packet_get_nb_samples(const unsigned char* packet, opus_int32 len, opus_int32 Fs)
    int opus_decoder_get_nb_samples(const OpusDecoder* dec, const unsigned char* packet, opus_int32 len)
