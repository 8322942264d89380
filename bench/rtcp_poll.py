"""What a leg's own RTCP socket costs the engine's tick: UDP legs with ``rtcp_fd`` against the same legs
with RTCP multiplexed on the RTP port (no second socket), in one run.

    python bench/rtcp_poll.py [--legs 300] [--ticks 1500] [--rounds 3]

SIP legs have an RTCP socket (RTP port + 1) that receives a datagram every few seconds. The engine
used to read it with one recvmmsg per leg per frame (almost always empty); it now polls every leg's
RTCP socket with one epoll_wait per tick and reads only the ready ones. This bench isolates that
cost: N UDP legs (PCMU, no VAD, no recorder, nothing to play: silence is sent) each on its own
loopback RTP socket, sending to one sink socket drained between ticks; the ticks are run back to back
with a virtual clock (20 ms per tick), and the engine's tick CPU (thread time around ``tick`` only)
is divided by legs x ticks. Modes alternate over ``--rounds`` so that a busy host affects both.
Printed: µs per leg per tick of each mode and the ratio with / without the RTCP socket (1.0 means
the RTCP socket costs nothing per frame).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pbx.core.engine import Engine  # noqa: E402

FRAME_MS = 20.0


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


def drain(s: socket.socket) -> None:
    while True:
        try:
            s.recv(2048)
        except BlockingIOError:
            return


def run(legs: int, ticks: int, rtcp: bool) -> float:
    """µs of tick CPU per leg per tick."""
    sink = udp()
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    socks = [(udp(), udp() if rtcp else None) for _ in range(legs)]
    engine = Engine(max_legs=legs)
    for rtp_sock, rtcp_sock in socks:
        engine.add_leg("udp", "pcmu", 0.0, fd=rtp_sock.fileno(), remote=sink.getsockname(),
                       rtcp_fd=rtcp_sock.fileno() if rtcp_sock is not None else -1, stream_silence=True)
    cpu = 0.0
    for k in range(ticks):
        start = time.thread_time()
        engine.tick(k * FRAME_MS)
        cpu += time.thread_time() - start
        drain(sink)
    for rtp_sock, rtcp_sock in socks:
        rtp_sock.close()
        if rtcp_sock is not None:
            rtcp_sock.close()
    sink.close()
    return cpu * 1e6 / (legs * ticks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", type=int, default=300)
    parser.add_argument("--ticks", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"# rtcp_poll: {args.legs} UDP legs, {args.ticks} ticks x {args.rounds} rounds per mode, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for rtcp in (False, True):
            results[rtcp].append(run(args.legs, args.ticks, rtcp))
    plain, with_rtcp = min(results[False]), min(results[True])
    print("| legs | RTCP multiplexed µs/leg/tick | own RTCP socket µs/leg/tick | own / multiplexed |")
    print("|---:|---:|---:|---:|")
    print(f"| {args.legs} | {plain:.2f} | {with_rtcp:.2f} | {with_rtcp / plain:.2f}x |")
    rounds = {rtcp: ", ".join(f"{x:.2f}" for x in results[rtcp]) for rtcp in results}
    print(f"(best of {args.rounds} rounds; every round: multiplexed {rounds[False]}; own socket {rounds[True]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
