"""Concurrent WebSocket calls: the call server's CPU per call and the timeliness of its 20 ms frames.

    python bench/ws_calls.py [--calls 50 200] [--seconds 20] [--warmup 3] [--vad webrtc silero]
                             [--quick] [--no-pin]

Each configuration runs the server in its own process, and the load generator in another one
(asyncio, every session in one process, on the sans-I/O ``websockets`` protocol: bench/ws_support.py).

Per call (N at once): connect to ``/call?id=bench-i``; ``invite`` with ``codec: "pcm"``, VAD
(``webrtc``, or ``silero``) and ``recorder`` (a 16 kHz WAV per call, in the server's data directory).
The invites go out one after another over 1 s, as calls arrive at any time in service (``--burst``
sends them all at once: the server then answers every call within one tick, and every call's 32 ms
silero windows fall due on the same ticks, a worst case). Then every call sends ``play`` of a long
prompt, so the server streams 20 ms frames back for the whole run, while the client streams real
speech (espeak-ng, support/audio.py, looped; call i starts at its own point of the loop) as
640-byte binary messages (20 ms of 16 kHz PCM) on the wall clock: call i's frame k is due at
``T0 + phase_i + k * 20 ms`` with the phases spread evenly over 20 ms (1 ms steps). The prompt is
played rather than synthesised: one espeak worker thread synthesising N x 25 s of speech would
dominate the CPU being measured. The prompt is speech whose frame k carries k in its first two
samples (a watermark the server passes unchanged on a pcm call), so each received frame is known.

Floor, in the same run and at the same N: ``bench/ws_floor.py``, a bare ``websockets`` server with
the same server options that answers ``invite``, receives the same frames and sends the same prompt
frames back from one 20 ms pacer task. server - floor is what the call logic adds to the transport.

Measures (over the window ``[T0 + warmup, T0 + warmup + seconds]``, all calls running).
- server % core per call: utime + stime of the server process (every thread, ``/proc/<pid>/stat``)
  over the window, / window wall time / N x 100. The same for the floor.
- late-frame ratio: for call i, base_i = min over frames k received in the window of
  (arrival_k - k x 20 ms): the schedule the fastest frame shows. Frame k is *due* at
  base_i + k x 20 ms; the frames due in the window are expected; an expected frame is *late* when it
  arrives more than 40 ms after it is due, or never (lost: counted in the ratio and also shown
  alone). Ratio = late / expected over all calls. Lateness p99 is over the expected frames received.
- generator lateness: for every frame the generator sends, the time it was written minus the time it
  was due (p99 and max, ms), and the generator's own CPU (% of a core). It keeps up when p99 < 20 ms
  (one frame period; every frame of the run is sent, a late write only delays it).
- CPU wait: the time each process was runnable but waited for a CPU (``/proc/<pid>/task/*/schedstat``),
  as % of the window: other processes on a shared host show up here, not in the CPU figures.
- sanity (printed under the table): VAD events per call, error events, frames the server reports
  skipped (``/health``), the media tick's share of the server's time, the recordings' length.

Target: <= 1 % of one core per call for the call server (Pipecat 1.14, WebSocket transport, silero
VAD and recording: ~5 % of a core per call on this kind of machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import wave
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ws_support import (
    FRAME_S,
    PROMPT_NAME,
    ServerProcess,
    WsClient,
    cpu_wait_s,
    fmt,
    frame_index,
    http_get_json,
    load_average,
    open_session,
    percentile,
    placement,
    process_cpu_s,
    speech,
    speech_frames,
)

LATE_S = 0.040
GEN_LAG_LIMIT_MS = 20.0         # one frame: the server's inbound buffer absorbs less than that
TARGET_PCT = 1.0
TAIL_S = 0.5                    # traffic after the window, so frames due at its end can arrive
CONNECT_BATCH = 25
INVITE_SPREAD_S = 1.0


@dataclass
class Spec:
    kind: str                   # "pbx" or "floor"
    vad: str | None
    calls: int
    seconds: float
    warmup: float
    invite_spread: float        # seconds over which the calls are answered, one after another
    port: int
    server_pid: int


# -- generator (runs in its own process) -----------------------------------------------------------

@dataclass
class Call:
    index: int
    client: WsClient
    audio_pos: int
    rx_index: array[int] = field(default_factory=lambda: array("i"))
    rx_time: array[float] = field(default_factory=lambda: array("d"))
    other_frames: int = 0
    events: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def on_binary(self, arrival: float, payload: bytes) -> None:
        k = frame_index(payload)
        if k < 0:
            self.other_frames += 1
            return
        self.rx_index.append(k)
        self.rx_time.append(arrival)

    def on_event(self, arrival: float, event: dict[str, Any]) -> None:
        name = str(event.get("event"))
        self.events[name] = self.events.get(name, 0) + 1
        if name == "error":
            self.errors.append(f"{event.get('sender')}: {event.get('error')}")


class Pacer:
    """Sends every call's next speech frame on its own 20 ms grid; one timer callback for all calls."""

    def __init__(self, calls: list[Call], frames: list[bytes], t0: float, end: float,
                 window: tuple[float, float]) -> None:
        self.loop = asyncio.get_running_loop()
        self.frames = frames
        self.t0 = t0
        self.end = end
        self.window = window
        self.buckets: dict[int, list[Call]] = {}
        for i, call in enumerate(calls):
            self.buckets.setdefault(int(20 * i / len(calls)), []).append(call)
        self.phases = sorted(self.buckets)
        self.tick = 0
        self.slot = 0
        self.sent = 0
        self.lateness = array("d")          # seconds, frames due in the window
        self.done: asyncio.Future[None] = self.loop.create_future()

    def _due(self) -> float:
        return self.t0 + self.tick * FRAME_S + self.phases[self.slot] / 1000.0

    def start(self) -> None:
        self.loop.call_at(self._due(), self._run)

    def _run(self) -> None:
        frames, n = self.frames, len(self.frames)
        lo, hi = self.window
        due = self._due()
        while due <= time.monotonic():
            if due >= self.end:
                self.done.set_result(None)
                return
            for call in self.buckets[self.phases[self.slot]]:
                call.client.send_audio(frames[call.audio_pos % n])
                call.audio_pos += 1
                if lo <= due < hi:
                    self.lateness.append(time.monotonic() - due)
            self.sent += len(self.buckets[self.phases[self.slot]])
            self.slot += 1
            if self.slot == len(self.phases):
                self.slot = 0
                self.tick += 1
            due = self._due()
        self.loop.call_at(due, self._run)


