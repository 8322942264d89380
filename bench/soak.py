"""Soak: 10,000 short SIP calls, then 200 long ones; the server's resources must come back to baseline.

    python bench/soak.py [--calls 10000] [--hold 3] [--concurrent 50] [--long-calls 200] [--long-hold 60]
                         [--workers 1] [--settle 30] [--quick] [--json FILE]

(``make soak``; not part of ``make test``: about 12 minutes.)

The server in its own process (``python -m pbx serve`` with ``workers``, bench/ws_support.py
``ServerProcess``); this process is the application (bench/sip_calls.py's ``App``: each webhook ->
``/call/sip`` WebSocket, ``accept`` with PCMU, webrtc VAD and a recorder, a file prompt replayed on
``trackEnd``) and the sampler; the caller is bench/sip_load.py in its own process (PCMU speech RTP both
ways; SCHED_FIFO as root). A priming call for each worker first, then:

1. ``--calls`` calls of ``--hold`` s at ``--concurrent`` at once (placed at concurrent / hold per second);
2. ``--long-calls`` calls of ``--long-hold`` s, all up together (placed at 50 per second).

Read from the server (all its processes: a multi-worker server is the supervisor and its workers):
file descriptors (``/proc/<pid>/fd``), threads (``/proc/<pid>/task``), VmRSS, and from ``GET /health``
the asyncio tasks, the RTP port pairs in use and the calls. Sampled after the priming calls (the
baseline: what a server that has taken a call in each process holds: a worker's first call opens its
engine's RTCP epoll set, kept for the next ones), every ``SAMPLE_S`` during the run, when the 2,000th
and the last short call have hung up, and after the run once they settle (polled for up to
``--settle`` s). A descriptor that does not come back is named by what it points to and in which
process.

Bars (exit status 1 when one fails, each printed):
- after the settle, file descriptors, RTP ports in use, asyncio tasks and calls are back at their
  baseline; threads at most the baseline plus the default executor's pool (min(32, CPUs + 4): its
  threads, once started, stay for the next blocking job, and are not a leak);
- RSS grows no more than 5 % from the 2,000th short call's hangup to the last's (the same share of
  the run in ``--quick``: from call ``calls / 5``);
- every call answered and held its whole time, no error event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sip_calls import PROMPT_S, App, SipCall, Spec, free_sip_port, process_tree, tree_rss_kib
from sip_load import LoadReport, LoadSpec, SipLoad
from ws_support import ROOT, ServerProcess, http_get_json, load_average

SAMPLE_S = 5.0
RSS_GROWTH = 0.05
RSS_FROM = 0.2                      # the RSS bar starts at this share of the short calls (2,000 of 10,000)
LONG_RATE = 50.0
PRIME_HOLD_S = 1.0
INODE = re.compile(r":\[\d+\]$")         # socket:[1234] -> socket
THREAD_SLACK = min(32, (os.cpu_count() or 1) + 4)      # concurrent.futures' default max_workers


@dataclass
class Sample:
    label: str
    at: float
    done: int                        # calls hung up so far (both phases)
    fds: int
    threads: int
    rss_kib: int
    health: dict[str, Any] = field(default_factory=dict)
    fd_kinds: dict[str, int] = field(default_factory=dict)     # what the descriptors are (see fd_kinds)

    def row(self) -> str:
        h = self.health
        return (f"| {self.label} | {self.done} | {self.fds} | {h.get('rtp_ports_in_use', '?')} | "
                f"{h.get('asyncio_tasks', '?')} | {self.threads} | {self.rss_kib / 1024:.1f} | {h.get('calls', '?')} |")


def fd_kinds(pid: int) -> dict[str, int]:
    """The server's descriptors by what they point to ("socket", "anon_inode:[eventpoll]", a path), and
    process ("supervisor" or "worker"): where a descriptor that did not come back is."""
    kinds: Counter[str] = Counter()
    for p in process_tree(pid):
        role = "supervisor" if p == pid else "worker"
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{p}/fd"):
                with contextlib.suppress(OSError):
                    target = INODE.sub("", os.readlink(f"/proc/{p}/fd/{fd}"))
                    kinds[f"{role} {target}"] += 1
    return dict(kinds)


def proc_counts(pid: int) -> tuple[int, int]:
    """(file descriptors, threads) over the server's processes."""
    fds = threads = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            fds += len(os.listdir(f"/proc/{p}/fd"))
            threads += len(os.listdir(f"/proc/{p}/task"))
    return fds, threads


