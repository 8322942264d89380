# The media engine: every call leg served by one compiled loop on a 20 ms tick (see engine.pyx).
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from pbx.core.codec cimport Codec, CODEC_MAX_FRAME, CODEC_MAX_PAYLOAD
from pbx.core.dtmf cimport DtmfReceiver, DtmfSender
from pbx.core.jitter cimport JitterBuffer
from pbx.core.pcmring cimport PcmRing
from pbx.core.playout cimport Playout
from pbx.core.resample cimport Resampler
from pbx.core.includes.sock cimport sockaddr_storage, socklen_t
from pbx.core.udp cimport RecvBatch, UdpAddr
from pbx.core.includes.epoll cimport epoll_event
from pbx.core.vad cimport VadBank, WebRtcBank
from pbx.core.wav cimport WavWriter
from pbx.core.silero cimport SileroBatch
from pbx.core.denoise cimport DenoiseBank
from pbx.core.ten cimport TenBank
from pbx.core.srtp cimport SrtpSession, SRTP_TRAILER_MAX

cdef enum:
    ENGINE_RATE = 16000          # internal sample rate of every leg
    FRAME_MS = 20
    FRAME = 320                  # samples per frame at ENGINE_RATE
    MAX_CATCHUP = 10             # frames one tick may process after a stall; beyond, time is skipped
    RTP_PACKET_MAX = 1500
    STREAM_MAX_OWED = 50         # frames of underrun delay a fed stream may take back (1 s)
    RELATCH_PACKETS = 3          # valid packets in a row from a new source and SSRC that move a latched leg

cdef enum Transport:
    TRANSPORT_UDP = 0            # RTP over a UDP socket the engine reads and writes itself
    TRANSPORT_PACKETS = 1        # RTP datagrams pushed and drained by Python in batches (tests, WebRTC)
    TRANSPORT_STREAM = 2         # codec bytes of any size pushed, 20 ms frames drained (WebSocket /call)

cdef enum VadKind:
    VAD_NONE = 0
    VAD_WEBRTC = 1
    VAD_SILERO = 2
    VAD_TEN = 3                  # optional: the ten-vad package, loaded with dlopen

cdef enum EventKind:
    EV_SPEAKING = 1              # a = onset ms
    EV_SILENCE = 2               # a = silence start ms, b = duration ms
    EV_SEGMENT_CAP = 3           # a = segment start ms (ASR buffer cap reached)
    EV_DTMF = 4                  # a = digit character code
    EV_PLAY_STARTED = 5          # a = item id
    EV_PLAY_ENDED = 6            # a = item id, b = played ms, c = elapsed ms, d = interrupted
    EV_PLAY_DROPPED = 7          # a = item id
    EV_RTP_TIMEOUT = 8           # a = ms since the last packet
    EV_LATCHED = 9               # the leg latched (or re-latched) to a source: Leg.remote is its address
    EV_RECORDER_ERROR = 10       # a = errno; the recorder is stopped
    EV_INBOUND_OVERFLOW = 11     # a = samples dropped from a fed stream
    EV_RTCP_BYE = 12             # the peer sent an RTCP BYE for its stream

cdef struct EngineEvent:
    int32_t leg
    int32_t kind
    int64_t time_ms              # leg-relative: ms since the leg was added
    int64_t a, b, c, d


