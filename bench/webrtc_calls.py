"""Concurrent WebRTC calls: the call server's CPU per ``/call/webrtc`` call, beside a ``/call`` call's.

    python bench/webrtc_calls.py [--calls 50] [--seconds 20] [--warmup 3] [--aiortc 5] [--quick] [--no-pin]

The server in its own process (``[webrtc] addr = "127.0.0.1"``), the callers in another: for each call a
WebSocket to ``/call/webrtc`` (``invite`` with the peer's offer, webrtc VAD and a recorder, then ``play``
of a long prompt, so audio flows both ways all along) and a WebRTC peer that sends 20 ms Opus packets
of espeak-ng speech over SRTP and counts what comes back.

The peers: ``--aiortc K`` of them are aiortc RTCPeerConnections (a real stack, as a browser); the rest
are :class:`LitePeer`, a peer made of our own parts (a UDP socket, a controlling ICE check with
USE-CANDIDATE and a consent check every 5 s, our DTLS client, SRTP through pbx.core.srtp, Opus packets
encoded once). Why not aiortc for all 50: measured here, an aiortc peer connection costs about 5 % of a
core, so 50 of them would need 2.5 cores of this 2-core machine and starve the server being measured.
The aiortc peers show the server treats a real stack's calls the same (their calls' packets counted
alike).

Measures, over the window (all calls up): the server's utime + stime (every thread) / wall / N, its
RSS, its skipped media frames (/health), the packets each peer received (the server's Opus) and the
server's packetsReceived per call (from the hangup events), the VAD events per call. The baseline in
the same run: bench/ws_calls.py's ``/call`` configuration (pcm over the WebSocket, webrtc VAD and
recording) at the same N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ws_calls
from ws_support import (
    PROMPT_NAME,
    ServerProcess,
    http_get_json,
    load_average,
    open_session,
    placement,
    process_cpu_s,
    speech,
)

from pbx.core.g711 import ulaw_encode
from pbx.core.opus import OpusEncoder
from pbx.core.srtp import SrtpSession
from pbx.webrtc import stun
from pbx.webrtc.dtls import Certificate, DtlsEndpoint
from pbx.webrtc.ice import IceCredentials
from pbx.webrtc.offer import read_offer

OPUS_PT = 111
CONSENT_EVERY_S = 5.0
CANDIDATE = re.compile(r"a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host")


def media_packets(codec: str) -> list[bytes]:
    """espeak-ng speech as 20 ms packets of ``codec`` (opus at 48 kHz, or pcmu), encoded once for every peer."""
    pcm16 = speech()
    if codec == "pcmu":
        pcm8 = pcm16[::2].astype(np.int16)                # good enough for a load: the server decodes it
        return [ulaw_encode(np.ascontiguousarray(pcm8[i:i + 160])) for i in range(0, len(pcm8) - 160, 160)]
    pcm48 = np.repeat(pcm16, 3).astype(np.int16)
    encoder = OpusEncoder(48000, 1)
    return [encoder.encode(np.ascontiguousarray(pcm48[i:i + 960])) for i in range(0, len(pcm48) - 960, 960)]


def lite_offer(ice: IceCredentials, fingerprint: str, codec: str) -> str:
    pt, rtpmap = (0, "a=rtpmap:0 PCMU/8000") if codec == "pcmu" else (111, "a=rtpmap:111 opus/48000/2")
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
             f"m=audio 9 UDP/TLS/RTP/SAVPF {pt}", "c=IN IP4 0.0.0.0", "a=mid:0", f"a=ice-ufrag:{ice.ufrag}",
             f"a=ice-pwd:{ice.pwd}", f"a=fingerprint:{fingerprint}", "a=setup:actpass", "a=rtcp-mux",
             rtpmap, "a=sendrecv"]
    return "\r\n".join(lines) + "\r\n"


@dataclass
class LitePeer:
    """A WebRTC peer from our own parts: ICE check, DTLS client, SRTP; Opus packets precomputed."""

    index: int
    certificate: Certificate
    codec: str = "opus"
    sock: socket.socket = field(init=False)
    ice: IceCredentials = field(default_factory=IceCredentials.generate)
    server_ice: IceCredentials | None = None
    server: tuple[str, int] | None = None
    dtls: DtlsEndpoint | None = None
    tx: SrtpSession | None = None
    received: int = 0
    sent: int = 0
    seq: int = 0
    next_check: float = 0.0

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.ssrc = random.getrandbits(32)

    def offer(self) -> str:
        return lite_offer(self.ice, self.certificate.fingerprint, self.codec)

    def answered(self, sdp: str, now: float) -> None:
        answer = read_offer(sdp)          # our answer has what an offer has: ICE credentials, fingerprint
        match = CANDIDATE.search(sdp)
        if match is None:
            raise RuntimeError("the answer has no host candidate")
        self.server = (match.group(1), int(match.group(2)))
        if self.server[0] not in ("127.0.0.1", "::1"):
            raise RuntimeError(f"the server's candidate {self.server[0]} is not loopback")
        self.server_ice = answer.ice
        self.dtls = DtlsEndpoint(self.certificate, answer.fingerprint, server=answer.setup == "active")
        self.check(now, nominate=True)
        self.dtls.start(now)
        self._flush()

    def check(self, now: float, nominate: bool = False) -> None:
        assert self.server_ice is not None and self.server is not None
        attributes = [(stun.USERNAME, f"{self.server_ice.ufrag}:{self.ice.ufrag}".encode()),
                      (stun.PRIORITY, struct.pack("!I", 0x6E0001FF)),
                      (stun.ICE_CONTROLLING, os.urandom(8))]
        if nominate:
            attributes.append((stun.USE_CANDIDATE, b""))
        request = stun.StunMessage(stun.BINDING, stun.REQUEST, os.urandom(12), attributes)
        self._send(stun.serialize(request, integrity_key=self.server_ice.pwd.encode()))
        self.next_check = now + CONSENT_EVERY_S

    def readable(self) -> None:
        now = time.monotonic()
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return
            if not data:
                continue
            first = data[0]
            if 128 <= first < 192:
                self.received += 1
            elif 20 <= first < 64 and self.dtls is not None:
                self.dtls.receive(data, now)
                self._flush()
                if self.dtls.keys is not None and self.tx is None:
                    keys = self.dtls.keys
                    self.tx = SrtpSession(keys.profile.name, keys.local, True)
        # STUN responses need no handling: the check was nominating, consent checks refresh

    def _flush(self) -> None:
        if self.dtls is not None:
            for datagram in self.dtls.datagrams_to_send():
                self._send(datagram)

    def send_media(self, payload: bytes) -> None:
        if self.tx is None:
            return
        self.seq = (self.seq + 1) & 0xFFFF
        pt, step = (0, 160) if self.codec == "pcmu" else (OPUS_PT, 960)
        header = struct.pack("!BBHII", 0x80, pt, self.seq, (self.seq * step) & 0xFFFFFFFF, self.ssrc)
        self._send(self.tx.protect_packet(header + payload))
        self.sent += 1

    def _send(self, data: bytes) -> None:
        if self.server is not None:
            with contextlib.suppress(BlockingIOError):
                self.sock.sendto(data, self.server)


async def aiortc_peer(index: int) -> tuple[Any, Any, list[int]]:
    """An aiortc RTCPeerConnection sending speech (a WAV through MediaPlayer), counting frames it hears."""
    import aioice.ice
    from aiortc import RTCPeerConnection
    from aiortc.contrib.media import MediaPlayer
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]   # loopback only
    pc = RTCPeerConnection()
    pc.addTrack(MediaPlayer(str(SPEECH_WAV), loop=True).audio)
    heard = [0]

    @pc.on("track")
    def on_track(track: Any) -> None:
        async def consume() -> None:
            while True:
                try:
                    await track.recv()
                except Exception:
                    return
                heard[0] += 1
        READERS.append(asyncio.ensure_future(consume()))
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp, heard


READERS: list[asyncio.Future[None]] = []      # the aiortc peers' track readers, kept alive
SPEECH_WAV = Path(os.environ.get("TMPDIR", "/tmp")) / "pypbx-bench-webrtc-speech.wav"


async def generate(spec: dict[str, Any]) -> dict[str, Any]:
    from aiortc import RTCSessionDescription
    loop = asyncio.get_running_loop()
    calls, port = spec["calls"], spec["port"]
    n_aiortc = min(spec["aiortc"], calls)
    certificate = Certificate()
    packets = media_packets(spec["codec"])
    lites = [LitePeer(i, certificate, spec["codec"]) for i in range(calls - n_aiortc)]
    for peer in lites:
        loop.add_reader(peer.sock.fileno(), peer.readable)
    aio = [await aiortc_peer(i) for i in range(n_aiortc)]
    clients = [await open_session(port, f"webrtc-{i}", path="/call/webrtc") for i in range(calls)]
    answers = []
    for i, client in enumerate(clients):
        offer = aio[i - len(lites)][1] if i >= len(lites) else lites[i].offer()
        answers.append(client.wait_event(lambda e: e.get("event") in ("answer", "error")))
        client.command({"command": "invite", "option": {
            "offer": offer, "vad": {"type": "webrtc"}, "recorder": {"recorderFile": f"bench/call-{i}.wav"}}})
        await asyncio.sleep(1.0 / calls)
    for i, (_, event) in enumerate(await asyncio.wait_for(asyncio.gather(*answers), 60.0)):
        if event.get("event") != "answer":
            raise RuntimeError(f"invite {i} failed: {event}")
        if i < len(lites):
            lites[i].answered(event["sdp"], time.monotonic())
        else:
            await aio[i - len(lites)][0].setRemoteDescription(RTCSessionDescription(event["sdp"], "answer"))
    await asyncio.sleep(1.0)
    for client in clients:
        client.command({"command": "play", "url": PROMPT_NAME})

    t0 = loop.time()
    window = (t0 + spec["warmup"], t0 + spec["warmup"] + spec["seconds"])
    samples: dict[str, Any] = {}
    k = 0
    while loop.time() < window[1] + 0.5:
        now = time.monotonic()
        for i, peer in enumerate(lites):
            peer.send_media(packets[(k + i * 7) % len(packets)])
            if now >= peer.next_check:
                peer.check(now)
        for name, at in (("start", window[0]), ("end", window[1])):
            if name not in samples and loop.time() >= at:
                samples[name] = {"wall": time.monotonic(), "cpu": process_cpu_s(spec["server_pid"]),
                                 "gen": process_cpu_s(os.getpid()),
                                 "health": await http_get_json(port, "/health"),
                                 "received": [p.received for p in lites]}
        k += 1
        await asyncio.sleep(max(0.0, t0 + k * 0.020 - loop.time()))

    hangups = [c.wait_event(lambda e: e.get("event") == "hangup") for c in clients]
    for client in clients:
        client.command({"command": "hangup"})
    done = await asyncio.wait_for(asyncio.gather(*hangups), 30.0)
    for client in clients:
        client.close()
    for pc, _, _ in aio:
        await pc.close()
    start, end = samples["start"], samples["end"]
    wall = end["wall"] - start["wall"]
    window_received = [b - a for a, b in zip(start["received"], end["received"], strict=True)]
    events = [e for c in clients for _, e in c.events]
    rtp = [e["extra"]["rtp"] for _, e in done]
    return {
        "wall_s": wall, "server_cpu_s": end["cpu"] - start["cpu"], "gen_cpu_s": end["gen"] - start["gen"],
        "skipped": end["health"]["media_skipped_frames"] - start["health"]["media_skipped_frames"],
        "lite_rx_per_s_min": min(window_received, default=0) / wall,
        "lite_rx_per_s_median": float(np.median(window_received)) / wall if window_received else 0.0,
        "aiortc_frames_heard": [heard[0] for _, _, heard in aio],
        "server_rx_packets_min": min(r["packetsReceived"] for r in rtp),
        "server_rx_packets_median": float(np.median([r["packetsReceived"] for r in rtp])),
        "speaking_per_call": sum(1 for e in events if e.get("event") == "speaking") / calls,
        "errors": sorted({e.get("error", "") for e in events if e.get("event") == "error"})[:5],
    }


def run_webrtc(calls: int, codec: str, args: argparse.Namespace) -> dict[str, Any]:
    from support.audio import write_wav
    write_wav(SPEECH_WAV, speech(), 16000)
    server_cpus, gen_cpus = ws_calls.pin_sets() if args.pin else (None, None)
    extra = '[sip]\naddr = "127.0.0.1:0"\n[webrtc]\naddr = "127.0.0.1"\n'
    server = ServerProcess("pbx", args.warmup + args.seconds + 30.0, cpus=server_cpus, extra_config=extra)
    try:
        server.wait_ready()
        spec = {"calls": calls, "port": server.port, "server_pid": server.pid, "warmup": args.warmup,
                "seconds": args.seconds, "aiortc": args.aiortc, "codec": codec}
        proc = subprocess.run([sys.executable, __file__, "--generate", json.dumps(spec)], capture_output=True,
                              text=True, timeout=args.warmup + args.seconds + 180,
                              preexec_fn=placement(gen_cpus, 0))
        if proc.returncode != 0:
            raise RuntimeError(f"generator failed:\n{proc.stderr[-4000:]}\nserver log:\n{server.log()}")
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        result["recordings"] = ws_calls.recording_lengths(server.data_dir / "recordings" / "bench", calls)
        return result
    finally:
        server.stop()
        server.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--aiortc", type=int, default=5, help="how many of the peers are aiortc (Opus)")
    parser.add_argument("--codec", nargs="+", default=["opus", "pcmu"], choices=["opus", "pcmu"],
                        help="our own peers' codec: one run each")
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 calls (1 aiortc), 3 s")
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        print(json.dumps(asyncio.run(generate(json.loads(args.generate)))))
        return 0
    if args.quick:
        args.calls, args.seconds, args.warmup, args.aiortc = 4, 3.0, 1.0, 1
    args.burst, args.nice = False, 0
    print(f"# WebRTC calls: N={args.calls} ({args.aiortc} aiortc, the rest our own peers), {args.seconds:g} s "
          f"measured after {args.warmup:g} s; webrtc VAD + recorder + prompt per call; {os.cpu_count()} CPUs, "
          f"load average {load_average()}, pinned: {args.pin}", flush=True)
    runs = {codec: run_webrtc(args.calls, codec, args) for codec in args.codec}
    baseline = ws_calls.run_one("pbx", "webrtc", args.calls, args)
    print("\n| configuration | N | server % core/call | / the /call call | skipped frames |")
    print("|---|---:|---:|---:|---:|")
    pcts = {codec: 100.0 * r["server_cpu_s"] / r["wall_s"] / args.calls for codec, r in runs.items()}
    for codec, r in runs.items():
        print(f"| /call/webrtc: {codec} over SRTP ({args.aiortc} aiortc peers on Opus), webrtc VAD, recorder, "
              f"prompt | {args.calls} | {pcts[codec]:.3f} | {pcts[codec] / baseline.pct_per_call:.2f}x | "
              f"{r['skipped']} |")
    print(f"| /call: pcm over the WebSocket, webrtc VAD, recorder, prompt | {args.calls} | "
          f"{baseline.pct_per_call:.3f} | 1.00x | {baseline.result.get('skipped_frames', 'n/a')} |")
    print()
    for codec, r in runs.items():
        count, shortest, median = r["recordings"]
        print(f"- {codec}: our peers received a median {r['lite_rx_per_s_median']:.1f} (min "
              f"{r['lite_rx_per_s_min']:.1f}) packets/s from the server in the window (50 expected); aiortc "
              f"peers heard {r['aiortc_frames_heard']} frames in all; the server received per call "
              f"median {r['server_rx_packets_median']:.0f}, min {r['server_rx_packets_min']} packets; "
              f"{r['speaking_per_call']:.1f} speaking events per call; recordings {count}/{args.calls}, "
              f"min {shortest:.1f} s, median {median:.1f} s; errors {r['errors']}; the callers' process "
              f"{100 * r['gen_cpu_s'] / r['wall_s']:.1f} % of a core")
    worst = max(pcts.values())
    print(f"- target <= 1 % of a core per WebRTC call: {'met' if worst <= 1.0 else 'missed'} (worst {worst:.3f} %)")
    print(f"\nload average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
