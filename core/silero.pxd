# C-level API of the batched silero VAD (see silero.pyx).
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t

cdef enum:
    SILERO_RATE = 16000
    SILERO_WINDOW = 512           # new samples per inference (32 ms)
    SILERO_WINDOW_MS = 32
    SILERO_CONTEXT = 64           # samples of the previous window prepended to each input row
    SILERO_ROW = 576              # SILERO_CONTEXT + SILERO_WINDOW
    SILERO_STATE = 128            # LSTM state per layer; the model keeps 2 layers ([2, N, 128])
    SILERO_PENDING = 2048         # per-slot accumulator for push_c, in samples (4 windows)
    # What a slot's LSTM state becomes over a window skipped by the level gate (see silero.pyx):
    SILERO_SKIP_KEEP = 0          # left as it was after the last inferred window
    SILERO_SKIP_ZERO = 1          # zeros, as for a fresh stream
    SILERO_SKIP_SILENCE = 2       # the state the model settles into on digital silence


cdef class SileroBatch:
    cdef readonly int max_legs
    cdef readonly int rate                 # 16000 or 8000: the model graph this batch runs
    cdef readonly int window               # new samples per window (32 ms): 512 or 256
    cdef readonly int context              # samples of the previous window in each row: 64 or 32
    cdef readonly int row                  # context + window
    cdef readonly int threads
    cdef readonly str model_name           # "float" or "int8" when loaded by name, "custom" for bytes
    # Level gate: a window whose mean square (int16 units squared) is below skip_below is not
    # inferred (probability 0, state per skip_policy); 0 infers every window.
    cdef public double skip_below
    cdef public int skip_policy
    cdef public int skip_after             # gated windows in a row still inferred before skipping starts
    cdef int32_t[::1] _quiet_run           # per slot: gated windows in a row so far
    cdef readonly long long n_inferred     # windows run through the model since creation
    cdef readonly long long n_skipped      # windows the gate answered without the model
    cdef object _silence_state_arr         # float32 [2, 128], SILERO_SKIP_SILENCE's target
    cdef float[:, ::1] _silence_state
    cdef int32_t[::1] _infer_slots         # scratch of run_ready: the slots actually inferred
    cdef float[::1] _infer_probs
    cdef int32_t[::1] _infer_index         # their positions in result_*
    cdef object _session
    cdef object _feeds_sr
    cdef object _output_names
    # Per-leg state, indexed by slot (numpy owners + typed views).
    cdef object _state_arr                 # float32 [max_legs, 2, 128]
    cdef float[:, :, ::1] _state
    cdef object _context_arr               # float32 [max_legs, 64]
    cdef float[:, ::1] _context
    cdef object _pending_arr               # float32 [max_legs, SILERO_PENDING] audio not yet inferred
    cdef float[:, ::1] _pending
    cdef int32_t[::1] _fill                # samples in _pending per slot
    cdef int64_t[::1] _pending_start_ms    # time of _pending[slot, 0]
    cdef uint8_t[::1] _queued              # slot is in _ready
    cdef int32_t[::1] _ready               # slots with a full window, in the order they filled
    cdef int n_ready
    # Batch scratch, reused every run (flat so that a [n, ...] prefix is contiguous).
    cdef object _input_arr                 # float32 [max_legs * 576]
    cdef float[::1] _input
    cdef object _state_in_arr              # float32 [2 * max_legs * 128]
    cdef float[::1] _state_in
    cdef uint8_t[::1] _seen
    # Results of the last run_ready(): result_slots[i] got result_probs[i] for the window
    # starting at result_start_ms[i]; n_results of them.  result_mean_square[i] lets the engine gate
    # silero's hangover into quiet (e.g. treat windows below -55 dBFS as unvoiced).
    cdef object _result_slots_arr
    cdef object _result_probs_arr
    cdef object _result_start_arr
    cdef object _result_ms_arr
    cdef int32_t[::1] result_slots
    cdef float[::1] result_probs
    cdef int64_t[::1] result_start_ms
    cdef double[::1] result_mean_square    # of the window's 512 samples, in int16 units squared
    cdef readonly int n_results

    # Append n samples of one leg (pcm[0] at start_ms); full windows wait for run_ready().
    # Returns the slot's full windows pending, -1 on a bad slot or accumulator overflow.
    cdef int push_c(self, int slot, const int16_t* pcm, int n, int64_t start_ms) noexcept nogil
    # One inference for every slot holding a full window (needs the GIL); results in result_*.
    cpdef int run_ready(self) except -1
    cdef void reset_c(self, int slot) noexcept nogil
    cdef int _run(self, int n, const int32_t* slots, float* probs) except -1
    cdef void _skip_window(self, int s, const float* w) noexcept nogil
    cdef int _slot_arg(self, int slot) except -1
