"""SIP transactions (RFC 3261 §17, with RFC 6026's Accepted state), sans-I/O.

Inputs: :meth:`TransactionLayer.receive` (a parsed message, its source address, the time),
:meth:`TransactionLayer.send_request` / :meth:`~TransactionLayer.send_response` /
:meth:`~TransactionLayer.send_cancel` (the transaction user, "TU"), :meth:`~TransactionLayer.handle_timer` and
:meth:`~TransactionLayer.transport_error`. Outputs: the events those calls return,
:meth:`~TransactionLayer.datagrams_to_send` and :meth:`~TransactionLayer.get_timer`. No sockets, no clock.

Rules
=====

1. Everything that moves a transaction from one state to another lives in this module, and as much of it as
   possible in the four tables below (one per kind of transaction, the figures of §17 with RFC 6026's
   changes). A row reads ``(state, input): (next state, actions)``: the actions run in order, then the state
   changes.
2. Inputs are messages from the network (``RECV_*``), responses from the TU (``SEND_*``), a timer firing
   (:class:`Timer`) or a transport error. A network input a table does not list for a state is absorbed
   (a late or duplicated message: §17 drops it); a TU input it does not list raises
   :class:`TransactionError` (the TU asked for something the RFC forbids, e.g. a second final response).
3. Timers belong to states: ``*_TIMERS`` lists the timers running in each state. Entering a state starts its
   timers that are not running and stops the others; staying in a state leaves them alone. A, E and G run
   on unreliable transports only; D, I, J and K last 0 s on reliable ones (due at once: :meth:`get_timer`
   returns ``now`` and the next :meth:`handle_timer` fires them). The 100 (Trying) timer stops when the TU
   sends its first response (the one row with ``stop``).
4. The retransmission timers re-arm when they fire and their state still lists them: A doubles without
   bound (T1, 2*T1, 4*T1, ...), E doubles up to T2 in Trying and is T2 in Proceeding, G doubles up to T2.
   Re-arming counts from the time the timer fired.
5. Entering Terminated destroys the transaction at once and gives the TU :class:`TransactionTerminated`;
   every transaction ends with exactly one. Timer B, F and H also give :class:`TransactionTimeout` first,
   a transport error :class:`TransportFailed`.
6. RFC 6026: a 2xx ends neither INVITE transaction. The client goes to Accepted and passes every 2xx
   retransmission to the TU (the UA core ACKs each, §13.2.2.4) until Timer M; the server goes to Accepted,
   absorbs INVITE retransmissions, sends the TU's 2xx retransmissions (the UA core retransmits them,
   §13.3.1.4), passes an ACK that matches it to the TU, and ends with Timer L.

Matching (§17.1.3, §17.2.3)
===========================

- A response matches the client transaction with its top Via's branch and its CSeq method (so a CANCEL's
  responses do not reach the INVITE it cancels). A response matching none is not passed on as a response
  (RFC 6026 changes §18.1.2 to drop it); the TU gets :class:`StrayResponse` to log it.
- A request matches the server transaction with its top Via's branch and sent-by and its method, an ACK the
  INVITE transaction. An ACK that matches a transaction in Completed or Confirmed is that transaction's
  (no event); any other ACK (the ACK of a 2xx has a branch of its own) is :class:`AckReceived`, with the
  Accepted transaction it matched if any: the ACK of a 2xx belongs to the dialog, not to a transaction.
- A CANCEL is a non-INVITE transaction of its own; :class:`RequestReceived` names in ``cancels`` the INVITE
  server transaction it cancels (§9.2: matched as if its method were INVITE), or None: answering it (200 or
  481, and 487 to the INVITE) is the TU's.
- Branches without the ``z9hG4bK`` cookie (RFC 2543 peers) are matched by a simplified key: Call-ID, CSeq
  number, From tag, top Via sent-by and method. The full §17.2.3 procedure (Request-URI, To tag, the whole
  Via) is not built.

Transport
=========

Each transaction sends to one address: a client transaction to the one the TU gave, a server transaction
to the source address of its request (symmetric response routing, RFC 3581 style; §18.2.2's Via-based
choice is not made here). On receipt the top Via of a request gets ``received`` when its sent-by host is
not the source address and a value for an empty ``rport`` (§18.2.1, RFC 3581 §4), so responses carry them.
A server transaction is reliable when its request came over TCP, TLS, SCTP or WebSocket (the top Via's
transport), unless :meth:`~TransactionLayer.receive` is told otherwise.

Bounds
======

At most ``max_server_transactions`` server transactions live at once (the ones a peer creates). A new
request over the cap creates none: the layer answers it 503 (Service Unavailable) with ``Retry-After``
itself and gives the TU :class:`RequestRefused` (an ACK over the cap is not answered). Client transactions
are created by the TU and bounded by it. The timer heap is invalidated lazily and rebuilt when more than
half of it is stale.

Errors
======

:class:`TransactionError` (a :class:`~pbx.sip.errors.SipError`): the TU asked for something invalid
(a request without an RFC 3261 branch, an ACK through a transaction, a response no server transaction
can send, a CANCEL before a provisional response). Peers cannot raise it: what a peer sends wrong is
absorbed or reported as an event, except a message whose Via, CSeq, Call-ID or From does not parse, which
raises :class:`~pbx.sip.errors.SipParseError` from :meth:`~TransactionLayer.receive` (the shell drops it:
without a Via there is nowhere to answer).
"""

