"""``/call/sip``: a phone call's transport. SIP signalling through the server's user agent, media on an
engine UDP leg (RTP and RTCP in compiled code: no Python per packet).

One :class:`SipTransport` per call carries out the call core's signalling actions in SIP and reports
the user agent's events back to the core:

=====================  ==========================================  ======================================
call core action       SIP                                         reported back
=====================  ==========================================  ======================================
``Connect`` (invite)   INVITE with our SDP offer (through a trunk  180 -> ``remote_ringing``; 183 + SDP
                       when the callee matches one)                -> early media leg; 2xx -> ``answered``;
                                                                   4xx-6xx -> ``rejected``
``Ring``               180, or 183 with our SDP answer            ``early_media`` (the leg for the ringtone)
``Answer`` (accept)    200 OK with our SDP answer                  ``answered``
``Reject``             the final response asked for (default 486)  the call ends
``Disconnect``         BYE, CANCEL, or 603 for an inbound call     --
                       nobody decided on
=====================  ==========================================  ======================================

The peer's BYE or CANCEL is ``remote_hangup``; its re-INVITE (hold, a codec or address change) is
answered from the same capabilities and reported as an ``other`` event; its REFER, with ``[sip]
accept_refer``, hands the call to the target it names (:mod:`pbx.server.referred`); SIP INFO DTMF
(``application/dtmf-relay``, ``application/dtmf``) becomes the same ``dtmf`` event as RFC 4733.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pbx.call.actions import Answer, Connect, Disconnect, Refer, Reject, Ring
from pbx.call.media import Dtmf
from pbx.call.transport import TransportProfile
from pbx.errors import ProtocolError
from pbx.media.rtp_ports import PortsExhausted, RtpPortPool, RtpSockets
from pbx.protocol import CallOption, HangupReason, Initiator, ReferCommand
from pbx.server.media import CapacityError, EngineLeg, LegSink, MediaRunner
from pbx.server.referred import Outcome, ReferredCall, refer_target
from pbx.server.transports import MEDIA_COMMANDS, CallHost, SignallingAction
from pbx.sip import sdp as sdpmod
from pbx.sip.dial_allow import dial_refusal
from pbx.sip.errors import SipError
from pbx.sip.headers import SipUri
from pbx.sip.offer import (
    AudioCapabilities,
    Negotiated,
    NegotiationError,
    accept_answer,
    answer_offer,
    build_offer,
    offer_is_ipv6,
)
from pbx.sip.ua import (
    Answered,
    Ended,
    Failed,
    Info,
    Notified,
    Progress,
    ReferAnswered,
    Referred,
    ReInvite,
    Session,
    UaEvent,
)

if TYPE_CHECKING:
    from pbx.server.sipcalls import SipCalls

log = logging.getLogger(__name__)

SIP_CODECS = ("pcmu", "pcma", "g722", "opus")
RTCP_INTERVAL_MS = 5_000.0
DTMF_RELAY = re.compile(r"(?im)^\s*signal\s*=\s*([0-9A-D*#])\s*$")


def _check_sip_option(command: str, option: CallOption) -> None:
    if option.codec and option.codec.lower() not in (*SIP_CODECS, "pcm"):
        raise ProtocolError(f"{command}.option.codec: {option.codec!r} is not a SIP codec; "
                            "use pcmu, pcma, g722 or opus")
    if command == "invite" and not option.callee:
        raise ProtocolError("invite.option.callee: a SIP call needs a callee (a sip: URI or a number a trunk takes)")


SIP_PROFILE = TransportProfile(
    call_type="sip",
    carries=MEDIA_COMMANDS | {"invite", "accept", "ringing", "reject", "refer", "dtmf"},
    not_carried="{command} is not supported on /call/sip calls",
    check_option=_check_sip_option,
)


def capabilities(option: CallOption | None) -> AudioCapabilities:
    """Our codecs in order of preference: the call's codec first (``pcm`` means no preference)."""
    return preferring(option.codec.lower() if option is not None and option.codec else "pcmu")


