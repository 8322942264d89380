# C-level API of the per-leg noise suppressor (see denoise.pyx).
#
# The library is Python-level (webrtc-noise-gain), so process_c needs the GIL:
# the engine calls it only for legs that asked for ``denoise: true``.

from libc.stdint cimport int16_t

cdef enum:
    DENOISE_RATE = 16000
    DENOISE_CHUNK = 160          # samples per library call (10 ms)
    DENOISE_CHUNK_BYTES = 320
    DENOISE_FRAME = 320          # the engine's 20 ms frame: two library calls
    DENOISE_DELAY = 96           # latency the suppressor adds, in samples (6 ms), measured
    DENOISE_MAX_LEVEL = 4


cdef class DenoiseBank:
    cdef readonly int max_legs
    cdef readonly int level          # 1 low, 2 moderate, 3 high, 4 very high
    cdef object _processor_type      # webrtc_noise_gain.AudioProcessor
    cdef list _calls                 # per slot: bound Process10ms of its own AudioProcessor, or None
    cdef bytes _chunk                # 320-byte input handed to the library, rewritten before each call

    # Denoise n samples (a positive multiple of DENOISE_CHUNK) of ``slot`` in place.
    # Raises ValueError for a bad slot/length or a disabled slot, CoreError if the library misbehaves.
    cdef int process_c(self, int slot, int16_t* frame, int n) except -1
    cdef int _slot_arg(self, int slot) except -1
    cdef object _call_for(self, int slot, Py_ssize_t n)
    cdef int _run(self, object call, int16_t* frame, int n) except -1
