"""16-bit PCM WAV writer whose file is a valid WAV after every flush.

Frames are buffered in one preallocated C buffer; every ``flush_ms`` of audio (or on
``flush()``) the buffer is written with ``pwrite`` after the data already on disk, and then
the 44-byte header is rewritten in place with the new RIFF and data sizes. Data goes first,
header second, so whenever the process dies the header describes only bytes that are there:
a crash loses at most one flush interval. An OS crash or power loss too with ``durable=True``,
which ``fdatasync``s after the data and again after the header of each flush. Every write is
positioned (``pwrite``), so a flush that failed half way (disk full) is simply redone at the same
offset by the next flush; until then the file stays valid, with at most some stray bytes after
the data chunk, which readers skip. Closing a durable writer ``fsync``s once.

The C methods return ``0`` or ``-errno`` and never raise, so the engine's recorder tap can call
them without the GIL; the Python wrappers raise :class:`pbx.core.errors.WavError`.
A writer is not thread-safe: one owner at a time.
"""
from libc.errno cimport errno, EBADF, EFBIG, EINTR, EIO
from libc.stdint cimport int16_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from posix.fcntl cimport open as c_open, O_WRONLY, O_CREAT, O_TRUNC, O_CLOEXEC
from posix.types cimport off_t
from posix.unistd cimport pwrite, ftruncate, fsync, fdatasync, close as c_close

import operator
import os

from pbx.core.errors import WavError

# The RIFF size field is 32 bits and counts everything after its own 8-byte chunk header.
cdef uint64_t RIFF_SIZE_MAX = 0xFFFFFFFF
cdef uint64_t RIFF_OVERHEAD = WAV_HEADER_BYTES - 8
cdef int MAX_CHANNELS = 8
cdef int MAX_RATE = 384000
cdef int MAX_FLUSH_MS = 10000

cdef enum Step:
    STEP_OPEN
    STEP_DATA
    STEP_HEADER
    STEP_EXTEND
    STEP_SYNC
    STEP_CLOSE
    STEP_LIMIT

STEP_MESSAGES = (
    "cannot open WAV file for writing",
    "cannot write WAV audio data",
    "cannot update WAV header",
    "cannot extend WAV file with silence",
    "cannot sync WAV file to disk",
    "cannot close WAV file",
    "WAV data would exceed the 4 GiB RIFF size limit",
)


cdef inline void put_u16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = v >> 8


cdef inline void put_u32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = v >> 24


cdef inline void put_tag(uint8_t* p, const char* tag) noexcept nogil:
    memcpy(p, tag, 4)


cdef void build_header(uint8_t* h, uint32_t rate, uint16_t channels) noexcept nogil:
    """Canonical header with both sizes zero (patched by set_sizes)."""
    cdef uint16_t block_align = channels * 2
    put_tag(h, b"RIFF")
    put_u32(h + 4, <uint32_t>RIFF_OVERHEAD)
    put_tag(h + 8, b"WAVE")
    put_tag(h + 12, b"fmt ")
    put_u32(h + 16, 16)                      # fmt chunk size for plain PCM
    put_u16(h + 20, 1)                       # WAVE_FORMAT_PCM
    put_u16(h + 22, channels)
    put_u32(h + 24, rate)
    put_u32(h + 28, rate * block_align)      # byte rate
    put_u16(h + 32, block_align)
    put_u16(h + 34, 16)                      # bits per sample
    put_tag(h + 36, b"data")
    put_u32(h + 40, 0)


cdef inline void set_sizes(uint8_t* h, uint64_t data_bytes) noexcept nogil:
    put_u32(h + 4, <uint32_t>(RIFF_OVERHEAD + data_bytes))
    put_u32(h + 40, <uint32_t>data_bytes)


cdef int pwrite_all(int fd, const uint8_t* data, uint64_t size, uint64_t offset) noexcept nogil:
    """pwrite until done: 0 or -errno (short writes continue where they stopped)."""
    cdef ssize_t n
    while size > 0:
        n = pwrite(fd, data, size, <off_t>offset)
        if n < 0:
            if errno == EINTR:
                continue
            return -errno
        if n == 0:
            return -EIO
        data += n
        size -= <uint64_t>n
        offset += <uint64_t>n
    return 0


