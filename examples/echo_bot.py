"""Echo bot: the voice-agent side of a call, which greets and then repeats what the caller says.

Run it against a local server (two terminals, from the repository root)::

    make serve
    .venv/bin/python examples/echo_bot.py --url ws://127.0.0.1:8080/call

The bot opens a ``/call`` session (codec pcm, WebRTC VAD, local pocketsphinx ASR), says a greeting
with ``tts``, and answers every ``asrFinal`` with ``tts`` "You said: <text>".  It prints what it
says (``bot: ...``) and hears (``caller: ...``).

Who is the caller?  On ``/call`` the WebSocket client is both sides: the binary messages the
server sends are what the call *plays* (the bot's own voice), and the binary messages the client
sends are the caller's voice.  So without help the call is silent and the bot only greets; give
it a recording to stand in for the caller, e.g. speech made with espeak-ng::

    espeak-ng -v en-us -w /tmp/caller.wav "hang up the phone"
    .venv/bin/python examples/echo_bot.py --caller-wav /tmp/caller.wav --max-replies 1

It runs until the call ends, ``--duration`` seconds pass, ``--max-replies`` replies have been
spoken, or Ctrl-C; then it hangs up.  ``--grammar FILE`` (JSGF) restricts what pocketsphinx
recognises (exact results for known phrases).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np

from pbx.client import CallClient, ClientClosed, connect, default_token
from pbx.protocol import (
    AnswerEvent,
    AsrFinalEvent,
    ErrorEvent,
    HangupEvent,
    TrackEndEvent,
)

GREETING = "Hello! I am the echo bot. Say something and I will repeat it."


def call_option(args: argparse.Namespace) -> dict[str, Any]:
    asr: dict[str, Any] = {"provider": "pocketsphinx", "language": "en-US"}
    if args.grammar is not None:
        asr["extra"] = {"grammar": Path(args.grammar).read_text(encoding="utf-8")}
    # 500 ms of pause ends an utterance (the spec's default 100 ms also splits at short pauses).
    return {"codec": "pcm", "vad": {"type": "webrtc", "silencePadding": 500}, "asr": asr}


async def speak_caller(client: CallClient, path: Path) -> None:
    """Stream a WAV file as the caller's voice, then a pause that ends the utterance."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise SystemExit(f"{path}: expected a 16-bit mono WAV file")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
        rate = w.getframerate()
    await client.stream_pcm(pcm, rate=rate)
    await client.stream_pcm(np.zeros(rate, dtype=np.int16), rate=rate)


async def discard_audio(client: CallClient) -> None:
    """The server sends back what the call plays (our own voice): nobody listens here."""
    async for _ in client.audio():
        pass


async def converse(client: CallClient, max_replies: int | None) -> None:
    """Answer each final ASR result until the call ends or ``max_replies`` replies have played."""
    replies = played = 0
    async for event in client.events():
        if isinstance(event, AsrFinalEvent):
            print(f"caller: {event.text}", flush=True)
            if max_replies is None or replies < max_replies:
                replies += 1
                reply = f"You said: {event.text}"
                print(f"bot: {reply}", flush=True)
                await client.tts(reply, play_id=f"reply-{replies}")
        elif isinstance(event, TrackEndEvent) and (event.play_id or "").startswith("reply-"):
            played += 1
            if max_replies is not None and played >= max_replies:
                return
        elif isinstance(event, ErrorEvent):
            print(f"error from {event.sender}: {event.error}", file=sys.stderr, flush=True)
        elif isinstance(event, HangupEvent):
            print(f"call ended: {event.reason or event.initiator}", flush=True)
            return


async def run(args: argparse.Namespace) -> int:
    async with connect(args.url, token=args.token) as client:
        await client.invite(call_option(args))
        first = await client.wait_for((AnswerEvent, ErrorEvent))
        if isinstance(first, ErrorEvent):
            print(f"call failed: {first.sender}: {first.error}", file=sys.stderr)
            return 2
        print(f"bot: {args.greeting}", flush=True)
        await client.tts(args.greeting, play_id="greeting")
        helpers = [asyncio.create_task(discard_audio(client))]
        if args.caller_wav is not None:
            helpers.append(asyncio.create_task(speak_caller(client, Path(args.caller_wav))))
        try:
            async with asyncio.timeout(args.duration):
                await converse(client, args.max_replies)
        except TimeoutError:
            pass
        finally:
            for task in helpers:
                task.cancel()
        with contextlib.suppress(ClientClosed, TimeoutError):   # the call may have ended already
            await client.hangup()
            await client.wait_for(HangupEvent, timeout=5.0)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8080/call", help="call server (default: %(default)s)")
    parser.add_argument("--token", default=default_token(),
                        help="the server's API token (default: PYPBX_API_TOKEN, else pypbx-data/api-token)")
    parser.add_argument("--greeting", default=GREETING, help="what the bot says first")
    parser.add_argument("--caller-wav", help="16-bit mono WAV file streamed as the caller's voice")
    parser.add_argument("--grammar", help="JSGF grammar file for pocketsphinx (default: free dictation)")
    parser.add_argument("--duration", type=float, help="hang up after this many seconds (default: no limit)")
    parser.add_argument("--max-replies", type=int, help="hang up when this many replies have been spoken")
    try:
        return asyncio.run(run(parser.parse_args(argv)))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
