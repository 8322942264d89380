"""A relayed bridge against a transcoded one: the engine's cost per bridged pair of RTP legs.

    python bench/bridge.py [--pairs 100] [--ticks 500] [--codecs pcmu opus]

Each pair is two UDP legs of one engine bridged to each other (a call and its refer's transfer leg),
both with the same codec; each leg's peer sends it one packet of a 440 Hz tone per 20 ms frame, so
audio flows both ways. Both modes decode every inbound packet (VAD, ASR and the recorder need the
audio); they differ on the way out:

- relayed (``Engine.relay_bridges = True``, the default): the partner's payload goes out as it came;
- transcoded (``relay_bridges = False``): the partner's decoded audio is mixed, resampled and encoded.

The engine is ticked with explicit times (20 ms apart, as fast as it goes) and only the ticks are
timed (thread CPU time): the peers' sends from Python are outside the measurement. Rounds alternate
the two modes; the medians are printed with the ratio transcoded / relayed.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import sys
import time

import numpy as np

from pbx.core import g711
from pbx.core.engine import Engine
from pbx.core.opus import OpusEncoder

FRAME_S = 0.02


def payloads(codec: str, count: int) -> list[bytes]:
    if codec == "pcmu":
        t = np.arange(count * 160) / 8000.0
        pcm = np.round(8000 * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16)
        return [g711.ulaw_encode(pcm[i * 160:(i + 1) * 160]) for i in range(count)]
    if codec == "opus":
        encoder = OpusEncoder(16000, 1, complexity=5)
        t = np.arange(count * 320) / 16000.0
        pcm = np.round(8000 * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16)
        return [encoder.encode(pcm[i * 320:(i + 1) * 320]) for i in range(count)]
    raise ValueError(codec)


def drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return


def one_run(codec: str, pairs: int, ticks: int, relay: bool) -> tuple[float, int]:
    """µs of engine CPU per pair per tick, and the frames relayed."""
    pt = {"pcmu": 0, "opus": 111}[codec]
    ticks_per_frame = {"pcmu": 160, "opus": 960}[codec]
    engine = Engine(2 * pairs + 2)
    engine.relay_bridges = relay
    socks: list[socket.socket] = []
    legs = []
    feeds: list[tuple[socket.socket, tuple[str, int]]] = []
    for _ in range(pairs):
        pair = []
        for _ in range(2):
            ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            ours.bind(("127.0.0.1", 0))
            ours.setblocking(False)
            peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            peer.bind(("127.0.0.1", 0))
            peer.setblocking(False)
            socks += [ours, peer]
            # the peer's address as the signalled one (a leg takes RTP only from it or its latched source)
            leg = engine.add_leg("udp", codec, 0.0, fd=ours.fileno(), payload_type=pt, remote=peer.getsockname())
            pair.append(leg)
            feeds.append((peer, ours.getsockname()))
        engine.bridge(pair[0], pair[1])
        legs += pair
    audio = payloads(codec, 50)
    cpu = 0.0
    for i in range(ticks):
        payload = audio[i % len(audio)]
        packet = struct.pack("!BBHII", 0x80, pt, (i + 1) & 0xFFFF, (i * ticks_per_frame) & 0xFFFFFFFF, 0xBEEF) + payload
        for peer, target in feeds:
            peer.sendto(packet, target)
        start = time.thread_time()
        engine.tick(i * FRAME_S * 1000.0)
        cpu += time.thread_time() - start
        if i % 10 == 9:                   # what the legs sent back, drained so no peer buffer fills
            for peer, _ in feeds:
                drain(peer)
    relayed = sum(int(leg.stats["relayed_frames"]) for leg in legs)  # type: ignore[call-overload]
    for s in socks:
        s.close()
    return cpu / ticks / pairs * 1e6, relayed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--codecs", nargs="+", default=["pcmu", "opus"])
    args = parser.parse_args()
    print(f"# command: python bench/bridge.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"# {args.pairs} bridged pairs, {args.ticks} ticks, {args.rounds} rounds alternating the modes")
    print()
    print("| codec | relayed µs/pair/tick | transcoded µs/pair/tick | transcoded / relayed | frames relayed |")
    print("|---|---:|---:|---:|---:|")
    for codec in args.codecs:
        relayed_runs, transcoded_runs, frames = [], [], 0
        for _ in range(args.rounds):
            us, frames = one_run(codec, args.pairs, args.ticks, True)
            relayed_runs.append(us)
            us, none = one_run(codec, args.pairs, args.ticks, False)
            transcoded_runs.append(us)
            assert none == 0
        relayed, transcoded = statistics.median(relayed_runs), statistics.median(transcoded_runs)
        total = 2 * args.pairs * args.ticks
        print(f"| {codec} | {relayed:.1f} | {transcoded:.1f} | {transcoded / relayed:.2f}x | "
              f"{frames} of {total} ({100 * frames / total:.0f} %) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
