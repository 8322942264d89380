"""Our own SIP load generator: N calls to a loopback SIP port, each with PCMA or PCMU RTP of real speech.

    python bench/sip_load.py 127.0.0.1:5060 [--calls 10] [--rate 10] [--hold 5] [--loss 0.01]
                             [--jitter-ms 30] [--seed 1] [--callee bench] [--realtime] [--json]

It needs a server that answers (e.g. ``make serve`` with an application accepting each ``/call/sip``);
``bench/sip_calls.py --generator own --quick`` is the smoke run with everything set up.

Why not sipp: sipp plays pcap RTP through one raw socket per call, and Linux hands every raw UDP socket
a copy of each datagram to its address, so each packet the server sends costs N kernel clones (N² in
all): bench/sip_calls.py with sipp is practical to ~100 calls. Here every call's RTP leaves from ONE
plain UDP socket, so the cost to the server stays linear in N.

One process (bench/sip_calls.py and the tests start it with :class:`SipLoad`: this file as a subprocess),
one thread, one epoll loop (:func:`run`) around three parts:

- :class:`Calls`, the signalling, on our sans-I/O :class:`pbx.sip.ua.UserAgent` as the caller (UAC) over one
  UDP socket: it places the calls at ``--rate`` per second (INVITE with a ``--codec`` + telephone-event offer
  pointing at the shared RTP socket), reads each 200 OK's answer (:func:`pbx.sip.offer.accept_answer`; the
  ACK is the UA's), hangs the call up with BYE ``--hold`` seconds after it, and takes the server's BYE.
  The loop feeds it datagrams and the time, sends what the UA returns and wakes it at its timer.
- :class:`RtpSender`: every answered call's RTP from the shared socket (the server latches each leg to
  our address and the call's SSRC independently). A call's packets are precomputed offsets from its
  200 OK (:func:`packet_schedule`: 20 ms apart, ``--loss`` drops some and ``--jitter-ms`` delays each,
  triangular with that p95 as in bench/engine.py, seeded; packets may reorder). Every call's schedule is
  a row of one array and its header a template row; each wake-up (at most every ``SEND_TICK_S``) is one
  call to ``pbx.core.udp.send_rtp_due``, which finds the due packets of every call in C, writes their
  headers and sends them by sendmmsg, 64 at a time: no Python per packet. Payload: 20 ms A-law or mu-law
  (``--codec``) frames of espeak-ng speech looped with 0.5 s pauses (:func:`speech_frames`; the A-law
  also makes sip_calls.py's sipp pcap), each call from its own frame; headers with one SSRC per call and
  sequence number and timestamp stepping from random starts.
- :class:`RtpReceiver`: the server's RTP on the same socket, drained at each wake-up by
  ``pbx.core.udp.RecvBatch.count_sources`` (recvmmsg, a count per source port in C), a packet counted
  for the call whose media port (the answer's ``m=`` port, the server leg's source port) it came from.
  RTCP comes to the port after it, a socket that only counts.

What it costs (tried at N=1000 against a loopback sink, SCHED_FIFO, on the shared 2-core VM): ~25 % of a
core, nearly all of it the kernel's loopback send (~3 µs a packet, the receiving socket's delivery
included); the C loop and the Python around each wake-up ~40 µs. The first version (one ``sendto`` and one
``recvfrom_into`` per packet in Python, a heap of calls) cost ~13 µs per call per 20 ms.

Measures (:class:`LoadReport`, JSON on stdout with ``--json``): per call the setup latency (INVITE sent ->
200 OK received), RTP packets sent and received, and what went wrong (a status, or ``ended:<reason>``
when the server ended the call before its hold was over); the process's CPU (getrusage utime + stime)
over the run; the lag of every packet sent (send time - due time): the late-send ratio (more than
``LATE_MS`` = 5 ms late; above ``LATE_LIMIT`` = 0.01 % a bench run is VOID: the generator, not the
server, set the timing), p99 and max lag.

``--realtime`` (bench/sip_calls.py sets it when root) runs the process under SCHED_FIFO: it shares a CPU
with the application, and under the normal scheduler a send due while the application runs waits for
a time slice (on this 2-core VM: 0.006-0.01 % of packets late at N=100, 8.8 % at N=500). The report
says which scheduling the run had, how long the process waited for a CPU and how much CPU time the
hypervisor stole meanwhile (the stalls left under SCHED_FIFO).

Loopback only. The target must be a loopback IP literal (127.0.0.0/8 or ::1; a host name is refused, not
resolved): :class:`NotLoopback` otherwise, before any socket is opened. The sockets are bound to the
target's loopback address, every SIP datagram's address is checked again on its way out (one elsewhere
is dropped and counted in ``refused``), and a call whose answer puts its media outside loopback is hung
up without RTP.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import heapq
import ipaddress
import json
import math
import os
import resource
import select
import socket
import struct
import subprocess
import sys
import time
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pbx.core.udp import RecvBatch, send_rtp_due  # noqa: E402
from pbx.sip.errors import SipParseError  # noqa: E402
from pbx.sip.message import Request, Response, parse_message  # noqa: E402
from pbx.sip.offer import AudioCapabilities, accept_answer, build_offer  # noqa: E402
from pbx.sip.sdp import parse as parse_sdp  # noqa: E402
from pbx.sip.transaction import State  # noqa: E402
from pbx.sip.ua import Answered, Ended, Failed, Incoming, Referred, ReInvite, Session, UserAgent  # noqa: E402
from support.oracles.jitter_trace import TRIANGULAR_P95  # noqa: E402

Address = tuple[str, int]

SAMPLE_RATE = 8000
PACKET_SAMPLES = 160                # 20 ms of PCMA
FRAME_S = 0.020
PT_PCMA = 8
PT_PCMU = 0
CODECS = ("pcma", "pcmu")
PAUSE_S = 0.5                       # silence between repetitions of the speech
SPEECH_TEXT = (                     # bench/engine.py's speech, so both carry the same audio
    "Thank you for calling. Your order number is four seven two nine. "
    "Would you like to hear about delivery times, or speak to an agent?"
)
RTP_HEADER = struct.Struct("!BBHII")
LATE_MS = 5.0                       # a packet sent later than this after its due time is late
LATE_LIMIT = 1e-4                   # more than 0.01 % late packets: the run is VOID
LATE_KEPT = 100                     # late packets whose times the report keeps (when did it happen?)
LAG_BIN_S = 1e-4                    # the lag histogram's bins (0.1 ms), up to LAG_BINS of them
LAG_BINS = 20_000
RTP_BATCH = 4096                    # RTP datagrams counted per wake-up before due sends are looked at again
CALL_ACTIONS = 4                    # INVITEs and BYEs started per wake-up, likewise
SIP_BATCH = 4                       # SIP datagrams handled per wake-up, likewise (each takes ~0.3-1 ms)
RTP_DRAIN_S = 0.005                 # the server's RTP is read at every wake-up, and at least this often
SEND_TICK_S = 0.001                 # RTP wake-ups at most this often (epoll's granularity anyway): a packet
#                                     waits up to 1 ms, leaving 4 ms of the LATE_MS for a stall
SOCKET_BUFFER = 8 << 20
START_DELAY_S = 0.05                # the first INVITE, after the sockets and the speech are ready
SETTLE_S = 2.0                      # after the last call: how long a BYE may wait for its 200
GIVE_UP_S = 40.0                    # beyond ramp + hold: Timer B (32 s) has failed every unanswered call
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33     # Linux; not in the socket module
FIFO_PRIORITY = 10                  # --realtime: above every normal process, below the kernel's own threads


# -- loopback only ---------------------------------------------------------------------------------------------

class NotLoopback(ValueError):
    """An address outside loopback: the generator refuses to send there."""


def loopback_host(host: str) -> str:
    """``host`` (brackets dropped) when it is a loopback IP literal, else :class:`NotLoopback`. Host names
    are refused, not resolved: what a name resolves to is not ours to check once."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise NotLoopback(f"{host!r} is not an IP address: the SIP load generator sends only to loopback, "
                          "given as 127.0.0.0/8 or ::1") from None
    if not address.is_loopback:
        raise NotLoopback(f"{address} is not a loopback address: the SIP load generator sends only to "
                          "127.0.0.0/8 or ::1")
    return str(address)


