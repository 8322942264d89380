"""The TTS cache: keyed by provider, text and voice settings, bounded on disk, only complete syntheses."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from pbx.errors import ProviderError
from pbx.tts.base import TtsChunk, TtsProvider, TtsRequest, WordMark
from pbx.tts.cache import MAGIC, TtsCache, cache_key
from pbx.tts.espeak import EspeakTts
from tests.support.calls import Call, running_server


class CountingTts(TtsProvider):
    """Audio derived from the text (so entries differ), counting the syntheses it was asked for."""

    name = "counting"

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after

    async def synthesize(self, request: TtsRequest) -> AsyncIterator[TtsChunk]:
        self.calls += 1
        seed = sum(request.text.encode()) % 1000
        for i in range(3):
            if self.fail_after is not None and i == self.fail_after:
                raise ProviderError("tts", "counting failed")
            yield TtsChunk(np.full(request.samplerate // 10, seed + i, np.int16), (WordMark(i * 1600, i),))


async def collect(cache: TtsCache, provider: TtsProvider, request: TtsRequest) -> tuple[np.ndarray, list[WordMark]]:
    pcm, words = [], []
    async for chunk in cache.synthesize(provider, request):
        pcm.append(chunk.pcm)
        words.extend(chunk.words)
    return np.concatenate(pcm), words


def request(text: str, **kw: object) -> TtsRequest:
    return TtsRequest(text, samplerate=16000, cacheable=True, **kw)  # type: ignore[arg-type]


def test_a_second_synthesis_of_the_same_text_and_voice_comes_from_disk(tmp_path: Path) -> None:
    async def run() -> None:
        cache, provider = TtsCache(tmp_path / "c", 10_000_000), CountingTts()
        first = await collect(cache, provider, request("hello there", speaker="a"))
        second = await collect(cache, provider, request("hello there", speaker="a", secret_key="other", volume=9))
        assert provider.calls == 1 and (cache.hits, cache.misses) == (1, 1)
        assert np.array_equal(first[0], second[0]) and first[1] == second[1] == [
            WordMark(0, 0), WordMark(1600, 1), WordMark(3200, 2)]
        for changed in (request("hello there", speaker="b"), request("hello there", speaker="a", speed=1.5),
                        request("hello there!", speaker="a"), request("hello there", speaker="a", extra={"x": 1})):
            await collect(cache, provider, changed)
        assert provider.calls == 5
        assert len(list((tmp_path / "c").glob("*.tts"))) == 5

    asyncio.run(run())


def test_the_key_leaves_out_credentials_and_volume_but_not_the_provider() -> None:
    base = request("hi")
    assert cache_key("p", base) == cache_key("p", request("hi", secret_key="k", app_id="a", volume=2))
    assert cache_key("p", base) != cache_key("q", base)


def test_an_interrupted_or_failed_synthesis_stores_nothing(tmp_path: Path) -> None:
    async def run() -> None:
        cache = TtsCache(tmp_path, 10_000_000)
        stream = cache.synthesize(CountingTts(), request("cut short"))
        await anext(stream)               # the consumer stops after the first chunk (an interrupt)
        await stream.aclose()
        with pytest.raises(ProviderError, match=r"^counting failed$"):
            await collect(cache, CountingTts(fail_after=2), request("fails"))
        assert list(tmp_path.glob("*")) == []

    asyncio.run(run())


def test_the_folder_is_bounded_least_recently_used_first(tmp_path: Path) -> None:
    async def run() -> None:
        entry = len(MAGIC) + 200 + 3 * 1600 * 2          # about one entry
        cache, provider = TtsCache(tmp_path, max_bytes=int(entry * 10.5)), CountingTts()
        for i in range(10):
            await collect(cache, provider, request(f"prompt {i}"))
        old = time.time() - 100
        for i in range(10):
            path = tmp_path / f"{cache_key('counting', request(f'prompt {i}'))}.tts"
            os.utime(path, (old + i, old + i))
        await collect(cache, provider, request("prompt 0"))      # a hit: now the most recently used
        await collect(cache, provider, request("prompt 10"))     # the 11th entry: one must go
        assert provider.calls == 11 and cache.size_bytes <= cache.max_bytes
        kept = {p.name for p in tmp_path.glob("*.tts")}
        assert f"{cache_key('counting', request('prompt 1'))}.tts" not in kept       # least recently used
        assert f"{cache_key('counting', request('prompt 0'))}.tts" in kept
        # an entry over a tenth of the bound is not stored
        small = TtsCache(tmp_path / "small", max_bytes=entry * 5)
        await collect(small, provider, request("too big for it"))
        assert not (tmp_path / "small").exists() or list((tmp_path / "small").glob("*.tts")) == []

    asyncio.run(run())


def test_an_unreadable_entry_is_removed_and_synthesised_again(tmp_path: Path) -> None:
    async def run() -> None:
        cache, provider = TtsCache(tmp_path, 10_000_000), CountingTts()
        await collect(cache, provider, request("hello"))
        (path,) = tmp_path.glob("*.tts")
        path.write_bytes(b"garbage")
        pcm, _ = await collect(cache, provider, request("hello"))
        assert provider.calls == 2 and len(pcm) == 4800 and path.read_bytes().startswith(MAGIC)

    asyncio.run(run())


def test_a_server_synthesises_a_repeated_prompt_once_and_plays_the_same_audio(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_server(tmp_path) as (server, address):
            cache = server.services.tts_cache
            assert cache is not None and cache.directory == tmp_path / "tts-cache"
            async with Call.open(address) as call:
                await call.send({"command": "invite", "option": {"codec": "pcm"}})
                await call.wait_event("answer")
                heard = []
                for play_id in ("one", "two"):
                    mark = call.mark()
                    await call.send({"command": "tts", "text": "Thanks for calling.", "playId": play_id})
                    end = await call.wait_event("trackEnd", mark, playId=play_id)
                    heard.append(end["duration"])
                    metrics = [e["key"] for e in call.events(mark) if e["event"] == "metrics"]
                    assert metrics == ["ttfb.tts.espeak", "completed.tts.espeak"]
                mark = call.mark()
                await call.send({"command": "tts", "text": "Thanks for calling.", "playId": "s", "streaming": True,
                                 "endOfStream": True})
                await call.wait_event("trackEnd", mark, playId="s")
            assert (cache.hits, cache.misses) == (1, 1)        # the streamed one did not use the cache
            assert heard[0] == heard[1] > 500

    asyncio.run(run())


def test_espeak_audio_survives_the_round_trip(tmp_path: Path) -> None:
    async def run() -> None:
        provider = EspeakTts()
        try:
            cache = TtsCache(tmp_path, 10_000_000)
            fresh = await collect(cache, provider, request("one two three"))
            again = await collect(cache, provider, request("one two three"))
        finally:
            await provider.close()
        assert np.array_equal(fresh[0], again[0]) and fresh[1] == again[1] and len(fresh[1]) == 3

    asyncio.run(run())
