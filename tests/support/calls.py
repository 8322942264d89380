"""Helpers for the call server's acceptance tests, over real sockets.

- :func:`running_server`: a :class:`~pbx.server.app.CallServer` on a free loopback port.
- :class:`Call`: one WebSocket call (``websockets`` client) that records everything the server sends,
  events and audio frames, in arrival order, so that a test can assert exactly what one command caused.
- :func:`http`: a plain HTTP/1.1 request (the REST endpoints share the WebSocket port).
- :class:`RawWebSocket`: a WebSocket client written by hand on a TCP socket. It never answers pings,
  which the ``websockets`` client always does, so the server's ping timeout can be tested.
- :func:`stream_realtime`: caller audio in 20 ms frames paced by the wall clock.

Deliberately independent of ``pbx.client``: these tests check the wire, not our client library.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from pbx.config import Config
from pbx.server.app import CallServer
from pbx.sip.config import SipConfig

RATE = 16000
FRAME = 320                 # samples in 20 ms at 16 kHz
FRAME_BYTES = 2 * FRAME     # one 20 ms frame of the "pcm" codec
Event = dict[str, Any]
LOOPBACK_SIP = SipConfig(addr="127.0.0.1:0")      # a free SIP port on loopback for each test server


@asynccontextmanager
async def running_server(tmp_path: Path, **config: Any) -> AsyncIterator[tuple[CallServer, str]]:
    """A server with its data under ``tmp_path``; yields it and its ``host:port``."""
    config.setdefault("sip", LOOPBACK_SIP)
    server = CallServer(Config(data_dir=tmp_path, **config))
    host, port = await server.start(host="127.0.0.1", port=0)
    try:
        yield server, f"{host}:{port}"
    finally:
        await server.stop()


class Call:
    """One WebSocket call. :attr:`log` holds every message received, in order: events as dicts,
    audio frames as bytes. Waits look at the log, so nothing that arrives early is missed."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.log: list[Event | bytes] = []
        self.closed: ConnectionClosed | None = None
        self._arrived = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @asynccontextmanager
    async def open(cls, address: str, query: str = "pingInterval=0", path: str = "/call",
                   **options: Any) -> AsyncIterator[Call]:
        async with connect(f"ws://{address}{path}?{query}", **options) as ws:
            call = cls(ws)
            try:
                yield call
            finally:
                call._reader.cancel()

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                item: Event | bytes = json.loads(message) if isinstance(message, str) else message
                async with self._arrived:
                    self.log.append(item)
                    self._arrived.notify_all()
            self.closed = self.ws.protocol.close_exc    # a normal closure ends the iteration
        except ConnectionClosed as exc:
            self.closed = exc
        async with self._arrived:
            self._arrived.notify_all()

    async def send(self, message: Event | str | bytes) -> None:
        await self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    def mark(self) -> int:
        """Position in :attr:`log`, for :meth:`events` and :meth:`frames` of what comes after."""
        return len(self.log)

    def events(self, since: int = 0, until: int | None = None, pings: bool = False) -> list[Event]:
        return [m for m in self.log[since:until]
                if isinstance(m, dict) and (pings or m.get("event") != "ping")]

    def frames(self, since: int = 0, until: int | None = None) -> list[bytes]:
        return [m for m in self.log[since:until] if isinstance(m, bytes)]

    async def wait(self, condition: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait until ``condition()`` (re-evaluated as messages arrive) is truthy; return its value."""
        async def until() -> Any:
            async with self._arrived:
                while True:
                    value = condition()
                    if value or self.closed is not None:
                        return value
                    await self._arrived.wait()
        value = await asyncio.wait_for(until(), timeout)
        if not value:
            raise AssertionError(f"connection closed ({self.closed}) while waiting; received {self.events()}")
        return value

    async def wait_event(self, name: str, since: int = 0, timeout: float = 5.0, **fields: Any) -> Event:
        """The first event ``name`` with these fields after position ``since``."""
        def find() -> Event | None:
            return next((e for e in self.events(since) if e["event"] == name
                         and all(e.get(k) == v for k, v in fields.items())), None)
        try:
            event: Event = await self.wait(find, timeout)
        except TimeoutError:
            raise AssertionError(f"no {name} {fields} within {timeout} s; received {self.events(since)}") from None
        return event

    def position(self, event: Event) -> int:
        """Index of ``event`` (the very object) in :attr:`log`."""
        return next(i for i, m in enumerate(self.log) if m is event)

    async def wait_closed(self, timeout: float = 5.0) -> ConnectionClosed:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        assert self.closed is not None
        return self.closed


def probe(tag: str) -> Event:
    """A tts command whose reply is certain (trackStart, trackEnd of 20 ms, one audio frame): base64 PCM
    needs no provider. After any command, it shows that the session still works."""
    pcm = np.full(FRAME, 1000, dtype="<i2").tobytes()
    return {"command": "tts", "text": base64.b64encode(pcm).decode(), "base64": True, "playId": tag}


async def stream_realtime(call: Call, pcm: np.ndarray, lead_frames: int = 5,
                          chunk_bytes: int = FRAME_BYTES) -> None:
    """Send int16 PCM (16 kHz) as 20 ms of audio per 20 ms of wall clock, ``lead_frames`` ahead so the
    server's inbound buffer never runs dry. ``chunk_bytes`` may cut messages anywhere (odd sizes too)."""
    data = pcm.astype("<i2").tobytes()
    start = time.monotonic()
    sent = 0
    while sent < len(data):
        chunk = data[sent:sent + chunk_bytes]
        await call.send(chunk)
        sent += len(chunk)
        due = start + (sent / FRAME_BYTES - lead_frames) * 0.02
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def http(address: str, method: str, path: str) -> tuple[int, str, Any]:
    """``(status, content type, decoded JSON body)`` of one request."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers.get("content-type", ""), json.loads(body) if body else None


class RawWebSocket:
    """A minimal RFC 6455 client on a TCP socket: sends masked text frames, reads frames, and never
    answers a ping (a client whose network or event loop died)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pings = 0

    @classmethod
    async def connect(cls, address: str, resource: str) -> RawWebSocket:
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(f"GET {resource} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                     .encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not re.match(rb"HTTP/1\.1 101 ", head):
            raise AssertionError(f"handshake refused: {head!r}")
        return cls(reader, writer)

    async def send_text(self, text: str) -> None:
        await self.send_frame(0x1, text.encode())

    async def send_frame(self, opcode: int, payload: bytes) -> None:
        """One final, masked frame (payloads are sent as given: a text frame may hold any bytes)."""
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else
                                  bytes([0x80 | 126]) + struct.pack("!H", n) if n < 65536 else
                                  bytes([0x80 | 127]) + struct.pack("!Q", n))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)
        await self.writer.drain()

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """``(opcode, payload)`` of the next frame (the server does not fragment or mask)."""
        async def read() -> tuple[int, bytes]:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return b0 & 0x0F, await self.reader.readexactly(n)
        opcode, payload = await asyncio.wait_for(read(), timeout)
        if opcode == 0x9:
            self.pings += 1
        return opcode, payload

    def close(self) -> None:
        self.writer.close()
