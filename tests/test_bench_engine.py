"""Smoke test of bench/engine.py (calls per host): it runs and prints its table, in-memory and over UDP.

Not a performance assertion: ``--quick`` runs 20 legs for 1.5 s per configuration.  The two modes run
at the same time to keep the test short.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = "| mode | VAD | impl | N | % core/leg | µs/leg/tick |"


def _rows(output: str, mode: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in output.splitlines() if line.startswith(f"| {mode} |")]


def test_quick_runs_print_the_table() -> None:
    commands = {
        "memory": [sys.executable, str(ROOT / "bench" / "engine.py"), "--quick"],
        "udp": [sys.executable, str(ROOT / "bench" / "engine.py"), "--quick", "--udp", "--no-pin"],
    }
    procs = {mode: subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for mode, cmd in commands.items()}
    for mode, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{mode}: exit {proc.returncode}\n{err[-3000:]}"
        assert HEADER in out, out
        rows = _rows(out, mode)
        # webrtc and silero, each for the engine and the Python baseline
        assert sorted((r[1], r[2]) for r in rows) == [
            ("silero", "engine"), ("silero", "python"), ("webrtc", "engine"), ("webrtc", "python")], out
        for row in rows:
            assert row[3] == "20"
            assert float(row[5]) > 0.0                     # µs/leg/tick was measured
        assert "largest N in real time" in out
        # every 5x verdict carries the no-overhead ceiling from the measured shared floor
        verdicts = [line for line in out.splitlines() if line.startswith("- bar: engine >= 5x")]
        assert len(verdicts) == 2 and all("no-overhead ceiling" in v for v in verdicts), out
        floors = [line for line in out.splitlines() if line.startswith(f"- {mode}/") and " N=20: " in line]
        assert len(floors) == 2, out
        if mode == "udp":
            assert all("udp send" in line and "udp recv" in line for line in floors), out
        assert "load average" in out
