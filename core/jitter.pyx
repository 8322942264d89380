"""Adaptive jitter buffer for one received RTP audio stream; time is passed in by the caller.

The caller puts packets as they arrive (``put``, with the arrival time in ms) and ticks every frame
(``pop(now)``, looping while it returns items).  Each ``pop`` returns at most one item:

- ``FRAME``: the packet for the playout slot that is due (payload and header fields);
- ``LOSS``: the packet expected in the due slot is missing: conceal one frame.  ``seq`` and
  ``timestamp`` are those of the missing frame, ``payload_type`` that of the last frame played;
- ``EXPAND``: conceal one frame to grow the playout delay; the due packet stays queued;
- ``EVENT``: a telephone-event packet (payload type ``event_pt``, RFC 4733), passed through at once;
- ``None`` (C: ``JITTER_NOTHING``): nothing is due (not started, not due yet, silence, idle).

The engine decodes FRAME, asks the decoder for concealment on LOSS and EXPAND alike (EXPAND is not a
loss: the queued packet plays on a later tick), and hands EVENT to its RFC 4733 handler.
``frame_samples`` is the duration of one packet (the negotiated ptime), e.g. 160 at 8 kHz for 20 ms.

Playout clock.  Audio plays in slots of ``frame_samples``.  A slot with relative timestamp ``t`` is due
at ``t`` (in ms) + O, where O, the playout offset, is fixed when playout starts: at the first ``pop``
with ``now >= t_head + O_target`` the head packet plays and its slot time is ``now`` (so later slots fall
on the caller's ticks); the next slots are due every ``frame_ms``.  A slot counts as due from half a frame
before its time, so a caller ticking every frame at any phase gets exactly one item per tick.  Items come
in sequence order (the head is the lowest buffered sequence number); a packet whose slot has passed is
dropped as late.  When the due slot's packet is missing: if a later sequence number is buffered, or the
buffer is empty, the slot is concealed (LOSS); after ``MAX_CONCEAL`` (5) concealed slots in a row the
clock stops and the next packet restarts it.  When the next packet follows in sequence but its timestamp
is beyond the slot (the sender paused: silence suppression / DTX), or it carries the marker bit of a new
talkspurt, the clock stops and restarts at that packet with the current target: delay adapts freely in
silence gaps.  Until a packet after a pause arrives, a pause looks like loss: the first slots of a
silence are concealed (at most 5) before the clock stops.

Adaptive target.  Each audio packet's transit ``arrival - timestamp`` (ms) is measured.  Its minimum
over a sliding window (8 blocks of 64 packets) is the fastest path; the relative delay ``transit - min``
goes into a 1 ms histogram over the last 512 packets (about 10 s).  The target delay is the 99.5th
percentile bin of that histogram (upper edge) clamped to [min_delay_ms, max_delay_ms], and
O_target = window minimum + target.  Within a talkspurt the delay moves by whole frames: when
O < O_target the due slot is expanded (EXPAND; O grows by a frame); when O >= O_target + frame + 2 ms,
at least 25 slots after the last step, and the next packet is queued contiguously, the due frame is
skipped and the next one plays (O shrinks by a frame).  The RFC 3550 interarrival jitter is also kept
(``jitter_ms``) for statistics and RTCP.  Late packets are measured too (they are the evidence that
the delay is too short); duplicates are not.

Resync (flush everything, restart the clock, count it): a new SSRC; a sequence jump of more than 3000
forward, or of more than 100 backward confirmed by the next packet (RFC 3550 A.1; the unconfirmed
packet is dropped as late); a packet not behind the playout point whose transit differs from the window
minimum by more than ``resync_ms`` (a timestamp jump).  The delay histogram and the jitter estimate
survive a resync (same network path).

Bounds.  Audio packets are stored in ``capacity`` preallocated slots, indexed by sequence number: a
packet ``capacity`` or more ahead of the playout point is dropped (overflow) unless the buffer is idle and
empty, when the window moves to it.  Payloads longer than ``max_payload`` are dropped (oversized).
Nothing is allocated per packet.

Telephone events (RFC 4733) share the SSRC and sequence space but keep one timestamp per event, so
they bypass the playout clock: packets of payload type ``event_pt`` wait in a small queue (16) and are
delivered by the next ``pop`` before any audio, lowest sequence number first, de-duplicated; an event
older than one already delivered is dropped as late.  Their sequence numbers are marked as used so audio
playout steps over them without reporting a loss.

C API (pbx/core/jitter.pxd): ``put_packet(...)`` returns a JitterPutStatus, ``pop_frame(now, &out)``
returns the item kind and fills ``out``; ``out.payload`` points into the buffer and stays valid until
the next ``put_packet`` or ``pop_frame``.  Both are ``noexcept nogil``.
"""

