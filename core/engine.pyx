"""The media engine: every call leg, served by one compiled loop on a 20 ms tick.

A *leg* is one side of a call: audio in from the peer, audio out to it. Python creates and
destroys legs and sets their options (VAD, ASR tap, recorder, bridge, mute), queues what to play
(per chunk of PCM, through the leg's :class:`~pbx.core.playout.Playout`), and receives events and
ASR audio in batches. The steady-state media path runs no Python per packet or per frame:

    inbound, per leg:  UDP recvmmsg | pushed RTP | fed stream bytes
                       -> RTP parse -> jitter buffer -> decode / conceal -> resample to 16 kHz
                       -> mute -> denoise (optional) -> VAD (webrtc and ten: C call per frame; silero: one
                          batched inference per tick)
                       -> ASR tap (ring buffer) -> recorder (left channel)
    outbound, per leg: playout queue -> + bridged leg's inbound -> recorder (right channel)
                       -> resample to the codec rate -> encode -> RTP build -> sendto | drained
    (a bridged UDP leg with nothing of its own playing sends its partner's packet payload as it came when
    both use the same codec and that packet was exactly this frame: no resample or encode; ``relayed``)

Ticking. ``tick(now_ms)`` is called by the control plane just after each frame is due (``next_frame_ms``;
from its asyncio loop: one call serves every leg). It receives what the UDP sockets hold, then processes every 20 ms frame
whose time has come (``next_frame_ms <= now``), so a late tick catches up frame by frame (at most
MAX_CATCHUP frames; past that the engine skips ahead and counts the skipped frames). Time is the
caller's: tests pass explicit times and need no sleeps. We tick on the event loop rather than in a
worker thread because the onnxruntime call (and denoise's library) need the GIL anyway, and one thread
keeps the Python-side state (feeding, playout, draining) free of locks; the per-frame cost is compiled.

Times in events are leg-relative milliseconds (since the leg was added); the control plane adds
the leg's epoch start for the wire.

Transports:
- UDP: the engine reads the leg's non-blocking socket (borrowed fd) with recvmmsg and writes with
  sendto. Without ``latch``, only datagrams from ``remote`` are taken; others are counted (rx_foreign)
  and dropped. RTCP is multiplexed on the RTP port (RFC 5761) unless the leg has ``rtcp_fd``, a second
  borrowed socket (RTP port + 1 for peers without rtcp-mux): then RTCP is also received there (every
  leg's RTCP socket is polled with one epoll_wait per tick and read with recvmmsg, just before its leg's
  frame, when it holds something; from the host of the RTP remote or of ``rtcp_remote`` only) and our
  reports are sent from it to ``rtcp_remote`` (default: the RTP remote with port + 1).
- PACKETS: RTP datagrams pushed with :meth:`Engine.push_packets` (many legs in one call) and
  outbound datagrams drained with :meth:`Engine.drain_out`: in-memory legs for tests and benchmarks,
  and WebRTC legs whose SRTP/ICE lives elsewhere.
- STREAM: codec bytes of any size fed with :meth:`Engine.feed` (a WebSocket binary message), and
  20 ms encoded frames drained with :meth:`Engine.drain_out` (only while something plays, unless
  ``stream_silence``).

Symmetric RTP (a UDP leg with ``latch=True``), latching without RTP bleed. A *valid packet* is a
datagram that parses as RTP (not RTCP) and whose payload type is the leg's codec PT or its
telephone-event PT; garbage, RTCP and other payload types never latch.
- Until it latches, the leg sends to its ``remote`` if it has one (the address the SDP gave).
  Datagrams from that address are taken as from the peer (RTCP is read, garbage is counted in rx_bad);
  from any other address only a valid packet is looked at: the rest are dropped (rx_foreign).
- The first valid packet, from any address, latches the leg to (its source address, its SSRC):
  RTP and RTCP (port + 1, unless ``rtcp_remote`` was given) go there from then on, and LATCHED is
  emitted. The packet itself is taken.
- Latched: datagrams from the latched address are taken, whatever their SSRC (a new SSRC from the
  same peer is a new stream: the jitter buffer resyncs). Datagrams from any other address are
  dropped and counted (rx_foreign), with one exception: a *candidate* source that sends
  RELATCH_PACKETS (3) valid packets in a row, from one address with one SSRC that differs from the
  latched SSRC, re-latches the leg to itself (LATCHED again). The third packet is taken; the first two
  were dropped (and counted in rx_foreign). "In a row" means that no other valid packet came in
  between: a valid packet from the latched source, from another address, or from the candidate with
  another SSRC restarts the count (so a stale stream interleaved with the live peer never takes the
  leg over). A candidate that sends the latched SSRC never counts (re-latching needs an SSRC change).
  Non-valid datagrams neither count nor break a run.
- ``set_remote`` with a different address (a re-INVITE moved the peer) unlatches the leg: it sends to
  the new address until the first valid packet latches it again, and datagrams its socket(s) already
  hold (sent before the move) are discarded and counted in rx_foreign, so a stale packet from the old
  source cannot latch it (the cost: at most a tick's worth of the new source's packets). With the
  same address (hold and resume re-INVITEs repeat it) the latch stays.
All of it is a few fields on the leg: nothing is allocated per packet, and a datagram from the
latched source costs what it did before (one address comparison).

Receive statistics (``Leg.stats``): per RFC 3550 A.3 the packets expected (highest extended sequence
number - first + 1) and lost (expected - received, summed over the streams the leg received: a resync
of the jitter buffer starts a new stream), interarrival jitter (A.8, kept by the jitter buffer, ms);
from the peer's reports about our stream: fraction lost, cumulative lost, jitter and round-trip time.

A fed stream that underruns (the client paused, or the server stalled) gets a frame of silence, which
delays everything after it; the engine takes that delay back by dropping as many quiet frames
(below -55 dBFS) once the client has caught up, at most 1 s of them, so a burst after a pause does
not leave the call's timeline (VAD, ASR, recording) permanently late.

Mute of the inbound side zeroes its audio for VAD, ASR, recording and any bridge, and drops its DTMF.
"""
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memset
from libc.math cimport isfinite

from pbx.core.codec cimport Codec, CODEC_MAX_FRAME, CODEC_MAX_PAYLOAD, CODEC_L16, CODEC_PCM
from pbx.core.dtmf cimport (
    dtmf_receive, dtmf_sender_init, dtmf_sender_queue, dtmf_sender_busy, dtmf_sender_next,
)
from pbx.core.jitter cimport (
    JitterBuffer, JitterOut, JITTER_NOTHING, JITTER_FRAME, JITTER_EVENT,
)
from pbx.core.mixer cimport interleave_stereo_c
from pbx.core.pcmring cimport (
    PcmRing, ring_init, ring_free, ring_push, ring_push_overwrite, ring_pop, ring_peek, ring_skip,
)
from pbx.core.playout cimport Playout, PlayoutEvent, PLAY_STARTED, PLAY_ENDED, PLAY_DROPPED
from pbx.core.resample cimport Resampler
from pbx.core.rtp cimport (
    RtpHeader, RtcpHeader, RtcpReportBlock, RtcpSenderInfo, rtp_parse, rtp_build, rtcp_parse_header,
    rtcp_read_sender_info, rtcp_read_report_block, rtcp_build_sr, rtcp_build_rr,
    RTCP_PT_SR, RTCP_PT_RR, RTCP_PT_BYE, RTCP_REPORT_BLOCK_SIZE, RTCP_SENDER_INFO_SIZE,
)
from pbx.core.includes.sock cimport sockaddr_storage, socklen_t
from pbx.core.includes.epoll cimport (
    epoll_event, epoll_create1, epoll_ctl, epoll_wait, EPOLLIN, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CLOEXEC,
)
from posix.unistd cimport close as close_fd
from pbx.core.udp cimport (
    RecvBatch, UdpAddr, UDP_BATCH, addr_equal, addr_same_host, addr_port, addr_set_port, send_datagram,
    addr_from_python, addr_to_python,
)
from pbx.core.vad cimport VadBank, VadEvent, WebRtcBank, VAD_SPEAKING, VAD_SILENCE, VAD_SEGMENT_CAP
from pbx.core.wav cimport WavWriter
from pbx.core.denoise cimport DenoiseBank
from pbx.core.silero cimport SileroBatch, SILERO_WINDOW_MS
from pbx.core.ten cimport TenBank

import os
import numpy as np


# Event kinds, for Python callers.
SPEAKING = EV_SPEAKING
SILENCE = EV_SILENCE
SEGMENT_CAP = EV_SEGMENT_CAP
DTMF = EV_DTMF
PLAY_STARTED_ = EV_PLAY_STARTED
PLAY_ENDED_ = EV_PLAY_ENDED
PLAY_DROPPED_ = EV_PLAY_DROPPED
RTP_TIMEOUT = EV_RTP_TIMEOUT
LATCHED = EV_LATCHED
RECORDER_ERROR = EV_RECORDER_ERROR
INBOUND_OVERFLOW = EV_INBOUND_OVERFLOW
RTCP_BYE_ = EV_RTCP_BYE

TRANSPORTS = {"udp": TRANSPORT_UDP, "packets": TRANSPORT_PACKETS, "stream": TRANSPORT_STREAM}
INBOUND_BUFFER_SECONDS = 30      # fed stream audio waiting to be consumed, per leg


# VAD energy floor, -55 dBFS as a mean square: (32768 * 10 ** (-55 / 20)) ** 2
cdef double ENERGY_FLOOR = 3400.0


cdef inline double mean_square(const int16_t* x, int n) noexcept nogil:
    cdef int64_t acc = 0
    cdef int i
    for i in range(n):
        acc += <int32_t>x[i] * x[i]
    return <double>acc / n