def preferring(codec: str, ptime: int = 20) -> AudioCapabilities:
    """Every SIP codec, ``codec`` first (when it is one)."""
    order = [codec] if codec in SIP_CODECS else []
    order += [c for c in SIP_CODECS if c not in order]
    return AudioCapabilities(codecs=tuple(order), dtmf=True, ptime=ptime)


def dtmf_from_info(content_type: str, body: bytes) -> str | None:
    """The key of a SIP INFO (``application/dtmf-relay``: ``Signal=5``; ``application/dtmf``: ``5``)."""
    kind = content_type.split(";")[0].strip().lower()
    text = body.decode("latin-1", "replace")
    if kind == "application/dtmf-relay":
        match = DTMF_RELAY.search(text)
        return match.group(1).upper() if match else None
    if kind == "application/dtmf":
        key = text.strip().upper()
        return key if re.fullmatch(r"[0-9A-D*#]", key) else None
    return None


@dataclass(slots=True)
class Media:
    """The call's RTP: its ports, the negotiated stream, the engine leg once there is one."""

    sockets: RtpSockets
    pool: RtpPortPool            # the sockets go back there
    host: str                    # our address in the SDP (of the stream's family)
    session_id: int
    version: int = 1
    negotiated: Negotiated | None = None
    leg: EngineLeg | None = None
    offer: sdpmod.SessionDescription | None = None    # ours, on an outbound call
    local_sdp: bytes = b""                              # our answer, on an inbound call