def parse_target(text: str) -> Address:
    """``host:port`` or ``[v6]:port`` of a loopback SIP port; :class:`NotLoopback` or ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or (":" in host and not host.startswith("[")):
        raise ValueError(f"target {text!r} is not host:port (an IPv6 address goes in brackets: [::1]:5060)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {text!r} has no valid port")
    return loopback_host(host), int(port)


# -- what the calls carry ------------------------------------------------------------------------------------

def speech_alaw(samples: int) -> bytes:
    """A-law of espeak-ng speech with PAUSE_S pauses, looped to ``samples`` (8 kHz)."""
    from pbx.core.g711 import alaw_encode
    from support.audio import espeak_speech

    speech = espeak_speech(SAMPLE_RATE, SPEECH_TEXT)
    one = np.concatenate([speech, np.zeros(int(PAUSE_S * SAMPLE_RATE), dtype=np.int16)])
    return bytes(alaw_encode(np.resize(one, samples).astype(np.int16)))


def speech_ulaw(samples: int) -> bytes:
    """mu-law of the same speech as :func:`speech_alaw`."""
    from pbx.core.g711 import ulaw_encode
    from support.audio import espeak_speech

    speech = espeak_speech(SAMPLE_RATE, SPEECH_TEXT)
    one = np.concatenate([speech, np.zeros(int(PAUSE_S * SAMPLE_RATE), dtype=np.int16)])
    return bytes(ulaw_encode(np.resize(one, samples).astype(np.int16)))


def speech_frames(codec: str = "pcma") -> list[bytes]:
    """The loop of speech as 20 ms PCMA or PCMU payloads (the call's packet k carries frame (first + k) mod
    len)."""
    from support.audio import espeak_speech

    loop = len(espeak_speech(SAMPLE_RATE, SPEECH_TEXT)) + int(PAUSE_S * SAMPLE_RATE)
    count = -(-loop // PACKET_SAMPLES)
    audio = (speech_ulaw if codec == "pcmu" else speech_alaw)(count * PACKET_SAMPLES)
    return [audio[i * PACKET_SAMPLES:(i + 1) * PACKET_SAMPLES] for i in range(count)]


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One run: ``calls`` calls to ``host:port`` at ``rate`` per second, each held ``hold_s`` after its 200 OK."""

    host: str
    port: int
    calls: int = 10
    rate: float = 10.0
    hold_s: float = 5.0
    loss: float = 0.0                # fraction of our RTP packets not sent (seeded)
    jitter_ms: float = 0.0           # p95 of the extra delay of each packet (triangular, seeded)
    seed: int = 1
    callee: str = "bench"
    realtime: bool = False           # SCHED_FIFO when allowed (root): see raise_priority
    codec: str = "pcma"              # what we offer and send: pcma or pcmu

    def __post_init__(self) -> None:
        loopback_host(self.host)
        if self.calls < 1 or not self.rate > 0 or not self.hold_s > 0:
            raise ValueError("calls, rate and hold must be positive")
        if not 0.0 <= self.loss < 1.0 or self.jitter_ms < 0:
            raise ValueError("loss must be in [0, 1) and jitter non-negative")
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}, not {self.codec!r}")

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def longest_s(self) -> float:
        """How long a run may take at most: the ramp, the hold, Timer B and the BYEs' answers."""
        return self.calls / self.rate + self.hold_s + GIVE_UP_S + SETTLE_S

    def argv(self) -> list[str]:
        return [self.target, "--calls", str(self.calls), "--rate", repr(self.rate), "--hold", repr(self.hold_s),
                "--loss", repr(self.loss), "--jitter-ms", repr(self.jitter_ms), "--seed", str(self.seed),
                "--callee", self.callee, "--codec", self.codec, *(["--realtime"] if self.realtime else [])]


