"""The SIP user agent, sans-I/O: calls (INVITE sessions) on top of transactions and dialogs.

Inputs: :meth:`UserAgent.receive` (a parsed message, its source address, the time),
:meth:`UserAgent.handle_timer`, and the call-control methods (:meth:`invite`, :meth:`ring`,
:meth:`answer`, :meth:`reject`, :meth:`hangup`, :meth:`answer_reinvite`, :meth:`reinvite`,
:meth:`respond_refer`, :meth:`send_info`). Outputs: :meth:`events` (what the calls' owners must hear),
:meth:`datagrams_to_send` and :meth:`get_timer`. No sockets, no clock, no asyncio: :mod:`pbx.server.sipnet`
moves the bytes.

Rules (RFC 3261 unless noted):

- An outbound call (UAC) sends INVITE through a client transaction. Provisional responses other than 100
  become :class:`Progress` (with the SDP of a 183); a 2xx becomes :class:`Answered` after
  the UA sent its ACK (§13.2.2.4: the ACK of a 2xx is the UA's, not the transaction's; a retransmitted 2xx
  gets the same ACK again, for 64*T1 + T4 after the first); 401/407 with credentials is answered with a new
  INVITE carrying the digest (§22.2, RFC 8760), at most ``MAX_AUTH_ATTEMPTS`` times; any other final
  response is :class:`Failed`, and so is Timer B (408). A 2xx that cannot make a
  dialog (no Contact, no To tag, a route set that does not parse) is still ACKed, then ended with BYE, and
  the call is :class:`Failed` 502. A 2xx from another fork once the call is answered is ACKed and ended
  with BYE (§13.2.2.4).
- An inbound INVITE outside any dialog becomes :class:`Incoming`; its owner answers with
  :meth:`ring` (180, or 183 with SDP), :meth:`answer` (200 with SDP) or :meth:`reject`. The UA
  retransmits its 2xx from T1 doubling to T2 until the ACK comes (§13.3.1.4); with no ACK after
  64*T1 it sends BYE and the call ends (``ack_timeout``).
- :meth:`hangup` sends BYE on a confirmed call (once our 2xx is ACKed, §15), CANCEL on an outbound one
  still ringing (after its first provisional response, §9.1: until then the CANCEL waits; with no final
  response 64*T1 after the CANCEL the call is forgotten), and 487 on an inbound one not yet answered. The
  owner gets no event for its own hangup; the UA finishes the exchange (a 2xx that crosses the CANCEL is
  ACKed and ended with BYE).
- A peer's BYE or CANCEL ends the call (:class:`Ended`, ``reason`` "bye" or "cancel"; the INVITE still
  unanswered gets 487); a re-INVITE is :class:`ReInvite` and waits for :meth:`answer_reinvite` (a second
  one meanwhile gets 500 with Retry-After, one that crosses ours 491, §14.2); INFO is :class:`Info`
  (answered 200); REFER is :class:`Referred` (answered by :meth:`respond_refer`, the progress of the call it
  asks for reported by :meth:`notify_refer`); NOTIFY is answered 200
  and reported as :class:`Notified`; UPDATE without a body (a session refresh) is answered 200, with one
  488; OPTIONS is answered 200 in or out of a dialog.
- Our re-INVITE (:meth:`reinvite`, one at a time, §14.1) is answered with :class:`Answered` whose
  ``reinvite`` is True; a refusal leaves the call as it was. When a request of ours in the dialog (a
  re-INVITE, INFO) gets 408 or times out, the call ends with BYE (``timeout``); when it gets 481 the peer
  has no such call any more and the call ends (``gone``, by the peer) (§12.2.1.2).
- Every request (ACK aside) must pass :func:`~pbx.sip.message.check_request` with the methods we serve:
  one that fails is answered statelessly with the status its error names (400, 416, 420, 505, ...; 405
  with Allow for a method SIP defines that we do not serve, 501 for one it does not define, §8.2.1); an
  ACK that fails is dropped. A request in no dialog we know (wrong Call-ID or tags) gets 481, one whose
  CSeq goes backwards 500 (§12.2.2).
- With :attr:`UserAgent.auth` set (``[sip] users``, :mod:`pbx.sip.registrar`), an INVITE or REGISTER outside a
  dialog must authenticate first (401 challenges, 403 when the guard blocks a brute force) and REGISTER is
  served by :attr:`UserAgent.registrar`; without it REGISTER is 405 like any method we do not serve.
- :meth:`receive` never raises for what the peer sent. A response without a readable Via, CSeq, Call-ID,
  From or To is dropped and counted in :attr:`UserAgent.dropped`, like an ACK that fails its checks or a
  request without Via (nowhere to answer).
- Not built: delayed offer (an INVITE without SDP is answered 488 Not Acceptable Here), PRACK
  (100rel), UPDATE offers, several early dialogs (the first one wins), strict routing, REFER with an
  ``id`` (several subscriptions in one dialog), retrying a re-INVITE refused 491.
"""

from __future__ import annotations

import contextlib
import enum
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pbx.sip.dialog import Dialog, DialogError, DialogState
from pbx.sip.digest import Credentials, DigestError, authorization, best_challenge
from pbx.sip.errors import SipParseError
from pbx.sip.headers import NameAddr, SipUri
from pbx.sip.message import Headers, Request, Response, check_request, response_for_error, response_to
from pbx.sip.registrar import AUTHENTICATED_METHODS, Answer, InboundAuth, Registrar
from pbx.sip.registration import Registration, RegistrationState
from pbx.sip.session_timer import MIN_SE, end_at, session_expires, supports_timer
from pbx.sip.timers import TimerConfig
from pbx.sip.transaction import (
    AckReceived,
    ClientTransaction,
    Event,
    RequestReceived,
    ResponseReceived,
    ServerInviteTransaction,
    ServerTransaction,
    StrayResponse,
    TransactionLayer,
    TransactionTimeout,
)

Address = tuple[str, int]
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, UPDATE"
ALLOWED_METHODS = tuple(ALLOW.split(", "))
MAX_AUTH_ATTEMPTS = 2


class Role(enum.Enum):
    UAC = "uac"
    UAS = "uas"


