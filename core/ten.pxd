# C-level API of the optional TEN VAD bank (see ten.pyx).
from libc.stdint cimport int16_t, int32_t

# libten_vad's entry points, resolved with dlsym (ten_vad.h of ten-vad 1.0.6).
ctypedef int (*ten_create_fn)(void** handle, size_t hop_size, float threshold) noexcept nogil
ctypedef int (*ten_process_fn)(void* handle, const int16_t* audio, size_t hop_size,
                               float* out_probability, int32_t* out_flag) noexcept nogil
ctypedef int (*ten_destroy_fn)(void** handle) noexcept nogil
ctypedef const char* (*ten_version_fn)() noexcept nogil

cdef enum:
    TEN_RATE = 16000
    TEN_FRAME = 320               # one engine frame: 20 ms at 16 kHz = two hops of 160
    # process_c failures (it returns the number of probabilities written otherwise)
    TEN_ERR_SLOT = -1             # slot out of range or not enabled
    TEN_ERR_LENGTH = -2           # n is not a positive multiple of the bank's hop
    TEN_ERR_LIBRARY = -3          # ten_vad_process returned non-zero; probs_out is incomplete


cdef class TenBank:
    cdef readonly int max_legs
    cdef readonly int hop             # samples per probability: 160 (10 ms) or 256 (16 ms)
    cdef readonly str library         # path of the loaded libten_vad
    cdef readonly str version         # ten_vad_get_version(), e.g. "2.1.0"
    cdef void* _lib
    cdef ten_create_fn _create
    cdef ten_process_fn _process
    cdef ten_destroy_fn _destroy
    cdef void** _handles              # per slot; NULL while disabled

    # Run n samples (a positive multiple of hop) of one enabled slot through its detector, one
    # probability per hop into probs_out[0 : n / hop].  Returns that count or a TEN_ERR_* code.
    # Pure C: callable without the GIL, but never concurrently with enable()/disable() of the slot.
    cdef int process_c(self, int slot, const int16_t* pcm, int n, float* probs_out) noexcept nogil
    cdef int _slot_arg(self, int slot) except -1
    cdef void* _symbol(self, str path, bytes name) except NULL
    cdef int _check(self, int slot, int r, Py_ssize_t n) except -1
