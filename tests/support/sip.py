"""Helpers for the SIP interop tests, over loopback only.

- :class:`WebhookReceiver`: the operator's webhook on 127.0.0.1, collecting the JSON POSTs; it answers
  200, or 500 (``mode="error"``), or never (``mode="hang"``: it reads the request and holds the
  connection open until it is closed).
- :class:`Sipp`: sipp as an asyncio subprocess running one call of a scenario against the server's SIP
  port (``-i 127.0.0.1 -p 0 -mp <free port> -m 1 -timeout``), with its error and message traces in
  a work folder; :meth:`Sipp.finish` gives a :class:`SippResult` (return code, and the logs to show
  when it failed). :meth:`Sipp.received` and :meth:`Sipp.sent` read the SIP messages from the trace.
  :meth:`Sipp.start_callee` (and :func:`sipp_callee`) runs sipp as the user agent server instead, on a
  free port of its own (:attr:`Sipp.uri` is the callee to dial), for the outbound tests.
- :func:`free_udp_port`, :func:`free_media_port`: ports free on loopback (best effort: another process
  may take one before it is used).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

SIPP = shutil.which("sipp")
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sipp"
PCAPS = Path("/usr/share/sip-tester")
WebhookMode = Literal["ok", "error", "hang"]


# -- ports --------------------------------------------------------------------------------------------------
def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _udp_port_taken(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def free_media_port() -> int:
    """An even UDP port on loopback with the three after it free too (sipp's ``-mp`` takes the port and
    the one two above it, for audio and video)."""
    for _ in range(100):
        base = free_udp_port() & ~1
        if base < 1024 or base > 65530:
            continue
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + 4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise RuntimeError("no four consecutive UDP ports free on 127.0.0.1")


# -- the webhook --------------------------------------------------------------------------------------------
@dataclass(eq=False)
class WebhookReceiver:
    """The webhook, on a free loopback port; :attr:`posts` holds every JSON body POSTed, in order."""

    mode: WebhookMode = "ok"
    posts: list[Any] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)   # method, target, headers
    _server: asyncio.Server | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    @asynccontextmanager
    async def running(cls, mode: WebhookMode = "ok") -> AsyncIterator[WebhookReceiver]:
        receiver = cls(mode)
        receiver._server = await asyncio.start_server(receiver._serve, "127.0.0.1", 0)
        try:
            yield receiver
        finally:
            receiver._closing.set()
            receiver._server.close()
            await receiver._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def next_post(self, index: int = 0, timeout: float = 5.0) -> Any:
        """The ``index``-th POST's body, waiting for it to come."""
        async def wait() -> Any:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.posts) > index)
                return self.posts[index]
        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"no webhook POST #{index} within {timeout} s (got {len(self.posts)})") from None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            async with self._arrived:
                self.requests.append((method, target, headers))
                self.posts.append(json.loads(body) if body else None)
                self._arrived.notify_all()
            if self.mode == "hang":
                await self._closing.wait()
                return
            status = b"200 OK" if self.mode == "ok" else b"500 Internal Server Error"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()


# -- sipp ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SipMessage:
    """One SIP message from sipp's message trace: its start line, headers (first value of each, names as
    written) and body."""

    start: str
    headers: dict[str, str]
    body: str

    @property
    def status(self) -> int | None:
        match = re.match(r"SIP/2\.0 (\d{3})", self.start)
        return int(match.group(1)) if match else None

    @property
    def method(self) -> str | None:
        return None if self.start.startswith("SIP/2.0") else self.start.split(" ", 1)[0]

    @property
    def uri(self) -> str | None:
        """A request's Request-URI (None for a response)."""
        return None if self.start.startswith("SIP/2.0") else self.start.split(" ")[1]


@dataclass(frozen=True, slots=True)
class SippResult:
    rc: int
    logs: str           # the error trace and the message trace, to show when the scenario failed


TRACE_ENTRY = re.compile(r"^-{10,} [^\n]*\n(?:UDP|TCP|TLS|SCTP) message (sent|received)[^\n]*\n\n", re.M)