from __future__ import annotations

import enum
import heapq
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from pbx.sip.errors import SipError
from pbx.sip.headers import Via
from pbx.sip.message import Headers, Message, Request, Response, response_to
from pbx.sip.timers import TimerConfig

__all__ = [
    "CLIENT_INVITE_TABLE",
    "CLIENT_INVITE_TIMERS",
    "CLIENT_NON_INVITE_TABLE",
    "CLIENT_NON_INVITE_TIMERS",
    "MAGIC_COOKIE",
    "SERVER_INVITE_TABLE",
    "SERVER_INVITE_TIMERS",
    "SERVER_NON_INVITE_TABLE",
    "SERVER_NON_INVITE_TIMERS",
    "AckReceived",
    "Action",
    "Address",
    "AnyTransaction",
    "ClientInviteTransaction",
    "ClientNonInviteTransaction",
    "ClientTransaction",
    "Event",
    "Input",
    "RequestReceived",
    "RequestRefused",
    "ResponseReceived",
    "ServerInviteTransaction",
    "ServerNonInviteTransaction",
    "ServerTransaction",
    "State",
    "StrayResponse",
    "Timer",
    "Transaction",
    "TransactionError",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimeout",
    "Transition",
    "TransportFailed",
    "build_ack",
    "build_cancel",
    "next_interval",
    "timer_duration",
]

Address = tuple[str, int]
MAGIC_COOKIE = "z9hG4bK"
RELIABLE_TRANSPORTS = frozenset({"TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"})
DEFAULT_MAX_SERVER_TRANSACTIONS = 10_000
DEFAULT_RETRY_AFTER = 5


class TransactionError(SipError):
    """The TU asked the transaction layer for something invalid."""


# -- the state machines ------------------------------------------------------------------------------------
class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Input(enum.Enum):
    RECV_1XX = "1xx received"
    RECV_2XX = "2xx received"
    RECV_300_699 = "300-699 received"
    RECV_REQUEST = "request retransmission received"
    RECV_ACK = "ACK received"
    SEND_1XX = "1xx from TU"
    SEND_2XX = "2xx from TU"
    SEND_300_699 = "300-699 from TU"
    TRANSPORT_ERROR = "transport error"


class Timer(enum.Enum):
    A = "A"
    B = "B"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 - the RFC's name
    J = "J"
    K = "K"
    L = "L"
    M = "M"
    TRYING = "100 Trying"


class Action(enum.Enum):
    PASS_TO_TU = "pass to TU"               # client: the response; server (Accepted): the ACK
    SEND_RESPONSE = "send response"         # server: the TU's response, kept as the last one
    RESEND = "resend"                       # client: the request; server: the last response (if any)
    SEND_ACK = "send ACK"                   # client INVITE: the ACK of a 300-699 (§17.1.1.3)
    SEND_TRYING = "send 100 Trying"         # server INVITE (§17.2.1)
    REPORT_TIMEOUT = "inform TU: timeout"
    REPORT_TRANSPORT_ERROR = "inform TU: transport error"


@dataclass(frozen=True, slots=True)
class Transition:
    target: State
    actions: tuple[Action, ...] = ()
    stop: frozenset[Timer] = frozenset()


def _t(target: State, *actions: Action, stop: frozenset[Timer] = frozenset()) -> Transition:
    return Transition(target, actions, stop)


_S, _I, _A = State, Input, Action
Table = Mapping[tuple[State, Input | Timer], Transition]

