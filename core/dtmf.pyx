"""RFC 4733 DTMF: key presses from telephone-event packets, and packets for digits to send.

Receiving: every packet of one key press carries the same RTP timestamp; the press is reported
once, on the first packet seen for a new (SSRC, timestamp), whatever the order, loss, or the three
end-packet retransmissions. A long press split into segments (RFC 4733 section 2.5.1.3: same event,
no marker, the previous segment not ended) continues the press instead of starting a new one.

Sending: a queued digit becomes one packet per frame with the event's timestamp, the marker bit on
the first, a growing duration, then the end packet three times, then ``pause`` samples of nothing
before the next digit. The caller sends no audio while ``dtmf_sender_busy``.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.string cimport memset
from pbx.core.rtp cimport TeEvent, te_parse, te_build

cdef const char* DIGITS = b"0123456789*#ABCD"


cdef int dtmf_digit(int event) noexcept nogil:
    if 0 <= event < 16:
        return DIGITS[event]
    return 0


cdef int dtmf_event_code(int digit) noexcept nogil:
    cdef int i
    if b'a' <= digit <= b'd':
        digit -= 32
    for i in range(16):
        if DIGITS[i] == digit:
            return i
    return -1


cdef int dtmf_receive(DtmfReceiver* s, uint32_t ssrc, uint32_t timestamp, bint marker,
                      const uint8_t* payload, Py_ssize_t n) noexcept nogil:
    cdef TeEvent ev
    if te_parse(payload, n, &ev) != 0:
        return -1
    if s.have and s.ssrc == ssrc and s.timestamp == timestamp:
        s.ended = s.ended or ev.end
        return 0
    # A later segment of a long press: same event, no marker, the previous segment still open.
    if s.have and s.ssrc == ssrc and s.event == ev.event and not s.ended and not marker:
        s.timestamp = timestamp
        s.ended = ev.end
        return 0
    s.have = True
    s.ssrc = ssrc
    s.timestamp = timestamp
    s.event = ev.event
    s.ended = ev.end
    if dtmf_digit(ev.event) == 0:
        return -2
    s.presses += 1
    return dtmf_digit(ev.event)


cdef void dtmf_sender_init(DtmfSender* s, uint32_t duration, uint32_t pause) noexcept nogil:
    memset(s, 0, sizeof(DtmfSender))
    s.duration = duration
    s.pause = pause


cdef int dtmf_sender_queue(DtmfSender* s, int digit) noexcept nogil:
    cdef int code = dtmf_event_code(digit)
    if code < 0:
        return -2
    if s.count == DTMF_QUEUE:
        return -1
    s.queue[(s.head + s.count) % DTMF_QUEUE] = <uint8_t>code
    s.count += 1
    return 0


cdef bint dtmf_sender_busy(const DtmfSender* s) noexcept nogil:
    return s.active or s.count > 0 or s.gap_left > 0


cdef int dtmf_sender_next(DtmfSender* s, uint32_t frame_samples, uint8_t* payload,
                          bint* marker, bint* new_event) noexcept nogil:
    cdef TeEvent ev
    marker[0] = False
    new_event[0] = False
    if not s.active:
        if s.gap_left > 0:
            s.gap_left = s.gap_left - frame_samples if s.gap_left > frame_samples else 0
            return 0
        if s.count == 0:
            return 0
        s.event = s.queue[s.head]
        s.head = (s.head + 1) % DTMF_QUEUE
        s.count -= 1
        s.active = True
        s.elapsed = 0
        s.end_sent = 0
        s.first = True
    if s.end_sent == 0:
        s.elapsed += frame_samples
        if s.elapsed > s.duration:
            s.elapsed = s.duration
    ev.event = s.event
    ev.volume = 10
    ev.duration = <uint16_t>(s.elapsed if s.elapsed < 0xFFFF else 0xFFFF)
    ev.end = s.elapsed >= s.duration
    if ev.end:
        s.end_sent += 1
        if s.end_sent == DTMF_END_REPEATS:
            s.active = False
            s.gap_left = s.pause
    if s.first:
        marker[0] = True
        new_event[0] = True
        s.first = False
    return <int>te_build(&ev, payload, 4)


# -- Python wrappers for tests --------------------------------------------------------------------
cdef class Receiver:
    """Python view of :c:type:`DtmfReceiver` (tests feed it packets one by one)."""
    cdef DtmfReceiver state

    def __cinit__(self):
        memset(&self.state, 0, sizeof(DtmfReceiver))

    def receive(self, uint32_t ssrc, uint32_t timestamp, bint marker, const uint8_t[::1] payload):
        """The digit of a new key press, or None."""
        cdef int rc = dtmf_receive(&self.state, ssrc, timestamp, marker,
                                   &payload[0] if payload.shape[0] else NULL, payload.shape[0])
        if rc == -1:
            from pbx.core.errors import MalformedPacket
            raise MalformedPacket(f"telephone-event payload too short: {payload.shape[0]} bytes")
        return chr(rc) if rc > 0 else None

    @property
    def presses(self):
        return self.state.presses


cdef class Sender:
    """Python view of :c:type:`DtmfSender`: ``next_packet(frame)`` per frame."""
    cdef DtmfSender state

    def __cinit__(self, uint32_t duration=800, uint32_t pause=480):
        dtmf_sender_init(&self.state, duration, pause)

    def queue(self, str digits):
        for d in digits:
            rc = dtmf_sender_queue(&self.state, ord(d))
            if rc == -2:
                raise ValueError(f"not a DTMF digit: {d!r}")
            if rc == -1:
                raise ValueError(f"DTMF queue full ({DTMF_QUEUE} digits)")

    def next_packet(self, uint32_t frame_samples):
        """``(payload, marker, new_event)`` for this frame, or None when no packet is due."""
        cdef uint8_t buf[4]
        cdef bint marker, new_event
        cdef int n = dtmf_sender_next(&self.state, frame_samples, buf, &marker, &new_event)
        if n <= 0:
            return None
        return (bytes(buf[:n]), bool(marker), bool(new_event))

    @property
    def busy(self):
        return dtmf_sender_busy(&self.state)
