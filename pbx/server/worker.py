"""A worker process of :mod:`pbx.server.supervisor`: one call server fed through its channel.

The supervisor starts ``python -m pbx worker --channel-fd N <its configuration arguments>``; the first
frame says which worker this is, the API token, and which inherited descriptors are the SIP sockets.
Then frames bring HTTP connections (``http``), SIP datagrams (``sip``) and SIP TCP connections
(``sip_tcp``) to the :class:`~pbx.server.app.CallServer`, and ask for this worker's part of a gathered
answer (``collect``). Every :data:`LIVE_EVERY_S` the worker tells the supervisor the Call-IDs it has SIP
sessions for, which keeps their routes. The worker stops when the supervisor's channel closes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import replace
from typing import Any

from pbx.config import Config
from pbx.server.app import CallServer
from pbx.server.channel import Channel, ChannelClosed
from pbx.server.registry import WorkerRegistry
from pbx.server.supervisor import port_slice
from pbx.server.tickstats import LoadSample

log = logging.getLogger(__name__)

LIVE_EVERY_S = 5.0
SETUP_TIMEOUT_S = 30.0


def worker_config(config: Config, index: int, count: int) -> Config:
    """This worker's configuration: its slice of the RTP port ranges."""
    return replace(config, workers=1,
                   sip=replace(config.sip, rtp_ports=port_slice(config.sip.rtp_ports, index, count)),
                   webrtc=replace(config.webrtc, rtp_ports=port_slice(config.webrtc.rtp_ports, index, count)))


class WorkerProcess:
    def __init__(self, config: Config, channel_fd: int) -> None:
        self.config = config
        self.channel = Channel(socket.socket(fileno=channel_fd), self._on_frame, self._on_closed)
        self.server: CallServer | None = None
        self.index = -1
        self._setup: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refusing = False

    async def run(self) -> int:
        setup = await asyncio.wait_for(self._setup, SETUP_TIMEOUT_S)
        self.index, count = int(setup["index"]), int(setup["workers"])
        # the supervisor's SIP sockets, in the order of [sip] addr and addr6: by configured address
        configured = [self.config.sip.host_port]
        if self.config.sip.host_port6 is not None:
            configured.append(self.config.sip.host_port6)
        by_config = {address: socket.socket(fileno=int(fd))
                     for address, (_, _, fd) in zip(configured, setup["sip"], strict=False)}
        server = CallServer(worker_config(self.config, self.index, count), WorkerRegistry(self.channel))
        self.server = server
        await server.start_worker(setup.get("token"), by_config, self.index)
        admission = server.media.on_load
        assert admission is not None

        def on_load(sample: LoadSample) -> None:
            admission(sample)
            self._tell_refusing(server.refusing())
        server.media.on_load = on_load
        self.channel.send({"op": "ready"})
        live = asyncio.get_running_loop().create_task(self._report_live())
        try:
            await server.run_until_signalled(self._stop)     # SIGTERM drains, as a single server does
        finally:
            live.cancel()
            self.channel.close()
        return 0

    def _tell_refusing(self, refusing: bool) -> None:
        """Whether admission control refuses new calls here, told to the supervisor when it changes (it
        then sends new calls to another worker while one has room)."""
        if refusing != self._refusing and not self.channel.closed:
            self._refusing = refusing
            self.channel.send({"op": "load", "refusing": refusing})

    def _on_closed(self) -> None:
        if not self._setup.done():
            self._setup.set_exception(ChannelClosed("the supervisor closed the channel before setting us up"))
        self._stop.set()

    def _on_frame(self, header: dict[str, Any], payload: bytes, fds: list[int]) -> None:
        op = header.get("op")
        if op == "setup":
            if not self._setup.done():
                self._setup.set_result(header)
            return
        server = self.server
        if server is None:
            for fd in fds:
                socket.socket(fileno=fd).close()
            return
        if op == "http" and fds:
            server.adopt_http(socket.socket(fileno=fds[0]))
        elif op == "sip":
            host, port = header["addr"]
            network = server.sip.network
            if network is not None:
                network.datagram(payload, (str(host), int(port)), None)
        elif op == "sip_tcp" and fds:
            sock = socket.socket(fileno=fds[0])
            network = server.sip.network
            if network is None:
                sock.close()
                return
            task = asyncio.get_running_loop().create_task(network.adopt_stream(sock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif op == "collect":
            try:
                data = server.collect(str(header.get("what")))
            except ValueError as exc:
                data = {"error": str(exc)}
            self.channel.reply(header, {"data": data})
        else:
            log.warning("worker %d: unknown frame %r", self.index, op)

    async def _report_live(self) -> None:
        while True:
            await asyncio.sleep(LIVE_EVERY_S)
            server = self.server
            if server is None or server.sip.ua is None or self.channel.closed:
                continue
            self.channel.send({"op": "live", "ids": list(server.sip.ua.sessions)})


async def run_worker(config: Config, channel_fd: int) -> int:
    return await WorkerProcess(config, channel_fd).run()
