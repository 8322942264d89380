"""The shared floor: per-leg work that no implementation of the pipeline can avoid.

    python bench/floor.py [--legs 100 500 1000] [--udp] [--vad webrtc silero]

bench/engine.py compares the engine with a per-leg asyncio server that calls the same compiled
kernels. Both pay for the same DSP and, over UDP, for the same kernel socket work, so their ratio
is bounded by ``baseline / floor`` even for an engine with no overhead at all. This measures that
floor in µs per leg per 20 ms frame, as a lower bound:

- DSP is timed on large batches (N legs' frames in one kernel call), so there is no per-call cost
  and the caches are warm: G.711 decode and encode, resampling 8 -> 16 kHz and 16 -> 8 kHz, the
  stereo interleave for the recording.
- The WebRTC VAD runs per leg and frame (it has no batch call) on real speech, one state per leg;
  the cost of an empty call into the same object is measured and subtracted. Silero is the
  batched inference (one ``infer_into`` over N legs per 32 ms window), scaled to 20 ms.
- The recording is one ``WavWriter`` per leg written 200 ms at a time (the flush interval of the
  runs), i.e. the page-cache write every implementation makes.
- ``--udp``: one 172-byte RTP datagram sent from each of N loopback sockets (the compiled
  ``send_to``) and one received on each (``recv_into``), with the cost of an empty call
  subtracted. On loopback the sender also pays the kernel's delivery into the peer's socket.
- For reference, not part of the floor: the cost of entering the kernel at all (``os.getppid``, a
  syscall that does nothing), which is all that batching datagrams into one ``sendmmsg`` or
  ``recvmmsg`` call can save per datagram; and, to show it, N datagrams sent by one ``sendmmsg``
  call from one socket and received 64 per ``recvmmsg`` call (libc through ctypes, one call per
  batch): the cost per datagram if several legs shared one socket.
- Left out, so the floor stays a lower bound: the jitter buffer, RTP parse/build, the VAD state
  machine, playout, RTCP and events.

CPU is process time (user + system), so kernel work counts as it does in bench/engine.py.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from pbx.core.g711 import ulaw_decode, ulaw_encode  # noqa: E402
from pbx.core.mixer import interleave_stereo  # noqa: E402
from pbx.core.resample import Resampler  # noqa: E402
from pbx.core.silero import WINDOW as SILERO_WINDOW  # noqa: E402
from pbx.core.silero import SileroBatch  # noqa: E402
from pbx.core.udp import send_to  # noqa: E402
from pbx.core.vad import WebRtcBank  # noqa: E402
from pbx.core.wav import WavWriter  # noqa: E402
from support.audio import espeak_speech  # noqa: E402

FRAME_MS = 20
SAMPLES_8K = 160
SAMPLES_16K = 320
RTP_BYTES = 12 + SAMPLES_8K
RECV_BATCH = 64
FLUSH_FRAMES = 10                     # the recorder writes 200 ms at a time
MIN_CPU_S = 0.15                      # CPU per component measurement, at least


@dataclass
class Floor:
    legs: int
    vad: str
    udp: bool
    us: dict[str, float] = field(default_factory=dict)   # component -> µs per leg per frame

    @property
    def total_us(self) -> float:
        return sum(self.us.values())

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in self.us.items())
        return f"{self.total_us:.2f} µs/leg/frame ({parts})"


def cpu_per_round(work: Callable[[], object], prepare: Callable[[], object] | None = None) -> float:
    """Median process-CPU seconds of one ``work()`` round; ``prepare()`` runs untimed before each."""
    samples: list[float] = []
    spent = 0.0
    while spent < MIN_CPU_S or len(samples) < 5:
        if prepare is not None:
            prepare()
        c0 = time.process_time()
        work()
        dt = time.process_time() - c0
        samples.append(dt)
        spent += dt
    return float(np.median(samples))


def speech_frames(n_legs: int) -> tuple[np.ndarray, np.ndarray]:
    """Every leg's 20 ms frame at 8 kHz and 16 kHz, each leg at its own offset into real speech."""
    s8 = espeak_speech(8000)
    s16 = espeak_speech(16000)
    f8 = np.empty((n_legs, SAMPLES_8K), np.int16)
    f16 = np.empty((n_legs, SAMPLES_16K), np.int16)
    for leg in range(n_legs):
        k = (leg * 37) % (len(s8) // SAMPLES_8K - 1)
        f8[leg] = s8[k * SAMPLES_8K:(k + 1) * SAMPLES_8K]
        f16[leg] = s16[k * SAMPLES_16K:(k + 1) * SAMPLES_16K]
    return f8, f16


def dsp_floor(n_legs: int, f8: np.ndarray, f16: np.ndarray) -> dict[str, float]:
    flat8, flat16 = f8.reshape(-1), f16.reshape(-1)
    ulaw = ulaw_encode(flat8)
    up, down = Resampler(8000, 16000), Resampler(16000, 8000)
    per_leg = 1e6 / n_legs
    return {
        "decode": cpu_per_round(lambda: ulaw_decode(ulaw)) * per_leg,
        "resample up": cpu_per_round(lambda: up.process(flat8)) * per_leg,
        "resample down": cpu_per_round(lambda: down.process(flat16)) * per_leg,
        "encode": cpu_per_round(lambda: ulaw_encode(flat8)) * per_leg,
        "interleave": cpu_per_round(lambda: interleave_stereo(flat16, flat16)) * per_leg,
    }


def webrtc_floor(n_legs: int, f16: np.ndarray) -> float:
    bank = WebRtcBank(n_legs)
    for slot in range(n_legs):
        bank.configure(slot, 0.5)
    frames = [f16[slot] for slot in range(n_legs)]
    is_speech, mode = bank.is_speech, bank.mode

    def vad() -> None:
        for slot in range(n_legs):
            is_speech(slot, frames[slot])

    def empty() -> None:
        for slot in range(n_legs):
            mode(slot)

    return (cpu_per_round(vad) - cpu_per_round(empty)) * 1e6 / n_legs


def silero_floor(n_legs: int, f16: np.ndarray) -> float:
    batch = SileroBatch(n_legs)
    speech = np.resize(f16.reshape(-1).astype(np.float32) / 32768, n_legs * SILERO_WINDOW)
    windows = np.ascontiguousarray(speech.reshape(n_legs, SILERO_WINDOW), dtype=np.float32)
    slots = np.arange(n_legs, dtype=np.int32)
    out = np.empty(n_legs, np.float32)
    per_window = cpu_per_round(lambda: batch.infer_into(slots, windows, out)) * 1e6 / n_legs
    return per_window * FRAME_MS / (SILERO_WINDOW / 16)


def recording_floor(n_legs: int, f16: np.ndarray) -> float:
    chunk = np.ascontiguousarray(np.tile(interleave_stereo(f16[0], f16[0]), FLUSH_FRAMES))
    with tempfile.TemporaryDirectory(prefix="pbx-floor-") as tmp:
        writers = [WavWriter(Path(tmp) / f"leg{n}.wav", 16000, 2, flush_ms=200) for n in range(n_legs)]

        def write() -> None:
            for w in writers:
                w.write(chunk)

        try:
            cost = cpu_per_round(write)
        finally:
            for w in writers:
                w.close()
    return cost * 1e6 / n_legs / FLUSH_FRAMES


def loopback_socket(rcvbuf: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    return s


def drain(sock: socket.socket) -> None:
    """Read until nothing is waiting (untimed: clears the peer between rounds)."""
    buf = bytearray(2048)
    try:
        while True:
            sock.recv_into(buf)
    except BlockingIOError:
        pass


def socket_floor(n_legs: int) -> dict[str, float]:
    """One datagram out of and into each of N loopback sockets, kernel work included."""
    peer = loopback_socket(1 << 24)
    legs = [loopback_socket() for _ in range(n_legs)]
    try:
        peer_addr = peer.getsockname()
        leg_addrs = [s.getsockname() for s in legs]
        fds = [s.fileno() for s in legs]
        packet = bytes(RTP_BYTES)
        buf = bytearray(2048)

        def send_all() -> None:
            for fd in fds:
                send_to(fd, packet, peer_addr)

        def fill_legs() -> None:
            for a in leg_addrs:
                peer.sendto(packet, a)

        def recv_all() -> None:
            for s in legs:
                s.recv_into(buf)

        def empty() -> None:           # the Python side of one call, no syscall
            for s in legs:
                s.fileno()

        call = cpu_per_round(empty)
        tx = cpu_per_round(send_all, lambda: drain(peer)) - call
        rx = cpu_per_round(recv_all, fill_legs) - call
        return {"udp send": tx * 1e6 / n_legs, "udp recv": rx * 1e6 / n_legs}
    finally:
        peer.close()
        for s in legs:
            s.close()


def syscall_entry_us(rounds: int = 1000) -> float:
    """µs of one empty system call from Python, minus the Python call around it."""
    getppid, no_syscall = os.getppid, gc.isenabled     # two builtins without arguments

    def calls() -> None:
        for _ in range(rounds):
            getppid()

    def empty() -> None:
        for _ in range(rounds):
            no_syscall()

    return max(cpu_per_round(calls) - cpu_per_round(empty), 0.0) * 1e6 / rounds


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(_Iovec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


def mmsg_us(n_legs: int) -> tuple[float, float]:
    """µs per datagram when one sendmmsg call sends N 172-byte datagrams from one loopback socket, and
    when recvmmsg takes them back 64 per call from one socket (several legs behind one socket)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    peer = loopback_socket(1 << 24)
    sender = loopback_socket()
    try:
        port = peer.getsockname()[1]
        addr = ctypes.create_string_buffer(socket.AF_INET.to_bytes(2, "little") + port.to_bytes(2, "big")
                                           + socket.inet_aton("127.0.0.1") + bytes(8), 16)
        payload = ctypes.create_string_buffer(RTP_BYTES)
        iov = _Iovec(ctypes.cast(payload, ctypes.c_void_p), RTP_BYTES)
        msgs = (_Mmsghdr * n_legs)()
        for m in msgs:
            m.hdr = _Msghdr(ctypes.cast(addr, ctypes.c_void_p), 16, ctypes.pointer(iov), 1, None, 0, 0)

        def send() -> None:
            if libc.sendmmsg(sender.fileno(), msgs, n_legs, 0) != n_legs:
                raise OSError(ctypes.get_errno(), "sendmmsg sent fewer datagrams than asked")

        rx_buf = ctypes.create_string_buffer(RECV_BATCH * 2048)
        rx_iov = (_Iovec * RECV_BATCH)(*[_Iovec(ctypes.addressof(rx_buf) + i * 2048, 2048)
                                        for i in range(RECV_BATCH)])
        rx_names = ctypes.create_string_buffer(RECV_BATCH * 16)
        rx = (_Mmsghdr * RECV_BATCH)()
        for i, m in enumerate(rx):
            m.hdr = _Msghdr(ctypes.addressof(rx_names) + 16 * i, 16, ctypes.pointer(rx_iov[i]), 1, None, 0, 0)

        def receive() -> None:
            got = 0
            while got < n_legs:   # namelen stays 16: every source is an IPv4 address
                n = libc.recvmmsg(peer.fileno(), rx, min(RECV_BATCH, n_legs - got), socket.MSG_DONTWAIT, None)
                if n <= 0:
                    raise OSError(ctypes.get_errno(), "recvmmsg found fewer datagrams than were sent")
                got += n

        return (cpu_per_round(send, lambda: drain(peer)) * 1e6 / n_legs,
                cpu_per_round(receive, send) * 1e6 / n_legs)
    finally:
        peer.close()
        sender.close()


def measure_floor(n_legs: int, vad: str, udp: bool) -> Floor:
    f8, f16 = speech_frames(n_legs)
    floor = Floor(n_legs, vad, udp)
    if udp:
        floor.us.update(socket_floor(n_legs))
    floor.us.update(dsp_floor(n_legs, f8, f16))
    if vad == "webrtc":
        floor.us["webrtc vad"] = webrtc_floor(n_legs, f16)
    elif vad == "silero":
        floor.us["silero vad"] = silero_floor(n_legs, f16)
    floor.us["wav write"] = recording_floor(n_legs, f16)
    return floor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--udp", action="store_true", help="include the loopback socket work")
    parser.add_argument("--vad", nargs="+", default=["webrtc", "silero"], choices=["webrtc", "silero", "none"])
    args = parser.parse_args()
    print(f"- one empty system call: {syscall_entry_us():.2f} µs (what batching can save per datagram)")
    for n in args.legs:
        tx, rx = mmsg_us(n)
        print(f"- {n} datagrams through one socket: sendmmsg {tx:.2f}, recvmmsg (64 a call) {rx:.2f} µs each")
    for vad in args.vad:
        for n in args.legs:
            f = measure_floor(n, vad, args.udp)
            print(f"- floor {'udp' if args.udp else 'memory'}/{vad} N={n}: {f.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