cdef int16_t SILENCE_8K[160]           # a muted 8 kHz leg's 20 ms frame for silero (static: zeros)
cdef double NTP_UNIX_OFFSET_S = 2208988800.0   # seconds from 1900 (NTP) to 1970 (Unix)


cdef inline uint64_t ntp_time(double epoch_ms) noexcept nogil:
    """Wall-clock ms since 1970 -> NTP 32.32 fixed point."""
    return <uint64_t>((epoch_ms / 1000.0 + NTP_UNIX_OFFSET_S) * 4294967296.0)


cdef inline int16_t saturate(int32_t v) noexcept nogil:
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return <int16_t>v


cdef class Leg:
    """One call side inside the engine. Created by :meth:`Engine.add_leg`; read-only from Python."""

    def __dealloc__(self):
        ring_free(&self.decoded)
        ring_free(&self.asr)

    @property
    def stats(self):
        """Counters and quality figures (a new dict each call). Inbound, from our own receive statistics
        (module docstring): ``rx_expected``, ``rx_lost`` (RFC 3550 A.3, summed over the leg's streams;
        duplicates can make it negative), ``rx_loss_percent`` (lost / expected, 0 when nothing was
        expected), ``rx_jitter_ms`` (A.8). The peer's view of our stream, from the last report block
        about it (``remote_reports`` counts them; the figures are 0 until the first): ``remote_fraction_lost``
        (x/256 over its last interval) and ``remote_loss_percent``, ``remote_cumulative_lost``,
        ``remote_jitter`` (timestamp units) and ``remote_jitter_ms``; ``rtt_ms`` (-1 until known)."""
        cdef int64_t expected = self.rx_expected_done, lost = self.rx_lost_done
        if self.rx_base_ext >= 0:
            expected += self.rx_max_ext - self.rx_base_ext + 1
            lost += self.rx_max_ext - self.rx_base_ext + 1 - self.rx_received
        s = {
            "rx_packets": self.rx_packets, "rx_bad": self.rx_bad, "rx_foreign": self.rx_foreign,
            "rx_other_pt": self.rx_other_pt, "tx_packets": self.tx_packets, "tx_errors": self.tx_errors,
            "dtmf_digits": self.dtmf_digits, "inbound_dropped": self.decoded.dropped,
            "stream_skipped_frames": self.stream_skipped, "tx_octets": self.tx_octets,
            "rtcp_rx": self.rtcp_rx, "rtcp_tx": self.rtcp_tx, "rtt_ms": self.rtt_ms,
            "remote_fraction_lost": self.rr_fraction_lost, "remote_cumulative_lost": self.rr_cumulative_lost,
            "remote_jitter": self.rr_jitter, "remote_reports": self.rr_count,
            "remote_loss_percent": self.rr_fraction_lost * 100.0 / 256.0,
            "remote_jitter_ms": self.rr_jitter * 1000.0 / self.codec.clock_rate,
            "rx_expected": expected, "rx_lost": lost,
            "rx_loss_percent": max(lost, 0) * 100.0 / expected if expected > 0 else 0.0,
            "rx_jitter_ms": self.jb.jitter if self.jb is not None else 0.0,
            "latched": self.latched, "latches": self.latches, "relayed_frames": self.relayed,
        }
        if self.jb is not None:
            s["jitter"] = self.jb.stats
        return s

    @property
    def remote(self):
        """Where RTP goes: the latched source, else the signalled address; None if neither."""
        return addr_to_python(&self.remote.sa, self.remote.len) if self.has_remote else None

    @property
    def rtcp_remote(self):
        """Where RTCP goes from ``rtcp_fd`` (None without one, or before any address is known)."""
        return addr_to_python(&self.rtcp_remote.sa, self.rtcp_remote.len) if self.has_rtcp_remote else None

    @property
    def latched(self):
        return self.latched

    @property
    def rtp_timeout_ms(self):
        return self.rtp_timeout_ms

    @property
    def ssrc(self):
        return self.ssrc


cdef inline void set_rtcp_from_rtp(Leg leg) noexcept:
    """rtcp_remote = the RTP remote with port + 1 (none while there is no remote, or for port 65535)."""
    cdef int port = addr_port(&leg.remote.sa)
    leg.rtcp_remote = leg.remote
    leg.has_rtcp_remote = leg.has_remote and 0 < port < 65535
    if leg.has_rtcp_remote:
        addr_set_port(&leg.rtcp_remote, port + 1)


cdef void discard_held(RecvBatch rb, Leg leg) noexcept:
    """Drop what the leg's sockets hold now, counted in rx_foreign (set_remote moved the peer)."""
    cdef int n, i
    cdef int fds[2]
    fds[0] = leg.fd
    fds[1] = leg.rtcp_fd
    for i in range(2):
        if fds[i] < 0:
            continue
        while True:
            n = rb.recv_c(fds[i])
            if n <= 0:
                break
            leg.rx_foreign += n
            if n < UDP_BATCH:
                break