class SessionState(enum.Enum):
    CALLING = "calling"          # INVITE sent / received, no final response
    EARLY = "early"              # a provisional with a To tag
    CONFIRMED = "confirmed"      # 2xx sent or received
    ENDED = "ended"


@dataclass(eq=False, slots=True)
class Session:
    """One call's signalling: the INVITE, its dialog, the offer and answer."""

    id: str                                  # the dialogId the application names the call by
    role: Role
    invite: Request                          # the INVITE that made the call (ours: the latest, with credentials)
    peer: Address                            # where requests of this call go (next hop)
    reliable: bool = False
    state: SessionState = SessionState.CALLING
    dialog: Dialog | None = None
    local_sdp: bytes = b""                   # the SDP of ours in effect
    remote_sdp: bytes = b""
    local_tag: str = ""
    transaction: ClientTransaction | ServerTransaction | None = None    # the transaction of ``invite``
    credentials: Credentials | None = None
    auth_attempts: int = 0
    cancel_pending: bool = False             # hangup before the first provisional: CANCEL when one comes
    provisional_seen: bool = False
    ok: Response | None = None               # our 2xx, retransmitted until the ACK
    ok_next: float = 0.0
    ok_interval: float = 0.0
    ok_deadline: float = 0.0
    pending_reinvite: ServerTransaction | None = None     # the peer's re-INVITE, waiting for answer_reinvite
    headers: dict[str, str] = field(default_factory=dict)
    reinvite_transaction: ClientTransaction | None = None  # our re-INVITE, until its final response
    bye_after_ack: bool = False              # hung up before the ACK of our 2xx: BYE when it comes (§15)
    forget_at: float | None = None           # hung up with CANCEL: give up on a final response then (§9.1)
    session_expires: int = 0                 # RFC 4028 interval in force (0: no session timer)
    expires_at: float | None = None          # not refreshed by then: BYE (pbx.sip.session_timer)

    @property
    def call_id(self) -> str:
        return self.invite.call_id


# -- events -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Incoming:
    session: Session
    request: Request


@dataclass(frozen=True, slots=True)
class Progress:
    session: Session
    status: int
    reason: str
    sdp: bytes                   # b"" unless early media (183 with SDP)


@dataclass(frozen=True, slots=True)
class Answered:
    session: Session
    sdp: bytes
    reinvite: bool = False       # the answer to our re-INVITE, not to the call's INVITE


@dataclass(frozen=True, slots=True)
class Failed:
    session: Session
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Ended:
    session: Session
    reason: str                  # "bye", "cancel", "timeout", "ack_timeout", "gone" (481 to ours), "local"
    by_peer: bool


@dataclass(frozen=True, slots=True)
class ReInvite:
    session: Session
    sdp: bytes


@dataclass(frozen=True, slots=True)
class Info:
    session: Session
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Referred:
    session: Session
    request: Request
    refer_to: str


@dataclass(frozen=True, slots=True)
class Notified:
    session: Session
    event: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Registered:
    registration: Registration
    expires: int                 # seconds the registrar granted


@dataclass(frozen=True, slots=True)
class RegistrationFailed:
    registration: Registration
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReferAnswered:
    session: Session
    status: int                  # the final response to our REFER (408: none came)
    reason: str


UaEvent = Incoming | Progress | Answered | Failed | Ended | ReInvite | Info | Referred | Notified | ReferAnswered
RegistrationEvent = Registered | RegistrationFailed


def random_token(n: int = 8) -> str:
    return os.urandom(n).hex()


