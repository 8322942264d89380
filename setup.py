"""Build the compiled media core.

The Cython sources live in ``core/`` and install as the package ``pbx.core``
(never as a bare top-level ``core``).  Cython resolves ``cimport pbx.core.x``
by looking for ``pbx/core/x.pxd`` on its include path, so the build lays out a
small staging tree, ``build/cython_tree/pbx/core -> core``, and compiles the
sources through it.  Generated C lands next to the sources and is ignored by git.

Environment:
  PYPBX_DEBUG=1      bounds/wraparound checks on, -O0 -g, PYPBX_DEBUG C macro.
  PYPBX_ONLY=a,b     build only these kernels (for quick in-place rebuilds).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent
STAGE = Path("build") / "cython_tree"
DEBUG = os.environ.get("PYPBX_DEBUG") == "1"


def pkg_config(name: str, flag: str, fallback: list[str]) -> list[str]:
    """Flags from pkg-config, or a fallback when pkg-config is missing."""
    try:
        out = subprocess.run(["pkg-config", flag, name], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return fallback
    return out.split()


def stage_tree() -> Path:
    """Make build/cython_tree/pbx/core point at core/ (see module docstring)."""
    pkg = ROOT / STAGE / "pbx"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.pxd").touch()
    link = pkg / "core"
    if link.is_symlink() and link.resolve() != (ROOT / "core").resolve():
        link.unlink()
    if not link.exists():
        if os.name == "nt":  # no symlinks: copy instead
            shutil.copytree(ROOT / "core", link)
        else:
            link.symlink_to(ROOT / "core", target_is_directory=True)
    return STAGE


# Per-kernel extra settings: C libraries and compile flags.
OPUS_CFLAGS = [f[2:] for f in pkg_config("opus", "--cflags-only-I", ["-I/usr/include/opus"])]
KERNEL_SETTINGS: dict[str, dict[str, list[str]]] = {
    "opus": {"libraries": ["opus"], "include_dirs": OPUS_CFLAGS},
    "srtp": {"libraries": ["srtp2"]},             # WebRTC's SRTP (Debian libsrtp2-dev; bundled into wheels)
    # the Python oracle must reproduce every delay computation bit for bit: no fused multiply-add
    "jitter": {"extra_compile_args": ["-ffp-contract=off"]},
    # dlopen/dlsym of the optional libten_vad; in libc since glibc 2.34, in libdl before (manylinux)
    "ten": {"libraries": ["dl"]},
    "vad": {"libraries": ["dl"]},
}


def extensions() -> list[Extension]:
    stage = stage_tree()
    base_args = ["-O0", "-g"] if DEBUG else ["-O3"]
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    if DEBUG:
        macros.append(("PYPBX_DEBUG", "1"))
    exts = []
    only = {n for n in os.environ.get("PYPBX_ONLY", "").split(",") if n}
    for pyx in sorted((ROOT / "core").glob("*.pyx")):
        name = pyx.stem
        if only and name not in only:
            continue
        settings = KERNEL_SETTINGS.get(name, {})
        exts.append(Extension(
            f"pbx.core.{name}",
            [str(stage / "pbx" / "core" / pyx.name)],
            include_dirs=[numpy.get_include(), *OPUS_CFLAGS, *settings.get("include_dirs", [])],
            libraries=settings.get("libraries", []),
            extra_compile_args=base_args + settings.get("extra_compile_args", []),
            define_macros=macros,
        ))
    directives = {
        "language_level": 3,
        "boundscheck": DEBUG,
        "wraparound": DEBUG,
        "initializedcheck": DEBUG,
        "cdivision": True,
        "embedsignature": True,
    }
    # Directives differ between debug and release builds, but Cython only regenerates C when a
    # source changes: remember the mode and force a full regeneration when it flips.
    mode_file = ROOT / stage / "build-mode"
    mode = "debug" if DEBUG else "release"
    force = not mode_file.exists() or mode_file.read_text() != mode
    mode_file.write_text(mode)
    return cythonize(exts, include_path=[str(stage)], compiler_directives=directives,
                     nthreads=os.cpu_count() or 1, quiet=True, force=force)


setup(ext_modules=extensions())
