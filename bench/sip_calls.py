"""Concurrent SIP phone calls: a load generator against the call server, and what a call costs.

    python bench/sip_calls.py [--calls 100] [--rate 20] [--seconds 20] [--warmup 3] [--quick]
                              [--generator sipp|own] [--loss 0.01] [--jitter-ms 30]
                              [--no-pin] [--no-play] [--no-engine-udp] [--nice -10]

Three processes, as in production:
- the server: ``python -m pbx serve --config <toml>`` (bench/ws_support.py ``ServerProcess``) with SIP
  on a fixed free loopback port, an RTP port range and ``[webhook] url`` pointing at the application;
- the application (this file with ``--load``): the webhook receiver and one WebSocket per call. Each
  webhook POST (an inbound INVITE held pending) opens ``/call/sip?id=<dialogId>``; on ``incoming`` it
  sends ``accept`` with ``codec: "pcma"``, webrtc VAD and a recorder (a WAV per call in the server's
  data directory), and on ``answer`` and on every ``trackEnd`` a ``play`` of a 6 s speech prompt
  (``--no-play``: none), so the server streams 20 ms frames both ways for the whole call, as a voice
  agent answering sentence after sentence would (one long prompt would put its whole PCM in each
  call's playout queue and into RSS per call);
- the load generator (the caller), started by the application, one of:
  - ``--generator sipp`` (default): ``sipp -sf <scenario> -r <rate> -l <N> -m <N>``: INVITE with a PCMA
    offer, ACK, then pcap RTP for the whole call (one ``play_pcap_audio`` of a pcap this bench writes:
    Ethernet/IPv4/UDP/RTP, PCMA, 20 ms apart, espeak-ng speech with 0.5 s pauses looped to the call's
    length, since sipp's own g711a.pcap lasts 7 s), a pause, BYE. Practical to ~100 calls (Caveats).
  - ``--generator own``: bench/sip_load.py (``SipLoad``), our sans-I/O user agent as the caller over
    one SIP socket, every call's RTP from one shared socket on a precomputed real-time schedule (the
    same speech, 20 ms PCMA; ``--loss`` and ``--jitter-ms`` impair it), BYE after the same hold; under
    SCHED_FIFO when run as root (it shares its CPU with the application). Any N the machine holds.

Before the load, one priming call (the same path, 1 s) loads what the first call loads (codecs, VAD,
recorder, the SIP transport's modules): the server's RSS after it is the baseline of RSS per call.

The calls start at ``--rate`` per second and all hold long enough that all N are up at once for
``--warmup`` + ``--seconds``: the window starts ``--warmup`` after the N-th ``answer`` and ends
``--seconds`` later (or at the first hangup, if one comes first: reported as a cut window).

Measures.
- setup rate: 200 OKs per second the caller received, (n - 1) / (last - first), from sipp's message log
  (``-trace_shortmsg``, µs timestamps) or the generator's report; the target is ``--rate`` (the INVITEs'
  own rate is in the details).
- setup latency: per call, the caller's first INVITE sent -> 200 OK received (the same sources; sipp's
  ``rtd`` counts in 4 ms steps on this host), p50 / p95 / p99 / max: it holds the webhook POST, the
  WebSocket connect, ``incoming`` -> ``accept`` and the 200 OK. Beside it, the application's share:
  webhook received -> ``answer`` event.
- calls up with audio: the most calls answered and not hung up at once, and the calls whose
  ``hangup.extra.rtp.packetsReceived`` is at least 90 % of 50 packets per second of the call's hold
  (the RTP really reached the engine leg for the whole call); VAD ``speaking`` events per call.
- server % core per call: utime + stime of every server thread (``/proc/<pid>/stat``) over the window
  / window wall time / N x 100; also µs per call per 20 ms frame, the engine bench's unit.
- RSS per call: (server VmRSS at the window's end - VmRSS after the priming call) / N.
- media frames skipped: ``/health`` ``media_skipped_frames`` over the window, and over the run.
- the caller's failed calls (sipp's ``-trace_stat`` ``FailedCall(C)``; the generator's calls not answered
  200, or ended by the server before their hold was over) and its exit status.
- CPU wait of the server (``/proc/<pid>/task/*/schedstat``) and the load generators' CPU over the window
  (application, caller): on a shared host other processes show up there.
- ``--generator own`` only: its late-send ratio, the share of its RTP packets sent more than 5 ms after
  their due time (with p99 and max lag), and the RTP it received per call. Above 0.01 % the run is
  VOID (printed in the table and at the end; exit status 1): the generator, not the server, set the
  timing the server saw.

Baseline, same run, same N: the media engine alone (bench/engine.py's ``run_engine_memory``: in-memory
legs, webrtc VAD, the full pipeline with recording and playout; PCMU with 1 % loss and 30 ms jitter),
and with ``--engine-udp`` (default on, off in ``--quick``) the engine reading one loopback UDP socket
per leg (``run_engine_udp``). SIP server / engine = what SIP signalling state, the control plane (call
core, WebSocket events, RTCP), and real sockets add per call.

By default (``--pin``) the server and the engine runs are pinned to the first CPUs and the
application and the caller to the last, as in bench/ws_calls.py.

Caveats. sipp (3.6.1 here) plays a pcap through one raw socket per play, bound to its media address,
so it must run as root; Linux hands every raw UDP socket a copy of each UDP datagram to its address,
which sipp never reads, so each RTP packet the server sends to sipp is cloned and dropped N times in
the kernel, in the sender's context. Measured on this VM: 100 such sockets add 0.95 µs to a 4.3 µs
loopback ``sendto`` (~10 ns a copy): at N=100, ~0.5 % of a core in the server's figure, 0.005 % per
call, but it grows as N squared (``--generator own`` sends from one plain socket: no clones). The
engine baseline's traffic is PCMU with loss and jitter, the SIP calls' PCMA without (unless
``--loss``/``--jitter-ms``): both codecs are table lookups of the same cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from sip_load import (
    LATE_LIMIT,
    LATE_MS,
    PACKET_SAMPLES,
    PT_PCMA,
    LoadError,
    LoadReport,
    LoadSpec,
    SipLoad,
    speech_alaw,
)
from ws_support import (
    PROMPT_NAME,
    ROOT,
    ServerProcess,
    WsClient,
    cpu_wait_s,
    fmt,
    http_get_json,
    load_average,
    percentile,
    placement,
    process_cpu_s,
)

PCAP_PORT = 6000                    # sipp rewrites the ports to its media port -> ours
SETUP_MARGIN_S = 3.0                # hold beyond the ramp + warm-up + window: setup latency, the tail
PRIME_HOLD_S = 1.0
AUDIO_SHARE = 0.9                   # a call "had audio" when it received this share of its packets
RECORDINGS = "sipbench"
PROMPT_S = 6.0                      # the prompt each call plays, again on each trackEnd (a TTS sentence)


# -- pcap and scenario -----------------------------------------------------------------------------

def ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_pcap(path: Path, seconds: float) -> int:
    """A pcap of PCMA RTP, one packet per 20 ms for ``seconds``: espeak-ng speech with pauses, looped.

    Ethernet/IPv4/UDP/RTP on 127.0.0.1:6000 (sipp replaces the addresses and ports); the UDP checksum
    is 0 (sipp computes it). Returns the number of packets.
    """
    count = int(np.ceil(seconds / 0.020))
    alaw = speech_alaw(count * PACKET_SAMPLES)          # the same speech as bench/sip_load.py's calls
    address = socket.inet_aton("127.0.0.1")
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))    # LINKTYPE_ETHERNET
    ssrc = 0x5EC0B007
    for k in range(count):
        rtp = struct.pack("!BBHII", 0x80, (0x80 if k == 0 else 0) | PT_PCMA, k & 0xFFFF,
                          (k * PACKET_SAMPLES) & 0xFFFFFFFF, ssrc)
        rtp += alaw[k * PACKET_SAMPLES:(k + 1) * PACKET_SAMPLES]
        udp = struct.pack("!HHHH", PCAP_PORT, PCAP_PORT, 8 + len(rtp), 0) + rtp
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), k & 0xFFFF, 0x4000, 64, 17, 0,
                                   address, address))
        ip[10:12] = struct.pack("!H", ip_checksum(bytes(ip)))
        frame = b"\x00" * 12 + b"\x08\x00" + bytes(ip) + udp
        usec = k * 20_000
        out += struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))
    return count


SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- pypbx bench/sip_calls.py: INVITE with a PCMA offer, pcap RTP for the whole call, BYE. -->
<scenario name="pypbx bench caller">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench" <sip:bench@[local_ip]:[local_port]>;tag=[pid]bench[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:bench@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=bench 1 1 IN IP[local_ip_type] [local_ip]
      s=pypbx bench
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench" <sip:bench@[local_ip]:[local_port]>;tag=[pid]bench[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause milliseconds="{hold_ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench" <sip:bench@[local_ip]:[local_port]>;tag=[pid]bench[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


def write_scenario(path: Path, pcap: Path, hold_s: float) -> None:
    path.write_text(SCENARIO.replace("{pcap}", str(pcap)).replace("{hold_ms}", str(int(hold_s * 1000))))


def write_sipp_files(work: Path, hold_s: float) -> int:
    """The pcap and the two scenarios (the load's, the priming call's); returns the pcap's packets."""
    packets = write_pcap(work / "speech.pcap", hold_s + 1.0)
    write_scenario(work / "bench.xml", work / "speech.pcap", hold_s)
    write_scenario(work / "prime.xml", work / "speech.pcap", PRIME_HOLD_S)
    return packets


