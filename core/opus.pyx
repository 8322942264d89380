"""Opus encoder and decoder over the system libopus.

Audio is int16, interleaved when stereo.  A frame is 2.5, 5, 10, 20, 40 or 60 ms
of audio per channel.  Every libopus failure raises
:class:`pbx.core.errors.CodecError` carrying libopus' own message and code
(e.g. ``CodecError("corrupted stream", -4)``); bad arguments from our own
callers raise ``ValueError``.
"""

from libc.stdint cimport INT32_MAX, int16_t, uint8_t

import numpy as np

from pbx.core.includes cimport opus as libopus
from pbx.core.includes.opus cimport opus_int16, opus_int32

from pbx.core.errors import CodecError

cdef enum:
    # libopus' recommended output size: the largest packet it can produce (120 ms).
    MAX_PACKET_BYTES = 4000
# Frame durations Opus allows, in units of 2.5 ms.
cdef int[6] FRAME_UNITS = [1, 2, 4, 8, 16, 24]


cdef int check_opus(int code) except -1:
    """Return ``code`` if it is not a libopus error, else raise CodecError."""
    if code < 0:
        raise CodecError(libopus.opus_strerror(code).decode("ascii"), code)
    return code


cdef inline bint valid_frame_size(int sample_rate, int frame_size) noexcept nogil:
    cdef int unit = sample_rate // 400  # 2.5 ms; every Opus rate is a multiple of 400 Hz
    cdef int i
    if frame_size <= 0 or frame_size % unit:
        return False
    for i in range(6):
        if frame_size == unit * FRAME_UNITS[i]:
            return True
    return False


cdef object frame_size_error(int sample_rate, int frame_size):
    unit = sample_rate // 400
    listed = ", ".join(str(unit * u) for u in (1, 2, 4, 8, 16)) + f" or {unit * 24}"
    return ValueError(
        f"invalid Opus frame size {frame_size} at {sample_rate} Hz: "
        f"use 2.5, 5, 10, 20, 40 or 60 ms ({listed} samples per channel)"
    )


cdef int check_rate_channels(int sample_rate, int channels) except -1:
    if sample_rate not in (8000, 12000, 16000, 24000, 48000):
        raise ValueError(
            f"unsupported Opus sample rate {sample_rate} Hz (use 8000, 12000, 16000, 24000 or 48000)"
        )
    if channels not in (1, 2):
        raise ValueError(f"Opus channels must be 1 or 2, got {channels}")
    return 0


cdef int application_id(str application) except -1:
    if application == "voip":
        return libopus.OPUS_APPLICATION_VOIP
    if application == "audio":
        return libopus.OPUS_APPLICATION_AUDIO
    if application == "restricted_lowdelay":
        return libopus.OPUS_APPLICATION_RESTRICTED_LOWDELAY
    raise ValueError(f"unknown Opus application {application!r} (use 'voip', 'audio' or 'restricted_lowdelay')")


