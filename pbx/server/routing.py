"""Which worker process gets what, in multi-worker mode (sans-I/O: bytes and times in, worker numbers out).

- :class:`Directory`: the call ids in use and the worker that owns each (the shared registry's state).
  An id is claimed once across all workers; ``/call/kill/{id}`` and a WebSocket naming an existing id
  go to its owner.
- :func:`request_target`: the path and query of an HTTP request from its first line, read (peeked)
  before the connection is handed to a worker.
- :class:`SipRoutes`: the worker a SIP message goes to, by its Call-ID. A new dialog's request goes to
  the least busy worker and its Call-ID is remembered; the Call-IDs a worker makes itself (its outbound
  calls and registrations) carry its number (:func:`call_id_tag`), so their responses and in-dialog
  requests find it without a table. Each worker reports the Call-IDs it still has sessions for
  (:meth:`SipRoutes.live`); a remembered Call-ID no worker reports for :data:`GRACE_S` is forgotten
  (the grace covers a final response's ACK, and a report in flight).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

GRACE_S = 40.0               # > 64*T1 (32 s): a transaction's life after its final response
MAX_ROUTES = 200_000         # remembered Call-IDs; past it a new one is routed but not remembered
MAX_REQUEST_LINE = 8192

_CALL_ID = re.compile(rb"(?im)^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$")
_TAG = re.compile(r"\.w(\d+)@")


def call_id_tag(worker: int) -> str:
    """What a worker appends to the local part of the Call-IDs it makes (``<random>.w3@host``)."""
    return f".w{worker}"


def tagged_worker(call_id: str) -> int | None:
    found = _TAG.search(call_id)
    return int(found.group(1)) if found else None


def sip_call_id(data: bytes) -> tuple[str, bool] | None:
    """(Call-ID, is a request) of a SIP message, or None when it has no Call-ID to route by."""
    head = data.split(b"\r\n\r\n", 1)[0]
    found = _CALL_ID.search(head)
    if found is None or not found.group(1):
        return None
    return found.group(1).decode("latin-1"), not head.startswith(b"SIP/2.0")


@dataclass
class Directory:
    """Call id -> owning worker."""
    owners: dict[str, int] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)

    def claim(self, call_id: str, worker: int) -> bool:
        if call_id in self.owners:
            return False
        self.owners[call_id] = worker
        self.counts[worker] = self.counts.get(worker, 0) + 1
        return True

    def release(self, call_id: str, worker: int) -> None:
        if self.owners.get(call_id) == worker:
            del self.owners[call_id]
            self.counts[worker] -= 1

    def owner(self, call_id: str) -> int | None:
        return self.owners.get(call_id)

    def drop_worker(self, worker: int) -> None:
        """A worker exited: its calls went with it."""
        for call_id in [c for c, w in self.owners.items() if w == worker]:
            del self.owners[call_id]
        self.counts[worker] = 0


@dataclass(frozen=True)
class Target:
    path: str
    query: dict[str, str]

    @property
    def call_id(self) -> str | None:
        """The call the request is about: a WebSocket's ``id``, a kill's path."""
        if self.path.startswith("/call/kill/"):
            return unquote(self.path[len("/call/kill/"):]) or None
        if self.path in ("/call", "/call/sip", "/call/webrtc"):
            return self.query.get("id") or None
        return None


def request_target(head: bytes) -> Target | None:
    """The target of an HTTP request whose first line is in ``head``; None while the line is incomplete
    (and shorter than :data:`MAX_REQUEST_LINE`). A line that is not a request gives a target of "" (any
    worker answers it with its error)."""
    line, sep, _ = head.partition(b"\r\n")
    if not sep:
        line, sep, _ = head.partition(b"\n")
    if not sep and len(head) < MAX_REQUEST_LINE:
        return None
    parts = line.split(b" ")
    if len(parts) != 3:
        return Target("", {})
    try:
        url = urlsplit(parts[1].decode("ascii"))
        return Target(url.path, dict(parse_qsl(url.query)))
    except (UnicodeDecodeError, ValueError):
        return Target("", {})


class SipRoutes:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._routes: dict[str, tuple[int, float]] = {}     # Call-ID -> (worker, when remembered)

    def __len__(self) -> int:
        return len(self._routes)

    def owner(self, call_id: str) -> int | None:
        route = self._routes.get(call_id)
        if route is not None:
            return route[0]
        tagged = tagged_worker(call_id)
        return tagged if tagged is not None and 0 <= tagged < self.workers else None

    def route(self, data: bytes, now: float, least_busy: Callable[[], int | None]) -> int | None:
        """The worker for a datagram; ``least_busy`` picks one for a new dialog. None: drop it (no Call-ID,
        a response nobody is waiting for, or no worker to take it)."""
        found = sip_call_id(data)
        return None if found is None else self.route_call(*found, now, least_busy)

    def route_call(self, call_id: str, is_request: bool, now: float,
                   least_busy: Callable[[], int | None]) -> int | None:
        """:meth:`route` for a message whose Call-ID was read already."""
        owner = self.owner(call_id)
        if owner is not None or not is_request:
            return owner
        chosen = least_busy()
        if chosen is not None and len(self._routes) < MAX_ROUTES:
            self._routes[call_id] = (chosen, now)
        return chosen

    def live(self, worker: int, call_ids: Iterable[str], now: float) -> None:
        """``worker`` still has sessions for ``call_ids``: refresh them, forget its others past the grace."""
        alive = set(call_ids)
        for call_id, (owner, since) in list(self._routes.items()):
            if owner != worker:
                continue
            if call_id in alive:
                self._routes[call_id] = (owner, now)
            elif now - since > GRACE_S:
                del self._routes[call_id]

    def drop_worker(self, worker: int) -> None:
        for call_id in [c for c, (w, _) in self._routes.items() if w == worker]:
            del self._routes[call_id]
