# C-level API of pbx.core.jitter: an adaptive jitter buffer for one received RTP stream.
#
# Time is passed in by the caller (milliseconds, double); nothing here reads a clock.
# put_packet and pop_frame are `noexcept nogil` and allocate nothing: payloads are copied
# into slots preallocated at construction.  The rules are in the module docstring.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, int16_t, int32_t, int64_t, uint64_t

cdef enum JitterKind:           # JitterOut.kind
    JITTER_NOTHING = 0          # nothing due: not started, not due yet, or idle
    JITTER_FRAME = 1            # an audio payload to decode
    JITTER_LOSS = 2             # the expected packet is missing: conceal one frame
    JITTER_EXPAND = 3           # conceal one frame to grow the delay; the packet stays queued
    JITTER_EVENT = 4            # a telephone-event (RFC 4733) packet, passed through at once

cdef enum JitterPutStatus:      # put_packet's return value
    JITTER_PUT_OK = 0           # stored
    JITTER_PUT_RESYNC = 1       # stored after a flush (new SSRC, or a sequence/timestamp jump)
    JITTER_PUT_DUPLICATE = 2
    JITTER_PUT_LATE = 3         # its playout slot has passed
    JITTER_PUT_OVERFLOW = 4     # no room within `capacity` sequence numbers of the playout point
    JITTER_PUT_OVERSIZED = 5    # payload longer than `max_payload`
    JITTER_PUT_BAD_TIME = 6     # arrival time not finite

cdef enum:
    JITTER_HIST_BINS = 512      # relative-delay histogram, 1 ms bins
    JITTER_HIST_WINDOW = 512    # packets in the histogram window
    JITTER_MIN_BLOCKS = 8       # transit minimum: the current block and 7 complete ones
    JITTER_EVENT_SLOTS = 16     # telephone-event packets waiting for pop

cdef struct JitterOut:
    int kind                    # JitterKind
    uint16_t seq                # LOSS/EXPAND: the sequence number expected next
    uint32_t timestamp          # LOSS/EXPAND: the timestamp of the slot being concealed
    uint32_t ssrc
    uint8_t payload_type        # LOSS/EXPAND: that of the last frame played (the decoder to use)
    uint8_t marker
    const uint8_t* payload      # inside the buffer; valid until the next put_packet/pop_frame
    Py_ssize_t length

cdef struct JitterStats:
    uint64_t received           # put calls
    uint64_t played             # FRAME items
    uint64_t lost               # LOSS items
    uint64_t late               # packets that arrived after their slot (dropped)
    uint64_t duplicates
    uint64_t overflow
    uint64_t oversized
    uint64_t resyncs
    uint64_t expanded           # EXPAND items
    uint64_t skipped            # frames dropped to shrink the delay
    uint64_t events             # EVENT items


cdef class JitterBuffer:
    # configuration
    cdef readonly int clock_rate
    cdef readonly int frame_samples
    cdef readonly double min_delay_ms
    cdef readonly double max_delay_ms
    cdef readonly int capacity
    cdef readonly int max_payload
    cdef readonly int event_pt
    cdef readonly double resync_ms
    cdef double ms_per_sample
    cdef double frame_ms
    cdef double shrink_slack_ms

    # ring of packets, indexed by extended sequence number modulo capacity
    cdef int64_t* r_seq
    cdef int64_t* r_ts          # timestamp relative to ts_origin
    cdef uint8_t* r_state
    cdef uint8_t* r_pt
    cdef uint8_t* r_marker
    cdef int32_t* r_len
    cdef uint8_t* r_payload     # capacity * max_payload bytes
    cdef int n_buffered         # audio packets in FULL slots

    # telephone events waiting for pop
    cdef int64_t ev_seq[JITTER_EVENT_SLOTS]
    cdef uint32_t ev_ts[JITTER_EVENT_SLOTS]
    cdef uint8_t ev_pt[JITTER_EVENT_SLOTS]
    cdef uint8_t ev_marker[JITTER_EVENT_SLOTS]
    cdef int32_t ev_len[JITTER_EVENT_SLOTS]
    cdef bint ev_used[JITTER_EVENT_SLOTS]
    cdef uint8_t* ev_payload    # JITTER_EVENT_SLOTS * max_payload bytes
    cdef int ev_count
    cdef bint have_last_ev
    cdef int64_t last_ev
    cdef uint64_t ev_bits       # bit k: event seq last_ev - k was seen

    # sequence state
    cdef bint have_stream
    cdef uint32_t ssrc
    cdef int64_t max_ext
    cdef int64_t play_ext       # next sequence number to play
    cdef int32_t probe          # seq that would confirm a backward jump, or -1

    # timestamp and delay measurement
    cdef bint have_ts
    cdef uint32_t ts_origin
    cdef uint32_t last_ts32
    cdef int64_t last_rel
    cdef bint have_transit
    cdef double last_transit
    cdef double jitter          # RFC 3550 interarrival jitter, ms
    cdef double cur_min
    cdef int cur_count
    cdef double block_mins[JITTER_MIN_BLOCKS - 1]
    cdef int block_pos
    cdef double ring_min
    cdef int32_t hist[JITTER_HIST_BINS]
    cdef int16_t hist_ring[JITTER_HIST_WINDOW]
    cdef int hist_pos
    cdef int hist_n
    cdef int qbin
    cdef int above

    # playout clock
    cdef bint playing
    cdef bint started
    cdef int64_t slot_ts        # relative timestamp of the next slot
    cdef double slot_time       # when that slot is due
    cdef int conceal_run
    cdef int since_step
    cdef uint8_t last_pt

    cdef JitterStats st
    cdef JitterOut last         # what the Python pop wrappers returned last

    cdef int put_packet(self, uint16_t seq, uint32_t ts, uint32_t ssrc, uint8_t pt, bint marker,
                        const uint8_t* payload, Py_ssize_t n, double arrival_ms) noexcept nogil
    cdef int pop_frame(self, double now_ms, JitterOut* out) noexcept nogil
    cdef double target_delay(self) noexcept nogil
    cdef double window_min(self) noexcept nogil

    cdef void _flush(self) noexcept nogil
    cdef void _start_stream(self, uint16_t seq, uint32_t ssrc) noexcept nogil
    cdef void _resync(self, uint16_t seq, uint32_t ssrc) noexcept nogil
    cdef int _put_audio(self, int64_t ext, uint16_t seq, uint32_t ts, uint32_t ssrc, uint8_t pt,
                        bint marker, const uint8_t* payload, Py_ssize_t n, double arrival_ms,
                        int result) noexcept nogil
    cdef int _put_event(self, int64_t ext, uint32_t ts, uint8_t pt, bint marker,
                        const uint8_t* payload, Py_ssize_t n) noexcept nogil
    cdef void _set_ts_origin(self, uint32_t ts) noexcept nogil
    cdef int64_t _ts_rel(self, uint32_t ts) noexcept nogil
    cdef void _measure(self, double transit) noexcept nogil
    cdef void _advance(self) noexcept nogil
    cdef int64_t _find_head(self) noexcept nogil
    cdef void _skip_to(self, int64_t ext) noexcept nogil
    cdef int _pop_event(self, JitterOut* out) noexcept nogil
    cdef int _conceal(self, JitterOut* out, int kind, int64_t ext, int64_t rel) noexcept nogil
