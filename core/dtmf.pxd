# RFC 4733 DTMF for the engine: a receiver that turns telephone-event packets into one digit per
# key press, and a sender that turns queued digits into a packet sequence, one packet per frame.
from libc.stdint cimport uint8_t, uint16_t, uint32_t

cdef enum:
    DTMF_QUEUE = 64               # digits waiting to be sent per leg
    DTMF_END_REPEATS = 3          # end packets are sent three times (RFC 4733 section 2.5.1.4)

cdef struct DtmfReceiver:
    bint have                     # a key press has been seen
    uint32_t ssrc
    uint32_t timestamp            # the event's RTP timestamp: one per key press
    uint8_t event
    bint ended                    # its end packet has arrived
    uint32_t presses              # digits reported

cdef struct DtmfSender:
    uint8_t queue[DTMF_QUEUE]     # event codes waiting
    int head, count
    bint active                   # an event is being sent
    uint8_t event
    uint32_t duration             # samples the tone lasts (clock units)
    uint32_t pause                # samples of silence between digits
    uint32_t elapsed              # samples of the current event sent so far
    int end_sent                  # end packets already sent
    uint32_t gap_left             # samples of pause still to wait before the next digit
    bint first                    # next packet is the event's first (marker bit)

# Returns the digit character (b'0'..b'9', b'*', b'#', b'A'..b'D') of a new key press, 0 for a
# retransmission or continuation, -1 for a malformed payload, -2 for an event that is not a digit.
cdef int dtmf_receive(DtmfReceiver* s, uint32_t ssrc, uint32_t timestamp, bint marker,
                      const uint8_t* payload, Py_ssize_t n) noexcept nogil

cdef int dtmf_event_code(int digit) noexcept nogil   # digit character -> event code, -1 if none
cdef int dtmf_digit(int event) noexcept nogil        # event code -> digit character, 0 if none

cdef void dtmf_sender_init(DtmfSender* s, uint32_t duration, uint32_t pause) noexcept nogil
cdef int dtmf_sender_queue(DtmfSender* s, int digit) noexcept nogil   # 0, or -1 full / -2 not a digit
cdef bint dtmf_sender_busy(const DtmfSender* s) noexcept nogil        # an event or its pause is running
# Produce the telephone-event payload for the next frame of ``frame_samples``: returns 4 and sets
# marker/new_event (the caller gives a new event its RTP timestamp) or 0 when no packet is due.
cdef int dtmf_sender_next(DtmfSender* s, uint32_t frame_samples, uint8_t* payload,
                          bint* marker, bint* new_event) noexcept nogil
