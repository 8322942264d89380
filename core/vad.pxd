# C-level API of the speaking/silence state machine (see vad.pyx for the rules).
from libc.stdint cimport int16_t, int32_t, int64_t

cdef extern from *:
    """
    #include <stdint.h>
    #define VAD_NO_TIME INT64_MIN
    """
    const int64_t VAD_NO_TIME     # "no such time" in VadSlot fields

cdef enum:
    VAD_SPEAKING = 1          # speech confirmed; start_ms = onset
    VAD_SILENCE = 2           # silence after speech (or a silenceTimeout repeat); start_ms = silence start
    VAD_SEGMENT_CAP = 3       # the speech segment reached maxBufferDurationSecs; start_ms = segment start
    VAD_MAX_EVENTS_PER_FEED = 2

cdef struct VadEvent:
    int32_t slot
    int32_t kind              # VAD_SPEAKING, VAD_SILENCE or VAD_SEGMENT_CAP
    int64_t time_ms           # end of the window that produced it (= start_ms + duration_ms)
    int64_t start_ms
    int64_t duration_ms

cdef struct VadSlot:
    # configuration (VADOption)
    float threshold           # value >= threshold is voiced
    double ratio
    int64_t speech_padding_ms
    int64_t silence_padding_ms
    int64_t silence_timeout_ms    # 0: off
    int64_t max_buffer_ms         # 0: no cap
    # state
    int32_t speaking
    int32_t cap_hit               # the current segment was cut at least once by the cap
    int64_t run_start_ms          # onset of the candidate run (VAD_NO_TIME: none)
    int64_t run_voiced_ms
    int32_t prev_voiced           # the previous window was voiced
    int64_t stretch_start_ms      # start of the current unbroken stretch of voiced windows
    int64_t stretch_voiced_ms
    int64_t last_voiced_end_ms
    int64_t silence_start_ms      # reported silence in progress (VAD_NO_TIME: none)
    int64_t next_timeout_ms       # when the next silenceTimeout repeat is due
    int64_t segment_start_ms      # current (or last) speech segment start (VAD_NO_TIME: none yet)


cdef class VadBank:
    cdef VadSlot* slots
    cdef readonly int max_legs
    # Events of every slot in feed order; the caller reads events[0:n_events] and sets n_events = 0.
    cdef VadEvent* events
    cdef int n_events
    cdef readonly int event_capacity

    cdef int feed_c(self, int slot, float value, int64_t window_start_ms, int window_ms) noexcept nogil
    cdef void reset_c(self, int slot) noexcept nogil
    cdef void _check_cap(self, int slot, VadSlot* s, int64_t end) noexcept nogil
    cdef void _emit(self, int slot, int kind, int64_t time_ms, int64_t start_ms) noexcept nogil
    cdef int _slot_arg(self, int slot) except -1


cdef int webrtc_mode_c(double voice_threshold) noexcept nogil


# WebRtcVad_Process of the webrtcvad-wheels extension, resolved with dlsym (its exported C symbol).
ctypedef int (*webrtc_process_fn)(void* inst, int fs, const int16_t* audio, size_t frame_length) noexcept nogil

cdef class WebRtcBank:
    cdef readonly int max_legs
    cdef list _handles                # the package's PyCapsule per slot (keeps the VadInst alive)
    cdef void** _insts                # the VadInst pointer per slot, NULL while unconfigured
    cdef list _modes
    cdef void* _lib
    cdef webrtc_process_fn _process

    # 1 speech, 0 not, -1 bad slot / frame size / library error. Pure C, no GIL needed.
    cdef int is_speech_c(self, int slot, const int16_t* pcm, int n) noexcept nogil
    cdef int _slot_arg(self, int slot) except -1
