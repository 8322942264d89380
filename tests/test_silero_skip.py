"""Silero level-gate skipping and the int8 model (core/silero.pyx, Engine.set_silero).

- A skipped window gives probability 0, keeps the state as the policy says and the context exact:
  checked against the single-stream oracle (support/oracles/silero.py) driven the same way.
- Onsets and offsets of real speech with pauses (espeak-ng over a -70 dBFS line) with skipping equal
  those of inference of every window, each within 2 windows (64 ms): the tolerance bench/silero.py
  measured over 24 legs x 40 s; here no event may be missing or extra.
- Speech after 10 s of digital silence is detected, at the same onset as without skipping.
- The int8 model loads by name and agrees with the float one on real speech.
"""

from __future__ import annotations

import asyncio
import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from pbx import config
from pbx.client import AudioEncoder, connect
from pbx.config import Config
from pbx.core import engine as eng
from pbx.core import g711, silero
from pbx.core.engine import Engine
from pbx.core.silero import SileroBatch
from pbx.core.vad import SILENCE, SPEAKING
from pbx.errors import ConfigError
from pbx.protocol import AnswerEvent, SpeakingEvent
from pbx.server.app import CallServer
from support.audio import espeak_speech, resampled
from support.oracles import silero as silero_oracle
from support.silero_events import FLOOR, TOLERANCE_MS, agreement, conversation, engine_path
from tests.support.calls import LOOPBACK_SIP

WINDOW = 512
TICK = 320                # the engine pushes 20 ms per tick


def assert_same_events(ref: list[tuple[int, int]], got: list[tuple[int, int]], tolerance_ms: int) -> None:
    assert [k for k, _ in got] == [k for k, _ in ref], (ref, got)
    for (_, a), (_, b) in zip(ref, got, strict=True):
        assert abs(a - b) <= tolerance_ms, (ref, got)


@pytest.fixture(scope="module")
def signals() -> list[np.ndarray]:
    quiet = [conversation(seed, -70.0) for seed in (1, 2, 3)]
    return [*quiet, conversation(4, None), np.roll(quiet[0], 7 * TICK)]


def test_skipping_keeps_onsets_and_offsets_of_speech_with_pauses(signals: list[np.ndarray]) -> None:
    full = SileroBatch(len(signals))
    skipping = SileroBatch(len(signals), skip_below=FLOOR)
    ref = engine_path(signals, full)
    got = engine_path(signals, skipping)
    assert full.n_skipped == 0
    windows = skipping.n_inferred + skipping.n_skipped
    assert windows == full.n_inferred
    assert skipping.n_skipped > 0.25 * windows      # the pauses really were skipped
    for leg_ref, leg_got in zip(ref, got, strict=True):
        assert sum(k == SPEAKING for k, _ in leg_ref) >= 3     # three utterances (a comma may split one)
        assert_same_events(leg_ref, leg_got, TOLERANCE_MS)


def test_speech_after_long_silence_is_detected() -> None:
    speech = espeak_speech(16000, "Are you still there?")
    signal = np.concatenate([np.zeros(10 * 16000, np.int16), speech, np.zeros(16000, np.int16)])
    full = SileroBatch(1)
    skipping = SileroBatch(1, skip_below=FLOOR)
    ref = engine_path([signal], full)[0]
    got = engine_path([signal], skipping)[0]
    assert skipping.n_skipped >= 10 * 16000 // WINDOW - silero.SKIP_AFTER - 1
    onsets = [start for kind, start in got if kind == SPEAKING]
    assert len(onsets) == 1 and 10_000 <= onsets[0] <= 10_000 + 300, got
    assert [k for k, _ in got] == [SPEAKING, SILENCE]
    assert_same_events(ref, got, TOLERANCE_MS)


@pytest.mark.parametrize("policy", ["keep", "zero", "silence"])
def test_skipped_window_against_the_oracle(policy: str) -> None:
    """loud, quiet (skipped), loud: probabilities and state equal the oracle driven the same way."""
    session = silero_oracle.make_session(silero.model_bytes())
    speech = espeak_speech(16000, "one two three").astype(np.float32)
    loud = speech[8000:8000 + 3 * WINDOW]
    quiet = np.full(WINDOW, 20.0, np.float32)       # -64 dBFS: below the floor
    windows = [loud[:WINDOW], loud[WINDOW:2 * WINDOW], quiet, quiet, loud[2 * WINDOW:]]
    batch = SileroBatch(2, skip_below=FLOOR, skip_policy=policy, skip_after=0)
    oracle = silero_oracle.SileroStream(session)
    silence_state = np.zeros((2, 1, 128), np.float32)
    for _ in range(silero.SILENCE_WINDOWS):
        settle = silero_oracle.SileroStream(session)
        settle.state = silence_state
        settle(np.zeros(WINDOW, np.float32))
        silence_state = settle.state
    for t, w in enumerate(windows):
        batch.push(1, w.astype(np.int16), 32 * t)
        assert batch.run_ready() == 1
        _slots, probs, _starts = batch.results()
        x = w / 32768.0
        if np.mean(w.astype(np.float64) ** 2) < FLOOR:
            assert probs[0] == 0.0
            oracle.context = x[None, -64:].astype(np.float32)    # the context stays exact
            if policy == "zero":
                oracle.state = np.zeros((2, 1, 128), np.float32)
            elif policy == "silence":
                oracle.state = silence_state.copy()
        else:
            assert probs[0] == pytest.approx(oracle(x), abs=1e-5)
        np.testing.assert_allclose(batch.state(1), oracle.state[:, 0, :], atol=1e-5)
    assert (batch.n_inferred, batch.n_skipped) == (3, 2)