def _sdp(message: Request | Response) -> bytes:
    """The body when it is SDP, else b""."""
    kind = (message.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    return message.body if kind == "application/sdp" else b""


def _unreadable(message: Request | Response) -> SipParseError | None:
    """Why the fields the transaction layer matches and answers with (Via, CSeq, Call-ID, From, To) do not
    parse, or None. (check_request lets an empty ``Via:`` line through: it has no value to read.)"""
    try:
        _, cseq, _, _, _ = message.top_via, message.cseq, message.call_id, message.from_, message.to
    except SipParseError as exc:
        return exc
    if isinstance(message, Request) and message.method == "ACK" and cseq.method != "ACK":
        return SipParseError(f"CSeq method {cseq.method} does not match the request method ACK")
    return None


def _fallback_dialog(invite: Request, response: Response) -> Dialog:
    """A dialog good for the ACK and BYE alone, when the peer's 2xx cannot make one: the Request-URI as the
    remote target and our own Route headers (the call cannot go on, but §13.2.2.4 wants the 2xx ACKed)."""
    return Dialog(call_id=invite.call_id, local_tag=invite.from_.tag or "", remote_tag=response.to.tag or "",
                  local_party=invite.from_, remote_party=response.to, remote_target=invite.uri,
                  route_set=invite.headers.get_all("Route"), local_seq=invite.cseq.seq)


class UserAgent:
    def __init__(self, host: str, port: int, *, user_agent: str = "pypbx", transport: str = "UDP",
                 timers: TimerConfig | None = None, token: Callable[[], str] = random_token) -> None:
        self.host = host                  # advertised in Via and Contact (external_ip behind NAT)
        self.port = port
        self.address6: Address | None = None   # a second, IPv6 SIP address (host, port): told to IPv6 peers
        self.transport = transport
        self.user_agent = user_agent
        self.timers = timers or TimerConfig()
        self._token = token
        self.call_id_tag = ""             # in every Call-ID we make: a worker's number (pbx.server.routing)
        self.layer = TransactionLayer(timers=self.timers, token=token)
        self._events: list[UaEvent | RegistrationEvent] = []
        self._datagrams: list[tuple[bytes, Address]] = []
        self.sessions: dict[str, Session] = {}                  # by Call-ID
        self._by_id: dict[str, Session] = {}
        # the ACKs of 2xx we sent, by (Call-ID, CSeq number, To tag): sent again for a retransmitted 2xx
        self._acks: dict[tuple[str, int, str], tuple[bytes, Address, float]] = {}
        self.dropped = 0                  # peer messages dropped unanswered (unreadable, or no Via)
        self.registrations: dict[str, Registration] = {}        # by Call-ID
        # [sip] users (pbx.sip.registrar): inbound INVITE/REGISTER must authenticate; REGISTER is served
        self.auth: InboundAuth | None = None
        self.registrar: Registrar | None = None

    # -- outputs -------------------------------------------------------------------------------------
    def events(self) -> list[UaEvent | RegistrationEvent]:
        events, self._events = self._events, []
        return events

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out = self._datagrams + self.layer.datagrams_to_send()
        self._datagrams = []
        return out

    def _send(self, data: bytes, addr: Address) -> None:
        """A datagram of the UA's own (2xx retransmission, ACK of a 2xx, stateless answer), in order with
        what the transaction layer queued before it (an ACK must leave before the BYE that follows it)."""
        self._datagrams.extend(self.layer.datagrams_to_send())
        self._datagrams.append((data, addr))

    def get_timer(self) -> float | None:
        deadlines = [t for t in (self.layer.get_timer(),) if t is not None]
        deadlines += [r.next_at for r in self.registrations.values() if r.next_at is not None]
        for session in self.sessions.values():
            if session.ok is not None:
                deadlines.append(min(session.ok_next, session.ok_deadline))
            if session.forget_at is not None:
                deadlines.append(session.forget_at)
            if session.expires_at is not None:
                deadlines.append(session.expires_at)
        return min(deadlines) if deadlines else None

    def session(self, session_id: str) -> Session | None:
        return self._by_id.get(session_id)

    # -- building ------------------------------------------------------------------------------------
    @property
    def contact(self) -> str:
        return self.contact_for(None)

    def contact_for(self, peer: Address | None) -> str:
        """Our Contact as a peer at ``peer`` reaches us (its address family's host and port)."""
        return f"<sip:pypbx@{self._local(peer)}>"

    def _via(self, branch: str, peer: Address | None = None) -> str:
        return f"SIP/2.0/{self.transport} {self._local(peer)};branch={branch};rport"

    def _local(self, peer: Address | None) -> str:
        """Our advertised ``host:port`` for ``peer``: the IPv6 one for an IPv6 peer when we have both."""
        host, port = self.address6 if peer is not None and ":" in peer[0] and self.address6 else (self.host, self.port)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _common(self, headers: Headers) -> None:
        headers.add("Max-Forwards", "70")
        headers.add("User-Agent", self.user_agent)

    # -- call control: outbound --------------------------------------------------------------------------
    def invite(self, target: str, from_uri: str, to_uri: str, sdp: bytes, peer: Address, now: float, *,
               credentials: Credentials | None = None, headers: Mapping[str, str] | None = None,
               display: str | None = None) -> Session:
        """Place a call: INVITE ``target`` (the Request-URI) through ``peer`` (the next hop)."""
        SipUri.parse(target)     # SipParseError for a bad target, before anything is sent
        call_id = f"{self._token()}{self.call_id_tag}@{self.host}"
        tag = self._token()
        request = self._new_invite(target, from_uri, to_uri, call_id, tag, sdp, headers or {}, display, peer)
        session = Session(id=call_id, role=Role.UAC, invite=request, peer=peer, local_sdp=sdp, local_tag=tag,
                          credentials=credentials, headers=dict(headers or {}))
        self._register(session)
        session.transaction = self.layer.send_request(request, peer, now, reliable=session.reliable)
        return session

    def _new_invite(self, target: str, from_uri: str, to_uri: str, call_id: str, tag: str, sdp: bytes,
                    extra: Mapping[str, str], display: str | None, peer: Address) -> Request:
        headers = Headers()
        headers.add("Via", self._via(self.layer.new_branch(), peer))
        self._common(headers)
        from_addr = NameAddr(display, SipUri.parse(from_uri), {"tag": tag})
        headers.add("From", str(from_addr))
        headers.add("To", str(NameAddr(None, SipUri.parse(to_uri), {})))
        headers.add("Call-ID", call_id)
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", self.contact_for(peer))
        headers.add("Allow", ALLOW)
        for name, value in extra.items():
            headers.add(name, value)
        headers.add("Content-Type", "application/sdp")
        return Request("INVITE", target, headers, sdp)

    # -- call control: inbound ------------------------------------------------------------------------------
    def ring(self, session: Session, now: float, sdp: bytes = b"") -> None:
        """180 Ringing, or 183 Session Progress with ``sdp`` (early media)."""
        if session.role is not Role.UAS or session.state not in (SessionState.CALLING, SessionState.EARLY):
            return
        status, reason = (183, "Session Progress") if sdp else (180, "Ringing")
        response = self._uas_response(session, status, reason, sdp)
        session.state = SessionState.EARLY
        if sdp:
            session.local_sdp = sdp
        self.layer.send_response(response, now)

    def answer(self, session: Session, sdp: bytes, now: float) -> None:
        """200 OK with ``sdp``; retransmitted until the peer's ACK."""
        if session.role is not Role.UAS or session.state not in (SessionState.CALLING, SessionState.EARLY):
            return
        response = self._uas_response(session, 200, "OK", sdp)
        self._session_timer(session, session.invite, response, now)
        session.local_sdp = sdp
        session.state = SessionState.CONFIRMED
        session.dialog = Dialog.from_uas(session.invite, response, secure=False)   # Contact checked on receipt
        self.layer.send_response(response, now)
        self._retransmit_until_ack(session, response, now)

    def reject(self, session: Session, status: int, reason: str, now: float,
               headers: tuple[tuple[str, str], ...] = ()) -> None:
        """A final error response to an inbound INVITE, with ``headers`` added (e.g. Retry-After)."""
        if session.role is not Role.UAS or session.state not in (SessionState.CALLING, SessionState.EARLY):
            return
        response = self._uas_response(session, status, reason, b"")
        for name, value in headers:
            response.headers.add(name, value)
        self.layer.send_response(response, now)
        self._end(session, "local", by_peer=False, report=False)

    def _uas_response(self, session: Session, status: int, reason: str, sdp: bytes) -> Response:
        response = response_to(session.invite, status, reason, to_tag=session.local_tag)
        if status < 300 and status != 100:
            response.headers.add("Contact", self.contact_for(session.peer))
            if 200 <= status < 300:
                response.headers.add("Allow", ALLOW)
        response.headers.add("User-Agent", self.user_agent)
        if sdp:
            response.headers.add("Content-Type", "application/sdp")
            response.body = sdp
        return response

    def _retransmit_until_ack(self, session: Session, response: Response, now: float) -> None:
        session.ok = response
        session.ok_interval = self.timers.t1
        session.ok_next = now + self.timers.t1
        session.ok_deadline = now + 64 * self.timers.t1

    # -- call control: either side ------------------------------------------------------------------------------
    def hangup(self, session: Session, now: float) -> None:
        """End the call from our side: BYE, CANCEL or 487, whichever its state needs."""
        if session.state is SessionState.ENDED:
            return
        if session.state is SessionState.CONFIRMED:
            if session.ok is not None:          # §15: no BYE before the ACK of our 2xx (or its timeout)
                session.bye_after_ack = True
                self._end(session, "local", by_peer=False, report=False, keep=True)
                return
            self._send_in_dialog(session, "BYE", now)
            self._end(session, "local", by_peer=False, report=False)
        elif session.role is Role.UAS:
            self.layer.send_response(self._uas_response(session, 487, "Request Terminated", b""), now)
            self._end(session, "local", by_peer=False, report=False)
        elif session.provisional_seen:
            self._send_cancel(session, now)
            session.forget_at = now + 64 * self.timers.t1
            self._end(session, "local", by_peer=False, report=False, keep=True)
        else:
            session.cancel_pending = True       # §9.1: CANCEL only once a provisional response came
            self._end(session, "local", by_peer=False, report=False, keep=True)     # Timer B bounds the wait

    def reinvite(self, session: Session, sdp: bytes, now: float) -> bool:
        """A re-INVITE with ``sdp`` (hold, unhold, a codec change); the answer comes as Answered with
        ``reinvite`` True. False (nothing sent) when the call is not confirmed or an INVITE is under way
        in either direction (§14.1)."""
        if session.state is not SessionState.CONFIRMED or session.dialog is None \
                or session.reinvite_transaction is not None or session.pending_reinvite is not None \
                or session.ok is not None:
            return False
        request = session.dialog.create_request("INVITE", via=self._via(self.layer.new_branch(), session.peer))
        self._common(request.headers)
        request.headers.add("Contact", self.contact_for(session.peer))
        request.headers.add("Allow", ALLOW)
        request.headers.add("Content-Type", "application/sdp")
        request.body = sdp
        session.reinvite_transaction = self.layer.send_request(request, self._target(session), now,
                                                               reliable=session.reliable)
        return True

    def answer_reinvite(self, session: Session, sdp: bytes | None, now: float) -> None:
        """Answer the peer's re-INVITE: 200 with ``sdp``, or 488 when ``sdp`` is None."""
        transaction = session.pending_reinvite
        if transaction is None:
            return
        session.pending_reinvite = None
        request = transaction.request
        if sdp is None:
            self.layer.send_response(response_to(request, 488, "Not Acceptable Here"), now)
            return
        response = response_to(request, 200, "OK")
        response.headers.add("Contact", self.contact_for(session.peer))
        response.headers.add("Allow", ALLOW)
        response.headers.add("Content-Type", "application/sdp")
        response.body = sdp
        self._session_timer(session, request, response, now)
        session.local_sdp = sdp
        self.layer.send_response(response, now)
        self._retransmit_until_ack(session, response, now)

    def respond_refer(self, session: Session, request: Request, accept: bool, now: float) -> None:
        """202 or 603 to the peer's REFER (once: a REFER answered already is left alone)."""
        transaction = self.layer.find_server(request)
        if transaction is None or transaction.last_response is not None:
            return
        status, reason = (202, "Accepted") if accept else (603, "Decline")
        self.layer.send_response(response_to(request, status, reason), now)

    def notify_refer(self, session: Session, status: int, reason: str, now: float) -> None:
        """Tell the peer whose REFER we accepted how the call it asked for is going (RFC 3515 §2.4.4): a
        NOTIFY with a ``message/sipfrag`` status line; a final status (>= 200) ends the implicit
        subscription. Nothing when the dialog is gone."""
        if session.state is not SessionState.CONFIRMED or session.dialog is None:
            return
        request = session.dialog.create_request("NOTIFY", via=self._via(self.layer.new_branch(), session.peer))
        self._common(request.headers)
        request.headers.add("Event", "refer")
        request.headers.add("Subscription-State",
                            "terminated;reason=noresource" if status >= 200 else "active;expires=60")
        request.headers.add("Contact", self.contact_for(session.peer))
        request.headers.add("Content-Type", "message/sipfrag;version=2.0")
        request.body = f"SIP/2.0 {status} {reason}\r\n".encode()
        self.layer.send_request(request, self._target(session), now, reliable=session.reliable)

    def send_info(self, session: Session, content_type: str, body: bytes, now: float) -> None:
        if session.state is SessionState.CONFIRMED:
            self._send_in_dialog(session, "INFO", now, content_type, body)

    def refer(self, session: Session, refer_to: str, now: float, *, referred_by: str | None = None) -> bool:
        """Ask the peer to call ``refer_to`` (RFC 3515): its answer comes as :class:`ReferAnswered`, the
        progress of its call as NOTIFYs (:class:`Notified`, ``message/sipfrag`` bodies). False when the
        call is not confirmed."""
        if session.state is not SessionState.CONFIRMED or session.dialog is None:
            return False
        SipUri.parse(refer_to)        # SipParseError for a bad target, before anything is sent
        request = session.dialog.create_request("REFER", via=self._via(self.layer.new_branch(), session.peer))
        self._common(request.headers)
        request.headers.add("Refer-To", f"<{refer_to}>")
        if referred_by:
            request.headers.add("Referred-By", f"<{referred_by}>")
        request.headers.add("Contact", self.contact_for(session.peer))
        self.layer.send_request(request, self._target(session), now, reliable=session.reliable)
        return True

    def _send_in_dialog(self, session: Session, method: str, now: float, content_type: str = "",
                        body: bytes = b"") -> ClientTransaction | None:
        if session.dialog is None:
            return None
        return self._send_request(session.dialog, method, self._target(session), session.reliable, now,
                                  content_type, body)

    def _send_request(self, dialog: Dialog, method: str, addr: Address, reliable: bool, now: float,
                      content_type: str = "", body: bytes = b"") -> ClientTransaction:
        request = dialog.create_request(method, via=self._via(self.layer.new_branch(), addr))
        self._common(request.headers)
        if content_type:
            request.headers.add("Content-Type", content_type)
            request.body = body
        return self.layer.send_request(request, addr, now, reliable=reliable)

    def _send_cancel(self, session: Session, now: float) -> None:
        invite = session.invite
        headers = Headers()
        headers.add("Via", invite.headers.get("Via") or "")
        self._common(headers)
        for name in ("From", "To", "Call-ID"):
            headers.add(name, invite.headers.get(name) or "")
        for route in invite.headers.get_all("Route"):
            headers.add("Route", route)
        headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
        cancel = Request("CANCEL", invite.uri, headers)
        self.layer.send_request(cancel, session.peer, now, reliable=session.reliable)

    def _target(self, session: Session) -> Address:
        """Where in-dialog requests go: the next hop the call was placed through, or the peer's
        source address (a UAS answers the address its INVITE came from: NAT-friendly)."""
        return session.peer

    # -- inputs --------------------------------------------------------------------------------------------
    def receive(self, message: Request | Response, addr: Address, now: float) -> None:
        """A message from ``addr`` (already parsed; a parse error is the shell's to answer). Never raises
        for what the peer sent (see the module's rules)."""
        error = _unreadable(message)
        if isinstance(message, Request) and message.method != "ACK":
            if error is None:
                try:
                    check_request(message, methods=ALLOWED_METHODS if self.registrar is None
                                  else (*ALLOWED_METHODS, "REGISTER"))
                except SipParseError as exc:
                    error = exc
            if error is not None:       # answered before the layer, which needs these fields to match
                self._refuse(message, error, addr)
                return
        elif error is not None:         # a response or an ACK: never answered
            self.dropped += 1
            return
        for event in self.layer.receive(message, addr, now):
            self._on_layer_event(event, now)

    def handle_timer(self, now: float) -> None:
        for event in self.layer.handle_timer(now):
            self._on_layer_event(event, now)
        for registration in list(self.registrations.values()):
            if registration.next_at is not None and now >= registration.next_at:
                registration.next_at = None
                registration.authorization = None      # a fresh round: the registrar challenges again
                self._send_register(registration, now)
        for session in list(self.sessions.values()):
            if session.ok is not None:
                if now >= session.ok_deadline:
                    self._ack_timeout(session, now)
                elif now >= session.ok_next:
                    self._send(session.ok.serialize(), session.peer)
                    session.ok_interval = min(2 * session.ok_interval, self.timers.t2)
                    session.ok_next = now + session.ok_interval
            if session.forget_at is not None and now >= session.forget_at:
                self._forget(session)       # §9.1: no final response 64*T1 after our CANCEL
            elif session.expires_at is not None and now >= session.expires_at:
                session.expires_at = None   # RFC 4028 §10: nobody refreshed the session
                if session.state is SessionState.CONFIRMED:
                    self._send_in_dialog(session, "BYE", now)
                    self._end(session, "session_expired", by_peer=False)
        for key in [key for key, (_, _, expires) in self._acks.items() if now >= expires]:
            del self._acks[key]

    def _ack_timeout(self, session: Session, now: float) -> None:
        """§13.3.1.4: no ACK 64*T1 after our 2xx: the session ends with BYE."""
        session.ok = None
        self._send_in_dialog(session, "BYE", now)
        if session.state is SessionState.ENDED:         # the owner hung up meanwhile, the BYE waited
            self._forget(session)
        else:
            self._end(session, "ack_timeout", by_peer=False)

    def _on_layer_event(self, event: Event, now: float) -> None:
        """TransactionTerminated and RequestRefused (the layer answered 503 itself) need nothing here;
        TransportFailed comes only from :meth:`TransactionLayer.transport_error`, which the UA does not call."""
        if isinstance(event, RequestReceived):
            self._on_request(event, now)
        elif isinstance(event, ResponseReceived):
            self._on_response(event.response, event.transaction, now)
        elif isinstance(event, AckReceived):
            self._on_ack(event.request, now)
        elif isinstance(event, StrayResponse):
            # a 2xx retransmission after Timer M: ACK it again if it is one we ACKed
            self._resend_ack(event.response)
        elif isinstance(event, TransactionTimeout):
            self._on_timeout(event.transaction, now)

    def _refuse(self, request: Request, error: SipParseError, addr: Address) -> None:
        """Answer a request that failed its checks, statelessly (it never reaches the transaction layer);
        one without Via cannot be answered."""
        if not request.headers.get_all("Via"):
            self.dropped += 1
            return
        try:
            to_tag = None if request.to.tag is not None else self._token()
        except SipParseError:
            to_tag = None
        self._send(response_for_error(request, error, to_tag).serialize(), addr)

    def _respond(self, request: Request, status: int, reason: str, now: float,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        """A response through the request's server transaction; a To tag when the request had none."""
        response = response_to(request, status, reason, to_tag=None if request.to.tag else self._token())
        for name, value in headers:
            response.headers.add(name, value)
        self.layer.send_response(response, now)

    # -- requests -------------------------------------------------------------------------------------------
    def _on_request(self, event: RequestReceived, now: float) -> None:
        request, transaction = event.request, event.transaction
        method = request.method
        to_tag = request.to.tag
        if method == "CANCEL":
            self._on_cancel(request, event.cancels, now)
            return
        if to_tag is None:
            user = self._authenticated(request, event.addr, now)
            if user is None:
                return
            if method == "INVITE":
                self._on_invite(request, event.addr, transaction, now)
            elif method == "REGISTER" and self.registrar is not None:
                answer = self.registrar.register(request, user, event.addr, now)
                self._respond(request, answer.status, answer.reason, now, answer.headers)
            elif method == "OPTIONS":
                self._respond(request, 200, "OK", now, (("Allow", ALLOW), ("Accept", "application/sdp")))
            else:
                self._respond(request, 481, "Call/Transaction Does Not Exist", now)
            return
        session = self.sessions.get(request.call_id)
        if session is None or (session.state is SessionState.ENDED and method != "BYE"):
            self._respond(request, 481, "Call/Transaction Does Not Exist", now)
            return
        if session.dialog is not None:
            try:
                session.dialog.receive_request(request)      # tags, CSeq order, target refresh
            except DialogError as exc:
                self._respond(request, exc.status, exc.reason, now)
                return
        elif not (session.role is Role.UAS and to_tag == session.local_tag
                  and request.from_.tag == session.invite.from_.tag):
            self._respond(request, 481, "Call/Transaction Does Not Exist", now)
            return
        if method == "BYE":
            self._on_bye(request, session, now)
        elif method == "INVITE":
            self._on_reinvite(request, session, transaction, now)
        elif method == "OPTIONS":
            self._respond(request, 200, "OK", now, (("Allow", ALLOW), ("Accept", "application/sdp")))
        elif method == "INFO":
            self._respond(request, 200, "OK", now)
            self._events.append(Info(session, request.headers.get("Content-Type") or "", request.body))
        elif method == "REFER":
            refer_to = request.headers.get("Refer-To")
            if not refer_to:
                self._respond(request, 400, "Missing Refer-To", now)
                return
            self._events.append(Referred(session, request, refer_to))
        elif method == "NOTIFY":
            self._respond(request, 200, "OK", now)
            self._events.append(Notified(session, request.headers.get("Event") or "", request.body))
        elif method == "UPDATE":
            if request.body:            # an offer: RFC 3311 offer/answer is not built
                self._respond(request, 488, "Not Acceptable Here", now)
            else:                       # a session refresh (RFC 4028)
                response = response_to(request, 200, "OK")
                self._session_timer(session, request, response, now)
                self.layer.send_response(response, now)
        else:                           # check_request let only ALLOWED_METHODS through; ACK is an event
            self._respond(request, 405, "Method Not Allowed", now, (("Allow", ALLOW),))

    def _authenticated(self, request: Request, addr: Address, now: float) -> str | None:
        """The user an INVITE or REGISTER authenticated as ("" when none is asked for, or another method);
        None when it was refused (answered 401, 403 or 400 here)."""
        if self.auth is None or request.method not in AUTHENTICATED_METHODS:
            return ""
        outcome = self.auth.check(request, addr, now)
        if isinstance(outcome, Answer):
            self._respond(request, outcome.status, outcome.reason, now, outcome.headers)
            return None
        return outcome

    def _on_invite(self, request: Request, addr: Address, transaction: ServerTransaction, now: float) -> None:
        if request.call_id in self.sessions:           # §8.2.2.2: merged (or looped) request
            self._respond(request, 482, "Loop Detected", now)
            return
        contacts = request.headers.get_all("Contact")
        if len(contacts) != 1 or contacts[0] == "*":   # §8.1.1.8: one Contact, the dialog's remote target
            self._respond(request, 400, "Bad Request", now,
                          (("Warning", '399 pypbx "an INVITE needs one Contact URI"'),))
            return
        if not _sdp(request):
            self._respond(request, 488, "Not Acceptable Here", now,
                          (("Warning", '399 pypbx "an SDP offer in the INVITE is required"'),))
            return
        asked = session_expires(request)
        if asked is not None and asked[0] < MIN_SE:      # RFC 4028 §8.1: too brief for us
            self._respond(request, 422, "Session Interval Too Small", now, (("Min-SE", str(MIN_SE)),))
            return
        session = Session(id=f"{self._token()}", role=Role.UAS, invite=request, peer=addr,
                          remote_sdp=request.body, local_tag=self._token(), transaction=transaction)
        self._register(session)
        self._events.append(Incoming(session, request))

    def _on_bye(self, request: Request, session: Session, now: float) -> None:
        self._respond(request, 200, "OK", now)
        if session.pending_reinvite is not None:       # §15.1.2: pending requests get 487
            self.layer.send_response(response_to(session.pending_reinvite.request, 487, "Request Terminated"), now)
            session.pending_reinvite = None
        if session.role is Role.UAS and session.state in (SessionState.CALLING, SessionState.EARLY):
            self.layer.send_response(self._uas_response(session, 487, "Request Terminated", b""), now)
        session.ok = None                              # their BYE says our 2xx arrived
        self._end(session, "bye", by_peer=True)

    def _on_reinvite(self, request: Request, session: Session, transaction: ServerTransaction, now: float) -> None:
        theirs_pending = session.pending_reinvite is not None or (
            session.role is Role.UAS and session.state is not SessionState.CONFIRMED)
        if theirs_pending:
            # §14.2: a second INVITE before we answered their first
            self._respond(request, 500, "Server Internal Error", now,
                          (("Retry-After", str(secrets.randbelow(11))),))
            return
        if session.reinvite_transaction is not None or session.state is not SessionState.CONFIRMED:
            self._respond(request, 491, "Request Pending", now)     # §14.2: it crosses our INVITE
            return
        session.pending_reinvite = transaction
        self._events.append(ReInvite(session, _sdp(request)))

    def _on_cancel(self, request: Request, cancels: ServerInviteTransaction | None, now: float) -> None:
        session = self.sessions.get(request.call_id)
        if cancels is None or session is None:
            self._respond(request, 481, "Call/Transaction Does Not Exist", now)
            return
        if cancels is session.transaction and session.role is Role.UAS \
                and session.state in (SessionState.CALLING, SessionState.EARLY):
            self._respond(request, 200, "OK", now)
            self.layer.send_response(self._uas_response(session, 487, "Request Terminated", b""), now)
            self._end(session, "cancel", by_peer=True)
        elif cancels is session.pending_reinvite:       # a re-INVITE cancelled: the call stays as it was
            self._respond(request, 200, "OK", now)
            self.layer.send_response(response_to(cancels.request, 487, "Request Terminated"), now)
            session.pending_reinvite = None
        else:
            self._respond(request, 200, "OK", now)      # §9.2: answered already, the CANCEL has no effect

    def _on_ack(self, ack: Request, now: float) -> None:
        session = self.sessions.get(ack.call_id)
        if session is None or session.ok is None or ack.cseq.seq != session.ok.cseq.seq \
                or ack.to.tag != session.local_tag:
            return
        session.ok = None
        if session.bye_after_ack:
            self._send_in_dialog(session, "BYE", now)
            self._forget(session)
        elif session.state is SessionState.ENDED:
            self._forget(session)

    # -- responses ------------------------------------------------------------------------------------------
    def _on_response(self, response: Response, transaction: ClientTransaction, now: float) -> None:
        registration = self.registrations.get(transaction.request.call_id)
        if registration is not None and transaction.method == "REGISTER":
            if response.status >= 200:
                self._registration_answered(registration, transaction.request, response, now)
            return
        # the session by the transaction's request: a response's own Call-ID is the peer's to get wrong
        session = self.sessions.get(transaction.request.call_id)
        method = transaction.method
        status = response.status
        if method == "INVITE" and 200 <= status < 300:
            self._on_invite_2xx(session, response, transaction, now)
            return
        if session is None:
            return
        if transaction is session.reinvite_transaction:
            if status >= 200:
                session.reinvite_transaction = None      # refused: the call stays as it was (§14.1)
                self._in_dialog_failed(session, status, now)
            return
        if method == "INVITE" and transaction is session.transaction:
            self._on_invite_response(session, response, now)
        elif method == "INFO" and status >= 300:
            self._in_dialog_failed(session, status, now)
        elif method == "REFER" and status >= 200:
            self._events.append(ReferAnswered(session, status, response.reason))

    def _on_invite_response(self, session: Session, response: Response, now: float) -> None:
        """A 1xx or 300-699 to the call's INVITE."""
        status = response.status
        if status < 200:
            session.provisional_seen = True
            if session.cancel_pending:
                session.cancel_pending = False
                self._send_cancel(session, now)
                session.forget_at = now + 64 * self.timers.t1
                return
            if session.state is SessionState.ENDED or status == 100:
                return
            if response.to.tag and session.dialog is None:
                with contextlib.suppress(DialogError):     # a bad Contact: no early dialog, the 2xx makes one
                    session.dialog = Dialog.from_uac(session.invite, response)
            session.state = SessionState.EARLY
            sdp = _sdp(response)
            if sdp:
                session.remote_sdp = sdp
            self._events.append(Progress(session, status, response.reason, sdp))
        elif status in (401, 407) and session.credentials is not None and session.auth_attempts < MAX_AUTH_ATTEMPTS \
                and session.state is not SessionState.ENDED:
            self._authenticate(session, response, now)
        else:
            self._end_or_fail(session, status, response.reason)

    def _on_invite_2xx(self, session: Session | None, response: Response, transaction: ClientTransaction,
                       now: float) -> None:
        if self._resend_ack(response):
            return                          # a retransmission: ACKed again, nothing new
        invite = transaction.request
        if session is not None and transaction is session.reinvite_transaction and session.dialog is not None:
            session.reinvite_transaction = None
            with contextlib.suppress(DialogError):      # a new Contact moves the remote target, a bad one not
                session.dialog.receive_response(response)
            if not self._ack(session.dialog, invite, response, transaction.addr, now):
                return
            if session.state is SessionState.CONFIRMED:
                session.local_sdp = invite.body
                sdp = _sdp(response)
                if sdp:
                    session.remote_sdp = sdp
                self._events.append(Answered(session, sdp, reinvite=True))
            return
        if session is not None and session.dialog is not None and session.dialog.state is DialogState.CONFIRMED \
                and response.to.tag == session.dialog.remote_tag:
            self._ack(session.dialog, invite, response, transaction.addr, now)   # ours, its ACK forgotten
            return
        answered = session is not None and session.dialog is not None \
            and session.dialog.state is DialogState.CONFIRMED
        if session is None or invite is not session.invite or answered:
            # a 2xx no call waits for: another fork's once answered, or a forgotten call's (§13.2.2.4)
            try:
                dialog = Dialog.from_uac(invite, response)
            except DialogError:
                dialog = _fallback_dialog(invite, response)
            if self._ack(dialog, invite, response, transaction.addr, now):
                self._send_request(dialog, "BYE", transaction.addr, transaction.reliable, now)
            return
        try:
            dialog = Dialog.from_uac(invite, response)
            self._ack(dialog, invite, response, transaction.addr, now, strict=True)
        except (DialogError, SipParseError) as exc:
            # §13.2.2.4 wants it ACKed all the same; then the call cannot go on
            dialog = _fallback_dialog(invite, response)
            if self._ack(dialog, invite, response, transaction.addr, now):
                self._send_request(dialog, "BYE", transaction.addr, transaction.reliable, now)
            self._end_or_fail(session, 502, f"Bad Gateway: {exc}")
            return
        session.dialog = dialog
        if session.state is SessionState.ENDED:       # answered after we hung up: BYE at once
            self._send_in_dialog(session, "BYE", now)
            self._forget(session)
            return
        session.state = SessionState.CONFIRMED
        granted = session_expires(response)
        if granted is not None and granted[0] > 0:      # the callee refreshes (we never offered to)
            session.session_expires = granted[0]
            session.expires_at = end_at(now, granted[0])
        sdp = _sdp(response)
        if sdp:
            session.remote_sdp = sdp
        self._events.append(Answered(session, sdp))

    def _in_dialog_failed(self, session: Session, status: int, now: float) -> None:
        """§12.2.1.2: a request of ours in the dialog got 408 (or timed out) or 481: the dialog is over."""
        if session.state is not SessionState.CONFIRMED:
            return
        if status == 408:
            self._send_in_dialog(session, "BYE", now)
            session.ok = None
            self._end(session, "timeout", by_peer=False)
        elif status == 481:
            session.ok = None
            self._end(session, "gone", by_peer=True)

    def _on_timeout(self, transaction: ClientTransaction | ServerTransaction, now: float) -> None:
        """Timer B or F, taken as a 408 response (§8.1.3.1)."""
        if not isinstance(transaction, ClientTransaction):
            return                  # Timer H: the peer never ACKed our refusal; the call is gone already
        registration = self.registrations.get(transaction.request.call_id)
        if registration is not None and transaction.method == "REGISTER":
            self._registration_answered(registration, transaction.request, None, now)
            return
        session = self.sessions.get(transaction.request.call_id)
        if session is None:
            return
        if transaction is session.reinvite_transaction:
            session.reinvite_transaction = None
            self._in_dialog_failed(session, 408, now)
        elif transaction is session.transaction and session.state is not SessionState.CONFIRMED:
            self._end_or_fail(session, 408, "Request Timeout")
        elif transaction.method == "REFER":
            self._events.append(ReferAnswered(session, 408, "Request Timeout"))
        elif transaction.method == "INFO":
            self._in_dialog_failed(session, 408, now)

    # -- registration (RFC 3261 §10) ------------------------------------------------------------------------
    def register(self, aor: str, registrar: str, peer: Address, now: float, *, credentials: Credentials | None = None,
                 expires: int = 3600, retry_after: float = 60.0) -> Registration:
        """Bind our Contact to ``aor`` at ``registrar`` (through ``peer``) and keep it refreshed;
        :class:`Registered` / :class:`RegistrationFailed` say how it went, each time."""
        SipUri.parse(aor)
        SipUri.parse(registrar)
        registration = Registration(aor=aor, registrar=registrar, peer=peer, contact=self.contact_for(peer),
                                    call_id=f"{self._token()}{self.call_id_tag}@{self.host}", tag=self._token(),
                                    credentials=credentials,
                                    expires=expires, retry_after=retry_after)
        self.registrations[registration.call_id] = registration
        self._send_register(registration, now)
        return registration

    def unregister(self, registration: Registration, now: float) -> None:
        """Remove our binding (Expires: 0) and stop refreshing."""
        if registration.state is RegistrationState.REGISTERED:
            registration.state = RegistrationState.UNREGISTERED
            registration.next_at = None
            self._send_register(registration, now, expires=0)
        else:
            self.registrations.pop(registration.call_id, None)

    def _send_register(self, registration: Registration, now: float, expires: int | None = None) -> None:
        via = self._via(self.layer.new_branch(), registration.peer)
        request = registration.request(via, self.user_agent, expires=expires)
        self.layer.send_request(request, registration.peer, now)

    def _registration_answered(self, registration: Registration, request: Request, response: Response | None,
                               now: float) -> None:
        if registration.on_response(request, response, now):
            self._send_register(registration, now)
        elif registration.state is RegistrationState.REGISTERED:
            self._events.append(Registered(registration, registration.granted))
        elif registration.state is RegistrationState.FAILED:
            self._events.append(RegistrationFailed(registration, registration.last_status, registration.last_reason))
        elif registration.state is RegistrationState.UNREGISTERED:
            self.registrations.pop(registration.call_id, None)

    def _session_timer(self, session: Session, request: Request, response: Response, now: float) -> None:
        """Our 2xx to an INVITE or UPDATE that asked for (or refreshes) a session timer: the caller
        refreshes (we never do), and the session ends if it does not (RFC 4028 §9, §10)."""
        asked = session_expires(request)
        interval = max(asked[0], MIN_SE) if asked is not None else session.session_expires
        if not interval:
            return
        session.session_expires = interval
        session.expires_at = end_at(now, interval)
        # the request's sender (the peer: we never send refreshes) is the UAC of this transaction
        response.headers.add("Session-Expires", f"{interval};refresher=uac")
        if supports_timer(request):
            response.headers.add("Require", "timer")

    def _end_or_fail(self, session: Session, status: int, reason: str) -> None:
        if session.state is SessionState.ENDED:
            self._forget(session)
            return
        session.state = SessionState.ENDED
        self._forget(session)
        self._events.append(Failed(session, status, reason))

    def _authenticate(self, session: Session, response: Response, now: float) -> None:
        credentials = session.credentials
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        # values we cannot read are passed over; only challenges from the credentials' realm are answered
        challenge = best_challenge(response.headers.get_all(header),
                                   realm=credentials.realm if credentials is not None else None)
        old = session.invite
        value: str | None = None
        if challenge is not None and credentials is not None:
            try:
                value = authorization(challenge, "INVITE", old.uri, credentials, cnonce=self._token(), nc=1,
                                      body=old.body)
            except DigestError:
                value = None        # e.g. a control character in the username: nothing we can send
        if value is None:
            self._end_or_fail(session, response.status, response.reason)
            return
        session.auth_attempts += 1
        request = Request("INVITE", old.uri, old.headers.copy(), old.body)
        request.headers.set("Via", self._via(self.layer.new_branch(), session.peer))
        request.headers.set("CSeq", f"{old.cseq.seq + 1} INVITE")
        request.headers.set("Authorization" if response.status == 401 else "Proxy-Authorization", value)
        session.invite = request
        session.provisional_seen = False          # the new INVITE is cancelled after its own provisional
        session.transaction = self.layer.send_request(request, session.peer, now, reliable=session.reliable)

    def _ack(self, dialog: Dialog, invite: Request, response: Response, addr: Address, now: float,
             strict: bool = False) -> bool:
        """Send the ACK of ``response``, a 2xx to ``invite``, and keep it for the 2xx's retransmissions.
        False when the dialog cannot build it (a Route that does not parse); ``strict`` raises that."""
        try:
            ack = dialog.create_ack(invite, via=self._via(self.layer.new_branch(), addr))
        except SipParseError:
            if strict:
                raise
            self.dropped += 1
            return False
        self._common(ack.headers)
        data = ack.serialize()
        self._send(data, addr)
        key = (response.call_id, response.cseq.seq, response.to.tag or "")
        self._acks[key] = (data, addr, now + 64 * self.timers.t1 + self.timers.t4)
        return True

    def _resend_ack(self, response: Response) -> bool:
        if response.cseq.method != "INVITE" or not 200 <= response.status < 300:
            return False
        sent = self._acks.get((response.call_id, response.cseq.seq, response.to.tag or ""))
        if sent is None:
            return False
        self._send(sent[0], sent[1])
        return True

    # -- bookkeeping ---------------------------------------------------------------------------------------------
    def _register(self, session: Session) -> None:
        self.sessions[session.call_id] = session
        self._by_id[session.id] = session

    def _forget(self, session: Session) -> None:
        if self.sessions.get(session.call_id) is session:
            del self.sessions[session.call_id]
        if self._by_id.get(session.id) is session:
            del self._by_id[session.id]
        session.forget_at = None

    def _end(self, session: Session, reason: str, by_peer: bool, report: bool = True, keep: bool = False) -> None:
        """The call is over for its owner; ``keep``: the UA still has an exchange to finish (a CANCEL's
        487, a 2xx that crosses it, the ACK our BYE waits for)."""
        already = session.state is SessionState.ENDED
        session.state = SessionState.ENDED
        if not keep and session.ok is None:
            self._forget(session)
        if report and not already:
            self._events.append(Ended(session, reason, by_peer))
