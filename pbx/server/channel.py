"""A message channel between the supervisor and one worker process: a Unix stream socket pair.

A frame is a JSON header and a binary payload, ``>II`` lengths first, optionally with descriptors
(an accepted connection handed to a worker) passed beside it as SCM_RIGHTS. On a stream socket
the kernel hands descriptors over with the bytes of the ``sendmsg`` that carried them, so they
arrive no later than their frame: the reader keeps them in arrival order and a frame whose header
says ``"fds": n`` takes the next ``n``.

Requests are frames with a ``req`` number; the answer is a frame ``{"op": "reply", "req": n, ...}``.
:class:`Channel` does the framing and the waiting on the event loop; what a frame means is up to its
owner's ``on_frame``. Sends never block the loop: what the socket does not take waits in a buffer
written when it drains (bounded: past :data:`MAX_BUFFERED` the channel is broken, which ends the
worker, rather than growing without limit).
"""

from __future__ import annotations

import array
import asyncio
import itertools
import json
import logging
import os
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

HEAD = struct.Struct(">II")
MAX_FRAME = 16 << 20             # a listing of every call of a busy worker fits
MAX_BUFFERED = 64 << 20
MAX_FDS_PER_READ = 16


class ChannelClosed(ConnectionError):
    """The other process closed the channel (it exited) or the channel broke."""


Frame = tuple[dict[str, Any], bytes, list[int]]


def encode(header: dict[str, Any], payload: bytes = b"") -> bytes:
    data = json.dumps(header, separators=(",", ":")).encode()
    return HEAD.pack(len(data), len(payload)) + data + payload


class FrameReader:
    """Sans-I/O: bytes and descriptors in (as they came), whole frames out."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._fds: deque[int] = deque()

    def feed(self, data: bytes, fds: list[int]) -> list[Frame]:
        self._buffer += data
        self._fds.extend(fds)
        frames: list[Frame] = []
        while len(self._buffer) >= HEAD.size:
            head_len, body_len = HEAD.unpack_from(self._buffer)
            if head_len + body_len > MAX_FRAME:
                raise ChannelClosed(f"a frame of {head_len + body_len} bytes is over the limit")
            end = HEAD.size + head_len + body_len
            if len(self._buffer) < end:
                break
            header = json.loads(bytes(self._buffer[HEAD.size:HEAD.size + head_len]))
            payload = bytes(self._buffer[HEAD.size + head_len:end])
            del self._buffer[:end]
            wanted = int(header.get("fds", 0))
            if wanted > len(self._fds):
                raise ChannelClosed("a frame came without the descriptors it announced")
            frames.append((header, payload, [self._fds.popleft() for _ in range(wanted)]))
        return frames

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.popleft())


class Channel:
    def __init__(self, sock: socket.socket, on_frame: Callable[[dict[str, Any], bytes, list[int]], None],
                 on_closed: Callable[[], None] | None = None) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.on_frame = on_frame
        self.on_closed = on_closed
        self._reader = FrameReader()
        self._out = bytearray()
        self._out_fds: list[tuple[int, list[int]]] = []     # (offset in _out, descriptors) to send there
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._numbers = itertools.count(1)
        self._loop = asyncio.get_running_loop()
        self._writing = False
        self.closed = False
        self._loop.add_reader(sock.fileno(), self._readable)

    # -- sending -------------------------------------------------------------------------------------------
    def send(self, header: dict[str, Any], payload: bytes = b"", fds: list[int] | tuple[int, ...] = ()) -> None:
        """Queue a frame; the descriptors ``fds`` become the channel's: closed here once sent."""
        if self.closed:
            raise ChannelClosed("the channel is closed")
        if fds:
            header = {**header, "fds": len(fds)}
            self._out_fds.append((len(self._out), list(fds)))
        self._out += encode(header, payload)
        if len(self._out) > MAX_BUFFERED:
            self._broken("the other process does not read its channel")
            return
        self._flush()

    def send_fd(self, header: dict[str, Any], sock: socket.socket) -> None:
        """Hand ``sock`` over to the other process: it is closed here once the kernel has passed it."""
        self.send(header, fds=[sock.detach()])

    async def request(self, header: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
        number = next(self._numbers)
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._replies[number] = future
        try:
            self.send({**header, "req": number})
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._replies.pop(number, None)

    def reply(self, request: dict[str, Any], body: dict[str, Any]) -> None:
        if not self.closed:
            self.send({**body, "op": "reply", "req": request["req"]})

    def _flush(self) -> None:
        while self._out:
            fds: list[int] = []
            end = len(self._out)
            if self._out_fds:
                offset, pending = self._out_fds[0]
                if offset == 0:
                    fds = pending
                    if len(self._out_fds) > 1:
                        end = self._out_fds[1][0]
                else:
                    end = offset       # send up to the frame with descriptors, then it with them
            try:
                if fds:
                    sent = self.sock.sendmsg([memoryview(self._out)[:end]],
                                             [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
                else:
                    sent = self.sock.send(memoryview(self._out)[:end])
            except BlockingIOError:
                break
            except OSError as exc:
                self._broken(f"send failed: {exc}")
                return
            if fds:
                for fd in fds:        # the kernel holds its own reference while they are in flight
                    os.close(fd)
                self._out_fds.pop(0)
            del self._out[:sent]
            self._out_fds = [(offset - sent, pending) for offset, pending in self._out_fds]
        want_write = bool(self._out)
        if want_write != self._writing:
            if want_write:
                self._loop.add_writer(self.sock.fileno(), self._flush)
            else:
                self._loop.remove_writer(self.sock.fileno())
            self._writing = want_write

    # -- receiving -----------------------------------------------------------------------------------------
    def _readable(self) -> None:
        fd_space = socket.CMSG_SPACE(MAX_FDS_PER_READ * array.array("i").itemsize)
        while not self.closed:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(1 << 18, fd_space)
            except BlockingIOError:
                return
            except OSError as exc:
                self._broken(f"receive failed: {exc}")
                return
            fds: list[int] = []
            for level, kind, raw in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    received = array.array("i")
                    received.frombytes(raw[:len(raw) - len(raw) % received.itemsize])
                    fds.extend(received)
            if not data and not fds:
                self._broken(None)
                return
            try:
                frames = self._reader.feed(data, fds)
            except (ChannelClosed, ValueError) as exc:
                self._broken(f"bad frame: {exc}")
                return
            for header, payload, frame_fds in frames:
                self._dispatch(header, payload, frame_fds)

    def _dispatch(self, header: dict[str, Any], payload: bytes, fds: list[int]) -> None:
        if header.get("op") == "reply":
            future = self._replies.get(int(header.get("req", 0)))
            if future is not None and not future.done():
                future.set_result(header)
            return
        try:
            self.on_frame(header, payload, fds)
        except Exception:     # one bad frame must not stop the channel
            log.exception("channel: handling %r failed", header.get("op"))

    def _broken(self, why: str | None) -> None:
        if self.closed:
            return
        if why:
            log.warning("channel to another process broken: %s", why)
        self.close()
        if self.on_closed is not None:
            self.on_closed()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self.sock.fileno())
        if self._writing:
            self._loop.remove_writer(self.sock.fileno())
        for future in self._replies.values():
            if not future.done():
                future.set_exception(ChannelClosed("the channel closed before the answer"))
        self._reader.close()
        for _, fds in self._out_fds:
            for fd in fds:
                os.close(fd)
        self._out_fds = []
        self.sock.close()
