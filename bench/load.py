"""A thousand phone calls on one host: server CPU, RSS, frames and setup per call at N = 100, 500, 1000.

    python bench/load.py [--calls 100,500,1000] [--vad webrtc|silero] [--silero-model float|int8] [--silero-rate auto]
                         [--workers 1] [--rate 50] [--seconds 20] [--warmup 3] [--placement split|shared] [--sipp-check]
                         [--quick] [--json FILE]

Three processes per N, as in production (bench/sip_calls.py's ``run_sip`` sets them up; this file only
chooses what each call does, runs the N's one after another and judges them):
- the server: ``python -m pbx serve --config <tmp>`` with ``workers = --workers``, SIP on a loopback
  port, an RTP port range, the webhook pointing at the application; no dumps (none is asked for);
- the application (sip_calls.py ``--load``): it answers each webhook, opens the call's ``/call/sip``
  WebSocket, ``accept``s with PCMU, the ``--vad`` VAD (webrtc or silero) and a recorder (a stereo WAV per
  call), ``play``s a 6 s file prompt of espeak-ng speech on ``answer`` and again on every ``trackEnd``,
  and receives every event;
- the caller, bench/sip_load.py: our UAC over one SIP socket, INVITEs at ``--rate`` per second (50), every
  call's PCMU RTP of espeak-ng speech with 1 % loss and 30 ms p95 jitter from one UDP socket, sent in
  batches (sendmmsg) on a real-time schedule, the server's RTP counted per call; under SCHED_FIFO as root.

Each call is held until all N are up, ``--warmup`` more seconds, then a ``--seconds`` window. Measured
over that window (sip_calls.py's sampler):
- server CPU per call: utime + stime of every thread of the server and of its worker processes
  (``/proc/<pid>/stat`` of each process of the tree), / window / N, in % of a core;
- RSS per call: (VmRSS summed over the server's processes at the window's end - after a priming call) / N;
- late or missing outbound frames: the server's ``media_skipped_frames`` over the window (/health) per
  frame due (N x 50 x window), and the server's RTP the generator received against 50 a second of
  each call's hold (over the whole call);
- inbound loss: the server's ``hangup.extra.rtp`` packetsLost / (received + lost), against the 1 % the
  generator drops;
- setup latency: INVITE sent -> 200 OK received at the generator, p50 / p99, at ``--rate`` calls/s;
- the generator's own CPU (over the window, and over its whole run) and its late-send ratio: a run
  where it sent more than 0.01 % of its packets over 5 ms late is VOID (said in the table, and it
  does not count as holding).

A row holds (the issue's acceptance bars, for webrtc VAD) when every call came up with audio both ways,
the run is not VOID, the server took at most 1.5 cores, at most 0.1 % of frames were late or missing,
and RSS per call is at most 2 MiB. "largest N that holds" is the largest such N of the run.

Admission control is off (``capacity_load = 0``) unless ``--capacity-load`` sets it: the bench looks for
where the server itself stops holding. (With the server's default, 0.8, N = 1000 on two workers
held with no call refused: bench/RESULTS.md, "A thousand calls".)

Placement (``--placement``): ``split`` (default) pins the server to every CPU but the last and the
application with the generator to the last (on 2 cores: one each), the generator under SCHED_FIFO so
that its sends never wait behind the application; ``shared`` pins nothing (a multi-worker server spread
over both cores with the others).

``--sipp-check`` adds the cross-check at 100 calls with sipp as the caller (``sip_calls.py --generator
sipp``: PCMA from a pcap, no loss or jitter; root), beside the same N with our generator.
``--quick``: 10 calls, 1 s warm-up, 3 s window, no cross-check: the smoke run tests/test_bench_load.py
runs; its bars are every call up with audio both ways and a valid (not VOID) generator.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from sip_calls import pct_per_call, percentile, run_sip, sipp_problem
from sip_load import LATE_LIMIT, LATE_MS
from ws_support import ROOT, fmt, load_average

MAX_CORES = 1.5                 # the acceptance bars (issue 13, webrtc VAD)
MAX_LATE = 1e-3                 # late or missing outbound frames
MAX_RSS_MIB = 2.0
LOSS = 0.01                     # what the generator drops and delays
JITTER_MS = 30.0
FRAMES_PER_S = 50


def run_args(args: argparse.Namespace, calls: int, generator: str = "own") -> argparse.Namespace:
    """sip_calls.run_sip's arguments for one N."""
    own = generator == "own"
    return argparse.Namespace(
        calls=calls, rate=args.rate, seconds=args.seconds, warmup=args.warmup, generator=generator,
        loss=LOSS if own else 0.0, jitter_ms=JITTER_MS if own else 0.0, play=True,
        pin=args.placement == "split", nice=0, workers=args.workers,
        codec="pcmu" if own else "pcma", vad=args.vad,          # sipp's pcap is PCMA
        capacity_load=args.capacity_load, silero_model=args.silero_model, silero_rate=args.silero_rate)


