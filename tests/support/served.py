"""A real server process for end-to-end tests: ``python -m pbx serve`` on loopback with its config and data
under a test's ``tmp_path``, its address and SIP port read from its log, the log kept, SIGINT on the way
out if it still runs, and a clean exit (status 0) asserted."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.calls import http


@dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    address: str
    sip_port: int
    log: list[str]

    async def health(self) -> dict[str, Any]:
        status, _, body = await http(self.address, "GET", "/health")
        assert status == 200, body
        return dict(body)

    async def calls_per_worker(self) -> list[int]:
        return sorted(part["calls"] for part in (await self.health())["per_worker"])


@asynccontextmanager
async def served(tmp_path: Path, settings: str = "", *, workers: int = 1, sip: str = "", webhook: str = "",
                 rtp_ports: tuple[int, int] = (42000, 42100), env: dict[str, str] | None = None
                 ) -> AsyncIterator[ServerProcess]:
    """The server with ``workers`` processes. ``settings``: more TOML lines (top-level keys, or whole
    sections before ``[sip]``); ``sip``: more keys of ``[sip]``; ``webhook``: the ``[webhook]`` url."""
    config = tmp_path / "pypbx.toml"
    config.write_text(f'http_addr = "127.0.0.1:0"\nworkers = {workers}\ndata_dir = "{tmp_path / "data"}"\n{settings}\n'
                      f'[sip]\naddr = "127.0.0.1:0"\nrtp_ports = [{rtp_ports[0]}, {rtp_ports[1]}]\n{sip}'
                      + (f'[webhook]\nurl = "{webhook}"\n' if webhook else ""))
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "pbx", "serve", "--config", str(config),
                                                   stderr=asyncio.subprocess.PIPE, env=env)
    assert process.stderr is not None
    listening = re.compile(r"listening on (\S+:\d+)" + (rf" \({workers} workers\)" if workers > 1 else ""))
    log: list[str] = []
    address, sip_port = "", 0

    async def read_log() -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            log.append(line.decode())
    reading: asyncio.Task[None] | None = None
    try:
        while not (address and sip_port):
            line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
            assert line, "the server exited: " + "".join(log)
            log.append(line)
            if found := listening.search(line):
                address = found.group(1)
            if found := re.search(r"SIP on \S+:(\d+)", line):
                sip_port = int(found.group(1))
        reading = asyncio.create_task(read_log())
        yield ServerProcess(process, address, sip_port, log)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            await asyncio.wait_for(process.wait(), 30)
        if reading is not None:
            await reading
    assert process.returncode == 0, "".join(log)
