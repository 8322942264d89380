# G.711 companding (ITU-T G.711, bit-exact with the G.191 reference g711.c).
#
# C-level API for the engine: pointer plus length, no GIL, no allocation.
# ``n`` is the number of samples (= the number of code bytes).  The ``_c``
# suffix keeps these apart from the Python wrappers of the same name.

from libc.stdint cimport int16_t, uint8_t

cdef void ulaw_encode_c(const int16_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil
cdef void ulaw_decode_c(const uint8_t* src, int16_t* dst, Py_ssize_t n) noexcept nogil
cdef void alaw_encode_c(const int16_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil
cdef void alaw_decode_c(const uint8_t* src, int16_t* dst, Py_ssize_t n) noexcept nogil
