"""A WebRTC call to the server from Python: aiortc is the browser, an audio file is its microphone.

Run it against a local server (two terminals, from the repository root)::

    make serve
    espeak-ng -v en-us -w /tmp/caller.wav "please call stella"
    .venv/bin/python examples/webrtc_client.py --url ws://127.0.0.1:8080 --wav /tmp/caller.wav \\
        --loopback --out /tmp/heard.wav

It opens ``/call/webrtc``, sends ``invite`` with its SDP offer (VAD and local ASR on), takes the
``answer``'s SDP, and plays the file into the call. It prints the call's events, says ``--say`` with
``tts`` after the first ``asrFinal`` (or after ``--duration`` seconds without one), and writes what it
heard to ``--out``. ``--loopback``: gather only 127.0.0.1 candidates (aiortc leaves loopback out, and
a server on this machine is reached there; the server's own candidate is its ``[webrtc] addr``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from pbx.client import ClientClosed, connect, default_token
from pbx.protocol import AnswerEvent, AsrFinalEvent, Event, HangupEvent, TrackEndEvent


def describe(event: Event) -> str:
    """``event`` and what it says, e.g. ``asrFinal: please call stella``."""
    detail = getattr(event, "text", None) or getattr(event, "reason", None) or ""
    return f"{event.EVENT}: {detail}" if detail else event.EVENT


def loopback_only() -> None:
    """Make aiortc gather host candidates on 127.0.0.1 only (for a server on this machine)."""
    import aioice.ice
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


async def main(args: argparse.Namespace) -> int:
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer, MediaRecorder

    pc = RTCPeerConnection()
    pc.addTrack(MediaPlayer(args.wav).audio)
    recorder = MediaRecorder(args.out) if args.out else None

    @pc.on("track")
    def on_track(track: object) -> None:
        if recorder is not None:
            recorder.addTrack(track)

    await pc.setLocalDescription(await pc.createOffer())
    said = False
    try:
        async with connect(args.url, call_type="webrtc", token=args.token or default_token()) as call:
            await call.invite({"offer": pc.localDescription.sdp, "vad": {"type": "webrtc"},
                               "asr": {"provider": "pocketsphinx"}})
            deadline = asyncio.get_running_loop().time() + args.duration
            while True:
                timeout = deadline - asyncio.get_running_loop().time()
                try:
                    event = await call.next_event(timeout=max(timeout, 0.01))
                except TimeoutError:
                    if said:
                        break
                    said = True
                    await call.tts(args.say)
                    deadline += 10
                    continue
                print(describe(event))
                if isinstance(event, AnswerEvent):
                    await pc.setRemoteDescription(RTCSessionDescription(event.sdp or "", "answer"))
                    if recorder is not None:
                        await recorder.start()
                elif isinstance(event, AsrFinalEvent) and not said:
                    said = True
                    await call.tts(args.say)
                elif isinstance(event, TrackEndEvent) and said:
                    break
                elif isinstance(event, HangupEvent):
                    return 0
            await call.hangup()
            with contextlib.suppress(ClientClosed, TimeoutError):
                print(describe(await call.wait_for(HangupEvent, timeout=5)))
    finally:
        if recorder is not None:
            await recorder.stop()
        await pc.close()
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8080", help="the server (or its /call/webrtc URL)")
    parser.add_argument("--wav", required=True, help="the audio file the call's microphone plays")
    parser.add_argument("--out", help="write what the call heard to this file (WAV)")
    parser.add_argument("--say", default="Hello from the server.", help="what the server says back")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds to wait for a recognised phrase")
    parser.add_argument("--token", help="the server's API token (default: PYPBX_API_TOKEN or data_dir's)")
    parser.add_argument("--loopback", action="store_true", help="gather 127.0.0.1 candidates only")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    if arguments.loopback:
        loopback_only()
    sys.exit(asyncio.run(main(arguments)))
