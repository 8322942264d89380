"""Helpers for the fault tests (tests/test_faults.py), over loopback only.

- :class:`SipPeer`: a phone on 127.0.0.1 (SIP over UDP) built on our sans-I/O
  :class:`~pbx.sip.ua.UserAgent`. It answers every INVITE with PCMU, or places one (:meth:`SipPeer.call`);
  each answered call is a :class:`PeerCall` with its own RTP socket that sends a 20 ms PCMU tone frame
  every 20 ms of wall clock and keeps every packet the server sends (sequence number, arrival time). The
  faults: :meth:`PeerCall.stop_rtp` (the phone goes quiet, its signalling stays), :meth:`SipPeer.vanish`
  (no RTP, and every SIP message is kept but never answered: a phone that lost power).
- :class:`KillableDeepgram`: tests/support/deepgram_server.py's local Deepgram that can be killed (every
  connection cut without a close frame, the port closed: a provider process that died) and brought
  back on the same port; its speak mode ``"hold"`` sends 100 ms of audio then nothing, so a kill lands
  mid-synthesis.
- :func:`small_disk`: a tmpfs of a given size mounted on a folder (root only), and :func:`fill` to leave
  only so many bytes free on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from pbx.core.g711 import ulaw_encode
from pbx.sip.errors import SipParseError
from pbx.sip.message import parse_message
from pbx.sip.offer import AudioCapabilities, Negotiated, accept_answer, answer_offer, build_offer
from pbx.sip.sdp import SessionDescription
from pbx.sip.sdp import parse as parse_sdp
from pbx.sip.ua import Answered, Ended, Failed, Incoming, Session, UserAgent
from tests.support.deepgram_server import DeepgramServer

Address = tuple[str, int]
HOST = "127.0.0.1"
FRAME_S = 0.020
SAMPLES = 160                        # 20 ms of PCMU
PCMU = AudioCapabilities(codecs=("pcmu",), dtmf=True, ptime=20)
TIMER_POLL_S = 0.005                 # how often the peer's user agent timers are looked at


def tone_frames(freq: float = 440.0, count: int = 50) -> list[bytes]:
    """``count`` 20 ms PCMU frames of a continuous tone (a loop of them is seamless at 440 Hz: 50
    frames are exactly 440 periods)."""
    t = np.arange(count * SAMPLES) / 8000.0
    pcm = np.round(8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    data = bytes(ulaw_encode(pcm))
    return [data[i * SAMPLES:(i + 1) * SAMPLES] for i in range(count)]


# -- RTP -------------------------------------------------------------------------------------------------------
class _Rtp(asyncio.DatagramProtocol):
    def __init__(self, call: PeerCall) -> None:
        self.call = call

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= 12 and data[0] >> 6 == 2 and not 72 <= (data[1] & 0x7F) <= 76:   # RTP, not RTCP
            self.call.arrivals.append((int.from_bytes(data[2:4], "big"), time.monotonic()))

    def error_received(self, exc: Exception) -> None:
        """ICMP for an earlier send (the server's leg is gone): nothing to do."""


@dataclass(eq=False)
class PeerCall:
    """One call of the peer: its signalling session, its RTP socket, what it sent and received."""

    session: Session | None = None           # set as soon as the INVITE is sent or received
    transport: asyncio.DatagramTransport | None = None
    remote: Address | None = None            # the server's RTP address, from its SDP
    sent: int = 0
    arrivals: list[tuple[int, float]] = field(default_factory=list)   # (sequence number, time.monotonic())
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str = ""                     # the user agent's: "bye" (the server hung up), ...
    failed: int = 0                          # the final status when the INVITE was refused
    _sender: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def start_rtp(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sender = loop.create_task(self._send())

    async def _send(self) -> None:
        frames = tone_frames()
        ssrc, seq0, ts0 = (int.from_bytes(os.urandom(n), "big") for n in (4, 2, 4))
        start = time.monotonic()
        k = 0
        while self.transport is not None and self.remote is not None:
            header = bytes([0x80, (0x80 if k == 0 else 0) | 0]) + ((seq0 + k) & 0xFFFF).to_bytes(2, "big") \
                + ((ts0 + k * SAMPLES) & 0xFFFFFFFF).to_bytes(4, "big") + ssrc.to_bytes(4, "big")
            self.transport.sendto(header + frames[k % len(frames)], self.remote)
            self.sent += 1
            k += 1
            await asyncio.sleep(max(0.0, start + k * FRAME_S - time.monotonic()))

    def stop_rtp(self) -> None:
        """The phone stops sending audio (it still receives, and its signalling answers)."""
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None

    def close(self) -> None:
        self.stop_rtp()
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    # -- what the server sent ----------------------------------------------------------------------------------
    def received(self, since: float = 0.0, until: float = float("inf")) -> list[tuple[int, float]]:
        return [(s, t) for s, t in self.arrivals if since <= t <= until]

    def missing(self, since: float = 0.0, until: float = float("inf")) -> int:
        """Packets the server skipped between the first and last received in the window: gaps in its
        sequence numbers (nothing is lost on loopback)."""
        seqs = [s for s, _ in self.received(since, until)]
        if not seqs:
            return 0
        span = 1 + sum((b - a) & 0xFFFF for a, b in itertools.pairwise(seqs))
        return span - len(set(seqs))

    def longest_gap(self, since: float = 0.0, until: float = float("inf")) -> float:
        """The longest silence (s) between two packets from the server in the window."""
        times = [t for _, t in self.received(since, until)]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


# -- SIP -------------------------------------------------------------------------------------------------------
class _Sip(asyncio.DatagramProtocol):
    def __init__(self, peer: SipPeer) -> None:
        self.peer = peer

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.peer.datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        """ICMP for an earlier send: SIP retransmissions cover it."""


class SipPeer:
    """A phone on loopback. It answers every INVITE (PCMU, RTP at once) unless :attr:`answer_invites` is
    False; :meth:`call` places one. :attr:`calls` in the order they started; :attr:`heard` every SIP
    message received, as (start line, time.monotonic())."""

    def __init__(self) -> None:
        self.ua: UserAgent | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.calls: list[PeerCall] = []
        self.heard: list[tuple[str, float]] = []
        self.vanished = False
        self.answer_invites = True
        self._by_session: dict[str, PeerCall] = {}
        self._offers: dict[str, SessionDescription] = {}      # ours, by session id (calls we placed)
        self._changed = asyncio.Condition()
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls) -> AsyncIterator[SipPeer]:
        peer = cls()
        loop = asyncio.get_running_loop()
        peer._loop = loop
        transport, _ = await loop.create_datagram_endpoint(lambda: _Sip(peer), local_addr=(HOST, 0))
        peer.transport = transport
        port = int(transport.get_extra_info("sockname")[1])
        peer.ua = UserAgent(HOST, port, user_agent="faults-peer")
        peer._ticker = loop.create_task(peer._tick())
        try:
            yield peer
        finally:
            peer._ticker.cancel()
            for call in peer.calls:
                call.close()
            transport.close()

    @property
    def port(self) -> int:
        assert self.ua is not None
        return self.ua.port

    @property
    def uri(self) -> str:
        return f"sip:peer@{HOST}:{self.port}"

    def vanish(self) -> None:
        """Gone without a word: no more RTP from any call, and no SIP answer to anything (what comes is
        kept in :attr:`heard`)."""
        self.vanished = True
        for call in self.calls:
            call.close()

    # -- placing a call ------------------------------------------------------------------------------------------
    async def call(self, sip_port: int, callee: str = "bot") -> PeerCall:
        """INVITE ``callee`` at the server's SIP port (PCMU offer); the call is answered or failed later."""
        assert self.ua is not None and self._loop is not None
        _, call = await self._rtp_socket()
        offer = build_offer(PCMU, HOST, call.port, session_id=call.port, version=1)
        session = self.ua.invite(f"sip:{callee}@{HOST}:{sip_port}", f"sip:peer@{HOST}", f"sip:{callee}@{HOST}",
                                 offer.serialize(), (HOST, sip_port), time.monotonic())
        self._offers[session.id] = offer
        self._add(call, session)
        self._flush()
        return call

    async def _rtp_socket(self) -> tuple[asyncio.DatagramTransport, PeerCall]:
        assert self._loop is not None
        call = PeerCall()
        transport, _ = await self._loop.create_datagram_endpoint(lambda: _Rtp(call), local_addr=(HOST, 0))
        call.transport = transport
        return transport, call

    def _add(self, call: PeerCall, session: Session) -> None:
        call.session = session
        self.calls.append(call)
        self._by_session[session.id] = call

    # -- waiting ---------------------------------------------------------------------------------------------------
    async def wait_for_call(self, index: int = 0, timeout: float = 5.0) -> PeerCall:
        """The ``index``-th call once it has media (answered, its RTP flowing)."""
        async def until() -> PeerCall:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.calls) > index and (
                    self.calls[index].remote is not None or self.calls[index].ended.is_set()))
                return self.calls[index]
        return await asyncio.wait_for(until(), timeout)

    async def wait_heard(self, what: str, count: int = 1, timeout: float = 5.0) -> list[float]:
        """The times of the first ``count`` SIP messages whose start line begins with ``what``."""
        async def until() -> list[float]:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.times_of(what)) >= count)
                return self.times_of(what)
        return await asyncio.wait_for(until(), timeout)

    def times_of(self, what: str) -> list[float]:
        """When each SIP message whose start line begins with ``what`` came."""
        return [t for line, t in self.heard if line.startswith(what)]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- the user agent's shell ------------------------------------------------------------------------------------
    def datagram(self, data: bytes, addr: Address) -> None:
        assert self.ua is not None and self._loop is not None
        try:
            message = parse_message(data)
        except SipParseError:
            return
        self.heard.append((data.split(b"\r\n", 1)[0].decode("latin-1"), time.monotonic()))
        self._loop.create_task(self._notify())
        if self.vanished:
            return
        self.ua.receive(message, addr, time.monotonic())
        self._flush()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TIMER_POLL_S)
            if self.ua is None or self.vanished:
                continue
            due = self.ua.get_timer()
            if due is not None and due <= time.monotonic():
                self.ua.handle_timer(time.monotonic())
                self._flush()

    def _flush(self) -> None:
        assert self.ua is not None and self.transport is not None and self._loop is not None
        for data, addr in self.ua.datagrams_to_send():
            if not self.vanished:
                self.transport.sendto(data, addr)
        for event in self.ua.events():
            if isinstance(event, Incoming):
                self._loop.create_task(self._answer(event.session))
            elif isinstance(event, Answered) and not event.reinvite:
                call = self._by_session.get(event.session.id)
                offer = self._offers.get(event.session.id)
                if call is not None and offer is not None:
                    self._media(call, accept_answer(offer, parse_sdp(event.sdp)))
            elif isinstance(event, Failed):
                call = self._by_session.get(event.session.id)
                if call is not None:
                    call.failed = event.status
                    call.end_reason = f"failed {event.status}"
                    call.ended.set()
                    call.close()
            elif isinstance(event, Ended):
                call = self._by_session.get(event.session.id)
                if call is not None:
                    call.end_reason = event.reason
                    call.ended.set()
                    call.close()
        for data, addr in self.ua.datagrams_to_send():
            if not self.vanished:
                self.transport.sendto(data, addr)
        self._loop.create_task(self._notify())

    async def _answer(self, session: Session) -> None:
        assert self.ua is not None
        if not self.answer_invites or self.vanished:
            return
        _, call = await self._rtp_socket()
        self._add(call, session)
        answer, negotiated = answer_offer(parse_sdp(session.remote_sdp), PCMU, HOST, call.port,
                                          session_id=call.port, version=1)
        self.ua.answer(session, answer.serialize(), time.monotonic())
        self._media(call, negotiated)
        self._flush()

    def _media(self, call: PeerCall, negotiated: Negotiated) -> None:
        assert self._loop is not None
        call.remote = (negotiated.address, negotiated.port)
        call.start_rtp(self._loop)

    def hang_up(self, call: PeerCall) -> None:
        """BYE from the peer."""
        assert self.ua is not None and call.session is not None
        self.ua.hangup(call.session, time.monotonic())
        call.close()
        self._flush()