def packet_schedule(spec: LoadSpec, call: int) -> tuple[array[float], array[int]]:
    """Call ``call``'s packets: their due times after its 200 OK (s, ascending) and their numbers, after
    ``spec.loss`` and ``spec.jitter_ms`` (seeded per call: a rerun sends the same trace)."""
    count = max(1, round(spec.hold_s / FRAME_S))
    rng = np.random.default_rng([spec.seed, call])
    due = np.arange(count) * FRAME_S
    if spec.jitter_ms > 0:
        spread = spec.jitter_ms / 1000.0 / TRIANGULAR_P95
        due = due + spread * (rng.random(count) + rng.random(count)) / 2.0
    numbers = np.flatnonzero(rng.random(count) >= spec.loss)
    order = np.argsort(due[numbers], kind="stable")
    return array("d", due[numbers][order].tolist()), array("q", numbers[order].tolist())


# -- RTP ---------------------------------------------------------------------------------------------------

@dataclass(eq=False, slots=True)
class RtpStream:
    """One call's RTP: its schedule and header fields (made before the run), where it goes and from when
    (set at its 200 OK), and how far through its schedule it is."""

    call: int
    due: array[float]
    numbers: array[int]
    ssrc: int
    seq0: int
    ts0: int
    first_frame: int
    dest: Address = ("", 0)
    payload_type: int = PT_PCMA
    start: float = math.nan          # the 200 OK's arrival: the schedule counts from it
    pos: int = 0
    sent: int = 0
    stopped: bool = False


def prepare_stream(spec: LoadSpec, call: int, frames: int) -> RtpStream:
    """Call ``call``'s stream, before the run: no numpy or allocation of its schedule in the real-time loop."""
    due, numbers = packet_schedule(spec, call)
    rng = np.random.default_rng([spec.seed, call, 1])
    ssrc, seq0, ts0 = (int(v) for v in rng.integers([1, 0, 0], [1 << 32, 1 << 16, 1 << 32]))
    return RtpStream(call, due, numbers, ssrc, seq0, ts0, (call * 97) % frames)


