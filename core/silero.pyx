# cython: language_level=3
"""Silero VAD for every call leg, one onnxruntime inference per 32 ms window over all legs that have one.

The model is ``models/silero_vad.onnx`` (silero-vad 6.2.3, MIT, see
``models/LICENSE.silero-vad``), loaded with importlib.resources, never downloaded.
At 16 kHz it takes

    input   float32 [N, 576]      64 samples of context (end of the previous window) + 512 new samples
    state   float32 [2, N, 128]   LSTM state, zeros for a fresh stream
    sr      int64   []            16000

and returns ``output`` float32 [N, 1] (speech probability) and ``stateN`` [2, N, 128]. Its 8 kHz graph
(``sr`` 8000) takes [N, 288]: 32 samples of context + 256 new ones, the same 32 ms; a batch runs one
graph (``SileroBatch(rate=...)``), and the engine keeps one batch per graph it uses.

:class:`SileroBatch` keeps every leg's state and context in numpy arrays indexed by
leg slot.  A batch gathers the rows of the slots taking part into scratch arrays,
runs ``session.run`` once for all of them, and scatters the new state and context
back: per-leg results equal single-stream ones, at a fraction of the cost
(one inference of N rows costs far less than N inferences of one row).

Why a .pyx: the gather/scatter loops and the engine's per-leg audio path
(``push_c``: int16 to float, append, queue the slot when a window is full) run in C
without the GIL; Python runs once per batch (``run_ready`` / ``infer``), never
per leg.  Two ways in:

- ``infer(slots, windows)``: the caller hands full windows (512 samples, 256 at 8 kHz), float32.
- ``push_c(slot, pcm, n, start_ms)`` per leg per tick from the engine (20 ms of
  int16 audio), then one ``run_ready()`` per tick: every slot holding a full
  window gets one inference; results in ``result_slots/result_probs/
  result_start_ms[0:n_results]``.  With 320-sample ticks a slot never holds two
  windows at once, so one call per tick drains everything.

Do not mix the two for the same slot (they share its state).

Level-gate skipping (``skip_below``).  The engine feeds silero's probability as 0 for a window
whose level is below its energy floor (-55 dBFS), whatever the model says, so running the model on
such a window only moves the slot's LSTM state.  With ``skip_below`` set to that floor (as a mean
square in int16 units squared), ``run_ready`` leaves those windows out of the batch and reports
them with probability 0, except the first ``skip_after`` gated windows in a row (default 8, 256 ms),
which are still inferred so that the LSTM state settles on the pause as it would without skipping.
The context (the window's last 64 samples) stays exact; the state of a skipped window follows
``skip_policy``: SKIP_KEEP leaves it as the last inferred window left it (the default), SKIP_ZERO
zeroes it (a fresh stream), SKIP_SILENCE sets the state the model settles into on digital silence
(computed once at creation).  bench/silero.py measured these against the onsets and offsets of a
run that infers everything (bench/RESULTS.md, "Cheaper silero (issue 13)"): SKIP_KEEP with 8
windows of hangover found every event, none extra, all within 2 windows (64 ms) and 94-98 % at the
same ms; skipping at once lost 7 % of the onsets (the state frozen on speech), and resetting
(zero, silence) added events.  ``infer``/``infer_into`` never skip.

Models: ``"float"`` (``models/silero_vad.onnx``) and ``"int8"`` (``models/silero_vad_int8.onnx``,
made from it by bench/silero.py's ``quantize`` step: the 16 kHz branch only, encoder convolutions
statically quantised to int8 with QDQ; the ``sr`` input is then ignored).
"""

from importlib import resources

from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t
from libc.string cimport memcpy, memmove, memset

import numpy as np

from pbx.core.errors import CoreError

