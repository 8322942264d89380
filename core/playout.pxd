# Per-leg playout queue: PCM items (TTS results, files, streamed audio) played one after another.
from cpython.ref cimport PyObject
from libc.stdint cimport int16_t, int32_t, int64_t

cdef enum:
    PLAYOUT_MAX_ITEMS = 64     # queued items per leg
    PLAYOUT_MAX_MUTED = 16     # muted track ids remembered per leg
    PLAYOUT_MAX_EVENTS = 256   # events buffered between drains

cdef enum PlayoutEventKind:
    PLAY_STARTED = 1    # first sample of the item was played
    PLAY_ENDED = 2      # the item stopped: played to its end, or cut by interrupt
    PLAY_DROPPED = 3    # the item was removed before any sample played

cdef struct PlayItem:
    int64_t item_id
    int32_t track
    int16_t* pcm             # owned (malloc'd), or read-only memory of ``owner``
    PyObject* owner          # a shared immutable buffer this item plays (a reference held), or NULL
    Py_ssize_t length        # samples held
    Py_ssize_t capacity      # 0 for a shared buffer
    Py_ssize_t pos           # samples played (audio, muted or not)
    Py_ssize_t elapsed       # samples of playout time since it started, including underruns
    bint complete            # no more audio will be appended
    bint started
    bint muted

cdef struct PlayoutEvent:
    int kind
    int64_t item_id
    int32_t track
    Py_ssize_t offset        # sample index inside the pulled frame where it happened
    Py_ssize_t played        # item.pos at that moment
    Py_ssize_t elapsed       # item.elapsed at that moment
    Py_ssize_t total         # item.length at that moment
    bint interrupted         # ENDED by interrupt/replacement rather than by reaching the end

cdef class Playout:
    cdef PlayItem* items[PLAYOUT_MAX_ITEMS]
    cdef int head, count
    cdef bint graceful_stop      # after the current item ends, drop the rest
    cdef int32_t muted_tracks[PLAYOUT_MAX_MUTED]
    cdef int n_muted
    cdef bint mute_all
    cdef Py_ssize_t max_samples  # bound on samples queued over all items
    cdef Py_ssize_t queued       # samples held over all items, in buffers of their own
    cdef PlayoutEvent events[PLAYOUT_MAX_EVENTS]
    cdef int n_events
    cdef Py_ssize_t lost_events
    cdef Py_ssize_t shared       # samples of shared buffers the items refer to (held elsewhere)

    cdef PlayItem* _item(self, int i) noexcept nogil
    cdef void _pop_head(self) noexcept nogil
    cdef void _emit(self, int kind, PlayItem* it, Py_ssize_t offset, bint interrupted) noexcept nogil
    cdef bint _track_muted(self, int32_t track) noexcept nogil
    cdef void _drop_queue(self, Py_ssize_t offset) noexcept nogil
    cdef void _finish_head(self, Py_ssize_t offset) noexcept nogil
    cdef PlayItem* _find(self, int64_t item_id) noexcept nogil
    cdef int _append_pcm(self, PlayItem* it, const int16_t[::1] pcm) except -1
    cdef Py_ssize_t pull_c(self, int16_t* out, Py_ssize_t n) noexcept nogil
    cdef bint active_c(self) noexcept nogil
    cdef void interrupt_c(self, bint graceful, Py_ssize_t offset) noexcept nogil
    cdef void _free_item(self, PlayItem* it) noexcept nogil