from cpython.buffer cimport PyBuffer_Release
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.math cimport INFINITY, NAN, fabs, isfinite
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cimport numpy as cnp

from pbx.core.bufargs cimport ITEM_BYTE, get_view

cnp.import_array()      # bufargs reads numpy arrays through the C API

NOTHING = JITTER_NOTHING
FRAME = JITTER_FRAME
LOSS = JITTER_LOSS
EXPAND = JITTER_EXPAND
EVENT = JITTER_EVENT
PUT_OK = JITTER_PUT_OK
PUT_RESYNC = JITTER_PUT_RESYNC
PUT_DUPLICATE = JITTER_PUT_DUPLICATE
PUT_LATE = JITTER_PUT_LATE
PUT_OVERFLOW = JITTER_PUT_OVERFLOW
PUT_OVERSIZED = JITTER_PUT_OVERSIZED
PUT_BAD_TIME = JITTER_PUT_BAD_TIME

cdef enum:
    MAX_DROPOUT = 3000          # forward sequence jump that restarts the stream (RFC 3550 A.1)
    MAX_MISORDER = 100          # backward jump beyond this needs a confirming packet first
    QUANTILE_PERMILLE = 995     # target = this quantile of the relative delay
    MIN_BLOCK = 64              # packets per block of the transit-minimum window
    MAX_CONCEAL = 5             # consecutive LOSS slots before the playout clock stops
    SHRINK_SPACING = 25         # slots since the last step before shrinking

    EMPTY = 0                   # slot states
    FULL = 1                    # an audio packet waits here
    DONE = 2                    # seen: played, dropped, or a telephone event
    MISSED = 3                  # its slot passed without it

cdef double SHRINK_HYSTERESIS_MS = 2.0
cdef int64_t EXT_BASE = 0x10000     # extended sequence numbers start here and stay positive


cdef inline int16_t s16(int64_t x) noexcept nogil:
    return <int16_t><uint16_t>x


cdef inline int32_t s32(int64_t x) noexcept nogil:
    return <int32_t><uint32_t>x


cdef void* _alloc(size_t size) except NULL:
    cdef void* p = malloc(size if size > 0 else 1)
    if p == NULL:
        raise MemoryError()
    return p