MODEL_FILE = "silero_vad.onnx"
MODEL_FILES = {"float": MODEL_FILE, "int8": "silero_vad_int8.onnx"}
INT8_8K_FILE = "silero_vad_int8_8k.onnx"     # the 8 kHz graph quantised (bench/silero.py quantize --rate 8000)
SKIP_KEEP = SILERO_SKIP_KEEP
SKIP_ZERO = SILERO_SKIP_ZERO
SKIP_SILENCE = SILERO_SKIP_SILENCE
SKIP_POLICIES = {"keep": SILERO_SKIP_KEEP, "zero": SILERO_SKIP_ZERO, "silence": SILERO_SKIP_SILENCE}
SILENCE_WINDOWS = 32     # zero windows run from a fresh state to reach SKIP_SILENCE's state
SKIP_AFTER = 8           # gated windows in a row still inferred (256 ms) before skipping; see the docstring
INPUT_NAMES = ("input", "state", "sr")
OUTPUT_NAMES = ("output", "stateN")
WINDOW = SILERO_WINDOW
WINDOW_MS = SILERO_WINDOW_MS
CONTEXT = SILERO_CONTEXT
RATE = SILERO_RATE
RATES = (16000, 8000)    # the model's two graphs (the ``sr`` input chooses)


def model_bytes(name="float", int rate=SILERO_RATE):
    """A bundled model: ``"float"`` (silero_vad.onnx, both graphs) or ``"int8"`` (silero_vad_int8.onnx, the
    16 kHz graph; silero_vad_int8_8k.onnx for ``rate`` 8000)."""
    try:
        fname = MODEL_FILES[name]
    except KeyError:
        raise ValueError(f"unknown silero model {name!r}; expected one of {', '.join(MODEL_FILES)}") from None
    if name == "int8" and rate == 8000:
        fname = INT8_8K_FILE
    return resources.files("pbx.core").joinpath("models", fname).read_bytes()


def make_session(int threads=1, model=None):
    """An onnxruntime CPU session: ``threads`` intra-op threads, sequential execution, all graph optimisations."""
    if threads <= 0:
        raise ValueError("threads must be positive")
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if model is None or isinstance(model, str):
        model = model_bytes("float" if model is None else model)
    session = ort.InferenceSession(model, sess_options=opts,
                                   providers=["CPUExecutionProvider"])
    inputs = tuple(i.name for i in session.get_inputs())
    outputs = tuple(o.name for o in session.get_outputs())
    if inputs != INPUT_NAMES or outputs != OUTPUT_NAMES:
        raise CoreError(f"silero model has inputs {inputs} and outputs {outputs}, "
                        f"expected {INPUT_NAMES} and {OUTPUT_NAMES}")
    return session


