"""What every fuzz target shares: libFuzzer's entry point and the rule that only documented errors pass.

A target is a script (``python fuzz/<name>.py [libFuzzer flags] [corpus dirs]``) that defines
``test_one_input(data: bytes) -> None`` and calls :func:`main`. Inside it, each parser call is wrapped in
``try ... except <the exceptions that parser documents>``; anything else propagates, and atheris reports it
as a crash with the input that caused it (``-artifact_prefix`` decides where that file goes).

The targets import ``pbx`` inside ``atheris.instrument_imports()`` so the Python parsers feed coverage back
to libFuzzer. The Cython kernels (``pbx.core.rtp``) cannot be instrumented that way (they would need a clang
build with ``-fsanitize=fuzzer-no-link``): their targets rely on the structure-aware inputs they build
instead, and :func:`use_core_build` lets them run against an AddressSanitizer build of the kernels, so that
a read past a buffer is a crash too. See docs/fuzzing.md.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

import atheris


def use_core_build() -> list[str]:
    """With ``PYPBX_FUZZ_CORE=<dir>``, the kernels built into that directory (``<dir>/rtp.cpython-*.so`` ...)
    are loaded as ``pbx.core.<name>`` in place of the installed ones; call before importing them. Returns
    the names replaced."""
    directory = os.environ.get("PYPBX_FUZZ_CORE")
    if not directory:
        return []
    import pbx.core  # noqa: F401  (the package itself, before its submodules are replaced)

    names = []
    for path in sorted(Path(directory).glob("*.so")):
        name = f"pbx.core.{path.name.split('.')[0]}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None, path
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        names.append(name)
    print(f"INFO: kernels from {directory}: {', '.join(names)}", file=sys.stderr)
    return names


def main(test_one_input: Callable[[bytes], None]) -> None:
    """Hand ``sys.argv`` (libFuzzer's flags and corpus directories) and the target to libFuzzer."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