def frame_stats(calls: list[Call], window: tuple[float, float]) -> dict[str, Any]:
    lo, hi = window
    expected = late = lost = duplicates = 0
    lateness: list[np.ndarray] = []
    for call in calls:
        k = np.frombuffer(call.rx_index, dtype=np.int32).astype(np.int64)
        t = np.frombuffer(call.rx_time, dtype=np.float64)
        inside = (t >= lo) & (t <= hi)
        if not inside.any():
            continue
        base = float(np.min(t[inside] - k[inside] * FRAME_S))
        first, last = int(np.ceil((lo - base) / FRAME_S)), int(np.floor((hi - base) / FRAME_S))
        wanted = (k >= first) & (k <= last)
        got_k, got_t = k[wanted], t[wanted]
        unique_k, first_pos = np.unique(got_k, return_index=True)
        duplicates += len(got_k) - len(unique_k)
        delay = got_t[first_pos] - (base + unique_k * FRAME_S)
        n_expected = last - first + 1
        expected += n_expected
        lost += n_expected - len(unique_k)
        late += int(np.count_nonzero(delay > LATE_S))
        lateness.append(delay)
    delays = np.concatenate(lateness) if lateness else np.zeros(0)
    return {"expected": expected, "late": late, "lost": lost, "duplicates": duplicates,
            "late_ratio": (late + lost) / expected if expected else float("nan"),
            "lateness_p50_ms": percentile(delays, 50) * 1000, "lateness_p99_ms": percentile(delays, 99) * 1000,
            "lateness_max_ms": float(delays.max() * 1000) if len(delays) else float("nan")}


