"""What every fuzz target shares: libFuzzer's entry point and the rule that only documented errors pass.

A target is a script (``python fuzz/<name>.py [libFuzzer flags] [corpus dirs]``) that defines
``test_one_input(data: bytes) -> None`` and calls :func:`main`. Inside it, each parser call is wrapped in
``try ... except <the exceptions that parser documents>``; anything else propagates, and atheris reports it
as a crash with the input that caused it (``-artifact_prefix`` decides where that file goes).

The targets import ``pbx`` inside ``atheris.instrument_imports()`` so the Python parsers feed coverage back
to libFuzzer. The Cython kernels (``pbx.core.rtp``) cannot be instrumented that way (they would need a clang
build with ``-fsanitize=fuzzer-no-link``): their targets rely on the structure-aware inputs they build
instead. See docs/fuzzing.md.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris


def main(test_one_input: Callable[[bytes], None]) -> None:
    """Hand ``sys.argv`` (libFuzzer's flags and corpus directories) and the target to libFuzzer."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
