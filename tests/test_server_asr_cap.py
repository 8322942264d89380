"""maxBufferDurationSecs: continuous speech longer than the cap is recognised in several utterances."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np

from support.audio import espeak_speech
from tests.support.calls import Call, running_server, stream_realtime

RATE = 16000


def test_speech_longer_than_the_buffer_cap_yields_several_finals(tmp_path: Path) -> None:
    speech = espeak_speech(RATE, text="one two three four five six seven eight nine ten eleven twelve")
    pcm = np.concatenate([np.zeros(RATE // 2, np.int16), speech, np.zeros(RATE, np.int16)])

    async def run() -> list[dict[str, object]]:
        async with running_server(tmp_path) as (_, address), Call.open(address) as call:
            await call.send(json.dumps({"command": "invite", "option": {
                "codec": "pcm",
                # long silencePadding: only the cap can end an utterance inside the phrase
                "vad": {"type": "webrtc", "silencePadding": 1000, "maxBufferDurationSecs": 1},
                "asr": {"provider": "pocketsphinx"}}}))
            await call.wait_event("answer")
            await stream_realtime(call, pcm)
            await call.wait_event("silence", timeout=5)
            await asyncio.sleep(1.0)   # the last final follows the silence
            return [e for e in call.events() if isinstance(e, dict) and e.get("event") == "asrFinal"]

    finals = asyncio.run(run())
    assert len(finals) >= 2, finals
    assert [f["index"] for f in finals] == list(range(1, len(finals) + 1))
