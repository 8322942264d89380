"""What the call core knows of its transport: which commands it carries, and which options it can serve.

A transport (WebSocket audio on ``/call``, SIP, WebRTC) is a thin shell in ``pbx.server`` that owns
its connection and its leg; it hands the call core this pure description, so the core can refuse a
command the transport does not have before consulting its state table, without any I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pbx.protocol import CallOption


def accept_any(command: str, option: CallOption) -> None:
    """The default option check: every option is served."""


@dataclass(frozen=True, slots=True)
class TransportProfile:
    call_type: str                       # "websocket", "sip" or "webrtc", as /call/lists shows it
    carries: frozenset[str]              # the commands the transport has
    not_carried: str                     # the error for any other: a template with {command}
    # Raises ProtocolError when the transport cannot serve an invite's or accept's option (a codec).
    check_option: Callable[[str, CallOption], None] = field(default=accept_any)

    def refuses(self, command: str) -> str | None:
        """Why the transport cannot carry ``command``, or None if it can."""
        return None if command in self.carries else self.not_carried.format(command=command)
