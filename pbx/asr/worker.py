"""PocketSphinx in a worker process, so that decoding never holds the server's GIL.

PocketSphinx's binding keeps the GIL for every call into the decoder (20 ms of audio takes 1-20 ms
depending on the search and how long the utterance has grown; compiling a grammar or making a
decoder, up to hundreds of milliseconds). In the server's process every such call is time the event
loop and the media tick cannot run, however fairly the calls are scheduled. So the provider the
server uses, :class:`PocketsphinxProcessAsr`, runs the in-process provider
(:class:`pbx.asr.pocketsphinx.PocketsphinxAsr`, with its decoder pool and fair scheduling) in one
child process, started at the first stream, at a lower CPU priority (nice 10) so the server's media
comes first when the cores are busy. It is one process for all calls, never one per call.

Wire: ``multiprocessing`` pipes (spawned, not forked: the server has threads). Requests are
``(id, op, stream, payload)`` with op ``open`` (AsrOptions), ``feed`` (int16 PCM), ``end``,
``close``, ``stop``; replies are ``(id, ok, value)`` where a failure's value is ``(kind, sender,
message)``. In the server, a thread sends (a pipe that is full must not block the event loop) and
another receives; in the worker, a thread receives into the worker's event loop, so the pipe is
always drained. If the worker dies, every call waiting on it fails with a ``ProviderError`` and the
next stream starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import queue
import threading
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.asr.base import AsrOptions, AsrProvider, AsrResult, AsrStream
from pbx.errors import ProviderError

log = logging.getLogger(__name__)

NICE = 10
STOP_TIMEOUT_S = 5.0


# -- the worker process --------------------------------------------------------------------------------
def _serve(conn: Connection, options: dict[str, Any]) -> None:
    """The worker process's main: a PocketsphinxAsr answering requests from the pipe."""
    with contextlib.suppress(OSError):
        os.nice(NICE)
    asyncio.run(_serve_async(conn, options))


async def _serve_async(conn: Connection, options: dict[str, Any]) -> None:
    from pbx.asr.pocketsphinx import PocketsphinxAsr
    provider = PocketsphinxAsr(**options)
    streams: dict[int, AsrStream] = {}
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[int, str, int, Any] | None] = asyncio.Queue()

    def receive() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                message = None
            loop.call_soon_threadsafe(inbox.put_nowait, message)
            if message is None or message[1] == "stop":
                return

    threading.Thread(target=receive, name="asr-receive", daemon=True).start()
    tasks: set[asyncio.Task[None]] = set()
    order: dict[int, asyncio.Lock] = {}        # a stream's requests run in the order they came

    async def handle(request_id: int, op: str, stream_id: int, payload: Any) -> None:
        lock = order.setdefault(stream_id, asyncio.Lock())
        async with lock:
            await run(request_id, op, stream_id, payload)
        if op == "close":
            order.pop(stream_id, None)

    async def run(request_id: int, op: str, stream_id: int, payload: Any) -> None:
        try:
            value: Any = None
            if op == "open":
                streams[stream_id] = await provider.open_stream(payload)
            elif op == "feed":
                value = await streams[stream_id].feed(payload)
            elif op == "end":
                value = await streams[stream_id].end_utterance()
            elif op == "close":
                stream = streams.pop(stream_id, None)
                if stream is not None:
                    await stream.close()
            reply: tuple[int, bool, Any] = (request_id, True, value)
        except ProviderError as exc:
            reply = (request_id, False, ("provider", exc.sender, str(exc)))
        except Exception as exc:   # anything else: named, the worker goes on
            reply = (request_id, False, ("bug", "asr", f"{type(exc).__name__}: {exc}"))
        with contextlib.suppress(OSError):
            conn.send(reply)

    while (message := await inbox.get()) is not None:
        request_id, op, stream_id, payload = message
        if op == "stop":
            break
        task = asyncio.create_task(handle(request_id, op, stream_id, payload))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    for task in list(tasks):
        task.cancel()
    await provider.close()


