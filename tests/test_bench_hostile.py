"""Smoke test of the hostile-client suite: bench/hostile.py runs two of its cases with ``--quick``
(50 short calls; 5 endless downloads) against a real server process, and prints its table.

The full suite (2000 idle connections, churn, memory bombs, grammars, ASR rounds) runs with
``make hostile``; its results are in bench/RESULTS.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ("| case | RSS before MB | RSS after MB | fds before | fds after | bystander asrFinal max s | "
          "skipped frames | verdict |")


def _rows(output: str) -> list[list[str]]:
    lines = output.splitlines()
    start = lines.index(HEADER) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_quick_churn_and_downloads_hold_their_bars() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "hostile.py"), "--quick", "--cases", "churn",
                           "downloads"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-4000:]}\n{proc.stderr[-3000:]}"
    assert HEADER in out, out
    rows = _rows(out)
    assert [r[0] for r in rows] == ["churn", "downloads"], out
    for row in rows:
        assert float(row[1]) > 0 and float(row[2]) > 0, row          # RSS was read
        assert int(row[3]) > 0 and int(row[4]) <= int(row[3]), row    # descriptors back to where they were
        assert float(row[5]) <= 1.0 and row[6] == "0", row           # the bystander kept real time
        assert row[7] == "pass", row
    assert "- churn: 50/50 calls" in out, out
    assert "after hangup every connection closed" in out and "(still open: 0)" in out, out
    assert "bars: all hold" in out, out