class RtpSender:
    """Every call's RTP from one socket, each packet sent once it is due; measures how late.

    Every call's schedule is a row of one padded array (due times and frame numbers, inf past the end),
    its header a 12-byte template row; each wake-up hands them all to ``pbx.core.udp.send_rtp_due``, which
    walks the calls in C, writes the due packets' headers (payloads are not copied) and sends them with
    sendmmsg, 64 a call: no Python per packet or per call. A packet's lag is the wake-up time minus its
    due time (its batch leaves within microseconds)."""

    def __init__(self, streams: list[RtpStream], frames: list[bytes], fd: int, host: str) -> None:
        n = len(streams)
        width = max((len(s.due) for s in streams), default=0) + 1      # + one inf: "nothing more"
        self._due = np.full((n, width), np.inf)
        self._num = np.zeros((n, width), np.int64)
        for s in streams:
            self._due[s.call, :len(s.due)] = s.due
            self._num[s.call, :len(s.numbers)] = s.numbers
        self._header = np.zeros((n, 12), np.uint8)
        for s in streams:
            self._header[s.call] = np.frombuffer(RTP_HEADER.pack(0x80, 0, s.seq0, s.ts0, s.ssrc), np.uint8)
        self._start = np.full(n, np.inf)
        self._pos = np.zeros(n, np.int64)
        self._port = np.zeros(n, np.int32)
        self._first = np.array([s.first_frame for s in streams], np.int64)
        self._frames = np.frombuffer(b"".join(frames), np.uint8).reshape(len(frames), PACKET_SAMPLES)
        self._next_due = np.full(n, np.inf)      # when each call's next packet is due; inf: none
        self._fd, self._host = fd, host
        self.sent_per_call = np.zeros(n, np.int64)
        self.sent = self.late = self.errors = 0
        self.max_lag_s = 0.0
        self._hist = np.zeros(LAG_BINS, np.int64)
        self._late_at = np.zeros((LATE_KEPT, 2))
        self._late_kept = 0

    @property
    def late_at(self) -> list[tuple[float, float]]:
        """(due, lag) of the first LATE_KEPT late packets."""
        return [(float(d), float(g)) for d, g in self._late_at[:self._late_kept]]

    def start(self, stream: RtpStream) -> None:
        if not len(stream.due):
            return
        call = stream.call
        self._start[call] = stream.start
        self._port[call] = stream.dest[1]
        self._header[call, 1] = stream.payload_type
        self._next_due[call] = stream.start + stream.due[0]

    def stop(self, stream: RtpStream) -> None:
        """No more packets for this call (hung up, failed or ended by the server)."""
        self._next_due[stream.call] = np.inf
        stream.sent = int(self.sent_per_call[stream.call])

    def next_due(self) -> float | None:
        due = float(self._next_due.min()) if self._next_due.size else math.inf
        return due if due < math.inf else None

    def send_due(self) -> None:
        """Send every packet due by now (one call into the kernel for all calls)."""
        packets, late, dropped, max_lag, self._late_kept = send_rtp_due(
            self._fd, self._host, time.monotonic(), self._next_due, self._pos, self._due, self._num, self._start,
            self._header, self._port, self._frames, self._first, self.sent_per_call, self._hist, LAG_BIN_S,
            LATE_MS / 1000.0, self._late_at, self._late_kept)
        self.sent += packets
        self.late += late
        self.errors += dropped          # a full socket buffer: dropped, as the old sendto's were
        self.max_lag_s = max(self.max_lag_s, max_lag)

    def lag_percentile_ms(self, q: float) -> float:
        """The q-th percentile of the packets' lag (the upper edge of its 0.1 ms bin)."""
        total = int(self._hist.sum())
        if not total:
            return math.nan
        b = int(np.searchsorted(np.cumsum(self._hist), q / 100.0 * total))
        return (b + 1) * LAG_BIN_S * 1000.0


class RtpReceiver:
    """The server's RTP per call, by the port it came from (the server leg's, named in the answer).

    ``pbx.core.udp.RecvBatch.count_sources`` drains the socket with recvmmsg and counts each datagram by its
    source port in C; a call's count is its port's count from its 200 OK until the end of the run, or until
    a later call's answer names the same port (the server's port pool hands ports out again)."""

    def __init__(self, calls: int) -> None:
        self.received = [0] * calls
        self.counts = np.zeros(65536, np.int64)
        self.total = 0
        self._batch = RecvBatch()
        self._open: dict[int, tuple[int, int]] = {}     # call -> (port, its count at the 200 OK)
        self._by_port: dict[int, int] = {}              # port -> the call counted on it now

    def expect(self, port: int, call: int) -> None:
        previous = self._by_port.get(port)
        if previous is not None:
            self.close(previous)
        self._by_port[port] = call
        self._open[call] = (port, int(self.counts[port]))

    def close(self, call: int) -> None:
        opened = self._open.pop(call, None)
        if opened is not None:
            self.received[call] = int(self.counts[opened[0]]) - opened[1]

    def finish(self) -> None:
        for call in list(self._open):
            self.close(call)

    @property
    def stray(self) -> int:
        """Datagrams not counted for any call (from no call's port, or after its end)."""
        return self.total - sum(self.received)

    def drain(self, sock: socket.socket, limit: int = RTP_BATCH) -> bool:
        """Count what has come, about ``limit`` datagrams at most; True when more may be waiting."""
        n = self._batch.count_sources(sock.fileno(), self.counts, limit)
        self.total += n
        return bool(n >= limit)


# -- the calls' signalling -----------------------------------------------------------------------------------

@dataclass(eq=False, slots=True)
class CallRecord:
    index: int
    session: Session | None = None
    invite_at: float = math.nan      # time.monotonic() (CLOCK_MONOTONIC: comparable across processes)
    ok_at: float = math.nan
    failure: str = ""                # "" while fine; a status ("503"), "ended:<reason>", "bad answer: ..."
    over: bool = False               # nothing more will happen to the call (failed, ended, hung up)
    stream: RtpStream | None = None