def figures(r: dict[str, Any], calls: int) -> dict[str, Any]:
    """One run's row: the measures and whether it holds."""
    wall = r.get("wall_s", math.nan)
    pct = pct_per_call(r, calls)
    rss = (r["rss_kib"] - r["rss_idle_kib"]) / calls / 1024 if "rss_kib" in r else math.nan
    frames_due = calls * FRAMES_PER_S * wall
    skipped = r.get("skipped_window")
    skipped_ratio = skipped / frames_due if skipped is not None and frames_due > 0 else math.nan
    expected = r.get("gen_rx_expected", 0)
    missing = max(0, expected - r.get("gen_rx_total", 0)) / expected if expected else math.nan
    received, lost = r.get("rx_packets_total", 0), r.get("rx_lost", 0)
    up_with_audio = r["max_live"] == calls and r["with_audio"] == calls and r.get("caller_failed", 1) == 0 \
        and r.get("gen_with_audio", calls) == calls and "wall_s" in r
    row = {
        "calls": calls, "caller": r["caller"], "window_s": wall, "server_pct_per_call": pct,
        "server_cores": pct * calls / 100.0, "rss_mib_per_call": rss, "skipped_window": skipped,
        "skipped_ratio": skipped_ratio, "missing_ratio": missing,
        "inbound_loss": lost / (received + lost) if received + lost else math.nan,
        "setup_p50_ms": percentile(r["setup_ms"], 50), "setup_p99_ms": percentile(r["setup_ms"], 99),
        "setup_rate": r["setup_rate"], "max_live": r["max_live"], "with_audio": r["with_audio"],
        "gen_cpu_window_pct": 100 * r["caller_cpu_s"] / wall if "caller_cpu_s" in r else math.nan,
        "gen_cpu_run_pct": r.get("gen_cpu_pct", math.nan), "late_ratio": r.get("late_ratio", math.nan),
        "void": bool(r.get("void", False)),
        "app_cpu_pct": 100 * r["app_cpu_s"] / wall if "app_cpu_s" in r else math.nan,
        "speaking_per_call": r["speaking_per_call"], "tracks_per_call": r["tracks_per_call"],
        "recordings": r["recordings"], "errors": r["errors"], "error_count": r["error_count"],
        "server_wait_pct": 100 * r["server_wait_s"] / wall if "server_wait_s" in r else math.nan,
        "without_audio": r.get("without_audio", []), "up_with_audio": up_with_audio,
        "server_warnings": r.get("server_warnings", []), "health_errors": r.get("health_errors", []),
        "failed_calls": r.get("caller_failed"),
        "failed_kinds": r.get("failed_kinds") or {}, "late_at": r.get("gen_late_at", [])[:20],
        "gen_scheduling": r.get("gen_scheduling", ""), "gen_steal_ms": r.get("gen_steal_ms", math.nan),
        "gen_wait_pct": r.get("gen_wait_pct", math.nan), "gen_lag_p99_ms": r.get("lag_p99_ms", math.nan),
    }
    row["failed_bars"] = failed_bars(row)
    row["holds"] = not row["failed_bars"]
    return row


