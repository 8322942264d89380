"""A provider's streaming recognition protocol as an :class:`~pbx.asr.base.AsrStream`, faults included.

A provider module writes an :class:`AsrProtocol`: sans-I/O, a fresh instance per connection. It
says where to connect and what to send (opening messages, audio, the end of an utterance, the end of
the stream) and reads the provider's frames into results. :class:`WebSocketAsrStream` does the I/O:

- A reader task collects results as frames arrive; :meth:`~WebSocketAsrStream.feed` sends audio and
  returns what arrived since (partials and the provider's own finals: cloud recognisers end
  sentences themselves); :meth:`~WebSocketAsrStream.end_utterance` sends the protocol's flush and
  waits up to ``final_wait_s`` for a final.
- Faults become one ProviderError each, raised from the next ``feed``/``end_utterance`` (the call
  reports it as an ``error`` event from ``asr`` and goes on): the provider's own error frames (with
  its code), a malformed frame (skipped; the stream goes on), a dropped connection, and a stall (no
  frame within ``context.timeout_s`` of the end of an utterance: the connection is dropped).
- After a drop or stall the stream reconnects at the next audio once the backoff has passed (0.5 s,
  doubling to 30 s; back to 0.5 s after a connection that lived 10 s); audio in between is dropped.
  A failed reconnect is one more error. Result times stay on the stream's clock across reconnects.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from pbx.asr.base import AsrResult, AsrStream
from pbx.cloud.ws import ProviderContext, close_quietly, open_websocket
from pbx.errors import ProviderError

log = logging.getLogger(__name__)

Message: TypeAlias = str | bytes
RATE = 16000                       # what the call feeds
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_S = 10.0                    # a connection that lived this long resets the backoff


class MalformedFrame(ValueError):
    """A frame the protocol cannot read; the message says what was wrong with it."""


class AsrProtocol(abc.ABC):
    """One connection of one provider's streaming recognition protocol, without I/O."""

    provider: str                  # name in errors and metrics
    final_wait_s: float = 1.0      # how long end_utterance waits for the provider's final

    @abc.abstractmethod
    def url(self) -> str:
        """Where to connect (signed, for providers that sign the URL)."""

    def headers(self) -> dict[str, str]:
        return {}

    def opening(self) -> list[Message]:
        """Messages sent right after connecting."""
        return []

    @property
    def ready(self) -> bool:
        """Whether audio may be sent: a protocol that waits for the provider's go-ahead (a
        ``task-started``) says False until :meth:`received` has seen it."""
        return True

    @property
    def owes_result(self) -> bool:
        """Whether the provider owes a frame after :meth:`flush` (the stall check waits for one only
        then): True for a provider that answers every flush; a provider that stays silent after an
        utterance it heard nothing in, or already ended itself, says whether a sentence is open."""
        return True

    @abc.abstractmethod
    def audio(self, pcm: npt.NDArray[np.int16]) -> list[Message]:
        """Messages carrying ``pcm`` (16 kHz mono). A provider that wants 8 kHz keeps a
        :class:`pbx.core.resample.Resampler` (16000 -> 8000) per connection."""

    def flush(self) -> list[Message]:
        """Messages that ask the provider to finish the current utterance (none if it cannot)."""
        return []

    def closing(self) -> list[Message]:
        """Messages that end the stream."""
        return []

    @abc.abstractmethod
    def received(self, message: Message) -> list[AsrResult]:
        """Results in a frame (times in ms of this connection's audio). Raises ProviderError for the
        provider's error frames, MalformedFrame for a frame it cannot read."""


