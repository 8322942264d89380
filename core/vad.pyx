# cython: language_level=3
"""Speaking/silence state machine for every call leg, plus the WebRTC VAD bank.

One :class:`VadBank` holds the state of all legs in one C array of ``VadSlot``
structs indexed by leg slot.  Thousands of legs then sit in one contiguous
block (128 bytes, two cache lines, per leg) that the engine's tick walks in order, reaching a
leg by an int it can keep in its own C structs; a cdef object per leg would
scatter the state over the heap behind Python headers and need a Python
reference (and refcounting) per leg per window.  Events of all legs go to one
array that the engine drains once per tick.

Input: one decision per VAD window, ``feed(slot, value, window_start_ms,
window_ms)``.  A window is *voiced* when ``value >= threshold`` (silero: the
probability against ``voiceThreshold``; WebRTC: 1.0/0.0 against 0.5).  Windows
come back to back (each starts where the previous ended) with the caller's
times in ms.  Let ``end = window_start_ms + window_ms``; every event is stamped
``time_ms = end`` of the window that produced it, and
``start_ms + duration_ms == time_ms``.

Rules (VADOption names; ``last_voiced_end`` = end of the latest voiced window):

Not speaking
  R1  A voiced window opens a candidate run at its start, unless one is open.
      An unvoiced window with ``end - last_voiced_end >= silencePadding`` drops
      the open run without an event: the silence that ends speech also ends a
      candidate, and gaps shorter than that stay inside the run.
  R2  On a voiced window, with ``span = end - run_start`` and ``voiced`` = voiced
      ms in the run: if ``span >= speechPadding`` and ``voiced < ratio * span``
      the run is too sparse and restarts at the start of the current unbroken
      stretch of voiced windows (the voicing that is still going on); then if
      ``span >= speechPadding`` and ``voiced >= ratio * span`` -> SPEAKING with
      ``start_ms = run_start`` (the onset).  Speech is thus confirmed
      speechPadding ms after it starts ("start detection speechPadding ms after
      speech starts") and only by a voiced window, so a blip shorter than
      speechPadding never is; ``ratio`` is the voiced fraction the run needs.
  R3  silenceTimeout: after a SILENCE and until the next SPEAKING (a blip does
      not count), SILENCE again with the same start and ``duration = end -
      start`` at the first window ending at or after ``start + k *
      silenceTimeout`` for k = 1, 2, ... (those not already past at the first
      SILENCE): durations grow by one timeout each, on the window grid, without
      drift.  There is no timeout before the first speech.
Speaking
  R4  An unvoiced window with ``end - last_voiced_end >= silencePadding`` ->
      SILENCE with ``start_ms = last_voiced_end`` (the offset) and
      ``duration = end - start_ms``.  Shorter unvoiced gaps keep speaking.
      ``ratio`` does not apply here: a voiced-fraction rule over a 100 ms
      padding would end speech on any two-window dip.
  R5  maxBufferDurationSecs: the speech segment for ASR starts at the onset.
      On a voiced window (the SPEAKING one included) with
      ``end - segment_start >= maxBuffer`` -> SEGMENT_CAP with the old segment
      start; the next segment starts at ``end``.  The segment ends at the
      SILENCE's ``start_ms``.  The engine must keep at least speechPadding ms of
      audio history, since SPEAKING arrives that long after the onset.

With back-to-back windows the onset is the start of the first voiced window
and the offset the end of the last one, so both land on the detector's window
grid: within one window of the truth whenever the detector's decisions are.

At most two events come out of one feed (SPEAKING + SEGMENT_CAP); ``feed_c``
returns -1 without touching the state when fewer than two slots are free.
"""

cimport numpy as cnp
from cpython.buffer cimport PyBuffer_Release
from libc.stdint cimport int16_t, int32_t, int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

