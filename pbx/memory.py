"""Handing freed memory back to the system.

glibc keeps memory freed by C libraries (a speech decoder's tens of megabytes) in its heaps for
reuse, so a process's RSS only grows. ``malloc_trim(0)`` returns what is free; it costs a few
milliseconds, so it is called where large objects were just released, not per call of anything.

glibc also raises its mmap threshold each time a large block is freed (up to 32 MB), after which
blocks of that size come from the heap and stay there when freed: a call's decoded 20 MB prompt
then outlives the call. :func:`map_large_blocks` pins the threshold so such blocks are mapped and
unmapped on their own (measured by ``bench/hostile.py --cases bomb``: RSS +69 MB after two calls
played a 600 s prompt, +28 MB with the threshold pinned, 19 MB of it the play cache).
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
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
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


M_MMAP_THRESHOLD = -3           # glibc's mallopt parameter number
LARGE_BLOCK_BYTES = 256 * 1024


def map_large_blocks(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """Make every block of ``threshold`` bytes or more a mapping of its own, returned when freed;
    False where that is not possible (not glibc). Called once at start-up."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
