"""Acting on a peer's REFER (``[sip] accept_refer``): we are the transferee of RFC 3515 / RFC 5589.

The peer (the transferor) asks us to call someone else. We answer its REFER 202, INVITE the target named
in ``Refer-To`` from the call's own RTP port, and tell the transferor how that call goes in NOTIFYs with
``message/sipfrag`` bodies (100 Trying at once, 180 while it rings, the final status). When the target
answers, it takes the transferor's place in the call: the call's engine leg sends to the target's
address, the call's session becomes the new dialog, and the old dialog is ended with BYE (the
transferor usually sends its own BYE as well; whichever comes second is answered 481 or ignored).
Everything else about the call stays: the application's WebSocket, VAD, ASR, recorder and playout.

The new call offers the call's codec and packet time first, and the other codecs after it; when the
target answers with another, the call's engine leg switches to it (``Engine.set_codec``).

=====================================  ==================================================================
what happens                           the transferor is told; the application gets ``other`` events
=====================================  ==================================================================
the target answers                     NOTIFY 200; the call goes on with the target
the target refuses (4xx-6xx)           NOTIFY with its status; the call goes on with the transferor
no answer within 30 s                  CANCEL to the target, NOTIFY 408
the transferor hung up meanwhile       no NOTIFY; if the target does not answer, the call ends
=====================================  ==================================================================

Refused with 603 (and reported): a ``Refer-To`` that is not a ``sip:``/``sips:`` URI, one with embedded
headers (``Replaces``: attended transfer, RFC 3891, is not built), a second REFER while one is going on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pbx.protocol import CallOption, SipOption
from pbx.sip import sdp as sdpmod
from pbx.sip.errors import SipError, SipParseError
from pbx.sip.headers import NameAddr, SipUri
from pbx.sip.offer import AudioCapabilities, Negotiated, NegotiationError, accept_answer, build_offer
from pbx.sip.ua import Answered, Ended, Failed, Progress, Session, UaEvent

if TYPE_CHECKING:
    from pbx.server.sipcalls import SipCalls

ANSWER_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a referred call ended: ``status`` 200 with the new session and stream, else the failure."""

    status: int
    reason: str
    session: Session | None = None
    negotiated: Negotiated | None = None


def refer_target(refer_to: str) -> SipUri:
    """The URI to call from a ``Refer-To`` value; SipParseError (with why) for one we do not act on."""
    uri = NameAddr.parse(refer_to).uri
    if not isinstance(uri, SipUri) or uri.scheme not in ("sip", "sips") or not uri.host:
        raise SipParseError(f"Refer-To {refer_to!r} is not a sip: URI")
    if uri.headers:
        raise SipParseError(f"Refer-To {refer_to!r} carries headers ({', '.join(uri.headers)}): attended "
                            "transfer (Replaces) is not supported")
    return uri


class ReferredCall:
    """The call a peer's accepted REFER asked for. ``done`` hears the outcome once."""

    def __init__(self, calls: SipCalls, transferor: Session, target: SipUri, caps: AudioCapabilities,
                 address: tuple[str, int, int, int], done: Callable[[Outcome], None],
                 referred_by: str | None = None) -> None:
        self.calls = calls
        self.transferor = transferor
        self.target = target
        self.caps = caps
        self.host, self.port, self.session_id, self.version = address
        self.done = done
        self.referred_by = referred_by
        self.session: Session | None = None
        self.offer: sdpmod.SessionDescription | None = None
        self.finished = False
        self._ringing_told = False
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._notify(100, "Trying")
        self.calls.when_routable(str(self.target), self._place, lambda why: self._finish(Outcome(503, why)),
                                 ipv6=":" in self.host)

    def _place(self) -> None:
        if self.finished:
            return
        local = self.transferor.dialog.local_party.uri if self.transferor.dialog is not None else None
        headers = {"Referred-By": self.referred_by} if self.referred_by else None
        option = CallOption(caller=str(local) if local is not None else None, callee=str(self.target),
                            sip=SipOption(headers=headers) if headers else None)
        try:
            self.offer = build_offer(self.caps, self.host, self.port, self.session_id, self.version)
            self.session = self.calls.place(self, option, self.offer.serialize(), ipv6=":" in self.host)
        except (SipError, ValueError) as exc:
            self._finish(Outcome(503, f"cannot call {self.target}: {exc}"))
            return
        self._timer = asyncio.get_running_loop().call_later(ANSWER_TIMEOUT_S, self._no_answer)
        self.calls.flush()

    def _no_answer(self) -> None:
        self._timer = None
        self._hang_up()
        self._finish(Outcome(408, f"no answer from {self.target} within {ANSWER_TIMEOUT_S:g} s"))

    # -- the target's call (SipCalls routes its events here) ------------------------------------------------
    def on_ua_event(self, event: UaEvent) -> None:
        if self.finished:
            return
        if isinstance(event, Progress) and not self._ringing_told:
            self._ringing_told = True
            self._notify(180, "Ringing")
        elif isinstance(event, Answered) and not event.reinvite:
            self._answered(event.session, event.sdp)
        elif isinstance(event, Failed):
            self._finish(Outcome(event.status, event.reason))
        elif isinstance(event, Ended):          # gone before we took it over (timeout, the target's BYE)
            self._finish(Outcome(408 if event.reason == "timeout" else 487, f"the call to {self.target} ended"))

    def _answered(self, session: Session, sdp: bytes) -> None:
        try:
            if self.offer is None:
                raise NegotiationError("no offer was sent")
            negotiated = accept_answer(self.offer, sdpmod.parse(sdp))
        except (NegotiationError, sdpmod.SdpError) as exc:
            self._hang_up()
            self._finish(Outcome(488, f"{self.target} answered with unusable SDP: {exc}"))
            return
        self._finish(Outcome(200, "OK", session, negotiated))

    # -- ending --------------------------------------------------------------------------------------------
    def close(self) -> None:
        """The call ended first: give the target's call up (CANCEL or BYE) and tell the transferor."""
        if not self.finished:
            self._hang_up()
            self._finish(Outcome(487, "Request Terminated"), tell_owner=False)

    def _hang_up(self) -> None:
        session, self.session = self.session, None
        if session is not None and self.calls.ua is not None:
            self.calls.ua.hangup(session, self.calls.now())
            self.calls.unbind(session)

    def _finish(self, outcome: Outcome, *, tell_owner: bool = True) -> None:
        if self.finished:
            return
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._notify(outcome.status, "OK" if outcome.status == 200 else _reason_line(outcome.reason))
        if tell_owner:
            self.done(outcome)
        self.calls.flush()

    def _notify(self, status: int, reason: str) -> None:
        if self.calls.ua is not None:
            self.calls.ua.notify_refer(self.transferor, status, reason, self.calls.now())
            self.calls.flush()


def _reason_line(reason: str) -> str:
    """A reason phrase safe for a sipfrag status line: one line, printable, short."""
    text = " ".join("".join(c if c.isprintable() else " " for c in reason).split())
    return text[:120] or "Failed"