cdef class SileroBatch:
    """Silero VAD state of ``max_legs`` legs, inferred in batches across legs, at ``rate``: 16000 (512
    new samples + 64 of context a row) or 8000 (the model's 8 kHz graph: 256 + 32, about 0.57x the
    16 kHz graph's cost, bench/silero_branches.py; the audio of a G.711 call is 8 kHz).

    ``model``: ``"float"`` (default), ``"int8"`` (the graph of ``rate`` quantised) or the bytes of an
    ONNX model.  ``skip_below``: the level gate's mean square (int16 units squared; 0: infer every
    window), ``skip_policy``: ``"keep"``, ``"zero"`` or ``"silence"`` (see the module docstring).
    """

    def __init__(self, int max_legs, int threads=1, model=None, double skip_below=0.0, str skip_policy="keep",
                 int skip_after=SKIP_AFTER, int rate=SILERO_RATE):
        if max_legs <= 0:
            raise ValueError("max_legs must be positive")
        if rate not in RATES:
            raise ValueError(f"silero runs at {' or '.join(map(str, RATES))} Hz, not {rate}")
        self.rate = rate
        self.window = rate * SILERO_WINDOW_MS // 1000          # 512 at 16 kHz, 256 at 8 kHz
        self.context = SILERO_CONTEXT * rate // SILERO_RATE    # 64, 32
        self.row = self.context + self.window
        if skip_below < 0:
            raise ValueError("skip_below must be >= 0")
        if skip_after < 0:
            raise ValueError("skip_after must be >= 0")
        if skip_policy not in SKIP_POLICIES:
            raise ValueError(f"unknown skip policy {skip_policy!r}; expected one of {', '.join(SKIP_POLICIES)}")
        self.max_legs = max_legs
        self.threads = threads
        self.model_name = "float" if model is None else model if isinstance(model, str) else "custom"
        self._session = make_session(threads, model_bytes(model, rate) if isinstance(model, str) else model)
        self.skip_below = skip_below
        self.skip_policy = SKIP_POLICIES[skip_policy]
        self.skip_after = skip_after
        self._quiet_run = np.zeros(max_legs, dtype=np.int32)
        self.n_inferred = 0
        self.n_skipped = 0
        self._infer_slots = np.zeros(max_legs, dtype=np.int32)
        self._infer_probs = np.zeros(max_legs, dtype=np.float32)
        self._infer_index = np.zeros(max_legs, dtype=np.int32)
        self._output_names = list(OUTPUT_NAMES)
        self._feeds_sr = np.array(self.rate, dtype=np.int64)
        self._state_arr = np.zeros((max_legs, 2, SILERO_STATE), dtype=np.float32)
        self._state = self._state_arr
        self._context_arr = np.zeros((max_legs, self.context), dtype=np.float32)
        self._context = self._context_arr
        self._pending_arr = np.zeros((max_legs, SILERO_PENDING), dtype=np.float32)
        self._pending = self._pending_arr
        self._fill = np.zeros(max_legs, dtype=np.int32)
        self._pending_start_ms = np.zeros(max_legs, dtype=np.int64)
        self._queued = np.zeros(max_legs, dtype=np.uint8)
        self._ready = np.zeros(max_legs, dtype=np.int32)
        self.n_ready = 0
        self._input_arr = np.zeros(max_legs * self.row, dtype=np.float32)
        self._input = self._input_arr
        self._state_in_arr = np.zeros(2 * max_legs * SILERO_STATE, dtype=np.float32)
        self._state_in = self._state_in_arr
        self._seen = np.zeros(max_legs, dtype=np.uint8)
        self._result_slots_arr = np.zeros(max_legs, dtype=np.int32)
        self._result_probs_arr = np.zeros(max_legs, dtype=np.float32)
        self._result_start_arr = np.zeros(max_legs, dtype=np.int64)
        self._result_ms_arr = np.zeros(max_legs, dtype=np.float64)
        self.result_mean_square = self._result_ms_arr
        self.result_slots = self._result_slots_arr
        self.result_probs = self._result_probs_arr
        self.result_start_ms = self._result_start_arr
        self.n_results = 0
        self._silence_state_arr = self._settle_on_silence()
        self._silence_state = self._silence_state_arr

    def _settle_on_silence(self):
        """The LSTM state after SILENCE_WINDOWS windows of zeros from a fresh state, float32 [2, 128]."""
        state = np.zeros((2, 1, SILERO_STATE), dtype=np.float32)
        row = np.zeros((1, self.row), dtype=np.float32)
        for _ in range(SILENCE_WINDOWS):
            state = self._session.run(self._output_names, {"input": row, "state": state, "sr": self._feeds_sr})[1]
        return np.ascontiguousarray(state[:, 0, :])

    cdef int _slot_arg(self, int slot) except -1:
        if slot < 0 or slot >= self.max_legs:
            raise ValueError(f"slot {slot} out of range 0..{self.max_legs - 1}")
        return slot

    cdef int _run(self, int n, const int32_t* slots, float* probs) except -1:
        """One inference over batch rows 0..n-1 (input rows already filled); slots[i] owns row i."""
        cdef int i, s
        cdef float* st_in = &self._state_in[0]
        cdef float* inp = &self._input[0]
        with nogil:
            for i in range(n):   # state [max_legs, 2, 128] -> [2, n, 128]
                s = slots[i]
                memcpy(st_in + i * SILERO_STATE, &self._state[s, 0, 0], SILERO_STATE * sizeof(float))
                memcpy(st_in + (n + i) * SILERO_STATE, &self._state[s, 1, 0], SILERO_STATE * sizeof(float))
        outs = self._session.run(self._output_names, {
            "input": self._input_arr[:n * self.row].reshape(n, self.row),
            "state": self._state_in_arr[:2 * n * SILERO_STATE].reshape(2, n, SILERO_STATE),
            "sr": self._feeds_sr,
        })
        cdef const float[:, ::1] out = outs[0]
        cdef const float[:, :, ::1] state_out = outs[1]
        if out.shape[0] != n or state_out.shape[1] != n:
            raise CoreError(f"silero model returned {out.shape[0]} results for {n} rows")
        with nogil:
            for i in range(n):
                s = slots[i]
                probs[i] = out[i, 0]
                memcpy(&self._state[s, 0, 0], &state_out[0, i, 0], SILERO_STATE * sizeof(float))
                memcpy(&self._state[s, 1, 0], &state_out[1, i, 0], SILERO_STATE * sizeof(float))
                memcpy(&self._context[s, 0], inp + i * self.row + self.window,
                       self.context * sizeof(float))
        return n

    def infer_into(self, const int32_t[::1] slots, const float[:, ::1] windows, float[::1] out):
        """Probabilities of one window (512 samples, 256 at 8 kHz) per slot into ``out``; returns the count.

        ``slots``: int32, distinct; ``windows``: float32 [n, window] in [-1, 1].
        """
        cdef Py_ssize_t n = slots.shape[0]
        cdef int i, s
        if windows.shape[0] != n or windows.shape[1] != self.window:
            raise ValueError(f"windows must be float32 [{n}, {self.window}], "
                             f"got [{windows.shape[0]}, {windows.shape[1]}]")
        if out.shape[0] < n:
            raise ValueError(f"out holds {out.shape[0]} values, need {n}")
        if n == 0:
            return 0
        if n > self.max_legs:
            raise ValueError(f"{n} windows for {self.max_legs} legs")
        for i in range(n):
            self._slot_arg(slots[i])
        try:
            for i in range(n):
                s = slots[i]
                if self._seen[s]:
                    raise ValueError(f"slot {s} appears twice in one batch")
                self._seen[s] = 1
        finally:
            for i in range(n):
                self._seen[slots[i]] = 0
        cdef float* inp = &self._input[0]
        with nogil:
            for i in range(n):
                s = slots[i]
                memcpy(inp + i * self.row, &self._context[s, 0], self.context * sizeof(float))
                memcpy(inp + i * self.row + self.context, &windows[i, 0], self.window * sizeof(float))
        return self._run(<int>n, &slots[0], &out[0])

    def infer(self, slots, windows):
        """Speech probability (float32 [n]) of one window per slot, one inference for all."""
        slots = np.ascontiguousarray(slots, dtype=np.int32)
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        if windows.ndim != 2:
            raise ValueError(f"windows must be float32 [{slots.shape[0]}, {self.window}], "
                             f"got {windows.ndim} dimensions")
        out = np.empty(slots.shape[0], dtype=np.float32)
        self.infer_into(slots, windows, out)
        return out

    cdef int push_c(self, int slot, const int16_t* pcm, int n, int64_t start_ms) noexcept nogil:
        if slot < 0 or slot >= self.max_legs or n < 0:
            return -1
        cdef int fill = self._fill[slot], i
        if fill + n > SILERO_PENDING:
            return -1
        if fill == 0:
            self._pending_start_ms[slot] = start_ms
        cdef float* dst = &self._pending[slot, 0] + fill
        for i in range(n):
            dst[i] = pcm[i] * (1.0 / 32768.0)
        fill += n
        self._fill[slot] = fill
        if fill >= self.window and not self._queued[slot]:
            self._queued[slot] = 1
            self._ready[self.n_ready] = slot
            self.n_ready += 1
        return fill // self.window

    def push(self, int slot, const int16_t[::1] pcm, long long start_ms):
        """Append a leg's audio at the batch's rate (pcm[0] at ``start_ms``); returns its full windows waiting."""
        self._slot_arg(slot)
        if pcm.shape[0] == 0:
            return self._fill[slot] // self.window
        cdef int r = self.push_c(slot, &pcm[0], <int>pcm.shape[0], start_ms)
        if r < 0:
            raise ValueError(f"slot {slot} holds more than {SILERO_PENDING} samples: call run_ready()")
        return r

    cpdef int run_ready(self) except -1:
        """One inference for every slot holding a full window; returns how many windows (see result_*).

        Windows below ``skip_below`` are answered without the model (probability 0) and counted in
        ``n_skipped``; the others go through one batch and count in ``n_inferred``.
        """
        cdef int n = self.n_ready, i, j, k, s, rest, m = 0
        cdef float* inp = &self._input[0]
        cdef const float* w
        cdef double acc
        self.n_results = 0
        if n == 0:
            return 0
        with nogil:
            for i in range(n):
                s = self._ready[i]
                self.result_slots[i] = s
                self.result_start_ms[i] = self._pending_start_ms[s]
                w = &self._pending[s, 0]
                acc = 0.0
                for j in range(self.window):
                    acc += <double>w[j] * w[j]
                acc = acc * (32768.0 * 32768.0 / self.window)
                self.result_mean_square[i] = acc
                if acc < self.skip_below:   # the gate calls it silence: no inference once skip_after have run
                    self._quiet_run[s] += 1
                    if self._quiet_run[s] > self.skip_after:
                        self.result_probs[i] = 0.0
                        self._skip_window(s, w)
                        continue
                else:
                    self._quiet_run[s] = 0
                memcpy(inp + m * self.row, &self._context[s, 0], self.context * sizeof(float))
                memcpy(inp + m * self.row + self.context, w, self.window * sizeof(float))
                self._infer_slots[m] = s
                self._infer_index[m] = i
                m += 1
        if m > 0:
            self._run(m, &self._infer_slots[0], &self._infer_probs[0])
            for i in range(m):
                self.result_probs[self._infer_index[i]] = self._infer_probs[i]
        self.n_inferred += m
        self.n_skipped += n - m
        with nogil:
            k = 0
            for i in range(n):   # consume the window; a slot with another full one stays queued
                s = self.result_slots[i]
                rest = self._fill[s] - self.window
                memmove(&self._pending[s, 0], &self._pending[s, self.window], rest * sizeof(float))
                self._fill[s] = rest
                self._pending_start_ms[s] += SILERO_WINDOW_MS
                if rest >= self.window:
                    self._ready[k] = s
                    k += 1
                else:
                    self._queued[s] = 0
            self.n_ready = k
        self.n_results = n
        return n

    cdef void _skip_window(self, int s, const float* w) noexcept nogil:
        """A window left out by the gate: exact context, state per skip_policy."""
        memcpy(&self._context[s, 0], w + self.window - self.context, self.context * sizeof(float))
        if self.skip_policy == SILERO_SKIP_ZERO:
            memset(&self._state[s, 0, 0], 0, 2 * SILERO_STATE * sizeof(float))
        elif self.skip_policy == SILERO_SKIP_SILENCE:
            memcpy(&self._state[s, 0, 0], &self._silence_state[0, 0], 2 * SILERO_STATE * sizeof(float))

    def results(self):
        """Copies of the last run_ready() results: (slots int32, probabilities float32, window start ms int64)."""
        n = self.n_results
        return (self._result_slots_arr[:n].copy(), self._result_probs_arr[:n].copy(),
                self._result_start_arr[:n].copy())

    def result_energies(self):
        """Mean square (int16 units squared, float64) of each window of the last run_ready()."""
        return self._result_ms_arr[:self.n_results].copy()

    @property
    def ready(self):
        """Slots holding a full window now."""
        return self.n_ready

    cdef void reset_c(self, int slot) noexcept nogil:
        if slot < 0 or slot >= self.max_legs:
            return
        memset(&self._state[slot, 0, 0], 0, 2 * SILERO_STATE * sizeof(float))
        memset(&self._context[slot, 0], 0, self.context * sizeof(float))
        self._fill[slot] = 0
        self._quiet_run[slot] = 0
        cdef int i, k = 0
        if self._queued[slot]:
            for i in range(self.n_ready):
                if self._ready[i] != slot:
                    self._ready[k] = self._ready[i]
                    k += 1
            self.n_ready = k
            self._queued[slot] = 0

    def reset(self, int slot):
        """Start the slot afresh: zero state and context, drop its pending audio."""
        self._slot_arg(slot)
        self.reset_c(slot)

    def state(self, int slot):
        """Copy of the slot's LSTM state, float32 [2, 128]."""
        self._slot_arg(slot)
        return self._state_arr[slot].copy()