cdef class Leg:
    cdef readonly int slot
    cdef readonly int transport
    cdef readonly Codec codec
    cdef readonly int payload_type
    cdef readonly int dtmf_pt
    cdef int64_t t0_ms
    cdef Resampler up                # codec rate -> 16 kHz (None at 16 kHz)
    cdef Resampler down              # 16 kHz -> codec rate
    cdef JitterBuffer jb             # RTP transports
    cdef PcmRing decoded             # codec-rate PCM waiting to become frames
    cdef uint8_t pending_byte        # STREAM pcm: an odd trailing byte carried to the next feed
    cdef bint has_pending_byte
    cdef bint stream_fed             # STREAM: audio has been fed at least once
    cdef int stream_owed             # STREAM: frames of silence inserted by underruns, not yet taken back
    cdef readonly uint64_t stream_skipped
    cdef bint muted_in
    cdef bint denoise
    cdef int vad_kind
    cdef readonly bint silero8       # silero runs on the 8 kHz graph with the codec's own audio (else 16 kHz)
    cdef bint asr_on
    cdef PcmRing asr
    cdef WavWriter rec
    cdef Resampler rec_left, rec_right
    cdef int rec_stagger             # frames until the recorder's one early flush (0: done)
    cdef readonly Playout playout
    cdef int bridge
    cdef bint stream_silence         # STREAM: send frames even when nothing plays
    # RTP sending
    cdef uint16_t seq
    cdef uint32_t ts
    cdef uint32_t ssrc
    cdef bint marker_next
    cdef uint32_t dtmf_ts
    cdef DtmfReceiver dtmf_rx
    cdef DtmfSender dtmf_tx
    # UDP
    cdef int fd
    cdef int rtcp_fd                 # RTCP's own socket (-1: RTCP multiplexed on fd, RFC 5761)
    cdef bint rtcp_polled            # rtcp_fd is in the engine's epoll set (else read every frame)
    cdef bint rtcp_ready             # the last poll found a datagram on rtcp_fd
    cdef UdpAddr remote              # where RTP goes: the latched source, else the signalled address
    cdef bint has_remote
    cdef UdpAddr signalled           # the address given to add_leg / set_remote (the SDP's)
    cdef bint has_signalled
    cdef UdpAddr rtcp_remote         # where RTCP goes when rtcp_fd >= 0
    cdef bint has_rtcp_remote
    cdef bint rtcp_remote_explicit   # given by the caller: latching does not move it
    # symmetric RTP (latch=True): rules in the module docstring
    cdef bint latch
    cdef bint latched
    cdef uint32_t latched_ssrc       # SSRC of the last valid packet from the latched source
    cdef UdpAddr cand                # re-latch candidate: address, SSRC, valid packets in a row
    cdef uint32_t cand_ssrc
    cdef int cand_count
    cdef uint32_t rx_last_ssrc       # SSRC of the last packet receive_packet took
    cdef readonly uint64_t latches
    cdef double rtp_timeout_ms
    # RTCP (RFC 3550): reports we send and receive
    cdef double rtcp_interval_ms     # 0: no reports sent
    cdef double next_rtcp_ms
    cdef readonly uint64_t tx_octets
    # receive statistics of the current stream (RFC 3550 A.3), restarted when the jitter buffer resyncs
    cdef int64_t rx_base_ext         # extended sequence number of the stream's first packet (-1: none yet)
    cdef int64_t rx_max_ext          # highest extended sequence number of the stream
    cdef int64_t rx_received         # packets of the stream taken
    cdef uint64_t rx_resyncs         # the jitter buffer's resync count when the stream started
    cdef int64_t rx_expected_done, rx_lost_done   # earlier streams of the leg, summed
    cdef int64_t rx_expected_prior, rx_received_prior
    cdef uint32_t rx_lsr             # middle 32 bits of the NTP time of the last SR received
    cdef double rx_lsr_at_ms         # when it arrived (engine clock)
    cdef readonly uint64_t rtcp_rx, rtcp_tx
    cdef readonly int rr_fraction_lost      # what the peer reports about our stream
    cdef readonly int rr_cumulative_lost
    cdef readonly uint32_t rr_jitter
    cdef readonly uint64_t rr_count         # report blocks about our stream received
    cdef readonly double rtt_ms             # -1 until an RR/SR with LSR/DLSR came back
    cdef bint timeout_reported
    cdef double last_rx_ms
    # per-frame buffers
    cdef int16_t pcm[CODEC_MAX_FRAME * 4]
    cdef int16_t in16[FRAME]
    cdef int16_t out16[FRAME]
    cdef int16_t stereo[2 * CODEC_MAX_FRAME]
    cdef int16_t rec_l[CODEC_MAX_FRAME]
    cdef int16_t rec_r[CODEC_MAX_FRAME]
    cdef uint8_t payload[CODEC_MAX_PAYLOAD]
    cdef uint8_t relay[CODEC_MAX_PAYLOAD]   # this tick's inbound packet, when it was exactly the frame
    cdef int relay_len                       # 0: nothing a bridged partner can forward as it is
    cdef readonly uint64_t relayed           # frames sent as the bridged partner's payload, not re-encoded
    cdef uint8_t packet[RTP_PACKET_MAX + SRTP_TRAILER_MAX]
    # WebRTC (control=True): STUN and DTLS datagrams go up to Python; RTP and RTCP are SRTP, sent only
    # once the DTLS handshake gave keys (set_srtp)
    cdef bint control
    cdef SrtpSession srtp_tx
    cdef SrtpSession srtp_rx
    cdef readonly uint64_t rx_control, rx_unkeyed
    # counters
    cdef readonly uint64_t rx_packets, rx_bad, rx_foreign, rx_other_pt, tx_packets, tx_errors
    cdef readonly uint64_t dtmf_digits


