"""The calls of every worker: which ids are in use, and the answers that need all of them.

A call id is unique across the server: a worker claims it before the call starts (a WebSocket's
``id``, an inbound INVITE's dialog id before its webhook goes out) and releases it when the call ends.
``/call/lists``, ``/health`` and ``/metrics`` gather each worker's part.

- :class:`LocalRegistry`: one process (``workers = 1``, and the tests' in-process servers).
- :class:`WorkerRegistry`: a worker of :mod:`pbx.server.supervisor`, asking the supervisor over its
  channel; the supervisor keeps the ids in a :class:`~pbx.server.routing.Directory` and routes
  connections and SIP messages by them.

Both are the one :class:`Registry` protocol, so a registry spanning hosts (ids in a shared store,
gathering over the network) is a third implementation, not a change to the call server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pbx.server.channel import Channel, ChannelClosed

GATHER_TIMEOUT_S = 5.0


class Registry(Protocol):
    async def claim(self, call_id: str) -> bool:
        """Take ``call_id`` for a call of this process; False when it is in use anywhere."""
        ...

    def release(self, call_id: str) -> None:
        ...

    async def gather(self, what: str) -> list[Any]:
        """Every worker's answer to ``what`` ("calls", "health", "metrics"), this process's included."""
        ...


class LocalRegistry:
    def __init__(self, collect: Callable[[str], Any]) -> None:
        self._collect = collect
        self.ids: set[str] = set()

    async def claim(self, call_id: str) -> bool:
        if call_id in self.ids:
            return False
        self.ids.add(call_id)
        return True

    def release(self, call_id: str) -> None:
        self.ids.discard(call_id)

    async def gather(self, what: str) -> list[Any]:
        return [self._collect(what)]


class WorkerRegistry:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def claim(self, call_id: str) -> bool:
        try:
            answer = await self.channel.request({"op": "claim", "id": call_id})
        except (ChannelClosed, TimeoutError):
            return False            # the supervisor is gone: this worker takes no new calls
        return bool(answer.get("ok"))

    def release(self, call_id: str) -> None:
        if not self.channel.closed:
            self.channel.send({"op": "release", "id": call_id})

    async def gather(self, what: str) -> list[Any]:
        answer = await self.channel.request({"op": "gather", "what": what}, GATHER_TIMEOUT_S + 1.0)
        parts = answer.get("parts")
        return parts if isinstance(parts, list) else []