async def generate(spec: Spec) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    frames = speech_frames(speech())
    started = time.monotonic()
    calls: list[Call] = []
    for first in range(0, spec.calls, CONNECT_BATCH):
        indices = range(first, min(first + CONNECT_BATCH, spec.calls))
        clients = await asyncio.gather(*(open_session(spec.port, f"bench-{i}") for i in indices))
        for i, client in zip(indices, clients, strict=True):
            call = Call(i, client, audio_pos=(i * 37) % len(frames))
            client.on_binary, client.on_event = call.on_binary, call.on_event
            calls.append(call)
    answers = []
    setup_start = loop.time()
    for n, call in enumerate(calls):
        delay = setup_start + spec.invite_spread * n / len(calls) - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        option: dict[str, Any] = {"codec": "pcm"}
        if spec.kind == "pbx":
            option["vad"] = {"type": spec.vad}
            option["recorder"] = {"recorderFile": f"bench/call-{call.index}.wav"}
        answers.append(call.client.wait_event(lambda e: e.get("event") in ("answer", "error")))
        call.client.command({"command": "invite", "option": option})
    for _, event in await asyncio.wait_for(asyncio.gather(*answers), 60.0):
        if event.get("event") != "answer":
            raise RuntimeError(f"invite failed: {event}")
    connect_s = time.monotonic() - started
    for call in calls:
        call.client.command({"command": "play", "url": PROMPT_NAME})

    t0 = loop.time() + 0.05
    window = (t0 + spec.warmup, t0 + spec.warmup + spec.seconds)
    pacer = Pacer(calls, frames, t0, window[1] + TAIL_S, window)
    samples: dict[str, Any] = {}

    def sample(name: str) -> None:
        samples[name] = {"wall": time.monotonic(), "server": process_cpu_s(spec.server_pid),
                         "gen": process_cpu_s(os.getpid()), "server_wait": cpu_wait_s(spec.server_pid),
                         "gen_wait": cpu_wait_s(os.getpid())}
        if spec.kind == "pbx":
            task = loop.create_task(http_get_json(spec.port, "/health"))
            task.add_done_callback(lambda t: samples.__setitem__(f"health_{name}", t.result()))

    loop.call_at(window[0], sample, "start")
    loop.call_at(window[1], sample, "end")
    pacer.start()
    await pacer.done
    await asyncio.sleep(0.2)

    hangups = [c.client.wait_event(lambda e: e.get("event") == "hangup") for c in calls]
    for call in calls:
        call.client.command({"command": "hangup", "reason": "bench done"})
    done, _ = await asyncio.wait([asyncio.ensure_future(h) for h in hangups], timeout=15.0)
    hung_up = sum(1 for h in done if h.exception() is None)
    for call in calls:
        call.client.close()
    await asyncio.sleep(0.2)

    start, end = samples["start"], samples["end"]
    wall = end["wall"] - start["wall"]
    lag = np.frombuffer(pacer.lateness, dtype=np.float64) * 1000
    result: dict[str, Any] = {
        "wall_s": wall, "server_cpu_s": end["server"] - start["server"], "gen_cpu_s": end["gen"] - start["gen"],
        "server_wait_s": end["server_wait"] - start["server_wait"], "gen_wait_s": end["gen_wait"] - start["gen_wait"],
        "gen_lateness_p99_ms": percentile(lag, 99), "gen_lateness_max_ms": float(lag.max()) if len(lag) else 0.0,
        "frames_sent": pacer.sent, "connect_s": connect_s, "hung_up": hung_up,
        "other_frames": sum(c.other_frames for c in calls),
        "speaking_per_call": float(np.mean([c.events.get("speaking", 0) for c in calls])),
        "silence_per_call": float(np.mean([c.events.get("silence", 0) for c in calls])),
        "errors": sorted({e for c in calls for e in c.errors})[:5],
        "error_count": sum(len(c.errors) for c in calls),
        "call_seconds": pacer.end - t0,
        **frame_stats(calls, window),
    }
    if "health_start" in samples and "health_end" in samples:
        h0, h1 = samples["health_start"], samples["health_end"]
        result["skipped_frames"] = h1["media_skipped_frames"] - h0["media_skipped_frames"]
        result["tick_s"] = h1["media_tick_cpu_seconds"] - h0["media_tick_cpu_seconds"]
    return result


