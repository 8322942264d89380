# cython: language_level=3
"""Noise suppression for the inbound path of legs with ``denoise: true``, one WebRTC suppressor per leg.

Library: ``webrtc-noise-gain`` (PyPI, Apache-2.0; 1.3.0 tested), a small C extension
over the webrtc-audio-processing 1.x ``AudioProcessing`` module, statically linked.
``AudioProcessor(auto_gain, noise_suppression).Process10ms(chunk)`` takes exactly
10 ms of 16 kHz mono int16 as ``bytes`` (320 bytes, nothing else is accepted) and
returns an object whose ``audio`` is a new 320-byte ``bytes``.

What one processor does, as the library configures it (nothing else is settable):

- noise suppression at ``level`` 1..4 = WebRTC's kLow / kModerate / kHigh /
  kVeryHigh (0 would disable it; a bank always suppresses).  Default 2 (moderate).
- AGC off: we pass ``auto_gain=0``, for which the library enables neither
  gain_controller1 nor gain_controller2 (measured below; the test allows 1 dB).
- always on, not switchable: WebRTC's voice high-pass filter (a low cutoff, of the
  order of 80 Hz: it removes DC and part of a mains hum) and the voice-activity statistic
  (``is_speech``, which we ignore; it costs a little CPU).
- echo cancellation off.

Latency: the suppressor delays the audio by 96 samples = 6 ms, measured by
cross-correlating input and output speech (``DELAY_SAMPLES``; the test asserts it);
that is the overlap of its 256-point analysis window over 160-sample blocks.
With suppression disabled (level 0, not offered here) the library adds none.
Every 10 ms chunk in gives one out, so frames stay 320 samples and in step.

Measured on espeak-ng speech (tests/test_denoise.py), level 2, after the first
0.5 s of adaptation: white noise at 10 dB SNR is attenuated by 11.6-11.7 dB in
speech pauses; 50/100/150 Hz hum plus white noise by 17.7-18.3 dB (6.4 dB of it is
the high-pass filter alone); speech segments lose 0.9-1.1 dB; the waveform SNR
against the (high-passed) clean speech improves by 3.8 dB.  Levels 1/3/4 give
6.0/16.7/19.6 dB on the white-noise case for a similar speech loss.  Clean speech,
loud or 30 dB down, keeps its level within 0.4 dB (no AGC).  Output is
bit-identical to calling the library directly on the same 10 ms chunks.

Cost (bench/cases/denoise.py): 17.6 µs of CPU per 20 ms frame per leg, of which
the two library calls are 17.3 µs (0.09 % of one core per leg at 50 frames/s).
Creating a processor (``enable``) takes ~0.3 ms and ~280 KiB.

Calls: the library is Python-level, so ``process_c`` holds the GIL and makes one
Python call per 10 ms chunk.  Per-call overhead is kept to the call itself: each
slot keeps its bound ``Process10ms``, and one private 320-byte ``bytes`` object is
rewritten with the next chunk before each call instead of building a new one.
Rewriting a ``bytes`` is only sound because nobody else can see that object: it
is never hashed or handed out, and the library only reads it during the call; if
its reference count ever shows another holder, a fresh one replaces it.
"""

from cpython.buffer cimport PyBuffer_Release
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from libc.stdint cimport int16_t
from libc.string cimport memcpy, memmove

cimport numpy as cnp

from pbx.core.bufargs cimport ITEM_INT16, get_view

from pbx.core.errors import CoreError

cnp.import_array()

cdef extern from "Python.h":
    # On a borrowed pointer: Cython's own Py_REFCNT takes an object and counts its temporary reference.
    Py_ssize_t refcount "Py_REFCNT"(PyObject* obj) noexcept nogil

RATE = DENOISE_RATE
CHUNK = DENOISE_CHUNK
FRAME = DENOISE_FRAME
DELAY_SAMPLES = DENOISE_DELAY
MAX_LEVEL = DENOISE_MAX_LEVEL


def default_processor():
    """``webrtc_noise_gain.AudioProcessor``, imported only when a bank is made (it is an optional feature)."""
    try:
        from webrtc_noise_gain import AudioProcessor
    except ImportError as exc:
        raise ImportError("denoise needs the webrtc-noise-gain package (pip install webrtc-noise-gain)") from exc
    return AudioProcessor