# -- the application and sipp (run in their own process: --load) -----------------------------------

@dataclass
class Spec:
    calls: int
    rate: float
    seconds: float
    warmup: float
    hold_s: float
    sip_port: int
    http_port: int
    hook_port: int
    server_pid: int
    workdir: str
    play: bool
    generator: str = "sipp"             # sipp | own (bench/sip_load.py)
    loss: float = 0.0                   # own: the generator's RTP loss and jitter
    jitter_ms: float = 0.0
    codec: str = "pcma"                 # own: what the generator offers and the application accepts
    vad: str = "webrtc"                 # the accept's VAD type (bench/load.py: webrtc or silero)


@dataclass
class SipCall:
    index: int                          # -1: the priming call
    hook_at: float
    client: WsClient | None = None
    answer_at: float | None = None
    hangup_at: float | None = None
    hangup_reason: str = ""
    rtp: dict[str, Any] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a multi-worker server: the supervisor and its workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo += [int(c) for c in f.read().split()]
    return out


def tree_cpu_s(pid: int) -> float:
    """utime + stime of every thread of ``pid`` and of its descendants (those alive now)."""
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += process_cpu_s(p)
    return total


def tree_rss_kib(pid: int) -> int:
    """VmRSS summed over ``pid`` and its descendants."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            total += rss_kib(p)
    return total


class App:
    """The webhook receiver and one WebSocket per call; samples the server over the window."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.loop = asyncio.get_running_loop()
        self.calls: list[SipCall] = []
        self.prime: SipCall | None = None
        self.priming = True
        self.live = 0
        self.max_live = 0
        self.window_live_min: int | None = None
        self.samples: dict[str, dict[str, Any]] = {}
        self.window_state = "waiting"          # waiting -> warmup -> open -> closed
        self.window_cut = False
        self.caller_pid = 0                    # the load generator's process, sampled over the window
        self.all_done: asyncio.Future[None] = self.loop.create_future()
        self.prime_done: asyncio.Future[None] = self.loop.create_future()
        self.hook_errors = 0
        self._handles: list[asyncio.TimerHandle] = []

    # webhook receiver: one POST per inbound INVITE
    async def webhook(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            hook = json.loads(await reader.readexactly(length))
            now = time.monotonic()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (OSError, ValueError, asyncio.IncompleteReadError):
            self.hook_errors += 1
            return
        finally:
            writer.close()
        if self.priming:
            call = self.prime = SipCall(-1, now)
        else:
            call = SipCall(len(self.calls), now)
            self.calls.append(call)
        await self.connect(call, str(hook["dialogId"]))

    async def connect(self, call: SipCall, dialog_id: str) -> None:
        port = self.spec.http_port
        url = f"ws://127.0.0.1:{port}/call/sip?id={quote(dialog_id)}&pingInterval=0"

        def factory() -> WsClient:
            client = call.client = WsClient(url)
            client.on_event = lambda t, event: self.on_event(call, t, event)
            return client
        try:
            _, client = await self.loop.create_connection(factory, "127.0.0.1", port)
            await asyncio.wait_for(client.opened, 30.0)
        except (OSError, ConnectionError, TimeoutError) as exc:
            call.errors.append(f"connect: {exc}")

    def on_event(self, call: SipCall, arrival: float, event: dict[str, Any]) -> None:
        name = str(event.get("event"))
        call.events[name] = call.events.get(name, 0) + 1
        client = call.client
        if name == "incoming" and client is not None:
            recorder = "prime.wav" if call.index < 0 else f"call-{call.index}.wav"
            client.command({"command": "accept", "option": {
                "codec": self.spec.codec, "vad": {"type": self.spec.vad},
                "recorder": {"recorderFile": f"{RECORDINGS}/{recorder}"}}})
        elif name in ("answer", "trackEnd") and self.spec.play and client is not None \
                and call.hangup_at is None:
            client.command({"command": "play", "url": PROMPT_NAME})     # the next "TTS" sentence
        if name == "answer":
            call.answer_at = arrival
            if call.index >= 0:
                self.live += 1
                self.max_live = max(self.max_live, self.live)
                if self.live == self.spec.calls and self.window_state == "waiting":
                    self.window_state = "warmup"
                    start = self.loop.time() + self.spec.warmup
                    self._handles = [self.loop.call_at(start, self.open_window),
                                     self.loop.call_at(start + self.spec.seconds, self.close_window)]
        elif name == "error":
            call.errors.append(f"{event.get('sender')}: {event.get('error')}")
        elif name == "hangup":
            call.hangup_at = arrival
            call.hangup_reason = str(event.get("reason"))
            extra = event.get("extra") or {}
            call.rtp = dict(extra.get("rtp") or {}) if isinstance(extra, dict) else {}
            if client is not None:
                client.close()
            if call.index < 0:
                if not self.prime_done.done():
                    self.prime_done.set_result(None)
                return
            if call.answer_at is not None:
                self.live -= 1
            if self.window_state == "open":
                self.window_cut = True
                self.close_window()
            elif self.window_state == "warmup":
                for handle in self._handles:
                    handle.cancel()
                self.window_state = "waiting"      # not all N up any more: no window yet
            if sum(1 for c in self.calls if c.hangup_at is not None) == self.spec.calls \
                    and not self.all_done.done():
                self.all_done.set_result(None)

    # the window
    def sample(self, name: str) -> None:
        pid = self.spec.server_pid
        s: dict[str, Any] = {"wall": time.monotonic(), "server": tree_cpu_s(pid),
                             "server_wait": sum(cpu_wait_s(p) for p in process_tree(pid)),
                             "rss_kib": tree_rss_kib(pid),
                             "app": process_cpu_s(os.getpid()), "live": self.live}
        with contextlib.suppress(OSError, ValueError, IndexError):
            s["caller"] = process_cpu_s(self.caller_pid) if self.caller_pid else 0.0
        self.samples[name] = s
        task = self.loop.create_task(http_get_json(self.spec.http_port, "/health"))
        task.add_done_callback(lambda t: s.__setitem__("health", t.result()) if t.exception() is None
                               else s.__setitem__("health_error", repr(t.exception())))

    def open_window(self) -> None:
        self.window_state = "open"
        self.window_live_min = self.live
        self.sample("start")

    def close_window(self) -> None:
        if self.window_state != "open":
            return
        for handle in self._handles:
            handle.cancel()
        self.window_state = "closed"
        self.sample("end")


def sipp_argv(spec: Spec, scenario: Path, calls: int, rate: float, timeout_s: float) -> list[str]:
    return ["sipp", f"127.0.0.1:{spec.sip_port}", "-sf", str(scenario), "-r", f"{rate:g}", "-rp", "1000",
            "-l", str(calls), "-m", str(calls), "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", "0", "-mp", "0",
            "-s", "bench", "-nostdin", "-timeout", f"{int(timeout_s)}s",
            "-trace_stat", "-stf", "stat.csv", "-fd", "1",
            "-trace_err", "-error_file", "errors.log", "-trace_screen", "-screen_file", "screen.txt",
            "-trace_shortmsg", "-shortmessage_file", "messages.csv"]


async def run_sipp(argv: list[str], cwd: Path, on_start: Callable[[int], None]) -> int:
    proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    on_start(proc.pid)
    return await proc.wait()


# -- the load generators: the same two phases (one priming call, then N), the same figures ----------------------
#
# ``place`` returns the caller's figures under one set of keys: caller_exit, caller_ok, caller_failed,
# caller_retransmissions, failed_kinds, setup_ms (INVITE sent -> 200 OK received, per call), offered_rate
# and setup_rate (INVITEs and 200 OKs per second), caller_errors; bench/sip_load.py adds its RTP and timing.

class SippCaller:
    """sipp with the pcap scenario (``-r rate -l N -m N``); its figures from its trace files."""

    name = "sipp"
    rtp = "sipp pcap"

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.work = Path(spec.workdir)

    async def place(self, phase: str, calls: int, rate: float, on_start: Callable[[int], None]) -> dict[str, Any]:
        folder = self.work / phase
        folder.mkdir()
        scenario = self.work / ("prime.xml" if phase == "prime" else "bench.xml")
        timeout_s = 60 if phase == "prime" else calls / rate + self.spec.hold_s + 60
        code = await run_sipp(sipp_argv(self.spec, scenario, calls, rate, timeout_s), folder, on_start)
        return {"caller_exit": code, "caller_errors": tail(folder / "errors.log"), **read_sipp(folder)}


class OwnCaller:
    """bench/sip_load.py: one SIP and one RTP socket for every call, RTP sent from a precomputed schedule."""

    name = "generator"
    rtp = "bench/sip_load.py"

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    async def place(self, phase: str, calls: int, rate: float, on_start: Callable[[int], None]) -> dict[str, Any]:
        hold_s = PRIME_HOLD_S if phase == "prime" else self.spec.hold_s
        # SCHED_FIFO when root: its sends must not wait behind the application, which shares its CPU
        load = await SipLoad.start(LoadSpec("127.0.0.1", self.spec.sip_port, calls, rate, hold_s,
                                            self.spec.loss, self.spec.jitter_ms, realtime=os.geteuid() == 0,
                                            codec=self.spec.codec))
        on_start(load.pid)
        try:
            report = await load.finish()
        except LoadError as exc:
            return {"caller_exit": 1, "caller_errors": str(exc), "setup_ms": [], "offered_rate": float("nan"),
                    "setup_rate": float("nan")}
        return generator_figures(report, hold_s)


def generator_figures(report: LoadReport, hold_s: float) -> dict[str, Any]:
    failed = sum(report.failures.values())
    expected = hold_s * 50
    return {
        "caller_exit": 0, "caller_ok": report.calls - failed, "caller_failed": failed,
        "caller_retransmissions": report.sip_retransmissions, "failed_kinds": report.failures,
        "setup_ms": report.setup_ms, "offered_rate": span_rate(sorted(report.invite_at)),
        "setup_rate": span_rate(sorted(report.ok_at)), "caller_errors": "",
        "late": report.late, "late_ratio": report.late_ratio, "void": report.void, "packets_sent": report.packets_sent,
        "lag_p99_ms": report.lag_p99_ms, "lag_max_ms": report.lag_max_ms, "gen_cpu_pct": report.cpu_pct,
        "gen_tx_median": float(np.median(report.rtp_sent)), "gen_rx_min": min(report.rtp_received),
        "gen_rx_median": float(np.median(report.rtp_received)),
        "gen_with_audio": sum(1 for n in report.rtp_received if n >= AUDIO_SHARE * expected),
        "gen_rx_total": sum(report.rtp_received), "gen_rx_expected": expected * report.answered,
        "gen_drops": report.rtp_drops, "gen_send_errors": report.send_errors, "gen_stray": report.stray_rtp,
        "gen_late_at": report.late_at, "gen_wait_pct": 100.0 * report.wait_s / report.wall_s,
        "gen_scheduling": report.scheduling, "gen_steal_ms": 1000.0 * report.steal_s,
    }


Caller = SippCaller | OwnCaller


async def load(spec: Spec) -> dict[str, Any]:
    app = App(spec)
    hooks = await asyncio.start_server(app.webhook, "127.0.0.1", spec.hook_port)
    caller: Caller = SippCaller(spec) if spec.generator == "sipp" else OwnCaller(spec)
    try:
        # the priming call
        prime = await caller.place("prime", 1, 1, lambda pid: None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(app.prime_done, 10.0)
        if prime["caller_exit"] != 0 or app.prime is None or app.prime.answer_at is None:
            raise RuntimeError(f"the priming call failed: {caller.name} exit {prime['caller_exit']}; call {app.prime}; "
                               f"{caller.name} errors: {prime['caller_errors']}")
        await asyncio.sleep(0.5)
        rss_idle = tree_rss_kib(spec.server_pid)
        health0 = await http_get_json(spec.http_port, "/health")
        app.priming = False

        # the load
        started = time.monotonic()
        figures = await caller.place("main", spec.calls, spec.rate, lambda pid: setattr(app, "caller_pid", pid))
        figures.update(caller=caller.name, caller_s=time.monotonic() - started)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(app.all_done, 10.0)
        for call in app.calls:
            if call.client is not None:
                call.client.close()
        await asyncio.sleep(0.3)
        health1 = await http_get_json(spec.http_port, "/health")
        return summarise(app, spec, figures, rss_idle, health0, health1)
    finally:
        hooks.close()


def tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(none)"


def summarise(app: App, spec: Spec, figures: dict[str, Any], rss_idle: int, health0: dict[str, Any],
              health1: dict[str, Any]) -> dict[str, Any]:
    calls = app.calls
    answered = [c for c in calls if c.answer_at is not None]
    expected_packets = spec.hold_s * 50
    quiet = [c for c in calls if c.rtp.get("packetsReceived", 0) < AUDIO_SHARE * expected_packets]
    with_audio = len(calls) - len(quiet)
    r: dict[str, Any] = {
        "hooks": len(calls), "answered": len(answered),
        "hung_up": sum(1 for c in calls if c.hangup_at is not None),
        "hangup_reasons": sorted({c.hangup_reason for c in calls if c.hangup_at is not None}),
        "max_live": app.max_live, "window_live_min": app.window_live_min, "window_cut": app.window_cut,
        "with_audio": with_audio, "expected_packets": expected_packets,
        # the calls short of audio at the server, to find out why: index, RTP statistics, hangup reason
        "without_audio": [(c.index, c.rtp, c.hangup_reason, c.errors[:3]) for c in quiet[:5]],
        "rx_packets_min": min((c.rtp.get("packetsReceived", 0) for c in calls), default=0),
        "rx_packets_median": float(np.median([c.rtp.get("packetsReceived", 0) for c in calls])) if calls else 0.0,
        "rx_lost": sum(int(c.rtp.get("packetsLost", 0)) for c in calls),
        "rx_packets_total": sum(int(c.rtp.get("packetsReceived", 0)) for c in calls),
        "tx_packets_median": float(np.median([c.rtp.get("packetsSent", 0) for c in calls])) if calls else 0.0,
        "hook_to_answer_ms": [1000 * (c.answer_at - c.hook_at) for c in answered if c.answer_at is not None],
        "speaking_per_call": float(np.mean([c.events.get("speaking", 0) for c in calls])) if calls else 0.0,
        "tracks_per_call": float(np.mean([c.events.get("trackEnd", 0) for c in calls])) if calls else 0.0,
        "errors": sorted({e for c in calls for e in c.errors})[:5],
        "error_count": sum(len(c.errors) for c in calls), "hook_errors": app.hook_errors,
        "rss_idle_kib": rss_idle, "skipped_total": health1["media_skipped_frames"] - health0["media_skipped_frames"],
        **figures,
    }
    answers = sorted(c.answer_at for c in answered if c.answer_at is not None)
    r["answer_rate"] = span_rate(answers)
    start, end = app.samples.get("start"), app.samples.get("end")
    if start is not None and end is not None:
        wall = end["wall"] - start["wall"]
        r.update({
            "wall_s": wall, "server_cpu_s": end["server"] - start["server"],
            "server_wait_s": end["server_wait"] - start["server_wait"], "app_cpu_s": end["app"] - start["app"],
            "caller_cpu_s": end.get("caller", 0.0) - start.get("caller", 0.0), "rss_kib": end["rss_kib"],
        })
        if "health" in start and "health" in end:
            r["skipped_window"] = end["health"]["media_skipped_frames"] - start["health"]["media_skipped_frames"]
            r["tick_s"] = end["health"]["media_tick_cpu_seconds"] - start["health"]["media_tick_cpu_seconds"]
        r["health_errors"] = [s["health_error"] for s in (start, end) if "health_error" in s]
    return r


def read_sipp(folder: Path) -> dict[str, Any]:
    """sipp's counters (the last row of ``-trace_stat``) and, per call, the time from its first INVITE sent
    to the 200 OK received (``-trace_shortmsg``: µs timestamps; sipp's own ``rtd`` moves in 4 ms steps)."""
    out: dict[str, Any] = {}
    stats = folder / "stat.csv"
    if stats.exists():
        rows = list(csv.reader(stats.read_text(errors="replace").splitlines(), delimiter=";"))
        if len(rows) >= 2:
            row = dict(zip(rows[0], rows[-1], strict=False))
            for key, name in (("SuccessfulCall(C)", "caller_ok"), ("FailedCall(C)", "caller_failed"),
                              ("OutgoingCall(C)", "caller_outgoing"), ("Retransmissions(C)", "caller_retransmissions")):
                with contextlib.suppress(KeyError, ValueError):
                    out[name] = int(row[key])
            out["failed_kinds"] = {key[6:-3]: int(value) for key, value in row.items()
                                   if key.startswith("Failed") and key.endswith("(C)") and value.isdigit()
                                   and int(value) and key != "FailedCall(C)"}
    invites: dict[str, float] = {}
    oks: dict[str, float] = {}
    messages = folder / "messages.csv"
    lines = messages.read_text(errors="replace").splitlines() if messages.exists() else []
    for line in lines:
        parts = line.split("\t")
        if len(parts) < 7 or parts[5] != "CSeq:1 INVITE":
            continue
        with contextlib.suppress(ValueError):
            at, call_id = float(parts[2]), parts[4]
            if parts[3] == "S" and parts[6].startswith("INVITE"):
                invites.setdefault(call_id, at)
            elif parts[3] == "R" and parts[6].startswith("SIP/2.0 200"):
                oks.setdefault(call_id, at)
    out["setup_ms"] = [1000 * (oks[c] - invites[c]) for c in oks if c in invites]
    out["offered_rate"] = span_rate(sorted(invites.values()))
    out["setup_rate"] = span_rate(sorted(oks.values()))
    return out


def span_rate(times: list[float]) -> float:
    """Events per second from the first to the last of ``times``."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else float("nan")


# -- the engine alone (run in its own process: --engine) --------------------------------------------

def engine_run(mode: str, legs: int, seconds: float, warmup: float, pin: bool) -> dict[str, Any]:
    import engine as eng_bench
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "udp" and pin and len(cpus) > 1:
        eng_bench.Generator.cpu = cpus[-1]
        os.sched_setaffinity(0, set(cpus[:-1]))
    plan = eng_bench.Plan(seconds, warmup, 11, 1)
    traffic = eng_bench.make_traffic(legs, plan.traffic_seconds, plan.seed) if mode == "memory" else None
    run = eng_bench.run_one("engine", legs, "webrtc", plan, eng_bench.make_prompt(), traffic)
    return {"us_per_leg_tick": run.us_per_leg_tick, "pct_per_leg": run.core_pct_per_leg, "cpu_pct": run.cpu_pct,
            "p99_ms": run.p99, "real_time": run.real_time, "skipped": run.skipped, "failures": run.failures()}


# -- orchestration -------------------------------------------------------------------------------

def free_sip_port() -> int:
    """A loopback port free on both UDP and TCP (the server listens on both)."""
    for _ in range(50):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no loopback port free on both UDP and TCP")


def pin_sets() -> tuple[set[int], set[int]]:
    """Server on the first CPU(s), application and sipp on the last one."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return set(cpus[:-1]), {cpus[-1]}


def run_sip(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    calls = args.calls
    ramp = calls / args.rate
    hold_s = ramp + args.warmup + args.seconds + SETUP_MARGIN_S
    pcap_packets = write_sipp_files(work, hold_s) if args.generator == "sipp" else None
    sip_port, hook_port = free_sip_port(), free_sip_port()
    low = random.randrange(10000, 18000, 2)          # below the ephemeral range; taken pairs are skipped
    # bench/load.py passes workers, codec, vad, capacity_load, silero_model, silero_rate
    workers = getattr(args, "workers", 1)
    capacity = getattr(args, "capacity_load", None)
    silero_model = getattr(args, "silero_model", None)
    silero_rate = getattr(args, "silero_rate", None)
    extra = ((f"capacity_load = {capacity}\n" if capacity is not None else "")
             + (f'silero_model = "{silero_model}"\n' if silero_model is not None else "")
             + (f'silero_rate = "{silero_rate}"\n' if silero_rate is not None else "")
             + f'[sip]\naddr = "127.0.0.1:{sip_port}"\nrtp_ports = [{low}, {low + 4 * calls * workers + 200}]\n'
             f'[webhook]\nurl = "http://127.0.0.1:{hook_port}/hook"\ndecision_timeout_secs = 30\n')
    server_cpus, load_cpus = pin_sets() if args.pin else (None, None)
    server = ServerProcess("pbx", PROMPT_S, cpus=server_cpus, nice=args.nice, extra_config=extra, workers=workers)
    try:
        server.wait_ready()
        spec = Spec(calls, args.rate, args.seconds, args.warmup, hold_s, sip_port, server.port, hook_port,
                    server.pid, str(work), args.play, args.generator, args.loss, args.jitter_ms,
                    getattr(args, "codec", "pcma"), getattr(args, "vad", "webrtc"))
        argv = [sys.executable, __file__, "--load", json.dumps(asdict(spec))]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=ramp + hold_s + 180,
                              preexec_fn=placement(load_cpus, args.nice))
        if proc.returncode != 0:
            raise RuntimeError(f"load process failed (N={calls}):\n{proc.stderr[-4000:]}\nserver log:\n{server.log()}")
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        log_lines = server.log_path.read_text(errors="replace").splitlines()
        result["server_warnings"] = [line for line in log_lines if " WARNING " in line or " ERROR " in line
                                     or "Traceback" in line]
        code = server.stop()
        if code not in (0, None):
            print(f"warning: server exited with {code}:\n{server.log()}", file=sys.stderr)
        from ws_calls import recording_lengths
        result["recordings"] = recording_lengths(server.data_dir / "recordings" / RECORDINGS, calls)
        result["pcap_packets"] = pcap_packets
        result["hold_s"] = hold_s
        return result
    finally:
        server.stop()
        server.cleanup()


def run_engine(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    server_cpus, _ = pin_sets() if args.pin else (None, None)
    spec = {"mode": mode, "legs": args.calls, "seconds": args.seconds, "warmup": min(args.warmup, 1.5),
            "pin": args.pin}
    argv = [sys.executable, __file__, "--engine", json.dumps(spec)]
    # the UDP mode pins itself (engine on the first CPUs, its traffic generator on the last)
    cpus = server_cpus if mode == "memory" else None
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.seconds + 180,
                          preexec_fn=placement(cpus, args.nice))
    if proc.returncode != 0:
        raise RuntimeError(f"engine run ({mode}) failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def pct_per_call(r: dict[str, Any], calls: int) -> float:
    return float(100.0 * r["server_cpu_s"] / r["wall_s"] / calls) if "wall_s" in r else float("nan")


RTP_SOURCES = {"sipp": "sipp", "generator": "bench/sip_load.py"}     # the caller's name -> who sent the RTP


def cost_table(sip: dict[str, Any], engines: dict[str, dict[str, Any]], calls: int, play: bool) -> str:
    base = engines.get("memory")
    base_pct = base["pct_per_leg"] if base is not None else float("nan")
    lines = ["| configuration | N | % core per call | µs per call per 20 ms | / engine in memory |",
             "|---|---:|---:|---:|---:|"]
    names = {"memory": "engine alone, in-memory legs (bench/engine.py)",
             "udp": "engine alone, one loopback UDP socket per leg (bench/engine.py --udp)"}
    for mode, r in engines.items():
        times = "1.0x" if mode == "memory" else f"{r['pct_per_leg'] / base_pct:.1f}x"
        note = "" if r["real_time"] else " (not real time)"
        lines.append(f"| {names[mode]}{note} | {calls} | {r['pct_per_leg']:.3f} | {r['us_per_leg_tick']:.1f} | "
                     f"{times} |")
    pct = pct_per_call(sip, calls)
    label = f"call server: {RTP_SOURCES[sip['caller']]} PCMA RTP, webrtc VAD, recorder" + (", play" if play else "")
    ratio = pct / base_pct
    lines.append(f"| {label} | {calls} | {fmt(pct, 3)} | {fmt(pct * 200, 1)} | "
                 f"{'-' if ratio != ratio else f'{ratio:.1f}x'} |")
    return "\n".join(lines)


def late_cell(r: dict[str, Any]) -> str:
    """The generator's late-send ratio, VOID above the limit; sipp does not report its own timing."""
    if "late_ratio" not in r:
        return "n/a"
    return f"{100 * r['late_ratio']:.4f} %" + (" VOID" if r["void"] else "")


def sip_table(r: dict[str, Any], calls: int, rate: float) -> str:
    rtd = r["setup_ms"]
    setup = " / ".join(fmt(v, 1) for v in (percentile(rtd, 50), percentile(rtd, 95), percentile(rtd, 99),
                                            max(rtd) if rtd else float("nan")))
    hook = r["hook_to_answer_ms"]
    rss = (r["rss_kib"] - r["rss_idle_kib"]) / calls / 1024 if "rss_kib" in r else float("nan")
    caller_pct = 100 * r["caller_cpu_s"] / r["wall_s"] if "wall_s" in r else float("nan")
    lines = [
        "| N | setup rate calls/s (target) | INVITE->200 p50 / p95 / p99 / max ms | webhook->answer p50 / max ms "
        "| most calls up / with audio | server % core/call | RSS MiB/call | skipped frames window (run) "
        f"| {r['caller']} % core | late sends > {LATE_MS:g} ms | {r['caller']} failed calls |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {calls} | {fmt(r['setup_rate'], 1)} ({rate:g}) | {setup} | "
        f"{fmt(percentile(hook, 50), 1)} / {fmt(max(hook) if hook else float('nan'), 1)} | "
        f"{r['max_live']} / {r['with_audio']} | {fmt(pct_per_call(r, calls), 3)} | {fmt(rss, 2)} | "
        f"{r.get('skipped_window', 'n/a')} ({r['skipped_total']}) | {fmt(caller_pct, 1)} | {late_cell(r)} | "
        f"{r.get('caller_failed', 'n/a')} |",
    ]
    return "\n".join(lines)


def caller_details(r: dict[str, Any], calls: int) -> list[str]:
    out = [f"- {r['caller']}: exit {r['caller_exit']} after {r['caller_s']:.1f} s; successful "
           f"{r.get('caller_ok', 'n/a')}, failed {r.get('caller_failed', 'n/a')}, retransmissions "
           f"{r.get('caller_retransmissions', 'n/a')}; "
           f"INVITEs per second {fmt(r['offered_rate'], 1)}, 200 OKs per second {fmt(r['setup_rate'], 1)}, "
           f"answers per second at the application {fmt(r['answer_rate'], 1)}"
           + (f"; failures by kind {r['failed_kinds']}" if r.get("failed_kinds") else "")]
    if "late_ratio" in r:
        out.append(f"- generator RTP: sent per call median {r['gen_tx_median']:.0f}; received from the server per "
                   f"call min {r['gen_rx_min']}, median {r['gen_rx_median']:.0f} of ~{r['expected_packets']:.0f} "
                   f"(calls with audio at the generator {r['gen_with_audio']}/{calls}); late sends (> {LATE_MS:g} ms) "
                   f"{r['late']} of {r['packets_sent']} ({100 * r['late_ratio']:.4f} %, VOID above "
                   f"{100 * LATE_LIMIT:g} %), lag p99 {r['lag_p99_ms']:.1f} ms, max {r['lag_max_ms']:.1f} ms; CPU "
                   f"{r['gen_cpu_pct']:.1f} % of a core over its whole run, waited for a CPU {r['gen_wait_pct']:.2f} % "
                   f"of it ({r['gen_scheduling']}), its CPUs stolen by the hypervisor {r['gen_steal_ms']:.0f} ms; "
                   f"kernel drops {r['gen_drops']}, send "
                   f"errors {r['gen_send_errors']}, stray packets {r['gen_stray']}")
        if r["gen_late_at"]:
            shown = ", ".join(f"{at:.2f} s +{lag:.1f} ms" for at, lag in r["gen_late_at"][:12])
            out.append(f"- late packets (due s after the first INVITE, lag): {shown}"
                       + (" ..." if len(r["gen_late_at"]) > 12 else ""))
    if r.get("caller_failed", 0) or r["caller_exit"] != 0:
        out.append(f"- {r['caller']} errors (tail): {r['caller_errors']}")
    return out


def details(r: dict[str, Any], calls: int, engines: dict[str, dict[str, Any]]) -> str:
    out = []
    if "wall_s" in r:
        wall = r["wall_s"]
        out.append(f"- window {wall:.1f} s with {r['window_live_min']} calls up at its start"
                   f"{' (cut short by a hangup)' if r['window_cut'] else ''}: server CPU {r['server_cpu_s']:.2f} s "
                   f"({100 * r['server_cpu_s'] / wall:.1f} % of a core), waited for a CPU "
                   f"{100 * r['server_wait_s'] / wall:.1f} % of the time; media tick "
                   f"{100 * r.get('tick_s', float('nan')) / wall:.1f} % of wall; application CPU "
                   f"{100 * r['app_cpu_s'] / wall:.1f} %, {r['caller']} CPU {100 * r['caller_cpu_s'] / wall:.1f} %")
        out.append(f"- server RSS {r['rss_idle_kib'] / 1024:.1f} MiB after the priming call, "
                   f"{r['rss_kib'] / 1024:.1f} MiB with {calls} calls up")
    else:
        out.append(f"- no window: never {calls} calls up at once (most: {r['max_live']})")
    count, low, median = r["recordings"]
    pcap = f" (pcap {r['pcap_packets']} packets)" if r.get("pcap_packets") is not None else ""
    out.append(f"- calls: webhooks {r['hooks']}, answered {r['answered']}, hung up {r['hung_up']} "
               f"({', '.join(r['hangup_reasons']) or '-'}); each held {r['hold_s']:.1f} s"
               f"{pcap}; RTP received per call min {r['rx_packets_min']}, median "
               f"{r['rx_packets_median']:.0f} of ~{r['expected_packets']:.0f}, lost {r['rx_lost']}; sent per call "
               f"median {r['tx_packets_median']:.0f}; VAD speaking events per call {r['speaking_per_call']:.1f}; "
               f"prompts played to the end per call {r['tracks_per_call']:.1f}; "
               f"recordings {count}/{calls}, length min {low:.1f} s, median {median:.1f} s")
    out += caller_details(r, calls)
    if r["error_count"] or r["hook_errors"]:
        out.append(f"- error events {r['error_count']}: {r['errors']}; webhook requests that failed {r['hook_errors']}")
    if r["server_warnings"]:
        shown = "\n  ".join(r["server_warnings"][-5:])
        out.append(f"- server log: {len(r['server_warnings'])} warnings/errors, the last:\n  {shown}")
    for mode, e in engines.items():
        out.append(f"- engine {mode}, N={calls}: {e['us_per_leg_tick']:.1f} µs/leg/tick, process CPU "
                   f"{e['cpu_pct']:.0f} % of a core, tick p99 {e['p99_ms']:.2f} ms, skipped {e['skipped']}, real time "
                   f"{'yes' if e['real_time'] else 'no: ' + '; '.join(e['failures'])}")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100,
                        help="concurrent calls (sipp -l and -m: practical to ~100; --generator own: any N)")
    parser.add_argument("--rate", type=float, default=20.0, help="new calls per second (sipp -r)")
    parser.add_argument("--generator", choices=["sipp", "own"], default="sipp",
                        help="the caller: sipp with pcap RTP (root), or our bench/sip_load.py")
    parser.add_argument("--loss", type=float, default=0.0, help="--generator own: fraction of its RTP dropped")
    parser.add_argument("--jitter-ms", type=float, default=0.0,
                        help="--generator own: p95 of the extra delay of each of its RTP packets")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds with every call up")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after the N-th answer before the window")
    parser.add_argument("--no-play", dest="play", action="store_false",
                        help="accept only: the server sends no prompt (no outbound audio)")
    parser.add_argument("--engine-udp", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure the engine alone over loopback UDP sockets (default; off in --quick)")
    parser.add_argument("--no-engine", dest="engine", action="store_false", help="skip the engine baseline")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not pin the server to the first CPUs and the application and the caller to the last")
    parser.add_argument("--nice", type=int, default=0,
                        help="nice value of the server and load processes (e.g. -10 on a shared host; root)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 calls, 3 s window, engine in memory only")
    parser.add_argument("--keep", action="store_true", help="keep sipp's files, the pcap and the scenarios")
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--engine", dest="engine_spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(asyncio.run(load(Spec(**json.loads(args.load))))))
        return 0
    if args.engine_spec:
        e = json.loads(args.engine_spec)
        print(json.dumps(engine_run(e["mode"], e["legs"], e["seconds"], e["warmup"], e["pin"])))
        return 0
    if args.quick:
        args.calls, args.seconds, args.warmup, args.engine_udp = 10, 3.0, 1.0, False
    if args.generator == "sipp" and (args.loss or args.jitter_ms):
        parser.error("--loss and --jitter-ms need --generator own")
    problem = sipp_problem() if args.generator == "sipp" else None
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    script = Path(sys.argv[0]).resolve()
    command = " ".join(["python", str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else str(script),
                        *sys.argv[1:]])
    print(f"# command: {command}")
    print(f"# SIP calls: N={args.calls} at {args.rate:g} calls/s, {args.seconds:g} s measured after {args.warmup:g} s "
          f"warm-up with all calls up; PCMA 20 ms RTP from {rtp_description(args)}, webrtc VAD + recorder"
          f"{' + play' if args.play else ''} per call; {os.cpu_count()} CPUs, load average {load_average()}, "
          f"pinned: {args.pin}, nice: {args.nice}", flush=True)
    if args.keep:
        work = Path(tempfile.mkdtemp(prefix="pypbx-bench-sip-"))
        print(f"# sipp's files, the pcap and the scenarios are kept in {work}")
        sip = run_sip(args, work)
    else:
        with tempfile.TemporaryDirectory(prefix="pypbx-bench-sip-") as tmp:
            sip = run_sip(args, Path(tmp))
    print(f"  done: SIP calls, N={args.calls}: {fmt(pct_per_call(sip, args.calls), 3)} % core/call", flush=True)
    engines: dict[str, dict[str, Any]] = {}
    if args.engine:
        for mode in ["memory", "udp"] if args.engine_udp else ["memory"]:
            engines[mode] = run_engine(mode, args)
            print(f"  done: engine {mode}, N={args.calls}: {engines[mode]['pct_per_leg']:.3f} % core/leg", flush=True)
    print()
    print(sip_table(sip, args.calls, args.rate))
    print()
    print(cost_table(sip, engines, args.calls, args.play))
    print()
    print(details(sip, args.calls, engines))
    print(f"\nload average after: {load_average()}")
    ok = (sip.get("caller_failed", 1) == 0 and sip["caller_exit"] == 0 and sip["max_live"] == args.calls
          and sip["with_audio"] == args.calls and "wall_s" in sip)
    print(f"all {args.calls} calls up at once with audio, no {sip['caller']} failure: {'yes' if ok else 'NO'}")
    if sip.get("void"):
        print(f"VOID: the generator sent {100 * sip['late_ratio']:.4f} % of its packets more than {LATE_MS:g} ms late "
              f"(limit {100 * LATE_LIMIT:g} %): its timing, not the server's, shaped this run")
    return 0 if ok and not sip.get("void") else 1


def sipp_problem() -> str | None:
    """Why sipp cannot run here, or None."""
    if shutil.which("sipp") is None:
        return "sipp is not installed (make deps installs sip-tester)"
    if os.geteuid() != 0:
        return "sipp's play_pcap_audio sends through raw sockets: run this bench as root (or --generator own)"
    return None


def rtp_description(args: argparse.Namespace) -> str:
    if args.generator == "sipp":
        return "sipp pcap"
    impairments = f" with {args.loss:.1%} loss and {args.jitter_ms:g} ms p95 jitter" if args.loss or args.jitter_ms \
        else ""
    return f"bench/sip_load.py (one socket for every call){impairments}"


if __name__ == "__main__":
    sys.exit(main())