class Calls:
    """The calls' signalling on the sans-I/O user agent: when each call is placed and hung up, and what the
    answers mean. In: the time and SIP messages. Out: the UA's datagrams and timer, new RTP streams."""

    def __init__(self, spec: LoadSpec, ua: UserAgent, rtp_port: int, streams: list[RtpStream], t0: float) -> None:
        self.spec, self.ua, self.streams, self.t0 = spec, ua, streams, t0
        caps = AudioCapabilities(codecs=(spec.codec,), dtmf=True, ptime=20)
        self.offer = build_offer(caps, spec.host, rtp_port, session_id=1, version=1)
        self.offer_bytes = self.offer.serialize()
        self.records = [CallRecord(i) for i in range(spec.calls)]
        self._by_session: dict[str, CallRecord] = {}
        self._hangups: list[tuple[float, int]] = []
        self.placed = 0
        self.finished = 0                           # records that are over
        self.started: list[RtpStream] = []          # answered since the shell last looked
        self.stopped: list[RtpStream] = []          # over since the shell last looked (after they started)
        self._ua_timer: float | None = None         # cached: UserAgent.get_timer() walks every session

    # inputs
    def handle_time(self, now: float) -> None:
        """Place and hang up what is due, CALL_ACTIONS at most (each builds a SIP message, ~0.5 ms): answers
        delayed by a busy server come in bunches, and so would their BYEs, stalling the RTP behind them.
        The rest stay due: :meth:`get_timer` wakes the loop again at once, after the due packets."""
        touched = False
        budget = CALL_ACTIONS
        while budget and self.placed < self.spec.calls and self.t0 + self.placed / self.spec.rate <= now:
            self._place(self.records[self.placed], now)
            touched = True
            budget -= 1
        while budget and self._hangups and self._hangups[0][0] <= now:
            self._hang_up(self.records[heapq.heappop(self._hangups)[1]], now)
            touched = True
            budget -= 1
        if self._ua_timer is not None and self._ua_timer <= now:
            self.ua.handle_timer(now)
            touched = True
        if touched:
            self._after_ua(now)

    def receive(self, message: Request | Response, addr: Address, now: float) -> None:
        self.ua.receive(message, addr, now)
        self._after_ua(now)

    def give_up(self, now: float) -> None:
        """The run is over: end whatever is still up or ringing."""
        for record in self.records:
            if not record.over:
                record.failure = record.failure or "unfinished"
                self._hang_up(record, now)
        self._after_ua(now)

    # outputs
    def datagrams(self) -> list[tuple[bytes, Address]]:
        return self.ua.datagrams_to_send()

    def get_timer(self) -> float | None:
        times = [t for t in (self._ua_timer, self._hangups[0][0] if self._hangups else None) if t is not None]
        if self.placed < self.spec.calls:
            times.append(self.t0 + self.placed / self.spec.rate)
        return min(times, default=None)

    def all_over(self) -> bool:
        return self.finished == self.spec.calls

    def requests_pending(self) -> int:
        """Our requests still waiting for a final response (the BYEs, at the end)."""
        waiting = (State.CALLING, State.TRYING, State.PROCEEDING)
        return sum(1 for t in self.ua.layer.client_transactions if t.state in waiting)

    # internals
    def _place(self, record: CallRecord, now: float) -> None:
        host = f"[{self.spec.host}]" if ":" in self.spec.host else self.spec.host
        target = f"sip:{self.spec.callee}@{host}:{self.spec.port}"
        record.session = self.ua.invite(target, f"sip:load-{record.index}@{host}:{self.ua.port}", target,
                                        self.offer_bytes, (self.spec.host, self.spec.port), now)
        record.invite_at = now
        self._by_session[record.session.id] = record
        self.placed += 1

    def _hang_up(self, record: CallRecord, now: float) -> None:
        if record.session is not None and not record.over:
            self.ua.hangup(record.session, now)
        self._over(record)

    def _over(self, record: CallRecord) -> None:
        self.finished += not record.over
        record.over = True
        if record.stream is not None and not record.stream.stopped:
            record.stream.stopped = True
            self.stopped.append(record.stream)

    def _after_ua(self, now: float) -> None:
        for event in self.ua.events():
            if isinstance(event, Answered | Failed | Ended):
                record = self._by_session.get(event.session.id)
                if record is not None:
                    self._on_call_event(record, event, now)
            elif isinstance(event, Incoming):
                self.ua.reject(event.session, 603, "Decline", now)      # we only call out
            elif isinstance(event, ReInvite):
                self.ua.answer_reinvite(event.session, None, now)       # 488: we keep the one stream
            elif isinstance(event, Referred):
                self.ua.respond_refer(event.session, event.request, False, now)
        self._ua_timer = self.ua.get_timer()

    def _on_call_event(self, record: CallRecord, event: Answered | Failed | Ended, now: float) -> None:
        if isinstance(event, Answered):
            if not event.reinvite:
                self._answered(record, event.sdp, now)
        elif isinstance(event, Failed):
            record.failure = str(event.status)
            self._over(record)
        elif not record.over:                       # Ended: the server hung up before the hold was over
            record.failure = f"ended:{event.reason}"
            self._over(record)

    def _answered(self, record: CallRecord, sdp: bytes, now: float) -> None:
        record.ok_at = now
        try:
            negotiated = accept_answer(self.offer, parse_sdp(sdp))
            dest = (loopback_host(negotiated.address), negotiated.port)
        except (SipParseError, NotLoopback) as exc:         # NegotiationError and SdpError are SipParseErrors
            record.failure = f"bad answer: {exc}"
            self._hang_up(record, now)
            return
        stream = record.stream = self.streams[record.index]
        stream.dest, stream.payload_type, stream.start = dest, negotiated.payload_type, now
        self.started.append(stream)
        heapq.heappush(self._hangups, (now + self.spec.hold_s, record.index))


# -- the report ------------------------------------------------------------------------------------------------