# Figure 5 as RFC 6026 redraws it: INVITE client transaction.
CLIENT_INVITE_TABLE: Table = {
    (_S.CALLING, _I.RECV_1XX): _t(_S.PROCEEDING, _A.PASS_TO_TU),
    (_S.CALLING, _I.RECV_2XX): _t(_S.ACCEPTED, _A.PASS_TO_TU),
    (_S.CALLING, _I.RECV_300_699): _t(_S.COMPLETED, _A.SEND_ACK, _A.PASS_TO_TU),
    (_S.CALLING, Timer.A): _t(_S.CALLING, _A.RESEND),
    (_S.CALLING, Timer.B): _t(_S.TERMINATED, _A.REPORT_TIMEOUT),
    (_S.CALLING, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR),
    (_S.PROCEEDING, _I.RECV_1XX): _t(_S.PROCEEDING, _A.PASS_TO_TU),
    (_S.PROCEEDING, _I.RECV_2XX): _t(_S.ACCEPTED, _A.PASS_TO_TU),
    (_S.PROCEEDING, _I.RECV_300_699): _t(_S.COMPLETED, _A.SEND_ACK, _A.PASS_TO_TU),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR),
    (_S.COMPLETED, _I.RECV_300_699): _t(_S.COMPLETED, _A.SEND_ACK),
    (_S.COMPLETED, _I.RECV_1XX): _t(_S.COMPLETED),
    (_S.COMPLETED, _I.RECV_2XX): _t(_S.COMPLETED),
    (_S.COMPLETED, Timer.D): _t(_S.TERMINATED),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR),
    (_S.ACCEPTED, _I.RECV_2XX): _t(_S.ACCEPTED, _A.PASS_TO_TU),
    (_S.ACCEPTED, _I.RECV_1XX): _t(_S.ACCEPTED),
    (_S.ACCEPTED, _I.RECV_300_699): _t(_S.ACCEPTED),
    (_S.ACCEPTED, Timer.M): _t(_S.TERMINATED),
}
CLIENT_INVITE_TIMERS: Mapping[State, frozenset[Timer]] = {
    _S.CALLING: frozenset({Timer.A, Timer.B}),
    _S.PROCEEDING: frozenset(),
    _S.COMPLETED: frozenset({Timer.D}),
    _S.ACCEPTED: frozenset({Timer.M}),
    _S.TERMINATED: frozenset(),
}

# Figure 6: non-INVITE client transaction.
CLIENT_NON_INVITE_TABLE: Table = {
    (_S.TRYING, _I.RECV_1XX): _t(_S.PROCEEDING, _A.PASS_TO_TU),
    (_S.TRYING, _I.RECV_2XX): _t(_S.COMPLETED, _A.PASS_TO_TU),
    (_S.TRYING, _I.RECV_300_699): _t(_S.COMPLETED, _A.PASS_TO_TU),
    (_S.TRYING, Timer.E): _t(_S.TRYING, _A.RESEND),
    (_S.TRYING, Timer.F): _t(_S.TERMINATED, _A.REPORT_TIMEOUT),
    (_S.TRYING, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR),
    (_S.PROCEEDING, _I.RECV_1XX): _t(_S.PROCEEDING, _A.PASS_TO_TU),
    (_S.PROCEEDING, _I.RECV_2XX): _t(_S.COMPLETED, _A.PASS_TO_TU),
    (_S.PROCEEDING, _I.RECV_300_699): _t(_S.COMPLETED, _A.PASS_TO_TU),
    (_S.PROCEEDING, Timer.E): _t(_S.PROCEEDING, _A.RESEND),
    (_S.PROCEEDING, Timer.F): _t(_S.TERMINATED, _A.REPORT_TIMEOUT),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR),
    (_S.COMPLETED, _I.RECV_1XX): _t(_S.COMPLETED),
    (_S.COMPLETED, _I.RECV_2XX): _t(_S.COMPLETED),
    (_S.COMPLETED, _I.RECV_300_699): _t(_S.COMPLETED),
    (_S.COMPLETED, Timer.K): _t(_S.TERMINATED),
}
CLIENT_NON_INVITE_TIMERS: Mapping[State, frozenset[Timer]] = {
    _S.TRYING: frozenset({Timer.E, Timer.F}),
    _S.PROCEEDING: frozenset({Timer.E, Timer.F}),
    _S.COMPLETED: frozenset({Timer.K}),
    _S.TERMINATED: frozenset(),
}

