"""The listening sockets of the server, and what keeps it serving when descriptors run out.

- :func:`raise_descriptor_limit` lifts the soft ``RLIMIT_NOFILE`` to the hard one at start-up: each
  call holds its WebSocket, and may hold a dump and a recording file.
- :class:`Listener` is a listening socket whose ``accept()`` survives running out of descriptors
  (``EMFILE``/``ENFILE``). asyncio's own handling retries ``accept()`` up to 100 times per wake-up,
  logging a traceback and arming a retry timer each time, so a server out of descriptors fills its
  log. Instead, the listener keeps one spare descriptor: when ``accept()`` fails for lack of one, it
  frees the spare, accepts and closes every waiting connection (each client sees its connection
  closed at once rather than hanging), takes the spare back, logs one warning per
  :data:`WARN_EVERY_S`, and tells asyncio there is nothing more to accept.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
import time

log = logging.getLogger(__name__)

OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
WARN_EVERY_S = 10.0
BACKLOG = 1024
DESCRIPTORS_PER_CONNECTION = 3    # its socket, a dump, a recording


def raise_descriptor_limit() -> tuple[int, int]:
    """Set the soft descriptor limit to the hard one; returns (soft, hard) as they are now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, target, exc)
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class Listener(socket.socket):
    """A listening TCP socket that sheds connections instead of failing when descriptors run out."""

    def __init__(self, family: int) -> None:
        super().__init__(family, socket.SOCK_STREAM)
        self._spare: int | None = None
        self.shed = 0                      # connections closed for lack of a descriptor
        self._shed_reported = 0
        self._warned_at = float("-inf")

    def start(self, address: tuple[str, int]) -> None:
        self.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.family == socket.AF_INET6:
            self.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.bind(address)
        self.listen(BACKLOG)
        self.setblocking(False)
        self._take_spare()

    def accept(self) -> tuple[socket.socket, object]:
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno not in OUT_OF_DESCRIPTORS or self._spare is None:
                raise
        self._shed_waiting()
        raise BlockingIOError(errno.EAGAIN, "connections shed: out of descriptors")

    def close(self) -> None:
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        super().close()

    def _take_spare(self) -> None:
        try:
            self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._spare = None

    def _shed_waiting(self) -> None:
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        while True:
            try:
                fd, _ = self._accept()   # type: ignore[attr-defined]  # a bare descriptor, no object
            except OSError:       # nothing waits any more (EAGAIN), or still no descriptor
                break
            os.close(fd)
            self.shed += 1
        self._take_spare()
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning("out of file descriptors: %d connections closed at once so far (%d since the last "
                        "warning); raise the descriptor limit or lower max_connections",
                        self.shed, self.shed - self._shed_reported)
            self._shed_reported = self.shed


def listeners(host: str, port: int) -> list[Listener]:
    """Listening sockets for ``host:port`` (every address the host resolves to), bound and listening.
    With port 0 the first takes a free port and the others the same one."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    out: list[Listener] = []
    seen: set[tuple[int, str]] = set()
    try:
        for family, _, _, _, address in infos:
            if (family, str(address[0])) in seen:
                continue
            seen.add((family, str(address[0])))
            listener = Listener(family)
            out.append(listener)
            listener.start((str(address[0]), port))
            port = listener.getsockname()[1]
    except OSError:
        for listener in out:
            listener.close()
        raise
    return out
