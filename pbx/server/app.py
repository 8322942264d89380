"""The call server: one HTTP port for the WebSocket call API and the REST endpoints.

``CallServer`` owns the media engine (one per process, ticked by :class:`MediaRunner`), the
provider registry, the media loader and the live calls. Each WebSocket connection becomes one call:
a :class:`~pbx.server.control.ControlSocket`, a :class:`~pbx.call.core.Call`, the transport of its
path and the :class:`~pbx.server.driver.CallDriver` that runs them. Paths: ``/call`` (audio over the
WebSocket), ``/call/sip`` (SIP/RTP through :class:`~pbx.server.sipcalls.SipCalls`, the server's SIP port)
and ``/call/webrtc`` (a browser's call: :class:`~pbx.server.webrtctransport.WebRtcTransport`). REST:
see :mod:`pbx.server.rest`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve

from pbx.call.core import Call
from pbx.call.transport import TransportProfile
from pbx.cloud.ws import ProviderContext
from pbx.config import Config
from pbx.core.engine import Engine
from pbx.media.loader import MediaLoader
from pbx.media.netpolicy import AddressPolicy
from pbx.protocol import Event, HangupReason, Initiator
from pbx.providers import builtin_registry
from pbx.server.admission import Admission
from pbx.server.auth import AccessPolicy, announced_token, websockets_logger
from pbx.server.cdr import CdrWriter
from pbx.server.control import ControlSocket
from pbx.server.driver import CallDriver, CallServices, settings_from_query
from pbx.server.dump import CallDump, prune_dumps
from pbx.server.listener import listeners
from pbx.server.logcontext import CALL_ID
from pbx.server.media import TICK_MS, MediaRunner
from pbx.server.metrics import MetricFamily, ServerMetrics, provider_name, render, render_many
from pbx.server.metrics import collect as collect_metrics
from pbx.server.registry import LocalRegistry, Registry
from pbx.server.rest import WEBSOCKET_PATHS, JsonErrorConnection, make_router
from pbx.server.routing import call_id_tag
from pbx.server.sipcalls import SipCalls
from pbx.server.siptransport import SIP_PROFILE, SipTransport
from pbx.server.transports import WEBSOCKET_PROFILE, Transport, WebSocketAudio
from pbx.server.webrtctransport import WEBRTC_PROFILE, WebRtcNetwork, WebRtcTransport
from pbx.tts.cache import TtsCache

log = logging.getLogger(__name__)

DUMP_PRUNE_EVERY_S = 3600.0
DRAIN_POLL_S = 0.1


class CallServer:
    def __init__(self, config: Config, registry: Registry | None = None) -> None:
        self.config = config
        # the call ids of every worker (pbx.server.supervisor), or of this process alone
        self.registry: Registry = registry or LocalRegistry(self.collect)
        engine = Engine(config.max_calls)
        engine.set_silero(config.silero_model, config.silero_skip, config.silero_rate)
        self.media = MediaRunner(engine, config.playout_max_bytes)
        self.providers = builtin_registry(config.tts_provider, config.asr_provider, ProviderContext(
            AddressPolicy(config.endpoint_allow_networks), config.provider_timeout_secs))
        self.loader = MediaLoader(config.directory("media"), max_bytes=config.download_max_bytes,
                                  timeout_s=config.download_timeout_secs, max_seconds=config.play_max_seconds,
                                  cache_bytes=config.media_cache_bytes, allow_networks=config.play_allow_networks)
        self.sip = SipCalls(config.sip, config.webhook, self.registry)
        self.admission = Admission(config.capacity_load)
        self.media.on_load = lambda sample: self.admission.observe(sample, self.media.engine.skipped_frames)
        self.sip.refusal = self._refusal
        self.webrtc = WebRtcNetwork(config.webrtc)
        tts_cache = TtsCache(config.directory("tts_cache"), config.tts_cache_bytes) if config.tts_cache_bytes else None
        self.metrics = ServerMetrics()
        self.cdr = CdrWriter(config.directory("recordings")) if config.cdr else None
        self.worker_index: int | None = None       # a worker of pbx.server.supervisor: its index
        self.services = CallServices(self.media, self.providers, self.loader, config.directory("recordings"),
                                     self.unregister, self.sip, tts_cache, observe=self._observe)
        self.sessions: dict[str, CallDriver] = {}
        self._servers: list[Server] = []
        self.policy = AccessPolicy(None)
        self._janitor: asyncio.Task[None] | None = None
        self.started_at = time.time()
        self._accepted_factory: Callable[[], asyncio.BaseProtocol] | None = None
        self._adopting: set[asyncio.Task[Any]] = set()
        self._private_dir: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self, host: str | None = None, port: int | None = None) -> tuple[str, int]:
        """Listen (``port=0`` picks a free one) and start the media tick; returns the bound address."""
        cfg_host, cfg_port = self.config.host_port
        listen_host = host if host is not None else cfg_host
        listen_port = cfg_port if port is None else port
        try:
            sockets = listeners(listen_host, listen_port)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {listen_host}:{listen_port}: {exc.strerror or exc}") from exc
        self.policy = self._access_policy(listen_host)
        try:
            await self._start_calls()
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        for sock in sockets:
            self._servers.append(await self._websocket_server(sock))
        sockname = sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def start_worker(self, token: str | None, sip_sockets: dict[tuple[str, int], socket.socket],
                           index: int) -> None:
        """Start as worker ``index`` of :mod:`pbx.server.supervisor`: no listening socket of its own;
        connections come through :meth:`adopt_http`, SIP over the supervisor's sockets. Only worker 0
        registers ``[[sip.accounts]]`` and prunes dumps."""
        self.policy = AccessPolicy(token, frozenset(self.config.allowed_origins))
        self.worker_index = index
        if self.cdr is not None:
            self.cdr.worker = index
        await self._start_calls(sip_sockets, index == 0, call_id_tag(index))
        # websockets serves connections from a listening socket only, and answers 503 while that is not
        # serving: it listens on a Unix socket in a private folder that nobody connects to, and its
        # protocol factory serves each connection handed over.
        self._private_dir = tempfile.mkdtemp(prefix="pypbx-worker-")
        idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        idle.bind(os.path.join(self._private_dir, "idle"))
        idle.listen(1)
        server = await self._websocket_server(idle)
        self._servers.append(server)
        self._accepted_factory = server.server._protocol_factory   # type: ignore[attr-defined]

    def adopt_http(self, sock: socket.socket) -> None:
        """Serve an HTTP connection the supervisor accepted (its request still unread in the socket)."""
        factory = self._accepted_factory
        if factory is None:
            sock.close()
            return
        task = asyncio.get_running_loop().create_task(
            asyncio.get_running_loop().connect_accepted_socket(factory, sock))
        self._adopting.add(task)
        task.add_done_callback(self._adopted)

    def _adopted(self, task: asyncio.Task[Any]) -> None:
        self._adopting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("a connection handed over was lost: %s", task.exception())

    async def _start_calls(self, sip_sockets: dict[tuple[str, int], socket.socket] | None = None,
                           first: bool = True, tag: str = "") -> None:
        for name in ("recordings", "dumps", "media"):
            os.makedirs(self.config.directory(name), exist_ok=True)
        self.media.start()
        self.metrics.lag_probe.start()
        try:
            await self.sip.start(sip_sockets, register=first, call_id_tag=tag)
        except OSError as exc:
            self.media.stop()
            self.metrics.lag_probe.stop()
            raise OSError(exc.errno, f"cannot open the SIP port {self.config.sip.addr} ([sip] addr): "
                                     f"{exc.strerror or exc}") from exc
        if self.config.dump_retention_days > 0 and first:
            self._janitor = asyncio.get_running_loop().create_task(self._prune_dumps())

    async def _websocket_server(self, sock: socket.socket) -> Server:
        return await serve(
            self._handle, sock=sock, process_request=make_router(self, self.policy, self.config.metrics_public),
            max_size=self.config.max_message_bytes,
            ping_interval=None,  # each call pings at its own interval (pbx.call.core)
            compression=None, logger=websockets_logger(), create_connection=JsonErrorConnection)

    async def stop(self) -> None:
        drivers = list(self.sessions.values())
        for driver in drivers:
            driver.end(HangupReason.SHUTDOWN.value, Initiator.SYSTEM.value)
        await asyncio.gather(*(driver.finished() for driver in drivers))
        if self.cdr is not None:
            await self.cdr.wait()
        for server in self._servers:
            server.close()
            await server.wait_closed()
        self._servers.clear()
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None
        await self.sip.stop()
        if self._janitor is not None:
            self._janitor.cancel()
            self._janitor = None
        self.media.stop()
        self.metrics.lag_probe.stop()
        await self.providers.close()

    def _access_policy(self, host: str) -> AccessPolicy:
        config = self.config
        token = announced_token(config.auth, host, config.api_token, config.data_dir)
        return AccessPolicy(token, frozenset(config.allowed_origins))

    async def _prune_dumps(self) -> None:
        """Dumps past ``dump_retention_days`` are removed at start-up and every hour."""
        folder, max_age = self.config.directory("dumps"), self.config.dump_retention_days * 86400.0
        while True:
            removed = await asyncio.to_thread(prune_dumps, folder, max_age)
            if removed:
                log.info("removed %d dumps older than %g days", removed, self.config.dump_retention_days)
            await asyncio.sleep(DUMP_PRUNE_EVERY_S)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Graceful shutdown: refuse every new call (HTTP and SIP 503), let the active ones go on for up
        to ``timeout_s`` (default ``drain_secs``), then end those left with hangup reason ``shutdown``
        (each through its normal end: recording and dump finalised). Inbound INVITEs taken before the
        drain may still be claimed by their application. Returns once no call is left; :meth:`stop`
        then closes the server."""
        self.admission.start_draining()
        timeout = self.config.drain_secs if timeout_s is None else timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        log.info("draining: no new calls; %d active calls have %g s to end", len(self.sessions), timeout)
        while (self.sessions or self.sip.pending) and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)   # sessions come (pending INVITEs claimed) and go
        left = list(self.sessions.values())
        if left:
            log.info("draining: the drain time is over; ending %d calls", len(left))
        for driver in left:
            driver.end(HangupReason.SHUTDOWN.value, Initiator.SYSTEM.value)
        await asyncio.gather(*(driver.finished() for driver in left))

    async def serve_forever(self) -> None:
        """Serve until a signal: SIGTERM drains (:meth:`drain`, ``drain_secs``) then stops; SIGINT, or a
        second SIGTERM during the drain, stops at once (calls end with ``shutdown``)."""
        host, port = await self.start()
        log.info("pypbx listening on %s:%d", host, port)
        if self.sip.address is not None:
            log.info("SIP on %s:%d (UDP and TCP), advertised as %s", *self.sip.address, self.sip.advertised_host)
        if self.sip.other is not None:
            log.info("SIP also on %s:%d (UDP and TCP), advertised as %s", *self.sip.other.address,
                     self.sip.other.advertised)
        await self.run_until_signalled()

    async def run_until_signalled(self, stopped: asyncio.Event | None = None) -> None:
        """Serve until SIGTERM (drain, then stop), SIGINT or a second SIGTERM (stop at once), or until
        ``stopped`` is set (a worker whose supervisor is gone); then :meth:`stop`."""
        stop, drain = stopped or asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_sigterm() -> None:
            (stop if drain.is_set() else drain).set()

        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        stopping = loop.create_task(stop.wait())
        draining = loop.create_task(drain.wait())
        await asyncio.wait([stopping, draining], return_when=asyncio.FIRST_COMPLETED)
        if not stopping.done():
            log.info("SIGTERM: draining for up to %g s (drain_secs; SIGINT or SIGTERM again: stop now)",
                     self.config.drain_secs)
            drained = loop.create_task(self.drain())
            await asyncio.wait([stopping, drained], return_when=asyncio.FIRST_COMPLETED)
            drained.cancel()
        stopping.cancel()
        draining.cancel()
        await self.stop()

    # -- WebSocket calls ---------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        if request is None or not self.policy.token_ok(request.path, request.headers):
            await ws.close(1008, "missing or wrong API token")
            return
        url = urlsplit(request.path)
        call_type = WEBSOCKET_PATHS.get(url.path, "websocket")
        query = dict(parse_qsl(url.query))
        call_id = query.get("id") or str(uuid.uuid4())
        CALL_ID.set(call_id)      # this connection's task: its log records carry the id (pbx.server.logcontext)
        # an inbound SIP call's dialog id was claimed when its INVITE came (before the webhook went out)
        ours = call_type == "sip" and call_id in self.sip.pending and call_id not in self.sessions
        if not ours and (call_id in self.sessions or not await self.registry.claim(call_id)):
            await ws.close(1008, f"call id {call_id!r} is already in use")
            return
        try:
            dumping = query.get("dump", "true").lower() not in ("false", "0", "no")
            dump = CallDump(self.config.directory("dumps"), call_id, self.config.dump_max_bytes) if dumping else None
            control = ControlSocket(ws, dump)
            profile, transport = self._transport(call_type, control, query.get("id"))
            settings = settings_from_query(query, call_id, self.media.epoch_offset_ms,
                                           liveness_interval_s=self.config.liveness_interval_secs,
                                           invite_timeout_s=self.config.invite_timeout_secs)
            call = Call(settings, profile, self.providers, self.media.now_ms())
            driver = CallDriver(self.services, control, call, transport)
        except BaseException:
            self.registry.release(call_id)      # the call never started: its id is free again
            raise
        self.sessions[call_id] = driver
        try:
            await driver.run()
        finally:
            self.unregister(driver)

    def _transport(self, call_type: str, control: ControlSocket, dialog_id: str | None
                   ) -> tuple[TransportProfile, Callable[[CallDriver], Transport]]:
        if call_type == "websocket":
            return WEBSOCKET_PROFILE, lambda driver: WebSocketAudio(driver, self.media, control)
        if call_type == "sip":
            return SIP_PROFILE, lambda driver: SipTransport(driver, self.sip, self.media, dialog_id)
        return WEBRTC_PROFILE, lambda driver: WebRtcTransport(driver, self.webrtc, self.media)

    def unregister(self, driver: CallDriver) -> None:
        if self.sessions.get(driver.id) is driver:
            del self.sessions[driver.id]
            self.registry.release(driver.id)

    # -- REST (CallRegistry) -------------------------------------------------------------------------
    def list_calls(self) -> list[dict[str, Any]]:
        """This process's calls."""
        return [driver.listing() for driver in self.sessions.values()]

    async def all_calls(self) -> list[dict[str, Any]]:
        """Every worker's calls."""
        return [call for part in await self.registry.gather("calls") for call in part]

    async def all_health(self) -> dict[str, Any]:
        """This process's health, or with several workers the sums and each worker's own."""
        parts = [p for p in await self.registry.gather("health") if isinstance(p, dict)]
        if isinstance(self.registry, LocalRegistry):
            return parts[0]
        total: dict[str, Any] = {"status": "ok", "workers": len(parts)}
        for part in parts:
            for key, value in part.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and key != "uptime_seconds":
                    total[key] = round(total.get(key, 0) + value, 3)
        total["per_worker"] = parts
        return total

    def collect(self, what: str) -> Any:
        """This process's part of a gathered answer (pbx.server.registry)."""
        if what == "calls":
            return self.list_calls()
        if what == "health":
            return self.health()
        if what == "metrics":
            return {"worker": self.worker_index, "pid": os.getpid(),
                    "families": [f.to_json() for f in collect_metrics(self)]}
        raise ValueError(f"nothing to collect called {what!r}")

    async def metrics_text(self) -> str:
        """``GET /metrics``: this process's families, or every worker's labelled with its index."""
        if isinstance(self.registry, LocalRegistry):
            return render(collect_metrics(self))
        parts = [p for p in await self.registry.gather("metrics") if isinstance(p, dict)]
        return render_many([({"worker": str(part["worker"] if part.get("worker") is not None else part.get("pid"))},
                             [MetricFamily.from_json(f) for f in part.get("families", [])]) for part in parts])

    def _observe(self, driver: CallDriver, event: Event) -> None:
        """Every event a call sends: the metrics' and the call record's input."""
        try:
            self.metrics.on_event(driver.call.profile.call_type, event, lambda kind: provider_name(driver, kind))
            if self.cdr is not None:
                self.cdr.on_event(driver, event)
        except Exception:     # a bug here must not touch the call
            log.exception("call %s: observing a %s event failed", driver.id, type(event).__name__)

    def kill(self, call_id: str) -> bool:
        driver = self.sessions.get(call_id)
        if driver is None:
            return False
        driver.kill()
        return True

    def refuse_connection(self, path: str = "/call") -> str | None:
        """Why the WebSocket call asked for by ``path`` (with its query) cannot be taken now:
        ``max_connections``, or admission control (draining, overload); None to take it.
        An application connecting for an inbound INVITE already taken (``/call/sip?id=<dialogId>``)
        is not a new call."""
        if (full := self._connections_full()) is not None:
            return full
        url = urlsplit(path)
        if url.path == "/call/sip" and dict(parse_qsl(url.query)).get("id") in self.sip.pending:
            return None
        return self._refusal()

    def live_calls(self) -> int:
        """What admission control counts: engine legs, or calls when more (one still setting up has no
        leg yet), plus inbound INVITEs waiting for their application."""
        return max(self.media.engine.leg_count, len(self.sessions)) + len(self.sip.pending)

    def _refusal(self, extra: int = 1) -> str | None:
        return self.admission.refusal(time.monotonic(), self.live_calls(), extra, self._tick_leg_load())

    def refusing(self) -> bool:
        """Whether a new call would be refused now (draining or overloaded), asked without counting one."""
        return self._connections_full() is not None or \
            self.admission.refusing(time.monotonic(), self.live_calls(), self._tick_leg_load())

    def _connections_full(self) -> str | None:
        limit = self.config.max_connections
        if len(self.sessions) >= limit:
            return f"the server has its maximum of {limit} connections (max_connections); try again later"
        return None

    def _tick_leg_load(self) -> float | None:
        leg_seconds = self.media.tick_stats.leg_seconds
        return None if leg_seconds is None else leg_seconds * 1000.0 / TICK_MS

    def ice_servers(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.config.ice_servers]

    def health(self) -> dict[str, Any]:
        engine = self.media.engine
        return {"status": "ok", "calls": len(self.sessions), "legs": engine.leg_count,
                "uptime_seconds": round(time.time() - self.started_at, 1),
                "media_frames": engine.frames, "media_skipped_frames": engine.skipped_frames,
                "media_tick_cpu_seconds": round(self.media.tick_seconds_total, 3),
                "loop_busy": round(load.busy, 3) if (load := self.admission.last) is not None else 0.0,
                "draining": self.admission.draining,
                # what a leak would grow (bench/soak.py checks they return to their baseline)
                "asyncio_tasks": len(asyncio.all_tasks()), "threads": thread_count(),
                "rtp_ports_in_use": self.rtp_ports_in_use()}

    def rtp_ports_in_use(self) -> int:
        """RTP port pairs held by SIP and WebRTC legs (both address families)."""
        pools = [self.sip.ports, self.webrtc.pool4]
        pools += [p for p in (self.sip.other.ports if self.sip.other else None, self.webrtc.pool6) if p is not None]
        return sum(pool.in_use for pool in pools)


def thread_count() -> int:
    """OS threads of this process (the runtime's and native libraries' too), not only Python's."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading
        return threading.active_count()
