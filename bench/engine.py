"""Calls per host: the media engine's cost per leg at N concurrent legs, against a per-leg Python server.

    python bench/engine.py [--legs 100 500 1000 2000] [--seconds 10] [--udp] [--vad webrtc silero]
                           [--baseline | --no-baseline] [--quick] [--no-pin] [--silero-threads 1]
                           [--silero-model float|int8] [--silero-skip | --no-silero-skip] [--pause 0]

Every leg runs the full pipeline: real speech (espeak-ng, 8 kHz, looped; each leg starts at its own
point) arrives as PCMU RTP with 1 % random loss and 30 ms p95 jitter (the trace model of
support/oracles/jitter_trace.py: triangular jitter, independent loss, so packets also reorder), then
jitter buffer -> G.711 decode -> resample to 16 kHz -> VAD (webrtc, or silero) -> stereo WAV
recording (16 kHz, into the temp dir) while the leg plays a looping 16 kHz speech prompt (the next
item is queued on PLAY_ENDED, as a control plane queues TTS) -> resample to 8 kHz -> encode -> RTP.

Modes.
- in-memory (default): ``transport="packets"``; per tick one ``push_packets`` call carries every
  datagram that has arrived by then (the trace is built before the clock starts) and one
  ``drain_out`` takes every leg's outbound datagram.  This is the pipeline's own cost.
- ``--udp``: one non-blocking loopback UDP socket per leg (``transport="udp"``: the engine reads
  them with recvmmsg and answers with sendto).  The traffic generator runs in another process
  (multiprocessing, spawn) and sends each packet at its trace arrival time by the shared
  CLOCK_MONOTONIC (plain ``sendto`` loop, every due packet at once, ~2 ms granularity); it drains
  the engine's packets from its sink socket, which is every leg's remote address.  Its lateness
  (p99 over batches of the delay of the batch's earliest packet) is reported.  By default
  (``--pin``) the generator runs on the last CPU and the engine's process on the others: this VM's
  kernel packs tasks onto few vCPUs (``sched_vcpu_pack``), and unpinned the engine waited for a CPU
  30 % of the time behind its own generator.

Legs start over the first 25 ticks (calls do not all start on one frame; this also spreads the
recorders' 200 ms flushes and silero's 32 ms windows over the ticks).  Their WAV files are created
before the clock starts (creating a file takes ~1.5 ms on this VM's ext4, opening an existing one
~50 µs).  The warm-up (``--warmup``, 1.5 s) is not measured.  The engine is ticked by the wall
clock, ``time.sleep`` until ``next_frame_ms`` + 1 ms, with ``now_ms`` the wall clock: a late tick
makes the engine catch up frame by frame.  (A plain 20 ms timer beats against the engine's frame
grid: wake-up jitter either side of it gives 0- and 2-frame ticks and doubles the worst tick.)

Baseline (same run, same traffic, same N): the way a plain asyncio server does it.  UDP: one
``loop.create_datagram_endpoint`` per leg whose ``datagram_received`` parses RTP with ``struct``
into a simple Python jitter buffer (a dict by sequence number, 3 packets prefetch, zeros on loss:
cheaper than the engine's adaptive buffer, so the comparison favours the baseline), and one asyncio
timer task per leg (random phase) that every 20 ms calls the same compiled kernels from Python:
``ulaw_decode``, ``Resampler.process`` (both ways), webrtcvad ``Vad.is_speech`` or one silero
onnxruntime call per leg per 32 ms window (support/oracles/silero.py, the silero-vad package's way),
a small speaking/silence state machine, ``interleave_stereo`` + ``WavWriter.write``, ``ulaw_encode``,
``struct`` RTP header and ``transport.sendto``.  In-memory: the same per-leg code with the
datagrams handed to ``datagram_received`` directly and every leg's frame called from one 20 ms
tick.  The baseline runs at increasing N until it first fails to keep real time.

Measures (over the measured window).
- CPU: user + system time of every thread of the process (CLOCK_PROCESS_CPUTIME_ID, ns; the
  /proc/self/stat utime + stime figure, 10 ms resolution, is printed next to it as a cross-check),
  so onnxruntime threads and the kernel's socket and page-cache work count; the generator process
  does not.
- µs/leg/tick: CPU µs / (legs x 20 ms frames actually served); % core/leg = µs/leg/tick / 20 ms,
  the share of one core one leg needs at real time.  CPU % core: the process's CPU / wall time.
- tick p50/p99: wall time of one tick's work (engine: push + tick + events + drain; in-memory
  baseline: the datagrams + every leg's frame); tick CPU p99: the same ticks' process CPU time
  (wall above CPU is time the host gave to others: see "waited for a CPU" in the details).  For the
  UDP baseline, which has no tick, the column holds the lateness of each leg's frame
  (done - scheduled, marked †).
- overruns: ticks longer than 20 ms (UDP baseline: frames more than 20 ms late).
- real time (yes/no) = tick p99 < 20 ms, process CPU < 100 % of one core, >= 99 % of the frames
  served, no frame skipped by the engine, and in UDP mode no datagram dropped by the kernel on the
  legs' sockets and the generator's p99 lateness < 5 ms.
- largest N in real time: the largest measured N that meets all of that; ``projected`` is
  20000 µs / (µs/leg/tick), the N at which one core would be full, for reference only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import multiprocessing
import os
import platform
import random
import resource
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import webrtcvad

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from floor import Floor, measure_floor, mmsg_us, syscall_entry_us  # noqa: E402

from pbx.core import engine as eng_mod  # noqa: E402
from pbx.core.g711 import ulaw_decode, ulaw_encode  # noqa: E402
from pbx.core.mixer import interleave_stereo  # noqa: E402
from pbx.core.resample import Resampler  # noqa: E402
from pbx.core.vad import webrtc_mode  # noqa: E402
from pbx.core.wav import WavWriter  # noqa: E402
from support.audio import espeak_speech  # noqa: E402
from support.oracles.jitter_trace import FRAME_MS, TRIANGULAR_P95  # noqa: E402

FRAME_S = FRAME_MS / 1000.0
PACKET_SAMPLES = 160                # 20 ms of PCMU
RTP_HEADER = struct.Struct("!BBHII")
PACKET_BYTES = RTP_HEADER.size + PACKET_SAMPLES
LOSS = 0.01
JITTER_MS = 30.0                    # p95 of the jitter (see jitter_trace)
BASE_MS = 5.0                       # fastest transit
STAGGER_TICKS = 25                  # legs start over this many ticks (0.5 s)
TICK_MARGIN_MS = 1.0                # engine ticks run this long after a frame falls due
PT_PCMU = 0
CLK_TCK = os.sysconf("SC_CLK_TCK")
GEN_LAG_LIMIT_MS = 5.0
SPEECH_TEXT = (
    "Thank you for calling. Your order number is four seven two nine. "
    "Would you like to hear about delivery times, or speak to an agent?"
)


@dataclass(frozen=True)
class Plan:
    seconds: float            # measured, per configuration
    warmup: float             # seconds before the measured window (legs start, jitter buffers settle)
    seed: int
    silero_threads: int
    silero_model: str = "float"   # Engine.set_silero: "float" or "int8"
    silero_skip: bool = True      # windows below the energy floor skip inference
    pause_s: float = 0.0          # digital silence after each pass of the looped speech (--pause)

    @property
    def traffic_seconds(self) -> float:
        return self.warmup + self.seconds + 0.5


# -- measurement helpers -----------------------------------------------------------------------

def process_cpu_s() -> float:
    """CPU seconds of every thread of this process, user + system (CLOCK_PROCESS_CPUTIME_ID, ns)."""
    return time.process_time()


def runqueue_wait_s() -> float:
    """Time this thread spent runnable but waiting for a CPU (other load on the host)."""
    with open("/proc/thread-self/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def proc_stat_cpu_s() -> float:
    """utime + stime of every thread (/proc/self/stat fields 14, 15; 10 ms resolution): a cross-check."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def udp_drops(ports: set[int]) -> int:
    """Datagrams the kernel dropped on our sockets (the last column of /proc/net/udp)."""
    total = 0
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            cols = line.split()
            if int(cols[1].split(":")[1], 16) in ports:
                total += int(cols[-1])
    return total


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


