"""pbx.core.vad (speaking/silence state machine, WebRTC bank) and pbx.core.silero (batched silero VAD).

- The state machine is checked on hand-made decision sequences with exact event times, and
  against the pure-Python oracle (support/oracles/vad.py) on random sequences and configurations.
- Silero batched inference is checked against single-stream onnxruntime (support/oracles/silero.py)
  on legs fed different real speech, noise and silence, in changing batch subsets.
- End to end, speech-plus-silence scenes built from espeak-ng and digital silence (clean and with
  low-level noise) go through each detector and the state machine the way the engine drives them;
  the onset/offset truth comes from the speech envelope.  The state machine puts onsets and
  offsets exactly on the detector's window grid; what is left is the detectors' own latency,
  measured here (see DETECTOR_TOLERANCE_MS).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pytest
import webrtcvad
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.core import silero
from pbx.core.silero import SileroBatch
from pbx.core.vad import SEGMENT_CAP, SILENCE, SPEAKING, VadBank, WebRtcBank, webrtc_mode
from support.audio import espeak_speech, resampled
from support.oracles import silero as silero_oracle
from support.oracles.vad import VadOracle

MODEL_SIZE = 2327524
MODEL_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"


# ---- helpers -------------------------------------------------------------------------------------

def run_decisions(bank: VadBank, slot: int, decisions: list[tuple[float, int]], window_ms: int,
                  t0: int = 0) -> list[tuple[int, int, int, int]]:
    """Feed (value, count) runs of back-to-back windows; events as (kind, time, start, duration)."""
    t = t0
    out = []
    for value, count in decisions:
        for _ in range(count):
            bank.feed(slot, value, t, window_ms)
            out += [e[1:] for e in bank.drain()]
            t += window_ms
    return out


def speech_bounds(pcm: np.ndarray) -> tuple[float, float]:
    """Where the speech energy starts and ends (ms): 5 ms mean |x| above 1% of its peak."""
    env = np.convolve(np.abs(pcm.astype(np.float64)), np.ones(80) / 80, mode="same")
    idx = np.nonzero(env > 0.01 * env.max())[0]
    return idx[0] / 16.0, (idx[-1] + 1) / 16.0


@dataclass(frozen=True)
class Scene:
    pcm: np.ndarray        # int16 at 16 kHz
    onset_ms: float
    offset_ms: float


def scene(text: str, lead_ms: int, tail_ms: int, noise: float = 0.0, seed: int = 0) -> Scene:
    """Digital silence (or low-level noise), one espeak utterance, silence again; true bounds in ms."""
    speech = espeak_speech(16000, text=text)
    on, off = speech_bounds(speech)
    x = np.concatenate([np.zeros(lead_ms * 16), speech.astype(np.float64), np.zeros(tail_ms * 16)])
    if noise:
        x += np.random.default_rng(seed).standard_normal(len(x)) * noise
    pcm = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return Scene(pcm, lead_ms + on, lead_ms + off)


SCENES = [
    ("please call stella", 1000, 0.0),
    ("hello world", 1011, 0.0),
    ("one two three four", 1023, 0.0),
    ("can you hear me now", 1005, 30.0),    # noise ~ -61 dBFS rms
    ("seven", 1017, 30.0),
    ("please call stella", 1029, 30.0),
]


# ---- state machine: exact times ------------------------------------------------------------------

@pytest.fixture
def bank() -> VadBank:
    return VadBank(4)


def test_speech_then_silence_webrtc_grid(bank: VadBank) -> None:
    # 20 ms windows: voiced 1000..2000.  Confirmed at the first window end >= onset + 250.
    events = run_decisions(bank, 0, [(0.0, 50), (1.0, 50), (0.0, 20)], 20)
    assert events == [(SPEAKING, 1260, 1000, 260), (SILENCE, 2100, 2000, 100)]


def test_speech_then_silence_silero_grid(bank: VadBank) -> None:
    events = run_decisions(bank, 1, [(0.01, 32), (0.93, 31), (0.2, 10)], 32, t0=64)
    # onset 64 + 32*32 = 1088, offset 1088 + 31*32 = 2080; SILENCE once 4 windows (128 >= 100) passed
    assert events == [(SPEAKING, 1088 + 256, 1088, 256), (SILENCE, 2080 + 128, 2080, 128)]
    assert bank.segment_start(1) == 1088
    assert not bank.speaking(1)


def test_blip_shorter_than_speech_padding_gives_nothing(bank: VadBank) -> None:
    assert run_decisions(bank, 0, [(0.0, 10), (1.0, 12), (0.0, 30)], 20) == []   # 240 ms blip
    assert run_decisions(bank, 0, [(1.0, 13), (0.0, 5)], 20) != []                   # 260 ms is speech


def test_short_gaps_keep_speaking(bank: VadBank) -> None:
    # 80 ms gap (< silencePadding 100) inside speech: one SPEAKING, one SILENCE at the very end
    events = run_decisions(bank, 0, [(1.0, 20), (0.0, 4), (1.0, 20), (0.0, 10)], 20)
    assert events == [(SPEAKING, 260, 0, 260), (SILENCE, 980, 880, 100)]
    # a 100 ms gap ends the speech; the next onset is confirmed speechPadding after it
    bank.reset(0)
    events = run_decisions(bank, 0, [(1.0, 20), (0.0, 5), (1.0, 20), (0.0, 10)], 20)
    assert events == [(SPEAKING, 260, 0, 260), (SILENCE, 500, 400, 100),
                      (SPEAKING, 760, 500, 260), (SILENCE, 1000, 900, 100)]


def test_gap_inside_candidate_run_counts_toward_it(bank: VadBank) -> None:
    # 100 ms voiced, 60 ms gap, voiced again: confirmed with the first onset (fraction >= 0.5)
    events = run_decisions(bank, 0, [(0.0, 3), (1.0, 5), (0.0, 3), (1.0, 10)], 20)
    assert events == [(SPEAKING, 60 + 260, 60, 260)]
    # a gap of exactly silencePadding drops the blip: the onset is after the gap
    bank.reset(0)
    events = run_decisions(bank, 0, [(1.0, 5), (0.0, 5), (1.0, 20)], 20)
    assert events == [(SPEAKING, 200 + 260, 200, 260)]


def test_ratio_is_the_voiced_fraction_of_the_run(bank: VadBank) -> None:
    alternating = [(1.0, 1), (0.0, 1)] * 40
    # voiced 140 of 260 ms at the first check (0.54): speech at ratio 0.5 ...
    assert run_decisions(bank, 0, alternating, 20)[0] == (SPEAKING, 260, 0, 260)
    # ... but never at 0.6: the run keeps restarting
    bank.configure(0, ratio=0.6)
    assert run_decisions(bank, 0, alternating, 20) == []
    # ratio 1: any unvoiced window inside the first speechPadding delays the onset
    bank.configure(0, ratio=1.0)
    events = run_decisions(bank, 0, [(1.0, 5), (0.0, 1), (1.0, 20)], 20)
    assert events == [(SPEAKING, 120 + 260, 120, 260)]


def test_threshold_is_inclusive(bank: VadBank) -> None:
    bank.configure(0, threshold=0.7, speech_padding_ms=0)
    assert run_decisions(bank, 0, [(0.6999, 3)], 32) == []
    assert run_decisions(bank, 0, [(0.7, 1)], 32, t0=96) == [(SPEAKING, 128, 96, 32)]


def test_silence_timeout_repeats_with_growing_duration(bank: VadBank) -> None:
    bank.configure(2, silence_timeout_ms=1000)
    events = run_decisions(bank, 2, [(1.0, 25), (0.0, 180)], 20)
    assert events == [
        (SPEAKING, 260, 0, 260),
        (SILENCE, 600, 500, 100),
        (SILENCE, 1500, 500, 1000),
        (SILENCE, 2500, 500, 2000),
        (SILENCE, 3500, 500, 3000),
    ]
    # new speech stops the repeats; a blip does not
    events = run_decisions(bank, 2, [(1.0, 3), (0.0, 40), (1.0, 20), (0.0, 5)], 20, t0=4100)
    assert events == [(SILENCE, 4500, 500, 4000), (SPEAKING, 4960 + 260, 4960, 260),
                      (SILENCE, 5360 + 100, 5360, 100)]
    # on a grid that does not divide the timeout: the first window at or after each instant, no drift
    bank.configure(2, silence_timeout_ms=1000)
    events = run_decisions(bank, 2, [(1.0, 10), (0.0, 100)], 32)
    assert events == [(SPEAKING, 256, 0, 256), (SILENCE, 448, 320, 128), (SILENCE, 1344, 320, 1024),
                      (SILENCE, 2336, 320, 2016), (SILENCE, 3328, 320, 3008)]
    # without a timeout there is one SILENCE per speech
    bank.configure(2)
    assert [e[0] for e in run_decisions(bank, 2, [(1.0, 25), (0.0, 500)], 20)] == [SPEAKING, SILENCE]


def test_segment_cap(bank: VadBank) -> None:
    bank.configure(3, max_buffer_secs=1.0)
    events = run_decisions(bank, 3, [(0.0, 5), (1.0, 130), (0.0, 5)], 20)
    assert events == [
        (SPEAKING, 360, 100, 260),
        (SEGMENT_CAP, 1100, 100, 1000),
        (SEGMENT_CAP, 2100, 1100, 1000),
        (SILENCE, 2800, 2700, 100),
    ]
    assert bank.cap_hit(3)
    assert bank.segment_start(3) == 2100
    bank.configure(3, max_buffer_secs=0.0)
    assert [e[0] for e in run_decisions(bank, 3, [(1.0, 3000), (0.0, 5)], 20)] == [SPEAKING, SILENCE]
    assert not bank.cap_hit(3)


def test_cap_shorter_than_speech_padding_fires_with_speaking(bank: VadBank) -> None:
    bank.configure(0, max_buffer_secs=0.2)
    bank.feed(0, 1.0, 0, 300)
    assert bank.drain() == [(0, SPEAKING, 300, 0, 300), (0, SEGMENT_CAP, 300, 0, 300)]


def test_slots_are_independent() -> None:
    bank = VadBank(3)
    bank.configure(1, speech_padding_ms=40)
    for i in range(20):
        t = 20 * i
        bank.feed(0, 1.0, t, 20)
        bank.feed(1, 1.0, t, 20)
        bank.feed(2, 0.0, t, 20)
    assert bank.drain() == [(1, SPEAKING, 40, 0, 40), (0, SPEAKING, 260, 0, 260)]
    assert (bank.speaking(0), bank.speaking(1), bank.speaking(2)) == (True, True, False)
    assert bank.segment_start(2) is None


def test_feed_many_matches_feed() -> None:
    rng = np.random.default_rng(3)
    a, b = VadBank(8), VadBank(8)
    events = []
    for step in range(200):
        slots = rng.permutation(8)[: rng.integers(0, 9)].astype(np.int32)
        values = rng.random(len(slots)).astype(np.float32) ** 0.5
        starts = np.full(len(slots), 32 * step, dtype=np.int64)
        a.feed_many(slots, values, starts, 32)
        for s, v, t in zip(slots, values, starts, strict=True):
            b.feed(int(s), float(v), int(t), 32)
        got = a.drain()
        assert got == b.drain()
        events += got
    assert len(events) > 10


def test_full_event_buffer_leaves_state_untouched() -> None:
    bank = VadBank(2, event_capacity=3)
    bank.configure(0, speech_padding_ms=0, max_buffer_secs=0.01)
    assert bank.feed(0, 1.0, 0, 20) == 2             # SPEAKING + SEGMENT_CAP
    with pytest.raises(ValueError, match=r"^VAD event buffer full: drain\(\) first$"):
        bank.feed(0, 1.0, 20, 20)
    assert bank.pending == 2
    assert [e[1] for e in bank.drain()] == [SPEAKING, SEGMENT_CAP]
    assert bank.feed(0, 1.0, 20, 20) == 1            # the refused window, fed again
    assert bank.drain() == [(0, SEGMENT_CAP, 40, 20, 20)]


def test_argument_errors() -> None:
    bank = VadBank(2)
    zeros32 = np.zeros(1, np.float32)
    cases = [
        (lambda: bank.feed(2, 1.0, 0, 20), ValueError, "slot 2 out of range 0..1"),
        (lambda: bank.feed(-1, 1.0, 0, 20), ValueError, "slot -1 out of range 0..1"),
        (lambda: bank.feed(0, 1.0, 0, 0), ValueError, "window_ms must be positive"),
        (lambda: bank.configure(0, ratio=1.5), ValueError, "ratio must be in [0, 1]"),
        (lambda: bank.configure(0, threshold=-0.1), ValueError, "threshold must be in [0, 1]"),
        (lambda: bank.configure(0, speech_padding_ms=-1), ValueError, "speech_padding_ms must be >= 0"),
        (lambda: bank.configure(0, silence_padding_ms=-1), ValueError, "silence_padding_ms must be >= 0"),
        (lambda: bank.configure(0, silence_timeout_ms=-5), ValueError, "silence_timeout_ms must be >= 0"),
        (lambda: bank.configure(0, max_buffer_secs=-1), ValueError, "max_buffer_secs must be >= 0"),
        (lambda: VadBank(0), ValueError, "max_legs must be positive"),
        (lambda: VadBank(2, event_capacity=1), ValueError, "event_capacity must be >= 2"),
        (lambda: bank.feed_many(np.zeros(2, np.int32), zeros32, np.zeros(2, np.int64), 20),
         ValueError, "slots, values and window_start_ms must have the same length"),
        (lambda: bank.feed_many(np.array([0, 5], np.int32), zeros32.repeat(2), np.zeros(2, np.int64), 20),
         ValueError, "slot 5 out of range 0..1"),
    ]
    for call, exc, message in cases:
        with pytest.raises(exc) as info:
            call()
        assert str(info.value) == message


# ---- state machine against the oracle ------------------------------------------------------------

configs = st.fixed_dictionaries({
    # multiples of the window sizes hit the >= boundaries of R1..R5
    "speech_padding_ms": st.sampled_from([0, 60, 96, 240, 250, 256, 320]) | st.integers(0, 400),
    "silence_padding_ms": st.sampled_from([0, 60, 64, 96, 100, 120]) | st.integers(0, 300),
    "ratio": st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]) | st.floats(0.0, 1.0),
    "threshold": st.floats(0.0, 1.0, width=32),
    "silence_timeout_ms": st.sampled_from([0, 0, 1, 160, 192, 300, 960]) | st.integers(20, 1500),
    "max_buffer_secs": st.sampled_from([0.0, 50.0, 0.48, 0.96, 0.6]) | st.floats(0.01, 3.0),
})
runs = st.lists(st.tuples(st.floats(0.0, 1.0, width=32), st.integers(1, 25)), min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    legs=st.lists(st.tuples(configs, runs, st.sampled_from([10, 20, 30, 32])), min_size=1, max_size=3),
    t0=st.integers(-10**6, 10**12),
    gaps=st.lists(st.sampled_from([0, 0, 0, 0, 7, 40, 500]), min_size=1, max_size=20),
    order_seed=st.integers(0, 2**32 - 1),
)
def test_matches_oracle(legs: list, t0: int, gaps: list[int], order_seed: int) -> None:
    bank = VadBank(len(legs), event_capacity=2)
    oracles = []
    queues = []
    for slot, (config, leg_runs, window_ms) in enumerate(legs):
        bank.configure(slot, **config)
        oracles.append(VadOracle(**config))
        windows = []
        t = t0
        k = 0
        for value, count in leg_runs:
            for _ in range(count):
                windows.append((value, t, window_ms))
                t += window_ms + gaps[k % len(gaps)]   # mostly back to back
                k += 1
        queues.append(windows)
    got: list[list] = [[] for _ in legs]
    want: list[list] = [[] for _ in legs]
    rng = np.random.default_rng(order_seed)
    cursors = [0] * len(legs)
    while any(c < len(q) for c, q in zip(cursors, queues, strict=True)):
        slot = int(rng.choice([i for i, q in enumerate(queues) if cursors[i] < len(q)]))
        value, t, window_ms = queues[slot][cursors[slot]]
        cursors[slot] += 1
        bank.feed(slot, value, t, window_ms)
        for e in bank.drain():
            assert e[0] == slot
            assert e[3] + e[4] == e[2]
            got[slot].append(e[1:])
        want[slot] += oracles[slot].feed(value, t, window_ms)
    assert got == want
    for slot, oracle in enumerate(oracles):
        assert bank.speaking(slot) == oracle.speaking
        assert bank.segment_start(slot) == oracle.segment_start
        assert bank.cap_hit(slot) == oracle.cap_hit


# ---- WebRTC --------------------------------------------------------------------------------------

def test_webrtc_mode_table() -> None:
    table = {0.0: 0, 0.2499: 0, 0.25: 1, 0.4999: 1, 0.5: 2, 0.7499: 2, 0.75: 3, 1.0: 3}
    assert {t: webrtc_mode(t) for t in table} == table
    with pytest.raises(ValueError, match=r"^voice_threshold must be in \[0, 1\]$"):
        webrtc_mode(1.01)


@pytest.mark.parametrize("frame", [160, 320, 480])
def test_webrtc_matches_package(frame: int) -> None:
    pcm = scene("can you hear me now", 300, 500, noise=30.0).pcm
    bank = WebRtcBank(4)
    peers = []
    for slot, threshold in enumerate([0.1, 0.3, 0.5, 0.9]):
        bank.configure(slot, threshold)
        assert bank.mode(slot) == webrtc_mode(threshold)
        peers.append(webrtcvad.Vad(webrtc_mode(threshold)))
    ours = np.zeros((4, len(pcm) // frame), dtype=bool)
    theirs = np.zeros_like(ours)
    for i in range(ours.shape[1]):
        chunk = np.ascontiguousarray(pcm[i * frame:(i + 1) * frame])
        for slot in range(4):
            ours[slot, i] = bank.is_speech(slot, chunk)
            theirs[slot, i] = peers[slot].is_speech(chunk.tobytes(), 16000)
    assert np.array_equal(ours, theirs)
    assert 0.2 < ours.mean() < 0.9      # it does see both speech and silence


def test_webrtc_reset_restarts_the_detector() -> None:
    pcm = scene("hello world", 200, 300, noise=30.0).pcm
    frames = [np.ascontiguousarray(pcm[i * 320:(i + 1) * 320]) for i in range(len(pcm) // 320)]
    bank = WebRtcBank(1)
    bank.configure(0)
    first = [bank.is_speech(0, f) for f in frames]
    bank.reset(0)
    assert [bank.is_speech(0, f) for f in frames] == first


def test_webrtc_errors() -> None:
    bank = WebRtcBank(2)
    with pytest.raises(ValueError, match=r"^slot 0 is not configured$"):
        bank.is_speech(0, np.zeros(320, np.int16))
    bank.configure(0)
    with pytest.raises(ValueError, match=r"^frame must be 160, 320 or 480 samples at 16 kHz, got 321$"):
        bank.is_speech(0, np.zeros(321, np.int16))
    with pytest.raises(ValueError, match=r"^frame must be 160, 320 or 480 samples at 16 kHz, got 0$"):
        bank.is_speech(0, np.zeros(0, np.int16))
    with pytest.raises(TypeError, match=r"^frame must hold int16 samples, got format 'f'$"):
        bank.is_speech(0, np.zeros(320, np.float32))
    assert bank.is_speech(0, memoryview(bytes(640)).cast("h")) is False
    with pytest.raises(ValueError, match=r"^slot 2 out of range 0..1$"):
        bank.configure(2)
    assert bank.mode(1) is None


# ---- silero --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def session() -> object:
    return silero_oracle.make_session(silero.model_bytes())


def test_model_file_and_licence() -> None:
    files = resources.files("pbx.core").joinpath("models")
    model = files.joinpath("silero_vad.onnx").read_bytes()
    assert len(model) == MODEL_SIZE
    assert hashlib.sha256(model).hexdigest() == MODEL_SHA256
    assert silero.model_bytes() == model
    licence = files.joinpath("LICENSE.silero-vad").read_text()
    assert "MIT License" in licence and "Copyright (c) 2020-present Silero Team" in licence
    assert "silero-vad 6.2.3" in licence


def test_model_inputs_and_outputs() -> None:
    s = silero.make_session()
    assert [(i.name, i.type) for i in s.get_inputs()] == [
        ("input", "tensor(float)"), ("state", "tensor(float)"), ("sr", "tensor(int64)")]
    assert [o.name for o in s.get_outputs()] == ["output", "stateN"]
    assert s.get_inputs()[1].shape[0] == 2 and s.get_inputs()[1].shape[2] == 128
    out, state = s.run(None, {"input": np.zeros((3, 576), np.float32),
                              "state": np.zeros((2, 3, 128), np.float32),
                              "sr": np.array(16000, np.int64)})
    assert out.shape == (3, 1) and state.shape == (2, 3, 128)
    assert importlib.metadata.version("onnxruntime")


def leg_signals(n_legs: int, seconds: float) -> list[np.ndarray]:
    """Different real speech per leg (text, offset, noise), plus digital silence and noise-only legs."""
    texts = ["please call stella", "hello world", "one two three four", "can you hear me now"]
    n = int(seconds * 16000)
    rng = np.random.default_rng(11)
    out = []
    for leg in range(n_legs):
        kind = leg % 6
        if kind == 4:
            out.append(np.zeros(n, np.int16))
        elif kind == 5:
            out.append(np.round(rng.standard_normal(n) * 60).astype(np.int16))
        else:
            s = scene(texts[leg % 4], 100 + 37 * leg, 200, noise=20.0 * (leg % 2), seed=leg)
            out.append(np.resize(s.pcm, n))
    return out


def test_batched_equals_single_stream(session: object) -> None:
    n_legs, n_windows = 12, 80
    signals = leg_signals(n_legs, n_windows * 0.032 + 1)
    batch = SileroBatch(16)
    slot_of = np.arange(n_legs, dtype=np.int32) + 3       # legs need not start at slot 0
    streams = [silero_oracle.SileroStream(session) for _ in range(n_legs)]
    position = [0] * n_legs
    rng = np.random.default_rng(5)
    worst = 0.0
    probs: dict[int, list[float]] = {leg: [] for leg in range(n_legs)}
    for _ in range(n_windows):
        legs = rng.permutation(n_legs)[: rng.integers(1, n_legs + 1)]   # who has a full window now
        windows = np.stack([signals[g][position[g]:position[g] + 512] for g in legs]) / np.float32(32768)
        got = batch.infer(slot_of[legs], windows)
        for i, g in enumerate(legs):
            want = streams[g](windows[i])
            worst = max(worst, abs(float(got[i]) - want))
            probs[g].append(want)
            position[g] += 512
    assert worst <= 1e-5
    assert max(len(p) for p in probs.values()) > 40
    assert max(probs[0]) > 0.99 and max(probs[4]) < 0.05   # speech leg vs digital-silence leg


def test_the_8khz_graph_batched_equals_single_stream_and_finds_speech(session: object) -> None:
    """``rate=8000`` runs the model's own 8 kHz graph (256 + 32 samples a row): per leg it equals the
    single-stream reference at 8 kHz, by push/run_ready as by infer, and it finds the speech of a
    scene decimated to 8 kHz where the 16 kHz graph finds it."""
    s = scene("please call stella", 1000, 1000, noise=30.0)
    pcm8 = resampled(s.pcm, 16000, 8000)
    want = silero_oracle.probabilities(session, pcm8, 8000)
    batch = SileroBatch(3, rate=8000)
    assert (batch.rate, batch.window, batch.context, batch.row) == (8000, 256, 32, 288)
    x = pcm8.astype(np.float32) / 32768
    by_infer = np.array([batch.infer([1], x[i * 256:(i + 1) * 256][None])[0] for i in range(len(x) // 256)])
    assert np.abs(by_infer - want).max() <= 1e-5
    pushed = SileroBatch(3, rate=8000)
    got: list[float] = []
    for i in range(len(pcm8) // 160):                   # 20 ms frames of 8 kHz audio, as the engine has them
        pushed.push(2, np.ascontiguousarray(pcm8[i * 160:(i + 1) * 160]), i * 20)
        pushed.run_ready()
        got += list(pushed.results()[1])
    assert np.abs(np.array(got) - want[:len(got)]).max() <= 1e-5 and len(got) == len(want)
    t = np.arange(len(want)) * 32
    inside = (t >= s.onset_ms + 64) & (t + 32 <= s.offset_ms - 32)
    outside = (t + 32 <= s.onset_ms - 32) | (t >= s.offset_ms + 200)
    assert np.median(want[inside]) > 0.9 and want[outside].max() < 0.1
    with pytest.raises(ValueError, match="16000 or 8000"):
        SileroBatch(1, rate=11025)


def test_probability_high_on_speech_low_on_silence(session: object) -> None:
    s = scene("please call stella", 1000, 1000, noise=30.0)
    batch = SileroBatch(1)
    x = s.pcm.astype(np.float32) / 32768
    p = np.array([batch.infer([0], x[i * 512:(i + 1) * 512][None])[0] for i in range(len(x) // 512)])
    t = np.arange(len(p)) * 32
    inside = (t >= s.onset_ms + 64) & (t + 32 <= s.offset_ms - 32)
    outside = (t + 32 <= s.onset_ms - 32) | (t >= s.offset_ms + 200)
    assert np.median(p[inside]) > 0.95 and np.mean(p[inside] >= 0.5) > 0.8
    assert p[outside].max() < 0.1
    assert np.array_equal(p.astype(np.float32), silero_oracle.probabilities(session, s.pcm))


def test_push_run_ready_matches_infer(session: object) -> None:
    signals = leg_signals(6, 2.0)
    batch = SileroBatch(6)
    want = [silero_oracle.probabilities(session, x) for x in signals]
    got: list[list[tuple[int, float]]] = [[] for _ in signals]
    energies: list[list[float]] = [[] for _ in signals]
    starts = [1000 * leg for leg in range(6)]            # each leg has its own clock
    for tick in range(len(signals[0]) // 320):
        for leg, x in enumerate(signals):
            if leg == 2 and tick % 3 == 0:
                continue                                 # a leg with no audio this tick ...
            if leg == 2 and tick % 3 == 1:
                batch.push(leg, x[(tick - 1) * 320:(tick + 1) * 320], starts[leg] + 20 * (tick - 1))
                continue                                 # ... catches up with 40 ms the next
            batch.push(leg, x[tick * 320:(tick + 1) * 320], starts[leg] + 20 * tick)
        n = batch.run_ready()
        slots, probs, t = batch.results()
        assert len(slots) == n and len(set(slots.tolist())) == n
        for s, p, w, e in zip(slots, probs, t, batch.result_energies(), strict=True):
            got[s].append((int(w), float(p)))
            energies[s].append(float(e))
    for leg in range(6):
        times = [w for w, _ in got[leg]]
        assert times == [starts[leg] + 32 * i for i in range(len(times))]
        n = len(times)
        assert n >= len(want[leg]) - 2
        assert np.array_equal(np.array([p for _, p in got[leg]], np.float32), want[leg][:n])
        windows = signals[leg][: n * 512].astype(np.float64).reshape(n, 512)
        assert np.array_equal(np.array(energies[leg]), np.mean(windows**2, axis=1))


def test_reset_starts_a_fresh_stream(session: object) -> None:
    x = leg_signals(1, 1.0)[0].astype(np.float32) / 32768
    batch = SileroBatch(2)
    for i in range(10):
        batch.infer([1], x[i * 512:(i + 1) * 512][None])
    batch.push(1, np.ones(700, np.int16), 0)
    assert batch.ready == 1
    batch.reset(1)
    assert batch.ready == 0 and not batch.state(1).any()
    assert batch.run_ready() == 0
    got = [float(batch.infer([1], x[i * 512:(i + 1) * 512][None])[0]) for i in range(10)]
    want = silero_oracle.probabilities(session, (x[:5120] * 32768).astype(np.int16))
    assert np.array_equal(np.array(got, np.float32), want)


def test_silero_errors() -> None:
    batch = SileroBatch(4)
    w = np.zeros((2, 512), np.float32)
    cases = [
        (lambda: batch.infer([1, 1], w), "slot 1 appears twice in one batch"),
        (lambda: batch.infer([0, 4], w), "slot 4 out of range 0..3"),
        (lambda: batch.infer([0], w), "windows must be float32 [1, 512], got [2, 512]"),
        (lambda: batch.infer([0, 1], np.zeros((2, 480), np.float32)),
         "windows must be float32 [2, 512], got [2, 480]"),
        (lambda: batch.infer([0], np.zeros(512, np.float32)),
         "windows must be float32 [1, 512], got 1 dimensions"),
        (lambda: batch.infer_into(np.array([0, 1], np.int32), w, np.zeros(1, np.float32)),
         "out holds 1 values, need 2"),
        (lambda: batch.push(0, np.zeros(2049, np.int16), 0),
         "slot 0 holds more than 2048 samples: call run_ready()"),
        (lambda: SileroBatch(0), "max_legs must be positive"),
        (lambda: silero.make_session(0), "threads must be positive"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == message
    assert batch.infer([], np.zeros((0, 512), np.float32)).shape == (0,)
    # a rejected batch leaves no trace: slot 1 is usable again
    assert batch.infer([1], w[:1]).shape == (1,)


# ---- end to end: real speech through each detector and the state machine -------------------------

# Detector latency measured on these scenes (the state machine adds none: it reports the start of
# the first voiced window and the end of the last one).  Silero's probability rises one or two
# windows after the energy does and falls one to three windows after it; WebRTC's onset is within
# a frame or two but its built-in hangover keeps ~100 ms of "speech" after the energy ends.
# (onset lo, onset hi, offset lo, offset hi) in ms, error = detected - true.
DETECTOR_TOLERANCE_MS = {
    "silero": (-32, 96, -32, 128),
    "webrtc": (-20, 60, -20, 140),
}


def check_events(events: list[tuple[int, int, int, int]], s: Scene, detector: str, window_ms: int,
                 timeout_ms: int) -> None:
    on_lo, on_hi, off_lo, off_hi = DETECTOR_TOLERANCE_MS[detector]
    kinds = [e[0] for e in events]
    assert kinds[:2] == [SPEAKING, SILENCE], events
    assert set(kinds[2:]) == {SILENCE}, events                   # only timeout repeats follow
    (_, speak_time, onset, _), (_, silence_time, offset, duration) = events[:2]
    assert on_lo <= onset - s.onset_ms <= on_hi, (detector, onset, s.onset_ms)
    assert onset % window_ms == 0
    assert speak_time - onset in range(250, 250 + window_ms)     # confirmed speechPadding after onset
    assert off_lo <= offset - s.offset_ms <= off_hi, (detector, offset, s.offset_ms)
    assert offset % window_ms == 0
    assert duration in range(100, 100 + window_ms)               # emitted silencePadding after offset
    assert silence_time == offset + duration
    repeats = events[2:]                                         # at offset + k * timeout, on the grid
    assert [e[2] for e in repeats] == [offset] * len(repeats)
    assert [e[3] // timeout_ms for e in repeats] == list(range(1, len(repeats) + 1))
    assert all(e[3] % timeout_ms < window_ms and e[1] == offset + e[3] for e in repeats)


def test_end_to_end_silero() -> None:
    """All scenes as legs of one batch, driven like the engine: 20 ms pushes, one run per tick."""
    scenes = [scene(text, lead, 3300, noise, seed=i) for i, (text, lead, noise) in enumerate(SCENES)]
    n_ticks = min(len(s.pcm) for s in scenes) // 320
    batch = SileroBatch(len(scenes))
    bank = VadBank(len(scenes))
    for slot in range(len(scenes)):
        bank.configure(slot, threshold=0.5, silence_timeout_ms=1000)
    events: list[list] = [[] for _ in scenes]
    for tick in range(n_ticks):
        for slot, s in enumerate(scenes):
            batch.push(slot, s.pcm[tick * 320:(tick + 1) * 320], tick * 20)
        if batch.run_ready():
            slots, probs, starts = batch.results()
            bank.feed_many(slots, probs, starts, silero.WINDOW_MS)
        for e in bank.drain():
            events[e[0]].append(e[1:])
    for slot, s in enumerate(scenes):
        check_events(events[slot], s, "silero", 32, 1000)
        assert len(events[slot]) >= 4                             # SILENCE, then 2+ timeout repeats


def test_end_to_end_webrtc() -> None:
    scenes = [scene(text, lead, 3300, noise, seed=i) for i, (text, lead, noise) in enumerate(SCENES)]
    detectors = WebRtcBank(len(scenes))
    bank = VadBank(len(scenes))
    for slot in range(len(scenes)):
        detectors.configure(slot, 0.5)
        bank.configure(slot, threshold=0.5, silence_timeout_ms=1000)
    for slot, s in enumerate(scenes):
        events = []
        for i in range(len(s.pcm) // 320):
            speech = detectors.is_speech(slot, np.ascontiguousarray(s.pcm[i * 320:(i + 1) * 320]))
            bank.feed(slot, 1.0 if speech else 0.0, 20 * i, 20)
            events += [e[1:] for e in bank.drain()]
        check_events(events, s, "webrtc", 20, 1000)
        assert len(events) >= 4