cdef class WavWriter:
    """Write 16-bit PCM to ``path``; the file is a valid WAV after every flush.

    ``flush_ms`` of audio is buffered between flushes. ``durable=True`` also ``fdatasync``s
    twice per flush (costly on real disks: each blocks until the device has the data).
    """

    def __cinit__(self, path, int sample_rate, int channels=1, int flush_ms=200, *, bint durable=False):
        cdef uint16_t probe = 1
        cdef bytes encoded
        cdef const char* cpath
        cdef int fd, err = 0, rc = 0
        # Arguments that fail to convert (an int overflow) raise before this body runs, with fd still
        # zeroed: __dealloc__ closes only a descriptor this writer opened (owns_fd), never fd 0.
        self.fd = -1
        self.buf = NULL
        if not 1 <= sample_rate <= MAX_RATE:
            raise ValueError(f"sample_rate must be between 1 and {MAX_RATE} Hz, got {sample_rate}")
        if not 1 <= channels <= MAX_CHANNELS:
            raise ValueError(f"channels must be between 1 and {MAX_CHANNELS}, got {channels}")
        if not 1 <= flush_ms <= MAX_FLUSH_MS:
            raise ValueError(f"flush_ms must be between 1 and {MAX_FLUSH_MS}, got {flush_ms}")
        self.path_ = os.fsdecode(path)
        encoded = os.fsencode(self.path_)
        if b"\0" in encoded:
            raise ValueError("path contains a null byte")
        self.rate = sample_rate
        self.n_channels = channels
        self.block_align = 2 * channels
        self.durable = durable
        self.swap_bytes = (<uint8_t*>&probe)[0] == 0
        self.flush_frames = max(<Py_ssize_t>1, <Py_ssize_t>sample_rate * flush_ms // 1000)
        self.max_frames = (RIFF_SIZE_MAX - RIFF_OVERHEAD) // <uint64_t>self.block_align
        self.buf = <int16_t*>malloc(self.flush_frames * self.block_align)
        if self.buf == NULL:
            raise MemoryError(f"WavWriter: cannot allocate {self.flush_frames * self.block_align} bytes")
        build_header(self.header, sample_rate, channels)
        cpath = encoded
        with nogil:
            fd = c_open(cpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o666)
            if fd < 0:
                err = errno
            else:
                # Valid (empty) WAV from the start, so even a crash before the first flush leaves one.
                rc = pwrite_all(fd, self.header, WAV_HEADER_BYTES, 0)
                if rc < 0:
                    c_close(fd)
        if fd < 0:
            self.failed_step = STEP_OPEN
            self.check(-err)
        if rc < 0:
            self.failed_step = STEP_HEADER
            self.check(rc)
        self.fd = fd
        self.owns_fd = True

    def __dealloc__(self):
        if self.owns_fd and self.fd >= 0:
            self.close_c()                   # errors cannot be reported from here
        free(self.buf)

    # ---- C API -------------------------------------------------------------------------------

    cdef int write_frames(self, const int16_t* interleaved, Py_ssize_t frames) noexcept nogil:
        cdef Py_ssize_t take, i, count
        cdef int16_t* dst
        cdef uint16_t s
        cdef int rc
        if self.fd < 0:
            return -EBADF
        if frames <= 0:
            return 0
        if <uint64_t>frames > self.max_frames - self.written:
            self.failed_step = STEP_LIMIT
            return -EFBIG
        while frames > 0:
            if self.buffered == self.flush_frames:
                rc = self.flush_c()          # only after a failed flush: retry before taking more
                if rc < 0:
                    return rc
            take = self.flush_frames - self.buffered
            if take > frames:
                take = frames
            count = take * self.n_channels
            dst = self.buf + self.buffered * self.n_channels
            if self.swap_bytes:
                for i in range(count):
                    s = <uint16_t>interleaved[i]
                    dst[i] = <int16_t>((s >> 8) | (s << 8))
            else:
                memcpy(dst, interleaved, count * sizeof(int16_t))
            self.buffered += take
            self.written += <uint64_t>take
            interleaved += count
            frames -= take
            if self.buffered == self.flush_frames:
                rc = self.flush_c()
                if rc < 0:
                    return rc
        return 0

    cdef int write_silence_c(self, uint64_t frames) noexcept nogil:
        cdef uint64_t end_frames
        cdef int rc
        if self.fd < 0:
            return -EBADF
        if frames > self.max_frames - self.written:
            self.failed_step = STEP_LIMIT
            return -EFBIG
        if frames == 0:
            return 0
        if frames <= <uint64_t>(self.flush_frames - self.buffered):
            memset(self.buf + self.buffered * self.n_channels, 0, frames * self.block_align)
            self.buffered += <Py_ssize_t>frames
            self.written += frames
            return self.flush_c() if self.buffered == self.flush_frames else 0
        # Longer than the buffer: extend the file with a hole (reads as zeros, takes no disk space).
        rc = self.flush_c()
        if rc < 0:
            return rc
        end_frames = self.flushed + frames
        # Truncate to the data first: a failed write may have left bytes past it that are not zeros.
        if (ftruncate(self.fd, <off_t>(WAV_HEADER_BYTES + self.flushed * self.block_align)) != 0
                or ftruncate(self.fd, <off_t>(WAV_HEADER_BYTES + end_frames * self.block_align)) != 0):
            self.failed_step = STEP_EXTEND
            return -errno
        rc = self.barrier()
        if rc < 0:
            return rc
        rc = self.commit_header(end_frames)
        if rc < 0:
            return rc
        self.flushed = end_frames
        self.written += frames
        return 0

    cdef int flush_c(self) noexcept nogil:
        cdef int rc
        if self.fd < 0:
            return -EBADF
        if self.buffered == 0:
            return 0
        rc = pwrite_all(self.fd, <const uint8_t*>self.buf, <uint64_t>self.buffered * self.block_align,
                        WAV_HEADER_BYTES + self.flushed * self.block_align)
        if rc < 0:
            self.failed_step = STEP_DATA
            return rc
        rc = self.barrier()
        if rc < 0:
            return rc
        rc = self.commit_header(self.flushed + <uint64_t>self.buffered)
        if rc < 0:
            return rc
        # Only now do the frames count as flushed: a failed flush is redone whole, same offsets.
        self.flushed += <uint64_t>self.buffered
        self.buffered = 0
        return 0

    cdef int commit_header(self, uint64_t frames) noexcept nogil:
        """Rewrite the header for ``frames`` frames of data (already on disk)."""
        cdef int rc
        set_sizes(self.header, frames * self.block_align)
        rc = pwrite_all(self.fd, self.header, WAV_HEADER_BYTES, 0)
        if rc < 0:
            self.failed_step = STEP_HEADER
            return rc
        return self.barrier()

    cdef int barrier(self) noexcept nogil:
        """When durable, sync: the data must reach the disk before the header that counts it."""
        if self.durable and fdatasync(self.fd) != 0:
            self.failed_step = STEP_SYNC
            return -errno
        return 0

    cdef int close_c(self) noexcept nogil:
        cdef int rc
        if self.fd < 0:
            return 0
        rc = self.flush_c()
        # Only a durable writer waits for the disk: a process crash after close loses nothing that
        # is already in the page cache, and closing stays cheap wherever the caller does it.
        if rc == 0 and self.durable and fsync(self.fd) != 0:
            self.failed_step = STEP_SYNC
            rc = -errno
        if c_close(self.fd) != 0 and rc == 0:
            self.failed_step = STEP_CLOSE
            rc = -errno
        self.fd = -1
        free(self.buf)
        self.buf = NULL
        return rc

    cdef int check(self, int rc) except -1:
        if rc < 0:
            raise WavError(-rc, f"{STEP_MESSAGES[self.failed_step]}: {os.strerror(-rc)}", self.path_)
        return 0

    # ---- Python API --------------------------------------------------------------------------

    cdef int enter(self) except -1:
        if self.fd < 0:
            raise ValueError("WavWriter is closed")
        if self.busy:
            raise RuntimeError("WavWriter is in use by another thread")
        return 0

    def write(self, const int16_t[::1] pcm not None):
        """Append int16 samples (interleaved when stereo); flushes each time flush_ms is buffered.

        On WavError the frames copied before the failure stay accepted (``frames_written``).
        """
        cdef Py_ssize_t n = pcm.shape[0]
        cdef Py_ssize_t frames
        cdef int rc
        self.enter()
        if n % self.n_channels:
            raise ValueError(f"pcm has {n} samples, not a multiple of {self.n_channels} channels")
        frames = n // self.n_channels
        if frames == 0:
            return
        if self.buffered + frames < self.flush_frames:
            rc = self.write_frames(&pcm[0], frames)       # a copy only: not worth dropping the GIL
        else:
            self.busy = True
            with nogil:
                rc = self.write_frames(&pcm[0], frames)
            self.busy = False
        self.check(rc)

    def write_silence(self, frames):
        """Append ``frames`` frames of silence; long gaps become a sparse hole in the file."""
        cdef uint64_t n
        cdef int rc
        self.enter()
        frames = operator.index(frames)
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        if frames > self.max_frames:
            self.failed_step = STEP_LIMIT
            self.check(-EFBIG)
        n = frames
        self.busy = True
        with nogil:
            rc = self.write_silence_c(n)
        self.busy = False
        self.check(rc)

    def flush(self):
        """Write the buffered frames and update the header; a failed flush can be retried."""
        cdef int rc
        self.enter()
        self.busy = True
        with nogil:
            rc = self.flush_c()
        self.busy = False
        self.check(rc)

    def close(self):
        """Flush (and fsync if durable), then close. Idempotent; the descriptor is closed even if this raises."""
        cdef int rc
        if self.fd < 0:
            return
        self.enter()
        self.busy = True
        with nogil:
            rc = self.close_c()
        self.busy = False
        self.check(rc)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()

    @property
    def frames_written(self):
        """Frames accepted so far (flushed or still buffered)."""
        return self.written

    @property
    def frames_flushed(self):
        """Frames on disk and counted by the header."""
        return self.flushed

    @property
    def path(self):
        return self.path_

    @property
    def sample_rate(self):
        return self.rate

    @property
    def channels(self):
        return self.n_channels

    @property
    def closed(self):
        return self.fd < 0

    def __repr__(self):
        state = "closed" if self.fd < 0 else "open"
        return (f"<WavWriter {self.path_!r} {self.rate} Hz x{self.n_channels} {state}, "
                f"{self.written} frames written, {self.flushed} flushed>")