# Figure 7 with RFC 6026 §7.1 and §8.7: INVITE server transaction.
SERVER_INVITE_TABLE: Table = {
    (_S.PROCEEDING, _I.RECV_REQUEST): _t(_S.PROCEEDING, _A.RESEND),
    (_S.PROCEEDING, Timer.TRYING): _t(_S.PROCEEDING, _A.SEND_TRYING),
    (_S.PROCEEDING, _I.SEND_1XX): _t(_S.PROCEEDING, _A.SEND_RESPONSE, stop=frozenset({Timer.TRYING})),
    (_S.PROCEEDING, _I.SEND_2XX): _t(_S.ACCEPTED, _A.SEND_RESPONSE),
    (_S.PROCEEDING, _I.SEND_300_699): _t(_S.COMPLETED, _A.SEND_RESPONSE),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR),
    (_S.COMPLETED, _I.RECV_REQUEST): _t(_S.COMPLETED, _A.RESEND),
    (_S.COMPLETED, _I.RECV_ACK): _t(_S.CONFIRMED),
    (_S.COMPLETED, Timer.G): _t(_S.COMPLETED, _A.RESEND),
    (_S.COMPLETED, Timer.H): _t(_S.TERMINATED, _A.REPORT_TIMEOUT),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR),
    (_S.CONFIRMED, _I.RECV_REQUEST): _t(_S.CONFIRMED),
    (_S.CONFIRMED, _I.RECV_ACK): _t(_S.CONFIRMED),
    (_S.CONFIRMED, Timer.I): _t(_S.TERMINATED),
    (_S.ACCEPTED, _I.RECV_REQUEST): _t(_S.ACCEPTED),
    (_S.ACCEPTED, _I.RECV_ACK): _t(_S.ACCEPTED, _A.PASS_TO_TU),
    (_S.ACCEPTED, _I.SEND_2XX): _t(_S.ACCEPTED, _A.SEND_RESPONSE),
    (_S.ACCEPTED, _I.TRANSPORT_ERROR): _t(_S.ACCEPTED, _A.REPORT_TRANSPORT_ERROR),
    (_S.ACCEPTED, Timer.L): _t(_S.TERMINATED),
}
SERVER_INVITE_TIMERS: Mapping[State, frozenset[Timer]] = {
    _S.PROCEEDING: frozenset({Timer.TRYING}),
    _S.COMPLETED: frozenset({Timer.G, Timer.H}),
    _S.CONFIRMED: frozenset({Timer.I}),
    _S.ACCEPTED: frozenset({Timer.L}),
    _S.TERMINATED: frozenset(),
}

# Figure 8: non-INVITE server transaction.
SERVER_NON_INVITE_TABLE: Table = {
    (_S.TRYING, _I.RECV_REQUEST): _t(_S.TRYING),
    (_S.TRYING, _I.SEND_1XX): _t(_S.PROCEEDING, _A.SEND_RESPONSE),
    (_S.TRYING, _I.SEND_2XX): _t(_S.COMPLETED, _A.SEND_RESPONSE),
    (_S.TRYING, _I.SEND_300_699): _t(_S.COMPLETED, _A.SEND_RESPONSE),
    (_S.TRYING, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR),
    (_S.PROCEEDING, _I.RECV_REQUEST): _t(_S.PROCEEDING, _A.RESEND),
    (_S.PROCEEDING, _I.SEND_1XX): _t(_S.PROCEEDING, _A.SEND_RESPONSE),
    (_S.PROCEEDING, _I.SEND_2XX): _t(_S.COMPLETED, _A.SEND_RESPONSE),
    (_S.PROCEEDING, _I.SEND_300_699): _t(_S.COMPLETED, _A.SEND_RESPONSE),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR),
    (_S.COMPLETED, _I.RECV_REQUEST): _t(_S.COMPLETED, _A.RESEND),
    (_S.COMPLETED, Timer.J): _t(_S.TERMINATED),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR),
}
SERVER_NON_INVITE_TIMERS: Mapping[State, frozenset[Timer]] = {
    _S.TRYING: frozenset(),
    _S.PROCEEDING: frozenset(),
    _S.COMPLETED: frozenset({Timer.J}),
    _S.TERMINATED: frozenset(),
}

_UNRELIABLE_ONLY = frozenset({Timer.A, Timer.E, Timer.G})
_ZERO_WHEN_RELIABLE = frozenset({Timer.D, Timer.I, Timer.J, Timer.K})
_TU_INPUTS = frozenset({Input.SEND_1XX, Input.SEND_2XX, Input.SEND_300_699})
_TIMER_ORDER = list(Timer)


def timer_duration(timer: Timer, config: TimerConfig, reliable: bool) -> float:
    """The first interval of ``timer`` (Table 4 of RFC 3261 with RFC 6026's L and M)."""
    if reliable and timer in _ZERO_WHEN_RELIABLE:
        return 0.0
    if timer in (Timer.A, Timer.E, Timer.G):
        return config.t1
    if timer in (Timer.B, Timer.F, Timer.H, Timer.J, Timer.L, Timer.M):
        return 64 * config.t1
    if timer is Timer.D:
        return config.d
    if timer is Timer.TRYING:
        return config.trying
    return config.t4    # I, K


def next_interval(timer: Timer, state: State, previous: float, config: TimerConfig) -> float:
    """Rule 4: the interval a retransmission timer re-arms with after ``previous``."""
    if timer is Timer.A:
        return 2 * previous
    if timer is Timer.E and state is State.PROCEEDING:
        return config.t2
    return min(2 * previous, config.t2)


def _classify(status: int, sent: bool) -> Input:
    if status < 200:
        return Input.SEND_1XX if sent else Input.RECV_1XX
    if status < 300:
        return Input.SEND_2XX if sent else Input.RECV_2XX
    return Input.SEND_300_699 if sent else Input.RECV_300_699