class Soak:
    """The application for every phase (a fresh :class:`App` each, behind one webhook port) and the sampler."""

    def __init__(self, server: ServerProcess, sip_port: int, hook_port: int, args: argparse.Namespace,
                 work: Path) -> None:
        self.server, self.sip_port, self.hook_port, self.args, self.work = server, sip_port, hook_port, args, work
        self.samples: list[Sample] = []
        self.apps: list[App] = []
        self.app: App | None = None
        self.reports: list[LoadReport] = []
        self.marks: dict[int, str] = {}          # hangup count -> the sample's label

    def spec(self, calls: int, hold_s: float) -> Spec:
        return Spec(calls, 1.0, 0.0, 0.0, hold_s, self.sip_port, self.server.port, self.hook_port, self.server.pid,
                    str(self.work), True, "own", codec="pcmu", vad="webrtc")

    async def webhook(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.app is not None:
            await self.app.webhook(reader, writer)

    def done(self) -> int:
        return sum(1 for app in self.apps for c in app.calls if c.hangup_at is not None)

    async def sample(self, label: str) -> Sample:
        fds, threads = proc_counts(self.server.pid)
        s = Sample(label, time.monotonic(), self.done(), fds, threads, tree_rss_kib(self.server.pid),
                   fd_kinds=fd_kinds(self.server.pid) if not label.endswith("running") else {})
        self.samples.append(s)          # /proc first: the health request itself holds a descriptor
        with contextlib.suppress(OSError, ValueError):
            s.health = await http_get_json(self.server.port, "/health")
        return s

    def watch_hangups(self, app: App) -> None:
        """Sample exactly when the marked hangup counts are reached (RSS at call 2,000 and at the last)."""
        on_event = app.on_event
        base = self.done()

        def wrapped(call: SipCall, arrival: float, event: dict[str, Any]) -> None:
            on_event(call, arrival, event)
            if event.get("event") == "hangup" and call.index >= 0:
                label = self.marks.get(base + sum(1 for c in app.calls if c.hangup_at is not None))
                if label is not None:
                    asyncio.get_running_loop().create_task(self.sample(label))
        app.on_event = wrapped                  # type: ignore[method-assign]

    async def phase(self, name: str, calls: int, hold_s: float, rate: float, priming: bool = False) -> App:
        app = App(self.spec(calls, hold_s))
        app.priming = priming
        self.apps.append(app)
        self.app = app
        if not priming:
            self.watch_hangups(app)
        load = await SipLoad.start(LoadSpec("127.0.0.1", self.sip_port, calls, rate, hold_s,
                                            realtime=os.geteuid() == 0, codec="pcmu", seed=len(self.apps)))
        finish = asyncio.ensure_future(load.finish())
        while not finish.done():
            await asyncio.wait({finish}, timeout=SAMPLE_S)
            if not finish.done() and not priming:
                await self.sample(f"{name}, running")
        report = finish.result()
        self.reports.append(report)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(app.prime_done if priming else app.all_done, 15.0)
        print(f"  {name}: {report.summary().splitlines()[0]}", flush=True)
        return app

    async def settle(self, baseline: Sample) -> Sample:
        deadline = time.monotonic() + self.args.settle
        while True:
            s = await self.sample("after, settled")
            if not failures_after(baseline, s) or time.monotonic() > deadline:
                return s
            self.samples.pop()
            await asyncio.sleep(1.0)


def failures_after(base: Sample, after: Sample) -> list[str]:
    out = []
    for name, b, a in (("file descriptors", base.fds, after.fds),
                       ("RTP ports in use", base.health.get("rtp_ports_in_use"), after.health.get("rtp_ports_in_use")),
                       ("asyncio tasks", base.health.get("asyncio_tasks"), after.health.get("asyncio_tasks")),
                       ("calls", base.health.get("calls"), after.health.get("calls"))):
        if a is None or b is None or a > b:
            out.append(f"{name}: {a} after, baseline {b}")
    if after.fds > base.fds:
        grown = {k: after.fd_kinds.get(k, 0) - base.fd_kinds.get(k, 0) for k in after.fd_kinds
                 if after.fd_kinds.get(k, 0) > base.fd_kinds.get(k, 0)}
        out.append(f"descriptors more than at the baseline: {grown}")
    if after.threads > base.threads + THREAD_SLACK:
        out.append(f"threads: {after.threads} after, baseline {base.threads} (+ {THREAD_SLACK} allowed)")
    return out


async def soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sip_port, hook_port = free_sip_port(), free_sip_port()
    low = random.randrange(10000, 18000, 2)
    pairs = 2 * max(args.concurrent, args.long_calls) + 100
    extra = (f'[sip]\naddr = "127.0.0.1:{sip_port}"\nrtp_ports = [{low}, {low + 2 * pairs * args.workers}]\n'
             f'[webhook]\nurl = "http://127.0.0.1:{hook_port}/hook"\ndecision_timeout_secs = 30\n')
    server = ServerProcess("pbx", PROMPT_S, extra_config=extra, workers=args.workers)
    try:
        server.wait_ready()
        run = Soak(server, sip_port, hook_port, args, work)
        hooks = await asyncio.start_server(run.webhook, "127.0.0.1", hook_port)
        try:
            # a priming call for each worker (new calls go round-robin between idle ones): a worker's first
            # call opens what it keeps (its engine's RTCP epoll set), which is no leak of the soak's calls
            for _ in range(args.workers):
                prime = await run.phase("priming call", 1, PRIME_HOLD_S, 1.0, priming=True)
                if prime.prime is None or prime.prime.answer_at is None:
                    raise RuntimeError(f"the priming call failed: {prime.prime}\n{server.log()}")
            await asyncio.sleep(2.0)
            baseline = await run.sample(f"baseline (after {args.workers} priming call(s))")
            run.marks = {max(1, round(RSS_FROM * args.calls)): f"short call {max(1, round(RSS_FROM * args.calls))} "
                         "hung up", args.calls: f"short call {args.calls} hung up"}
            short = await run.phase(f"{args.calls} calls of {args.hold:g} s at {args.concurrent} at once", args.calls,
                                    args.hold, args.concurrent / args.hold)
            run.marks = {}
            long = await run.phase(f"{args.long_calls} calls of {args.long_hold:g} s together", args.long_calls,
                                   args.long_hold, LONG_RATE)
            after = await run.settle(baseline)
        finally:
            hooks.close()
        return judge(run, baseline, after, [short, long])
    finally:
        server.stop()
        server.cleanup()


def judge(run: Soak, baseline: Sample, after: Sample, apps: list[App]) -> dict[str, Any]:
    failures = failures_after(baseline, after)
    marked = {s.label: s for s in run.samples}
    first = next((s for label, s in marked.items() if label.startswith("short call") and s.done < run.args.calls), None)
    last = marked.get(f"short call {run.args.calls} hung up")
    growth = float("nan")
    if first is None or last is None:
        failures.append("RSS: no sample at the marked calls")
    else:
        growth = last.rss_kib / first.rss_kib - 1.0
        if growth > RSS_GROWTH:
            failures.append(f"RSS grew {100 * growth:.1f} % from call {first.done} to call {last.done} "
                            f"(> {100 * RSS_GROWTH:g} %)")
    reports = run.reports[run.args.workers:]          # not the priming calls
    for report in reports:
        if report.answered != report.calls or report.failures:
            failures.append(f"calls: {report.answered} of {report.calls} answered, failures {report.failures}")
    calls = [c for app in apps for c in app.calls]
    errors = sorted({e for c in calls for e in c.errors})
    if errors:
        failures.append(f"error events: {sum(len(c.errors) for c in calls)} ({errors[:3]})")
    return {"samples": [vars(s) for s in run.samples], "failures": failures, "rss_growth": growth,
            "hangup_reasons": sorted({c.hangup_reason for c in calls}),
            "late_ratio": [r.late_ratio for r in reports], "gen_cpu_pct": [r.cpu_pct for r in reports]}


def report(result: dict[str, Any]) -> str:
    lines = ["| when | calls hung up | file descriptors | RTP ports in use | asyncio tasks | threads | RSS MiB | "
             "calls up |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    samples = [Sample(**s) for s in result["samples"]]
    running = [s for s in samples if s.label.endswith("running")]
    shown = [s for s in samples if not s.label.endswith("running")]
    if running:
        peak = max(running, key=lambda s: s.fds)
        shown.insert(-1, Sample("peak while running (most descriptors)", peak.at, peak.done, peak.fds, peak.threads,
                                peak.rss_kib, peak.health))
    lines += [s.row() for s in shown]
    lines.append("")
    lines.append(f"RSS growth over the marked calls: {100 * result['rss_growth']:.2f} % (bar {100 * RSS_GROWTH:g} %); "
                 f"hangup reasons {result['hangup_reasons']}; generator late-send ratio per phase "
                 f"{[f'{100 * r:.4f} %' for r in result['late_ratio']]}, CPU "
                 f"{[f'{c:.1f} %' for c in result['gen_cpu_pct']]}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10_000, help="short calls")
    parser.add_argument("--hold", type=float, default=3.0, help="seconds each short call lasts")
    parser.add_argument("--concurrent", type=int, default=50, help="short calls up at once")
    parser.add_argument("--long-calls", type=int, default=200)
    parser.add_argument("--long-hold", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=1, help="the server's workers")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds the resources may take to come back")
    parser.add_argument("--quick", action="store_true", help="50 calls of 1 s at 10 at once, then 10 of 3 s")
    parser.add_argument("--json", type=Path, help="write the samples and the verdict as JSON to this file")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.hold, args.concurrent = 50, 1.0, 10
        args.long_calls, args.long_hold, args.settle = 10, 3.0, 15.0
    script = Path(sys.argv[0]).resolve()
    print(f"# command: python {script.relative_to(ROOT) if script.is_relative_to(ROOT) else script} "
          f"{' '.join(sys.argv[1:])}")
    print(f"# soak: {args.calls} calls of {args.hold:g} s at {args.concurrent} at once, then {args.long_calls} of "
          f"{args.long_hold:g} s together; workers {args.workers}; {os.cpu_count()} CPUs, load average "
          f"{load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pypbx-soak-") as tmp:
        result = asyncio.run(soak(args, Path(tmp)))
    print()
    print(report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, default=str))
    print(f"\nload average after: {load_average()}")
    for failure in result["failures"]:
        print(f"FAIL: {failure}")
    print("soak: " + ("every bar held" if not result["failures"] else f"{len(result['failures'])} bar(s) failed"))
    return 0 if not result["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