# -- the server's side -------------------------------------------------------------------------------------
class _Worker:
    """One worker process and the pipe to it."""

    def __init__(self, options: dict[str, Any]) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, options), name="pypbx-asr", daemon=True)
        self.process.start()
        child.close()
        self._loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._outbox: queue.SimpleQueue[tuple[int, str, int, Any] | None] = queue.SimpleQueue()
        self.alive = True
        threading.Thread(target=self._send, name="asr-send", daemon=True).start()
        threading.Thread(target=self._receive, name="asr-receive", daemon=True).start()

    async def call(self, op: str, stream_id: int, payload: Any = None) -> Any:
        if not self.alive:
            raise ProviderError("asr", "the pocketsphinx worker process stopped")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = self._loop.create_future()
        future.add_done_callback(_retrieve)    # its caller may have gone (cancelled): not a lost error
        self._pending[request_id] = future
        self._outbox.put((request_id, op, stream_id, payload))
        try:
            return await asyncio.shield(future)   # a cancelled caller does not take its call back
        finally:
            if future.done():
                self._pending.pop(request_id, None)

    def _send(self) -> None:
        while (message := self._outbox.get()) is not None:
            try:
                self._conn.send(message)
            except (OSError, ValueError):
                return

    def _receive(self) -> None:
        while True:
            try:
                reply = self._conn.recv()
            except (EOFError, OSError):
                break
            with contextlib.suppress(RuntimeError):   # the loop is closed: nobody waits any more
                self._loop.call_soon_threadsafe(self._settle, reply)
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._died)

    def _settle(self, reply: tuple[int, bool, Any]) -> None:
        request_id, ok, value = reply
        future = self._pending.pop(request_id, None)
        if future is None or future.done():
            return
        if ok:
            future.set_result(value)
        else:
            kind, sender, message = value
            if kind == "bug":
                log.error("pocketsphinx worker: %s", message)
                message = f"pocketsphinx failed: {message}"
            future.set_exception(ProviderError(sender, message))

    def _died(self) -> None:
        if self.alive:
            self.alive = False
            if self.process.exitcode not in (None, 0):
                log.error("the pocketsphinx worker process stopped (exit code %s)", self.process.exitcode)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ProviderError("asr", "the pocketsphinx worker process stopped"))
        self._pending.clear()

    async def stop(self) -> None:
        self._outbox.put((0, "stop", 0, None))
        self._outbox.put(None)
        await asyncio.to_thread(self.process.join, STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.kill()
            await asyncio.to_thread(self.process.join)
        self._conn.close()


class ProcessStream(AsrStream):
    def __init__(self, worker: _Worker, stream_id: int) -> None:
        self._worker = worker
        self._id = stream_id
        self._closed = False

    async def feed(self, pcm: npt.NDArray[np.int16]) -> list[AsrResult]:
        if self._closed:
            raise ProviderError("asr", "the pocketsphinx stream is closed")
        results: list[AsrResult] = await self._worker.call("feed", self._id, np.ascontiguousarray(pcm))
        return results

    async def end_utterance(self) -> AsrResult | None:
        if self._closed:
            raise ProviderError("asr", "the pocketsphinx stream is closed")
        result: AsrResult | None = await self._worker.call("end", self._id)
        return result

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._worker.alive:
            with contextlib.suppress(ProviderError):
                await self._worker.call("close", self._id)


class PocketsphinxProcessAsr(AsrProvider):
    """The "pocketsphinx" provider of the server: PocketsphinxAsr in one worker process."""

    name = "pocketsphinx"

    def __init__(self, **options: Any) -> None:
        self._options = options           # PocketsphinxAsr's: workers, max_idle, kws_threshold, cpu_share
        self._worker: _Worker | None = None
        self._ids = itertools.count(1)
        self._starting = asyncio.Lock()

    async def open_stream(self, options: AsrOptions) -> AsrStream:
        from pbx.asr.pocketsphinx import parse_options
        parse_options(options)             # a bad option is refused here, without a trip to the worker
        worker = await self._running()
        stream_id = next(self._ids)
        try:
            await worker.call("open", stream_id, options)
        except asyncio.CancelledError:   # the caller gave up: the stream opens anyway, so close it
            asyncio.get_running_loop().create_task(ProcessStream(worker, stream_id).close())
            raise
        return ProcessStream(worker, stream_id)

    async def _running(self) -> _Worker:
        async with self._starting:
            if self._worker is None or not self._worker.alive:
                # In its own process the GIL is its own: all of its one core may go to decoding. Making
                # a decoder there delays only that call's recognition, so one idle decoder of each
                # kind is pooled, not four (~27 MB each).
                self._worker = _Worker({"cpu_share": 1.0, "max_idle": 1, **self._options})
            return self._worker

    @property
    def pid(self) -> int | None:
        return self._worker.process.pid if self._worker is not None else None

    async def close(self) -> None:
        if self._worker is not None:
            await self._worker.stop()
            self._worker = None


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