cdef class DenoiseBank:
    """One WebRTC noise suppressor per leg slot, at one suppression ``level`` (1..4).

    ``processor`` is the library's ``AudioProcessor`` class (the default); tests
    may pass a stand-in called as ``processor(auto_gain, noise_suppression)``.
    """

    def __init__(self, int max_legs, int level=2, processor=None):
        if max_legs <= 0:
            raise ValueError("max_legs must be positive")
        if level < 1 or level > DENOISE_MAX_LEVEL:
            raise ValueError(f"level must be 1..{DENOISE_MAX_LEVEL}, got {level}")
        self.max_legs = max_legs
        self.level = level
        self._processor_type = default_processor() if processor is None else processor
        self._calls = [None] * max_legs
        self._chunk = PyBytes_FromStringAndSize(NULL, DENOISE_CHUNK_BYTES)

    cdef int _slot_arg(self, int slot) except -1:
        if slot < 0 or slot >= self.max_legs:
            raise ValueError(f"slot {slot} out of range 0..{self.max_legs - 1}")
        return slot

    cdef object _call_for(self, int slot, Py_ssize_t n):
        """The slot's Process10ms, after checking the slot and the frame length."""
        self._slot_arg(slot)
        if n <= 0 or n % DENOISE_CHUNK != 0 or n > 0x7FFFFFFF:
            raise ValueError(f"frame must be a positive multiple of {DENOISE_CHUNK} samples "
                             f"(10 ms at 16 kHz), got {n}")
        call = self._calls[slot]
        if call is None:
            raise ValueError(f"slot {slot} is not enabled")
        return call

    cdef int _run(self, object call, int16_t* frame, int n) except -1:
        cdef int off = 0
        cdef object result, audio
        while off < n:
            if refcount(<PyObject*>self._chunk) != 1:     # someone else holds it: never write under them
                self._chunk = PyBytes_FromStringAndSize(NULL, DENOISE_CHUNK_BYTES)
            memcpy(PyBytes_AS_STRING(self._chunk), frame + off, DENOISE_CHUNK_BYTES)
            result = call(self._chunk)
            audio = result.audio
            if not PyBytes_CheckExact(audio):
                raise CoreError(f"webrtc-noise-gain returned {type(audio).__name__} audio, expected bytes")
            if PyBytes_GET_SIZE(audio) != DENOISE_CHUNK_BYTES:
                raise CoreError(f"webrtc-noise-gain returned {PyBytes_GET_SIZE(audio)} bytes of audio, "
                                f"expected {DENOISE_CHUNK_BYTES}")
            memcpy(frame + off, PyBytes_AS_STRING(audio), DENOISE_CHUNK_BYTES)
            off += DENOISE_CHUNK
        return 0

    cdef int process_c(self, int slot, int16_t* frame, int n) except -1:
        return self._run(self._call_for(slot, n), frame, n)

    def enable(self, int slot):
        """Give ``slot`` a fresh suppressor (re-enabling an enabled slot resets its state)."""
        self._slot_arg(slot)
        self._calls[slot] = self._processor_type(0, self.level).Process10ms

    def disable(self, int slot):
        """Drop ``slot``'s suppressor (a no-op if it has none)."""
        self._slot_arg(slot)
        self._calls[slot] = None

    def is_enabled(self, int slot):
        """True when ``slot`` has a suppressor."""
        self._slot_arg(slot)
        return self._calls[slot] is not None

    def process(self, int slot, frame):
        """Denoised copy (int16 numpy array) of ``frame``, a multiple of 160 samples of ``slot``'s audio."""
        cdef Py_buffer src
        cdef cnp.npy_intp n
        cdef cnp.ndarray out
        get_view(frame, &src, ITEM_INT16, False, "frame")
        try:
            n = src.len // 2
            call = self._call_for(slot, n)
            out = cnp.PyArray_EMPTY(1, &n, cnp.NPY_INT16, 0)
            memcpy(cnp.PyArray_DATA(out), src.buf, src.len)
        finally:
            PyBuffer_Release(&src)
        self._run(call, <int16_t*>cnp.PyArray_DATA(out), <int>n)
        return out

    def process_into(self, int slot, frame, out):
        """Denoise ``frame`` of ``slot`` into ``out`` (which may be ``frame`` itself); returns the sample count."""
        cdef Py_buffer src, dst
        cdef Py_ssize_t n
        get_view(frame, &src, ITEM_INT16, False, "frame")
        try:
            n = src.len // 2
            call = self._call_for(slot, n)
            get_view(out, &dst, ITEM_INT16, True, "out")
            try:
                if dst.len // 2 < n:
                    raise ValueError(f"out holds {dst.len // 2} samples, need {n}")
                if dst.buf != src.buf:
                    memmove(dst.buf, src.buf, src.len)
                self._run(call, <int16_t*>dst.buf, <int>n)
            finally:
                PyBuffer_Release(&dst)
        finally:
            PyBuffer_Release(&src)
        return n
