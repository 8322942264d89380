"""Run the fuzz targets one after the other and report each: ``make fuzz`` and tests/test_fuzz.py use it.

    .venv/bin/python fuzz/run.py [--seconds S] [--runs N] [--work DIR] [target ...]

Each target is ``fuzz/<target>.py`` with its seed corpus in ``fuzz/corpus/<target>/``. libFuzzer writes the
inputs it finds interesting into the first corpus directory it is given, so that one is a scratch directory
(``DIR/<target>``, kept between runs so a long run goes on from the last); the committed seeds come second
and are only read. A crashing input goes to ``DIR/artifacts/<target>-crash-<sha1>``: add it to the target's
corpus once the bug is fixed. The exit status is non-zero when a target crashed (or failed to start).

Per-input time limit 10 s (a hang is a crash) and 2 GB of RSS, libFuzzer's default besides.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
TARGETS = tuple(sorted(p.name for p in CORPUS.iterdir() if p.is_dir() and (HERE / f"{p.name}.py").exists()))
# libFuzzer dictionaries (fuzz/dict/): the tokens of each format, spliced into inputs
DICTIONARIES = {"sip_message": "sip", "sip_stream": "sip", "sdp": "sdp", "webrtc_offer": "sdp", "command": "json"}


@dataclass
class Outcome:
    target: str
    returncode: int
    seconds: float
    runs: int | None
    coverage: int | None
    features: int | None
    corpus: str | None
    log: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def line(self) -> str:
        status = "ok" if self.ok else f"CRASH (exit {self.returncode})"
        return (f"{self.target:<13} {status:<16} runs {self.runs if self.runs is not None else '?':>10}  "
                f"{self.seconds:6.1f} s  cov {self.coverage if self.coverage is not None else '?':>5}  "
                f"ft {self.features if self.features is not None else '?':>6}  corpus {self.corpus or '?'}")


def _last_int(pattern: str, log: str) -> int | None:
    found = re.findall(pattern, log)
    return int(found[-1]) if found else None


def run(target: str, work: Path, *, seconds: int | None = None, runs: int | None = None,
        extra: tuple[str, ...] = ()) -> Outcome:
    """One target for ``seconds`` (or ``runs`` inputs after the seeds), its scratch corpus under ``work``."""
    scratch = work / target
    artifacts = work / "artifacts"
    scratch.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    flags = ["-timeout=10", "-rss_limit_mb=2048", f"-artifact_prefix={artifacts}/{target}-"]
    if seconds is not None:
        flags.append(f"-max_total_time={seconds}")
    if runs is not None:
        flags.append(f"-runs={runs}")
    if target in DICTIONARIES:
        flags.append(f"-dict={HERE / 'dict' / DICTIONARIES[target]}.dict")
    command = [sys.executable, str(HERE / f"{target}.py"), *flags, *extra, str(scratch), str(CORPUS / target)]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, errors="replace", cwd=HERE)
    elapsed = time.monotonic() - start
    log = done.stdout + done.stderr
    corpus = re.findall(r"corp: (\d+/\d+\w*)", log)
    return Outcome(target, done.returncode, elapsed, _last_int(r"Done (\d+) runs", log) or _last_int(r"#(\d+)", log),
                   _last_int(r"cov: (\d+)", log), _last_int(r"ft: (\d+)", log), corpus[-1] if corpus else None, log)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", metavar="target", help=f"default: all ({', '.join(TARGETS)})")
    parser.add_argument("--seconds", type=int, help="time per target (default 600 unless --runs is given)")
    parser.add_argument("--runs", type=int, help="inputs per target after the seeds (whichever limit comes first)")
    parser.add_argument("--work", type=Path, default=HERE.parent / "build" / "fuzz",
                        help="scratch corpora and crash artifacts (default build/fuzz)")
    args = parser.parse_args()
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target {', '.join(unknown)} (the targets: {', '.join(TARGETS)})")
    seconds = args.seconds if args.seconds is not None or args.runs is not None else 600
    failed = 0
    for target in args.targets or TARGETS:
        outcome = run(target, args.work.resolve(), seconds=seconds, runs=args.runs)
        print(outcome.line(), flush=True)
        if not outcome.ok:
            failed += 1
            tail = [line for line in outcome.log.splitlines() if not line.startswith("INFO: Instrumenting")]
            print("\n".join(tail[-40:]), file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