def test_skip_after_infers_the_first_quiet_windows() -> None:
    batch = SileroBatch(1, skip_below=FLOOR, skip_after=3)
    quiet = np.zeros(5 * WINDOW, np.int16)
    batch.push(0, quiet[:4 * WINDOW], 0)
    for _ in range(4):
        batch.run_ready()
    assert (batch.n_inferred, batch.n_skipped) == (3, 1)
    batch.reset(0)                 # a reset slot starts counting again
    batch.push(0, quiet[:WINDOW], 0)
    batch.run_ready()
    assert (batch.n_inferred, batch.n_skipped) == (4, 1)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="skip_below must be >= 0"):
        SileroBatch(1, skip_below=-1.0)
    with pytest.raises(ValueError, match="skip_after must be >= 0"):
        SileroBatch(1, skip_after=-1)
    with pytest.raises(ValueError, match="unknown skip policy 'later'; expected one of keep, zero, silence"):
        SileroBatch(1, skip_policy="later")
    with pytest.raises(ValueError, match="unknown silero model 'int4'; expected one of float, int8"):
        silero.model_bytes("int4")


@pytest.mark.parametrize("rate", [16000, 8000])
def test_int8_model_file_and_licence(rate: int) -> None:
    model = silero.model_bytes("int8", rate)
    licence = resources.files("pbx.core").joinpath("models", "LICENSE.silero-vad").read_text()
    assert f"sha256 {hashlib.sha256(model).hexdigest()}" in licence
    assert f"{len(model):,} bytes" in licence and "MIT License" in licence


def test_int8_model_agrees_with_float_on_speech(signals: list[np.ndarray]) -> None:
    batch = SileroBatch(len(signals), model="int8")
    assert batch.model_name == "int8"
    assert len(silero.model_bytes("int8")) < len(silero.model_bytes("float"))
    ref = engine_path(signals, SileroBatch(len(signals)))
    got = engine_path(signals, batch)
    assert all(sum(k == SPEAKING for k, _ in leg) >= 2 for leg in got)
    found = agreement(ref, got)
    assert found["matched"] >= 0.9 * found["events"], (ref, got)


@pytest.mark.parametrize("model", ["float", "int8"])
def test_the_8khz_graph_agrees_with_the_16khz_one_on_telephone_audio(signals: list[np.ndarray], model: str) -> None:
    """A G.711 call's audio is 8 kHz: the 16 kHz float graph gets it upsampled (what the engine does with
    rate 16000), the 8 kHz graph (float, or quantised) as it is (rate auto). Same events, each within
    TOLERANCE_MS, for nearly all."""
    narrow = [resampled(s, 16000, 8000) for s in signals]
    ref = engine_path([resampled(s, 8000, 16000) for s in narrow], SileroBatch(len(signals), skip_below=FLOOR))
    got = engine_path(narrow, SileroBatch(len(signals), skip_below=FLOOR, rate=8000, model=model))
    assert all(sum(k == SPEAKING for k, _ in leg) >= 3 for leg in got)
    found = agreement(ref, got)
    assert found["matched"] >= 0.9 * found["events"] and found["extra"] <= 0.1 * found["events"], (ref, got)


