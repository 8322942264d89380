"""One call leg's codec: encoder and decoder state behind a single dispatch, for the engine.

The engine works in 20 ms frames. ``decode_c`` accepts a payload of any whole number of samples
(peers may use another packet time), ``conceal_c`` fills a lost frame, ``encode_c`` encodes one frame.

Concealment: Opus uses libopus PLC; G.722 and the stateless codecs repeat the last good frame at
half amplitude per lost frame, then fall silent after 3 frames (G.711 Appendix I style, simplified).

Names accepted by :class:`Codec` (``name``): pcmu, pcma, g722, l16, pcm, opus.
"""
from libc.stdint cimport int16_t, uint8_t
from libc.string cimport memcpy, memset
from pbx.core.g711 cimport ulaw_encode_c, ulaw_decode_c, alaw_encode_c, alaw_decode_c
from pbx.core.l16 cimport l16_decode_c, l16_encode_c, s16le_decode_c, s16le_encode_c
from pbx.core.g722 cimport G722Encoder, G722Decoder
from pbx.core.opus cimport OpusEncoder, OpusDecoder

import numpy as np

CODEC_NAMES = {"pcmu": CODEC_PCMU, "pcma": CODEC_PCMA, "g722": CODEC_G722, "l16": CODEC_L16,
               "pcm": CODEC_PCM, "opus": CODEC_OPUS}


cdef class Codec:
    def __cinit__(self, str name, int rate=0, int complexity=5):
        if name not in CODEC_NAMES:
            raise ValueError(f"unknown codec {name!r}; expected one of {', '.join(CODEC_NAMES)}")
        self.kind = CODEC_NAMES[name]
        if self.kind == CODEC_PCMU or self.kind == CODEC_PCMA:
            self.audio_rate = self.clock_rate = 8000
        elif self.kind == CODEC_G722:
            # RFC 3551: G.722 is 16 kHz audio but its RTP clock runs at 8000 Hz.
            self.audio_rate, self.clock_rate = 16000, 8000
            self._g722_enc = G722Encoder()
            self._g722_dec = G722Decoder()
        elif self.kind == CODEC_OPUS:
            # RFC 7587: the RTP clock is always 48 kHz whatever the decoded rate.
            self.audio_rate = rate or 16000
            self.clock_rate = 48000
            if self.audio_rate not in (8000, 12000, 16000, 24000, 48000):
                raise ValueError(f"opus rate must be 8000, 12000, 16000, 24000 or 48000, got {self.audio_rate}")
            self._opus_enc = OpusEncoder(self.audio_rate, 1, complexity=complexity)
            self._opus_dec = OpusDecoder(self.audio_rate, 1)
        else:
            self.audio_rate = self.clock_rate = rate or 16000
            if self.audio_rate not in (8000, 16000, 24000, 48000):
                raise ValueError(f"{name} rate must be 8000, 16000, 24000 or 48000, got {self.audio_rate}")
        self.frame_samples = self.audio_rate // 50
        self.frame_ticks = self.clock_rate // 50
        memset(self.last_frame, 0, sizeof(self.last_frame))
        self.conceal_run = 0

    cdef int decode_c(self, const uint8_t* payload, Py_ssize_t n, int16_t* pcm, int max_samples) noexcept nogil:
        cdef int samples
        if self.kind == CODEC_PCMU or self.kind == CODEC_PCMA:
            samples = <int>n
            if samples > max_samples:
                return -1
            if self.kind == CODEC_PCMU:
                ulaw_decode_c(payload, pcm, samples)
            else:
                alaw_decode_c(payload, pcm, samples)
        elif self.kind == CODEC_G722:
            samples = <int>(2 * n)
            if samples > max_samples:
                return -1
            (<G722Decoder>self._g722_dec).decode_frame(payload, n, pcm)
        elif self.kind == CODEC_OPUS:
            samples = (<OpusDecoder>self._opus_dec).decode_frame(payload, n, pcm, max_samples, False)
            if samples < 0:
                return -1
        else:
            if n & 1 or n // 2 > max_samples:
                return -1
            samples = <int>(n // 2)
            if self.kind == CODEC_L16:
                l16_decode_c(payload, pcm, samples)
            else:
                s16le_decode_c(payload, pcm, samples)
        if samples >= self.frame_samples:
            memcpy(self.last_frame, pcm + samples - self.frame_samples, self.frame_samples * sizeof(int16_t))
        self.conceal_run = 0
        return samples

    cdef int conceal_c(self, int16_t* pcm) noexcept nogil:
        cdef int i, n = self.frame_samples
        if self.kind == CODEC_OPUS:
            if (<OpusDecoder>self._opus_dec).decode_frame(NULL, 0, pcm, n, False) == n:
                return n
        self.conceal_run += 1
        if self.conceal_run > 3:
            memset(pcm, 0, n * sizeof(int16_t))
            return n
        for i in range(n):
            self.last_frame[i] = self.last_frame[i] >> 1
            pcm[i] = self.last_frame[i]
        return n

    cdef int encode_c(self, const int16_t* pcm, uint8_t* payload) noexcept nogil:
        cdef int n = self.frame_samples
        if self.kind == CODEC_PCMU:
            ulaw_encode_c(pcm, payload, n)
            return n
        if self.kind == CODEC_PCMA:
            alaw_encode_c(pcm, payload, n)
            return n
        if self.kind == CODEC_G722:
            return <int>(<G722Encoder>self._g722_enc).encode_frame(pcm, n, payload)
        if self.kind == CODEC_OPUS:
            return <int>(<OpusEncoder>self._opus_enc).encode_frame(pcm, n, payload, CODEC_MAX_PAYLOAD)
        if self.kind == CODEC_L16:
            l16_encode_c(pcm, payload, n)
        else:
            s16le_encode_c(pcm, payload, n)
        return 2 * n

    # -- Python entry points for tests ----------------------------------------------------------
    def decode(self, bytes payload):
        out = np.empty(CODEC_MAX_FRAME * 4, dtype=np.int16)
        cdef int16_t[::1] view = out
        cdef int n = self.decode_c(payload, len(payload), &view[0], view.shape[0])
        if n < 0:
            raise ValueError(f"{len(payload)}-byte payload does not decode as this codec")
        return out[:n]

    def conceal(self):
        out = np.empty(self.frame_samples, dtype=np.int16)
        cdef int16_t[::1] view = out
        self.conceal_c(&view[0])
        return out

    def encode(self, pcm):
        cdef const int16_t[::1] src = np.ascontiguousarray(pcm, dtype=np.int16)
        if src.shape[0] != self.frame_samples:
            raise ValueError(f"encode takes one 20 ms frame of {self.frame_samples} samples, got {src.shape[0]}")
        cdef uint8_t buf[CODEC_MAX_PAYLOAD]
        cdef int n = self.encode_c(&src[0], buf)
        if n < 0:
            raise ValueError("encoder failed")
        return bytes(buf[:n])