cdef class Engine:
    cdef readonly int max_legs
    cdef list legs                   # slot -> Leg or None
    cdef list active                 # the live legs, in slot order of creation
    cdef list free_slots
    cdef VadBank vad
    cdef WebRtcBank webrtc
    cdef SileroBatch silero          # created with the first silero leg on the 16 kHz graph
    cdef SileroBatch silero8         # created with the first silero leg on the 8 kHz graph
    cdef tuple silero_options        # (model, skip, rate) they are created with (set_silero)
    cdef int silero_threads
    cdef bint silero_auto            # silero_options' rate is "auto" (read per leg per tick)
    cdef TenBank ten                 # created with the first ten leg (optional package)
    cdef DenoiseBank denoiser        # created with the first leg that asks for denoise
    cdef RecvBatch recv
    cdef bint started
    cdef public bint relay_bridges   # same-codec bridged legs forward payloads (False: always transcode)
    cdef double next_frame_ms
    cdef readonly uint64_t frames, skipped_frames
    cdef EngineEvent* events
    cdef int n_events, event_capacity
    cdef public double epoch_offset_ms   # wall clock minus engine clock (ms), for RTCP's NTP timestamps
    cdef readonly uint64_t lost_events
    # outbound datagrams/frames of PACKETS and STREAM legs, drained by Python
    cdef uint8_t* out_buf
    cdef Py_ssize_t out_len, out_cap
    cdef int32_t* out_legs
    cdef int64_t* out_offsets        # n_out + 1 offsets into out_buf
    cdef Py_ssize_t n_out, out_items_cap
    cdef list control_in             # (slot, (host, port), bytes) of WebRTC legs' STUN/DTLS, drained by Python
    cdef int rtcp_epoll              # every leg's rtcp_fd, polled once per tick (-1: none yet)
    cdef epoll_event* rtcp_events    # max_legs of them, for that poll
    cdef int n_rtcp_polled           # legs whose rtcp_fd is in rtcp_epoll

    cdef void emit(self, int leg, int kind, int64_t t, int64_t a, int64_t b, int64_t c, int64_t d) noexcept
    cdef int out_append(self, int leg, const uint8_t* data, Py_ssize_t n) except -1
    cdef void receive_udp(self, Leg leg, double now_ms) noexcept
    cdef Py_ssize_t demux_control(self, Leg leg, const sockaddr_storage* addr, socklen_t alen, uint8_t* data,
                                  Py_ssize_t n) noexcept
    cdef void receive_foreign(self, Leg leg, const sockaddr_storage* addr, socklen_t alen, const uint8_t* data,
                              Py_ssize_t n, double now_ms) noexcept
    cdef bint protect(self, Leg leg, uint8_t* packet, Py_ssize_t* size, bint rtcp) noexcept
    cdef void latch_to(self, Leg leg, const sockaddr_storage* addr, socklen_t alen, uint32_t ssrc,
                       double now_ms) noexcept
    cdef void receive_rtcp_socket(self, Leg leg, double now_ms) noexcept
    cdef void watch_rtcp(self, Leg leg) noexcept
    cdef void unwatch_rtcp(self, Leg leg) noexcept
    cdef void poll_rtcp(self) noexcept
    cdef bint receive_packet(self, Leg leg, const uint8_t* data, Py_ssize_t n, double arrival_ms) noexcept
    cdef void receive_rtcp(self, Leg leg, const uint8_t* data, Py_ssize_t n, double arrival_ms) noexcept
    cdef void send_rtcp(self, Leg leg, double t_ms) noexcept
    cdef int inbound(self, Leg leg, double t_ms) except -1
    cdef int outbound(self, Leg leg, double t_ms) except -1
    cdef int send_rtp(self, Leg leg, uint8_t pt, bint marker, uint32_t ts, const uint8_t* payload,
                      Py_ssize_t n) except -1
    cdef int frame(self, double t_ms, bint receive, double now_ms) except -1
    cdef int drain_vad_events(self) except -1
    cdef int run_silero(self) except -1
    cdef bint wants_silero8(self, Leg leg)
    cdef SileroBatch silero_batch(self, Leg leg, bint eight)
    cdef void encode_out(self, Leg leg) noexcept
    cdef void record(self, Leg leg, int64_t t_leg) noexcept
    cdef void stream_catch_up(self, Leg leg, int fs) noexcept