cdef class Engine:
    """All legs of one process. See the module docstring for the model."""

    def __cinit__(self, int max_legs=4096, int event_capacity=65536):
        if max_legs <= 0:
            raise ValueError(f"max_legs must be positive, got {max_legs}")
        self.max_legs = max_legs
        self.legs = [None] * max_legs
        self.active = []
        self.free_slots = list(range(max_legs - 1, -1, -1))
        self.vad = VadBank(max_legs)
        self.webrtc = None
        self.silero = None
        self.silero8 = None
        self.silero_options = ("float", True, "16000")
        self.silero_auto = False
        self.silero_threads = 1
        self.ten = None
        self.denoiser = None
        self.recv = RecvBatch()
        self.started = False
        self.relay_bridges = True
        self.events = <EngineEvent*>malloc(event_capacity * sizeof(EngineEvent))
        self.out_cap = 1 << 16
        self.out_items_cap = 1024
        self.out_buf = <uint8_t*>malloc(self.out_cap)
        self.out_legs = <int32_t*>malloc(self.out_items_cap * sizeof(int32_t))
        self.out_offsets = <int64_t*>malloc((self.out_items_cap + 1) * sizeof(int64_t))
        if not (self.events and self.out_buf and self.out_legs and self.out_offsets):
            raise MemoryError("engine: cannot allocate event and output buffers")
        self.event_capacity = event_capacity
        self.out_offsets[0] = 0
        self.control_in = []
        self.rtcp_epoll = -1

    def __dealloc__(self):
        if self.rtcp_epoll >= 0:
            close_fd(self.rtcp_epoll)
        free(self.rtcp_events)
        free(self.events)
        free(self.out_buf)
        free(self.out_legs)
        free(self.out_offsets)

    # -- leg lifecycle --------------------------------------------------------------------------
    def add_leg(self, str transport, str codec, double now_ms, *, int rate=0, int payload_type=-1,
                int dtmf_payload_type=-1, int ptime_ms=20, int fd=-1, remote=None, bint latch=False,
                double jitter_min_ms=20.0, double jitter_max_ms=200.0, double rtp_timeout_ms=0.0,
                ssrc=None, bint stream_silence=False, double rtcp_interval_ms=0.0, int rtcp_fd=-1,
                rtcp_remote=None, bint control=False):
        """Create a leg and return it; ``now_ms`` is its time zero.

        ``transport``: "udp" (needs ``fd``, a bound non-blocking UDP socket, and ``remote`` or
        ``latch``), "packets" or "stream". ``codec``: pcmu, pcma, g722, l16, pcm, opus.
        ``remote``: ``(host, port)`` with a numeric host. ``latch=True``: symmetric RTP, with or without
        an initial ``remote`` (rules in the module docstring).
        ``rtp_timeout_ms``: RTP_TIMEOUT once no packet came for this long (0: never; see
        :meth:`set_rtp_timeout`).
        ``rtcp_interval_ms``: a UDP leg sends an RTCP SR/RR + SDES compound this often (RFC 3550
        suggests 5000); 0 sends none. Received RTCP is always parsed: the peer's report about our
        stream, round-trip time, BYE.
        ``rtcp_fd``: a second bound non-blocking UDP socket (usually RTP port + 1) for RTCP, received
        and sent there; -1 multiplexes RTCP on the RTP socket (RFC 5761). ``rtcp_remote``: where RTCP
        goes from ``rtcp_fd`` (the SDP's a=rtcp); by default the RTP remote with port + 1, following the
        latched address.
        ``control=True`` (a WebRTC leg, udp only): STUN and DTLS datagrams from any source are queued for
        :meth:`drain_control`; RTP and RTCP are SRTP, dropped unread and not sent until :meth:`set_srtp`.
        """
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {transport!r}; expected udp, packets or stream")
        if not self.free_slots:
            raise ValueError(f"engine full: {self.max_legs} legs")
        cdef int kind = TRANSPORTS[transport]
        if kind == TRANSPORT_UDP and fd < 0:
            raise ValueError("a udp leg needs the file descriptor of its socket")
        if kind == TRANSPORT_UDP and remote is None and not latch and not control:
            raise ValueError("a udp leg needs a remote address, latch=True or control=True (ICE gives it later)")
        if rtcp_fd >= 0 and kind != TRANSPORT_UDP:
            raise ValueError(f"rtcp_fd is for udp legs, not {transport} legs")
        if control and (kind != TRANSPORT_UDP or rtcp_fd >= 0):
            raise ValueError("control (WebRTC) legs are udp legs with RTCP multiplexed (no rtcp_fd)")
        if rtcp_fd >= 0 and rtcp_fd == fd:
            raise ValueError("rtcp_fd must be a second socket, not the RTP socket's fd")
        if rtcp_remote is not None and rtcp_fd < 0:
            raise ValueError("rtcp_remote needs rtcp_fd (without it RTCP is multiplexed on the RTP port)")
        if not (isfinite(rtp_timeout_ms) and rtp_timeout_ms >= 0):
            raise ValueError(f"rtp_timeout_ms must be >= 0, got {rtp_timeout_ms}")
        if ptime_ms not in (10, 20, 30, 40, 60):
            raise ValueError(f"ptime must be 10, 20, 30, 40 or 60 ms, got {ptime_ms}")
        cdef Leg leg = Leg.__new__(Leg)
        leg.codec = Codec(codec, rate)
        leg.transport = kind
        leg.payload_type = payload_type if payload_type >= 0 else _default_pt(codec)
        leg.dtmf_pt = dtmf_payload_type
        leg.t0_ms = <int64_t>now_ms
        if leg.codec.audio_rate != ENGINE_RATE:
            leg.up = Resampler(leg.codec.audio_rate, ENGINE_RATE)
            leg.down = Resampler(ENGINE_RATE, leg.codec.audio_rate)
        if kind != TRANSPORT_STREAM:
            leg.jb = JitterBuffer(leg.codec.clock_rate, leg.codec.clock_rate * ptime_ms // 1000,
                                  min_delay_ms=jitter_min_ms, max_delay_ms=jitter_max_ms,
                                  event_pt=dtmf_payload_type)
        cap = leg.codec.audio_rate * (INBOUND_BUFFER_SECONDS if kind == TRANSPORT_STREAM else 1)
        if ring_init(&leg.decoded, cap) < 0:
            raise MemoryError("engine: cannot allocate the inbound buffer")
        leg.playout = Playout()
        leg.bridge = -1
        leg.stream_silence = stream_silence
        leg.ssrc = int.from_bytes(os.urandom(4), "big") if ssrc is None else ssrc
        leg.seq = int.from_bytes(os.urandom(2), "big")
        leg.ts = int.from_bytes(os.urandom(4), "big")
        leg.marker_next = True
        dtmf_sender_init(&leg.dtmf_tx, 8 * 100 * leg.codec.clock_rate // 8000, 60 * leg.codec.clock_rate // 1000)
        leg.fd = fd
        leg.rtcp_fd = rtcp_fd
        leg.latch = latch
        leg.control = control
        if remote is not None:
            addr_from_python(remote, &leg.signalled)
            leg.has_signalled = True
            leg.remote = leg.signalled
            leg.has_remote = True
        if rtcp_remote is not None:
            addr_from_python(rtcp_remote, &leg.rtcp_remote)
            leg.has_rtcp_remote = True
            leg.rtcp_remote_explicit = True
        elif rtcp_fd >= 0 and remote is not None:
            set_rtcp_from_rtp(leg)
        leg.rtp_timeout_ms = rtp_timeout_ms
        leg.last_rx_ms = now_ms
        if rtcp_interval_ms < 0:
            raise ValueError(f"rtcp_interval_ms must be >= 0, got {rtcp_interval_ms}")
        leg.rtcp_interval_ms = rtcp_interval_ms
        leg.rx_base_ext = -1
        leg.rtt_ms = -1.0
        leg.slot = self.free_slots.pop()
        # The first report goes out after half to one interval, spread over slots (RFC 3550 6.2 wants
        # reports of many sources not to line up).
        leg.next_rtcp_ms = now_ms + rtcp_interval_ms * (0.5 + (leg.slot % 32) / 64.0)
        if rtcp_fd >= 0:
            self.watch_rtcp(leg)
        self.legs[leg.slot] = leg
        self.active.append(leg)
        return leg

    def remove_leg(self, Leg leg):
        """Stop serving a leg: its recorder is finalized, its VAD slot reset, its slot freed."""
        if self.legs[leg.slot] is not leg:
            raise ValueError(f"leg {leg.slot} is not in this engine")
        cdef Leg other
        for other in self.active:
            if other.bridge == leg.slot:
                other.bridge = -1
        self._stop_recorder(leg)
        if leg.denoise:
            self.denoiser.disable(leg.slot)
        if leg.vad_kind != VAD_NONE:
            self.vad.reset(leg.slot)
            self._release_vad(leg)
        self.unwatch_rtcp(leg)
        self.active.remove(leg)
        self.legs[leg.slot] = None
        self.free_slots.append(leg.slot)
        leg.playout.interrupt(False)

    cdef void watch_rtcp(self, Leg leg) noexcept:
        """Put the leg's RTCP socket in the engine's epoll set, so that a tick reads only the RTCP sockets
        that hold something (RTCP comes every few seconds: one empty recvmmsg per leg per frame cost more
        than the RTCP itself). Without epoll, or if the socket cannot be added, the leg's RTCP socket
        is read every frame as before."""
        cdef epoll_event ev
        leg.rtcp_polled = False
        if self.rtcp_epoll < 0:
            if self.rtcp_events == NULL:
                self.rtcp_events = <epoll_event*>malloc(self.max_legs * sizeof(epoll_event))
                if self.rtcp_events == NULL:
                    return
            self.rtcp_epoll = epoll_create1(EPOLL_CLOEXEC)
            if self.rtcp_epoll < 0:
                return
        memset(&ev, 0, sizeof(ev))
        ev.events = EPOLLIN
        ev.data.u32 = <unsigned int>leg.slot
        if epoll_ctl(self.rtcp_epoll, EPOLL_CTL_ADD, leg.rtcp_fd, &ev) == 0:
            leg.rtcp_polled = True
            leg.rtcp_ready = True          # whatever it already holds is read at its first frame
            self.n_rtcp_polled += 1

    cdef void unwatch_rtcp(self, Leg leg) noexcept:
        """Take a removed leg's RTCP socket out of the epoll set. A socket closed before its leg was
        removed has left the set already, and its fd number may now be another leg's socket: then
        that leg's registration stays."""
        cdef Leg other
        cdef epoll_event ev
        if not leg.rtcp_polled:
            return
        leg.rtcp_polled = False
        self.n_rtcp_polled -= 1
        for other in self.active:
            if other is not leg and other.rtcp_polled and other.rtcp_fd == leg.rtcp_fd:
                return
        epoll_ctl(self.rtcp_epoll, EPOLL_CTL_DEL, leg.rtcp_fd, &ev)   # ENOENT/EBADF: closed already

    cdef void poll_rtcp(self) noexcept:
        """Mark the legs whose RTCP socket holds a datagram (one epoll_wait for every leg)."""
        cdef int i, n, slot
        cdef Leg leg
        if self.n_rtcp_polled == 0:
            return
        n = epoll_wait(self.rtcp_epoll, self.rtcp_events, self.max_legs, 0)
        for i in range(n):
            slot = <int>self.rtcp_events[i].data.u32
            if 0 <= slot < self.max_legs:
                leg = <Leg>self.legs[slot]
                if leg is not None and leg.rtcp_polled:
                    leg.rtcp_ready = True

    def leg(self, int slot):
        return self.legs[slot]

    @property
    def leg_count(self):
        return len(self.active)

    # -- per-leg options ------------------------------------------------------------------------
    def set_vad(self, Leg leg, str kind, *, int speech_padding_ms=250, int silence_padding_ms=100,
                double ratio=0.5, double voice_threshold=0.5, silence_timeout_ms=None,
                double max_buffer_secs=50.0, int silero_threads=1):
        """Enable VAD ("webrtc", "silero" or "ten") with VADOption values, or disable it ("none").

        The first silero leg creates the engine's silero batch (``silero_threads``, and the model and
        skipping chosen with :meth:`set_silero`).
        """
        if kind not in ("webrtc", "silero", "ten", "none"):
            raise ValueError(f"unknown VAD type {kind!r}; expected webrtc, silero or ten")
        if kind == "ten" and self.ten is None:
            self.ten = TenBank(self.max_legs, hop=160)   # ImportError when the optional package is absent
        self._release_vad(leg)
        if kind == "none":
            self.vad.reset(leg.slot)
            return
        # webrtc decisions are fed as 1.0/0.0 against 0.5; silero/ten probabilities against voiceThreshold
        self.vad.configure(leg.slot, speech_padding_ms=speech_padding_ms,
                           silence_padding_ms=silence_padding_ms, ratio=ratio,
                           threshold=0.5 if kind == "webrtc" else voice_threshold,
                           silence_timeout_ms=silence_timeout_ms, max_buffer_secs=max_buffer_secs)
        if kind == "webrtc":
            if self.webrtc is None:
                self.webrtc = WebRtcBank(self.max_legs)
            self.webrtc.configure(leg.slot, voice_threshold)
            leg.vad_kind = VAD_WEBRTC
        elif kind == "ten":
            self.ten.enable(leg.slot, voice_threshold)
            leg.vad_kind = VAD_TEN
        else:
            self.silero_threads = silero_threads
            self.silero_batch(leg, self.wants_silero8(leg)).reset(leg.slot)
            leg.vad_kind = VAD_SILERO

    cdef bint wants_silero8(self, Leg leg):
        """Whether the leg's silero runs on the 8 kHz graph: set_silero(rate="auto"), an 8 kHz codec and
        no denoiser (whose output is 16 kHz)."""
        return self.silero_auto and leg.codec.frame_samples == FRAME // 2 and not leg.denoise

    cdef SileroBatch silero_batch(self, Leg leg, bint eight):
        """The batch for the leg (created on first use), the leg's ``silero8`` set to match."""
        model, skip = self.silero_options[0], self.silero_options[1]
        if eight and self.silero8 is None:
            self.silero8 = SileroBatch(self.max_legs, threads=self.silero_threads, model=model,
                                       skip_below=ENERGY_FLOOR if skip else 0.0, rate=8000)
        elif not eight and self.silero is None:
            self.silero = SileroBatch(self.max_legs, threads=self.silero_threads, model=model,
                                      skip_below=ENERGY_FLOOR if skip else 0.0)
        leg.silero8 = eight
        return self.silero8 if eight else self.silero

    def set_silero(self, str model="float", bint skip=True, str rate="16000"):
        """Silero model ("float" or "int8"), level-gate skipping (windows below the energy floor are not
        inferred) and graph (``rate`` "16000": every leg's 16 kHz audio; "auto": legs with an 8 kHz codec
        run the model's 8 kHz graph on their own audio) of the engine's silero batches;
        before the first silero leg, or the same as they have."""
        if model not in ("float", "int8"):
            raise ValueError(f"unknown silero model {model!r}; expected float or int8")
        if rate not in ("16000", "auto"):
            raise ValueError(f"unknown silero rate {rate!r}; expected 16000 or auto")
        if (self.silero is not None or self.silero8 is not None) and self.silero_options != (model, skip, rate):
            was_model, was_skip, was_rate = self.silero_options
            raise ValueError(f"silero already runs model {was_model!r} with skip {'on' if was_skip else 'off'} "
                             f"at rate {was_rate}: set_silero comes before the first silero leg")
        self.silero_options = (model, skip, rate)
        self.silero_auto = rate == "auto"

    @property
    def silero_counts(self):
        """(windows inferred, windows skipped by the level gate) since the silero batches were created."""
        inferred = skipped = 0
        for batch in (self.silero, self.silero8):
            if batch is not None:
                inferred += batch.n_inferred
                skipped += batch.n_skipped
        return (inferred, skipped)

    def _release_vad(self, Leg leg):
        if leg.vad_kind == VAD_SILERO:
            (self.silero8 if leg.silero8 else self.silero).reset(leg.slot)
        elif leg.vad_kind == VAD_TEN:
            self.ten.disable(leg.slot)
        leg.vad_kind = VAD_NONE

    def set_denoise(self, Leg leg, bint enabled):
        """Noise suppression on the leg's inbound audio, before VAD, ASR and recording (adds 6 ms)."""
        if enabled:
            if self.denoiser is None:
                self.denoiser = DenoiseBank(self.max_legs)
            self.denoiser.enable(leg.slot)
        elif leg.denoise:
            self.denoiser.disable(leg.slot)
        leg.denoise = enabled

    def set_asr_tap(self, Leg leg, bint enabled, double max_seconds=50.0):
        """Keep the leg's 16 kHz inbound audio (the newest ``max_seconds``) for :meth:`drain_asr`."""
        ring_free(&leg.asr)
        leg.asr_on = enabled
        if enabled and ring_init(&leg.asr, <Py_ssize_t>(max_seconds * ENGINE_RATE)) < 0:
            leg.asr_on = False
            raise MemoryError("engine: cannot allocate the ASR buffer")

    def drain_asr(self):
        """``[(leg, int16 array), ...]`` of the audio tapped since the last drain, for legs with data."""
        cdef Leg leg
        cdef int16_t[::1] view
        result = []
        for leg in self.active:
            if leg.asr_on and leg.asr.size:
                arr = np.empty(leg.asr.size, dtype=np.int16)
                view = arr
                ring_pop(&leg.asr, &view[0], leg.asr.size)
                result.append((leg, arr))
        return result

    def set_recorder(self, Leg leg, path, int samplerate=16000, int ptime_ms=200):
        """Record the leg as stereo 16-bit WAV: left the remote party, right what we play.

        Creates the file on the calling thread (~1.5 ms on ext4): a server opens the writer on a
        worker thread and hands it to ``attach_recorder`` instead."""
        self.attach_recorder(leg, WavWriter(path, samplerate, 2, flush_ms=ptime_ms))

    def attach_recorder(self, Leg leg, WavWriter rec not None):
        """Record the leg into an open stereo writer (any rate); a recorder already there is closed."""
        if rec.fd < 0:
            raise ValueError("the recorder's writer is closed")
        if rec.n_channels != 2:
            raise ValueError(f"the recorder needs a stereo writer, not {rec.n_channels} channel(s)")
        self._stop_recorder(leg)
        if rec.rate != ENGINE_RATE:
            leg.rec_left = Resampler(ENGINE_RATE, rec.rate)
            leg.rec_right = Resampler(ENGINE_RATE, rec.rate)
        leg.rec = rec
        # Recorders started on the same tick would all flush on the same later tick: one early flush
        # after 1..flush interval frames (by slot) puts each on its own phase of the flush interval.
        leg.rec_stagger = 1 + leg.slot % max(<int>(rec.flush_frames * 1000 // rec.rate) // FRAME_MS, 1)

    def detach_recorder(self, Leg leg):
        """Stop recording the leg and return its writer, still open (None if it had none): closing it
        (the last flush and header) is then the caller's, e.g. on a worker thread."""
        rec, leg.rec = leg.rec, None
        leg.rec_left = leg.rec_right = None
        return rec

    def stop_recorder(self, Leg leg):
        self._stop_recorder(leg)

    def _stop_recorder(self, Leg leg):
        rec = self.detach_recorder(leg)
        if rec is not None:
            rec.close()

    def set_inbound_mute(self, Leg leg, bint muted):
        leg.muted_in = muted

    def bridge(self, Leg a, Leg b):
        """Play each leg's inbound audio to the other (mixed with its playout)."""
        a.bridge = b.slot
        b.bridge = a.slot

    def unbridge(self, Leg a):
        cdef Leg b
        if a.bridge >= 0:
            b = self.legs[a.bridge]
            if b is not None and b.bridge == a.slot:
                b.bridge = -1
        a.bridge = -1

    def send_dtmf(self, Leg leg, str digits):
        """Queue RFC 4733 digits; they replace the leg's audio packets while they play."""
        if leg.dtmf_pt < 0:
            raise ValueError("the leg has no telephone-event payload type")
        for d in digits:
            rc = dtmf_sender_queue(&leg.dtmf_tx, ord(d))
            if rc == -2:
                raise ValueError(f"not a DTMF digit: {d!r}")
            if rc == -1:
                raise ValueError("DTMF queue full")

    def set_remote(self, Leg leg, remote, *, rtcp_remote=None):
        """The peer's signalled address changed or was confirmed (an SDP answer, a re-INVITE).

        ``remote`` is ``(host, port)``; ``rtcp_remote`` the explicit RTCP address (a leg with
        ``rtcp_fd`` only), else RTCP goes to the RTP remote's port + 1 (following the latch). A latching
        leg given a different address unlatches, and what its sockets hold is discarded (module
        docstring); the same address again (hold, resume) keeps its latch."""
        cdef UdpAddr addr
        cdef UdpAddr rtcp_addr
        if rtcp_remote is not None and leg.rtcp_fd < 0:
            raise ValueError("rtcp_remote needs rtcp_fd (without it RTCP is multiplexed on the RTP port)")
        addr_from_python(remote, &addr)
        if rtcp_remote is not None:
            addr_from_python(rtcp_remote, &rtcp_addr)
        moved = not (leg.has_signalled and addr_equal(&addr.sa, addr.len, &leg.signalled.sa, leg.signalled.len))
        leg.signalled = addr
        leg.has_signalled = True
        if not leg.latch or moved:
            leg.remote = addr
            leg.has_remote = True
        if leg.latch and moved:
            leg.latched = False
            leg.cand_count = 0
            discard_held(self.recv, leg)
        if rtcp_remote is not None:
            leg.rtcp_remote = rtcp_addr
            leg.has_rtcp_remote = True
            leg.rtcp_remote_explicit = True
        elif leg.rtcp_fd >= 0:
            leg.rtcp_remote_explicit = False
            set_rtcp_from_rtp(leg)

    def set_codec(self, Leg leg, str codec, *, int rate=0, int payload_type=-1, int dtmf_payload_type=-1,
                  int ptime_ms=20):
        """The stream's codec changed (a re-INVITE's new offer/answer). The leg keeps its sockets, latch,
        SSRC, VAD, recorder, playout queue and bridge; its jitter buffer, resamplers, inbound buffer and
        DTMF sender start afresh in the new codec (what they held was in the old one; the receive
        statistics so far are kept as totals, as on a new SSRC)."""
        if leg.transport == TRANSPORT_STREAM:
            raise ValueError("a stream leg has no RTP codec to change")
        if ptime_ms not in (10, 20, 30, 40, 60):
            raise ValueError(f"ptime must be 10, 20, 30, 40 or 60 ms, got {ptime_ms}")
        cdef Codec new = Codec(codec, rate)
        cdef JitterBuffer jb = JitterBuffer(new.clock_rate, new.clock_rate * ptime_ms // 1000,
                                            min_delay_ms=leg.jb.min_delay_ms, max_delay_ms=leg.jb.max_delay_ms,
                                            event_pt=dtmf_payload_type)
        cdef PcmRing ring
        if ring_init(&ring, new.audio_rate) < 0:
            raise MemoryError("engine: cannot allocate the inbound buffer")
        ring_free(&leg.decoded)
        leg.decoded = ring
        if leg.rx_base_ext >= 0:           # the old stream's figures become totals
            leg.rx_expected_done += leg.rx_max_ext - leg.rx_base_ext + 1
            leg.rx_lost_done += leg.rx_max_ext - leg.rx_base_ext + 1 - leg.rx_received
            leg.rx_base_ext = -1
        leg.codec = new
        leg.payload_type = payload_type if payload_type >= 0 else _default_pt(codec)
        leg.dtmf_pt = dtmf_payload_type
        leg.jb = jb
        leg.up = Resampler(new.audio_rate, ENGINE_RATE) if new.audio_rate != ENGINE_RATE else None
        leg.down = Resampler(ENGINE_RATE, new.audio_rate) if new.audio_rate != ENGINE_RATE else None
        dtmf_sender_init(&leg.dtmf_tx, 8 * 100 * new.clock_rate // 8000, 60 * new.clock_rate // 1000)
        leg.marker_next = True

    def set_srtp(self, Leg leg, SrtpSession tx not None, SrtpSession rx not None):
        """Key a control (WebRTC) leg: from now on what it sends is protected with ``tx`` and what it
        receives is authenticated and decrypted with ``rx``."""
        if not leg.control:
            raise ValueError("set_srtp is for control (WebRTC) legs")
        if not tx.outbound or rx.outbound:
            raise ValueError("tx must be an outbound session and rx an inbound one")
        leg.srtp_tx = tx
        leg.srtp_rx = rx

    def drain_control(self):
        """The STUN and DTLS datagrams control legs received since the last call: a list of
        ``(slot, (host, port), data)``."""
        queued, self.control_in = self.control_in, []
        return queued

    def set_rtp_timeout(self, Leg leg, double ms):
        """Change the leg's RTP inactivity timeout (``rtp_timeout_ms``; 0 turns it off), e.g. off while
        the call is on hold and back on after. The inactivity clock restarts at the engine's current
        frame time, so a timeout turned back on fires only after ``ms`` more without packets, and once
        more even if it fired before."""
        if not (isfinite(ms) and ms >= 0):
            raise ValueError(f"rtp_timeout_ms must be >= 0, got {ms}")
        leg.rtp_timeout_ms = ms
        leg.timeout_reported = False
        if self.started and self.next_frame_ms > leg.last_rx_ms:
            leg.last_rx_ms = self.next_frame_ms

    # -- Python-fed media -----------------------------------------------------------------------
    def feed(self, Leg leg, const uint8_t[::1] data):
        """Inbound codec bytes of any length for a STREAM leg; returns samples accepted."""
        if leg.transport != TRANSPORT_STREAM:
            raise ValueError("feed() is for stream legs; RTP legs take push_packets()")
        cdef Py_ssize_t n = data.shape[0], pos = 0, chunk, got, accepted = 0, dropped_before
        cdef uint8_t two[2]
        cdef int bytes_per_sample = 2 if leg.codec.kind == CODEC_PCM or leg.codec.kind == CODEC_L16 else 1
        dropped_before = leg.decoded.dropped
        if bytes_per_sample == 2 and leg.has_pending_byte and n:
            two[0] = leg.pending_byte
            two[1] = data[0]
            got = leg.codec.decode_c(two, 2, leg.pcm, CODEC_MAX_FRAME * 4)
            accepted += ring_push(&leg.decoded, leg.pcm, got)
            leg.has_pending_byte = False
            pos = 1
        while n - pos >= bytes_per_sample:
            chunk = min(n - pos, CODEC_MAX_FRAME * 2)  # G.722 decodes 2 samples per byte
            if bytes_per_sample == 2:
                chunk &= ~1
            got = leg.codec.decode_c(&data[pos], chunk, leg.pcm, CODEC_MAX_FRAME * 4)
            if got < 0:
                raise ValueError(f"{chunk} bytes do not decode as {leg.codec.kind}")
            accepted += ring_push(&leg.decoded, leg.pcm, got)
            pos += chunk
        if pos < n:
            leg.pending_byte = data[pos]
            leg.has_pending_byte = True
        leg.stream_fed = True
        if leg.decoded.dropped != dropped_before:
            self.emit(leg.slot, EV_INBOUND_OVERFLOW, self._leg_now(leg),
                      leg.decoded.dropped - dropped_before, 0, 0, 0)
        return accepted

    def push_packets(self, const int32_t[::1] slots, const uint8_t[::1] blob,
                     const int64_t[::1] offsets, const double[::1] arrival_ms):
        """RTP datagrams for PACKETS legs: datagram i is ``blob[offsets[i]:offsets[i+1]]`` for leg
        ``slots[i]``, arrived at ``arrival_ms[i]``. Unknown slots are skipped; returns datagrams taken."""
        cdef Py_ssize_t i, n = slots.shape[0], taken = 0
        cdef Leg leg
        if offsets.shape[0] != n + 1 or arrival_ms.shape[0] != n:
            raise ValueError("push_packets: offsets must have len(slots)+1 entries, arrival_ms len(slots)")
        for i in range(n):   # checked before any datagram is taken, so a bad call changes nothing
            if offsets[i] < 0 or offsets[i + 1] < offsets[i] or offsets[i + 1] > blob.shape[0]:
                raise ValueError(f"push_packets: datagram {i} spans {offsets[i]}..{offsets[i + 1]}, "
                                 f"outside the {blob.shape[0]}-byte blob")
        for i in range(n):
            if slots[i] < 0 or slots[i] >= self.max_legs:
                continue
            leg = self.legs[slots[i]]
            if leg is None or leg.transport != TRANSPORT_PACKETS:
                continue
            self.receive_packet(leg, &blob[offsets[i]] if offsets[i + 1] > offsets[i] else NULL,
                                offsets[i + 1] - offsets[i], arrival_ms[i])
            taken += 1
        return taken

    def drain_out(self):
        """Outbound datagrams (PACKETS) and frames (STREAM) since the last drain:
        ``(slots int32[n], offsets int64[n+1], data bytes)``."""
        slots = np.array(<int32_t[:self.n_out]>self.out_legs, dtype=np.int32) if self.n_out else \
            np.empty(0, dtype=np.int32)
        offsets = np.array(<int64_t[:self.n_out + 1]>self.out_offsets, dtype=np.int64)
        data = self.out_buf[:self.out_len]
        self.n_out = 0
        self.out_len = 0
        return slots, offsets, data

    # -- the tick ---------------------------------------------------------------------------------
    def tick(self, double now_ms):
        """Serve every leg up to ``now_ms``; returns the events as
        ``[(slot, kind, leg_time_ms, a, b, c, d), ...]``."""
        if not isfinite(now_ms):
            raise ValueError("tick time must be finite")
        cdef Leg leg
        cdef int done = 0
        if not self.started:
            self.started = True
            self.next_frame_ms = now_ms
        self.poll_rtcp()
        if self.next_frame_ms <= now_ms < self.next_frame_ms + FRAME_MS:
            # The usual tick: one frame due. Each leg's socket is read just before its frame.
            self.frame(self.next_frame_ms, True, now_ms)
            self.next_frame_ms += FRAME_MS
            return self._drain_events()
        for leg in self.active:
            if leg.transport == TRANSPORT_UDP:
                self.receive_udp(leg, now_ms)
        while self.next_frame_ms <= now_ms:
            if done == MAX_CATCHUP:
                skipped = <uint64_t>((now_ms - self.next_frame_ms) // FRAME_MS) + 1
                self.skipped_frames += skipped
                self.next_frame_ms += skipped * FRAME_MS
                break
            self.frame(self.next_frame_ms, False, now_ms)
            self.next_frame_ms += FRAME_MS
            done += 1
        return self._drain_events()

    @property
    def next_frame_ms(self):
        return self.next_frame_ms

    cdef int frame(self, double t_ms, bint receive, double now_ms) except -1:
        """One frame for every leg. A leg's receive, inbound and outbound run back to back, so its
        state comes into the cache once per tick, not once per pass over 1000 legs; only a bridged
        leg's outbound waits for a second pass, after its partner's inbound."""
        cdef Leg leg
        cdef bint silero_due = False, bridged = False
        for leg in self.active:
            if receive and leg.transport == TRANSPORT_UDP:
                self.receive_udp(leg, now_ms)
            self.inbound(leg, t_ms)
            silero_due = silero_due or leg.vad_kind == VAD_SILERO
            if leg.bridge < 0:
                self.outbound(leg, t_ms)
            else:
                bridged = True
        if silero_due:
            self.run_silero()
        self.drain_vad_events()
        if bridged:
            for leg in self.active:
                if leg.bridge >= 0:
                    self.outbound(leg, t_ms)
        self.frames += 1
        return 0

    cdef int inbound(self, Leg leg, double t_ms) except -1:
        cdef JitterOut out
        cdef Codec codec = leg.codec
        cdef int n, fs = codec.frame_samples, digit, voiced
        cdef float probs[2]
        cdef int64_t t_leg = <int64_t>t_ms - leg.t0_ms
        cdef bint in_place = False, whole = False
        leg.relay_len = 0
        if leg.transport != TRANSPORT_STREAM:
            # Decode what the jitter buffer releases until a frame's worth of PCM is waiting.
            while leg.decoded.size < fs:
                leg.jb.pop_frame(t_ms, &out)
                if out.kind == JITTER_NOTHING:
                    break
                if out.kind == JITTER_EVENT:
                    digit = dtmf_receive(&leg.dtmf_rx, out.ssrc, out.timestamp, out.marker,
                                         out.payload, out.length)
                    if digit > 0 and not leg.muted_in:
                        leg.dtmf_digits += 1
                        self.emit(leg.slot, EV_DTMF, t_leg, digit, 0, 0, 0)
                    continue
                whole = False
                if out.kind == JITTER_FRAME:
                    n = codec.decode_c(out.payload, out.length, leg.pcm, CODEC_MAX_FRAME * 4)
                    if n < 0:
                        n = codec.conceal_c(leg.pcm)
                    else:
                        whole = n == fs and out.length <= CODEC_MAX_PAYLOAD
                else:  # LOSS or EXPAND: conceal one packet time
                    n = codec.conceal_c(leg.pcm)
                if n == fs and leg.decoded.size == 0:
                    in_place = True     # the usual case, one packet per frame: no trip through the FIFO
                    if whole and leg.bridge >= 0:   # the bridged partner may send it on as it is (same codec)
                        memcpy(leg.relay, out.payload, out.length)
                        leg.relay_len = <int>out.length
                    break
                ring_push(&leg.decoded, leg.pcm, n)
            if leg.rtp_timeout_ms > 0 and not leg.timeout_reported \
                    and t_ms - leg.last_rx_ms >= leg.rtp_timeout_ms:
                leg.timeout_reported = True
                self.emit(leg.slot, EV_RTP_TIMEOUT, t_leg, <int64_t>(t_ms - leg.last_rx_ms), 0, 0, 0)
        if leg.transport == TRANSPORT_STREAM:
            self.stream_catch_up(leg, fs)
        n = fs if in_place else ring_pop(&leg.decoded, leg.pcm, fs)
        if n < fs:
            memset(leg.pcm + n, 0, (fs - n) * sizeof(int16_t))
            if leg.transport == TRANSPORT_STREAM and leg.stream_fed and leg.stream_owed < STREAM_MAX_OWED:
                leg.stream_owed += 1   # an underrun delays everything after it by one frame
        if leg.up is not None:
            leg.up.process_c(leg.pcm, fs, leg.in16)
        else:
            memcpy(leg.in16, leg.pcm, FRAME * sizeof(int16_t))
        if leg.muted_in:
            memset(leg.in16, 0, FRAME * sizeof(int16_t))
        elif leg.denoise:
            self.denoiser.process_c(leg.slot, leg.in16, FRAME)
        if leg.vad_kind == VAD_WEBRTC:
            # WebRTC VAD holds "speech" for its hangover (60-140 ms by mode) after speech stops; a frame
            # below the energy floor is not speech whatever the detector says, so offsets into quiet are
            # on time. Above the floor (background noise) the detector's own lag remains.
            voiced = self.webrtc.is_speech_c(leg.slot, leg.in16, FRAME)
            if mean_square(leg.in16, FRAME) < ENERGY_FLOOR:
                voiced = 0
            self.vad.feed_c(leg.slot, <float>voiced, t_leg, FRAME_MS)
        elif leg.vad_kind == VAD_SILERO:
            if leg.silero8 != self.wants_silero8(leg):      # the codec or the denoiser changed: the other graph
                (self.silero8 if leg.silero8 else self.silero).reset_c(leg.slot)
                self.silero_batch(leg, not leg.silero8).reset_c(leg.slot)
            if not leg.silero8:
                self.silero.push_c(leg.slot, leg.in16, FRAME, t_leg)
            elif leg.muted_in:
                self.silero8.push_c(leg.slot, SILENCE_8K, FRAME // 2, t_leg)
            else:
                self.silero8.push_c(leg.slot, leg.pcm, FRAME // 2, t_leg)
        elif leg.vad_kind == VAD_TEN:
            # two 10 ms hops per frame; the first hop after enable reports -1 (no decision yet)
            if self.ten.process_c(leg.slot, leg.in16, FRAME, probs) == 2:
                if mean_square(leg.in16, FRAME) < ENERGY_FLOOR:
                    probs[0] = probs[1] = 0.0
                self.vad.feed_c(leg.slot, probs[0] if probs[0] > 0 else 0.0, t_leg, FRAME_MS // 2)
                self.vad.feed_c(leg.slot, probs[1] if probs[1] > 0 else 0.0, t_leg + FRAME_MS // 2, FRAME_MS // 2)
        if leg.asr_on:
            ring_push_overwrite(&leg.asr, leg.in16, FRAME)
        return 0

    cdef void stream_catch_up(self, Leg leg, int fs) noexcept:
        """Take back the delay that underruns added to a fed stream: while frames are owed and more
        than one frame is waiting, drop quiet frames (below the VAD energy floor). A client that feeds
        faster than real time never underruns, so nothing it sends is dropped."""
        while leg.stream_owed > 0 and leg.decoded.size >= 2 * fs:
            ring_peek(&leg.decoded, leg.pcm, fs)
            if mean_square(leg.pcm, fs) >= ENERGY_FLOOR:
                return
            ring_skip(&leg.decoded, fs)
            leg.stream_owed -= 1
            leg.stream_skipped += 1

    cdef int run_silero(self) except -1:
        """One inference per batch over every leg with a full 32 ms window, then their state machines."""
        cdef SileroBatch silero
        cdef int i
        for silero in (self.silero, self.silero8):
            if silero is None:
                continue
            silero.run_ready()
            for i in range(silero.n_results):
                # silero's recurrent state keeps "speech" up for 2-3 windows of digital silence after speech:
                # the same energy floor as for webrtc applies (with skip on, those windows were not inferred).
                self.vad.feed_c(silero.result_slots[i],
                                silero.result_probs[i] if silero.result_mean_square[i] >= ENERGY_FLOOR else 0.0,
                                silero.result_start_ms[i], SILERO_WINDOW_MS)
        return 0

    cdef int drain_vad_events(self) except -1:
        cdef int i
        cdef VadEvent* e
        for i in range(self.vad.n_events):
            e = &self.vad.events[i]
            if e.kind == VAD_SPEAKING:
                self.emit(e.slot, EV_SPEAKING, e.time_ms, e.start_ms, 0, 0, 0)
            elif e.kind == VAD_SILENCE:
                self.emit(e.slot, EV_SILENCE, e.time_ms, e.start_ms, e.duration_ms, 0, 0)
            elif e.kind == VAD_SEGMENT_CAP:
                self.emit(e.slot, EV_SEGMENT_CAP, e.time_ms, e.start_ms, 0, 0, 0)
        self.vad.n_events = 0
        return 0

    cdef int outbound(self, Leg leg, double t_ms) except -1:
        cdef Playout playout = leg.playout
        cdef Leg partner
        cdef Codec codec = leg.codec
        cdef Py_ssize_t played, n
        cdef int i, rc
        cdef int64_t t_leg = <int64_t>t_ms - leg.t0_ms
        cdef PlayoutEvent* pe
        cdef int64_t t_event
        cdef bint marker, new_event, relay
        if leg.control and leg.srtp_tx is None:
            return 0                 # a WebRTC leg before its keys: prompts wait instead of playing unheard
        played = playout.pull_c(leg.out16, FRAME)
        for i in range(playout.n_events):
            pe = &playout.events[i]
            t_event = t_leg + pe.offset * 1000 // ENGINE_RATE
            if pe.kind == PLAY_STARTED:
                self.emit(leg.slot, EV_PLAY_STARTED, t_event, pe.item_id, 0, 0, 0)
            elif pe.kind == PLAY_ENDED:
                self.emit(leg.slot, EV_PLAY_ENDED, t_event, pe.item_id, pe.played * 1000 // ENGINE_RATE,
                          pe.elapsed * 1000 // ENGINE_RATE, pe.interrupted)
            else:
                self.emit(leg.slot, EV_PLAY_DROPPED, t_event, pe.item_id, 0, 0, 0)
        playout.n_events = 0
        relay = False
        if leg.bridge >= 0:
            partner = self.legs[leg.bridge]
            if partner is not None:
                # Relay: nothing of our own plays and the partner's packet is this frame in our codec:
                # send its payload as it came (no decode-mix-encode); the decoded audio still goes to VAD,
                # ASR and the recorder. Mute and denoise change the audio, so they need the transcode.
                relay = (self.relay_bridges and played == 0 and partner.relay_len > 0
                         and partner.codec.kind == codec.kind
                         and partner.codec.frame_ticks == codec.frame_ticks and not partner.muted_in
                         and not partner.denoise and leg.transport == TRANSPORT_UDP)
                for i in range(FRAME):
                    leg.out16[i] = saturate(<int32_t>leg.out16[i] + partner.in16[i])
                played = FRAME
        if leg.rec is not None:
            self.record(leg, t_leg)
        if leg.transport == TRANSPORT_STREAM:
            if played == 0 and not leg.stream_silence:
                return 0
            self.encode_out(leg)
            n = codec.encode_c(leg.pcm, leg.payload)
            if n > 0:
                self.out_append(leg.slot, leg.payload, n)
                leg.tx_packets += 1
            return 0
        if dtmf_sender_busy(&leg.dtmf_tx) and leg.dtmf_pt >= 0:
            n = dtmf_sender_next(&leg.dtmf_tx, codec.frame_ticks, leg.payload, &marker, &new_event)
            if new_event:
                leg.dtmf_ts = leg.ts
            if n > 0:
                self.send_rtp(leg, leg.dtmf_pt, marker, leg.dtmf_ts, leg.payload, n)
            leg.ts += codec.frame_ticks
            leg.marker_next = True   # audio resumes as a new talkspurt after the event
            return 0
        if relay:
            self.send_rtp(leg, leg.payload_type, leg.marker_next, leg.ts, partner.relay, partner.relay_len)
            leg.marker_next = False
            leg.relayed += 1
        else:
            self.encode_out(leg)
            n = codec.encode_c(leg.pcm, leg.payload)
            if n > 0:
                self.send_rtp(leg, leg.payload_type, leg.marker_next, leg.ts, leg.payload, n)
                leg.marker_next = False
        leg.ts += codec.frame_ticks
        if leg.rtcp_interval_ms > 0 and t_ms >= leg.next_rtcp_ms:
            leg.next_rtcp_ms = t_ms + leg.rtcp_interval_ms
            self.send_rtcp(leg, t_ms)
        return 0

    cdef void encode_out(self, Leg leg) noexcept:
        """out16 (16 kHz) -> leg.pcm at the codec rate."""
        if leg.down is not None:
            leg.down.process_c(leg.out16, FRAME, leg.pcm)
        else:
            memcpy(leg.pcm, leg.out16, FRAME * sizeof(int16_t))

    cdef void record(self, Leg leg, int64_t t_leg) noexcept:
        cdef Py_ssize_t frames = FRAME
        cdef int rc
        if leg.rec_left is not None:
            frames = leg.rec_left.process_c(leg.in16, FRAME, leg.rec_l)
            leg.rec_right.process_c(leg.out16, FRAME, leg.rec_r)
            interleave_stereo_c(leg.rec_l, leg.rec_r, leg.stereo, frames)
        else:
            interleave_stereo_c(leg.in16, leg.out16, leg.stereo, frames)
        rc = leg.rec.write_frames(leg.stereo, frames)
        if rc == 0 and leg.rec_stagger > 0:
            leg.rec_stagger -= 1
            if leg.rec_stagger == 0:
                rc = leg.rec.flush_c()
        if rc < 0:
            # A full disk must not take the call down: stop recording and say so.
            self.emit(leg.slot, EV_RECORDER_ERROR, t_leg, -rc, 0, 0, 0)
            try:
                leg.rec.close()
            except OSError:
                pass
            leg.rec = None

    cdef int send_rtp(self, Leg leg, uint8_t pt, bint marker, uint32_t ts, const uint8_t* payload,
                      Py_ssize_t n) except -1:
        cdef RtpHeader h
        cdef Py_ssize_t size
        memset(&h, 0, sizeof(RtpHeader))
        h.payload_type = pt
        h.marker = marker
        h.sequence = leg.seq
        h.timestamp = ts
        h.ssrc = leg.ssrc
        size = rtp_build(&h, payload, n, leg.packet, RTP_PACKET_MAX)
        if size < 0:
            leg.tx_errors += 1
            return 0
        leg.seq += 1
        leg.tx_octets += n
        if leg.transport == TRANSPORT_PACKETS:
            self.out_append(leg.slot, leg.packet, size)
            leg.tx_packets += 1
        elif leg.has_remote and self.protect(leg, leg.packet, &size, False):
            if send_datagram(leg.fd, leg.packet, size, &leg.remote) < 0:
                leg.tx_errors += 1
            else:
                leg.tx_packets += 1
        return 0

    cdef bint protect(self, Leg leg, uint8_t* packet, Py_ssize_t* size, bint rtcp) noexcept:
        """Whether the packet may go out: always on a plain leg; on a control (WebRTC) leg only once keyed,
        SRTP-protected in place (``packet`` has SRTP_TRAILER_MAX bytes of room after ``size``)."""
        cdef int length
        if not leg.control:
            return True
        if leg.srtp_tx is None:
            return False
        length = <int>size[0]
        if leg.srtp_tx.protect(packet, &length, rtcp) != 0:
            leg.tx_errors += 1
            return False
        size[0] = length
        return True

    cdef void receive_udp(self, Leg leg, double now_ms) noexcept:
        """Everything the leg's socket(s) hold, source-checked (module docstring: symmetric RTP)."""
        cdef RecvBatch rb = self.recv
        cdef int i, n
        cdef Py_ssize_t length
        cdef socklen_t alen
        while True:
            n = rb.recv_c(leg.fd)
            if n <= 0:
                break
            for i in range(n):
                alen = rb.msgs[i].msg_hdr.msg_namelen
                length = rb.length(i)
                if leg.control:
                    length = self.demux_control(leg, &rb.addrs[i], alen, <uint8_t*>rb.data(i), length)
                    if length <= 0:
                        continue
                if leg.has_remote and addr_equal(&rb.addrs[i], alen, &leg.remote.sa, leg.remote.len):
                    if self.receive_packet(leg, rb.data(i), length, now_ms) and leg.latch:
                        if not leg.latched:
                            self.latch_to(leg, &rb.addrs[i], alen, leg.rx_last_ssrc, now_ms)
                        leg.latched_ssrc = leg.rx_last_ssrc
                        leg.cand_count = 0
                elif leg.latch:
                    self.receive_foreign(leg, &rb.addrs[i], alen, rb.data(i), length, now_ms)
                else:
                    leg.rx_foreign += 1
            if n < UDP_BATCH:
                break
        if leg.rtcp_fd >= 0 and (leg.rtcp_ready or not leg.rtcp_polled):
            leg.rtcp_ready = False
            self.receive_rtcp_socket(leg, now_ms)

    cdef Py_ssize_t demux_control(self, Leg leg, const sockaddr_storage* addr, socklen_t alen, uint8_t* data,
                                  Py_ssize_t n) noexcept:
        """A WebRTC leg's datagram (RFC 7983): STUN (first byte 0-3) and DTLS (20-63) are queued for
        Python (0 returned); SRTP and SRTCP (128-191) are unprotected in place (their plain length
        returned; -1 when there are no keys yet or they do not authenticate); anything else is dropped."""
        cdef int length = <int>n
        cdef uint8_t first = data[0] if n > 0 else 255
        if first < 4 or 20 <= first < 64:
            leg.rx_control += 1
            self.control_in.append((leg.slot, addr_to_python(addr, alen), data[:n]))
            return 0
        if not 128 <= first < 192:
            leg.rx_bad += 1
            return -1
        if leg.srtp_rx is None:
            leg.rx_unkeyed += 1
            return -1
        # RFC 5761 §4: payload types 64-95 (second byte 192-223) are RTCP
        if leg.srtp_rx.unprotect(data, &length, n >= 2 and 192 <= data[1] <= 223) != 0:
            leg.rx_bad += 1
            return -1
        return length

    cdef void receive_foreign(self, Leg leg, const sockaddr_storage* addr, socklen_t alen, const uint8_t* data,
                              Py_ssize_t n, double now_ms) noexcept:
        """A datagram from another address than the remote, on a latching leg: it latches the leg if it is
        the first valid packet, or the RELATCH_PACKETS-th in a row of a candidate; else it is dropped."""
        cdef RtpHeader h
        if (n >= 2 and 200 <= data[1] <= 204) or rtp_parse(data, n, &h) != 0 \
                or (h.payload_type != leg.payload_type and h.payload_type != leg.dtmf_pt):
            leg.rx_foreign += 1
            return
        if leg.latched:
            if h.ssrc == leg.latched_ssrc:
                leg.cand_count = 0
                leg.rx_foreign += 1
                return
            if leg.cand_count > 0 and h.ssrc == leg.cand_ssrc \
                    and addr_equal(addr, alen, &leg.cand.sa, leg.cand.len):
                leg.cand_count += 1
            else:
                memcpy(&leg.cand.sa, addr, sizeof(sockaddr_storage))
                leg.cand.len = alen
                leg.cand_ssrc = h.ssrc
                leg.cand_count = 1
            if leg.cand_count < RELATCH_PACKETS:
                leg.rx_foreign += 1
                return
        self.latch_to(leg, addr, alen, h.ssrc, now_ms)
        self.receive_packet(leg, data, n, now_ms)

    cdef void latch_to(self, Leg leg, const sockaddr_storage* addr, socklen_t alen, uint32_t ssrc,
                       double now_ms) noexcept:
        memcpy(&leg.remote.sa, addr, sizeof(sockaddr_storage))
        leg.remote.len = alen
        leg.has_remote = True
        leg.latched = True
        leg.latched_ssrc = ssrc
        leg.cand_count = 0
        leg.latches += 1
        if leg.rtcp_fd >= 0 and not leg.rtcp_remote_explicit:
            set_rtcp_from_rtp(leg)
        self.emit(leg.slot, EV_LATCHED, <int64_t>now_ms - leg.t0_ms, 0, 0, 0, 0)

    cdef void receive_rtcp_socket(self, Leg leg, double now_ms) noexcept:
        """RTCP on the leg's own RTCP socket, from the host of the RTP remote or of rtcp_remote only
        (a NATed peer's RTCP source port is not predictable): anything else is foreign."""
        cdef RecvBatch rb = self.recv
        cdef int i, n
        cdef const uint8_t* data
        while True:
            n = rb.recv_c(leg.rtcp_fd)
            if n <= 0:
                return
            for i in range(n):
                if not ((leg.has_remote and addr_same_host(&rb.addrs[i], &leg.remote.sa))
                        or (leg.has_rtcp_remote and addr_same_host(&rb.addrs[i], &leg.rtcp_remote.sa))):
                    leg.rx_foreign += 1
                    continue
                data = rb.data(i)
                if rb.length(i) >= 2 and 200 <= data[1] <= 204:
                    self.receive_rtcp(leg, data, rb.length(i), now_ms)
                else:
                    leg.rx_bad += 1
            if n < UDP_BATCH:
                return

    cdef bint receive_packet(self, Leg leg, const uint8_t* data, Py_ssize_t n, double arrival_ms) noexcept:
        """One datagram from the peer: RTCP, or RTP into the jitter buffer. Returns whether it was a
        valid packet (RTP with the codec's or telephone-event's PT); its SSRC is left in rx_last_ssrc."""
        cdef RtpHeader h
        if n >= 2 and 200 <= data[1] <= 204:
            self.receive_rtcp(leg, data, n, arrival_ms)   # multiplexed on the RTP port (RFC 5761)
            return False
        if rtp_parse(data, n, &h) != 0:
            leg.rx_bad += 1
            return False
        if h.payload_type != leg.payload_type and h.payload_type != leg.dtmf_pt:
            leg.rx_other_pt += 1
            return False
        leg.jb.put_packet(h.sequence, h.timestamp, h.ssrc, h.payload_type, h.marker,
                          data + h.payload_offset, h.payload_length, arrival_ms)
        leg.rx_packets += 1
        leg.rx_last_ssrc = h.ssrc
        leg.last_rx_ms = arrival_ms
        leg.timeout_reported = False
        if not leg.jb.have_stream:         # refused before it started a stream (oversized, bad time)
            return True
        if leg.rx_base_ext < 0 or leg.jb.st.resyncs != leg.rx_resyncs:
            # The first packet, or a new stream (new SSRC, sequence jump): the jitter buffer numbers
            # sequences afresh, so the statistics restart; the old stream's figures are kept as totals.
            if leg.rx_base_ext >= 0:
                leg.rx_expected_done += leg.rx_max_ext - leg.rx_base_ext + 1
                leg.rx_lost_done += leg.rx_max_ext - leg.rx_base_ext + 1 - leg.rx_received
            leg.rx_base_ext = leg.jb.max_ext
            leg.rx_resyncs = leg.jb.st.resyncs
            leg.rx_expected_prior = leg.rx_received_prior = 0
            leg.rx_received = 0
        leg.rx_max_ext = leg.jb.max_ext
        leg.rx_received += 1
        return True

    # -- RTCP ---------------------------------------------------------------------------------------
    cdef void send_rtcp(self, Leg leg, double t_ms) noexcept:
        """SR (or RR before we sent anything) with a report block on the peer's stream, then SDES CNAME."""
        cdef RtcpSenderInfo info
        cdef RtcpReportBlock block
        cdef Py_ssize_t size, count = 0, pos
        cdef int64_t expected, lost, expected_interval, lost_interval
        cdef uint8_t* out = leg.packet
        cdef int i, cname_len, fd = leg.fd
        cdef char cname[24]
        cdef const UdpAddr* to = &leg.remote
        if leg.transport != TRANSPORT_UDP:
            return
        if leg.rtcp_fd >= 0:
            if not leg.has_rtcp_remote:
                return
            fd = leg.rtcp_fd
            to = &leg.rtcp_remote
        elif not leg.has_remote:
            return
        if leg.rx_base_ext >= 0:
            expected = leg.rx_max_ext - leg.rx_base_ext + 1
            lost = expected - leg.rx_received
            expected_interval = expected - leg.rx_expected_prior
            lost_interval = expected_interval - (leg.rx_received - leg.rx_received_prior)
            leg.rx_expected_prior = expected
            leg.rx_received_prior = leg.rx_received
            block.ssrc = leg.jb.ssrc
            block.fraction_lost = <uint8_t>((lost_interval << 8) // expected_interval) \
                if expected_interval > 0 and lost_interval > 0 else 0
            block.cumulative_lost = <int32_t>(8388607 if lost > 8388607 else (-8388608 if lost < -8388608 else lost))
            # the jitter buffer's extended numbers start at seq + 0x10000: the wire's cycle count starts at 0
            block.highest_sequence = <uint32_t>(leg.rx_max_ext - 0x10000)
            block.jitter = <uint32_t>(leg.jb.jitter * leg.codec.clock_rate / 1000.0)
            block.lsr = leg.rx_lsr
            block.dlsr = <uint32_t>((t_ms - leg.rx_lsr_at_ms) * 65.536) if leg.rx_lsr else 0
            count = 1
        if leg.tx_packets:
            info.ntp_timestamp = ntp_time(t_ms + self.epoch_offset_ms)
            info.rtp_timestamp = leg.ts
            info.packet_count = <uint32_t>leg.tx_packets
            info.octet_count = <uint32_t>leg.tx_octets
            size = rtcp_build_sr(leg.ssrc, &info, &block, count, out, RTP_PACKET_MAX)
        else:
            size = rtcp_build_rr(leg.ssrc, &block, count, out, RTP_PACKET_MAX)
        if size < 0:
            leg.tx_errors += 1
            return
        # SDES with one chunk: our SSRC and a CNAME item, null-terminated, padded to 32 bits.
        cname_len = 14
        memcpy(cname, b"pypbx-", 6)
        for i in range(8):
            cname[6 + i] = b"0123456789abcdef"[(leg.ssrc >> (28 - 4 * i)) & 0xF]
        pos = size
        out[pos + 4] = leg.ssrc >> 24
        out[pos + 5] = (leg.ssrc >> 16) & 0xFF
        out[pos + 6] = (leg.ssrc >> 8) & 0xFF
        out[pos + 7] = leg.ssrc & 0xFF
        out[pos + 8] = 1                     # CNAME
        out[pos + 9] = cname_len
        memcpy(out + pos + 10, cname, cname_len)
        i = 10 + cname_len                   # bytes so far in this SDES packet
        out[pos + i] = 0                     # end of the item list
        i += 1
        while i % 4:
            out[pos + i] = 0
            i += 1
        out[pos] = 0x81                      # V=2, one chunk
        out[pos + 1] = 202                   # SDES
        out[pos + 2] = ((i // 4 - 1) >> 8) & 0xFF
        out[pos + 3] = (i // 4 - 1) & 0xFF
        size += i
        if not self.protect(leg, out, &size, True):
            return
        if send_datagram(fd, out, size, to) < 0:
            leg.tx_errors += 1
        else:
            leg.rtcp_tx += 1

    cdef void receive_rtcp(self, Leg leg, const uint8_t* data, Py_ssize_t n, double arrival_ms) noexcept:
        """Take what a compound tells us: the peer's SR time (for our LSR/DLSR), its report about our
        stream (loss, jitter, round-trip time) and BYE. Malformed compounds count as bad packets."""
        cdef RtcpHeader hdr
        cdef RtcpSenderInfo info
        cdef RtcpReportBlock block
        cdef Py_ssize_t pos = 0, blocks_at, need
        cdef int i
        cdef uint32_t arrival_mid, rtt_units
        while pos < n:
            if rtcp_parse_header(data, n, pos, &hdr) != 0:
                leg.rx_bad += 1
                return
            blocks_at = hdr.body_offset + 4
            if hdr.packet_type == RTCP_PT_SR or hdr.packet_type == RTCP_PT_RR:
                need = 4 + hdr.count * RTCP_REPORT_BLOCK_SIZE
                if hdr.packet_type == RTCP_PT_SR:
                    need += RTCP_SENDER_INFO_SIZE
                if hdr.body_length < need:
                    leg.rx_bad += 1
                    return
                if hdr.packet_type == RTCP_PT_SR:
                    rtcp_read_sender_info(data + blocks_at, &info)
                    leg.rx_lsr = <uint32_t>((info.ntp_timestamp >> 16) & 0xFFFFFFFF)
                    leg.rx_lsr_at_ms = arrival_ms
                    blocks_at += RTCP_SENDER_INFO_SIZE
                for i in range(hdr.count):
                    rtcp_read_report_block(data + blocks_at + i * RTCP_REPORT_BLOCK_SIZE, &block)
                    if block.ssrc != leg.ssrc:
                        continue
                    leg.rr_fraction_lost = block.fraction_lost
                    leg.rr_cumulative_lost = block.cumulative_lost
                    leg.rr_jitter = block.jitter
                    leg.rr_count += 1
                    if block.lsr:
                        arrival_mid = <uint32_t>((ntp_time(arrival_ms + self.epoch_offset_ms) >> 16) & 0xFFFFFFFF)
                        rtt_units = arrival_mid - block.lsr - block.dlsr
                        if rtt_units < 0x80000000u:   # a negative difference is clock noise, not a time
                            leg.rtt_ms = rtt_units / 65.536
            elif hdr.packet_type == RTCP_PT_BYE:
                self.emit(leg.slot, EV_RTCP_BYE, <int64_t>arrival_ms - leg.t0_ms, 0, 0, 0, 0)
            pos += hdr.size
        leg.rtcp_rx += 1

    # -- events and output buffers -----------------------------------------------------------------
    cdef void emit(self, int leg, int kind, int64_t t, int64_t a, int64_t b, int64_t c, int64_t d) noexcept:
        cdef EngineEvent* e
        if self.n_events == self.event_capacity:
            self.lost_events += 1
            return
        e = &self.events[self.n_events]
        self.n_events += 1
        e.leg = leg
        e.kind = kind
        e.time_ms = t
        e.a = a
        e.b = b
        e.c = c
        e.d = d

    def _drain_events(self):
        cdef int i
        cdef EngineEvent* e
        if self.n_events == 0:
            return []
        result = []
        for i in range(self.n_events):
            e = &self.events[i]
            result.append((e.leg, e.kind, e.time_ms, e.a, e.b, e.c, e.d))
        self.n_events = 0
        return result

    def _leg_now(self, Leg leg):
        return <int64_t>self.next_frame_ms - leg.t0_ms if self.started else 0

    cdef int out_append(self, int leg, const uint8_t* data, Py_ssize_t n) except -1:
        cdef Py_ssize_t cap
        cdef void* grown
        if self.out_len + n > self.out_cap:
            cap = max(2 * self.out_cap, self.out_len + n)
            grown = realloc(self.out_buf, cap)
            if grown == NULL:
                raise MemoryError("engine: cannot grow the output buffer")
            self.out_buf = <uint8_t*>grown
            self.out_cap = cap
        if self.n_out == self.out_items_cap:
            cap = 2 * self.out_items_cap
            grown = realloc(self.out_legs, cap * sizeof(int32_t))
            if grown == NULL:
                raise MemoryError("engine: cannot grow the output index")
            self.out_legs = <int32_t*>grown
            grown = realloc(self.out_offsets, (cap + 1) * sizeof(int64_t))
            if grown == NULL:
                raise MemoryError("engine: cannot grow the output index")
            self.out_offsets = <int64_t*>grown
            self.out_items_cap = cap
        memcpy(self.out_buf + self.out_len, data, n)
        self.out_len += n
        self.out_legs[self.n_out] = leg
        self.n_out += 1
        self.out_offsets[self.n_out] = self.out_len
        return 0


def _default_pt(str codec):
    """Static RTP payload types of RFC 3551; dynamic codecs default to 96."""
    return {"pcmu": 0, "pcma": 8, "g722": 9}.get(codec, 96)
