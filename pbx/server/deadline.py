"""One ``loop.call_at`` timer kept at a sans-I/O object's next deadline (its ``get_timer()``).

The call core and the SIP user agent each say when they next need the time; their asyncio shells
re-arm this after every input, and it calls back once when that moment comes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Deadline:
    def __init__(self, fire: Callable[[], None]) -> None:
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None

    def arm(self, when_s: float | None) -> None:
        """Fire at ``when_s`` on the loop's clock (time.monotonic), or never (None)."""
        if when_s == self._at:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._at = when_s
        if when_s is not None:
            self._handle = asyncio.get_running_loop().call_at(when_s, self._due)

    def _due(self) -> None:
        self._handle = None
        self._at = None
        self._fire()