def parse_trace(text: str) -> list[tuple[str, SipMessage]]:
    """``("sent" | "received", message)`` for each message of a sipp ``-trace_msg`` file, in order."""
    entries: list[tuple[str, SipMessage]] = []
    marks = list(TRACE_ENTRY.finditer(text))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        raw = text[mark.end():end].replace("\r\n", "\n")
        head, _, body = raw.partition("\n\n")
        lines = head.strip("\n").split("\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip(), value.strip())
        entries.append((mark.group(1), SipMessage(lines[0].strip(), headers, body.rstrip("\n"))))
    return entries


class Sipp:
    """One sipp run (``-m 1``) of ``scenario`` against ``127.0.0.1:<sip_port>``."""

    def __init__(self, process: asyncio.subprocess.Process, workdir: Path, name: str, timeout_s: float,
                 port: int | None = None, host: str = "127.0.0.1") -> None:
        self.process = process
        self.port = port                 # sipp's own SIP port, when it is the callee
        self.host = host
        self.workdir = workdir
        self.timeout_s = timeout_s
        self.messages = workdir / f"{name}_messages.log"
        self.errors = workdir / f"{name}_errors.log"

    @classmethod
    async def start(cls, scenario: str | Path, sip_port: int, workdir: Path, *, timeout_s: float = 15.0,
                    transport: str = "u1", keys: Mapping[str, str] | None = None, service: str = "bot",
                    args: Sequence[str] = (), host: str = "127.0.0.1") -> Sipp:
        """Start sipp on ``scenario`` (a path, or a file name in tests/fixtures/sipp). ``keys`` become
        ``-key name value`` (``[name]`` in the scenario)."""
        if SIPP is None:
            raise RuntimeError("sipp is not installed (Debian package sip-tester)")
        path = Path(scenario) if Path(scenario).is_absolute() else FIXTURES / scenario
        name = path.stem
        workdir.mkdir(parents=True, exist_ok=True)
        target = f"[{host}]" if ":" in host else host          # host: the server's SIP address, ::1 for IPv6
        command = [SIPP, f"{target}:{sip_port}", "-sf", str(path), "-i", host, "-p", "0",
                   "-mp", str(free_media_port()), "-t", transport, "-m", "1", "-s", service,
                   "-timeout", f"{timeout_s:g}s", "-timeout_error", "-nostdin",
                   "-trace_err", "-error_file", str(workdir / f"{name}_errors.log"),
                   "-trace_msg", "-message_file", str(workdir / f"{name}_messages.log")]
        for key, value in (keys or {}).items():
            command += ["-key", key, value]
        command += list(args)
        process = await asyncio.create_subprocess_exec(*command, cwd=workdir, stdin=asyncio.subprocess.DEVNULL,
                                                       stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=asyncio.subprocess.PIPE)
        return cls(process, workdir, name, timeout_s)

    @classmethod
    async def start_callee(cls, scenario: str | Path, workdir: Path, *, timeout_s: float = 15.0,
                           keys: Mapping[str, str] | None = None, args: Sequence[str] = (),
                           host: str = "127.0.0.1") -> Sipp:
        """Start sipp as the user agent server on ``scenario`` (UDP, a free loopback port of ``host``:
        :attr:`uri`), and wait until it holds that port, so that the server's first INVITE finds it."""
        if SIPP is None:
            raise RuntimeError("sipp is not installed (Debian package sip-tester)")
        path = Path(scenario) if Path(scenario).is_absolute() else FIXTURES / scenario
        name = path.stem
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_udp_port(host)
        command = [SIPP, "-sf", str(path), "-i", host, "-p", str(port), "-mp", str(free_media_port()),
                   "-m", "1", "-timeout", f"{timeout_s:g}s", "-timeout_error", "-nostdin",
                   "-trace_err", "-error_file", str(workdir / f"{name}_errors.log"),
                   "-trace_msg", "-message_file", str(workdir / f"{name}_messages.log")]
        for key, value in (keys or {}).items():
            command += ["-key", key, value]
        command += list(args)
        process = await asyncio.create_subprocess_exec(*command, cwd=workdir, stdin=asyncio.subprocess.DEVNULL,
                                                       stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=asyncio.subprocess.PIPE)
        for _ in range(300):          # sipp says nothing when it is ready: wait until the port is taken
            if process.returncode is not None or _udp_port_taken(port, host):
                break
            await asyncio.sleep(0.01)
        return cls(process, workdir, name, timeout_s, port, host)

    @property
    def uri(self) -> str:
        """The callee to dial, when sipp is the user agent server."""
        assert self.port is not None, "sipp is not the callee"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sip:alice@{host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    async def finish(self, timeout: float | None = None) -> SippResult:
        """Wait for sipp to end (killing it ``timeout`` s on, default its own ``-timeout`` + 5 s)."""
        wait = self.timeout_s + 5.0 if timeout is None else timeout
        stderr = b""
        try:
            _, stderr = await asyncio.wait_for(self.process.communicate(), wait)
        except TimeoutError:
            self.kill()
            await self.process.wait()
        rc = self.process.returncode
        assert rc is not None
        logs = "" if rc == 0 else self.logs(stderr.decode("utf-8", "replace"))
        return SippResult(rc, logs)

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    def logs(self, stderr: str = "") -> str:
        parts = [f"sipp stderr:\n{stderr}"] if stderr else []
        for path in (self.errors, self.messages):
            if path.exists():
                parts.append(f"{path.name}:\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def trace(self) -> list[tuple[str, SipMessage]]:
        return parse_trace(self.messages.read_text(errors="replace")) if self.messages.exists() else []

    def received(self) -> list[SipMessage]:
        return [m for direction, m in self.trace() if direction == "received"]

    def sent(self) -> list[SipMessage]:
        return [m for direction, m in self.trace() if direction == "sent"]


@asynccontextmanager
async def sipp(scenario: str | Path, sip_port: int, workdir: Path, **options: Any) -> AsyncIterator[Sipp]:
    """:meth:`Sipp.start`, killed on the way out if it is still running (a test that failed early)."""
    run = await Sipp.start(scenario, sip_port, workdir, **options)
    try:
        yield run
    finally:
        run.kill()
        await run.process.wait()


@asynccontextmanager
async def sipp_callee(scenario: str | Path, workdir: Path, **options: Any) -> AsyncIterator[Sipp]:
    """:meth:`Sipp.start_callee`, killed on the way out if it is still running."""
    run = await Sipp.start_callee(scenario, workdir, **options)
    try:
        yield run
    finally:
        run.kill()
        await run.process.wait()


async def run_sipp(scenario: str | Path, sip_port: int, workdir: Path, **options: Any) -> SippResult:
    """Run ``scenario`` to its end: :meth:`Sipp.start` then :meth:`Sipp.finish`."""
    async with sipp(scenario, sip_port, workdir, **options) as run:
        return await run.finish()