# -- a provider that dies ----------------------------------------------------------------------------------------
class KillableDeepgram(DeepgramServer):
    """The local Deepgram, killable: :meth:`kill` cuts every connection without a close frame and
    closes the port; :meth:`revive` listens on the same port again. Speak mode ``"hold"``: the first
    100 ms of audio, then nothing until the connection goes."""

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self.connections: set[ServerConnection] = set()

    async def __aenter__(self) -> KillableDeepgram:
        await self._bind()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _bind(self) -> None:
        self._server = await serve(self._handle, HOST, self.port, process_request=self._check, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections.add(ws)
        try:
            await super()._handle(ws)
        except ConnectionClosed:
            pass                        # killed
        finally:
            self.connections.discard(ws)

    async def kill(self) -> None:
        """The provider's process died: connections reset, nothing listening."""
        assert self._server is not None
        server, self._server = self._server, None
        server.close(close_connections=False)
        for ws in list(self.connections):
            ws.transport.abort()
        await server.wait_closed()

    async def revive(self) -> None:
        await self._bind()

    async def _speak_audio(self, ws: ServerConnection, session: object, text: str, rate: int,
                           encoding: str) -> None:
        if getattr(session, "mode", "") != "hold":
            await super()._speak_audio(ws, session, text, rate, encoding)    # type: ignore[arg-type]
            return
        pcm = np.round(8000 * np.sin(2 * np.pi * 440 * np.arange(rate // 10) / rate)).astype("<i2")
        await ws.send(pcm.tobytes())
        await self._notify()
        await ws.wait_closed()


# -- a disk that fills up ----------------------------------------------------------------------------------------
def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN: CI and the dev machines)."""
    if os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory() as folder:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", folder], capture_output=True).returncode:
            return False
        subprocess.run(["umount", folder], check=False, capture_output=True)
        return True


@contextlib.contextmanager
def small_disk(folder: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` on ``folder`` (made if missing), unmounted on the way out."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(folder)],
                   check=True, capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def fill(folder: Path, leave_bytes: int) -> Path:
    """Fill the file system of ``folder`` until only about ``leave_bytes`` are free; the filler's path."""
    filler = folder / "filler.bin"
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    with open(filler, "wb") as out:
        out.write(b"\0" * max(0, free - leave_bytes))
    return filler


def free_bytes(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize
