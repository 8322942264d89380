"""SIP dialogs (RFC 3261 §12), sans-I/O: the state two user agents share between INVITE and BYE.

Rules
=====

- A dialog is identified by Call-ID, local tag and remote tag (:class:`DialogId`). The UAC makes one from
  its request and a 101-199 response with a To tag (early) or a 2xx (confirmed) with
  :meth:`Dialog.from_uac` (§12.1.2); the UAS from the request and its own response with
  :meth:`Dialog.from_uas` (§12.1.1). ``secure`` is the caller's: a sips Request-URI sent over TLS.
- Route set: the Record-Route values of the 2xx/1xx in reverse order for the UAC, of the request in order
  for the UAS; fixed once the dialog is confirmed (a UAC's early dialog takes the 2xx's, §13.2.2.4).
  Remote target: the Contact URI of the peer's message; a 1xx without Contact leaves the Request-URI of
  the request (a 2xx without Contact is refused). Target refresh (§12.2): an INVITE or UPDATE request,
  or a 2xx to ours, with a Contact replaces the remote target.
- :meth:`Dialog.create_request` builds a request inside the dialog (§12.2.1.1): Request-URI, Route,
  From, To, Call-ID, CSeq (one more than the last, 1 if the dialog has none yet) and the Via the caller
  gives; Max-Forwards only when asked (the UA core adds it with its other headers). Loose routing: with
  an empty route set or a first route with ``lr`` the Request-URI is the remote target and Route the route
  set; strict routing (a first route without ``lr``): the Request-URI is the first route (without the
  parameters a Request-URI may not carry), Route the rest and the remote target last.
- :meth:`Dialog.create_ack` builds the ACK of a 2xx: a request in the dialog with the INVITE's CSeq number
  and credentials, no CSeq increment (§13.2.2.4). A CANCEL is not a dialog request: it is built from the
  INVITE (:func:`pbx.sip.transaction.build_cancel`, §9.1).
- :meth:`Dialog.receive_request` checks an incoming request (§12.2.2): a CSeq lower than the remote
  sequence number is out of order (:class:`DialogError`, answer 500); ACK and CANCEL carry their
  INVITE's number and are not checked.
- Not built: the §14 glare rules (491), RFC 3311 UPDATE offer/answer, dialog usages (RFC 5057).

Errors
======

::

    SipError
    ├── DialogError (also ValueError)   the peer's message cannot create or enter the dialog; ``status`` and
    │                                   ``reason`` are what to answer a request with
    └── DialogUsageError                the caller asked the dialog for something invalid
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from pbx.sip.errors import SipError
from pbx.sip.headers import NameAddr, SipUri
from pbx.sip.message import Headers, Message, Request, Response

__all__ = [
    "TARGET_REFRESH_METHODS",
    "Dialog",
    "DialogError",
    "DialogId",
    "DialogState",
    "DialogTable",
    "DialogUsageError",
]

TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE"})
DEFAULT_MAX_DIALOGS = 10_000
_NOT_IN_REQUEST_URI = frozenset({"method"})     # §19.1.1, Table 1 (and the URI's headers)


class DialogError(SipError, ValueError):
    """A message that cannot create or enter a dialog; answer a request with ``status`` and ``reason``."""

    def __init__(self, message: str, status: int = 400, reason: str = "Bad Request") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class DialogUsageError(SipError):
    """The caller asked the dialog for something it cannot do."""


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"


@dataclass(frozen=True, slots=True)
class DialogId:
    call_id: str
    local_tag: str
    remote_tag: str


def _contact_uri(message: Message) -> str | None:
    """The URI of the first Contact of ``message``, or None."""
    contacts = message.headers.get_all("Contact")
    if not contacts or contacts[0] == "*":
        return None
    try:
        return str(NameAddr.parse(contacts[0]).uri)
    except ValueError as exc:
        raise DialogError(f"bad Contact {contacts[0]!r}: {exc}") from exc


def _tag(party: NameAddr) -> str:
    return party.tag or ""


@dataclass(eq=False, slots=True)
class Dialog:
    """One dialog's state (§12): who, where requests go, through which proxies, and the CSeq numbers."""

    call_id: str
    local_tag: str
    remote_tag: str                         # "" when an RFC 2543 UAC sent no From tag
    local_party: NameAddr                   # the local URI (with display name), From of our requests
    remote_party: NameAddr                  # the remote URI, To of our requests
    remote_target: str                      # the peer's Contact URI: the Request-URI of our requests
    route_set: list[str] = field(default_factory=list)   # Route values, in the order requests carry them
    local_seq: int | None = None
    remote_seq: int | None = None
    secure: bool = False
    state: DialogState = DialogState.CONFIRMED
    is_uac: bool = True

    # -- creation ----------------------------------------------------------------------------------------
    @classmethod
    def from_uac(cls, request: Request, response: Response, *, secure: bool = False) -> Dialog:
        """The dialog a UAC's ``request`` and a 101-299 ``response`` with a To tag make (§12.1.2)."""
        status = response.status
        if not 101 <= status <= 299:
            raise DialogError(f"a {status} response creates no dialog")
        remote_tag = response.to.tag
        if not remote_tag:
            raise DialogError(f"the {status} response has no To tag: it creates no dialog")
        local_tag = request.from_.tag
        if not local_tag:
            raise DialogUsageError("the request has no From tag")
        target = _contact_uri(response)
        if target is None:
            if status >= 200:
                raise DialogError(f"the {status} response has no Contact")
            target = request.uri
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_party=request.from_,
            remote_party=request.to.with_tag(remote_tag),
            remote_target=target,
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            local_seq=request.cseq.seq,
            secure=secure,
            state=DialogState.EARLY if status < 200 else DialogState.CONFIRMED,
            is_uac=True,
        )

    @classmethod
    def from_uas(cls, request: Request, response: Response, *, secure: bool = False) -> Dialog:
        """The dialog a UAS makes when it answers ``request`` with a 101-299 ``response`` (§12.1.1)."""
        status = response.status
        if not 101 <= status <= 299:
            raise DialogUsageError(f"a {status} response creates no dialog")
        local_tag = response.to.tag
        if not local_tag:
            raise DialogUsageError(f"the {status} response needs a To tag to create a dialog")
        target = _contact_uri(request)
        if target is None:
            raise DialogError(f"the {request.method} has no Contact")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=_tag(request.from_),
            local_party=request.to.with_tag(local_tag),
            remote_party=request.from_,
            remote_target=target,
            route_set=request.headers.get_all("Record-Route"),
            remote_seq=request.cseq.seq,
            secure=secure,
            state=DialogState.EARLY if status < 200 else DialogState.CONFIRMED,
            is_uac=False,
        )

    # -- identity ------------------------------------------------------------------------------------------
    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @property
    def local_uri(self) -> str:
        return str(self.local_party.uri)

    @property
    def remote_uri(self) -> str:
        return str(self.remote_party.uri)

    # -- outgoing requests -----------------------------------------------------------------------------------
    def create_request(self, method: str, *, via: str, max_forwards: int | None = None, body: bytes = b"",
                       content_type: str | None = None) -> Request:
        """A new request in the dialog (§12.2.1.1); the CSeq is incremented."""
        if method in ("ACK", "CANCEL"):
            raise DialogUsageError(f"{method} keeps its INVITE's CSeq: use "
                                   f"{'create_ack' if method == 'ACK' else 'transaction.build_cancel'}")
        self.local_seq = 1 if self.local_seq is None else self.local_seq + 1
        return self._request(method, self.local_seq, via, max_forwards, body, content_type)

    def create_ack(self, invite: Request, *, via: str, max_forwards: int | None = None) -> Request:
        """The ACK of a 2xx to ``invite`` (§13.2.2.4): the INVITE's CSeq number and credentials."""
        if invite.method != "INVITE":
            raise DialogUsageError(f"an ACK acknowledges an INVITE, not a {invite.method}")
        ack = self._request("ACK", invite.cseq.seq, via, max_forwards, b"", None)
        for name in ("Authorization", "Proxy-Authorization"):
            for value in invite.headers.get_all(name):
                ack.headers.add(name, value)
        return ack

    def _request(self, method: str, seq: int, via: str, max_forwards: int | None, body: bytes,
                 content_type: str | None) -> Request:
        uri, routes = self._routing()
        headers = Headers()
        headers.add("Via", via)
        for route in routes:
            headers.add("Route", route)
        if max_forwards is not None:
            headers.add("Max-Forwards", str(max_forwards))
        headers.add("From", str(self.local_party))
        headers.add("To", str(self.remote_party))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{seq} {method}")
        if content_type is not None:
            headers.add("Content-Type", content_type)
        return Request(method, uri, headers, body)

    def _routing(self) -> tuple[str, list[str]]:
        """The Request-URI and Route values of a request (§12.2.1.1, loose and strict routing)."""
        if not self.route_set:
            return self.remote_target, []
        first = NameAddr.parse(self.route_set[0]).uri
        if "lr" in first.params:
            return self.remote_target, list(self.route_set)
        params = {k: v for k, v in first.params.items() if k not in _NOT_IN_REQUEST_URI}
        uri = SipUri(first.scheme, first.user, first.password, first.host, first.port, params, {})
        return str(uri), [*self.route_set[1:], f"<{self.remote_target}>"]

    # -- incoming messages -------------------------------------------------------------------------------------
    def receive_request(self, request: Request) -> None:
        """Check and apply a request received in the dialog (§12.2.2); :class:`DialogError` (500) when its
        CSeq is lower than the last one. A target refresh request with Contact moves the remote target."""
        if request.call_id != self.call_id or _tag(request.to) != self.local_tag \
                or _tag(request.from_) != self.remote_tag:
            raise DialogError("the request is not in this dialog", 481, "Call/Transaction Does Not Exist")
        if request.method in ("ACK", "CANCEL"):
            return
        seq = request.cseq.seq
        if self.remote_seq is not None and seq < self.remote_seq:
            raise DialogError(f"CSeq {seq} is lower than the dialog's {self.remote_seq}: out of order",
                              500, "Server Internal Error")
        self.remote_seq = seq
        if request.method in TARGET_REFRESH_METHODS:
            self.refresh_target(request)

    def receive_response(self, response: Response) -> None:
        """Apply a response to a request we sent in the dialog: a 2xx to the INVITE confirms an early
        dialog and takes the route set of the 2xx (§13.2.2.4); a 2xx to a target refresh request moves the
        remote target (§12.2.1.2)."""
        if not 200 <= response.status <= 299:
            return
        method = response.cseq.method
        if method == "INVITE" and self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED
            if self.is_uac:
                self.route_set = list(reversed(response.headers.get_all("Record-Route")))
        if method in TARGET_REFRESH_METHODS:
            self.refresh_target(response)

    def refresh_target(self, message: Message) -> bool:
        """Take the Contact of ``message`` as the remote target; False when it has none."""
        target = _contact_uri(message)
        if target is None:
            return False
        self.remote_target = target
        return True

    def confirm(self) -> None:
        """A UAS's early dialog is confirmed by its own 2xx."""
        self.state = DialogState.CONFIRMED


class DialogTable:
    """The dialogs of one endpoint by :class:`DialogId`, with lookup for an incoming message; bounded."""

    def __init__(self, max_dialogs: int = DEFAULT_MAX_DIALOGS) -> None:
        if max_dialogs < 1:
            raise ValueError(f"max_dialogs must be at least 1, not {max_dialogs}")
        self.max_dialogs = max_dialogs
        self._dialogs: dict[DialogId, Dialog] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def __contains__(self, dialog: object) -> bool:
        return isinstance(dialog, Dialog) and self._dialogs.get(dialog.id) is dialog

    def add(self, dialog: Dialog) -> None:
        """Add ``dialog``; :class:`DialogError` (503) when the table is full, DialogUsageError when its id
        is taken."""
        key = dialog.id
        if key in self._dialogs:
            raise DialogUsageError(f"a dialog {key} exists")
        if len(self._dialogs) >= self.max_dialogs:
            raise DialogError(f"too many dialogs ({self.max_dialogs})", 503, "Service Unavailable")
        self._dialogs[key] = dialog

    def remove(self, dialog: Dialog) -> None:
        if self._dialogs.get(dialog.id) is dialog:
            del self._dialogs[dialog.id]

    def get(self, key: DialogId) -> Dialog | None:
        return self._dialogs.get(key)

    def match(self, message: Message) -> Dialog | None:
        """The dialog an incoming message belongs to: a request's To tag is our tag, a response's From tag
        (§12.2.2, §12.1.2). None for a message outside any dialog we know."""
        if isinstance(message, Request):
            key = DialogId(message.call_id, _tag(message.to), _tag(message.from_))
        else:
            key = DialogId(message.call_id, _tag(message.from_), _tag(message.to))
        return self._dialogs.get(key)

    def dialog_set(self, call_id: str, local_tag: str) -> list[Dialog]:
        """The dialogs one request of ours created (forking: the same Call-ID and local tag)."""
        return [d for d in self._dialogs.values() if d.call_id == call_id and d.local_tag == local_tag]
