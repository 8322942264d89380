"""A call's control WebSocket, the same for every call type: commands in, events and audio out, pings.

- Each text message is decoded once (:func:`pbx.protocol.decode_json`), written to the dump, and
  turned into its command; what fails comes out as the :class:`~pbx.errors.ProtocolError` to report.
  Binary messages come out as bytes (audio on ``/call``).
- Each event is serialised once, dumped, and queued. The queue is bounded: audio frames beyond
  :data:`AUDIO_BACKLOG` queued messages are dropped (counted in ``dropped_frames``); text beyond
  :data:`TEXT_BACKLOG_BYTES` not yet written means the client stopped reading, which
  :meth:`ControlSocket.send_event` reports by returning False so the call can end. The last event
  (``hangup``) is queued whatever the bound.
- :meth:`ControlSocket.close` lets the writer send what is queued (the hangup event), then closes
  with the call's code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from pbx.errors import ProtocolError
from pbx.protocol import Command, Event, command_from_dict, decode_json, to_dict, to_json
from pbx.server.dump import CallDump

AUDIO_BACKLOG = 1000                 # queued messages before audio frames are dropped
TEXT_BACKLOG_BYTES = 1 << 20         # unsent event text that means the client stopped reading
CLOSE_FLUSH_S = 1.0                  # how long the close waits for queued messages to go out


class ControlSocket:
    def __init__(self, ws: ServerConnection, dump: CallDump | None) -> None:
        self.ws = ws
        self.dump = dump
        self._queue: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._text_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self.dropped_frames = 0

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write())

    # -- in ---------------------------------------------------------------------------------------
    async def read(self, on_audio: Callable[[bytes], None],
                   on_text: Callable[[Command | ProtocolError], Awaitable[bool]]) -> None:
        """Deliver the client's messages until it closes or ``on_text`` returns False: audio to
        ``on_audio`` (a plain call: one per 20 ms frame), each text as its command or why it is not one."""
        try:
            async for message in self.ws:
                if isinstance(message, str):
                    if not await on_text(self._decode(message)):
                        return
                else:
                    on_audio(message)
        except ConnectionClosed:
            return

    def _decode(self, text: str) -> Command | ProtocolError:
        try:
            value = decode_json(text)
        except ProtocolError as exc:
            if self.dump is not None:
                self.dump.unparsed(text)
            return exc
        if self.dump is not None:
            self.dump.command(value)
        try:
            return command_from_dict(value)
        except ProtocolError as exc:
            return exc

    # -- out --------------------------------------------------------------------------------------
    def send_event(self, event: Event, last: bool = False) -> bool:
        """Queue an event; False when the client has stopped reading (the event is not queued)."""
        if self._text_bytes > TEXT_BACKLOG_BYTES and not last:
            return False
        value = to_dict(event)
        text = to_json(value)
        if self.dump is not None:
            self.dump.event(text, value)
        self._text_bytes += len(text)
        self._queue.put_nowait(text)
        return True

    def send_audio(self, data: bytes) -> None:
        if self._queue.qsize() >= AUDIO_BACKLOG:
            self.dropped_frames += 1
            return
        self._queue.put_nowait(data)

    async def _write(self) -> None:
        while True:
            message = await self._queue.get()
            if message is None:
                return
            try:
                await self.ws.send(message)
            except ConnectionClosed:
                return
            if isinstance(message, str):
                self._text_bytes -= len(message)

    async def ping(self) -> Awaitable[float] | None:
        """A WebSocket ping; the awaitable resolves when the pong arrives (None: the socket is closed)."""
        try:
            return await self.ws.ping()
        except ConnectionClosed:
            return None

    # -- end --------------------------------------------------------------------------------------
    async def close(self, code: int, reason: str) -> None:
        """Send what is queued (within CLOSE_FLUSH_S), then close the socket; closes the dump."""
        self._queue.put_nowait(None)
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._writer), CLOSE_FLUSH_S)
        if self.dump is not None:
            self.dump.close()
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)