def failed_bars(row: dict[str, Any]) -> list[str]:
    failed = []
    if not row["up_with_audio"]:
        failed.append(f"not every call up with audio both ways ({row['max_live']} up, {row['with_audio']} with audio; "
                      f"failed calls {row['failed_calls']} {row['failed_kinds'] or ''})")
    if row["void"]:
        failed.append(f"VOID: the generator sent {100 * row['late_ratio']:.4f} % of its packets over {LATE_MS:g} ms "
                      f"late (limit {100 * LATE_LIMIT:g} %)")
    if not row["server_cores"] <= MAX_CORES:
        failed.append(f"server {fmt(row['server_cores'], 2)} cores > {MAX_CORES}")
    late = max(row["skipped_ratio"], row["missing_ratio"])
    if not late <= MAX_LATE:
        failed.append(f"late or missing outbound frames {fmt(100 * late, 3)} % > {100 * MAX_LATE:g} %")
    if not row["rss_mib_per_call"] <= MAX_RSS_MIB:
        failed.append(f"RSS {fmt(row['rss_mib_per_call'], 2)} MiB per call > {MAX_RSS_MIB}")
    return failed


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| caller | N | server % core/call (cores) | RSS MiB/call | skipped frames (window) | server RTP "
             "missing at the caller | inbound loss | INVITE->200 p50 / p99 ms | up / with audio | generator % core "
             "window (run) | late sends | holds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        late = f"{100 * r['late_ratio']:.4f} %" + (" VOID" if r["void"] else "") if r["late_ratio"] == r["late_ratio"] \
            else "n/a"
        lines.append(
            f"| {r['caller']} | {r['calls']} | {fmt(r['server_pct_per_call'], 3)} ({fmt(r['server_cores'], 2)}) | "
            f"{fmt(r['rss_mib_per_call'], 2)} | {r['skipped_window']} ({fmt(100 * r['skipped_ratio'], 3)} %) | "
            f"{fmt(100 * r['missing_ratio'], 3)} % | {fmt(100 * r['inbound_loss'], 2)} % | "
            f"{fmt(r['setup_p50_ms'], 1)} / {fmt(r['setup_p99_ms'], 1)} | {r['max_live']} / {r['with_audio']} | "
            f"{fmt(r['gen_cpu_window_pct'], 1)} ({fmt(r['gen_cpu_run_pct'], 1)}) | {late} | "
            f"{'yes' if r['holds'] else 'NO'} |")
    return "\n".join(lines)