cdef int samples_per_channel(Py_ssize_t n, int channels) except -1:
    if n % channels:
        raise ValueError(f"pcm holds {n} samples, not a whole number of {channels}-channel frames")
    if n // channels > INT32_MAX:
        raise ValueError("pcm is too long for one Opus frame")
    return <int>(n // channels)


cdef class OpusEncoder:
    """An Opus encoder (libopus ``OpusEncoder``) with its settings applied once."""

    def __cinit__(self, int sample_rate, int channels=1, str application="voip", bitrate=None,
                  int complexity=5, bint fec=False, bint dtx=False, int packet_loss_perc=0):
        cdef int error = libopus.OPUS_OK
        check_rate_channels(sample_rate, channels)
        cdef int app = application_id(application)
        self.sample_rate = sample_rate
        self.channels = channels
        self._enc = libopus.opus_encoder_create(sample_rate, channels, app, &error)
        check_opus(error)
        if self._enc == NULL:
            raise MemoryError("opus_encoder_create returned NULL")
        self.bitrate = bitrate
        self.complexity = complexity
        self.fec = fec
        self.dtx = dtx
        self.packet_loss_perc = packet_loss_perc

    def __dealloc__(self):
        if self._enc != NULL:
            libopus.opus_encoder_destroy(self._enc)
            self._enc = NULL

    cdef Py_ssize_t encode_frame(self, const int16_t* pcm, int frame_size,
                                 uint8_t* out, Py_ssize_t max_bytes) noexcept nogil:
        if max_bytes > INT32_MAX:
            max_bytes = INT32_MAX
        return libopus.opus_encode(self._enc, <const opus_int16*>pcm, frame_size, out, <opus_int32>max_bytes)

    cdef int _set(self, int request, opus_int32 value) except -1:
        return check_opus(libopus.opus_encoder_ctl(self._enc, request, value))

    cdef opus_int32 _get(self, int request) except? -1:
        cdef opus_int32 value = 0
        check_opus(libopus.opus_encoder_ctl(self._enc, request, &value))
        return value

    def encode(self, const int16_t[::1] pcm not None) -> bytes:
        """Encode one frame (interleaved int16) and return the Opus packet."""
        cdef uint8_t packet[MAX_PACKET_BYTES]
        cdef int frame_size = samples_per_channel(pcm.shape[0], self.channels)
        cdef Py_ssize_t n
        if not valid_frame_size(self.sample_rate, frame_size):
            raise frame_size_error(self.sample_rate, frame_size)
        with nogil:
            n = self.encode_frame(&pcm[0], frame_size, packet, MAX_PACKET_BYTES)
        check_opus(<int>n)
        return (<char*>packet)[:n]

    def encode_into(self, const int16_t[::1] pcm not None, uint8_t[::1] out not None) -> int:
        """Encode one frame into ``out``; return the packet length in bytes."""
        cdef int frame_size = samples_per_channel(pcm.shape[0], self.channels)
        cdef Py_ssize_t n
        if not valid_frame_size(self.sample_rate, frame_size):
            raise frame_size_error(self.sample_rate, frame_size)
        if out.shape[0] == 0:
            check_opus(libopus.OPUS_BUFFER_TOO_SMALL)
        with nogil:
            n = self.encode_frame(&pcm[0], frame_size, &out[0], out.shape[0])
        return check_opus(<int>n)

    def reset(self) -> None:
        """Forget the signal history, as if freshly created (settings are kept)."""
        check_opus(libopus.opus_encoder_ctl(self._enc, libopus.OPUS_RESET_STATE))

    @property
    def complexity(self) -> int:
        return self._get(libopus.OPUS_GET_COMPLEXITY_REQUEST)

    @complexity.setter
    def complexity(self, int value) -> None:
        if not 0 <= value <= 10:
            raise ValueError(f"Opus complexity must be 0..10, got {value}")
        self._set(libopus.OPUS_SET_COMPLEXITY_REQUEST, value)

    @property
    def bitrate(self) -> int:
        """Target bits/s (with ``None`` set, the bitrate libopus chose)."""
        return self._get(libopus.OPUS_GET_BITRATE_REQUEST)

    @bitrate.setter
    def bitrate(self, value) -> None:
        if value is None:
            self._set(libopus.OPUS_SET_BITRATE_REQUEST, libopus.OPUS_AUTO)
            return
        if not 500 <= value <= 512000:
            raise ValueError(f"Opus bitrate must be None or 500..512000 bits/s, got {value}")
        self._set(libopus.OPUS_SET_BITRATE_REQUEST, <opus_int32>value)

    @property
    def fec(self) -> bool:
        """In-band forward error correction (carried in SILK/hybrid packets)."""
        return self._get(libopus.OPUS_GET_INBAND_FEC_REQUEST) != 0

    @fec.setter
    def fec(self, bint value) -> None:
        self._set(libopus.OPUS_SET_INBAND_FEC_REQUEST, value)

    @property
    def dtx(self) -> bool:
        """Discontinuous transmission: tiny packets during silence."""
        return self._get(libopus.OPUS_GET_DTX_REQUEST) != 0

    @dtx.setter
    def dtx(self, bint value) -> None:
        self._set(libopus.OPUS_SET_DTX_REQUEST, value)

    @property
    def packet_loss_perc(self) -> int:
        return self._get(libopus.OPUS_GET_PACKET_LOSS_PERC_REQUEST)

    @packet_loss_perc.setter
    def packet_loss_perc(self, int value) -> None:
        if not 0 <= value <= 100:
            raise ValueError(f"Opus packet_loss_perc must be 0..100, got {value}")
        self._set(libopus.OPUS_SET_PACKET_LOSS_PERC_REQUEST, value)

    @property
    def lookahead(self) -> int:
        """Encoder delay in samples per channel (the decoded signal lags the input by this)."""
        return self._get(libopus.OPUS_GET_LOOKAHEAD_REQUEST)

    @property
    def final_range(self) -> int:
        """Range coder state after the last packet (equal in encoder and decoder)."""
        return <unsigned int>self._get(libopus.OPUS_GET_FINAL_RANGE_REQUEST)


cdef class OpusDecoder:
    """An Opus decoder (libopus ``OpusDecoder``)."""

    def __cinit__(self, int sample_rate, int channels=1):
        cdef int error = libopus.OPUS_OK
        check_rate_channels(sample_rate, channels)
        self.sample_rate = sample_rate
        self.channels = channels
        self._dec = libopus.opus_decoder_create(sample_rate, channels, &error)
        check_opus(error)
        if self._dec == NULL:
            raise MemoryError("opus_decoder_create returned NULL")

    def __dealloc__(self):
        if self._dec != NULL:
            libopus.opus_decoder_destroy(self._dec)
            self._dec = NULL

    cdef int decode_frame(self, const uint8_t* data, Py_ssize_t n, int16_t* out,
                          int frame_size, bint fec) noexcept nogil:
        if data == NULL or n <= 0:
            return libopus.opus_decode(self._dec, NULL, 0, <opus_int16*>out, frame_size, 0)
        if n > INT32_MAX:
            return libopus.OPUS_INVALID_PACKET
        return libopus.opus_decode(self._dec, data, <opus_int32>n, <opus_int16*>out, frame_size, fec)

    cdef opus_int32 _get(self, int request) except? -1:
        cdef opus_int32 value = 0
        check_opus(libopus.opus_decoder_ctl(self._dec, request, &value))
        return value

    cdef int _default_frame_size(self, const uint8_t* data, Py_ssize_t n) except -1:
        # A packet: its own duration (for FEC, the lost frame is assumed as long).
        # A loss: as long as the last packet, or 20 ms before any packet arrived.
        cdef int last
        if data != NULL and n > 0:
            if n > INT32_MAX:
                check_opus(libopus.OPUS_INVALID_PACKET)
            return check_opus(libopus.opus_packet_get_nb_samples(data, <opus_int32>n, self.sample_rate))
        last = self._get(libopus.OPUS_GET_LAST_PACKET_DURATION_REQUEST)
        return last if last > 0 else self.sample_rate // 50

    def decode(self, const uint8_t[::1] packet, frame_size=None, bint fec=False) -> np.ndarray:
        """Decode one packet (``None``: conceal a lost one) into a new int16 array.

        ``frame_size`` (samples per channel) defaults to the packet's duration, or
        for a loss to the last packet's.  With ``fec`` the frame *before*
        ``packet`` is recovered from the packet's in-band FEC data.
        """
        cdef const uint8_t* data = NULL
        cdef Py_ssize_t n = 0
        cdef int size
        if packet is not None and packet.shape[0] > 0:
            data = &packet[0]
            n = packet.shape[0]
        if frame_size is None:
            size = self._default_frame_size(data, n)
        else:
            size = frame_size
            if not valid_frame_size(self.sample_rate, size):
                raise frame_size_error(self.sample_rate, size)
        out = np.empty(size * self.channels, dtype=np.int16)
        decoded = self.decode_into(packet, out, size, fec)
        return out[:decoded * self.channels]

    def decode_into(self, const uint8_t[::1] packet, int16_t[::1] out not None, frame_size=None,
                    bint fec=False) -> int:
        """Decode one packet (``None``: conceal a lost one) into ``out``.

        Returns the samples per channel written; see :meth:`decode` for ``frame_size``.
        """
        cdef const uint8_t* data = NULL
        cdef Py_ssize_t n = 0
        cdef int size, decoded
        if packet is not None and packet.shape[0] > 0:
            data = &packet[0]
            n = packet.shape[0]
        if frame_size is None:
            size = self._default_frame_size(data, n)
        else:
            size = frame_size
            if not valid_frame_size(self.sample_rate, size):
                raise frame_size_error(self.sample_rate, size)
        if <Py_ssize_t>size * self.channels > out.shape[0]:
            raise ValueError(f"out holds {out.shape[0]} samples, the frame needs {size * self.channels}")
        with nogil:
            decoded = self.decode_frame(data, n, &out[0], size, fec)
        return check_opus(decoded)

    def reset(self) -> None:
        """Forget the decoded history, as after creation."""
        check_opus(libopus.opus_decoder_ctl(self._dec, libopus.OPUS_RESET_STATE))

    @property
    def last_packet_duration(self) -> int:
        """Samples per channel of the last packet decoded (or concealed)."""
        return self._get(libopus.OPUS_GET_LAST_PACKET_DURATION_REQUEST)

    @property
    def final_range(self) -> int:
        """Range coder state after the last packet (equal in encoder and decoder)."""
        return <unsigned int>self._get(libopus.OPUS_GET_FINAL_RANGE_REQUEST)