cdef class JitterBuffer:
    """Adaptive jitter buffer: ``put`` packets as they arrive, ``pop(now)`` every frame."""

    def __cinit__(self, int clock_rate, int frame_samples, double min_delay_ms=20.0,
                  double max_delay_ms=200.0, int capacity=64, int max_payload=1500,
                  int event_pt=-1, double resync_ms=1000.0):
        if clock_rate <= 0:
            raise ValueError("clock_rate must be positive")
        if frame_samples <= 0:
            raise ValueError("frame_samples must be positive")
        if not (isfinite(min_delay_ms) and isfinite(max_delay_ms)) or not 0.0 <= min_delay_ms <= max_delay_ms:
            raise ValueError("need 0 <= min_delay_ms <= max_delay_ms")
        if not 2 <= capacity <= 32768:
            raise ValueError("capacity must be in 2..32768")
        if not 1 <= max_payload <= 65536:
            raise ValueError("max_payload must be in 1..65536")
        if not -1 <= event_pt <= 127:
            raise ValueError("event_pt must be -1 (none) or a payload type 0..127")
        if not (isfinite(resync_ms) and resync_ms > 0.0):
            raise ValueError("resync_ms must be positive")
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.min_delay_ms = min_delay_ms
        self.max_delay_ms = max_delay_ms
        self.capacity = capacity
        self.max_payload = max_payload
        self.event_pt = event_pt
        self.resync_ms = resync_ms
        self.ms_per_sample = 1000.0 / clock_rate
        self.frame_ms = frame_samples * self.ms_per_sample
        self.shrink_slack_ms = self.frame_ms + SHRINK_HYSTERESIS_MS
        self.r_seq = <int64_t*>_alloc(capacity * sizeof(int64_t))
        self.r_ts = <int64_t*>_alloc(capacity * sizeof(int64_t))
        self.r_state = <uint8_t*>_alloc(capacity)
        self.r_pt = <uint8_t*>_alloc(capacity)
        self.r_marker = <uint8_t*>_alloc(capacity)
        self.r_len = <int32_t*>_alloc(capacity * sizeof(int32_t))
        self.r_payload = <uint8_t*>_alloc(<size_t>capacity * max_payload)
        self.ev_payload = <uint8_t*>_alloc(<size_t>JITTER_EVENT_SLOTS * max_payload)
        memset(self.hist, 0, sizeof(self.hist))
        memset(self.hist_ring, 0, sizeof(self.hist_ring))
        memset(&self.st, 0, sizeof(self.st))
        memset(&self.last, 0, sizeof(self.last))
        self.hist_pos = 0
        self.hist_n = 0
        self.qbin = 0
        self.above = 0
        self.jitter = 0.0
        self.have_stream = False
        self._flush()

    def __dealloc__(self):
        free(self.r_seq)
        free(self.r_ts)
        free(self.r_state)
        free(self.r_pt)
        free(self.r_marker)
        free(self.r_len)
        free(self.r_payload)
        free(self.ev_payload)

    # -- state resets --------------------------------------------------------------------------

    cdef void _flush(self) noexcept nogil:
        cdef int i
        for i in range(self.capacity):
            self.r_seq[i] = -1
            self.r_state[i] = EMPTY
        self.n_buffered = 0
        for i in range(JITTER_EVENT_SLOTS):
            self.ev_used[i] = False
        self.ev_count = 0
        self.have_last_ev = False
        self.last_ev = 0
        self.ev_bits = 0
        self.probe = -1
        self.have_ts = False
        self.ts_origin = 0
        self.last_ts32 = 0
        self.last_rel = 0
        self.have_transit = False
        self.last_transit = 0.0
        self.cur_min = INFINITY
        self.cur_count = 0
        for i in range(JITTER_MIN_BLOCKS - 1):
            self.block_mins[i] = INFINITY
        self.block_pos = 0
        self.ring_min = INFINITY
        self.playing = False
        self.started = False
        self.slot_ts = 0
        self.slot_time = 0.0
        self.conceal_run = 0
        self.since_step = 0
        self.last_pt = 0

    cdef void _start_stream(self, uint16_t seq, uint32_t ssrc) noexcept nogil:
        self.have_stream = True
        self.ssrc = ssrc
        self.max_ext = seq + EXT_BASE
        self.play_ext = self.max_ext

    cdef void _resync(self, uint16_t seq, uint32_t ssrc) noexcept nogil:
        self.st.resyncs += 1
        self._flush()
        self._start_stream(seq, ssrc)

    # -- derived values ------------------------------------------------------------------------

    cdef double window_min(self) noexcept nogil:
        return self.cur_min if self.cur_min < self.ring_min else self.ring_min

    cdef double target_delay(self) noexcept nogil:
        cdef double t = <double>(self.qbin + 1)
        if t < self.min_delay_ms:
            t = self.min_delay_ms
        if t > self.max_delay_ms:
            t = self.max_delay_ms
        return t

    # -- put -----------------------------------------------------------------------------------

    cdef int put_packet(self, uint16_t seq, uint32_t ts, uint32_t ssrc, uint8_t pt, bint marker,
                        const uint8_t* payload, Py_ssize_t n, double arrival_ms) noexcept nogil:
        cdef int result = JITTER_PUT_OK
        cdef int d
        cdef int64_t ext
        cdef int r
        self.st.received += 1
        if n > self.max_payload or n < 0:
            self.st.oversized += 1
            return JITTER_PUT_OVERSIZED
        if not isfinite(arrival_ms):
            return JITTER_PUT_BAD_TIME
        if not self.have_stream:
            self._start_stream(seq, ssrc)
        elif ssrc != self.ssrc:
            self._resync(seq, ssrc)
            result = JITTER_PUT_RESYNC
        else:
            d = s16(seq - self.max_ext)
            if d > MAX_DROPOUT or d < -MAX_MISORDER:
                if d < 0 and <int32_t>seq != self.probe:
                    self.probe = <uint16_t>(seq + 1)
                    self.st.late += 1
                    return JITTER_PUT_LATE
                self._resync(seq, ssrc)
                result = JITTER_PUT_RESYNC
        d = s16(seq - self.max_ext)
        ext = self.max_ext + d
        if ext > self.max_ext:
            self.max_ext = ext
        if <int>pt == self.event_pt:
            r = self._put_event(ext, ts, pt, marker, payload, n)
            return result if r == JITTER_PUT_OK else r
        return self._put_audio(ext, seq, ts, ssrc, pt, marker, payload, n, arrival_ms, result)

    cdef int _put_audio(self, int64_t ext, uint16_t seq, uint32_t ts, uint32_t ssrc, uint8_t pt,
                        bint marker, const uint8_t* payload, Py_ssize_t n, double arrival_ms,
                        int result) noexcept nogil:
        cdef int64_t cap = self.capacity
        cdef int64_t idx, rel
        cdef double transit, wmin
        if ext < self.play_ext and not self.started and self.max_ext - ext < cap:
            self.play_ext = ext                         # reordered before playout began
        idx = ext % cap
        if ext < self.play_ext:
            if self.r_seq[idx] == ext and self.r_state[idx] == DONE:
                self.st.duplicates += 1
                return JITTER_PUT_DUPLICATE
            if self.r_seq[idx] == ext:
                self.r_state[idx] = DONE                # a repeat of it is a duplicate
            if self.have_ts:
                self._measure(arrival_ms - self._ts_rel(ts) * self.ms_per_sample)
            self.st.late += 1
            return JITTER_PUT_LATE
        if ext - self.play_ext >= cap:
            if self.playing or self.n_buffered > 0:
                self.st.overflow += 1
                return JITTER_PUT_OVERFLOW
            self.play_ext = ext                         # idle: the window moves to the new packet
        if self.r_seq[idx] == ext and self.r_state[idx] != EMPTY:
            self.st.duplicates += 1
            return JITTER_PUT_DUPLICATE
        if not self.have_ts:
            self._set_ts_origin(ts)
        rel = self._ts_rel(ts)
        transit = arrival_ms - rel * self.ms_per_sample
        wmin = self.window_min()
        if wmin != INFINITY and fabs(transit - wmin) > self.resync_ms:
            self._resync(seq, ssrc)
            result = JITTER_PUT_RESYNC
            ext = self.max_ext
            idx = ext % cap
            self._set_ts_origin(ts)
            rel = 0
            transit = arrival_ms
        self._measure(transit)
        if self.started and rel < self.slot_ts:
            self.r_seq[idx] = ext
            self.r_state[idx] = DONE
            if ext == self.play_ext:
                self._advance()
            self.st.late += 1
            return JITTER_PUT_LATE
        self.r_seq[idx] = ext
        self.r_state[idx] = FULL
        self.r_ts[idx] = rel
        self.r_pt[idx] = pt
        self.r_marker[idx] = marker
        self.r_len[idx] = <int32_t>n
        if n > 0:
            memcpy(self.r_payload + idx * self.max_payload, payload, n)
        self.n_buffered += 1
        return result

    cdef void _set_ts_origin(self, uint32_t ts) noexcept nogil:
        self.have_ts = True
        self.ts_origin = ts
        self.last_ts32 = ts
        self.last_rel = 0

    cdef int64_t _ts_rel(self, uint32_t ts) noexcept nogil:
        cdef int64_t d = s32(<int64_t>ts - self.last_ts32)
        cdef int64_t rel = self.last_rel + d
        if d > 0:
            self.last_ts32 = ts
            self.last_rel = rel
        return rel

    cdef void _measure(self, double transit) noexcept nogil:
        """Jitter (RFC 3550), window minimum of the transit, relative-delay histogram."""
        cdef int i, b, old, allowed
        cdef double rel
        if self.have_transit:
            self.jitter += (fabs(transit - self.last_transit) - self.jitter) / 16.0
        self.have_transit = True
        self.last_transit = transit
        if transit < self.cur_min:
            self.cur_min = transit
        self.cur_count += 1
        if self.cur_count == MIN_BLOCK:
            self.block_mins[self.block_pos] = self.cur_min
            self.block_pos = (self.block_pos + 1) % (JITTER_MIN_BLOCKS - 1)
            self.ring_min = INFINITY
            for i in range(JITTER_MIN_BLOCKS - 1):
                if self.block_mins[i] < self.ring_min:
                    self.ring_min = self.block_mins[i]
            self.cur_min = INFINITY
            self.cur_count = 0
        rel = transit - self.window_min()
        if rel >= JITTER_HIST_BINS:
            b = JITTER_HIST_BINS - 1
        else:
            b = <int>rel
        if self.hist_n == JITTER_HIST_WINDOW:
            old = self.hist_ring[self.hist_pos]
            self.hist[old] -= 1
            if old > self.qbin:
                self.above -= 1
        else:
            self.hist_n += 1
        self.hist_ring[self.hist_pos] = <int16_t>b
        self.hist_pos = (self.hist_pos + 1) % JITTER_HIST_WINDOW
        self.hist[b] += 1
        if b > self.qbin:
            self.above += 1
        allowed = self.hist_n * (1000 - QUANTILE_PERMILLE) // 1000
        while self.above > allowed:
            self.qbin += 1
            self.above -= self.hist[self.qbin]
        while self.qbin > 0 and self.above + self.hist[self.qbin] <= allowed:
            self.above += self.hist[self.qbin]
            self.qbin -= 1

    cdef int _put_event(self, int64_t ext, uint32_t ts, uint8_t pt, bint marker,
                        const uint8_t* payload, Py_ssize_t n) noexcept nogil:
        cdef int i
        cdef int64_t k, idx
        cdef int64_t cap = self.capacity
        for i in range(JITTER_EVENT_SLOTS):
            if self.ev_used[i] and self.ev_seq[i] == ext:
                self.st.duplicates += 1
                return JITTER_PUT_DUPLICATE
        if self.have_last_ev and ext <= self.last_ev:
            k = self.last_ev - ext
            if k < 64 and (self.ev_bits >> k) & 1:
                self.st.duplicates += 1
                return JITTER_PUT_DUPLICATE
            if k < 64:
                self.ev_bits |= (<uint64_t>1) << k
            self.st.late += 1
            return JITTER_PUT_LATE
        if self.ev_count == JITTER_EVENT_SLOTS:
            self.st.overflow += 1
            return JITTER_PUT_OVERFLOW
        for i in range(JITTER_EVENT_SLOTS):
            if not self.ev_used[i]:
                self.ev_used[i] = True
                self.ev_seq[i] = ext
                self.ev_ts[i] = ts
                self.ev_pt[i] = pt
                self.ev_marker[i] = marker
                self.ev_len[i] = <int32_t>n
                if n > 0:
                    memcpy(self.ev_payload + i * self.max_payload, payload, n)
                break
        self.ev_count += 1
        # the event takes a place in the sequence space: audio playout steps over it
        if self.play_ext <= ext < self.play_ext + cap:
            idx = ext % cap
            if not (self.r_seq[idx] == ext and self.r_state[idx] == FULL):
                self.r_seq[idx] = ext
                self.r_state[idx] = DONE
                if ext == self.play_ext:
                    self._advance()
        return JITTER_PUT_OK

    # -- pop -----------------------------------------------------------------------------------

    cdef void _advance(self) noexcept nogil:
        cdef int64_t cap = self.capacity
        cdef int64_t idx
        cdef int i
        for i in range(self.capacity):
            idx = self.play_ext % cap
            if self.r_seq[idx] == self.play_ext and self.r_state[idx] == DONE:
                self.play_ext += 1
            else:
                break

    cdef int64_t _find_head(self) noexcept nogil:
        cdef int64_t cap = self.capacity
        cdef int64_t e, idx
        if self.n_buffered == 0:
            return -1
        for e in range(self.play_ext, self.play_ext + cap):
            idx = e % cap
            if self.r_seq[idx] == e and self.r_state[idx] == FULL:
                return e
        return -1

    cdef void _skip_to(self, int64_t ext) noexcept nogil:
        """Move play_ext up to ``ext``; the sequence numbers stepped over are missing."""
        cdef int64_t cap = self.capacity
        cdef int64_t idx
        while self.play_ext < ext:
            idx = self.play_ext % cap
            if not (self.r_seq[idx] == self.play_ext and self.r_state[idx] == DONE):
                self.r_seq[idx] = self.play_ext
                self.r_state[idx] = MISSED
            self.play_ext += 1

    cdef int _pop_event(self, JitterOut* out) noexcept nogil:
        cdef int i, best = -1
        cdef int64_t shift
        for i in range(JITTER_EVENT_SLOTS):
            if self.ev_used[i] and (best < 0 or self.ev_seq[i] < self.ev_seq[best]):
                best = i
        self.ev_used[best] = False
        self.ev_count -= 1
        if self.have_last_ev:
            shift = self.ev_seq[best] - self.last_ev
            self.ev_bits = ((self.ev_bits << shift) | 1) if shift < 64 else 1
        else:
            self.ev_bits = 1
        self.have_last_ev = True
        self.last_ev = self.ev_seq[best]
        self.st.events += 1
        out.kind = JITTER_EVENT
        out.seq = <uint16_t>self.ev_seq[best]
        out.timestamp = self.ev_ts[best]
        out.ssrc = self.ssrc
        out.payload_type = self.ev_pt[best]
        out.marker = self.ev_marker[best]
        out.payload = self.ev_payload + best * self.max_payload
        out.length = self.ev_len[best]
        return JITTER_EVENT

    cdef int pop_frame(self, double now_ms, JitterOut* out) noexcept nogil:
        cdef int64_t cap = self.capacity
        cdef int64_t head, hidx, nxt, nidx, ext, rel
        cdef double mspp = self.ms_per_sample
        cdef double o_target, o_cur
        out.kind = JITTER_NOTHING
        out.payload = NULL
        out.length = 0
        if not isfinite(now_ms):
            return JITTER_NOTHING
        if self.ev_count > 0:
            return self._pop_event(out)
        if not self.have_ts:
            return JITTER_NOTHING
        o_target = self.window_min() + self.target_delay()
        while True:                                     # runs twice only to restart the clock
            if not self.playing:
                head = self._find_head()
                if head < 0:
                    return JITTER_NOTHING
                hidx = head % cap
                if now_ms - self.r_ts[hidx] * mspp < o_target:     # as o_cur below
                    return JITTER_NOTHING
                self._skip_to(head)
                self.playing = True
                self.started = True
                self.slot_ts = self.r_ts[hidx]
                self.slot_time = now_ms
                self.conceal_run = 0
                self.since_step = 0
                self.last_pt = self.r_pt[hidx]
            elif now_ms < self.slot_time - self.frame_ms / 2.0:
                return JITTER_NOTHING
            o_cur = self.slot_time - self.slot_ts * mspp
            self.since_step += 1
            if o_cur < o_target:
                self.slot_time += self.frame_ms
                self.since_step = 0
                self.st.expanded += 1
                return self._conceal(out, JITTER_EXPAND, self.play_ext, self.slot_ts)
            head = self._find_head()
            if head < 0:
                break
            hidx = head % cap
            if self.r_ts[hidx] - self.slot_ts < self.frame_samples:
                nxt = head + 1
                nidx = nxt % cap
                if (o_cur - o_target >= self.shrink_slack_ms and self.since_step >= SHRINK_SPACING
                        and self.r_seq[nidx] == nxt and self.r_state[nidx] == FULL
                        and self.r_ts[nidx] - self.r_ts[hidx] == self.frame_samples):
                    self.r_state[hidx] = DONE
                    self.n_buffered -= 1
                    self.st.skipped += 1
                    self.since_step = 0
                    head = nxt
                    hidx = nidx
                self._skip_to(head)
                self.r_state[hidx] = DONE
                self.n_buffered -= 1
                self._advance()
                rel = self.r_ts[hidx]
                self.slot_ts = (rel if rel > self.slot_ts else self.slot_ts) + self.frame_samples
                self.slot_time += self.frame_ms
                self.conceal_run = 0
                self.st.played += 1
                self.last_pt = self.r_pt[hidx]
                out.kind = JITTER_FRAME
                out.seq = <uint16_t>head
                out.timestamp = <uint32_t>(self.ts_origin + rel)
                out.ssrc = self.ssrc
                out.payload_type = self.r_pt[hidx]
                out.marker = self.r_marker[hidx]
                out.payload = self.r_payload + hidx * self.max_payload
                out.length = self.r_len[hidx]
                return JITTER_FRAME
            if head == self.play_ext or self.r_marker[hidx]:
                # the sender paused (silence) or a new talkspurt begins: restart the playout clock
                self.playing = False
                continue
            break
        # the expected packet is missing and its slot is due: conceal it
        ext = self.play_ext
        rel = self.slot_ts
        if head >= 0:
            self._skip_to(ext + 1)
            self._advance()
        self.slot_ts += self.frame_samples
        self.slot_time += self.frame_ms
        self.conceal_run += 1
        if self.conceal_run >= MAX_CONCEAL:
            self.playing = False
        self.st.lost += 1
        return self._conceal(out, JITTER_LOSS, ext, rel)

    cdef inline int _conceal(self, JitterOut* out, int kind, int64_t ext, int64_t rel) noexcept nogil:
        out.kind = kind
        out.seq = <uint16_t>ext
        out.timestamp = <uint32_t>(self.ts_origin + rel)
        out.ssrc = self.ssrc
        out.payload_type = self.last_pt
        out.marker = 0
        return kind

    # -- Python wrappers -----------------------------------------------------------------------

    def put(self, long seq, long long ts, long long ssrc, int pt, bint marker, payload,
            double arrival_ms) -> int:
        """Store one RTP packet that arrived at ``arrival_ms``; returns a PUT_* status."""
        cdef Py_buffer view
        cdef const uint8_t* data
        cdef Py_ssize_t n
        cdef int r
        if not 0 <= seq <= 0xFFFF:
            raise ValueError("seq must be in 0..65535")
        if not 0 <= ts <= 0xFFFFFFFF:
            raise ValueError("ts must be in 0..4294967295")
        if not 0 <= ssrc <= 0xFFFFFFFF:
            raise ValueError("ssrc must be in 0..4294967295")
        if not 0 <= pt <= 127:
            raise ValueError("pt must be in 0..127")
        if not isfinite(arrival_ms):
            raise ValueError("arrival_ms must be finite")
        if type(payload) is bytes:
            return self.put_packet(<uint16_t>seq, <uint32_t>ts, <uint32_t>ssrc, <uint8_t>pt,
                                   marker, <const uint8_t*>PyBytes_AS_STRING(payload),
                                   PyBytes_GET_SIZE(payload), arrival_ms)
        get_view(payload, &view, ITEM_BYTE, False, "payload")
        try:
            r = self.put_packet(<uint16_t>seq, <uint32_t>ts, <uint32_t>ssrc, <uint8_t>pt,
                                marker, <const uint8_t*>view.buf, view.len, arrival_ms)
        finally:
            PyBuffer_Release(&view)
        return r

    def pop(self, double now_ms):
        """The item due at ``now_ms`` as (kind, seq, timestamp, ssrc, pt, marker, payload), or None."""
        if not isfinite(now_ms):
            raise ValueError("now_ms must be finite")
        cdef JitterOut* o = &self.last
        if self.pop_frame(now_ms, o) == JITTER_NOTHING:
            return None
        payload = (PyBytes_FromStringAndSize(<const char*>o.payload, o.length)
                   if o.length > 0 else b"")
        return (o.kind, o.seq, o.timestamp, o.ssrc, o.payload_type, o.marker != 0, payload)

    def pop_into(self, double now_ms, out) -> int:
        """Like ``pop`` without allocating: copies the payload into ``out`` (at least ``max_payload``
        bytes) and returns the kind (NOTHING = 0); header fields are in the ``last_*`` properties."""
        cdef Py_buffer view
        cdef int kind
        if not isfinite(now_ms):
            raise ValueError("now_ms must be finite")
        get_view(out, &view, ITEM_BYTE, True, "out")
        try:
            if view.len < self.max_payload:
                raise ValueError(f"out must hold at least max_payload ({self.max_payload}) bytes")
            kind = self.pop_frame(now_ms, &self.last)
            if self.last.length > 0:
                memcpy(view.buf, self.last.payload, self.last.length)
        finally:
            PyBuffer_Release(&view)
        return kind

    @property
    def last_seq(self) -> int:
        return self.last.seq

    @property
    def last_timestamp(self) -> int:
        return self.last.timestamp

    @property
    def last_ssrc(self) -> int:
        return self.last.ssrc

    @property
    def last_payload_type(self) -> int:
        return self.last.payload_type

    @property
    def last_marker(self) -> bool:
        return self.last.marker != 0

    @property
    def last_length(self) -> int:
        return self.last.length

    @property
    def target_delay_ms(self) -> float:
        """Target playout delay above the fastest recent transit, ms."""
        return self.target_delay()

    @property
    def jitter_ms(self) -> float:
        """RFC 3550 interarrival jitter estimate, ms."""
        return self.jitter

    @property
    def playout_delay_ms(self) -> float:
        """Current playout delay above the fastest recent transit (NaN while not playing), ms."""
        if not self.playing:
            return NAN
        return self.slot_time - self.slot_ts * self.ms_per_sample - self.window_min()

    @property
    def buffered(self) -> int:
        """Audio packets waiting."""
        return self.n_buffered

    @property
    def stats(self) -> dict:
        """Counters: received, played, lost, late, duplicates, overflow, oversized, resyncs,
        expanded, skipped, events."""
        return {
            "received": self.st.received, "played": self.st.played, "lost": self.st.lost,
            "late": self.st.late, "duplicates": self.st.duplicates, "overflow": self.st.overflow,
            "oversized": self.st.oversized, "resyncs": self.st.resyncs, "expanded": self.st.expanded,
            "skipped": self.st.skipped, "events": self.st.events,
        }
