"""Per-frame cost of every media kernel against its reference, in one run.

    python bench/kernels.py [--runs 5] [--only NAME ...]

Each kernel is called once per 20 ms frame through the entry point the engine
uses; CPU time (process_time), median of ``--runs`` runs.  Case modules live
in ``bench/cases/``; each exports ``cases() -> list[Case]`` and may export
``quality() -> str`` for non-timing results (e.g. jitter buffer loss/delay).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from harness import markdown, run_case  # noqa: E402

CASE_MODULES = ["g711", "l16", "g722", "opus", "resample", "mixer", "rtp", "jitter", "wav", "denoise", "vad", "ten"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", nargs="*", default=None, help="case modules to run")
    args = parser.parse_args()
    names = args.only or CASE_MODULES
    print(f"# kernels on {platform.machine()}, Python {platform.python_version()}, {platform.processor() or ''}")
    results = []
    extra = []
    for name in names:
        try:
            mod = importlib.import_module(f"cases.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("cases"):
                print(f"(no bench/cases/{name}.py yet)", file=sys.stderr)
                continue
            raise
        for case in mod.cases():
            results.append(run_case(case, args.runs))
            print(f"  {case.kernel}: {results[-1].ours_us:.3f} µs", file=sys.stderr)
        if hasattr(mod, "quality"):
            extra.append(mod.quality())
    print(markdown(results))
    for block in extra:
        print()
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