class SipTransport:
    profile = SIP_PROFILE

    def __init__(self, host: CallHost, calls: SipCalls, media_runner: MediaRunner,
                 dialog_id: str | None = None) -> None:
        self.host = host
        self.calls = calls
        self.runner = media_runner
        self.media: Media | None = None
        self.option: CallOption | None = None
        self.answered = False
        self._disconnected = False
        self._referring = False          # a REFER we sent waits for its final NOTIFY
        self._refer_auto_hangup = False
        self._referral: ReferredCall | None = None     # a peer's REFER we act on
        self._transferor_gone = False
        # inbound: the pending INVITE the application connected for (?id=<dialogId>)
        self.session: Session | None = calls.claim(dialog_id, self) if dialog_id else None

    # -- the call core's actions ------------------------------------------------------------------------
    def carry_out(self, action: SignallingAction) -> None:
        try:
            if isinstance(action, Connect):
                self._connect(action.option)
            elif isinstance(action, Ring):
                self._ring(action.early_media)
            elif isinstance(action, Answer):
                self._answer(action.option)
            elif isinstance(action, Reject):
                self._reject(action.code or 486, action.reason or "Busy Here")
            elif isinstance(action, Disconnect):
                self._disconnect()
            elif isinstance(action, Refer):
                self._refer(action.command)
        finally:
            self.calls.flush()

    def on_audio(self, data: bytes) -> None:
        self.host.call.refuse_audio("binary audio is only accepted on /call, not on sip calls", self.host.now_ms())
        self.host.flush()

    def start(self) -> None:
        """The control socket is up: on an inbound call, tell the client what is calling."""
        session = self.session
        if session is None:
            return
        request = session.invite
        self.host.call.incoming(str(request.from_.uri), str(request.to.uri),
                                request.body.decode("utf-8", "replace"), self.host.now_ms())
        self.host.flush()

    # -- outbound -------------------------------------------------------------------------------------------
    def _connect(self, option: CallOption) -> None:
        self.option = option
        self.calls.when_routable(option.callee or "", lambda: self._place_if_wanted(option), self._unroutable,
                                 ipv6=self.calls.family_for(option.enable_ipv6))

    def _place_if_wanted(self, option: CallOption) -> None:
        if not self._disconnected:      # the call may have ended while the callee's host was looked up
            self._place(option)
            self.host.flush()

    def _unroutable(self, why: str) -> None:
        if not self._disconnected:
            self.host.call.connect_failed("sip", f"cannot place the call: {why}", self.host.now_ms())
            self.host.flush()

    def _place(self, option: CallOption) -> None:
        now = self.host.now_ms()
        ipv6 = self.calls.family_for(option.enable_ipv6)
        try:
            media = self._open_media(ipv6)
            offer = build_offer(capabilities(option), media.host, media.sockets.port, media.session_id, media.version)
            self.session = self.calls.place(self, option, offer.serialize(), ipv6=ipv6)
            media.offer = offer
        except (PortsExhausted, CapacityError) as exc:
            self._close_media()
            self.host.call.connect_failed("media", f"cannot start the call's media: {exc}", now)
            return
        except (SipError, ValueError) as exc:
            self._close_media()
            self.host.call.connect_failed("sip", f"cannot place the call: {exc}", now)

    # -- inbound ---------------------------------------------------------------------------------------------
    def _negotiate_inbound(self, option: CallOption | None) -> bytes | None:
        """Our SDP answer to the INVITE's offer (the same one for a 183 and the 200); None if it failed
        (the INVITE is then answered 488 and the call ends)."""
        session = self.session
        assert session is not None
        media = self.media
        if media is not None and media.negotiated is not None:
            return media.local_sdp
        try:
            offer = sdpmod.parse(session.remote_sdp)
            media = self._open_media(offer_is_ipv6(offer))
            answer, negotiated = answer_offer(offer, capabilities(option), media.host, media.sockets.port,
                                              media.session_id, media.version)
        except (NegotiationError, ProtocolError) as exc:
            self._close_media()
            self.calls.agent.reject(session, 488, "Not Acceptable Here", self.calls.now())
            why = "no codec in common" if isinstance(exc, NegotiationError) else "no media address of its family"
            self.host.call.rejected(488, f"{why}: {exc}", self.host.now_ms())
            return None
        except (PortsExhausted, CapacityError) as exc:
            self._close_media()
            self.calls.agent.reject(session, 503, "Service Unavailable", self.calls.now())
            self.host.call.connect_failed("media", f"cannot start the call's media: {exc}", self.host.now_ms())
            return None
        except sdpmod.SdpError as exc:
            self._close_media()
            self.calls.agent.reject(session, 400, "Bad SDP", self.calls.now())
            self.host.call.rejected(400, f"the caller's SDP offer is invalid: {exc}", self.host.now_ms())
            return None
        media.negotiated = negotiated
        media.local_sdp = answer.serialize()
        return media.local_sdp

    def no_decision(self, timeout_s: float) -> None:
        """The INVITE waited ``decision_timeout_secs`` for ringing/accept/reject: it was answered 408."""
        self.host.call.rejected(408, f"no ringing, accept or reject within {timeout_s:g} s "
                                     "(webhook.decision_timeout_secs)", self.host.now_ms())
        self._close_media()
        self.host.flush()

    def _ring(self, early_media: bool) -> None:
        session = self.session
        if session is None:     # as accept: the upstream server's answer when nothing is pending
            self.host.call.rejected(486, "no pending call", self.host.now_ms())
            return
        self.calls.decided(session)
        if not early_media:
            self.calls.agent.ring(session, self.calls.now())
            return
        local = self._negotiate_inbound(self.option)
        if local is None:
            return
        self.calls.agent.ring(session, self.calls.now(), local)
        leg = self._open_leg()
        if leg is not None:
            self.host.call.early_media(leg, self.host.now_ms())

    def _answer(self, option: CallOption) -> None:
        session = self.session
        now = self.host.now_ms()
        if session is None:
            self.host.call.rejected(486, "no pending call", now)
            return
        self.option = option
        self.calls.decided(session)
        local = self._negotiate_inbound(option)
        if local is None:
            return
        self.calls.agent.answer(session, local, self.calls.now())
        self.answered = True
        leg = self._open_leg() if self.media is not None and self.media.leg is None else None
        self.host.call.answered(leg, local.decode(), now)

    def _reject(self, code: int, reason: str) -> None:
        if self.session is not None:
            self.calls.decided(self.session)
            self.calls.agent.reject(self.session, code, reason, self.calls.now())
        self._close_media()

    def _disconnect(self) -> None:
        self._disconnected = True
        if self._referral is not None:
            self._referral.close()
            self._referral = None
        session = self.session
        if session is not None:
            if session.role.value == "uas" and not self.answered:
                self.calls.agent.reject(session, 603, "Decline", self.calls.now())   # nobody decided
            else:
                self.calls.agent.hangup(session, self.calls.now())
            self.calls.unbind(session)
        self._close_media()

    # -- the user agent's events -------------------------------------------------------------------------------
    def on_ua_event(self, event: UaEvent) -> None:
        call = self.host.call
        now = self.host.now_ms()
        if isinstance(event, Progress):
            if event.sdp and self._accept_remote(event.sdp):
                call.remote_ringing(True, self._open_leg(), now)
            else:
                call.remote_ringing(False, None, now)
        elif isinstance(event, Answered):
            if self.answered:                   # the answer to our re-INVITE
                return
            self.answered = True
            if not self._accept_remote(event.sdp):
                self.calls.agent.hangup(event.session, self.calls.now())
                call.rejected(488, "the callee's SDP answer has no codec we offered", now)
                self._close_media()
                return
            leg = self._open_leg() if self.media is not None and self.media.leg is None else None
            call.answered(leg, event.sdp.decode("utf-8", "replace"), now)
        elif isinstance(event, Failed):
            if event.status == 408 and event.reason == "Request Timeout":
                call.rejected(408, "no answer from the callee (SIP timeout)", now)
            else:
                call.rejected(event.status, event.reason, now)
            self._close_media()     # after the core released the leg: its sockets go last
        elif isinstance(event, Ended) and self._referral is not None and event.session is self.session:
            self._transferor_gone = True      # it hung up after its REFER: the referred call decides
        elif isinstance(event, Ended):
            initiator = Initiator.CALLEE if event.session.role.value == "uac" else Initiator.CALLER
            reason = HangupReason.CANCELED if event.reason == "cancel" else HangupReason.REMOTE_HANGUP
            call.remote_hangup(initiator.value, now, reason.value)
            self._close_media()
        elif isinstance(event, ReInvite):
            self._reinvited(event)
        elif isinstance(event, Info):
            key = dtmf_from_info(event.content_type, event.body)
            leg = self.media.leg if self.media is not None else None
            if key is not None and leg is not None:
                call.media_event(Dtmf(int(now - leg.start_ms), key), now)
            elif key is None:
                call.notice("sip", {"method": "INFO", "contentType": event.content_type,
                                    "body": event.body[:1024].decode("utf-8", "replace")}, now)
        elif isinstance(event, Referred):
            self._referred(event)
        elif isinstance(event, Notified):
            frag = event.body[:1024].decode("utf-8", "replace")
            call.notice("sip", {"method": "NOTIFY", "event": event.event, "sipfrag": frag}, now)
            status = sipfrag_status(frag) if event.event.lower().startswith("refer") else None
            if status is not None and status >= 200 and self._referring:
                self._referring = False
                if status < 300:
                    call.transfer_done(None, self._refer_auto_hangup, now)
                else:
                    call.transfer_failed(status, frag.split("\n", 1)[0].strip(), now)
        elif isinstance(event, ReferAnswered) and event.status >= 300 and self._referring:
            self._referring = False
            call.transfer_failed(event.status, f"the peer refused the REFER: {event.reason}", now)
        self.host.flush()

    # -- a peer's REFER (accept_refer): we call its target, who takes its place (pbx.server.referred) -------------
    def _referred(self, event: Referred) -> None:
        now = self.host.now_ms()
        try:
            target, media, negotiated = self._referral_target(event.refer_to)
        except SipError as exc:
            self.calls.agent.respond_refer(event.session, event.request, False, self.calls.now())
            self.host.call.notice("sip", {"method": "REFER", "referTo": event.refer_to, "accepted": False,
                                          "refused": str(exc)}, now)
            return
        self.calls.agent.respond_refer(event.session, event.request, True, self.calls.now())
        self.host.call.notice("sip", {"method": "REFER", "referTo": event.refer_to, "accepted": True}, now)
        self._transferor_gone = False
        media.version += 1
        self._referral = ReferredCall(
            self.calls, event.session, target, preferring(negotiated.codec, negotiated.ptime),
            (media.host, media.sockets.port, media.session_id, media.version),
            self._referral_done, referred_by=event.request.headers.get("Referred-By"))
        self._referral.start()

    def _referral_target(self, refer_to: str) -> tuple[SipUri, Media, Negotiated]:
        """The URI the peer's REFER asks us to call, and the call's media it will take over; SipError
        saying why we will not."""
        if not self.calls.config.accept_refer:
            raise SipError("[sip] accept_refer is off")
        if self._referral is not None:
            raise SipError("a REFER is being acted on already")
        media = self.media
        if not self.answered or media is None or media.negotiated is None or media.leg is None:
            raise SipError("the call is not connected")
        return refer_target(refer_to), media, media.negotiated

    def _referral_done(self, outcome: Outcome) -> None:
        referral, self._referral = self._referral, None
        now = self.host.now_ms()
        target = str(referral.target) if referral is not None else ""
        self.host.call.notice("sip", {"method": "REFER", "referTo": target, "status": outcome.status,
                                      "reason": outcome.reason}, now)
        if outcome.session is not None and outcome.negotiated is not None:
            self._take_over(outcome.session, outcome.negotiated)
        elif self._transferor_gone:
            self.host.call.remote_hangup(Initiator.CALLEE.value if self._is_uac() else Initiator.CALLER.value, now,
                                         HangupReason.REMOTE_HANGUP.value)
            self._close_media()
        self.host.flush()

    def _take_over(self, session: Session, negotiated: Negotiated) -> None:
        """The referred call answered: it replaces the transferor's dialog on the call's RTP leg."""
        old, self.session = self.session, session
        self.calls.bind(session, self)
        self._use_stream(negotiated)
        if old is not None and not self._transferor_gone:
            self.calls.unbind(old)
            self.calls.agent.hangup(old, self.calls.now())

    def _is_uac(self) -> bool:
        return self.session is not None and self.session.role.value == "uac"

    # -- refer_mode = "sip": a real REFER (RFC 3515) ---------------------------------------------------------
    def refers_itself(self) -> bool:
        return self.calls.config.refer_mode == "sip"

    def _refer(self, command: ReferCommand) -> None:
        """Ask the peer to call ``callee``; NOTIFY sipfrags report its progress (``other`` events), the
        final one finishes the refer (2xx: done, with ``autoHangup`` the call ends; else ``reject``)."""
        now = self.host.now_ms()
        session = self.session
        refused = dial_refusal(self.calls.config.dial_allow, command.callee)
        if refused is not None:         # the peer would dial it for us: the same allowlist
            self.host.call.transfer_done(f"refer: {refused}", False, now)
            return
        try:
            sent = session is not None and self.calls.agent.refer(session, command.callee, self.calls.now(),
                                                                  referred_by=command.caller or None)
        except SipError as exc:
            self.host.call.transfer_done(f"refer: {exc}", False, now)
            return
        if not sent:
            self.host.call.transfer_done("refer: the SIP call is not connected", False, now)
            return
        self._referring = True
        self._refer_auto_hangup = command.options is not None and command.options.auto_hangup

    def _reinvited(self, event: ReInvite) -> None:
        media = self.media
        now = self.host.now_ms()
        if media is None or not event.sdp:
            self.calls.agent.answer_reinvite(event.session, None, self.calls.now())
            return
        try:
            media.version += 1
            answer, negotiated = answer_offer(sdpmod.parse(event.sdp), capabilities(self.option), media.host,
                                              media.sockets.port, media.session_id, media.version)
        except (NegotiationError, sdpmod.SdpError) as exc:
            self.calls.agent.answer_reinvite(event.session, None, self.calls.now())
            self.host.call.notice("sip", {"method": "INVITE", "refused": str(exc)}, now)
            return
        previous = media.negotiated
        self._use_stream(negotiated)
        self.calls.agent.answer_reinvite(event.session, answer.serialize(), self.calls.now())
        held = negotiated.on_hold
        was_held = previous.on_hold if previous is not None else False
        self.host.call.notice("sip", {"method": "INVITE", "hold": held, "resumed": was_held and not held,
                                      "codec": negotiated.codec}, now)

    # -- media --------------------------------------------------------------------------------------------------
    def _use_stream(self, negotiated: Negotiated) -> None:
        """Point the call's engine leg at a new offer/answer's stream: the peer's address, its hold, and
        the codec when that changed (the leg keeps its VAD, recorder and playout)."""
        media = self.media
        if media is None:
            return
        previous, media.negotiated = media.negotiated, negotiated
        if media.leg is None:
            return
        engine, leg = self.runner.engine, media.leg.leg
        if previous is None or stream_format(previous) != stream_format(negotiated):
            engine.set_codec(leg, negotiated.codec, payload_type=negotiated.payload_type,
                             dtmf_payload_type=negotiated.dtmf_payload_type, ptime_ms=negotiated.ptime)
        engine.set_remote(leg, (negotiated.address, negotiated.port))
        engine.set_rtp_timeout(leg, 0.0 if negotiated.on_hold else self.calls.rtp_timeout_ms)

    def _open_media(self, ipv6: bool) -> Media:
        """The call's RTP ports, of the stream's address family (ProtocolError if the server has none)."""
        if self.media is None:
            host, pool = self.calls.media_side(ipv6)
            sockets = pool.allocate()
            self.media = Media(sockets, pool, host,
                               session_id=int.from_bytes(sockets.port.to_bytes(2, "big") * 3, "big"))
        return self.media

    def _accept_remote(self, sdp: bytes) -> bool:
        """Our offer's answer (183 or 200): the stream to use, or False if it names none we offered."""
        media = self.media
        if media is None:
            return False
        try:
            if media.offer is None:
                raise NegotiationError("no offer was sent")
            negotiated = accept_answer(media.offer, sdpmod.parse(sdp))
        except (NegotiationError, sdpmod.SdpError) as exc:
            log.info("sip call %s: unusable SDP answer: %s", self.host.call.id, exc)
            return False
        self._use_stream(negotiated)        # the 200's answer may differ from the 183's
        return True

    def _open_leg(self) -> EngineLeg | None:
        media = self.media
        if media is None or media.negotiated is None or media.leg is not None:
            return None
        n = media.negotiated
        host = self.host
        sink = LegSink(host.media_event, no_out, host.asr_audio)
        try:
            media.leg = add_rtp_leg(self.runner, sink, n, media.sockets, host.now_ms(),
                                    0.0 if n.on_hold else self.calls.rtp_timeout_ms,
                                    latch=self.calls.config.rtp_source == "latch")
        except ValueError as exc:
            host.call.connect_failed("media", f"cannot start the call's media: {exc}", host.now_ms())
            return None
        return media.leg

    def _close_media(self) -> None:
        media, self.media = self.media, None
        if media is None:
            return
        # the leg itself is the call core's to release (it detaches the recording first)
        media.pool.release(media.sockets)


