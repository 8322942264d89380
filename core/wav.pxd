# 16-bit PCM WAV writer for the engine's recorder tap: valid file after every flush, no GIL needed.
from libc.stdint cimport int16_t, uint8_t, uint64_t

cdef enum:
    WAV_HEADER_BYTES = 44          # canonical RIFF/WAVE header: "fmt " (16 bytes) then "data"

cdef class WavWriter:
    cdef int fd                    # -1 once closed (or if opening failed)
    cdef bint owns_fd              # fd is ours to close: false (zeroed) if __cinit__'s arguments failed
    cdef int16_t* buf              # flush_frames * channels samples, little-endian on disk
    cdef Py_ssize_t buffered       # frames waiting in buf
    cdef Py_ssize_t flush_frames   # capacity of buf: flush_ms of audio
    cdef uint64_t written          # frames accepted (flushed + buffered)
    cdef uint64_t flushed          # frames on disk under a header that counts them
    cdef uint64_t max_frames       # largest count whose RIFF size still fits in 32 bits
    cdef int n_channels
    cdef int rate
    cdef int block_align           # bytes per frame
    cdef bint durable              # fdatasync data, then header, per flush (survives an OS crash too)
    cdef bint swap_bytes           # big-endian host: WAV samples are little-endian
    cdef bint busy                 # a Python call released the GIL inside this writer
    cdef int failed_step           # which operation set the last -errno (for the error message)
    cdef uint8_t header[WAV_HEADER_BYTES]
    cdef object path_

    # Buffer `frames` interleaved frames, flushing each time flush_ms of audio is buffered.
    # Returns 0 or -errno. On an error the frames copied before it stay accepted (see frames_written).
    cdef int write_frames(self, const int16_t* interleaved, Py_ssize_t frames) noexcept nogil
    # Append `frames` of silence (a sparse hole in the file when longer than the buffer). 0 or -errno.
    cdef int write_silence_c(self, uint64_t frames) noexcept nogil
    # Write the buffered frames, then rewrite the header sizes. 0 or -errno; retryable.
    cdef int flush_c(self) noexcept nogil
    # Flush, fsync and close the descriptor (closed even when the flush fails). 0 or -errno.
    cdef int close_c(self) noexcept nogil
    cdef int commit_header(self, uint64_t frames) noexcept nogil
    cdef int barrier(self) noexcept nogil
    cdef int check(self, int rc) except -1
    cdef int enter(self) except -1
