"""pbx/memory.py: freed large blocks leave the process (checked in a child process of its own)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pbx.memory import _libc

CHILD = """
import sys
from pbx.memory import map_large_blocks

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6

if sys.argv[1] == "pinned":
    assert map_large_blocks()
big = bytearray(20_000_000)          # mapped (above the default threshold), and freed:
del big                              # glibc now raises its threshold to 20 MB
before = rss_mb()
blocks = [bytearray(1_000_000) for _ in range(15)]   # 15 MB in 1 MB blocks: from the heap or mapped
del blocks
print(round(rss_mb() - before, 1))
"""


@pytest.mark.skipif(_libc() is None, reason="not glibc")
def test_pinned_threshold_returns_freed_megabyte_blocks() -> None:
    def grown(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
        return float(out.stdout)

    assert grown("default") > 10       # the heap kept them: why the threshold is pinned
    assert grown("pinned") < 2