from cpython.pycapsule cimport PyCapsule_GetPointer
from pbx.core.bufargs cimport ITEM_INT16, get_view
from pbx.core.includes.dl cimport RTLD_LOCAL, RTLD_NOW, dlclose, dlerror, dlopen, dlsym

import os

import numpy as np

cnp.import_array()

SPEAKING = VAD_SPEAKING
SILENCE = VAD_SILENCE
SEGMENT_CAP = VAD_SEGMENT_CAP

WEBRTC_RATE = 16000
WEBRTC_FRAME_SIZES = (160, 320, 480)   # 10, 20 and 30 ms at 16 kHz


cdef inline void _clear_state(VadSlot* s) noexcept nogil:
    s.speaking = 0
    s.cap_hit = 0
    s.run_start_ms = VAD_NO_TIME
    s.run_voiced_ms = 0
    s.prev_voiced = 0
    s.stretch_start_ms = VAD_NO_TIME
    s.stretch_voiced_ms = 0
    s.last_voiced_end_ms = VAD_NO_TIME
    s.silence_start_ms = VAD_NO_TIME
    s.next_timeout_ms = VAD_NO_TIME
    s.segment_start_ms = VAD_NO_TIME


cdef inline void _schedule_timeout(VadSlot* s, int64_t now) noexcept nogil:
    # next start + k * timeout strictly after now
    if s.silence_timeout_ms > 0:
        s.next_timeout_ms = s.silence_start_ms + (
            (now - s.silence_start_ms) // s.silence_timeout_ms + 1) * s.silence_timeout_ms


cdef inline void _set_defaults(VadSlot* s) noexcept nogil:
    s.threshold = 0.5
    s.ratio = 0.5
    s.speech_padding_ms = 250
    s.silence_padding_ms = 100
    s.silence_timeout_ms = 0
    s.max_buffer_ms = 50000
    _clear_state(s)


cdef class VadBank:
    """Speaking/silence state of ``max_legs`` legs, indexed by slot; every slot starts with the defaults."""

    def __cinit__(self, int max_legs, int event_capacity=0):
        if max_legs <= 0:
            raise ValueError("max_legs must be positive")
        if event_capacity < 0:
            raise ValueError("event_capacity must be >= 0")
        if event_capacity == 0:
            event_capacity = max(8, 4 * max_legs)   # two windows per leg between drains
        if event_capacity < VAD_MAX_EVENTS_PER_FEED:
            raise ValueError(f"event_capacity must be >= {VAD_MAX_EVENTS_PER_FEED}")
        self.slots = <VadSlot*>calloc(max_legs, sizeof(VadSlot))
        self.events = <VadEvent*>calloc(event_capacity, sizeof(VadEvent))
        if self.slots == NULL or self.events == NULL:
            raise MemoryError()
        self.max_legs = max_legs
        self.event_capacity = event_capacity
        self.n_events = 0
        cdef int i
        for i in range(max_legs):
            _set_defaults(&self.slots[i])

    def __dealloc__(self):
        free(self.slots)
        free(self.events)

    cdef void reset_c(self, int slot) noexcept nogil:
        if 0 <= slot < self.max_legs:
            _clear_state(&self.slots[slot])

    cdef int feed_c(self, int slot, float value, int64_t window_start_ms, int window_ms) noexcept nogil:
        """Events appended (0..2), -1 if the event array lacks room for two, -2 on a bad slot/window."""
        if slot < 0 or slot >= self.max_legs or window_ms <= 0:
            return -2
        if self.n_events + VAD_MAX_EVENTS_PER_FEED > self.event_capacity:
            return -1
        cdef VadSlot* s = &self.slots[slot]
        cdef int64_t end = window_start_ms + window_ms
        cdef bint voiced = value >= s.threshold
        cdef int64_t span
        cdef int first = self.n_events

        if voiced:
            if not s.prev_voiced:
                s.stretch_start_ms = window_start_ms
                s.stretch_voiced_ms = 0
            s.stretch_voiced_ms += window_ms
        s.prev_voiced = voiced

        if s.speaking:
            if voiced:
                s.last_voiced_end_ms = end
                self._check_cap(slot, s, end)
            elif end - s.last_voiced_end_ms >= s.silence_padding_ms:                 # R4
                s.speaking = 0
                s.silence_start_ms = s.last_voiced_end_ms
                _schedule_timeout(s, end)
                self._emit(slot, VAD_SILENCE, end, s.silence_start_ms)
            return self.n_events - first

        if voiced:
            if s.run_start_ms == VAD_NO_TIME:                                           # R1
                s.run_start_ms = window_start_ms
                s.run_voiced_ms = 0
            s.run_voiced_ms += window_ms
            s.last_voiced_end_ms = end
            span = end - s.run_start_ms
            if span >= s.speech_padding_ms and <double>s.run_voiced_ms < s.ratio * <double>span:
                s.run_start_ms = s.stretch_start_ms                                 # R2: too sparse
                s.run_voiced_ms = s.stretch_voiced_ms
                span = end - s.run_start_ms
            if span >= s.speech_padding_ms and <double>s.run_voiced_ms >= s.ratio * <double>span:
                s.speaking = 1
                s.cap_hit = 0
                s.segment_start_ms = s.run_start_ms
                s.silence_start_ms = VAD_NO_TIME
                s.run_start_ms = VAD_NO_TIME
                self._emit(slot, VAD_SPEAKING, end, s.segment_start_ms)
                self._check_cap(slot, s, end)
                return self.n_events - first
        elif s.run_start_ms != VAD_NO_TIME and end - s.last_voiced_end_ms >= s.silence_padding_ms:
            s.run_start_ms = VAD_NO_TIME                                                # R1: blip over

        if s.silence_timeout_ms > 0 and s.silence_start_ms != VAD_NO_TIME and end >= s.next_timeout_ms:
            _schedule_timeout(s, end)                                               # R3
            self._emit(slot, VAD_SILENCE, end, s.silence_start_ms)
        return self.n_events - first

    cdef void _check_cap(self, int slot, VadSlot* s, int64_t end) noexcept nogil:
        if s.max_buffer_ms > 0 and end - s.segment_start_ms >= s.max_buffer_ms:    # R5
            self._emit(slot, VAD_SEGMENT_CAP, end, s.segment_start_ms)
            s.segment_start_ms = end
            s.cap_hit = 1

    cdef void _emit(self, int slot, int kind, int64_t time_ms, int64_t start_ms) noexcept nogil:
        cdef VadEvent* e = &self.events[self.n_events]
        e.slot = slot
        e.kind = kind
        e.time_ms = time_ms
        e.start_ms = start_ms
        e.duration_ms = time_ms - start_ms
        self.n_events += 1

    # ---- Python API -------------------------------------------------------------------------

    cdef int _slot_arg(self, int slot) except -1:
        if slot < 0 or slot >= self.max_legs:
            raise ValueError(f"slot {slot} out of range 0..{self.max_legs - 1}")
        return slot

    def configure(self, int slot, *, int speech_padding_ms=250, int silence_padding_ms=100,
                  double ratio=0.5, double threshold=0.5, silence_timeout_ms=None,
                  double max_buffer_secs=50.0):
        """Set a slot's VADOption values and reset its state.

        ``threshold``: silero's voiceThreshold; 0.5 for WebRTC decisions (fed as 1.0/0.0).
        ``silence_timeout_ms``: None or 0 for no repeats.  ``max_buffer_secs``: 0 for no cap.
        """
        self._slot_arg(slot)
        cdef long long timeout = 0 if silence_timeout_ms is None else silence_timeout_ms
        if speech_padding_ms < 0:
            raise ValueError("speech_padding_ms must be >= 0")
        if silence_padding_ms < 0:
            raise ValueError("silence_padding_ms must be >= 0")
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("ratio must be in [0, 1]")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be in [0, 1]")
        if timeout < 0:
            raise ValueError("silence_timeout_ms must be >= 0")
        if max_buffer_secs < 0:
            raise ValueError("max_buffer_secs must be >= 0")
        cdef VadSlot* s = &self.slots[slot]
        s.speech_padding_ms = speech_padding_ms
        s.silence_padding_ms = silence_padding_ms
        s.ratio = ratio
        s.threshold = <float>threshold
        s.silence_timeout_ms = timeout
        s.max_buffer_ms = <int64_t>(max_buffer_secs * 1000.0 + 0.5)
        _clear_state(s)

    def reset(self, int slot):
        """Forget a slot's speech/silence state (keeps its configuration)."""
        self._slot_arg(slot)
        self.reset_c(slot)

    def feed(self, int slot, float value, long long window_start_ms, int window_ms):
        """Feed one window's decision; returns the number of events it added."""
        self._slot_arg(slot)
        if window_ms <= 0:
            raise ValueError("window_ms must be positive")
        cdef int n = self.feed_c(slot, value, window_start_ms, window_ms)
        if n == -1:
            raise ValueError("VAD event buffer full: drain() first")
        return n

    def feed_many(self, const int32_t[::1] slots, const float[::1] values,
                  const int64_t[::1] window_start_ms, int window_ms):
        """Feed one window to each of ``slots`` (e.g. a silero batch); returns the events added."""
        cdef Py_ssize_t n = slots.shape[0], i
        if values.shape[0] != n or window_start_ms.shape[0] != n:
            raise ValueError("slots, values and window_start_ms must have the same length")
        if window_ms <= 0:
            raise ValueError("window_ms must be positive")
        for i in range(n):
            self._slot_arg(slots[i])
        cdef int total = 0, r = 0
        with nogil:
            for i in range(n):
                r = self.feed_c(slots[i], values[i], window_start_ms[i], window_ms)
                if r < 0:
                    break
                total += r
        if r == -1:
            raise ValueError("VAD event buffer full: drain() first")
        return total

    def drain(self):
        """Events since the last drain as (slot, kind, time_ms, start_ms, duration_ms) tuples."""
        cdef int i
        cdef VadEvent* e
        out = []
        for i in range(self.n_events):
            e = &self.events[i]
            out.append((e.slot, e.kind, e.time_ms, e.start_ms, e.duration_ms))
        self.n_events = 0
        return out

    @property
    def pending(self):
        """Events waiting to be drained."""
        return self.n_events

    def speaking(self, int slot):
        self._slot_arg(slot)
        return bool(self.slots[slot].speaking)

    def segment_start(self, int slot):
        """Start (ms) of the current speech segment, or of the last one when silent; None before any."""
        self._slot_arg(slot)
        cdef int64_t t = self.slots[slot].segment_start_ms
        return None if t == VAD_NO_TIME else t

    def cap_hit(self, int slot):
        """Whether the current (or last) segment was cut by maxBufferDurationSecs."""
        self._slot_arg(slot)
        return bool(self.slots[slot].cap_hit)


# ---- WebRTC VAD -------------------------------------------------------------------------------

cdef int webrtc_mode_c(double voice_threshold) noexcept nogil:
    # voiceThreshold -> aggressiveness: a higher threshold asks for more certainty that it is speech.
    #   [0, 0.25) -> 0 quality   [0.25, 0.5) -> 1 low bitrate   [0.5, 0.75) -> 2 aggressive   [0.75, 1] -> 3 very
    if voice_threshold < 0.25:
        return 0
    if voice_threshold < 0.5:
        return 1
    if voice_threshold < 0.75:
        return 2
    return 3


def webrtc_mode(double voice_threshold):
    """WebRTC aggressiveness mode (0..3) for a VADOption voiceThreshold (0..1); default 0.5 -> 2."""
    if not 0.0 <= voice_threshold <= 1.0:
        raise ValueError("voice_threshold must be in [0, 1]")
    return webrtc_mode_c(voice_threshold)


cdef class WebRtcBank:
    """One WebRTC VAD instance per leg slot (16 kHz, 10/20/30 ms frames) from the webrtcvad-wheels package.

    Instances are created through the package's Python API (its ``create`` returns a capsule around a
    ``VadInst*``); each frame then goes straight to the extension's exported ``WebRtcVad_Process``,
    resolved once with ``dlsym``: a C call per frame, no Python, no copy, no GIL.
    """

    def __cinit__(self, int max_legs):
        if max_legs <= 0:
            raise ValueError("max_legs must be positive")
        import _webrtcvad
        self.max_legs = max_legs
        self._handles = [None] * max_legs
        self._modes = [0] * max_legs
        self._insts = <void**>calloc(max_legs, sizeof(void*))
        if self._insts == NULL:
            raise MemoryError("WebRtcBank: cannot allocate the instance table")
        path = os.fsencode(_webrtcvad.__file__)
        self._lib = dlopen(path, RTLD_NOW | RTLD_LOCAL)   # already loaded: this takes a reference
        if self._lib == NULL:
            raise ImportError(f"cannot open {_webrtcvad.__file__}: {(<bytes>dlerror()).decode(errors='replace')}")
        self._process = <webrtc_process_fn>dlsym(self._lib, b"WebRtcVad_Process")
        if self._process == NULL:
            raise ImportError(f"{_webrtcvad.__file__} does not export WebRtcVad_Process")

    def __dealloc__(self):
        free(self._insts)
        if self._lib != NULL:
            dlclose(self._lib)

    cdef int _slot_arg(self, int slot) except -1:
        if slot < 0 or slot >= self.max_legs:
            raise ValueError(f"slot {slot} out of range 0..{self.max_legs - 1}")
        return slot

    def configure(self, int slot, double voice_threshold=0.5):
        """(Re)create the slot's detector with the mode for ``voice_threshold``."""
        self._slot_arg(slot)
        cdef int mode = webrtc_mode(voice_threshold)
        import _webrtcvad
        handle = _webrtcvad.create()
        _webrtcvad.init(handle)
        _webrtcvad.set_mode(handle, mode)
        self._insts[slot] = PyCapsule_GetPointer(handle, b"WebRtcVadPtr")
        self._handles[slot] = handle
        self._modes[slot] = mode

    def reset(self, int slot):
        """Restart the slot's detector (its noise estimates) keeping its mode."""
        self._slot_arg(slot)
        handle = self._handles[slot]
        if handle is None:
            raise ValueError(f"slot {slot} is not configured")
        import _webrtcvad
        _webrtcvad.init(handle)
        _webrtcvad.set_mode(handle, self._modes[slot])

    def mode(self, int slot):
        self._slot_arg(slot)
        return self._modes[slot] if self._handles[slot] is not None else None

    cdef int is_speech_c(self, int slot, const int16_t* pcm, int n) noexcept nogil:
        if slot < 0 or slot >= self.max_legs or self._insts[slot] == NULL:
            return -1
        if n != 160 and n != 320 and n != 480:
            return -1
        return self._process(self._insts[slot], 16000, pcm, n)

    def is_speech(self, int slot, frame):
        """WebRTC decision for one 10, 20 or 30 ms frame of 16 kHz int16 audio."""
        cdef Py_buffer view
        get_view(frame, &view, ITEM_INT16, False, "frame")
        cdef int n = <int>(view.len // 2)
        try:
            self._slot_arg(slot)
            if self._handles[slot] is None:
                raise ValueError(f"slot {slot} is not configured")
            if n != 160 and n != 320 and n != 480:
                raise ValueError(f"frame must be 160, 320 or 480 samples at 16 kHz, got {n}")
            return self.is_speech_c(slot, <const int16_t*>view.buf, n) == 1
        finally:
            PyBuffer_Release(&view)