def sipfrag_status(frag: str) -> int | None:
    """The status of a ``message/sipfrag`` status line (``SIP/2.0 180 Ringing``), or None."""
    parts = frag.split(None, 2)
    if len(parts) >= 2 and parts[0].upper() == "SIP/2.0" and parts[1].isdigit():
        return int(parts[1])
    return None


def add_rtp_leg(runner: MediaRunner, sink: LegSink, n: Negotiated, sockets: RtpSockets, now_ms: float,
                rtp_timeout_ms: float, *, latch: bool = True) -> EngineLeg:
    """The engine UDP leg of a negotiated RTP stream on ``sockets``: symmetric RTP (latching), RTCP on
    the next port; without ``latch`` (``[sip] rtp_source = "sdp"``) RTP is taken only from the SDP's
    address and port. ValueError (CapacityError) when the engine is full."""
    return runner.add_leg(sink, "udp", n.codec, now_ms, payload_type=n.payload_type,
                          dtmf_payload_type=n.dtmf_payload_type, ptime_ms=n.ptime, fd=sockets.rtp.fileno(),
                          remote=(n.address, n.port), latch=latch, rtp_timeout_ms=rtp_timeout_ms,
                          rtcp_interval_ms=RTCP_INTERVAL_MS, rtcp_fd=sockets.rtcp.fileno())


def stream_format(n: Negotiated) -> tuple[str, int, int, int]:
    """What an engine leg is built for: codec, payload type, telephone-event's, packet time."""
    return n.codec, n.payload_type, n.dtmf_payload_type, n.ptime


def no_out(data: bytes) -> None:
    """A UDP leg sends its own packets: nothing is drained to Python."""