def details(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        count, low, median = r["recordings"]
        out.append(f"- {r['caller']} N={r['calls']}: window {fmt(r['window_s'], 1)} s; server waited for a CPU "
                   f"{fmt(r['server_wait_pct'], 1)} % of it; application {fmt(r['app_cpu_pct'], 1)} % of a core; "
                   f"setup {fmt(r['setup_rate'], 1)} calls/s; speaking events per call {r['speaking_per_call']:.1f}, "
                   f"prompts played to the end {r['tracks_per_call']:.1f}; recordings {count}/{r['calls']} "
                   f"(min {low:.1f} s, median {median:.1f} s); error events {r['error_count']} {r['errors'] or ''}"
                   + (f"; fails: {'; '.join(r['failed_bars'])}" if r["failed_bars"] else "")
                   + (f"; calls short of audio at the server: {r['without_audio']}" if r["without_audio"] else "")
                   + (f"; /health at the window's edges failed: {r['health_errors']}" if r["health_errors"] else "")
                   + (f"; server log: {len(r['server_warnings'])} warnings, the last: {r['server_warnings'][-2:]}"
                      if r["server_warnings"] else "")
                   + (f"; late packets (s after the first INVITE, lag ms): {r['late_at'][:8]}" if r["late_at"] else "")
                   + (f"; generator {r['gen_scheduling']}, lag p99 {fmt(r['gen_lag_p99_ms'], 1)} ms, waited for a "
                      f"CPU {fmt(r['gen_wait_pct'], 2)} %, CPUs stolen {fmt(r['gen_steal_ms'], 0)} ms"
                      if r["gen_scheduling"] else ""))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="100,500,1000", help="the N's, comma-separated")
    parser.add_argument("--vad", choices=["webrtc", "silero"], default="webrtc")
    parser.add_argument("--silero-model", choices=["float", "int8"], default="float",
                        help="the server's silero_model (with --vad silero)")
    parser.add_argument("--silero-rate", choices=["16000", "auto"], default="16000",
                        help="the server's silero_rate (auto: PCMU legs on the model's 8 kHz graph)")
    parser.add_argument("--workers", type=int, default=1, help="the server's workers (config key workers)")
    parser.add_argument("--rate", type=float, default=50.0, help="new calls per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds with every call up")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after the N-th answer before the window")
    parser.add_argument("--placement", choices=["split", "shared"], default="split",
                        help="split: server on all CPUs but the last, application and generator on the last; "
                             "shared: no pinning")
    parser.add_argument("--capacity-load", type=float, default=0.0,
                        help="the server's capacity_load (admission control); default 0: unchecked, so that the "
                             "bench finds where the server itself stops holding")
    parser.add_argument("--sipp-check", action="store_true", help="also run 100 calls with sipp as the caller")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 calls, 3 s window")
    parser.add_argument("--json", type=Path, help="write the rows as JSON to this file")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.seconds, args.warmup, args.sipp_check = "10", 3.0, 1.0, False
    ns = sorted({int(n) for n in args.calls.split(",") if n.strip()})
    if not ns or min(ns) < 1 or args.workers < 1:
        parser.error("--calls needs positive N's and --workers at least 1")
    script = Path(sys.argv[0]).resolve()
    print(f"# command: python {script.relative_to(ROOT) if script.is_relative_to(ROOT) else script} "
          f"{' '.join(sys.argv[1:])}")
    print(f"# N={ns} at {args.rate:g} calls/s, PCMU with {LOSS:.0%} loss and {JITTER_MS:g} ms jitter, {args.vad} VAD"
          f"{f' ({args.silero_model} model, rate {args.silero_rate})' if args.vad == 'silero' else ''}, "
          f"stereo recorder, file prompt replayed; workers {args.workers}, placement {args.placement}; "
          f"{os.cpu_count()} CPUs, load average {load_average()}", flush=True)
    plan = [(n, "own") for n in ns]
    if args.sipp_check:
        problem = sipp_problem()
        if problem is not None:
            print(f"# no sipp cross-check: {problem}")
        else:
            plan.insert(0, (100, "sipp"))
    rows = []
    for n, generator in plan:
        with tempfile.TemporaryDirectory(prefix="pypbx-bench-load-") as tmp:
            try:
                result = run_sip(run_args(args, n, generator), Path(tmp))
            except RuntimeError as exc:
                print(f"  N={n} ({generator}) failed to run: {str(exc)[:2000]}", flush=True)
                continue
        row = figures(result, n)
        row["caller"] = "sipp" if generator == "sipp" else "bench/sip_load.py"
        row["load_average"] = load_average()
        rows.append(row)
        print(f"  done: N={n} ({row['caller']}): {fmt(row['server_pct_per_call'], 3)} % core/call, "
              f"holds: {'yes' if row['holds'] else 'no: ' + '; '.join(row['failed_bars'])}; "
              f"load average {row['load_average']}", flush=True)
    print()
    print(table(rows))
    print()
    print(details(rows))
    held = [r["calls"] for r in rows if r["holds"] and r["caller"] != "sipp"]
    print(f"\nlargest N that holds: {max(held) if held else 'none'}; load average after: {load_average()}")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, default=str))
    ours = [r for r in rows if r["caller"] != "sipp"]
    if any(r["void"] for r in rows):
        print("VOID: a run's generator sent too many packets late: its timing, not the server's, shaped it")
    return 0 if len(ours) == len(ns) and all(r["holds"] for r in ours) else 1


if __name__ == "__main__":
    sys.exit(main())
