"""Handing freed memory back to the system.

glibc keeps memory freed by C libraries (a speech decoder's tens of megabytes) in its heaps for
reuse, so a process's RSS only grows. ``malloc_trim(0)`` returns what is free; it costs a few
milliseconds, so it is called where large objects were just released, not per call of anything.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Any


@cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):   # not glibc: nothing to trim
        return None


def release_free_memory() -> bool:
    """Return free heap memory to the system; False where that is not possible (not glibc)."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
