"""Smoke test of the call-server benchmarks: bench/ws_calls.py and bench/latency.py run with ``--quick``
and print their tables.

Not a performance assertion: the machine may be busy. The two run at the same time to keep the test
short (each starts its own server processes on free ports).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALLS_HEADER = ("| configuration | N | server % core/call | floor % core/call | added over floor | late frames "
                "(lost) | frame lateness p99 ms | generator lateness p99 / max ms |")
LATENCY_HEADER = "| measurement | configuration | p50 ms | p99 ms | target ms | trials | misses | p99 meets target |"


def _rows(output: str, header: str) -> list[list[str]]:
    lines = output.splitlines()
    start = lines.index(header) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_quick_runs_print_their_tables() -> None:
    commands = {
        "calls": [sys.executable, str(ROOT / "bench" / "ws_calls.py"), "--quick"],
        "latency": [sys.executable, str(ROOT / "bench" / "latency.py"), "--quick"],
    }
    procs = {name: subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, cmd in commands.items()}
    outputs = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"{name}: exit {proc.returncode}\n{err[-3000:]}"
        outputs[name] = out

    calls = outputs["calls"]
    assert CALLS_HEADER in calls, calls
    rows = _rows(calls, CALLS_HEADER)
    assert [(r[0], r[1]) for r in rows] == [
        ("floor (bare websockets)", "5"), ("webrtc VAD + recording", "5"), ("silero VAD + recording", "5")], calls
    for row in rows:
        assert float(row[2]) > 0.0, row               # the server's CPU was measured
        assert row[5].endswith(")") and "%" in row[5], row
    assert "recordings 5/5" in calls, calls          # every call recorded
    assert "hangups 5/5" in calls, calls
    assert "error events 0" in calls, calls

    latency = outputs["latency"]
    assert LATENCY_HEADER in latency, latency
    rows = _rows(latency, LATENCY_HEADER)
    assert [r[0] for r in rows] == ["end of speech -> silence event"] * 2 + [
        "tts command -> first audio frame", "interrupt -> last audio frame"], latency
    for row in rows:
        assert row[5] == "8", row                      # trials
        assert float(row[2]) >= 0.0 and float(row[3]) >= float(row[2]), row
