"""The PocketSphinx ASR provider on real speech (espeak-ng), fed in 100 ms chunks as the ASR tap does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from pbx.asr.base import AsrOptions, AsrResult
from pbx.asr.pocketsphinx import PocketsphinxAsr, PocketsphinxStream
from pbx.errors import ProviderError
from support.audio import espeak_speech

RATE = 16000
CHUNK = RATE // 10
STELLA = "call stella and ask her to bring these things"
HANG_UP = "hang up the phone"
GRAMMAR = f"""#JSGF V1.0;
grammar commands;
public <command> = {STELLA}
                 | call bob and tell him to stop
                 | bring these things to stella
                 | {HANG_UP} ;
"""


@pytest.fixture(scope="module")
def provider() -> Iterator[PocketsphinxAsr]:
    p = PocketsphinxAsr()
    yield p
    asyncio.run(p.close())


def speech(text: str) -> np.ndarray:
    return espeak_speech(RATE, text=text)


def ms(samples: int) -> int:
    return samples * 1000 // RATE


def noise(seconds: float, seed: int = 7) -> np.ndarray:
    """Quiet background noise (about -60 dBFS) standing in for a pause."""
    return np.random.default_rng(seed).normal(0, 30, int(seconds * RATE)).astype(np.int16)


async def feed_all(stream: Any, pcm: np.ndarray) -> list[tuple[int, AsrResult]]:
    """Feed ``pcm`` in 100 ms chunks; returns (chunk index, partial) for each partial result."""
    partials = []
    for n, i in enumerate(range(0, len(pcm), CHUNK)):
        partials += [(n, r) for r in await stream.feed(pcm[i:i + CHUNK])]
    return partials


async def recognise(provider: PocketsphinxAsr, pcm: np.ndarray, **extra: Any) -> AsrResult | None:
    stream = await provider.open_stream(AsrOptions(language="en-US", extra=extra))
    try:
        await feed_all(stream, pcm)
        return await stream.end_utterance()
    finally:
        await stream.close()


def test_grammar_gives_the_exact_phrase_with_partials_first(provider: PocketsphinxAsr) -> None:
    pcm = speech(STELLA)

    async def run() -> tuple[list[tuple[int, AsrResult]], AsrResult | None]:
        stream = await provider.open_stream(AsrOptions(extra={"grammar": GRAMMAR}))
        partials = await feed_all(stream, pcm)
        final = await stream.end_utterance()
        await stream.close()
        return partials, final

    partials, final = asyncio.run(run())
    assert final is not None
    assert final.text == STELLA
    assert final.final
    assert final.start_ms is not None and final.end_ms is not None
    assert 0 <= final.start_ms < 200                      # espeak starts speaking at once
    assert ms(len(pcm)) - 1000 < final.end_ms <= ms(len(pcm))
    chunks = -(-len(pcm) // CHUNK)
    texts = [r.text for _, r in partials]
    assert len(set(texts)) >= 3
    assert partials[0][0] < chunks // 2                    # while the audio is still arriving
    assert not any(r.final for _, r in partials)
    assert texts[-1] == STELLA
    for _, r in partials:                                 # grow word by word along the phrase
        assert STELLA.startswith(r.text)
        assert r.start_ms == final.start_ms
        assert r.end_ms is not None and r.end_ms <= final.end_ms


def test_two_utterances_in_one_stream_give_two_finals(provider: PocketsphinxAsr) -> None:
    first, second = speech(STELLA), speech(HANG_UP)
    gap = noise(1.0)
    second_at = len(first) + len(gap)

    async def run() -> list[AsrResult | None]:
        stream = await provider.open_stream(AsrOptions(extra={"grammar": GRAMMAR}))
        await feed_all(stream, np.concatenate([first, gap]))
        finals = [await stream.end_utterance()]
        await feed_all(stream, second)
        finals.append(await stream.end_utterance())
        finals.append(await stream.end_utterance())        # nothing fed since: no utterance
        await stream.close()
        return finals

    a, b, none = asyncio.run(run())
    assert a is not None and b is not None and none is None
    assert (a.text, b.text) == (STELLA, HANG_UP)
    assert a.start_ms is not None and a.end_ms is not None
    assert b.start_ms is not None and b.end_ms is not None
    assert 0 <= a.start_ms < a.end_ms <= ms(len(first)) + 100
    # The second utterance's times count from the stream's start, not the utterance's.
    assert ms(second_at) <= b.start_ms < ms(second_at) + 300
    assert b.start_ms < b.end_ms <= ms(second_at + len(second))


def test_keywords_list_spots_a_keyword_in_a_sentence(provider: PocketsphinxAsr) -> None:
    pcm = speech("what is the weather today")
    result = asyncio.run(recognise(provider, pcm, keywords=["weather", "banana", "hang up"]))
    assert result is not None
    assert result.text == "weather"
    assert result.start_ms is not None and result.end_ms is not None
    assert 200 < result.start_ms < result.end_ms < ms(len(pcm))   # not the sentence's first word


def test_keyword_thresholds_decide_what_is_spotted(provider: PocketsphinxAsr) -> None:
    pcm = speech("please call stella and ask her to bring the phone")
    loose = asyncio.run(recognise(provider, pcm, keywords={"bring": "1e-20", "Phone": 1e-20}))
    strict = asyncio.run(recognise(provider, pcm, keywords={"bring": "1e5", "phone": "1e5"}))
    assert loose is not None and loose.text == "bring phone"       # in order, lower-cased
    assert strict is None


def test_language_model_recognises_some_words(provider: PocketsphinxAsr) -> None:
    # espeak's voice is far from the acoustic model's training speech, and a fresh stream starts from
    # the model's prior cepstral mean: expect some right words, not the sentence.
    sentences = ["i would like to book a table for two", "yes that is correct"]

    async def run() -> list[AsrResult | None]:
        stream = await provider.open_stream(AsrOptions(language="en"))
        finals = []
        for sentence in sentences:
            await feed_all(stream, np.concatenate([speech(sentence), noise(0.5)]))
            finals.append(await stream.end_utterance())
        await stream.close()
        return finals

    finals = asyncio.run(run())
    for sentence, final in zip(sentences, finals, strict=True):
        assert final is not None and final.text
        right = set(final.text.split()) & set(sentence.split())
        assert len(right) >= 2, (sentence, final.text)


def test_feeds_submitted_together_are_decoded_in_order(provider: PocketsphinxAsr) -> None:
    pcm = speech(STELLA)

    async def run() -> AsrResult | None:
        stream = await provider.open_stream(AsrOptions(extra={"grammar": GRAMMAR}))
        await asyncio.gather(*(stream.feed(pcm[i:i + CHUNK]) for i in range(0, len(pcm), CHUNK)))
        final = await stream.end_utterance()
        await stream.close()
        return final

    final = asyncio.run(run())
    assert final is not None and final.text == STELLA


def test_a_cancelled_feed_is_still_decoded_before_the_next_call(provider: PocketsphinxAsr) -> None:
    pcm = speech(STELLA)

    async def run() -> AsrResult | None:
        stream = await provider.open_stream(AsrOptions(extra={"grammar": GRAMMAR}))
        half = (len(pcm) // 2 // CHUNK) * CHUNK
        task = asyncio.create_task(stream.feed(pcm[:half]))
        await asyncio.sleep(0)                            # let it reach the worker
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await stream.feed(pcm[half:])
        final = await stream.end_utterance()
        await stream.close()
        return final

    final = asyncio.run(run())
    assert final is not None and final.text == STELLA


def test_concurrent_streams_keep_their_own_audio(provider: PocketsphinxAsr) -> None:
    a, b = speech(STELLA), speech(HANG_UP)

    async def run() -> list[AsrResult | None]:
        streams = [await provider.open_stream(AsrOptions(extra={"grammar": GRAMMAR})) for _ in range(2)]
        await asyncio.gather(feed_all(streams[0], a), feed_all(streams[1], b))
        finals = [await s.end_utterance() for s in streams]
        for s in streams:
            await s.close()
        return finals

    finals = asyncio.run(run())
    assert [f.text if f else None for f in finals] == [STELLA, HANG_UP]


def test_pooled_decoders_are_reset_between_streams() -> None:
    provider = PocketsphinxAsr(max_idle=1)
    pcm = speech(STELLA)

    async def run() -> list[Any]:
        first = await recognise(provider, pcm, grammar=GRAMMAR)
        idle_after_first = provider.idle_count("bare")
        kws = await recognise(provider, speech("what is the weather today"), keywords=["weather"])
        again = await recognise(provider, pcm, grammar=GRAMMAR)
        idle_at_end = provider.idle_count("bare")
        await provider.close()
        return [first, idle_after_first, kws, again, idle_at_end]

    first, idle_after_first, kws, again, idle_at_end = asyncio.run(run())
    assert idle_after_first == 1 and idle_at_end == 1      # one decoder served all three streams
    assert kws is not None and kws.text == "weather"
    assert first is not None and again == first             # same text and times: no state carried over


def test_silence_and_empty_feeds_give_nothing(provider: PocketsphinxAsr) -> None:
    async def run() -> list[Any]:
        stream = await provider.open_stream(AsrOptions(extra={"grammar": GRAMMAR}))
        out: list[Any] = [await stream.feed(np.zeros(0, np.int16)), await stream.end_utterance()]
        out.append(await feed_all(stream, noise(1.0)))
        out.append(await stream.end_utterance())
        await stream.close()
        return out

    assert asyncio.run(run()) == [[], None, [], None]


@pytest.mark.parametrize("language", [None, "en", "en-US", "en-gb", "en_US"])
def test_english_tags_are_served(provider: PocketsphinxAsr, language: str | None) -> None:
    async def run() -> None:
        stream = await provider.open_stream(AsrOptions(language=language, extra={"grammar": GRAMMAR}))
        await stream.close()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (AsrOptions(language="zh-CN"), "pocketsphinx has no model for language 'zh-CN'"),
        (AsrOptions(language="fr"), "pocketsphinx has no model for language 'fr'"),
        (AsrOptions(samplerate=8000), "pocketsphinx takes 16000 Hz audio, not 8000 Hz"),
        (AsrOptions(extra={"grammer": GRAMMAR}),
         "pocketsphinx has no option 'grammer' (it takes: grammar, keywords)"),
        (AsrOptions(extra={"grammar": GRAMMAR, "keywords": ["stella"]}),
         "pocketsphinx takes a grammar or keywords, not both"),
        (AsrOptions(extra={"grammar": 42}), "pocketsphinx option 'grammar' must be a non-empty JSGF string"),
        (AsrOptions(extra={"keywords": "stella"}),
         "pocketsphinx option 'keywords' must be a list of phrases or a dict phrase -> threshold"),
        (AsrOptions(extra={"keywords": []}), "pocketsphinx option 'keywords' is empty"),
        (AsrOptions(extra={"keywords": ["  "]}), "pocketsphinx keyword '  ' is not a non-empty string"),
        (AsrOptions(extra={"keywords": {"stella": "often"}}),
         "pocketsphinx threshold of keyword 'stella' must be a positive number, not 'often'"),
        (AsrOptions(extra={"keywords": {"stella": -1.0}}),
         "pocketsphinx threshold of keyword 'stella' must be a positive number, not -1.0"),
        (AsrOptions(extra={"keywords": ["call zzqxw"]}),
         "pocketsphinx has no pronunciation for 'zzqxw' (keyword 'call zzqxw')"),
        (AsrOptions(extra={"grammar": "#JSGF V1.0;\ngrammar g;\npublic <s> = call ( stella ;\n"}),
         "pocketsphinx cannot use the grammar: "
         "syntax error at line 3: expected '|' or ')' to close the group of line 3, found ';'"),
        (AsrOptions(extra={"grammar": "#JSGF V1.0;\ngrammar g;\npublic <s> = call zzqxw ;\n"}),
         "pocketsphinx cannot use the grammar: The word 'zzqxw' is missing in the dictionary"),
    ],
)
def test_unusable_options_raise_provider_errors(
    provider: PocketsphinxAsr, options: AsrOptions, message: str
) -> None:
    with pytest.raises(ProviderError) as info:
        asyncio.run(provider.open_stream(options))
    assert str(info.value) == message
    assert info.value.sender == "asr"


def test_a_rejected_grammar_leaves_the_decoder_usable() -> None:
    provider = PocketsphinxAsr(max_idle=1)

    async def run() -> AsrResult | None:
        with pytest.raises(ProviderError):
            await provider.open_stream(AsrOptions(extra={"grammar": "#JSGF V1.0; grammar g; public <s> = zzqxw ;"}))
        assert provider.idle_count("bare") == 1
        result = await recognise(provider, speech(HANG_UP), grammar=GRAMMAR)
        await provider.close()
        return result

    result = asyncio.run(run())
    assert result is not None and result.text == HANG_UP


def test_bad_audio_and_closed_streams_are_refused(provider: PocketsphinxAsr) -> None:
    async def run() -> PocketsphinxStream:
        stream = await provider.open_stream(AsrOptions(extra={"grammar": GRAMMAR}))
        assert isinstance(stream, PocketsphinxStream)
        with pytest.raises(TypeError, match="pcm must be an int16 numpy array, got float32"):
            await stream.feed(np.zeros(CHUNK, np.float32))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"pcm must be mono \(1-D\), got shape \(800, 2\)"):
            await stream.feed(np.zeros((800, 2), np.int16))
        await stream.close()
        await stream.close()                              # idempotent
        return stream

    async def use(stream: PocketsphinxStream) -> None:
        with pytest.raises(ProviderError, match=r"^the pocketsphinx stream is closed$"):
            await stream.feed(np.zeros(CHUNK, np.int16))
        with pytest.raises(ProviderError, match=r"^the pocketsphinx stream is closed$"):
            await stream.end_utterance()

    asyncio.run(use(asyncio.run(run())))


def test_provider_names() -> None:
    assert PocketsphinxAsr.name == "pocketsphinx"
    assert "local" in PocketsphinxAsr.aliases


def test_prewarm_fills_the_idle_pool_up_to_its_bound() -> None:
    provider = PocketsphinxAsr(max_idle=2)

    async def run() -> tuple[int, int]:
        await provider.prewarm(lm=1, bare=5)
        counts = provider.idle_count("lm"), provider.idle_count("bare")
        await provider.close()
        return counts

    assert asyncio.run(run()) == (1, 2)
    with pytest.raises(ValueError, match="workers must be >= 1 and max_idle >= 0"):
        PocketsphinxAsr(workers=0)
