"""Worker threads shared fairly by many queues of blocking calls (one queue per ASR stream).

A ``ThreadPoolExecutor`` serves calls first come, first served: a stream with a long backlog (a
grammar that decodes slowly, audio arriving faster than it is recognised) keeps every worker busy
and the other streams wait behind all of it. Here each stream has a :class:`WorkQueue`: its calls run
one at a time and in order, and a free worker takes the next call of the queue that used the least
work time lately (fair queuing by cost, not by turns): an expensive stream delays a cheap one by at
most the call it is running.

The workers together use at most ``cpu_share`` of the wall clock (a token bucket over the CPU time
of their calls, with :data:`BURST_S` of slack): a decoder that holds the GIL while it works (PocketSphinx
does) would otherwise take the one core the event loop and the media tick also need. Past that
share, calls wait: recognition falls behind (and the calls' bounded backlogs drop their oldest
audio) instead of every call's media.

A caller that is cancelled does not take its call back: the call still runs, in its turn (its result
is dropped), so a stream's calls happen in the order they were made (a decoder must see all of its
audio).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
BURST_S = 0.2          # work the workers may do at once beyond their share
HALF_LIFE_S = 5.0      # how long a queue's work time counts against it in the choice of the next


class _Job:
    __slots__ = ("args", "fn", "future", "loop")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], loop: asyncio.AbstractEventLoop,
                 future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.args = args
        self.loop = loop
        self.future = future


class WorkQueue:
    """One stream's calls, and the work time it used lately (seconds, halving every HALF_LIFE_S)."""

    __slots__ = ("busy", "jobs", "used", "used_at")

    def __init__(self) -> None:
        self.jobs: deque[_Job] = deque()
        self.busy = False
        self.used = 0.0
        self.used_at = 0.0

    def recent(self, now: float) -> float:
        return self.used * math.exp2(-(now - self.used_at) / HALF_LIFE_S)


class FairPool:
    def __init__(self, workers: int, name: str, cpu_share: float = 1.0) -> None:
        if not cpu_share > 0:
            raise ValueError(f"cpu_share must be positive, got {cpu_share}")
        self._lock = threading.Condition()
        self._ready: deque[WorkQueue] = deque()    # queues with a call waiting and none running
        self._closing = False
        self.cpu_share = cpu_share
        self._credit = BURST_S                     # seconds of work the workers may do now
        self._refilled = time.monotonic()
        self.waited_s = 0.0                        # time workers held back to keep to the share
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def queue(self) -> WorkQueue:
        return WorkQueue()

    async def run(self, queue: WorkQueue, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a worker, after the queue's earlier calls."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._closing:
                raise RuntimeError("the worker pool is closed")
            queue.jobs.append(_Job(fn, args, loop, future))
            if not queue.busy and len(queue.jobs) == 1:
                self._ready.append(queue)
                self._lock.notify()
        return await future

    async def close(self) -> None:
        """Let the workers finish the calls already queued, then stop them."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        await asyncio.to_thread(self._join)

    def _join(self) -> None:
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        while True:
            with self._lock:
                while True:
                    while not self._ready and not self._closing:
                        self._lock.wait()
                    if not self._ready:
                        return
                    wait = self._over_share()
                    if wait <= 0:
                        break
                    self.waited_s += wait
                    self._lock.wait(wait)          # releases the lock (and the GIL) meanwhile
                # The queue that used least work time lately goes first: a stream whose calls are
                # expensive (a big grammar on noise) waits behind the cheap ones, not they behind it.
                now = time.monotonic()
                queue = min(self._ready, key=lambda q: q.recent(now))
                self._ready.remove(queue)
                job = queue.jobs.popleft()
                queue.busy = True
            started = time.thread_time()   # this thread's CPU: waiting for a GIL held elsewhere is not work
            self._run(job)
            spent = time.thread_time() - started
            with self._lock:
                self._credit -= spent
                now = time.monotonic()
                queue.used = queue.recent(now) + spent
                queue.used_at = now
                queue.busy = False
                if queue.jobs:
                    self._ready.append(queue)      # behind the queues already waiting: in turn
                    self._lock.notify()
            del job

    def _over_share(self) -> float:
        """How long to wait before the next call keeps the workers within their share (0: go now)."""
        now = time.monotonic()
        self._credit = min(self._credit + (now - self._refilled) * self.cpu_share, BURST_S)
        self._refilled = now
        return 0.0 if self._credit >= 0 else -self._credit / self.cpu_share

    @staticmethod
    def _run(job: _Job) -> None:
        try:
            result = job.fn(*job.args)
        except BaseException as exc:   # delivered to the caller, whatever it is
            job.loop.call_soon_threadsafe(_settle, job.future, None, exc)
        else:
            job.loop.call_soon_threadsafe(_settle, job.future, result, None)
        job.args = ()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
