"""The fuzz targets of fuzz/ (docs/fuzzing.md), each run briefly in its own process as part of the default
test run: its seed corpus, then a few thousand mutated inputs (at most a few seconds). A target fails when
its parser raises anything but the errors it documents or breaks an invariant the target checks. The long
runs are ``make fuzz``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"
TARGETS = sorted(p.name for p in (FUZZ / "corpus").iterdir() if p.is_dir())
RUNS = 20000        # after the seeds
SECONDS = 6         # whichever comes first: the eight targets stay under a minute on a loaded machine

pytestmark = pytest.mark.fuzz


def test_every_parser_the_issue_names_has_a_target_and_seeds() -> None:
    assert TARGETS == ["command", "rtcp", "rtp", "sdp", "sip_message", "sip_stream", "stun", "webrtc_offer"]
    for target in TARGETS:
        assert (FUZZ / f"{target}.py").is_file()
        seeds = list((FUZZ / "corpus" / target).iterdir())
        assert 3 <= len(seeds) <= 100 and sum(p.stat().st_size for p in seeds) < 100_000, target


@pytest.mark.parametrize("target", TARGETS)
def test_a_short_run_finds_no_crash(target: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(FUZZ / "run.py"), "--runs", str(RUNS), "--seconds", str(SECONDS),
                           "--work", str(tmp_path), target], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(target) and " ok " in done.stdout, done.stdout
    assert not list((tmp_path / "artifacts").iterdir())


def test_an_undocumented_exception_is_a_crash_with_the_input_kept(tmp_path: Path) -> None:
    """The harness lets through what a target does not catch: libFuzzer stops, exits non-zero and keeps the
    input (so a short run that passes means something)."""
    target = tmp_path / "target.py"
    target.write_text(f"import sys\nsys.path.insert(0, {str(FUZZ)!r})\nfrom harness import main\n\n\n"
                      "def test_one_input(data: bytes) -> None:\n"
                      "    if data.startswith(b'INVITE'):\n"
                      "        raise KeyError('not a documented error')\n\n\n"
                      "main(test_one_input)\n")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "invite").write_bytes(b"INVITE sip:a@b SIP/2.0\r\n\r\n")
    done = subprocess.run([sys.executable, str(target), "-runs=100", f"-artifact_prefix={tmp_path}/", str(seeds)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "KeyError: 'not a documented error'" in done.stdout + done.stderr
    [artifact] = tmp_path.glob("crash-*")
    assert artifact.read_bytes() == b"INVITE sip:a@b SIP/2.0\r\n\r\n"
