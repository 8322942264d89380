# cython: language_level=3
"""TEN VAD for every call leg, as C calls into the optional ten-vad package's library.

TEN VAD (https://github.com/TEN-framework/ten-vad) is a small frame-level speech
detector at 16 kHz.  Its PyPI package ``ten-vad`` ships a prebuilt C library
(``ten_vad/lib/Linux/x64/libten_vad.so``, linked against LLVM's libc++: Debian's
``libc++1``/``libc++abi1``) with three entry points::

    int ten_vad_create(void** handle, size_t hop_size, float threshold)
    int ten_vad_process(void* handle, const int16_t* audio, size_t hop_size,
                        float* out_probability, int32_t* out_flag)
    int ten_vad_destroy(void** handle)

The package itself drives them through ctypes, one Python call per hop.  Here
:class:`TenBank` finds the library through the installed package
(``importlib.util.find_spec``; nothing is vendored), ``dlopen``s it and resolves
the functions with ``dlsym``, so ``process_c`` is plain C: no Python, no GIL.
The library is bound only by name at run time, so neither this module nor the
wheel links to it (auditwheel cannot pull it in) and ``import pbx.core.ten``
works without it; ``TenBank(...)`` raises ImportError when it is missing.

Hop sizes: the library accepts any hop >= 2 (``ten_vad_create`` returns -1 for 0
and 1; probed with ten-vad 1.0.6.9, library 2.1.0), but upstream documents 160
and 256 samples (10 and 16 ms) as the optimised configurations, and those are
the two this bank allows.  With hop 160 one 20 ms engine frame (320 samples) is
exactly two hops and yields two probabilities, 10 ms windows for VadBank.  With
hop 256 the caller must hand multiples of 256 samples (e.g. 1280 = four engine
frames = five 16 ms windows).  ``ten_vad_process`` must be given the hop the
handle was created with: the library does not check it, and a longer buffer
corrupts its heap.  Every call here passes the bank's hop.

What hop 160 really gives (measured, and pinned by tests/test_ten.py): the
detector infers on 256-sample frames whatever the hop, and each hop returns the
probability of the latest complete 256-sample frame.  So hop k of 160 samples
(k = 0, 1, ...) reports frame ``(k + 1) * 160 // 256 - 1`` of the hop-256 stream:
five fresh values per eight hops, three repeated, and -1.0 for hop 0, which
ends before the first frame is complete.  -1.0 is below every threshold, so
VadBank reads it as unvoiced.  The cost is the same per second of audio (1.25
inferences per 20 ms frame at either hop); hop 160 just lines the windows up
with the engine's 20 ms frames.

One probability per hop; the library's own 0/1 flag (probability against the
threshold given at create) is dropped: VadBank applies the leg's voiceThreshold.

Licence of ten-vad (not of this module, which contains none of its code and
binds to its interface only by name -- Apache-2.0 excludes that from "Derivative
Works"): Apache-2.0 "with certain conditions".  Whoever reproduces, distributes
or otherwise makes ten-vad available ("Deploy") agrees that (1) they may not
Deploy it in a way that competes with Agora's offerings or allows others to,
"including without limitation enabling any third party to develop or deploy
Applications"; (2) they may Deploy it solely to create and run their own
Application(s), for their own benefit and that of their direct End Users (a
"Powered by ten-vad" notice is optional); (3) derivative works of ten-vad stay
under these terms.  Its pitch estimator contains code from LPCNet (BSD-2-Clause
and BSD-3-Clause, Mozilla / Xiph.Org / Jean-Marc Valin / Mark Borgerding), whose
notices must be kept.  That is why it stays an opt-in extra (``pypbx[ten]``):
the operator who installs it accepts those terms for their deployment.
"""

import importlib.util
import os
import platform

cimport numpy as cnp
from cpython.buffer cimport PyBuffer_Release
from libc.stdint cimport int16_t, int32_t
from libc.stdlib cimport calloc, free

from pbx.core.bufargs cimport ITEM_INT16, get_view
from pbx.core.includes.dl cimport RTLD_LOCAL, RTLD_NOW, dlclose, dlerror, dlopen, dlsym

