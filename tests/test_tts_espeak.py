"""pbx.tts.espeak: the local espeak-ng provider, with real synthesis (no mocks).

espeak-ng is not bit-exact from one call to the next (its waveform generator carries state across
texts, the lengths move by a few samples), so audio is compared with a reference by duration and
by its 10 ms energy envelope, never sample by sample.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing

import numpy as np
import pytest

from pbx.errors import ProviderError
from pbx.tts.base import TtsChunk, TtsRequest, WordMark
from pbx.tts.espeak import EspeakTts

HELLO = "Hello world, this is a test"
SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest. "
LONG = SENTENCE * 100          # ~9 minutes of speech; its whole synthesis takes most of a second
FIRST_CHUNK_BAR_S = 0.150


def run(body: Callable[[EspeakTts], Awaitable[None]]) -> None:
    """Run ``body`` with a fresh provider on a fresh event loop, closing the provider after."""

    async def main() -> None:
        provider = EspeakTts()
        try:
            await body(provider)
        finally:
            await provider.close()

    asyncio.run(main())


async def collect(provider: EspeakTts, request: TtsRequest) -> list[TtsChunk]:
    return [chunk async for chunk in provider.synthesize(request)]


def audio(chunks: list[TtsChunk]) -> np.ndarray:
    return np.concatenate([c.pcm for c in chunks])


def marks(chunks: list[TtsChunk]) -> list[WordMark]:
    return [w for c in chunks for w in c.words]


def envelope(pcm: np.ndarray, rate: int) -> np.ndarray:
    """RMS per 10 ms."""
    step = rate // 100
    frames = pcm[: len(pcm) // step * step].astype(np.float64).reshape(-1, step)
    return np.sqrt((frames ** 2).mean(axis=1))


def similar(pcm: np.ndarray, reference: np.ndarray, rate: int) -> float:
    """Correlation of the energy envelopes over the shorter length.

    Measured: 0.94-1.0 for two syntheses of the same text, -0.2-0.0 for different texts.
    """
    a, b = envelope(pcm, rate), envelope(reference, rate)
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


def band_fraction(pcm: np.ndarray, rate: int, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    return float(power[(freqs >= low) & (freqs <= high)].sum() / power.sum())


# ---- audio and word marks ------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_hello_world_audio_and_word_marks(rate: int) -> None:
    async def body(provider: EspeakTts) -> None:
        chunks = await collect(provider, TtsRequest(HELLO, samplerate=rate))
        pcm = audio(chunks)
        assert pcm.dtype == np.int16 and pcm.ndim == 1
        assert all(c.pcm.dtype == np.int16 and c.pcm.ndim == 1 for c in chunks)
        # measured: 1.662 s at 175 wpm (6 words incl. the comma pause)
        assert 1.4 < len(pcm) / rate < 1.9
        rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
        assert rms > 1000                        # measured ~2600
        # speech: nearly all the energy between 100 Hz and 4 kHz (measured 0.96-0.99)
        assert band_fraction(pcm, rate, 100, 4000) > 0.85
        words = marks(chunks)
        assert [w.index for w in words] == [0, 1, 2, 3, 4, 5]
        offsets = [w.sample for w in words]
        assert offsets == sorted(set(offsets))
        assert offsets[0] < 0.1 * rate and offsets[-1] < len(pcm)
        # the comma pause: "this" starts at least 0.15 s after "world"
        assert offsets[2] - offsets[1] > 0.15 * rate

    run(body)


def test_word_marks_ride_on_the_chunk_where_the_word_starts() -> None:
    async def body(provider: EspeakTts) -> None:
        chunks = await collect(provider, TtsRequest(HELLO * 3, samplerate=16000))
        start = 0
        for chunk in chunks:
            for word in chunk.words:
                assert start <= word.sample < start + len(chunk.pcm)
            start += len(chunk.pcm)

    run(body)


def test_word_marks_scale_with_the_output_rate() -> None:
    async def body(provider: EspeakTts) -> None:
        at8k = marks(await collect(provider, TtsRequest(HELLO, samplerate=8000)))
        at48k = marks(await collect(provider, TtsRequest(HELLO, samplerate=48000)))
        assert len(at8k) == len(at48k) == 6
        for a, b in zip(at8k, at48k, strict=True):
            assert abs(a.sample / 8000 - b.sample / 48000) < 0.02

    run(body)


def test_word_index_counts_the_words_of_the_text() -> None:
    # The dash is not spoken (no mark); "1,000" is spoken as two words but is one word of the text.
    async def body(provider: EspeakTts) -> None:
        words = marks(await collect(provider, TtsRequest("Call me at 1,000 \u2014 or not.", samplerate=16000)))
        assert [w.index for w in words] == [0, 1, 2, 3, 5, 6]
        café = marks(await collect(provider, TtsRequest("Caf\u00e9 na\u00efve  dogs", samplerate=16000)))
        assert [w.index for w in café] == [0, 1, 2]
        # unstressed words joined to the word before have no event: "am" (1), the second "the" (7)
        joined = marks(await collect(provider, TtsRequest("I am going to the shop of the man.")))
        assert [w.index for w in joined] == [0, 2, 3, 4, 5, 6, 8]

    run(body)


def test_text_that_does_not_encode_still_speaks() -> None:
    # a lone surrogate (valid JSON "\\ud800") and a NUL must neither kill the worker nor shift marks
    async def body(provider: EspeakTts) -> None:
        words = marks(await collect(provider, TtsRequest("Hello\ud800 world\0 again and again")))
        assert [w.index for w in words] == [0, 1, 2, 3, 4]
        assert len(marks(await collect(provider, TtsRequest(HELLO)))) == 6

    run(body)


def test_speed_is_words_per_minute_clamped_to_the_espeak_range() -> None:
    async def body(provider: EspeakTts) -> None:
        async def seconds(speed: float) -> float:
            return len(audio(await collect(provider, TtsRequest(HELLO, speed=speed)))) / 16000

        normal, fast = await seconds(1.0), await seconds(2.0)
        assert 0.35 < fast / normal < 0.6         # measured 0.44
        slowest, floor = await seconds(0.1), await seconds(80 / 175)
        assert abs(slowest - floor) < 0.02 * floor
        fastest, ceiling = await seconds(10.0), await seconds(450 / 175)
        assert abs(fastest - ceiling) < 0.02 * ceiling

    run(body)


def test_other_voices() -> None:
    async def body(provider: EspeakTts) -> None:
        for voice in ("fr", "en-us+f3", "de"):
            chunks = await collect(provider, TtsRequest("Bonjour le monde", speaker=voice, samplerate=16000))
            assert len(audio(chunks)) > 0.5 * 16000
            assert [w.index for w in marks(chunks)] == [0, 1, 2]

    run(body)


def test_empty_text_ends_without_words() -> None:
    async def body(provider: EspeakTts) -> None:
        chunks = await collect(provider, TtsRequest("  ", samplerate=16000))
        assert marks(chunks) == []
        assert sum(len(c.pcm) for c in chunks) < 0.05 * 16000

    run(body)


# ---- latency and streaming -----------------------------------------------------------------------

def test_first_chunk_latency() -> None:
    async def body(provider: EspeakTts) -> None:
        latencies = []
        for rate in (16000, 8000, 16000, 48000):   # the first one includes loading the library
            stream = provider.synthesize(TtsRequest(HELLO, samplerate=rate))
            async with aclosing(stream):
                start = time.perf_counter()
                first = await stream.__anext__()
                latencies.append(time.perf_counter() - start)
                assert len(first.pcm) > 0
        assert max(latencies) < FIRST_CHUNK_BAR_S, latencies

    run(body)


def test_long_text_streams() -> None:
    async def body(provider: EspeakTts) -> None:
        arrivals = []
        samples = 0
        start = time.perf_counter()
        async for chunk in provider.synthesize(TtsRequest(LONG, samplerate=8000)):
            arrivals.append(time.perf_counter() - start)
            samples += len(chunk.pcm)
        total = arrivals[-1]
        assert len(arrivals) > 1000               # ~60 ms of speech per chunk
        assert 400 < samples / 8000 < 700         # measured ~530 s of speech
        assert arrivals[0] < FIRST_CHUNK_BAR_S
        # the first chunk came long before the whole text was done
        assert arrivals[0] < 0.1 * total, (arrivals[0], total)
        # and chunks kept coming throughout, not in one burst at the end
        assert np.median(arrivals) < 0.8 * total

    run(body)


# ---- cancellation, serialisation, errors ---------------------------------------------------------

def test_closing_the_stream_aborts_synthesis_and_frees_the_worker() -> None:
    async def body(provider: EspeakTts) -> None:
        reference = audio(await collect(provider, TtsRequest(HELLO, samplerate=16000)))
        start = time.perf_counter()
        async for _ in provider.synthesize(TtsRequest(LONG, samplerate=16000)):
            pass
        whole = time.perf_counter() - start

        stream = provider.synthesize(TtsRequest(LONG, samplerate=16000))
        await stream.__anext__()
        await stream.aclose()
        start = time.perf_counter()
        after = provider.synthesize(TtsRequest(HELLO, samplerate=16000))
        first = await after.__anext__()
        waited = time.perf_counter() - start
        chunks = [first] + [c async for c in after]
        # had the worker finished the long text first, this would have taken ~``whole``
        assert waited < min(0.25 * whole, FIRST_CHUNK_BAR_S), (waited, whole)
        pcm = audio(chunks)
        assert abs(len(pcm) - len(reference)) < 0.01 * len(reference)
        assert similar(pcm, reference, 16000) > 0.8    # nothing of the long text leaked in
        assert [w.index for w in marks(chunks)] == [0, 1, 2, 3, 4, 5]

    run(body)


def test_cancelling_the_consumer_task_aborts_synthesis() -> None:
    async def body(provider: EspeakTts) -> None:
        got_first = asyncio.Event()

        async def consume() -> None:
            async for _ in provider.synthesize(TtsRequest(LONG, samplerate=16000)):
                got_first.set()

        task = asyncio.create_task(consume())
        await got_first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        start = time.perf_counter()
        chunks = await collect(provider, TtsRequest(HELLO, samplerate=16000))
        assert time.perf_counter() - start < 0.2
        assert len(marks(chunks)) == 6

    run(body)


def test_concurrent_requests_are_served_one_after_the_other() -> None:
    other = "Please call Stella and ask her to bring these things with her from the store."

    async def body(provider: EspeakTts) -> None:
        alone = {text: audio(await collect(provider, TtsRequest(text, samplerate=16000)))
                 for text in (HELLO, other)}
        order: list[str] = []

        async def consume(text: str, rate: int) -> list[TtsChunk]:
            chunks = []
            async for chunk in provider.synthesize(TtsRequest(text, samplerate=rate)):
                order.append(text)
                chunks.append(chunk)
            return chunks

        hello, stella = await asyncio.gather(consume(HELLO, 16000), consume(other, 16000))
        # espeak joins the unstressed "the" (word 13) to "from": no event, no mark of its own
        for text, chunks, indices in ((HELLO, hello, [0, 1, 2, 3, 4, 5]),
                                      (other, stella, [*range(13), 14])):
            pcm = audio(chunks)
            assert abs(len(pcm) - len(alone[text])) < 0.01 * len(alone[text])
            assert similar(pcm, alone[text], 16000) > 0.8
            assert [w.index for w in marks(chunks)] == indices
        # serialised: all of the first request's chunks came before any of the second's
        assert order == [HELLO] * len(hello) + [other] * len(stella)

    run(body)


def test_unknown_voice() -> None:
    async def body(provider: EspeakTts) -> None:
        with pytest.raises(ProviderError) as caught:
            await collect(provider, TtsRequest(HELLO, speaker="xx"))
        assert str(caught.value) == "unknown espeak voice 'xx'"
        assert caught.value.sender == "tts"
        # the provider goes on, back on the default voice
        assert len(marks(await collect(provider, TtsRequest(HELLO)))) == 6

    run(body)


def test_bad_arguments() -> None:
    async def body(provider: EspeakTts) -> None:
        with pytest.raises(ValueError, match=r"^samplerate must be positive, got 0$"):
            await collect(provider, TtsRequest(HELLO, samplerate=0))
        with pytest.raises(ValueError, match=r"^speed must be a positive number, got nan$"):
            await collect(provider, TtsRequest(HELLO, speed=float("nan")))

    run(body)


def test_close_stops_the_worker_and_fails_the_text_in_progress() -> None:
    async def main() -> None:
        provider = EspeakTts()
        stream = provider.synthesize(TtsRequest(LONG, samplerate=16000))
        await stream.__anext__()
        await provider.close()
        assert not provider._thread.is_alive()
        with pytest.raises(ProviderError, match=r"^espeak provider is closed$"):
            async for _ in stream:
                pass
        with pytest.raises(ProviderError, match=r"^espeak provider is closed$"):
            await collect(provider, TtsRequest(HELLO))

    asyncio.run(main())


def test_provider_names() -> None:
    assert EspeakTts.name == "espeak"
    assert "local" in EspeakTts.aliases
