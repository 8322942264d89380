"""``refer`` as the upstream server does it: a new SIP leg to ``callee``, bridged to the call when it answers.

It works from every call type (a ``/call`` WebSocket call or a phone call alike): the call's own leg
is an engine leg, the transfer leg is a new engine UDP leg, and the engine plays each one's inbound
audio to the other on its tick (same codec and ptime: the payload is relayed as it came; otherwise
decoded, mixed and re-encoded). The call's VAD, ASR and recorder keep running on the call's own leg.

=====================================  ==================================================================
what happens                           the call hears
=====================================  ==================================================================
the callee answers (2xx)               the legs are bridged; ``transfer_done`` (the music on hold stops)
the callee refuses (4xx-6xx)           ``reject`` with the callee's code; the call goes on
no answer within ``options.timeout``   CANCEL to the callee; ``reject`` with code 408; the call goes on
(default 30 s)
the transfer leg hangs up              with ``options.autoHangup`` the call ends (reason ``refer``);
                                       otherwise the bridge goes and the call goes on
the call ends                          the transfer leg is hung up (BYE, or CANCEL while it rings)
=====================================  ==================================================================
"""

from __future__ import annotations

import asyncio
import logging

from pbx.call.media import MediaEvent, RtpTimeout
from pbx.media.rtp_ports import PortsExhausted, RtpSockets
from pbx.protocol import CallOption, ReferCommand
from pbx.server.media import EngineLeg, LegSink, MediaRunner
from pbx.server.sipcalls import SipCalls
from pbx.server.siptransport import add_rtp_leg, capabilities, no_out
from pbx.server.transports import CallHost
from pbx.sip import sdp as sdpmod
from pbx.sip.errors import SipError
from pbx.sip.offer import NegotiationError, accept_answer, build_offer
from pbx.sip.ua import Answered, Ended, Failed, Session, UaEvent

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0


class Transfer:
    """One refer's outbound leg. ``host`` is the call's driver; ``call_leg`` the call's own leg."""

    def __init__(self, host: CallHost, calls: SipCalls, runner: MediaRunner, command: ReferCommand,
                 call_leg: EngineLeg) -> None:
        self.host = host
        self.calls = calls
        self.runner = runner
        self.command = command
        self.options = command.options
        self.call_leg = call_leg
        self.sockets: RtpSockets | None = None
        self.offer: sdpmod.SessionDescription | None = None
        self.session: Session | None = None
        self.leg: EngineLeg | None = None
        self.answered = False
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None

    @property
    def auto_hangup(self) -> bool:
        return self.options is not None and self.options.auto_hangup

    def start(self) -> None:
        """INVITE the callee (after looking up its host name, off the loop); the outcome comes back
        through the call's transfer inputs."""
        self.calls.when_routable(self.command.callee, self._place_if_open, self._unroutable)

    def _place_if_open(self) -> None:
        if not self.closed:             # the call may have ended while the callee's host was looked up
            self._place()
            self.host.flush()

    def _unroutable(self, why: str) -> None:
        if not self.closed:
            self.closed = True
            self.host.call.transfer_failed(None, f"refer to {self.command.callee!r}: {why}", self.host.now_ms())
            self.host.flush()

    def _place(self) -> None:
        now = self.host.now_ms()
        option = CallOption(caller=self.command.caller or None, callee=self.command.callee, codec="pcmu",
                            sip=self.options.sip if self.options is not None else None)
        try:
            self.sockets = self.calls.ports.allocate()
            port = self.sockets.port
            self.offer = build_offer(capabilities(None), self.calls.advertised_host, port,
                                     port * 65536 + 1, 1)
            self.session = self.calls.place(self, option, self.offer.serialize())
        except (PortsExhausted, SipError, ValueError) as exc:
            self._release()
            self.host.call.transfer_failed(None, f"refer to {self.command.callee!r}: {exc}", now)
            return
        finally:
            self.calls.flush()
        timeout = self.options.timeout if self.options is not None and self.options.timeout else DEFAULT_TIMEOUT_S
        self._timer = asyncio.get_running_loop().call_later(timeout, self._no_answer, timeout)

    def _no_answer(self, timeout_s: float) -> None:
        self._timer = None
        if self.answered or self.closed:
            return
        self._hang_up()
        self._release()
        self.host.call.transfer_failed(408, f"no answer from {self.command.callee} within {timeout_s:g} s",
                                       self.host.now_ms())
        self.host.flush()

    # -- the user agent's events (SipCalls routes them here) ----------------------------------------------------
    def on_ua_event(self, event: UaEvent) -> None:
        now = self.host.now_ms()
        call = self.host.call
        if isinstance(event, Answered) and not event.reinvite and not self.answered:
            self.answered = True
            self._cancel_timer()
            error = self._bridge(event.sdp)
            if error is not None:
                self._hang_up()
                self._release()
                call.transfer_failed(488, error, now)
            else:
                call.transfer_done(None, False, now)
        elif isinstance(event, Failed):
            self._cancel_timer()
            self._release()
            if not self.closed:
                call.transfer_failed(event.status, event.reason, now)
        elif isinstance(event, Ended):
            self._cancel_timer()
            self._release()
            if not self.closed:
                self.closed = True
                call.transfer_ended(self.auto_hangup, now)
        self.host.flush()

    def _bridge(self, sdp: bytes) -> str | None:
        if self.offer is None or self.sockets is None:
            return "the transfer leg has no media"
        try:
            n = accept_answer(self.offer, sdpmod.parse(sdp))
        except (NegotiationError, sdpmod.SdpError) as exc:
            return f"the transfer callee's SDP answer is unusable: {exc}"
        sink = LegSink(self._media_event, no_out, _no_asr)
        try:
            self.leg = add_rtp_leg(self.runner, sink, n, self.sockets, self.host.now_ms(), self.calls.rtp_timeout_ms,
                                   latch=self.calls.config.rtp_source == "latch")
        except ValueError as exc:
            return f"cannot start the transfer leg's media: {exc}"
        self.runner.engine.bridge(self.call_leg.leg, self.leg.leg)
        return None

    def _media_event(self, event: MediaEvent) -> None:
        """The transfer leg's media: only its RTP timeout matters (its VAD is off)."""
        if isinstance(event, RtpTimeout) and not self.closed:
            self.close()
            self.host.call.transfer_ended(self.auto_hangup, self.host.now_ms())
            self.host.flush()

    # -- ending ------------------------------------------------------------------------------------------------
    def close(self) -> None:
        """The call ended (or a new refer replaces this one): hang up the transfer leg."""
        if self.closed:
            return
        self.closed = True
        self._cancel_timer()
        self._hang_up()
        self._release()

    def _hang_up(self) -> None:
        session = self.session
        if session is not None and self.calls.ua is not None:
            self.calls.ua.hangup(session, self.calls.now())
            self.calls.unbind(session)
            self.calls.flush()

    def _release(self) -> None:
        leg, self.leg = self.leg, None
        if leg is not None:
            leg.release()
        sockets, self.sockets = self.sockets, None
        if sockets is not None:
            self.calls.ports.release(sockets)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _no_asr(pcm: object) -> None:
    """No recognition on the transfer leg."""
