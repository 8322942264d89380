r"""Say what you heard: stream speech into a call as the caller and print what the server recognises.

Run it against a local server (two terminals, from the repository root)::

    make serve
    .venv/bin/python examples/say_what_you_heard.py --url ws://127.0.0.1:8080/call \
        --text "call stella and ask her to bring these things"

It opens a ``/call`` session (codec pcm, WebRTC VAD, local pocketsphinx ASR), streams the speech in
real time as the caller's audio (a WAV file with ``--wav FILE``, or speech synthesised from ``--text``
by the ``espeak-ng`` command line), then one second of silence, prints each ``asrFinal`` as
``heard: <text>``, and hangs up once the last utterance is recognised (or ``--linger`` seconds after
the audio ended).  Free dictation with pocketsphinx's language model is rough; a JSGF grammar
(``--grammar FILE``) makes known phrases exact::

    printf '#JSGF V1.0;\ngrammar g;\npublic <s> = call stella and ask her to bring these things;\n' > g.jsgf
    .venv/bin/python examples/say_what_you_heard.py --grammar g.jsgf

Exit status: 0 when something was recognised, 1 when nothing was, 2 when the call failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.client import CallClient, connect, default_token
from pbx.protocol import (
    AnswerEvent,
    AsrFinalEvent,
    ErrorEvent,
    HangupEvent,
    SilenceEvent,
    SpeakingEvent,
)

DEFAULT_TEXT = "call stella and ask her to bring these things"


def read_wav(path: Path) -> tuple[npt.NDArray[np.int16], int]:
    """A 16-bit WAV file -> (mono int16 samples, sample rate); channels are averaged."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise SystemExit(f"{path}: expected 16-bit samples, got {8 * w.getsampwidth()}-bit")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        channels, rate = w.getnchannels(), w.getframerate()
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return data.astype(np.int16), rate


def espeak(text: str) -> tuple[npt.NDArray[np.int16], int]:
    """Speech for ``text`` from the espeak-ng command line (Debian package ``espeak-ng``)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng), use --wav FILE")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        subprocess.run([exe, "-v", "en-us", "-w", str(path), text], check=True, capture_output=True)
        return read_wav(path)


def call_option(args: argparse.Namespace) -> dict[str, Any]:
    asr: dict[str, Any] = {"provider": "pocketsphinx", "language": "en-US"}
    if args.grammar is not None:
        asr["extra"] = {"grammar": Path(args.grammar).read_text(encoding="utf-8")}
    # silencePadding: how long a pause ends an utterance (the ASR final follows it).  The spec's
    # default, 100 ms, also splits a sentence at the short pauses between words.
    return {"codec": args.codec, "vad": {"type": "webrtc", "silencePadding": args.silence_ms}, "asr": asr}


async def run(args: argparse.Namespace) -> int:
    pcm, rate = read_wav(Path(args.wav)) if args.wav else espeak(args.text)
    async with connect(args.url, token=args.token) as client:
        await client.invite(call_option(args))
        first = await client.wait_for((AnswerEvent, ErrorEvent))
        if isinstance(first, ErrorEvent):
            print(f"call failed: {first.sender}: {first.error}", file=sys.stderr)
            return 2
        heard: list[str] = []
        settled = asyncio.Event()     # the last utterance so far has its final result
        printer = asyncio.create_task(print_events(client, heard, settled))
        await client.stream_pcm(pcm, rate=rate)
        await client.stream_pcm(np.zeros(rate, dtype=np.int16), rate=rate)   # a pause ends the last utterance
        with contextlib.suppress(TimeoutError):   # nothing more recognised: stop anyway
            await asyncio.wait_for(settled.wait(), args.linger)
        await client.hangup()
        try:
            await asyncio.wait_for(printer, 5.0)
        except TimeoutError:
            print("no hangup event from the server", file=sys.stderr)
        return 0 if heard else 1


async def print_events(client: CallClient, heard: list[str], settled: asyncio.Event) -> None:
    speaking = False
    async for event in client.events():
        if isinstance(event, SpeakingEvent):
            speaking = True
            settled.clear()
        elif isinstance(event, SilenceEvent):
            speaking = False
        elif isinstance(event, AsrFinalEvent):
            heard.append(event.text)
            print(f"heard: {event.text}", flush=True)
            if not speaking:
                settled.set()
        elif isinstance(event, ErrorEvent):
            print(f"error from {event.sender}: {event.error}", file=sys.stderr, flush=True)
        elif isinstance(event, HangupEvent):
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8080/call", help="call server (default: %(default)s)")
    parser.add_argument("--token", default=default_token(),
                        help="the server's API token (default: PYPBX_API_TOKEN, else pypbx-data/api-token)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--wav", help="16-bit WAV file to speak as the caller")
    source.add_argument("--text", default=DEFAULT_TEXT, help="text to synthesise with espeak-ng (default: %(default)r)")
    parser.add_argument("--grammar", help="JSGF grammar file for pocketsphinx (default: free dictation)")
    parser.add_argument("--codec", default="pcm", choices=["pcm", "pcmu", "pcma", "g722"],
                        help="call codec (default: %(default)s; pocketsphinx's 16 kHz model recognises "
                             "little of the 8 kHz pcmu/pcma audio)")
    parser.add_argument("--silence-ms", type=int, default=500, help="VAD silencePadding (default: %(default)s)")
    parser.add_argument("--linger", type=float, default=5.0,
                        help="seconds to wait for results after the audio (default: %(default)s)")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