# -- transactions ------------------------------------------------------------------------------------------
TransactionKey = tuple[str, ...]


@dataclass(eq=False, slots=True)
class Transaction:
    """One transaction: its request, where it sends, its state. The layer drives it; read, don't write."""

    TABLE: ClassVar[Table]
    TIMERS: ClassVar[Mapping[State, frozenset[Timer]]]
    INITIAL: ClassVar[State]

    request: Request
    addr: Address
    reliable: bool
    key: TransactionKey
    state: State = State.TERMINATED
    _armed: dict[Timer, int] = field(default_factory=dict, repr=False)        # timer -> heap entry id
    _intervals: dict[Timer, float] = field(default_factory=dict, repr=False)  # retransmission intervals

    @property
    def branch(self) -> str | None:
        return self.request.branch

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED


@dataclass(eq=False, slots=True)
class ClientTransaction(Transaction):
    """A request we sent and the responses to it (§17.1)."""

    response: Response | None = None          # the last response received
    ack: Request | None = None                # INVITE: the ACK of a 300-699, built by the transaction
    _data: bytes = field(default=b"", repr=False)
    _ack_data: bytes = field(default=b"", repr=False)


@dataclass(eq=False, slots=True)
class ClientInviteTransaction(ClientTransaction):
    TABLE: ClassVar[Table] = CLIENT_INVITE_TABLE
    TIMERS: ClassVar[Mapping[State, frozenset[Timer]]] = CLIENT_INVITE_TIMERS
    INITIAL: ClassVar[State] = State.CALLING


@dataclass(eq=False, slots=True)
class ClientNonInviteTransaction(ClientTransaction):
    TABLE: ClassVar[Table] = CLIENT_NON_INVITE_TABLE
    TIMERS: ClassVar[Mapping[State, frozenset[Timer]]] = CLIENT_NON_INVITE_TIMERS
    INITIAL: ClassVar[State] = State.TRYING


@dataclass(eq=False, slots=True)
class ServerTransaction(Transaction):
    """A request we received and our responses to it (§17.2)."""

    last_response: Response | None = None
    _last_data: bytes = field(default=b"", repr=False)


@dataclass(eq=False, slots=True)
class ServerInviteTransaction(ServerTransaction):
    TABLE: ClassVar[Table] = SERVER_INVITE_TABLE
    TIMERS: ClassVar[Mapping[State, frozenset[Timer]]] = SERVER_INVITE_TIMERS
    INITIAL: ClassVar[State] = State.PROCEEDING


@dataclass(eq=False, slots=True)
class ServerNonInviteTransaction(ServerTransaction):
    TABLE: ClassVar[Table] = SERVER_NON_INVITE_TABLE
    TIMERS: ClassVar[Mapping[State, frozenset[Timer]]] = SERVER_NON_INVITE_TIMERS
    INITIAL: ClassVar[State] = State.TRYING


AnyTransaction = ClientTransaction | ServerTransaction


# -- events ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request (not a retransmission, not an ACK); ``cancels``: for a CANCEL, the INVITE it cancels."""

    request: Request
    addr: Address
    transaction: ServerTransaction
    cancels: ServerInviteTransaction | None = None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for the TU: every 1xx and final response, and each 2xx retransmission to an INVITE."""

    response: Response
    transaction: ClientTransaction


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK that is not a non-2xx transaction's: the ACK of a 2xx, for the dialog (§13.3.1.4)."""

    request: Request
    addr: Address
    transaction: ServerInviteTransaction | None     # the Accepted transaction it matched, if any


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer B or F (no final response) or H (no ACK for our 300-699) fired."""

    transaction: AnyTransaction
    timer: Timer


@dataclass(frozen=True, slots=True)
class TransportFailed:
    transaction: AnyTransaction


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    transaction: AnyTransaction


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matches no client transaction; dropped (RFC 6026's §18.1.2), reported for logging."""

    response: Response
    addr: Address


@dataclass(frozen=True, slots=True)
class RequestRefused:
    """A request the layer answered itself (``response``) without creating a transaction: over the cap."""

    request: Request
    addr: Address
    response: Response


Event = (RequestReceived | ResponseReceived | AckReceived | TransactionTimeout | TransportFailed
         | TransactionTerminated | StrayResponse | RequestRefused)


# -- requests the transaction layer builds ---------------------------------------------------------------------
def build_ack(request: Request, response: Response) -> Request:
    """The ACK of a 300-699 response to ``request`` (§17.1.1.3): same Request-URI, Call-ID, From, CSeq
    number and top Via as the INVITE, its Route headers, the To of the response."""
    headers = Headers()
    headers.add("Via", _top_via_value(request))
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", request.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq.seq} ACK")
    return Request("ACK", request.uri, headers)