@dataclass
class LoadReport:
    calls: int
    target: str
    answered: int = 0
    failures: dict[str, int] = field(default_factory=dict)      # what went wrong, calls of each kind
    setup_ms: list[float] = field(default_factory=list)         # INVITE sent -> 200 OK received, per answered call
    invite_at: list[float] = field(default_factory=list)        # time.monotonic() of each INVITE
    ok_at: list[float] = field(default_factory=list)            # time.monotonic() of each 200 OK
    rtp_sent: list[int] = field(default_factory=list)           # per call, in call order
    rtp_received: list[int] = field(default_factory=list)
    packets_sent: int = 0
    late: int = 0                                               # sent more than LATE_MS after their due time
    late_at: list[tuple[float, float]] = field(default_factory=list)    # the first ones: (s after the first
    #                                                                     INVITE was due, lag ms)
    lag_p99_ms: float = math.nan
    lag_max_ms: float = math.nan
    cpu_s: float = 0.0                                          # utime + stime from the first INVITE to the end
    wall_s: float = 0.0
    wait_s: float = 0.0                                         # runnable but waiting for a CPU, the same time
    steal_s: float = 0.0                                        # taken by the hypervisor from our CPUs, the same
    scheduling: str = "normal"                                  # or SCHED_FIFO (--realtime)
    send_errors: int = 0
    rtp_drops: int | None = None                                # kernel drops on our RTP socket (IPv4 only)
    stray_rtp: int = 0                                          # datagrams from no call's media port
    rtcp_received: int = 0
    sip_sent: int = 0
    sip_retransmissions: int = 0                                # datagrams sent again byte for byte
    sip_received: int = 0
    sip_bad: int = 0
    refused: int = 0                                            # not sent: their address was not loopback
    requests_unanswered: int = 0                                # BYEs without a final response at the end

    @property
    def late_ratio(self) -> float:
        return self.late / self.packets_sent if self.packets_sent else 0.0

    @property
    def void(self) -> bool:
        """More than LATE_LIMIT of the packets late: the generator, not the server, set the timing."""
        return self.late_ratio > LATE_LIMIT

    @property
    def cpu_pct(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s else math.nan

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoadReport:
        return cls(**json.loads(text))

    def summary(self) -> str:
        setup = np.asarray(self.setup_ms) if self.setup_ms else np.asarray([math.nan])
        return "\n".join([
            f"sip_load: {self.calls} calls to {self.target}: answered {self.answered}, failures "
            f"{self.failures or 'none'}; setup p50 {np.percentile(setup, 50):.1f} p99 {np.percentile(setup, 99):.1f} "
            f"max {setup.max():.1f} ms",
            f"RTP: sent {sum(self.rtp_sent)} (median {np.median(self.rtp_sent or [0]):.0f} a call), received "
            f"{sum(self.rtp_received)} (median {np.median(self.rtp_received or [0]):.0f} a call), RTCP "
            f"{self.rtcp_received}, stray {self.stray_rtp}, kernel drops {self.rtp_drops}, send errors "
            f"{self.send_errors}",
            f"late sends (> {LATE_MS:g} ms): {self.late} of {self.packets_sent} ({100 * self.late_ratio:.4f} %), lag "
            f"p99 {self.lag_p99_ms:.1f} max {self.lag_max_ms:.1f} ms -> {'VOID' if self.void else 'timing OK'}",
            f"CPU {self.cpu_s:.2f} s over {self.wall_s:.1f} s ({self.cpu_pct:.1f} % of a core), waited for a CPU "
            f"{self.wait_s:.2f} s, stolen by the hypervisor {self.steal_s:.2f} s, scheduling {self.scheduling}; "
            f"SIP sent "
            f"{self.sip_sent} (retransmissions {self.sip_retransmissions}), received {self.sip_received}, bad "
            f"{self.sip_bad}; refused {self.refused}; requests unanswered {self.requests_unanswered}",
        ])


@dataclass
class SipCounts:
    """What the shell counts on the sockets (it goes into the report as it is)."""

    sip_sent: int = 0
    sip_retransmissions: int = 0
    sip_received: int = 0
    sip_bad: int = 0
    refused: int = 0
    rtcp_received: int = 0


def build_report(spec: LoadSpec, calls: Calls, sender: RtpSender, receiver: RtpReceiver,
                 counts: SipCounts) -> LoadReport:
    records = calls.records
    failures: dict[str, int] = {}
    for record in records:
        if record.failure:
            kind = record.failure.split(":")[0] if record.failure.startswith("bad answer") else record.failure
            failures[kind] = failures.get(kind, 0) + 1
    answered = [r for r in records if r.ok_at == r.ok_at]
    return LoadReport(
        calls=spec.calls, target=spec.target, answered=len(answered), failures=failures,
        setup_ms=[1000.0 * (r.ok_at - r.invite_at) for r in answered],
        invite_at=[r.invite_at for r in records if r.invite_at == r.invite_at],
        ok_at=[r.ok_at for r in answered],
        rtp_sent=[int(sender.sent_per_call[r.index]) for r in records],
        rtp_received=list(receiver.received), packets_sent=sender.sent, late=sender.late,
        late_at=[(round(due - calls.t0, 4), round(1000.0 * lag, 2)) for due, lag in sender.late_at],
        lag_p99_ms=sender.lag_percentile_ms(99), lag_max_ms=1000.0 * sender.max_lag_s,
        send_errors=sender.errors, stray_rtp=receiver.stray, requests_unanswered=calls.requests_pending(),
        **asdict(counts))


# -- the shell: sockets, time, one epoll loop --------------------------------------------------------------------

def big_buffers(sock: socket.socket) -> None:
    """8 MiB socket buffers: beyond rmem_max as root (the FORCE options), else as much as allowed."""
    for force, plain in ((SO_SNDBUFFORCE, socket.SO_SNDBUF), (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)


def udp_socket(host: str, port: int = 0) -> socket.socket:
    """A non-blocking UDP socket bound to loopback: the kernel itself will not route it elsewhere."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((loopback_host(host), port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    big_buffers(sock)
    return sock


def rtp_sockets(host: str) -> tuple[socket.socket, socket.socket]:
    """The shared RTP socket on an even port and the RTCP one after it (the server sends RTCP there)."""
    for _ in range(100):
        rtp = udp_socket(host)
        port = rtp.getsockname()[1]
        if port % 2 == 0 and port < 65535:
            try:
                return rtp, udp_socket(host, port + 1)
            except OSError:
                pass
        rtp.close()
    raise OSError(f"no free even/odd UDP port pair on {host}")


def raise_priority() -> str:
    """SCHED_FIFO (root only): a send due now must not wait for the processes that share our CPU (the
    application's). The loop sleeps in epoll whenever nothing is due, so it cannot starve them."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(FIFO_PRIORITY))
    except PermissionError:
        return "normal (SCHED_FIFO needs root)"
    return f"SCHED_FIFO {FIFO_PRIORITY}"


def runqueue_wait_s() -> float:
    """Time this thread was runnable but waited for a CPU (bench/engine.py's reading)."""
    from engine import runqueue_wait_s as wait
    return wait()


def steal_s() -> float:
    """CPU time the hypervisor took from the CPUs we may run on (/proc/stat ``steal``): a stall we cannot
    prevent, shown beside the late sends."""
    cpus = {f"cpu{n}" for n in os.sched_getaffinity(0)}
    with open("/proc/stat") as f:
        ticks = sum(int(line.split()[8]) for line in f if line.split()[0] in cpus)
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def drain_count(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return count
        count += 1


class Shell:
    """The I/O around :class:`Calls`, :class:`RtpSender` and :class:`RtpReceiver`: sockets, the clock, epoll."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.scheduling = raise_priority() if spec.realtime else "normal"
        self.sip = udp_socket(spec.host)
        self.rtp, self.rtcp = rtp_sockets(spec.host)
        frames = speech_frames(spec.codec)
        streams = [prepare_stream(spec, call, len(frames)) for call in range(spec.calls)]
        self.ua = UserAgent(spec.host, self.sip.getsockname()[1], user_agent="pypbx-sip-load")
        gc.collect()
        gc.freeze()             # what was made so far is never garbage: later collections skip it
        self.t0 = time.monotonic() + START_DELAY_S
        self.calls = Calls(spec, self.ua, self.rtp.getsockname()[1], streams, self.t0)
        self.sender = RtpSender(streams, frames, self.rtp.fileno(), spec.host)
        self.receiver = RtpReceiver(spec.calls)
        self.counts = SipCounts()
        self._sent_before: set[int] = set()         # hashes of SIP datagrams sent: a repeat is a retransmission

    def close(self) -> None:
        for sock in (self.sip, self.rtp, self.rtcp):
            sock.close()

    def run(self) -> LoadReport:
        epoll = select.epoll()
        for sock in (self.sip, self.rtcp):        # RTP is read at every wake-up instead (see _loop)
            epoll.register(sock.fileno(), select.EPOLLIN)
        cpu0, wall0, wait0, steal0 = cpu_s(), time.monotonic(), runqueue_wait_s(), steal_s()
        gc.disable()        # a full collection over the calls' SIP objects stalls the sends for ms; what
        try:                # cycles the run leaves are few and bounded by N, collected at the end
            self._loop(epoll)
        finally:
            gc.enable()
            epoll.close()
        self.receiver.finish()
        report = build_report(self.spec, self.calls, self.sender, self.receiver, self.counts)
        report.cpu_s, report.wall_s = cpu_s() - cpu0, time.monotonic() - wall0
        report.wait_s = runqueue_wait_s() - wait0
        report.steal_s = steal_s() - steal0
        report.scheduling = self.scheduling
        report.rtp_drops = self._rtp_drops()
        return report

    def _loop(self, epoll: select.epoll) -> None:
        """Wake at the next due packet or timer (epoll rounds up to 1 ms) or for SIP; each wake-up sends what
        is due and reads the server's RTP in one batch. RTP is not in epoll: the server sends each tick's
        packets one by one, and a wake-up per packet cost more than the packets."""
        fds = {self.sip.fileno(): self._read_sip, self.rtcp.fileno(): self._read_rtcp}
        give_up = self.t0 + self.spec.calls / self.spec.rate + self.spec.hold_s + GIVE_UP_S
        settle: float | None = None
        while True:
            now = time.monotonic()
            self.calls.handle_time(now)
            self._flush()
            self.sender.send_due()
            more = self.receiver.drain(self.rtp)
            if now >= give_up and settle is None:
                self.calls.give_up(now)
                self._flush()
            if self.calls.all_over():
                settle = settle or now + SETTLE_S
                if now >= settle or not self.calls.requests_pending():
                    return
            rtp_due = self.sender.next_due()
            wake = min(t for t in (self.calls.get_timer(), None if rtp_due is None else max(rtp_due, now + SEND_TICK_S),
                                   settle, give_up, now + RTP_DRAIN_S) if t is not None)
            for fd, _ in epoll.poll(0.0 if more else max(wake - time.monotonic(), 0.0)):
                fds[fd]()

    def _read_sip(self) -> None:
        for _ in range(SIP_BATCH):              # then due packets first: epoll reports the rest again
            try:
                data, addr = self.sip.recvfrom(65535)
            except BlockingIOError:
                return
            now = time.monotonic()
            self.counts.sip_received += 1
            try:
                self.calls.receive(parse_message(data), (addr[0], addr[1]), now)
            except SipParseError:
                self.counts.sip_bad += 1
            self._flush()
            self.sender.send_due()              # a message can take a millisecond: packets due meanwhile go

    def _read_rtcp(self) -> None:
        self.counts.rtcp_received += drain_count(self.rtcp)

    def _flush(self) -> None:
        """Send what the UA queued (to loopback only), and hand new streams to the sender and receiver."""
        for data, addr in self.calls.datagrams():
            try:
                loopback_host(addr[0])
            except NotLoopback:
                self.counts.refused += 1
                continue
            self.sip.sendto(data, addr)
            self.counts.sip_sent += 1
            key = hash(data)
            self.counts.sip_retransmissions += key in self._sent_before
            self._sent_before.add(key)
        for stream in self.calls.started:
            self.sender.start(stream)
            self.receiver.expect(stream.dest[1], stream.call)
        self.calls.started.clear()
        for stream in self.calls.stopped:
            self.sender.stop(stream)
        self.calls.stopped.clear()

    def _rtp_drops(self) -> int | None:
        if self.rtp.family != socket.AF_INET:
            return None
        from engine import udp_drops
        return udp_drops({self.rtp.getsockname()[1]})


def run(spec: LoadSpec) -> LoadReport:
    shell = Shell(spec)
    try:
        return shell.run()
    finally:
        shell.close()


# -- the process, for asyncio callers ------------------------------------------------------------------------------

class LoadError(RuntimeError):
    """The generator's process failed (not a failed call: those are in the report)."""


class SipLoad:
    """The generator in its own process: this file with ``--json`` as an asyncio subprocess.

    ``await SipLoad.start(spec)``, then :attr:`pid` (to sample its CPU) and ``await finish()`` for the
    :class:`LoadReport`. The child inherits the caller's CPU affinity and nice value.
    """

    def __init__(self, spec: LoadSpec, proc: asyncio.subprocess.Process) -> None:
        self.spec = spec
        self.proc = proc

    @classmethod
    async def start(cls, spec: LoadSpec) -> SipLoad:
        argv = [sys.executable, str(Path(__file__).resolve()), *spec.argv(), "--json"]
        proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                    stderr=subprocess.PIPE)
        return cls(spec, proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def finish(self) -> LoadReport:
        try:
            out, err = await asyncio.wait_for(self.proc.communicate(), self.spec.longest_s + 30.0)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise LoadError(f"sip_load ran over {self.spec.longest_s + 30.0:.0f} s and was killed") from None
        if self.proc.returncode != 0:
            raise LoadError(f"sip_load exited with {self.proc.returncode}:\n{err.decode(errors='replace')[-3000:]}")
        return LoadReport.from_json(out.decode().strip().splitlines()[-1])


async def run_load(spec: LoadSpec) -> LoadReport:
    """One run in its own process, start to finish."""
    return await (await SipLoad.start(spec)).finish()


# -- command line ----------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> tuple[LoadSpec, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", help="the server's SIP port, host:port on loopback ([::1]:port for IPv6)")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10.0, help="new calls per second")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds from each 200 OK to our BYE")
    parser.add_argument("--loss", type=float, default=0.0, help="fraction of our RTP packets dropped (seeded)")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="p95 of each packet's extra delay (seeded)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--callee", default="bench", help="the user part of the Request-URI")
    parser.add_argument("--codec", choices=CODECS, default="pcma", help="the codec offered and sent")
    parser.add_argument("--realtime", action="store_true",
                        help="run under SCHED_FIFO (root): its sends never wait behind other processes on its CPU")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line")
    args = parser.parse_args(argv)
    try:
        host, port = parse_target(args.target)
        spec = LoadSpec(host, port, args.calls, args.rate, args.hold, args.loss, args.jitter_ms, args.seed,
                        args.callee, args.realtime, args.codec)
    except ValueError as exc:           # NotLoopback too
        parser.error(str(exc))
    return spec, args.json


def main() -> int:
    spec, as_json = parse_args()
    report = run(spec)
    if as_json:
        print(report.to_json(), flush=True)
        return 0
    print(report.summary())
    return 0 if report.answered == spec.calls and not report.failures and not report.void else 1


if __name__ == "__main__":
    sys.exit(main())