# -- traffic ------------------------------------------------------------------------------------

@dataclass
class Traffic:
    """Every delivered datagram of every leg, in arrival order: datagram i is
    ``blob[offsets[i]:offsets[i+1]]``."""

    legs: np.ndarray          # int32 leg index
    blob: bytes
    offsets: np.ndarray       # int64, len + 1
    arrival_ms: np.ndarray    # float64, ms after the start
    sent: int                 # packets before loss


def stagger_ticks(n_legs: int) -> np.ndarray:
    return np.arange(n_legs, dtype=np.int64) % STAGGER_TICKS


def make_traffic(n_legs: int, seconds: float, seed: int, pause_s: float = 0.0) -> Traffic:
    """PCMU RTP of looped espeak speech for ``n_legs`` legs, ``seconds`` long, with loss and jitter;
    ``pause_s`` of digital silence after each pass of the speech."""
    pcm = espeak_speech(8000, SPEECH_TEXT)
    pcm = np.concatenate([pcm, np.zeros(int(pause_s * 8000), np.int16)])
    ulaw = np.frombuffer(ulaw_encode(pcm), dtype=np.uint8)
    speech = ulaw[: len(ulaw) // PACKET_SAMPLES * PACKET_SAMPLES].reshape(-1, PACKET_SAMPLES)
    rng = np.random.default_rng(seed)
    count = int(seconds * 1000.0 / FRAME_MS)
    k = np.arange(count, dtype=np.int64)
    send_ms = (stagger_ticks(n_legs)[:, None] + k[None, :]) * FRAME_MS
    spread = JITTER_MS / TRIANGULAR_P95
    jitter = spread * (rng.random((n_legs, count)) + rng.random((n_legs, count))) / 2.0
    kept = rng.random((n_legs, count)) >= LOSS
    arrival = (send_ms + BASE_MS + jitter)[kept]
    leg = np.broadcast_to(np.arange(n_legs, dtype=np.int64)[:, None], (n_legs, count))[kept]
    kk = np.broadcast_to(k[None, :], (n_legs, count))[kept]
    order = np.argsort(arrival, kind="stable")
    arrival, leg, kk = arrival[order], leg[order], kk[order]
    seq0 = rng.integers(0, 1 << 16, n_legs)
    ts0 = rng.integers(0, 1 << 32, n_legs)
    ssrc = rng.integers(1, 1 << 32, n_legs)
    first_frame = rng.integers(0, len(speech), n_legs)
    m = len(arrival)
    packets = np.empty((m, PACKET_BYTES), dtype=np.uint8)
    packets[:, 0] = 0x80
    packets[:, 1] = np.where(kk == 0, 0x80, 0) | PT_PCMU
    packets[:, 2:4] = ((seq0[leg] + kk) & 0xFFFF).astype(">u2").view(np.uint8).reshape(m, 2)
    stamps = (ts0[leg] + kk * PACKET_SAMPLES) & 0xFFFFFFFF
    packets[:, 4:8] = stamps.astype(">u4").view(np.uint8).reshape(m, 4)
    packets[:, 8:12] = ssrc[leg].astype(">u4").view(np.uint8).reshape(m, 4)
    packets[:, 12:] = speech[(first_frame[leg] + kk) % len(speech)]
    offsets = np.arange(m + 1, dtype=np.int64) * PACKET_BYTES
    return Traffic(leg.astype(np.int32), packets.tobytes(), offsets, arrival, n_legs * count)


def make_prompt() -> np.ndarray:
    """The 16 kHz 'TTS' prompt every leg plays in a loop."""
    return np.ascontiguousarray(espeak_speech(16000))


# -- results ------------------------------------------------------------------------------------

@dataclass
class Run:
    mode: str                 # memory | udp
    vad: str
    impl: str                 # engine | python
    legs: int
    seconds: float = 0.0      # measured wall time
    cpu_s: float = 0.0
    leg_frames: int = 0       # leg x frames served in the window
    expected_frames: int = 0  # 50 per second per leg
    ticks: list[float] = field(default_factory=list)   # ms: tick work, or frame lateness (UDP baseline)
    tick_cpu: list[float] = field(default_factory=list)  # ms of process CPU per tick (not UDP baseline)
    skipped: int = 0
    threads: int = 0
    load: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def us_per_leg_tick(self) -> float:
        return self.cpu_s * 1e6 / self.leg_frames if self.leg_frames else math.nan

    @property
    def core_pct_per_leg(self) -> float:
        return self.us_per_leg_tick / (FRAME_MS * 1000.0) * 100.0

    @property
    def cpu_pct(self) -> float:
        return self.cpu_s / self.seconds * 100.0 if self.seconds else math.nan

    @property
    def p50(self) -> float:
        return percentile(self.ticks, 50)

    @property
    def p99(self) -> float:
        return percentile(self.ticks, 99)

    @property
    def cpu_p99(self) -> float:
        return percentile(self.tick_cpu, 99)

    @property
    def overruns(self) -> int:
        return sum(1 for t in self.ticks if t > FRAME_MS)

    def failures(self) -> list[str]:
        why = []
        if not self.p99 < FRAME_MS:
            why.append(f"tick p99 {self.p99:.1f} ms")
        if not self.cpu_pct < 100.0:
            why.append(f"CPU {self.cpu_pct:.0f} %")
        if self.leg_frames < 0.99 * self.expected_frames:
            why.append(f"served {self.leg_frames / max(self.expected_frames, 1):.1%} of frames")
        if self.skipped:
            why.append(f"{self.skipped} frames skipped")
        if self.notes.get("socket_drops", 0):
            why.append(f"{self.notes['socket_drops']} datagrams dropped by the kernel")
        if self.notes.get("gen_lag_p99_ms", 0.0) >= GEN_LAG_LIMIT_MS:
            why.append(f"generator late (p99 {self.notes['gen_lag_p99_ms']:.1f} ms)")
        return why

    @property
    def real_time(self) -> bool:
        return not self.failures()


# -- the real-time tick driver ------------------------------------------------------------------

def drive(run: Run, t0: float, plan: Plan, tick: Callable[[int, float], int],
          due_ms: Callable[[int], float]) -> None:
    """Call ``tick(k, now_ms)`` at ``t0 + due_ms(k)`` by the wall clock (at once when that has passed)
    for the warm-up and the measured seconds of ``plan``; it returns the leg-frames it served."""
    window_start = t0 + plan.warmup
    end = window_start + plan.seconds
    k = 0
    cpu0 = stat0 = wall0 = wait0 = 0.0
    measuring = False
    while True:
        due = t0 + due_ms(k) / 1000.0
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        start = time.monotonic()
        if start >= end:
            break
        if not measuring and start >= window_start:
            measuring = True
            cpu0, stat0, wall0, wait0 = process_cpu_s(), proc_stat_cpu_s(), start, runqueue_wait_s()
        cpu_start = process_cpu_s()
        served = tick(k, (start - t0) * 1000.0)
        if measuring:
            run.ticks.append((time.monotonic() - start) * 1000.0)
            run.tick_cpu.append((process_cpu_s() - cpu_start) * 1000.0)
            run.leg_frames += served
        k += 1
    run.cpu_s = process_cpu_s() - cpu0
    run.notes["stat_cpu_s"] = proc_stat_cpu_s() - stat0
    run.seconds = time.monotonic() - wall0
    run.notes["wait_pct"] = (runqueue_wait_s() - wait0) / run.seconds * 100.0
    run.expected_frames = int(run.seconds * 1000.0 / FRAME_MS) * run.legs
    run.threads = thread_count()
    run.load = os.getloadavg()[0]


# -- the engine ---------------------------------------------------------------------------------

class EngineBench:
    """N legs in one engine, with the recording, VAD and looping prompt of every leg."""

    def __init__(self, n_legs: int, vad: str, prompt: np.ndarray, rec_dir: Path, silero_threads: int,
                 silero: tuple[str, bool] = ("float", True)) -> None:
        self.engine = eng_mod.Engine(max_legs=max(n_legs, 1))
        self.engine.set_silero(*silero)
        self.silero_threads = silero_threads
        self.n_legs = n_legs
        self.vad = vad
        self.prompt = prompt
        self.rec_dir = rec_dir
        self.legs: list[Any] = [None] * n_legs
        self.by_slot: dict[int, Any] = {}
        self.slot_of = np.full(n_legs, -1, dtype=np.int32)
        self.next_item: dict[int, int] = {}
        self.stagger = stagger_ticks(n_legs)
        self.events: dict[int, int] = {}
        self.ports: list[int] = []
        self.socks: list[socket.socket] = []
        self.first_sample = np.random.default_rng(7).integers(0, len(prompt) - 1, n_legs)
        self.started_upto = -1      # legs of stagger <= this have been added
        self.setup_s = 0.0
        # Creating a file costs ~1.5 ms on this VM's ext4 (opening an existing one ~50 µs): create
        # them before the clock starts, so that the legs' start in the first ticks measures the engine.
        for n in range(n_legs):
            (rec_dir / f"leg{n}.wav").touch()

    def due_ms(self, k: int) -> float:
        """When to tick next: just after the engine's next frame is due.  A plain 20 ms timer would beat
        against the engine's frame grid (wake-up jitter either side of it gives 0- and 2-frame ticks)."""
        return self.engine.next_frame_ms + TICK_MARGIN_MS if k else 0.0

    def open_sockets(self) -> None:
        for _ in range(self.n_legs):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            self.socks.append(s)
            self.ports.append(s.getsockname()[1])

    def add_legs(self, tick_index: int, now_ms: float, remote: tuple[str, int] | None) -> None:
        """Start the legs whose stagger tick has come (all of them if ticks were skipped)."""
        if tick_index <= self.started_upto or self.started_upto >= STAGGER_TICKS - 1:
            return
        due = (self.stagger > self.started_upto) & (self.stagger <= tick_index)
        self.started_upto = tick_index
        start = time.perf_counter()
        for n in np.flatnonzero(due):
            if remote is None:
                leg = self.engine.add_leg("packets", "pcmu", now_ms)
            else:
                leg = self.engine.add_leg("udp", "pcmu", now_ms, fd=self.socks[n].fileno(), remote=remote)
            if self.vad != "none":
                self.engine.set_vad(leg, self.vad, silero_threads=self.silero_threads)
            self.engine.set_recorder(leg, self.rec_dir / f"leg{n}.wav")
            # the first item starts mid-prompt so that the legs' items end on different ticks
            leg.playout.enqueue(0, 0, self.prompt[self.first_sample[n]:])
            leg.playout.enqueue(1, 0, self.prompt)
            self.next_item[leg.slot] = 2
            self.legs[n] = leg
            self.by_slot[leg.slot] = leg
            self.slot_of[n] = leg.slot
        self.setup_s += time.perf_counter() - start

    def handle_events(self, events: list[tuple[int, int, int, int, int, int, int]]) -> None:
        for slot, kind, *_ in events:
            self.events[kind] = self.events.get(kind, 0) + 1
            if kind == eng_mod.PLAY_ENDED_:
                item = self.next_item[slot]
                self.next_item[slot] = item + 1
                self.by_slot[slot].playout.enqueue(item, 0, self.prompt)

    def close(self) -> dict[str, Any]:
        rx = sum(leg.rx_packets for leg in self.legs if leg is not None)
        tx = sum(leg.tx_packets for leg in self.legs if leg is not None)
        for leg in self.legs:
            if leg is not None:
                self.engine.remove_leg(leg)
        rec_bytes = sum(p.stat().st_size for p in self.rec_dir.glob("*.wav"))
        inferred, skipped = self.engine.silero_counts
        if inferred + skipped:
            print(f"    silero windows: {inferred} inferred, {skipped} skipped by the level gate "
                  f"({100 * skipped / (inferred + skipped):.0f} %)", file=sys.stderr, flush=True)
        for s in self.socks:
            s.close()
        return {"rx": rx, "tx": tx, "rec_mb": rec_bytes / 1e6,
                "setup_us": self.setup_s * 1e6 / max(self.n_legs, 1),
                "speaking": self.events.get(eng_mod.SPEAKING, 0),
                "play_ended": self.events.get(eng_mod.PLAY_ENDED_, 0)}


def run_engine_memory(n_legs: int, vad: str, plan: Plan, traffic: Traffic, prompt: np.ndarray) -> Run:
    run = Run("memory", vad, "engine", n_legs)
    with tempfile.TemporaryDirectory(prefix="pbx-bench-") as tmp:
        bench = EngineBench(n_legs, vad, prompt, Path(tmp), plan.silero_threads,
                            (plan.silero_model, plan.silero_skip))
        engine = bench.engine
        blob = memoryview(traffic.blob)
        arrivals, legs, offsets = traffic.arrival_ms, traffic.legs, traffic.offsets
        pos = 0
        frames_before = [0]

        def tick(k: int, now_ms: float) -> int:
            nonlocal pos
            bench.add_legs(k, now_ms, None)
            end = int(np.searchsorted(arrivals, now_ms, side="right"))
            if end > pos:
                engine.push_packets(bench.slot_of[legs[pos:end]], blob, offsets[pos:end + 1],
                                    arrivals[pos:end])
                pos = end
            bench.handle_events(engine.tick(now_ms))
            engine.drain_out()
            served = (engine.frames - frames_before[0]) * engine.leg_count
            frames_before[0] = engine.frames
            return int(served)

        gc.collect()
        skipped0 = engine.skipped_frames
        drive(run, time.monotonic() + 0.05, plan, tick, bench.due_ms)
        run.skipped = engine.skipped_frames - skipped0
        run.notes.update(bench.close())
        run.notes["delivered"] = pos
    return run


def run_engine_udp(n_legs: int, vad: str, plan: Plan, prompt: np.ndarray) -> Run:
    run = Run("udp", vad, "engine", n_legs)
    with tempfile.TemporaryDirectory(prefix="pbx-bench-") as tmp:
        bench = EngineBench(n_legs, vad, prompt, Path(tmp), plan.silero_threads,
                            (plan.silero_model, plan.silero_skip))
        bench.open_sockets()
        engine = bench.engine
        with Generator(bench.ports, plan) as gen:
            frames_before = [0]

            def tick(k: int, now_ms: float) -> int:
                bench.add_legs(k, now_ms, gen.sink)
                bench.handle_events(engine.tick(now_ms))
                served = (engine.frames - frames_before[0]) * engine.leg_count
                frames_before[0] = engine.frames
                return int(served)

            gc.collect()
            t0 = gen.start()
            skipped0 = engine.skipped_frames
            drive(run, t0, plan, tick, bench.due_ms)
            run.skipped = engine.skipped_frames - skipped0
            run.notes["socket_drops"] = udp_drops(set(bench.ports))
            run.notes.update(gen.finish())
        run.notes.update(bench.close())
    return run


# -- the traffic generator process ---------------------------------------------------------------

class Generator:
    """The peer of every leg, in its own process: sends the trace at real time, sinks the replies."""

    cpu: int | None = None          # --pin: the generator's CPU (the engine's process has the others)

    def __init__(self, ports: list[int], plan: Plan) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        args = (child, ports, plan.traffic_seconds, plan.seed, self.cpu, plan.pause_s)
        self.proc = ctx.Process(target=generator_main, args=args,
                                daemon=True)
        self.proc.start()
        child.close()
        ready = self.conn.recv()          # the trace is built before the start time is set
        self.sink: tuple[str, int] = tuple(ready["sink"])  # type: ignore[assignment]

    def start(self) -> float:
        t0 = time.monotonic() + 0.2
        self.conn.send(t0)
        return t0

    def finish(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.conn.recv()
        return stats

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
        self.conn.close()


def generator_main(conn: Connection, ports: list[int], seconds: float, seed: int, cpu: int | None,
                   pause_s: float = 0.0) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    traffic = make_traffic(len(ports), seconds, seed, pause_s)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    conn.send({"sink": sink.getsockname()})
    t0: float = conn.recv()
    due = t0 + traffic.arrival_ms / 1000.0
    dests = [("127.0.0.1", p) for p in ports]
    legs = traffic.legs.tolist()
    offsets = traffic.offsets.tolist()
    blob = memoryview(traffic.blob)
    buf = bytearray(2048)
    sendto, recv_into = sink.sendto, sink.recv_into
    lags: list[float] = []
    received = errors = 0
    cpu0 = process_cpu_s()
    i, total = 0, len(due)
    while i < total:
        now = time.monotonic()
        if due[i] > now:
            time.sleep(min(due[i] - now, 0.002))
            continue
        j = int(np.searchsorted(due, now, side="right"))
        for idx in range(i, j):
            try:
                sendto(blob[offsets[idx]:offsets[idx + 1]], dests[legs[idx]])
            except BlockingIOError:
                errors += 1
        lags.append((time.monotonic() - due[i]) * 1000.0)  # the earliest packet of the batch
        i = j
        while True:
            try:
                recv_into(buf)
            except BlockingIOError:
                break
            received += 1
    cpu = process_cpu_s() - cpu0
    conn.send({
        "gen_sent": total, "gen_errors": errors, "gen_received": received,
        "gen_lag_p99_ms": percentile(lags, 99), "gen_lag_max_ms": max(lags, default=0.0),
        "gen_cpu_pct": cpu / max(time.monotonic() - t0, 1e-9) * 100.0,
        "sink_drops": udp_drops({sink.getsockname()[1]}),
    })
    sink.close()


# -- the per-leg Python baseline ----------------------------------------------------------------

class SimpleJitter:
    """A dict by sequence number; playout starts after PREFETCH packets; a missing packet is a loss."""

    PREFETCH = 3
    CAPACITY = 64

    def __init__(self) -> None:
        self.packets: dict[int, bytes] = {}
        self.next_seq = -1
        self.started = False

    def put(self, seq: int, payload: bytes) -> None:
        if self.next_seq < 0:
            self.next_seq = seq
        elif ((seq - self.next_seq) & 0xFFFF) >= 0x8000:
            return                                   # late: its slot has been played
        if len(self.packets) < self.CAPACITY:
            self.packets[seq] = payload

    def pop(self) -> bytes | None:
        if not self.started:
            if len(self.packets) < self.PREFETCH:
                return None
            self.started = True
        payload = self.packets.pop(self.next_seq, None)
        self.next_seq = (self.next_seq + 1) & 0xFFFF
        return payload


class PyLeg(asyncio.DatagramProtocol):
    """One leg served the plain-asyncio way: Python per packet and per 20 ms frame."""

    SILENCE8 = np.zeros(PACKET_SAMPLES, dtype=np.int16)

    def __init__(self, n: int, vad: str, prompt: np.ndarray, rec_path: Path, silero: Any,
                 send: Callable[[bytes], None] | None) -> None:
        self.jitter = SimpleJitter()
        self.up = Resampler(8000, 16000)
        self.down = Resampler(16000, 8000)
        self.vad = vad
        self.webrtc = webrtcvad.Vad(webrtc_mode(0.5)) if vad == "webrtc" else None
        self.silero = silero
        self.pending = np.zeros(1024, dtype=np.float32)
        self.fill = 0
        self.speaking = False
        self.voiced = self.unvoiced = 0
        self.events = 0
        self.wav = WavWriter(rec_path, 16000, 2, flush_ms=200)
        self.prompt = prompt
        self.play_pos = int(np.random.default_rng(n).integers(0, len(prompt) - 320))
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.ssrc = random.getrandbits(32)
        self.marker = 0x80
        self.send = send
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None
        self.rx = self.tx = self.frames = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) < 12:
            return
        b0, b1, seq, _ts, _ssrc = RTP_HEADER.unpack_from(data)
        if b0 >> 6 != 2 or (b1 & 0x7F) != PT_PCMU:
            return
        self.rx += 1
        self.jitter.put(seq, data[12 + 4 * (b0 & 0x0F):])

    def frame(self) -> None:
        payload = self.jitter.pop()
        pcm8 = ulaw_decode(payload) if payload is not None else self.SILENCE8
        in16 = self.up.process(pcm8)
        if self.webrtc is not None:
            self.vad_decision(self.webrtc.is_speech(in16.tobytes(), 16000), 20)
        elif self.silero is not None:
            self.pending[self.fill:self.fill + 320] = in16 / np.float32(32768.0)
            self.fill += 320
            if self.fill >= 512:
                prob = self.silero(self.pending[:512])
                self.pending[:self.fill - 512] = self.pending[512:self.fill]
                self.fill -= 512
                self.vad_decision(prob >= 0.5, 32)
        if self.play_pos + 320 > len(self.prompt):
            self.play_pos = 0                         # the next "TTS item"
        out16 = self.prompt[self.play_pos:self.play_pos + 320]
        self.play_pos += 320
        self.wav.write(interleave_stereo(in16, out16))
        packet = RTP_HEADER.pack(0x80, self.marker | PT_PCMU, self.seq, self.ts, self.ssrc) + \
            ulaw_encode(self.down.process(out16))
        self.marker = 0
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + PACKET_SAMPLES) & 0xFFFFFFFF
        if self.send is not None:
            self.send(packet)
        elif self.transport is not None:
            self.transport.sendto(packet, self.remote)
        self.tx += 1
        self.frames += 1

    def vad_decision(self, speech: bool, ms: int) -> None:
        """Speaking after 250 ms of voice, silence after 100 ms without (the engine's default paddings)."""
        if speech:
            self.voiced += ms
            self.unvoiced = 0
            if not self.speaking and self.voiced >= 250:
                self.speaking = True
                self.events += 1
        else:
            self.unvoiced += ms
            if self.unvoiced >= 100:
                self.voiced = 0
                if self.speaking:
                    self.speaking = False
                    self.events += 1

    def close(self) -> None:
        self.wav.close()