def build_cancel(invite: Request) -> Request:
    """The CANCEL of ``invite`` (§9.1): same Request-URI, Call-ID, To, From, CSeq number and top Via (so
    the branch matches the INVITE's transaction), the INVITE's Route headers."""
    if invite.method != "INVITE":
        raise TransactionError(f"only an INVITE is cancelled, not {invite.method}")
    headers = Headers()
    headers.add("Via", _top_via_value(invite))
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", invite.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
    return Request("CANCEL", invite.uri, headers)


def _top_via_value(request: Request) -> str:
    return str(request.top_via)


def _random_token() -> str:
    return secrets.token_hex(8)


def _server_key(message: Message, via: Via, method: str) -> TransactionKey:
    """§17.2.3: branch, sent-by and method (an ACK's is INVITE); for RFC 2543 peers, the fallback key."""
    if method == "ACK":
        method = "INVITE"
    branch = via.branch
    port = "" if via.port is None else str(via.port)
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host.lower(), port, method)
    return ("2543", message.call_id, str(message.cseq.seq), message.from_.tag or "", via.host.lower(), port, method)


# -- the layer ---------------------------------------------------------------------------------------------------
class TransactionLayer:
    """All transactions of one endpoint; see the module docstring for the rules."""

    def __init__(self, *, timers: TimerConfig | None = None, token: Callable[[], str] = _random_token,
                 max_server_transactions: int = DEFAULT_MAX_SERVER_TRANSACTIONS,
                 retry_after: int = DEFAULT_RETRY_AFTER) -> None:
        if max_server_transactions < 1:
            raise ValueError(f"max_server_transactions must be at least 1, not {max_server_transactions}")
        self.timers = timers or TimerConfig()
        self.max_server_transactions = max_server_transactions
        self.retry_after = retry_after
        self._token = token
        self._clients: dict[TransactionKey, ClientTransaction] = {}
        self._servers: dict[TransactionKey, ServerTransaction] = {}
        self._heap: list[tuple[float, int, AnyTransaction, Timer]] = []
        self._entry_ids = 0
        self._stale = 0
        self._datagrams: list[tuple[bytes, Address]] = []
        self._events: list[Event] = []

    # -- introspection ---------------------------------------------------------------------------------------------
    @property
    def client_transactions(self) -> list[ClientTransaction]:
        return list(self._clients.values())

    @property
    def server_transactions(self) -> list[ServerTransaction]:
        return list(self._servers.values())

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    def new_branch(self) -> str:
        """A fresh RFC 3261 branch: the magic cookie and a random token."""
        return MAGIC_COOKIE + self._token()

    def find_server(self, request: Request) -> ServerTransaction | None:
        """The server transaction ``request`` belongs to (an ACK: its INVITE's), if it is live."""
        return self._servers.get(_server_key(request, request.top_via, request.method))

    # -- outputs ---------------------------------------------------------------------------------------------------
    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        datagrams, self._datagrams = self._datagrams, []
        return datagrams

    def get_timer(self) -> float | None:
        """The earliest deadline over all transactions, or None when no timer runs."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
            self._stale -= 1
        return heap[0][0] if heap else None

    # -- TU: client side -------------------------------------------------------------------------------------------
    def send_request(self, request: Request, addr: Address, now: float, reliable: bool = False) -> ClientTransaction:
        """Send ``request`` to ``addr`` through a new client transaction. Its top Via must carry an RFC 3261
        branch (:meth:`new_branch`) that no live client transaction of the same method uses."""
        if request.method == "ACK":
            raise TransactionError("an ACK is not sent through a transaction: send it directly (§17.1.1.3)")
        branch = request.branch
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise TransactionError(f"the top Via of the {request.method} needs a branch starting with "
                                   f"{MAGIC_COOKIE!r}, not {branch!r}")
        key = (branch, request.method)
        if key in self._clients:
            raise TransactionError(f"a client transaction for {request.method} with branch {branch!r} is live")
        transaction: ClientTransaction
        if request.method == "INVITE":
            transaction = ClientInviteTransaction(request, addr, reliable, key)
        else:
            transaction = ClientNonInviteTransaction(request, addr, reliable, key)
        transaction._data = request.serialize()
        self._clients[key] = transaction
        self._datagrams.append((transaction._data, addr))
        self._enter(transaction, transaction.INITIAL, now)
        return transaction

    def send_cancel(self, invite: ClientTransaction, now: float) -> ClientTransaction:
        """CANCEL the INVITE of ``invite`` (§9.1): allowed once a provisional response came (Proceeding)."""
        if not isinstance(invite, ClientInviteTransaction):
            raise TransactionError(f"only an INVITE is cancelled, not {invite.method}")
        if invite.state is State.CALLING:
            raise TransactionError("no provisional response yet: the CANCEL must wait for one (§9.1)")
        if invite.state is not State.PROCEEDING:
            raise TransactionError(f"the INVITE has its final response ({invite.state.value}): nothing to cancel")
        return self.send_request(build_cancel(invite.request), invite.addr, now, invite.reliable)

    # -- TU: server side -------------------------------------------------------------------------------------------
    def send_response(self, response: Response, now: float) -> ServerTransaction:
        """Send ``response`` through the server transaction of its request (its Via and CSeq method)."""
        if response.cseq.method == "ACK":
            raise TransactionError("an ACK is never answered")
        via = response.top_via
        key = _server_key(response, via, response.cseq.method)
        transaction = self._servers.get(key)
        if transaction is None:
            raise TransactionError(f"no server transaction for {response.status} {response.reason} to "
                                   f"{response.cseq.method} (branch {via.branch!r})")
        if not 100 <= response.status <= 699:
            raise TransactionError(f"status {response.status} is not a SIP status")
        self._step(transaction, _classify(response.status, sent=True), now, response)
        return transaction

    # -- network ---------------------------------------------------------------------------------------------------
    def receive(self, message: Message, addr: Address, now: float, *, reliable: bool | None = None) -> list[Event]:
        """A parsed message from ``addr``. ``reliable``: the transport it came over (default: its top Via's)."""
        if isinstance(message, Response):
            self._receive_response(message, addr, now)
        else:
            self._receive_request(message, addr, now, reliable)
        return self._take_events()

    def _receive_response(self, response: Response, addr: Address, now: float) -> None:
        branch = response.branch
        transaction = self._clients.get((branch, response.cseq.method)) if branch else None
        if transaction is None:
            self._events.append(StrayResponse(response, addr))
            return
        self._step(transaction, _classify(response.status, sent=False), now, response)

    def _receive_request(self, request: Request, addr: Address, now: float, reliable: bool | None) -> None:
        via = self._stamp_via(request, request.top_via, addr)
        key = _server_key(request, via, request.method)
        transaction = self._servers.get(key)
        if request.method == "ACK":
            if transaction is None:
                self._events.append(AckReceived(request, addr, None))
            else:
                self._step(transaction, Input.RECV_ACK, now, request, addr)
            return
        if transaction is not None:
            self._step(transaction, Input.RECV_REQUEST, now, request, addr)
            return
        if len(self._servers) >= self.max_server_transactions:
            self._refuse(request, addr)
            return
        if reliable is None:
            reliable = via.transport.upper() in RELIABLE_TRANSPORTS
        server: ServerTransaction
        if request.method == "INVITE":
            server = ServerInviteTransaction(request, addr, reliable, key)
        else:
            server = ServerNonInviteTransaction(request, addr, reliable, key)
        self._servers[key] = server
        cancels: ServerInviteTransaction | None = None
        if request.method == "CANCEL":
            target = self._servers.get((*key[:-1], "INVITE"))
            if isinstance(target, ServerInviteTransaction):
                cancels = target
        self._events.append(RequestReceived(request, addr, server, cancels))
        self._enter(server, server.INITIAL, now)

    def _stamp_via(self, request: Request, via: Via, addr: Address) -> Via:
        """§18.2.1 and RFC 3581 §4: ``received`` and ``rport`` on the top Via, for the responses."""
        params = dict(via.params)
        if via.host.strip("[]").lower() != addr[0].lower():
            params["received"] = addr[0]
        if "rport" in params and not params["rport"]:
            params["rport"] = str(addr[1])
            params.setdefault("received", addr[0])
        if params == via.params:
            return via
        stamped = Via(via.transport, via.host, via.port, params)
        values = request.headers.get_all("Via")
        request.headers.set("Via", ", ".join([str(stamped), *values[1:]]))
        return stamped

    def _refuse(self, request: Request, addr: Address) -> None:
        if request.method == "ACK":
            return
        to_tag = None if request.to.tag else self._token()
        response = response_to(request, 503, "Service Unavailable", to_tag=to_tag)
        response.headers.add("Retry-After", str(self.retry_after))
        self._datagrams.append((response.serialize(), addr))
        self._events.append(RequestRefused(request, addr, response))

    def transport_error(self, transaction: AnyTransaction, now: float) -> list[Event]:
        """The transport could not deliver what ``transaction`` sent (e.g. a TCP connection failed)."""
        if not transaction.terminated:
            self._step(transaction, Input.TRANSPORT_ERROR, now, None)
        return self._take_events()

    # -- timers ----------------------------------------------------------------------------------------------------
    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at ``now``, in deadline order (zero timers armed meanwhile included)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if not self._live(entry):
                self._stale -= 1
                continue
            _, _, transaction, timer = entry
            del transaction._armed[timer]
            self._step(transaction, timer, now, None)
        return self._take_events()

    def _live(self, entry: tuple[float, int, AnyTransaction, Timer]) -> bool:
        _, entry_id, transaction, timer = entry
        return transaction._armed.get(timer) == entry_id

    def _arm(self, transaction: AnyTransaction, timer: Timer, interval: float, now: float) -> None:
        if timer in transaction._armed:
            self._disarm(transaction, timer)
        self._entry_ids += 1
        transaction._armed[timer] = self._entry_ids
        transaction._intervals[timer] = interval
        heapq.heappush(self._heap, (now + interval, self._entry_ids, transaction, timer))

    def _disarm(self, transaction: AnyTransaction, timer: Timer) -> None:
        if transaction._armed.pop(timer, None) is not None:
            self._stale += 1
            if self._stale > 64 and self._stale * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if self._live(entry)]
                heapq.heapify(self._heap)
                self._stale = 0

    # -- the machine -------------------------------------------------------------------------------------------------
    def _step(self, transaction: AnyTransaction, event: Input | Timer, now: float,
              message: Request | Response | None, addr: Address | None = None) -> None:
        row = transaction.TABLE.get((transaction.state, event))
        if row is None:
            if event in _TU_INPUTS:
                status = message.status if isinstance(message, Response) else 0
                raise TransactionError(f"the {transaction.method} server transaction in {transaction.state.value} "
                                       f"cannot send a {status} response")
            return      # rule 2: absorbed
        for action in row.actions:
            self._act(action, transaction, event, message, addr or transaction.addr)
        previous = transaction.state
        for timer in row.stop:
            self._disarm(transaction, timer)
        if row.target is not previous:
            self._enter(transaction, row.target, now)
        elif isinstance(event, Timer) and event in _UNRELIABLE_ONLY and event in transaction.TIMERS[previous]:
            interval = next_interval(event, previous, transaction._intervals[event], self.timers)
            self._arm(transaction, event, interval, now)

    def _enter(self, transaction: AnyTransaction, state: State, now: float) -> None:
        transaction.state = state
        wanted = transaction.TIMERS[state]
        if transaction.reliable:
            wanted = wanted - _UNRELIABLE_ONLY
        for timer in list(transaction._armed):
            if timer not in wanted:
                self._disarm(transaction, timer)
        for timer in sorted(wanted, key=_TIMER_ORDER.index):
            if timer not in transaction._armed:
                self._arm(transaction, timer, timer_duration(timer, self.timers, transaction.reliable), now)
        if state is State.TERMINATED:
            if isinstance(transaction, ClientTransaction):
                del self._clients[transaction.key]
            else:
                del self._servers[transaction.key]
            self._events.append(TransactionTerminated(transaction))

    def _act(self, action: Action, transaction: AnyTransaction, event: Input | Timer,
             message: Request | Response | None, addr: Address) -> None:
        """Run one action; the tables only pair an action with the kinds and messages it applies to."""
        if isinstance(transaction, ClientTransaction):
            if action is Action.RESEND:
                self._datagrams.append((transaction._data, transaction.addr))
                return
            if action is Action.PASS_TO_TU and isinstance(message, Response):
                transaction.response = message
                self._events.append(ResponseReceived(message, transaction))
                return
            if action is Action.SEND_ACK and isinstance(message, Response):
                if transaction.ack is None:
                    transaction.ack = build_ack(transaction.request, message)
                    transaction._ack_data = transaction.ack.serialize()
                self._datagrams.append((transaction._ack_data, transaction.addr))
                return
        elif isinstance(transaction, ServerTransaction):
            if action is Action.RESEND:
                if transaction._last_data:          # Proceeding before any provisional: nothing to resend
                    self._datagrams.append((transaction._last_data, transaction.addr))
                return
            if action is Action.SEND_RESPONSE and isinstance(message, Response):
                self._send(transaction, message)
                return
            if action is Action.SEND_TRYING:
                self._send(transaction, response_to(transaction.request, 100, "Trying"))
                return
            if (action is Action.PASS_TO_TU and isinstance(transaction, ServerInviteTransaction)
                    and isinstance(message, Request)):
                self._events.append(AckReceived(message, addr, transaction))
                return
        if action is Action.REPORT_TIMEOUT and isinstance(event, Timer):
            self._events.append(TransactionTimeout(transaction, event))
            return
        if action is Action.REPORT_TRANSPORT_ERROR:
            self._events.append(TransportFailed(transaction))
            return
        raise RuntimeError(f"transaction table bug: {action.value!r} on {type(transaction).__name__} "
                           f"for {event}")

    def _send(self, transaction: ServerTransaction, response: Response) -> None:
        transaction.last_response = response
        transaction._last_data = response.serialize()
        self._datagrams.append((transaction._last_data, transaction.addr))

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events
