"""Transports: each owns a call type's connection to the far end and supplies its leg.

A transport carries out the signalling actions of the call core (:class:`~pbx.call.actions.Connect`,
``Answer``, ``Ring``, ``Reject``, ``Refer``, ``Disconnect``) in its own protocol, and reports back
through the call's inputs (``answered``, ``remote_ringing``, ``rejected``, ``remote_hangup``,
``transfer_done``), followed by :meth:`CallHost.flush` when it reports from its own task.
Its :class:`~pbx.call.transport.TransportProfile` tells the core which commands it carries.

- :class:`WebSocketAudio` (``/call``): the client is the far end. ``invite`` and ``accept`` answer at
  once with a stream leg; binary messages are fed to the engine, and its 20 ms frames go back.
- ``/call/sip`` and ``/call/webrtc`` have their own modules (:mod:`pbx.server.siptransport`,
  :mod:`pbx.server.webrtctransport`).
"""

from __future__ import annotations

import logging
from typing import Protocol

from pbx.call.actions import Answer, Connect, Disconnect, Refer, Reject, Ring
from pbx.call.core import Call
from pbx.call.media import MediaEvent, Pcm
from pbx.call.transport import TransportProfile
from pbx.errors import ProtocolError
from pbx.protocol import CallOption
from pbx.server.media import EngineLeg, LegSink, MediaRunner

log = logging.getLogger(__name__)

SignallingAction = Connect | Answer | Ring | Reject | Refer | Disconnect
MEDIA_COMMANDS = frozenset({"tts", "play", "interrupt", "mute", "unmute", "hangup"})


class CallHost(Protocol):
    """The call's driver, as a transport reports to it."""

    call: Call

    def now_ms(self) -> float: ...
    def flush(self) -> None: ...
    def media_event(self, event: MediaEvent) -> None: ...
    def asr_audio(self, pcm: Pcm) -> None: ...


class AudioOut(Protocol):
    def send_audio(self, data: bytes) -> None: ...


class Transport(Protocol):
    profile: TransportProfile

    def start(self) -> None: ...     # the control socket is up (an inbound SIP call says what calls)
    def carry_out(self, action: SignallingAction) -> None: ...
    def on_audio(self, data: bytes) -> None: ...
    # True when the transport carries a refer itself (a SIP REFER); else the driver bridges a new leg
    def refers_itself(self) -> bool: ...


# -- /call -------------------------------------------------------------------------------------------
WEBSOCKET_CODECS = ("pcm", "pcmu", "pcma", "g722")


def _check_websocket_option(command: str, option: CallOption) -> None:
    if option.codec.lower() not in WEBSOCKET_CODECS:
        raise ProtocolError(f"{command}.option.codec: {option.codec!r} is not a WebSocket codec; "
                            "use pcm, pcmu, pcma or g722")


WEBSOCKET_PROFILE = TransportProfile(
    call_type="websocket",
    carries=MEDIA_COMMANDS | {"invite", "accept", "refer"},    # refer: a SIP leg bridged to this call
    not_carried="{command} is not supported on /call (WebSocket audio) calls; it applies to SIP calls on /call/sip",
    check_option=_check_websocket_option,
)


class WebSocketAudio:
    """``/call``: audio in the control WebSocket's binary messages, in the call's codec."""

    profile = WEBSOCKET_PROFILE

    def __init__(self, host: CallHost, media: MediaRunner, out: AudioOut) -> None:
        self.host = host
        self.media = media
        self.out = out
        self.leg: EngineLeg | None = None

    def start(self) -> None:
        """Nothing to announce: the client is the far end."""

    def refers_itself(self) -> bool:
        return False

    def carry_out(self, action: SignallingAction) -> None:
        if isinstance(action, Connect | Answer):
            self._open_leg(action.option)
        elif isinstance(action, Disconnect):
            self.leg = None          # the client is the far end: the call core released the leg
        else:   # the profile refuses ringing, reject and refer, so the core never asks
            log.error("the WebSocket transport was asked to %s", type(action).__name__)

    def _open_leg(self, option: CallOption) -> None:
        host = self.host
        sink = LegSink(host.media_event, self.out.send_audio, host.asr_audio)
        now = host.now_ms()
        try:
            self.leg = self.media.add_leg(sink, "stream", option.codec.lower(), now)
        except ValueError as exc:   # CapacityError: every leg is in use
            host.call.connect_failed("media", f"cannot start the call's media: {exc}", now)
            return
        host.call.answered(self.leg, "", now)

    def on_audio(self, data: bytes) -> None:
        leg = self.leg
        if leg is None:
            self.host.call.refuse_audio("audio received before the call was answered (send invite or accept first)",
                                        self.host.now_ms())
            self.host.flush()
            return
        leg.feed(data)