def silero_factory(vad: str) -> Callable[[], Any]:
    if vad != "silero":
        return lambda: None
    from pbx.core.silero import model_bytes
    from support.oracles.silero import SileroStream, make_session
    session = make_session(model_bytes(), threads=1)
    return lambda: SileroStream(session)


def run_python_memory(n_legs: int, vad: str, plan: Plan, traffic: Traffic, prompt: np.ndarray) -> Run:
    run = Run("memory", vad, "python", n_legs)
    with tempfile.TemporaryDirectory(prefix="pbx-bench-") as tmp:
        out: list[bytes] = []
        new_silero = silero_factory(vad)
        legs = [PyLeg(n, vad, prompt, Path(tmp) / f"leg{n}.wav", new_silero(), out.append)
                for n in range(n_legs)]
        stagger = stagger_ticks(n_legs)
        blob = traffic.blob
        arrivals, leg_of, offsets = traffic.arrival_ms, traffic.legs.tolist(), traffic.offsets.tolist()
        pos = 0
        addr = ("127.0.0.1", 5004)

        def tick(k: int, now_ms: float) -> int:
            nonlocal pos
            end = int(np.searchsorted(arrivals, now_ms, side="right"))
            for i in range(pos, end):
                legs[leg_of[i]].datagram_received(blob[offsets[i]:offsets[i + 1]], addr)
            pos = end
            served = 0
            for n, leg in enumerate(legs):
                if stagger[n] <= k:
                    leg.frame()
                    served += 1
            out.clear()
            return served

        gc.collect()
        drive(run, time.monotonic() + 0.05, plan, tick, lambda k: k * FRAME_MS)
        run.notes.update(rx=sum(leg.rx for leg in legs), tx=sum(leg.tx for leg in legs),
                         speaking=sum(leg.events for leg in legs) // 2, delivered=pos)
        for leg in legs:
            leg.close()
        run.notes["rec_mb"] = sum(p.stat().st_size for p in Path(tmp).glob("*.wav")) / 1e6
    return run


def run_python_udp(n_legs: int, vad: str, plan: Plan, prompt: np.ndarray) -> Run:
    run = Run("udp", vad, "python", n_legs)
    with tempfile.TemporaryDirectory(prefix="pbx-bench-") as tmp:
        new_silero = silero_factory(vad)
        socks = []
        for _ in range(n_legs):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            socks.append(s)
        ports = [s.getsockname()[1] for s in socks]
        legs = [PyLeg(n, vad, prompt, Path(tmp) / f"leg{n}.wav", new_silero(), None) for n in range(n_legs)]
        with Generator(ports, plan) as gen:
            gc.collect()
            t0 = gen.start()
            asyncio.run(_python_udp_main(run, legs, socks, gen.sink, t0, plan))
            run.notes.update(gen.finish())
        run.notes.update(rx=sum(leg.rx for leg in legs), tx=sum(leg.tx for leg in legs),
                         speaking=sum(leg.events for leg in legs) // 2)
        for leg in legs:
            leg.close()
        run.notes["rec_mb"] = sum(p.stat().st_size for p in Path(tmp).glob("*.wav")) / 1e6
    return run


async def _python_udp_main(run: Run, legs: list[PyLeg], socks: list[socket.socket],
                           sink: tuple[str, int], t0: float, plan: Plan) -> None:
    loop = asyncio.get_running_loop()
    for leg, sock in zip(legs, socks, strict=True):
        leg.remote = sink
        await loop.create_datagram_endpoint(lambda leg=leg: leg, sock=sock)
    window_start = t0 + plan.warmup
    end = window_start + plan.seconds
    phases = np.random.default_rng(3).random(len(legs)) * FRAME_S
    stagger = stagger_ticks(len(legs))
    lateness: list[float] = []
    counted = [0]
    snap: dict[str, float] = {}

    async def timer(n: int, leg: PyLeg) -> None:
        due = t0 + stagger[n] * FRAME_S + phases[n]
        while due < end:
            delay = due - loop.time()
            await asyncio.sleep(max(delay, 0.0))
            leg.frame()
            if due >= window_start:
                lateness.append((loop.time() - due) * 1000.0)
                counted[0] += 1
            due += FRAME_S

    def snapshot(key: str) -> None:
        snap[key] = process_cpu_s()
        snap[key + "_stat"] = proc_stat_cpu_s()
        snap[key + "_wait"] = runqueue_wait_s()
        snap[key + "_wall"] = time.monotonic()

    loop.call_at(window_start, snapshot, "start")
    await asyncio.sleep(max(t0 - loop.time(), 0.0))
    tasks = [asyncio.create_task(timer(n, leg)) for n, leg in enumerate(legs)]
    await asyncio.sleep(max(end - loop.time(), 0.0))
    snapshot("end")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    run.notes["socket_drops"] = udp_drops({s.getsockname()[1] for s in socks})
    for leg in legs:
        if leg.transport is not None:
            leg.transport.close()
    await asyncio.sleep(0)
    run.cpu_s = snap["end"] - snap.get("start", snap["end"])
    run.notes["stat_cpu_s"] = snap["end_stat"] - snap.get("start_stat", snap["end_stat"])
    run.seconds = snap["end_wall"] - snap.get("start_wall", snap["end_wall"])
    run.notes["wait_pct"] = (snap["end_wait"] - snap.get("start_wait", snap["end_wait"])) / \
        max(run.seconds, 1e-9) * 100.0
    run.leg_frames = counted[0]
    run.expected_frames = int(run.seconds * 1000.0 / FRAME_MS) * len(legs)
    run.ticks = lateness
    run.threads = thread_count()
    run.load = os.getloadavg()[0]


# -- report -------------------------------------------------------------------------------------

def markdown(runs: list[Run]) -> str:
    engine = {(r.mode, r.vad, r.legs): r for r in runs if r.impl == "engine"}
    lines = [
        "| mode | VAD | impl | N | % core/leg | µs/leg/tick | CPU % core | tick p50 ms | tick p99 ms "
        "| tick CPU p99 ms | overruns | real time | baseline/engine | load |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in runs:
        ratio = "-"
        mine = engine.get((r.mode, r.vad, r.legs))
        if r.impl == "python" and mine is not None:
            ratio = f"{r.us_per_leg_tick / mine.us_per_leg_tick:.1f}x"
        dagger = "†" if r.impl == "python" and r.mode == "udp" else ""
        cpu99 = f"{r.cpu_p99:.2f}" if r.tick_cpu else "-"
        lines.append(
            f"| {r.mode} | {r.vad} | {r.impl} | {r.legs} | {r.core_pct_per_leg:.3f} "
            f"| {r.us_per_leg_tick:.1f} | {r.cpu_pct:.0f} | {r.p50:.2f}{dagger} | {r.p99:.2f}{dagger} "
            f"| {cpu99} | {r.overruns} | {'yes' if r.real_time else 'no'} | {ratio} | {r.load:.1f} |")
    return "\n".join(lines)


def details(runs: list[Run]) -> str:
    lines = []
    for r in runs:
        n = r.notes
        parts = [f"{r.seconds:.1f} s, {r.leg_frames} leg-frames, threads {r.threads}",
                 f"CPU {r.cpu_s:.2f} s (/proc/self/stat {n.get('stat_cpu_s', math.nan):.2f} s)",
                 f"main thread waited for a CPU {n.get('wait_pct', math.nan):.1f} % of the time",
                 f"rx {n.get('rx', 0)} tx {n.get('tx', 0)} speaking {n.get('speaking', 0)}",
                 f"rec {n.get('rec_mb', 0.0):.0f} MB"]
        if "setup_us" in n:
            parts.append(f"leg setup {n['setup_us']:.0f} µs/leg (add_leg, set_vad, set_recorder, 2 items)")
        if r.mode == "udp":
            parts.append(f"gen sent {n.get('gen_sent')} got back {n.get('gen_received')} "
                         f"lag p99 {n.get('gen_lag_p99_ms', math.nan):.2f} "
                         f"max {n.get('gen_lag_max_ms', math.nan):.1f} ms "
                         f"cpu {n.get('gen_cpu_pct', math.nan):.0f} %, drops legs {n.get('socket_drops')} "
                         f"sink {n.get('sink_drops')}")
        why = r.failures()
        if why:
            parts.append("NOT real time: " + ", ".join(why))
        lines.append(f"- {r.mode}/{r.vad}/{r.impl}/N={r.legs}: " + "; ".join(parts))
    return "\n".join(lines)


def verdicts(runs: list[Run], floors: dict[tuple[str, str, int], Floor]) -> str:
    lines = []
    bars = {"webrtc": 0.1, "silero": 0.2}
    for r in runs:
        if r.impl == "engine" and r.legs == 1000 and r.vad in bars:
            bar = bars[r.vad]
            ok = r.core_pct_per_leg <= bar
            lines.append(f"- bar: {r.mode}/{r.vad} at N=1000 <= {bar} % core/leg "
                         f"({bar * 200:.0f} µs/leg/tick): measured {r.core_pct_per_leg:.3f} % "
                         f"({r.us_per_leg_tick:.1f} µs) -> "
                         f"{'MET' if ok else 'NOT MET'}")
    engine = {(r.mode, r.vad, r.legs): r for r in runs if r.impl == "engine"}
    for r in runs:
        mine = engine.get((r.mode, r.vad, r.legs))
        if r.impl == "python" and mine is not None:
            ratio = r.us_per_leg_tick / mine.us_per_leg_tick
            floor = floors.get((r.mode, r.vad, r.legs))
            ceiling = "" if floor is None else (
                f" (no-overhead ceiling: baseline {r.us_per_leg_tick:.1f} / floor {floor.total_us:.1f} µs "
                f"= {r.us_per_leg_tick / floor.total_us:.1f}x)")
            lines.append(f"- bar: engine >= 5x cheaper per leg than the Python baseline, {r.mode}/{r.vad} "
                         f"N={r.legs}: {ratio:.1f}x{ceiling} -> {'MET' if ratio >= 5.0 else 'NOT MET'}")
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.mode, r.vad, r.impl), []).append(r)
    for (mode, vad, impl), rs in groups.items():
        ok = [r.legs for r in rs if r.real_time]
        failed = [r.legs for r in rs if not r.real_time]
        best = max(ok) if ok else None
        us = [r.us_per_leg_tick for r in rs if r.real_time] or [r.us_per_leg_tick for r in rs]
        projected = FRAME_MS * 1000.0 / max(us[-1], 1e-9)
        lines.append(f"- largest N in real time, {mode}/{vad}/{impl}: {best if best is not None else 'none'} "
                     f"(measured {sorted(r.legs for r in rs)}; "
                     f"first failing N: {min(failed) if failed else '-'}; "
                     f"projected one-core N at {us[-1]:.1f} µs/leg/tick: {projected:.0f})")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------

def run_one(impl: str, n: int, vad: str, plan: Plan, prompt: np.ndarray, traffic: Traffic | None) -> Run:
    """One configuration: the engine or the baseline, over UDP (no traffic trace) or in memory."""
    print(f"  {'memory' if traffic else 'udp'}/{vad}/{impl} N={n} ...", file=sys.stderr, flush=True)
    if traffic is None:
        r = (run_engine_udp if impl == "engine" else run_python_udp)(n, vad, plan, prompt)
    else:
        r = (run_engine_memory if impl == "engine" else run_python_memory)(n, vad, plan, traffic, prompt)
    print(f"    {r.us_per_leg_tick:.1f} µs/leg/tick, p99 {r.p99:.2f} ms, real time {r.real_time}",
          file=sys.stderr, flush=True)
    return r


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", type=int, nargs="+", default=[100, 500, 1000, 2000])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per configuration")
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before the measured window")
    parser.add_argument("--silero-threads", type=int, default=1, help="onnxruntime threads of the engine")
    parser.add_argument("--silero-model", default="float", choices=["float", "int8"], help="Engine.set_silero")
    parser.add_argument("--silero-skip", action=argparse.BooleanOptionalAction, default=True,
                        help="skip silero inference for windows below the energy floor (default)")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds of digital silence after each pass of the looped speech (default 0)")
    parser.add_argument("--udp", action="store_true", help="loopback UDP sockets and a generator process")
    parser.add_argument("--vad", nargs="+", default=["webrtc", "silero"],
                        choices=["webrtc", "silero", "none"], help="none: no VAD, for a cost breakdown")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--baseline-legs", type=int, nargs="+", default=None,
                        help="N for the baseline (default: every N, in order, until it loses real time)")
    parser.add_argument("--quick", action="store_true", help="smoke test: N=20, 1.5 s")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--nice", type=int, default=0,
                        help="scheduling priority of this process and the generator (negative: root)")
    parser.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                        help="measure the shared floor (bench/floor.py) next to each baseline run")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="--udp: the generator on the last CPU, this process on the others (default)")
    args = parser.parse_args()
    if args.quick:
        args.legs, args.seconds, args.warmup = [20], 1.5, 0.7
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = 2 * max(args.legs) + 64
    if hard < need:
        print(f"need {need} file descriptors, the limit is {hard}", file=sys.stderr)
        return 2
    mode = "udp" if args.udp else "memory"
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)     # the spawned generator inherits it
    cpus = sorted(os.sched_getaffinity(0))
    if args.udp and args.pin and len(cpus) > 1:
        Generator.cpu = cpus[-1]
        os.sched_setaffinity(0, set(cpus[:-1]))
    load0 = os.getloadavg()
    print(f"# engine bench: {mode}, {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
          f"nice {os.getpriority(os.PRIO_PROCESS, 0)}, pinned {mode == 'udp' and Generator.cpu is not None}")
    plan = Plan(args.seconds, args.warmup, args.seed, args.silero_threads, args.silero_model, args.silero_skip,
                args.pause)
    print(f"# {plan.seconds:g} s measured per configuration after {plan.warmup:g} s warm-up; traffic: PCMU "
          f"RTP, {LOSS:.0%} loss, {JITTER_MS:g} ms p95 jitter; full pipeline incl. recording and playout")
    if "silero" in args.vad:
        print(f"# silero: model {plan.silero_model}, level-gate skip {'on' if plan.silero_skip else 'off'}")
    if plan.pause_s:
        print(f"# {plan.pause_s:g} s of digital silence after each pass of the speech")
    prompt = make_prompt()
    runs: list[Run] = []
    floors: dict[tuple[str, str, int], Floor] = {}
    for vad in args.vad:
        baseline_alive = args.baseline
        for n in sorted(args.legs):
            traffic = None if args.udp else make_traffic(n, plan.traffic_seconds, plan.seed, plan.pause_s)
            runs.append(run_one("engine", n, vad, plan, prompt, traffic))
            wanted = n in args.baseline_legs if args.baseline_legs else baseline_alive
            if not wanted or vad == "none":
                continue
            b = run_one("python", n, vad, plan, prompt, traffic)
            runs.append(b)
            if args.floor:
                floors[(mode, vad, n)] = floor = measure_floor(n, vad, args.udp)
                print(f"    floor {floor.total_us:.1f} µs/leg/frame", file=sys.stderr, flush=True)
            baseline_alive = baseline_alive and b.real_time
            del traffic
            gc.collect()
    load1 = os.getloadavg()
    print()
    print(markdown(runs))
    print()
    print("† UDP baseline: no tick; the column is each leg's frame lateness (done - scheduled).")
    print(f"load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    print()
    print(verdicts(runs, floors))
    print()
    print(details(runs))
    if floors:
        print()
        print("Shared floor (bench/floor.py: DSP in batches with warm caches, the WebRTC VAD per frame, "
              "200 ms WAV writes, and over UDP one datagram out and in per leg; µs per leg per frame):")
        for (fmode, fvad, fn), f in floors.items():
            print(f"- {fmode}/{fvad} N={fn}: {f.describe()}")
        print(f"- one empty system call: {syscall_entry_us():.2f} µs (all that batching datagrams into one "
              f"sendmmsg/recvmmsg can save per datagram)")
        if args.udp:
            n = max(fn for (_m, _v, fn) in floors)
            tx, rx = mmsg_us(n)
            print(f"- {n} datagrams through one socket: sendmmsg {tx:.2f}, recvmmsg (64 a call) {rx:.2f} µs "
                  f"each (against 'udp send' and 'udp recv' above: one socket per leg)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
