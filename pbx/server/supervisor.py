"""Multi-worker mode: one supervisor process in front of ``workers`` call-server processes.

One server process is one asyncio loop and tops out at one core; each worker is a whole call server
(:class:`~pbx.server.app.CallServer`: its own engine, SIP user agent, RTP ports) on its own core. The
supervisor holds what they share, and does no media:

- the HTTP port: it accepts each connection, peeks at the request line (the bytes stay in the socket)
  and hands the connection over to a worker (SCM_RIGHTS over the worker's
  :class:`~pbx.server.channel.Channel`): a WebSocket or ``/call/kill`` naming a call id to the worker
  that owns it, anything else to the least busy worker;
- the SIP port: it reads each UDP datagram and passes it to a worker by Call-ID
  (:class:`~pbx.server.routing.SipRoutes`); workers send from the same socket (they hold a copy of it
  and never read it), so peers see one address. A SIP TCP connection is handed over whole to one worker,
  which keeps the dialogs it carries;
- the registry (:class:`~pbx.server.routing.Directory`): call ids claimed across workers, and the
  ``gather`` that ``/call/lists``, ``/health`` and ``/metrics`` use to ask every worker.

Each worker has a slice of ``[sip] rtp_ports`` and ``[webrtc] rtp_ports``. SIGTERM is passed on to
the workers (each drains its calls) and the supervisor exits when they have; SIGINT likewise. A worker
that dies is started again (its calls are lost: their peers see them end), at most
:data:`MAX_RESTARTS` times per :data:`RESTART_WINDOW_S`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pbx.config import Config
from pbx.server.auth import announced_token
from pbx.server.channel import Channel, ChannelClosed
from pbx.server.listener import Listener, listeners
from pbx.server.metrics import process_families, sip_refused
from pbx.server.routing import MAX_REQUEST_LINE, Directory, SipRoutes, Target, request_target, sip_call_id
from pbx.server.sipcalls import advertised
from pbx.server.sipnet import bind_pair, error_response
from pbx.sip.guard import SipGuard

log = logging.getLogger(__name__)

PEEK_TIMEOUT_S = 10.0        # a connection that sends no request line by then is closed
MAX_PEEKING = 1024           # connections waiting for their request line; past it they go to any worker
RECENT_S = 2.0               # new calls handed to a worker count against it until it claims them
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
UDP_BATCH = 256              # datagrams read per wake-up


def port_slice(ports: tuple[int, int], index: int, count: int) -> tuple[int, int]:
    """Worker ``index``'s part of an RTP port range (even-aligned, so RTP/RTCP pairs stay whole)."""
    low, high = ports
    size = ((high - low) // count) & ~1
    if size < 2:
        raise ValueError(f"the port range {low}-{high} is too small for {count} workers")
    start = low + index * size
    return start, start + size


def accept_waiting(listener: socket.socket, what: str) -> Iterator[socket.socket]:
    """Every connection waiting on a non-blocking ``listener`` (an error ends the round, logged)."""
    while True:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("%s accept failed: %s", what, exc)
            return
        yield sock


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    channel: Channel | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    handed: collections.deque[float] = field(default_factory=collections.deque)   # recent new calls
    restarts: collections.deque[float] = field(default_factory=collections.deque)
    refusing: bool = False       # its admission control refuses new calls (overloaded or draining)


class Supervisor:
    def __init__(self, config: Config, config_args: list[str]) -> None:
        self.config = config
        self.config_args = config_args          # the worker's command line: the same configuration
        self.count = config.worker_count
        self.workers = [Worker(i) for i in range(self.count)]
        self.directory = Directory()
        self.routes = SipRoutes(self.count)
        self.guard = SipGuard(config.sip)     # docs/sip-security.md
        self.token: str | None = None
        self._http: list[Listener] = []
        self._sip_udp: list[socket.socket] = []
        self._sip_tcp: list[socket.socket] = []
        self._peeking = 0
        self._next = 0
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._exited = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        host, port = self.config.host_port
        try:
            self._http = listeners(host, port)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        sip_addresses = [self.config.sip.host_port]
        if self.config.sip.host_port6 is not None:
            sip_addresses.append(self.config.sip.host_port6)
        try:
            for sip_host, sip_port in sip_addresses:
                udp, tcp = bind_pair(sip_host, sip_port)
                self._sip_udp.append(udp)
                self._sip_tcp.append(tcp)
        except OSError as exc:
            self._close_sockets()
            raise OSError(exc.errno, f"cannot open the SIP port {self.config.sip.addr} ([sip] addr): "
                                     f"{exc.strerror or exc}") from exc
        config = self.config
        self.token = announced_token(config.auth, host, config.api_token, config.data_dir)
        for worker in self.workers:
            await self._start_worker(worker)
        await asyncio.gather(*(w.ready.wait() for w in self.workers))
        for listener in self._http:
            listener.setblocking(False)
            loop.add_reader(listener.fileno(), self._accept_http, listener)
        for tcp in self._sip_tcp:
            tcp.setblocking(False)
            loop.add_reader(tcp.fileno(), self._accept_sip_tcp, tcp)
        for udp in self._sip_udp:
            udp.setblocking(False)
            loop.add_reader(udp.fileno(), self._read_sip_udp, udp)
        bound = self._http[0].getsockname()
        log.info("pypbx listening on %s:%d (%d workers)", bound[0], bound[1], self.count)
        for udp in self._sip_udp:
            sip_host, sip_port = udp.getsockname()[:2]
            log.info("SIP on %s:%d (UDP and TCP), advertised as %s", sip_host, sip_port,
                     advertised(self.config.sip, sip_host))
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self._signal, sig)
        await self._exited.wait()
        self._close_sockets()
        return 0

    def _signal(self, sig: int) -> None:
        """Pass the signal on; the workers drain (SIGTERM) or stop (SIGINT), and we exit after them."""
        if not self._stopping:
            log.info("%s: passing it on to %d workers", signal.Signals(sig).name, self.count)
        self._stopping = True
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(sig)
        self._check_exited()

    def _check_exited(self) -> None:
        if self._stopping and all(w.process is None or w.process.returncode is not None for w in self.workers):
            self._exited.set()

    def _close_sockets(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in [*self._http, *self._sip_udp, *self._sip_tcp]:
            if sock.fileno() >= 0:
                loop.remove_reader(sock.fileno())
                sock.close()

    # -- workers -------------------------------------------------------------------------------------------
    async def _start_worker(self, worker: Worker) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        inherited = [theirs.fileno(), *(udp.fileno() for udp in self._sip_udp)]
        command = [sys.executable, "-m", "pbx", "worker", "--channel-fd", str(theirs.fileno()),
                   *self.config_args]
        worker.ready.clear()
        worker.refusing = False
        worker.process = await asyncio.create_subprocess_exec(*command, pass_fds=inherited)
        theirs.close()
        channel = Channel(ours, lambda h, p, f: self._on_frame(worker, h, p, f),
                          lambda: self._on_channel_closed(worker))
        worker.channel = channel
        channel.send({"op": "setup", "index": worker.index, "workers": self.count, "token": self.token,
                      "sip": [[*udp.getsockname()[:2], udp.fileno()] for udp in self._sip_udp]})
        self._spawn(self._watch(worker, worker.process))

    async def _watch(self, worker: Worker, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if worker.process is not process:
            return
        if worker.channel is not None:
            worker.channel.close()
        self.directory.drop_worker(worker.index)
        self.routes.drop_worker(worker.index)
        if self._stopping:
            self._check_exited()
            return
        log.error("worker %d exited with code %s: its calls are lost; starting it again", worker.index, code)
        now = time.monotonic()
        while worker.restarts and now - worker.restarts[0] > RESTART_WINDOW_S:
            worker.restarts.popleft()
        if len(worker.restarts) >= MAX_RESTARTS:
            log.critical("worker %d died %d times within %g s: stopping the server", worker.index,
                         MAX_RESTARTS, RESTART_WINDOW_S)
            self._signal(signal.SIGTERM)
            return
        worker.restarts.append(now)
        await asyncio.sleep(1.0)
        if not self._stopping:
            await self._start_worker(worker)

    def _on_channel_closed(self, worker: Worker) -> None:
        worker.ready.clear()

    def _alive(self) -> list[Worker]:
        return [w for w in self.workers if w.ready.is_set() and w.channel is not None and not w.channel.closed]

    def least_busy(self, new_call: bool = True) -> Worker | None:
        """The worker with the fewest calls, counting those handed to it in the last :data:`RECENT_S`, among
        those taking new calls (all, when none is); ties go round-robin. A ``new_call`` counts against it
        until claimed."""
        alive = self._alive()
        if not alive:
            return None
        alive = [w for w in alive if not w.refusing] or alive
        now = time.monotonic()

        def load(worker: Worker) -> int:
            while worker.handed and now - worker.handed[0] > RECENT_S:
                worker.handed.popleft()
            return self.directory.counts.get(worker.index, 0) + len(worker.handed)

        self._next += 1
        chosen = min(alive, key=lambda w: (load(w), (w.index - self._next) % self.count))
        if new_call:
            chosen.handed.append(now)
        return chosen

    def _least_busy_index(self) -> int | None:
        worker = self.least_busy()
        return None if worker is None else worker.index

    def _by_index(self, index: int | None) -> Worker | None:
        if index is None or not 0 <= index < self.count:
            return None
        worker = self.workers[index]
        return worker if worker in self._alive() else None

    # -- frames from workers -------------------------------------------------------------------------------
    def _on_frame(self, worker: Worker, header: dict[str, Any], payload: bytes, fds: list[int]) -> None:
        for fd in fds:       # workers pass no descriptors up
            os.close(fd)
        op = header.get("op")
        channel = worker.channel
        if channel is None:
            return
        if op == "ready":
            worker.ready.set()
        elif op == "claim":
            call_id = str(header.get("id", ""))
            ok = bool(call_id) and self.directory.claim(call_id, worker.index)
            if ok and worker.handed:
                worker.handed.popleft()     # now counted as a claim
            channel.reply(header, {"ok": ok})
        elif op == "load":
            worker.refusing = bool(header.get("refusing"))
        elif op == "release":
            self.directory.release(str(header.get("id", "")), worker.index)
        elif op == "live":
            ids = header.get("ids")
            if isinstance(ids, list):
                self.routes.live(worker.index, (str(i) for i in ids), time.monotonic())
        elif op == "gather":
            self._spawn(self._gather(channel, header))
        else:
            log.warning("worker %d sent an unknown frame %r", worker.index, op)

    async def _gather(self, channel: Channel, request: dict[str, Any]) -> None:
        what = str(request.get("what", ""))

        async def ask(worker: Worker) -> Any:
            assert worker.channel is not None
            answer = await worker.channel.request({"op": "collect", "what": what}, 5.0)
            return answer.get("data")

        results = await asyncio.gather(*(ask(w) for w in self._alive()), return_exceptions=True)
        parts = [r for r in results if not isinstance(r, BaseException)]
        if what == "metrics":       # the supervisor's own: its guard's refusals, its CPU and memory
            parts.append({"worker": "supervisor", "pid": os.getpid(), "families": [
                f.to_json() for f in [sip_refused(self.guard.refused), *process_families()]]})
        with contextlib.suppress(ChannelClosed):
            channel.reply(request, {"parts": parts})

    # -- HTTP ----------------------------------------------------------------------------------------------
    def _accept_http(self, listener: Listener) -> None:
        for sock in accept_waiting(listener, "http"):
            sock.setblocking(False)
            if self._peeking >= MAX_PEEKING:
                self._hand_http(sock, Target("", {}))
                continue
            self._spawn(self._route_http(sock))

    async def _route_http(self, sock: socket.socket) -> None:
        self._peeking += 1
        try:
            target = await self._peek(sock)
        finally:
            self._peeking -= 1
        if target is None:
            sock.close()
            return
        self._hand_http(sock, target)

    async def _peek(self, sock: socket.socket) -> Target | None:
        """The request's target, read without taking the bytes from the socket; None if the client
        closed or sent no request line within :data:`PEEK_TIMEOUT_S`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PEEK_TIMEOUT_S
        while loop.time() < deadline:
            try:
                head = sock.recv(MAX_REQUEST_LINE, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                head = None
            except OSError:
                return None
            if head == b"":
                return None
            if head:
                target = request_target(head)
                if target is not None:
                    return target
                await asyncio.sleep(0.005)      # part of a line: readable stays set, so poll
                continue
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(sock.fileno(), _settle, readable)
            try:
                await asyncio.wait_for(readable, max(0.0, deadline - loop.time()))
            except TimeoutError:
                return None
            finally:
                loop.remove_reader(sock.fileno())
        return None

    def _hand_http(self, sock: socket.socket, target: Target) -> None:
        call_id = target.call_id
        owner = self._by_index(self.directory.owner(call_id)) if call_id else None
        worker = owner or self.least_busy(new_call=target.path in ("/call", "/call/sip", "/call/webrtc"))
        if worker is None or worker.channel is None:
            sock.close()
            return
        try:
            worker.channel.send_fd({"op": "http"}, sock)
        except ChannelClosed:
            sock.close()

    # -- SIP -----------------------------------------------------------------------------------------------
    def _read_sip_udp(self, udp: socket.socket) -> None:
        now = time.monotonic()
        for _ in range(UDP_BATCH):
            try:
                data, addr = udp.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:        # an ICMP error for an earlier send
                log.debug("sip udp: %s", exc)
                continue
            if not data.strip(b"\r\n"):
                continue                  # a keep-alive
            found = sip_call_id(data)
            if found is None or self._guard_refuses(udp, data, addr, now, found):
                continue
            worker = self._by_index(self.routes.route_call(*found, now, self._least_busy_index))
            if worker is None:
                continue
            assert worker.channel is not None
            try:
                worker.channel.send({"op": "sip", "addr": [addr[0], addr[1]]}, data)
            except ChannelClosed:
                continue

    def _guard_refuses(self, udp: socket.socket, data: bytes, addr: tuple[str, int], now: float,
                       found: tuple[str, bool]) -> bool:
        """The per-source limits over every worker's traffic (each worker's own guard sees only its share):
        the ACL, the message rate, and the rate of requests opening a dialog; answered as a worker would."""
        call_id, is_request = found
        refused = self.guard.inbound(addr[0], now, request=is_request)
        if refused is None and is_request and self.routes.owner(call_id) is None:
            refused = self.guard.new_request(addr[0], now)
        if refused is None:
            return False
        answer = error_response(data, refused) if refused.answered else None
        if answer is not None:
            with contextlib.suppress(OSError):
                udp.sendto(answer, addr)
        return True

    def _accept_sip_tcp(self, listener: socket.socket) -> None:
        for sock in accept_waiting(listener, "sip tcp"):
            host = sock.getpeername()[0]
            worker = self.least_busy() if self.guard.connection(host, time.monotonic()) is None else None
            if worker is None or worker.channel is None:
                sock.close()
                continue
            try:
                worker.channel.send_fd({"op": "sip_tcp"}, sock)
            except ChannelClosed:
                sock.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
