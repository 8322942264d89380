"""Per-leg playout queue: what the server plays to one call side.

Items (a TTS result, a decoded file, a stream of PCM that is still arriving) are played one after
another at the leg's internal rate. Python enqueues and appends PCM (per chunk, never per frame); the
engine pulls one frame per tick with :meth:`Playout.pull_c` and drains the events.

Rules:
- An item starts (PLAY_STARTED) when its first sample is pulled (an item reserved before its audio
  arrives waits, silently, without starting); it ends (PLAY_ENDED) when its last sample is pulled and
  it is complete, in the same pull, with ``offset`` the sample index in the frame. A complete empty
  item starts and ends at once.
- An incomplete item with no audio left is an underrun: the rest of the frame is silence and its
  ``elapsed`` clock keeps running (``elapsed`` is playout time, ``played`` is audio played).
- ``interrupt(graceful=False)`` ends the current item at once (``interrupted``) and drops the queue
  (PLAY_DROPPED for items that never started). ``graceful=True`` lets the current item play to its end,
  then drops the rest; an idle queue is simply cleared.
- A muted track plays silence in place of its audio; its position and clocks advance as if unmuted.
- Samples queued over all items are bounded (``max_samples``): appending past it raises ValueError and
  leaves the item as it was.
- :meth:`Playout.share` gives an item an immutable buffer (a decoded file) that other queues may play
  too: the item holds a reference to it instead of a copy, so N calls playing one prompt cost one
  buffer. Its samples count in ``shared_samples``, not against ``max_samples`` (the server bounds the
  distinct shared buffers: pbx.server.media.AudioBudget); the reference goes when the item ends.
"""
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from libc.stdint cimport int16_t, int32_t, int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memset

import numpy as np

PLAY_STARTED_ = PLAY_STARTED
PLAY_ENDED_ = PLAY_ENDED
PLAY_DROPPED_ = PLAY_DROPPED


cdef class Playout:
    def __cinit__(self, Py_ssize_t max_samples=16000 * 600):
        if max_samples <= 0:
            raise ValueError(f"max_samples must be positive, got {max_samples}")
        self.max_samples = max_samples
        self.head = self.count = 0
        self.n_events = 0
        self.lost_events = 0
        self.n_muted = 0
        self.mute_all = False
        self.graceful_stop = False
        self.queued = 0
        self.shared = 0

    def __dealloc__(self):
        while self.count:
            self._pop_head()

    # -- internal helpers (GIL-free) -------------------------------------------------------------
    cdef PlayItem* _item(self, int i) noexcept nogil:
        return self.items[(self.head + i) % PLAYOUT_MAX_ITEMS]

    cdef void _pop_head(self) noexcept nogil:
        cdef PlayItem* it = self.items[self.head]
        self.items[self.head] = NULL
        self.head = (self.head + 1) % PLAYOUT_MAX_ITEMS
        self.count -= 1
        self._free_item(it)

    cdef void _free_item(self, PlayItem* it) noexcept nogil:
        if it.owner != NULL:
            self.shared -= it.length
            # Once per item end, not per frame; the engine calls in holding the GIL, so this is cheap.
            with gil:
                Py_XDECREF(it.owner)
        else:
            self.queued -= it.length
            free(it.pcm)
        free(it)

    cdef void _emit(self, int kind, PlayItem* it, Py_ssize_t offset, bint interrupted) noexcept nogil:
        cdef PlayoutEvent* e
        if self.n_events == PLAYOUT_MAX_EVENTS:
            self.lost_events += 1
            return
        e = &self.events[self.n_events]
        self.n_events += 1
        e.kind = kind
        e.item_id = it.item_id
        e.track = it.track
        e.offset = offset
        e.played = it.pos
        e.elapsed = it.elapsed
        e.total = it.length
        e.interrupted = interrupted

    cdef bint _track_muted(self, int32_t track) noexcept nogil:
        cdef int i
        for i in range(self.n_muted):
            if self.muted_tracks[i] == track:
                return True
        return False

    cdef void _drop_queue(self, Py_ssize_t offset) noexcept nogil:
        """Remove every item; the current one ends (interrupted) if it had started."""
        cdef PlayItem* it
        while self.count:
            it = self._item(0)
            self._emit(PLAY_ENDED if it.started else PLAY_DROPPED, it, offset, True)
            self._pop_head()
        self.graceful_stop = False

    cdef void _finish_head(self, Py_ssize_t offset) noexcept nogil:
        self._emit(PLAY_ENDED, self._item(0), offset, False)
        self._pop_head()
        if self.graceful_stop:
            self._drop_queue(offset)

    # -- engine API ------------------------------------------------------------------------------
    cdef bint active_c(self) noexcept nogil:
        return self.count > 0

    cdef void interrupt_c(self, bint graceful, Py_ssize_t offset) noexcept nogil:
        if graceful and self.count and self._item(0).started:
            self.graceful_stop = True
        else:
            self._drop_queue(offset)

    cdef Py_ssize_t pull_c(self, int16_t* out, Py_ssize_t n) noexcept nogil:
        """Fill ``out`` with ``n`` samples (silence where nothing plays); returns audio samples played."""
        cdef Py_ssize_t filled = 0, take, avail, played = 0
        cdef PlayItem* it
        while filled < n and self.count:
            it = self._item(0)
            avail = it.length - it.pos
            if not it.started:
                if avail == 0 and not it.complete:
                    break   # reserved, its audio not here yet: silence, and the item has not started
                it.started = True
                self._emit(PLAY_STARTED, it, filled, False)
            if avail == 0:
                if it.complete:
                    self._finish_head(filled)
                    continue
                # Underrun of a stream still arriving: silence, the item's clock runs on.
                memset(out + filled, 0, (n - filled) * sizeof(int16_t))
                it.elapsed += n - filled
                return played
            take = avail if avail < n - filled else n - filled
            if it.muted or self.mute_all:
                memset(out + filled, 0, take * sizeof(int16_t))
            else:
                memcpy(out + filled, it.pcm + it.pos, take * sizeof(int16_t))
            it.pos += take
            it.elapsed += take
            filled += take
            played += take
            if it.pos == it.length and it.complete:
                self._finish_head(filled)
        if filled < n:
            memset(out + filled, 0, (n - filled) * sizeof(int16_t))
        return played

    # -- Python API (control plane; per chunk, never per frame) -----------------------------------
    cdef PlayItem* _find(self, int64_t item_id) noexcept nogil:
        cdef int i
        for i in range(self.count):
            if self._item(i).item_id == item_id:
                return self._item(i)
        return NULL

    cdef int _append_pcm(self, PlayItem* it, const int16_t[::1] pcm) except -1:
        cdef Py_ssize_t n = pcm.shape[0], cap
        cdef int16_t* grown
        if n == 0:
            return 0
        if self.queued + n > self.max_samples:
            raise ValueError(f"playout queue full: {self.queued} + {n} samples exceeds {self.max_samples}")
        if it.length + n > it.capacity:
            cap = max(it.length + n, 2 * it.capacity, 4096)
            grown = <int16_t*>realloc(it.pcm, cap * sizeof(int16_t))
            if grown == NULL:
                raise MemoryError("playout: cannot grow item buffer")
            it.pcm = grown
            it.capacity = cap
        memcpy(it.pcm + it.length, &pcm[0], n * sizeof(int16_t))
        it.length += n
        self.queued += n
        return 0

    def enqueue(self, int64_t item_id, int32_t track, pcm=None, bint complete=True):
        """Queue a new item (optionally with its first PCM); ``complete=False`` for a stream."""
        if self.count == PLAYOUT_MAX_ITEMS:
            raise ValueError(f"playout queue full: {PLAYOUT_MAX_ITEMS} items")
        if self._find(item_id) != NULL:
            raise ValueError(f"playout item {item_id} already queued")
        cdef PlayItem* it = <PlayItem*>malloc(sizeof(PlayItem))
        if it == NULL:
            raise MemoryError("playout: cannot allocate item")
        memset(it, 0, sizeof(PlayItem))
        it.item_id = item_id
        it.track = track
        it.muted = self._track_muted(track)
        try:
            if pcm is not None:
                self._append_pcm(it, np.ascontiguousarray(pcm, dtype=np.int16))
        except BaseException:
            self._free_item(it)
            raise
        it.complete = complete
        self.items[(self.head + self.count) % PLAYOUT_MAX_ITEMS] = it
        self.count += 1

    def append(self, int64_t item_id, pcm, bint complete=False):
        """Append PCM to a queued, incomplete item (streaming TTS); ``complete`` closes it."""
        cdef PlayItem* it = self._find(item_id)
        if it == NULL:
            raise KeyError(item_id)
        if it.complete:
            raise ValueError(f"playout item {item_id} is already complete")
        self._append_pcm(it, np.ascontiguousarray(pcm, dtype=np.int16))
        if complete:
            it.complete = True

    def share(self, int64_t item_id, pcm):
        """The whole audio of a queued, incomplete item is ``pcm``, a read-only C-contiguous int16 array
        that other queues may play too: the item keeps a reference to it (no copy) and is complete.
        An item that already holds audio gets ``pcm`` copied after it instead (then completes)."""
        cdef PlayItem* it = self._find(item_id)
        cdef const int16_t[::1] view
        if it == NULL:
            raise KeyError(item_id)
        if it.complete:
            raise ValueError(f"playout item {item_id} is already complete")
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1 \
                or not pcm.flags.c_contiguous or pcm.flags.writeable:
            raise ValueError("shared playout audio must be a read-only contiguous 1-D int16 array")
        if it.length or not len(pcm):
            self._append_pcm(it, pcm)
        else:
            view = pcm
            Py_INCREF(pcm)
            it.owner = <PyObject*>pcm
            it.pcm = <int16_t*>&view[0]    # never written through: a shared item takes no appends
            it.length = view.shape[0]
            self.shared += it.length
        it.complete = True

    def shared_buffers(self):
        """The shared buffers the queued items refer to (one entry per item)."""
        cdef int i
        return [<object>self._item(i).owner for i in range(self.count) if self._item(i).owner != NULL]

    def complete(self, int64_t item_id):
        """Mark an item complete: it ends once its queued audio has played."""
        cdef PlayItem* it = self._find(item_id)
        if it == NULL:
            raise KeyError(item_id)
        it.complete = True

    def interrupt(self, bint graceful=False):
        """Stop playback now, or after the current item (``graceful``). Events come from drain_events."""
        self.interrupt_c(graceful, 0)

    def mute_track(self, int32_t track, bint muted):
        """Mute or unmute a track's items, present and future."""
        cdef int i
        for i in range(self.count):
            if self._item(i).track == track:
                self._item(i).muted = muted
        if muted and not self._track_muted(track):
            if self.n_muted == PLAYOUT_MAX_MUTED:
                raise ValueError(f"too many muted tracks (max {PLAYOUT_MAX_MUTED})")
            self.muted_tracks[self.n_muted] = track
            self.n_muted += 1
        elif not muted:
            for i in range(self.n_muted):
                if self.muted_tracks[i] == track:
                    self.muted_tracks[i] = self.muted_tracks[self.n_muted - 1]
                    self.n_muted -= 1
                    break

    def mute_all_tracks(self, bint muted):
        self.mute_all = muted

    def pull(self, Py_ssize_t n):
        """Python entry for tests: the next ``n`` samples as int16."""
        out = np.empty(n, dtype=np.int16)
        cdef int16_t[::1] view = out
        if n:
            self.pull_c(&view[0], n)
        return out

    def drain_events(self):
        """``[(kind, item_id, track, offset, played, elapsed, total, interrupted), ...]`` since last drain."""
        cdef int i
        cdef PlayoutEvent* e
        result = []
        for i in range(self.n_events):
            e = &self.events[i]
            result.append((e.kind, e.item_id, e.track, e.offset, e.played, e.elapsed, e.total,
                           bool(e.interrupted)))
        self.n_events = 0
        return result

    @property
    def active(self):
        return self.count > 0

    @property
    def queued_samples(self):
        """Samples the items hold in buffers of their own (shared buffers not included)."""
        return self.queued

    @property
    def shared_samples(self):
        """Samples of the shared buffers the items refer to."""
        return self.shared

    @property
    def lost_events(self):
        return self.lost_events