# -- orchestration ---------------------------------------------------------------------------------

@dataclass
class Run:
    label: str
    kind: str
    vad: str | None
    calls: int
    result: dict[str, Any]
    recordings: tuple[int, float, float] | None = None    # count, min and median seconds

    @property
    def pct_per_call(self) -> float:
        r = self.result
        return float(100.0 * r["server_cpu_s"] / r["wall_s"] / self.calls)

    @property
    def generator_ok(self) -> bool:
        return bool(self.result["gen_lateness_p99_ms"] < GEN_LAG_LIMIT_MS)


def run_one(kind: str, vad: str | None, calls: int, args: argparse.Namespace) -> Run:
    label = "floor (bare websockets)" if kind == "floor" else f"{vad} VAD + recording"
    prompt_s = args.warmup + args.seconds + 20.0
    server_cpus, gen_cpus = pin_sets() if args.pin else (None, None)
    server = ServerProcess(kind, prompt_s, cpus=server_cpus, nice=args.nice)
    try:
        server.wait_ready()
        spec = Spec(kind, vad, calls, args.seconds, args.warmup, 0.0 if args.burst else INVITE_SPREAD_S,
                    server.port, server.pid)
        argv = [sys.executable, __file__, "--generate", json.dumps(spec.__dict__)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.warmup + args.seconds + 180,
                              preexec_fn=placement(gen_cpus, args.nice))
        if proc.returncode != 0:
            raise RuntimeError(f"generator failed ({label}, N={calls}):\n{proc.stderr[-4000:]}\n"
                               f"server log:\n{server.log()}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        code = server.stop()
        if code not in (0, None):
            print(f"warning: {label} server exited with {code}:\n{server.log()}", file=sys.stderr)
        run = Run(label, kind, vad, calls, result)
        if kind == "pbx":
            run.recordings = recording_lengths(server.data_dir / "recordings" / "bench", calls)
        return run
    finally:
        server.stop()
        server.cleanup()


def pin_sets() -> tuple[set[int], set[int]]:
    """Server on the first CPU(s), generator on the last one."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return set(cpus[:-1]), {cpus[-1]}


def recording_lengths(folder: Path, calls: int) -> tuple[int, float, float]:
    lengths = []
    for i in range(calls):
        path = folder / f"call-{i}.wav"
        if path.exists():
            with wave.open(str(path), "rb") as w:
                lengths.append(w.getnframes() / w.getframerate())
    if not lengths:
        return 0, 0.0, 0.0
    return len(lengths), min(lengths), float(np.median(lengths))


def table(runs: list[Run]) -> str:
    floors = {r.calls: r for r in runs if r.kind == "floor"}
    lines = [
        "| configuration | N | server % core/call | floor % core/call | added over floor | late frames "
        "(lost) | frame lateness p99 ms | generator lateness p99 / max ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        r = run.result
        floor = floors.get(run.calls)
        floor_pct = floor.pct_per_call if floor is not None else float("nan")
        added = run.pct_per_call - floor_pct if run.kind != "floor" else 0.0
        gen = f"{fmt(r['gen_lateness_p99_ms'], 2)} / {fmt(r['gen_lateness_max_ms'], 1)}"
        if not run.generator_ok:
            gen += " (behind)"
        added_text = "-" if run.kind == "floor" or floor is None else f"{added:+.3f}"
        lines.append(
            f"| {run.label} | {run.calls} | {run.pct_per_call:.3f} | {fmt(floor_pct, 3)} | {added_text} | "
            f"{100 * r['late_ratio']:.3f} % ({r['lost']}) | {fmt(r['lateness_p99_ms'], 1)} | {gen} |")
    return "\n".join(lines)


def details(runs: list[Run]) -> str:
    out = []
    for run in runs:
        r = run.result
        line = (f"- {run.label}, N={run.calls}: server CPU {r['server_cpu_s']:.2f} s over {r['wall_s']:.1f} s "
                f"({100 * r['server_cpu_s'] / r['wall_s']:.1f} % of a core), waited for a CPU "
                f"{100 * r['server_wait_s'] / r['wall_s']:.1f} % of the time; generator CPU "
                f"{100 * r['gen_cpu_s'] / r['wall_s']:.1f} %, waited {100 * r['gen_wait_s'] / r['wall_s']:.1f} %; "
                f"frames expected {r['expected']}, late "
                f"{r['late']}, lost {r['lost']}, lateness p50 {fmt(r['lateness_p50_ms'], 2)} ms, max "
                f"{fmt(r['lateness_max_ms'], 1)} ms; connect+invite {r['connect_s']:.1f} s; hangups "
                f"{r['hung_up']}/{run.calls}")
        if r["other_frames"] or r["duplicates"]:
            line += f"; frames not from the prompt {r['other_frames']}, duplicates {r['duplicates']}"
        if run.kind == "pbx":
            line += (f"; VAD events/call: speaking {r['speaking_per_call']:.1f}, silence "
                     f"{r['silence_per_call']:.1f}; error events {r['error_count']}")
            if "tick_s" in r:
                line += (f"; media tick {100 * r['tick_s'] / r['wall_s']:.1f} % of wall "
                         f"({100 * r['tick_s'] / max(r['server_cpu_s'], 1e-9):.0f} % of the server's CPU), "
                         f"engine skipped frames {r['skipped_frames']}")
            if run.recordings is not None:
                count, low, median = run.recordings
                line += (f"; recordings {count}/{run.calls}, length min {low:.1f} s, median {median:.1f} s "
                         f"(call {r['call_seconds']:.1f} s of audio)")
            if r["errors"]:
                line += f"; errors: {r['errors']}"
        out.append(line)
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--vad", nargs="+", default=["webrtc", "silero"], choices=["webrtc", "silero"])
    parser.add_argument("--no-floor", dest="floor", action="store_false")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not pin the server to the first CPUs and the generator to the last")
    parser.add_argument("--burst", action="store_true",
                        help="answer every call at once instead of one after another over 1 s")
    parser.add_argument("--nice", type=int, default=0,
                        help="nice value of the server and generator processes (e.g. -10 on a shared host; root)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=5 for 3 s")
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        result = asyncio.run(generate(Spec(**json.loads(args.generate))))
        print(json.dumps(result))
        return 0
    if args.quick:
        args.calls, args.seconds, args.warmup = [5], 3.0, 1.0
    print(f"# /call sessions: {args.seconds:g} s measured after {args.warmup:g} s warm-up, "
          f"pcm 20 ms frames both ways; {os.cpu_count()} CPUs, load average {load_average()}, "
          f"pinned: {args.pin}, nice: {args.nice}, invites: {'all at once' if args.burst else 'over 1 s'}",
          flush=True)
    runs: list[Run] = []
    for calls in args.calls:
        configs: list[tuple[str, str | None]] = [("floor", None)] if args.floor else []
        configs += [("pbx", vad) for vad in args.vad]
        for kind, vad in configs:
            run = run_one(kind, vad, calls, args)
            runs.append(run)
            print(f"  done: {run.label}, N={calls}: {run.pct_per_call:.3f} % core/call, late "
                  f"{100 * run.result['late_ratio']:.3f} %", flush=True)
    print()
    print(table(runs))
    print()
    print(details(runs))
    print(f"\nload average after: {load_average()}")
    worst = max((r.pct_per_call for r in runs if r.kind == "pbx"), default=0.0)
    print(f"target: <= {TARGET_PCT:g} % of one core per call; worst call-server configuration: {worst:.3f} % "
          f"({'meets' if worst <= TARGET_PCT else 'misses'} the target)")
    if not all(r.generator_ok for r in runs):
        print(f"warning: the generator fell behind (p99 lateness >= {GEN_LAG_LIMIT_MS:g} ms) in a run marked (behind)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