import numpy as np

from pbx.core.errors import CodecError

cnp.import_array()

RATE = TEN_RATE
FRAME = TEN_FRAME
HOPS = (160, 256)
MISSING_MESSAGE = ("vad type 'ten' needs the optional ten-vad package (pip install 'pypbx[ten]') "
                   "and Debian's libc++1")

# Where the package keeps its library, relative to its folder (as its own ctypes loader looks).
# Only Linux x86_64 is exercised here; the macOS framework binary is what the package loads there.
_LIBRARY_IN_PACKAGE = {
    ("Linux", "x86_64"): "lib/Linux/x64/libten_vad.so",
    ("Darwin", "x86_64"): "lib/macOS/ten_vad.framework/Versions/A/ten_vad",
    ("Darwin", "arm64"): "lib/macOS/ten_vad.framework/Versions/A/ten_vad",
}


def _missing(str detail):
    return ImportError(f"{MISSING_MESSAGE}: {detail}", name="ten_vad")


def library_path():
    """Path of the installed ten-vad package's C library; ImportError (MISSING_MESSAGE: why) if none."""
    try:
        spec = importlib.util.find_spec("ten_vad")
    except (ImportError, ValueError):    # e.g. a half-imported ten_vad without __spec__
        spec = None
    if spec is None:
        raise _missing("the ten_vad package is not installed")
    if spec.submodule_search_locations:
        folder = list(spec.submodule_search_locations)[0]
    else:
        folder = os.path.dirname(spec.origin or "")
    system, machine = platform.system(), platform.machine()
    relative = _LIBRARY_IN_PACKAGE.get((system, machine))
    if relative is None:
        raise _missing(f"ten-vad ships no library for {system} {machine}")
    path = os.path.join(folder, relative)
    if not os.path.isfile(path):
        raise _missing(f"{path} does not exist")
    return path


cdef str _dl_error(str fallback):
    cdef const char* msg = dlerror()
    return fallback if msg == NULL else msg.decode("utf-8", "replace")


