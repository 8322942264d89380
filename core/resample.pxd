# Streaming polyphase FIR resampler (see resample.pyx for the filter designs).
#
# C-level API for the engine: ``process_c`` takes n input samples and writes exactly
# n * ratio_up / ratio_down output samples at once (dst must have room for them).
# n must be a multiple of ``ratio_down`` (the input step); otherwise nothing is
# written and -1 is returned.  No allocation, no GIL.  (The ``_c`` suffix keeps it
# apart from the Python wrapper ``process``, as in g711.pxd.)

from libc.stdint cimport int16_t

cdef enum:
    RESAMPLE_MAX_UP = 6        # largest interpolation factor of a supported pair


cdef class Resampler:
    cdef readonly int in_rate
    cdef readonly int out_rate
    cdef readonly int ratio_up        # out_rate / in_rate in lowest terms: up / down
    cdef readonly int ratio_down      # the input step: n must be a multiple of it
    cdef readonly Py_ssize_t delay_samples   # group delay at the output rate

    cdef Py_ssize_t ntaps             # taps per output slot, a multiple of 16
    cdef Py_ssize_t hist              # input samples of history kept ahead of each chunk
    cdef Py_ssize_t chunk             # most input samples handled per pass (multiple of down)
    cdef int16_t* buf                 # hist + chunk input samples
    cdef int16_t* coefs               # ratio_up rows of ntaps Q15 taps, oldest sample first
    cdef Py_ssize_t newest[RESAMPLE_MAX_UP]      # per output slot: newest input used, from block start
    cdef Py_ssize_t copy_back[RESAMPLE_MAX_UP]   # per slot: -1 = filter row, else copy input newest-k
    cdef object _taps                 # prototype filter (numpy int32, Q15 with gain up)

    cdef Py_ssize_t process_c(self, const int16_t* src, Py_ssize_t n, int16_t* dst) noexcept nogil
    cdef void clear(self) noexcept nogil
    cdef Py_ssize_t output_length(self, Py_ssize_t n) except -1   # ValueError if n is not a multiple of down