def test_engine_set_silero() -> None:
    e = Engine(4)
    with pytest.raises(ValueError, match="unknown silero model 'int4'; expected float or int8"):
        e.set_silero("int4")
    e.set_silero("int8", skip=True)
    leg = e.add_leg("stream", "pcm", 0.0)
    e.set_vad(leg, "silero")
    e.set_silero("int8", skip=True)             # the same settings: accepted
    with pytest.raises(ValueError, match="silero already runs model 'int8' with skip on"):
        e.set_silero("float")
    speech = espeak_speech(16000, "Are you still there?")
    e.feed(leg, np.concatenate([np.zeros(16000, np.int16), speech]).astype("<i2").tobytes())
    events = []
    for k in range((16000 + len(speech)) // TICK):
        events += e.tick(20.0 * k)
    inferred, skipped = e.silero_counts
    assert skipped >= 31 - silero.SKIP_AFTER - 1      # the leading second of digital silence
    assert inferred + skipped == (16000 + len(speech)) // WINDOW
    assert [ev for ev in events if ev[1] == eng.SPEAKING], events


def test_engine_runs_the_8khz_graph_for_8khz_legs_with_rate_auto() -> None:
    """``set_silero(rate="auto")``: a PCMU leg's silero runs on the model's 8 kHz graph with the leg's own
    8 kHz audio, a 16 kHz leg's on the 16 kHz graph; both find the same speech (one window apart at most)."""
    e = Engine(4)
    e.set_silero("float", skip=True, rate="auto")
    narrow, wide = e.add_leg("stream", "pcmu", 0.0), e.add_leg("stream", "pcm", 0.0)
    for leg in (narrow, wide):
        e.set_vad(leg, "silero")
    assert (narrow.silero8, wide.silero8) == (True, False)
    speech = np.concatenate([np.zeros(16000, np.int16), espeak_speech(16000, "Are you still there?")])
    e.feed(wide, speech.astype("<i2").tobytes())
    narrow_pcm = resampled(speech, 16000, 8000)
    e.feed(narrow, g711.ulaw_encode(narrow_pcm))
    events = []
    for k in range(len(speech) // TICK):
        events += e.tick(20.0 * k)
    onsets = {slot: [t for s, kind, t, *_ in events if s == slot and kind == eng.SPEAKING]
              for slot in (narrow.slot, wide.slot)}
    assert onsets[narrow.slot] and len(onsets[narrow.slot]) == len(onsets[wide.slot]), onsets
    assert all(abs(a - b) <= silero.WINDOW_MS for a, b in zip(onsets[narrow.slot], onsets[wide.slot], strict=True))
    inferred, skipped = e.silero_counts
    assert inferred + skipped == 2 * (len(speech) // WINDOW)


def test_config_keys() -> None:
    assert (config.Config().silero_model, config.Config().silero_skip) == ("float", True)
    c = config.from_mapping({"silero_model": "int8", "silero_skip": False})
    assert (c.silero_model, c.silero_skip) == ("int8", False)
    with pytest.raises(ConfigError, match="config key 'silero_model': expected float or int8, got 'int4'"):
        config.from_mapping({"silero_model": "int4"})
    with pytest.raises(ConfigError, match="config key 'silero_skip': expected bool, got str"):
        config.from_mapping({"silero_skip": "yes"})
    assert config.Config().silero_rate == "16000" and config.from_mapping({"silero_rate": "auto"}).silero_rate == "auto"
    assert config.from_mapping({"silero_rate": 16000}).silero_rate == "16000"
    with pytest.raises(ConfigError, match="config key 'silero_rate': expected \"16000\" or \"auto\", got '8000'"):
        config.from_mapping({"silero_rate": "8000"})


def test_call_server_applies_the_config_keys(tmp_path: Path) -> None:
    """A /call call over loopback with silero VAD on a server configured with int8 and skipping."""
    server = CallServer(Config(data_dir=tmp_path, sip=LOOPBACK_SIP, silero_model="int8", silero_skip=True))
    speech = espeak_speech(16000, "Hello, I am calling about my order.")
    audio = np.concatenate([np.zeros(3 * 16000, np.int16), speech, np.zeros(16000, np.int16)])
    audio = audio[:len(audio) // 320 * 320]

    async def main() -> SpeakingEvent:
        host, port = await server.start(host="127.0.0.1", port=0)
        try:
            async with connect(f"ws://{host}:{port}", dump=False) as client:
                await client.invite({"codec": "g722", "vad": {"type": "silero"}})
                await client.wait_for(AnswerEvent)
                encoder = AudioEncoder("g722")
                for i in range(0, len(audio), 320 * 50):        # one second per message
                    await client.send_audio(encoder.encode(audio[i:i + 320 * 50]))
                return await asyncio.wait_for(client.wait_for(SpeakingEvent), 20)
        finally:
            inferred, skipped = server.media.engine.silero_counts
            with pytest.raises(ValueError, match="silero already runs model 'int8' with skip on"):
                server.media.engine.set_silero("float", True)
            await server.stop()
            assert skipped >= 3 * 16000 // WINDOW - silero.SKIP_AFTER - 2, (inferred, skipped)

    speaking = asyncio.run(main())
    # confirmed speechPadding (250 ms, on the 32 ms window grid) after its onset, as without skipping
    assert 250 <= speaking.timestamp - speaking.start_time <= 320, speaking