cdef class TenBank:
    """One TEN VAD detector per leg slot (16 kHz int16, ``hop`` samples per probability).

    ``enable(slot, threshold)`` creates the slot's detector (a fresh one when it had one:
    that is the reset), ``disable(slot)`` frees it.  Slots start disabled.
    """

    def __cinit__(self, int max_legs, int hop=160):
        if max_legs <= 0:
            raise ValueError("max_legs must be positive")
        if hop != 160 and hop != 256:
            raise ValueError("hop must be 160 or 256")
        self.max_legs = max_legs
        self.hop = hop
        self._handles = <void**>calloc(max_legs, sizeof(void*))
        if self._handles == NULL:
            raise MemoryError()
        path = library_path()
        dlerror()                                       # clear a stale message
        self._lib = dlopen(os.fsencode(path), RTLD_NOW | RTLD_LOCAL)
        if self._lib == NULL:
            # typically "libc++.so.1: cannot open shared object file" without Debian's libc++1
            raise _missing(_dl_error(f"cannot load {path}"))
        self._create = <ten_create_fn>self._symbol(path, b"ten_vad_create")
        self._process = <ten_process_fn>self._symbol(path, b"ten_vad_process")
        self._destroy = <ten_destroy_fn>self._symbol(path, b"ten_vad_destroy")
        self.library = path
        cdef ten_version_fn get_version = <ten_version_fn>dlsym(self._lib, b"ten_vad_get_version")
        cdef const char* v = NULL
        if get_version != NULL:
            v = get_version()
        self.version = "unknown" if v == NULL else v.decode("ascii", "replace")

    cdef void* _symbol(self, str path, bytes name) except NULL:
        dlerror()
        cdef void* fn = dlsym(self._lib, name)
        if fn == NULL:
            raise _missing(_dl_error(f"{path} has no {name.decode()}"))
        return fn

    def __dealloc__(self):
        cdef int i
        if self._handles != NULL:
            if self._destroy != NULL:
                for i in range(self.max_legs):
                    if self._handles[i] != NULL:
                        self._destroy(&self._handles[i])
            free(self._handles)
        if self._lib != NULL:
            dlclose(self._lib)

    cdef int process_c(self, int slot, const int16_t* pcm, int n, float* probs_out) noexcept nogil:
        if slot < 0 or slot >= self.max_legs or self._handles[slot] == NULL:
            return TEN_ERR_SLOT
        if n <= 0 or n % self.hop != 0:
            return TEN_ERR_LENGTH
        cdef void* handle = self._handles[slot]
        cdef int hops = n // self.hop, k
        cdef int32_t flag
        for k in range(hops):
            if self._process(handle, pcm + k * self.hop, <size_t>self.hop, &probs_out[k], &flag) != 0:
                return TEN_ERR_LIBRARY
        return hops

    # ---- Python API -------------------------------------------------------------------------

    cdef int _slot_arg(self, int slot) except -1:
        if slot < 0 or slot >= self.max_legs:
            raise ValueError(f"slot {slot} out of range 0..{self.max_legs - 1}")
        return slot

    def enable(self, int slot, double threshold=0.5):
        """(Re)create the slot's detector; ``threshold`` only sets the library's own voiced flag."""
        self._slot_arg(slot)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be in [0, 1]")
        cdef void* handle = NULL
        cdef int rc = self._create(&handle, <size_t>self.hop, <float>threshold)
        if rc != 0 or handle == NULL:
            raise CodecError(f"ten_vad_create failed ({rc})", rc)
        if self._handles[slot] != NULL:                 # replaced only once the new one exists
            self._destroy(&self._handles[slot])
        self._handles[slot] = handle

    def disable(self, int slot):
        """Free the slot's detector (no-op when it has none)."""
        self._slot_arg(slot)
        if self._handles[slot] != NULL:
            self._destroy(&self._handles[slot])
            self._handles[slot] = NULL

    def enabled(self, int slot):
        self._slot_arg(slot)
        return self._handles[slot] != NULL

    cdef int _check(self, int slot, int r, Py_ssize_t n) except -1:
        if r == TEN_ERR_SLOT:
            raise ValueError(f"slot {slot} is not enabled")
        if r == TEN_ERR_LENGTH:
            raise ValueError(f"pcm must hold a positive multiple of {self.hop} samples, got {n}")
        if r == TEN_ERR_LIBRARY:
            raise CodecError("ten_vad_process failed", TEN_ERR_LIBRARY)
        return r

    def process_into(self, int slot, pcm, float[::1] out):
        """Probabilities of ``pcm`` (int16, a multiple of hop samples) into ``out``; returns their count."""
        self._slot_arg(slot)
        cdef Py_buffer view
        get_view(pcm, &view, ITEM_INT16, False, "pcm")
        cdef Py_ssize_t n = view.len // 2
        cdef int r
        try:
            if n > 0 and n % self.hop == 0 and out.shape[0] < n // self.hop:
                raise ValueError(f"out holds {out.shape[0]} probabilities, {n // self.hop} needed")
            if n > 0x7fffffff:
                raise ValueError(f"pcm must hold a positive multiple of {self.hop} samples, got {n}")
            r = self.process_c(slot, <const int16_t*>view.buf, <int>n, &out[0] if out.shape[0] else NULL)
            return self._check(slot, r, n)
        finally:
            PyBuffer_Release(&view)

    def process(self, int slot, pcm):
        """Speech probability of each hop of ``pcm`` (int16, a multiple of hop samples), float32."""
        self._slot_arg(slot)
        cdef Py_buffer view
        get_view(pcm, &view, ITEM_INT16, False, "pcm")
        cdef Py_ssize_t n = view.len // 2
        cdef cnp.ndarray out = np.empty(max(n // self.hop, 1), np.float32)
        cdef int r
        try:
            if n > 0x7fffffff:
                raise ValueError(f"pcm must hold a positive multiple of {self.hop} samples, got {n}")
            r = self.process_c(slot, <const int16_t*>view.buf, <int>n, <float*>cnp.PyArray_DATA(out))
            self._check(slot, r, n)
        finally:
            PyBuffer_Release(&view)
        return out
