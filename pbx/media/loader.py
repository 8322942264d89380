"""Load audio to play (``play`` command, ``ringing.ringtone``) from a URL or the media directory.

A source is an ``http://`` or ``https://`` URL (fetched by :func:`pbx.media.http.http_get` from
public addresses and the networks ``allow_networks`` names: :mod:`pbx.media.netpolicy`), a
``file://`` URL, or a plain path. File sources are confined to the media directory: the path is
resolved (symlinks and ``..``) and must land inside it, whether it was given relative or absolute.

Decoded audio (mono int16, read-only arrays shared by all callers) is kept in an LRU cache bounded
by total bytes and keyed by source and rate; a file's key also holds its mtime and size, so an
edited file is loaded again. Concurrent loads of one key share one fetch and decode. Decoding runs
in a worker thread so the event loop keeps serving calls.

Calls play the returned array itself (their playout queues hold a reference, not a copy: issue 13),
so an array evicted from the cache may still be alive; a weak reference finds it again, so a file
that calls are still playing is not decoded a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import threading
import urllib.parse
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from stat import S_ISREG

import numpy as np
import numpy.typing as npt

from pbx.errors import MediaError
from pbx.media.decode import decode_audio
from pbx.media.http import http_get
from pbx.media.netpolicy import AddressPolicy
from pbx.memory import release_free_memory

Pcm = npt.NDArray[np.int16]
# (canonical source, rate, file version or None for URLs)
CacheKey = tuple[str, int, tuple[int, int] | None]

DECODE_THREADS = 2
DECODE_NICE = 10
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class MediaLoader:
    """Fetches, decodes and caches audio; one instance serves the whole server."""

    def __init__(
        self,
        media_dir: Path,
        *,
        max_bytes: int = 20_000_000,
        timeout_s: float = 10.0,
        max_seconds: float = 600.0,
        cache_bytes: int = 64 * 1024 * 1024,
        connect_timeout_s: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
        allow_networks: Iterable[str] = (),
    ) -> None:
        self.media_dir = media_dir.resolve()
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_seconds = max_seconds
        self.cache_bytes = cache_bytes
        self._ssl_context = ssl_context
        self.policy = AddressPolicy(allow_networks)   # public addresses, and these networks
        # Decoding is CPU work the calls' media must not wait for: its threads run at a lower priority.
        self._decoder = ThreadPoolExecutor(DECODE_THREADS, "decode", initializer=_lower_priority)
        self._cache: OrderedDict[CacheKey, Pcm] = OrderedDict()
        self._cached_bytes = 0
        self._alive: weakref.WeakValueDictionary[CacheKey, Pcm] = weakref.WeakValueDictionary()   # costs no memory
        self._inflight: dict[CacheKey, _Fetch] = {}

    @property
    def cached_bytes(self) -> int:
        return self._cached_bytes

    async def load(self, source: str, rate: int = 16000) -> Pcm:
        """Mono int16 audio of ``source`` at ``rate`` Hz (read-only); raises :class:`MediaError`."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        where = self._locate(source)
        if isinstance(where, Path):
            stat = self._stat(where, source)
            key: CacheKey = (str(where), rate, (stat.st_mtime_ns, stat.st_size))
        else:
            key = (source, rate, None)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        alive = self._alive.get(key)
        if alive is not None:        # evicted, but calls still play it: cached again, not decoded again
            self._remember(key, alive)
            return alive
        fetch = self._inflight.get(key)
        if fetch is None:
            fetch = self._inflight[key] = _Fetch(asyncio.create_task(self._produce(key, source, where, rate)))
            fetch.task.add_done_callback(_retrieve)
        # One caller giving up (cancelled) must not cancel the load the others wait for; the last one
        # does, so an interrupted or hung-up play stops its download and frees its connection.
        fetch.waiters += 1
        try:
            return await asyncio.shield(fetch.task)
        finally:
            fetch.waiters -= 1
            if fetch.waiters == 0 and not fetch.task.done():
                fetch.task.cancel()

    async def close(self) -> None:
        """Cancel loads in progress and drop the cache."""
        tasks = [fetch.task for fetch in self._inflight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._decoder.shutdown(wait=False, cancel_futures=True)
        self._cache.clear()
        self._alive.clear()
        self._cached_bytes = 0

    async def _produce(self, key: CacheKey, source: str, where: str | Path, rate: int) -> Pcm:
        try:
            data: bytes | Path
            if isinstance(where, Path):
                data = where
            else:
                data = await http_get(where, max_bytes=self.max_bytes, timeout_s=self.timeout_s,
                                      connect_timeout_s=self.connect_timeout_s, policy=self.policy,
                                      ssl_context=self._tls_context())  # http may redirect to https
            stop = threading.Event()
            try:
                audio = await asyncio.get_running_loop().run_in_executor(
                    self._decoder, self._decode, data, rate, source, stop)
            except asyncio.CancelledError:
                stop.set()          # nobody waits: the worker thread stops at its next packet
                raise
            audio.flags.writeable = False  # shared by every caller and the cache
            self._remember(key, audio)
            return audio
        finally:
            del self._inflight[key]
            data = b""    # the download (up to download_max_bytes) goes now; hand the heap back
            asyncio.get_running_loop().run_in_executor(self._decoder, release_free_memory)

    def _decode(self, data: bytes | Path, rate: int, source: str, stop: threading.Event) -> Pcm:
        """On a worker thread; what the decoder's buffers took goes back to the system afterwards
        (glibc keeps a thread's freed heap otherwise: tens of MB after a long file)."""
        try:
            return decode_audio(data, rate, max_seconds=self.max_seconds, name=source, cancelled=stop.is_set)
        finally:
            release_free_memory()

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:  # loading the system CA store once, not per fetch
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _remember(self, key: CacheKey, audio: Pcm) -> None:
        self._alive[key] = audio     # found again while any call plays it, cached or not
        size = audio.nbytes
        if size > self.cache_bytes:
            return
        while self._cached_bytes + size > self.cache_bytes:
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= evicted.nbytes
        self._cache[key] = audio
        self._cached_bytes += size

    def _locate(self, source: str) -> str | Path:
        """The URL of an http(s) source, or the resolved path of a file inside the media dir."""
        match = _URL_SCHEME.match(source)
        if match is None:
            return self._confine(source, source)
        scheme = match.group(1).lower()
        if scheme in ("http", "https"):
            return source
        if scheme != "file":
            raise MediaError(f"unsupported URL scheme {scheme!r} in {source} (only http, https and file)")
        parts = urllib.parse.urlsplit(source)
        if parts.netloc not in ("", "localhost"):
            raise MediaError(f"file URL {source} names a host; only local files can be played")
        return self._confine(urllib.parse.unquote(parts.path), source)

    def _confine(self, path_text: str, source: str) -> Path:
        if not path_text or "\0" in path_text:
            raise MediaError(f"bad file name {source!r}")
        candidate = Path(path_text)
        if not candidate.is_absolute():
            candidate = self.media_dir / candidate
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as exc:  # symlink loop: RuntimeError before 3.13
            raise MediaError(f"cannot resolve {source}: {exc}") from None
        if not resolved.is_relative_to(self.media_dir):
            raise MediaError(f"{source} is outside the media directory")
        return resolved

    @staticmethod
    def _stat(path: Path, source: str) -> os.stat_result:
        try:
            stat = path.stat()
        except OSError as exc:
            raise MediaError(f"cannot open {source}: {exc.strerror or exc}") from None
        if not S_ISREG(stat.st_mode):
            raise MediaError(f"{source} is not a regular file")
        return stat


class _Fetch:
    """A load in progress and how many callers wait for it."""

    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[Pcm]) -> None:
        self.task = task
        self.waiters = 0


def _retrieve(task: asyncio.Task[Pcm]) -> None:
    """Its waiters may all have gone: mark a failure as seen so asyncio does not log it as lost."""
    if not task.cancelled():
        task.exception()


def _lower_priority() -> None:
    """A decode thread's nice value (Linux gives each thread its own)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICE)