class WebSocketAsrStream(AsrStream):
    def __init__(self, make_protocol: Callable[[], AsrProtocol], context: ProviderContext) -> None:
        self._make_protocol = make_protocol
        self._context = context
        self._protocol = make_protocol()
        self.provider = self._protocol.provider
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._results: list[AsrResult] = []
        self._errors: list[ProviderError] = []
        self._final_arrived = asyncio.Event()
        self._closed = False
        self._fed_ms = 0                      # audio given to feed, dropped audio included
        self._offset_ms = 0                   # _fed_ms when the current connection opened
        self._connected_at = 0.0
        self._last_frame_at = 0.0
        self._stall_check_at: float | None = None   # end of an utterance: a frame is due by then
        self._backoff_s = BACKOFF_FIRST_S
        self._retry_at = 0.0
        self.dropped_ms = 0
        self.reconnects = 0

    async def open(self) -> None:
        """The first connection; ProviderError if the provider cannot be reached or refuses."""
        await self._connect()

    @classmethod
    async def started(cls, make_protocol: Callable[[], AsrProtocol], context: ProviderContext) -> WebSocketAsrStream:
        """A stream with its first connection open: what a provider's ``open_stream`` returns."""
        stream = cls(make_protocol, context)
        await stream.open()
        return stream

    # -- AsrStream ---------------------------------------------------------------------------------
    async def feed(self, pcm: npt.NDArray[np.int16]) -> list[AsrResult]:
        ms = len(pcm) * 1000 // RATE
        self._check_stall()
        if self._ws is None and not self._closed and self._now() >= self._retry_at:
            await self._reconnect()
        if self._ws is None:
            self.dropped_ms += ms
        else:
            await self._send(self._protocol.audio(pcm))
        self._fed_ms += ms
        self._raise_errors()
        return self._take()

    async def end_utterance(self) -> AsrResult | None:
        if self._ws is not None:
            self._final_arrived.clear()
            await self._send(self._protocol.flush())
            if self._ws is not None and not any(r.final for r in self._results):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._final_arrived.wait(), self._protocol.final_wait_s)
            answered = self._final_arrived.is_set()       # the flush was answered: nothing is owed
            if self._ws is not None and self._stall_check_at is None and self._protocol.owes_result \
                    and not answered:
                self._stall_check_at = self._now() + self._context.timeout_s
        self._raise_errors()
        finals = [r for r in self._results if r.final]
        if not finals:
            return None
        self._results.remove(finals[0])
        return finals[0]

    async def close(self) -> None:
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                for message in self._protocol.closing():
                    await asyncio.wait_for(ws.send(message), self._context.timeout_s)
            await close_quietly(ws)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader

    # -- connection --------------------------------------------------------------------------------
    async def _connect(self) -> None:
        protocol = self._make_protocol()
        ws = await open_websocket(protocol.url(), sender="asr", provider=protocol.provider,
                                  context=self._context, headers=protocol.headers())
        try:
            for message in protocol.opening():
                await asyncio.wait_for(ws.send(message), self._context.timeout_s)
            async with asyncio.timeout(self._context.timeout_s):
                while not protocol.ready:
                    protocol.received(await ws.recv())
        except TimeoutError:
            await close_quietly(ws)
            raise ProviderError("asr", f"{protocol.provider} did not start the recognition within "
                                       f"{self._context.timeout_s:g} s") from None
        except ConnectionClosed as exc:
            raise ProviderError("asr", f"{protocol.provider} closed the connection while starting: "
                                       f"{_close_reason(exc)}") from None
        except (MalformedFrame, ProviderError) as exc:
            await close_quietly(ws)
            if isinstance(exc, ProviderError):
                raise
            raise ProviderError("asr", f"{protocol.provider} sent a malformed frame while starting: {exc}") from None
        self._protocol = protocol
        self._ws = ws
        self._offset_ms = self._fed_ms
        self._connected_at = self._last_frame_at = self._now()
        self._stall_check_at = None
        self._reader = asyncio.create_task(self._read(ws, protocol))

    async def _reconnect(self) -> None:
        try:
            await self._connect()
        except ProviderError as exc:
            self._schedule_retry()
            self._errors.append(ProviderError("asr", f"{exc}; trying again in {self._last_backoff_s:g} s",
                                              exc.code))
            return
        self.reconnects += 1

    def _schedule_retry(self) -> None:
        self._last_backoff_s = self._backoff_s
        self._retry_at = self._now() + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, BACKOFF_MAX_S)

    def _lost(self, ws: ClientConnection, error: ProviderError) -> None:
        """The connection ``ws`` is gone (dropped, stalled or failed): report, and reconnect later."""
        if self._ws is not ws:
            return
        self._ws = None
        if self._now() - self._connected_at >= STABLE_S:
            self._backoff_s = BACKOFF_FIRST_S
        self._schedule_retry()
        self._errors.append(error)
        self._final_arrived.set()             # an end_utterance waiting for a final stops waiting
        ws.transport.abort()

    async def _read(self, ws: ClientConnection, protocol: AsrProtocol) -> None:
        try:
            async for message in ws:
                self._last_frame_at = self._now()
                self._stall_check_at = None
                try:
                    results = protocol.received(message)
                except MalformedFrame as exc:
                    self._errors.append(ProviderError("asr", f"{protocol.provider} sent a malformed frame: {exc}"))
                    continue
                except ProviderError as exc:
                    self._lost(ws, exc)
                    return
                shifted = [_shift(r, self._offset_ms) for r in results]
                self._results.extend(shifted)
                if any(r.final for r in shifted):
                    self._final_arrived.set()
        except ConnectionClosed as exc:
            if not self._closed:
                self._lost(ws, ProviderError("asr", f"{protocol.provider} closed the connection: "
                                                    f"{_close_reason(exc)}", _close_code(exc)))
            return
        if not self._closed:
            self._lost(ws, ProviderError("asr", f"{protocol.provider} closed the connection: "
                                                f"{_close_reason(None, ws)}", _close_code(None, ws)))

    async def _send(self, messages: list[Message]) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            for message in messages:
                # a peer that stops reading fills the socket: that is a stall too
                await asyncio.wait_for(ws.send(message), self._context.timeout_s)
        except TimeoutError:
            self._lost(ws, ProviderError("asr", f"{self.provider} stopped taking audio "
                                                f"(nothing sent for {self._context.timeout_s:g} s)"))
        except ConnectionClosed as exc:
            self._lost(ws, ProviderError("asr", f"{self.provider} closed the connection: {_close_reason(exc)}",
                                         _close_code(exc)))

    def _check_stall(self) -> None:
        ws, due = self._ws, self._stall_check_at
        if ws is not None and due is not None and self._now() >= due and self._last_frame_at < due:
            self._lost(ws, ProviderError("asr", f"{self.provider} stalled: no result within "
                                                f"{self._context.timeout_s:g} s of the end of speech"))

    # -- results and errors ----------------------------------------------------------------------------
    def _take(self) -> list[AsrResult]:
        taken, self._results = self._results, []
        return taken

    def _raise_errors(self) -> None:
        if not self._errors:
            return
        errors, self._errors = self._errors, []
        first = errors[0]
        if len(errors) == 1:
            raise first
        raise ProviderError("asr", "; ".join(dict.fromkeys(str(e) for e in errors)), first.code)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()


def _shift(result: AsrResult, offset_ms: int) -> AsrResult:
    if not offset_ms:
        return result
    return replace(result, start_ms=None if result.start_ms is None else result.start_ms + offset_ms,
                   end_ms=None if result.end_ms is None else result.end_ms + offset_ms)


def _close_reason(exc: ConnectionClosed | None, ws: ClientConnection | None = None) -> str:
    frame = exc.rcvd if exc is not None else (ws.close_code, ws.close_reason) if ws is not None else None
    if isinstance(frame, tuple):
        code, reason = frame
        return f"code {code}{': ' + reason if reason else ''}" if code is not None else "no close frame"
    if frame is None:
        return "no close frame"
    return f"code {frame.code}{': ' + frame.reason if frame.reason else ''}"


def _close_code(exc: ConnectionClosed | None, ws: ClientConnection | None = None) -> int | None:
    if exc is not None:
        return exc.rcvd.code if exc.rcvd is not None else None
    return ws.close_code if ws is not None else None

