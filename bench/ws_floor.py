"""The floor for bench/ws_calls.py: a bare ``websockets`` server that only moves the same frames.

    python bench/ws_floor.py --port PORT --prompt PROMPT.wav

It speaks just enough of the /call protocol for the load generator: ``invite``/``accept`` get an
``answer`` event, ``play`` starts sending the prompt's 20 ms frames, ``interrupt`` stops them and
``hangup`` gets a ``hangup`` event and closes. Binary frames from the client are received and
dropped. Outbound frames are paced the cheapest sound way: one task on a 20 ms grid of the loop's
clock sends every playing connection its next frame (a late wake-up sends the missed frames at once).
Same library, same server options as the call server (no compression, 1 MiB messages, no
keepalive pings), so the difference in CPU is what the call logic adds over the transport.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import wave
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

FRAME_BYTES = 640
FRAME_S = 0.020


@dataclass
class Peer:
    ws: ServerConnection
    position: int = 0
    received_bytes: int = 0


class Floor:
    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.playing: dict[int, Peer] = {}

    async def handle(self, ws: ServerConnection) -> None:
        peer = Peer(ws)
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    peer.received_bytes += len(message)
                    continue
                command = json.loads(message).get("command")
                if command in ("invite", "accept"):
                    await ws.send('{"event":"answer","trackId":"floor","timestamp":0,"sdp":""}')
                elif command == "play":
                    peer.position = 0
                    self.playing[id(peer)] = peer
                elif command == "interrupt":
                    self.playing.pop(id(peer), None)
                elif command == "hangup":
                    self.playing.pop(id(peer), None)
                    await ws.send('{"event":"hangup","trackId":"floor","timestamp":0}')
                    break
        except ConnectionClosed:
            pass
        finally:
            self.playing.pop(id(peer), None)

    async def pace(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        frames = self.frames
        while True:
            due += FRAME_S
            await asyncio.sleep(max(0.0, due - loop.time()))
            for key, peer in list(self.playing.items()):
                if peer.position >= len(frames):
                    self.playing.pop(key, None)
                    continue
                frame = frames[peer.position]
                peer.position += 1
                try:
                    await peer.ws.send(frame)
                except ConnectionClosed:
                    self.playing.pop(key, None)


def load_frames(path: str) -> list[bytes]:
    with wave.open(path, "rb") as w:
        raw = w.readframes(w.getnframes())
    return [raw[i:i + FRAME_BYTES] for i in range(0, len(raw) - FRAME_BYTES + 1, FRAME_BYTES)]


async def main(port: int, prompt: str) -> None:
    floor = Floor(load_frames(prompt))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pacer = asyncio.create_task(floor.pace())
    async with serve(floor.handle, "127.0.0.1", port, max_size=1 << 20, ping_interval=None, compression=None):
        await stop.wait()
    pacer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pacer


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prompt", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.prompt))
