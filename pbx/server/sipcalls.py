"""The server's SIP side: one user agent on the SIP port, the RTP ports, and the calls waiting for a decision.

:class:`SipCalls` routes the user agent's events to the :class:`~pbx.server.siptransport.SipTransport`
of each call. An INVITE from outside is held pending under its ``dialogId`` while the operator's
webhook (``[webhook] url``) is told; the application answers it by connecting to
``/call/sip?id=<dialogId>`` (:meth:`SipCalls.claim`) and sending ``ringing``, ``accept`` or ``reject``.
Whatever happens first of these ends a pending INVITE:

- no webhook configured: 480 Temporarily Unavailable at once;
- the webhook POST fails or answers outside 2xx: 503 Service Unavailable;
- no decision (``ringing``, ``accept``, ``reject``) within ``decision_timeout_secs``: 408 Request Timeout;
- the caller gives up (CANCEL): the pending call goes, and a connected application gets ``hangup``.

Outbound calls (:meth:`SipCalls.place`) go through the first ``[[sip.trunks]]`` entry whose ``match``
takes the callee (its proxy, credentials, number template and headers), else straight to the callee's URI.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pbx.errors import ProtocolError
from pbx.media.rtp_ports import RtpPortPool
from pbx.protocol import CallOption
from pbx.server.admission import RETRY_AFTER_S
from pbx.server.hostaddr import default_route_address
from pbx.server.registry import Registry
from pbx.server.sipnet import SipNetwork
from pbx.server.webhook import WebhookError, post_json
from pbx.sip.config import Account, SipConfig, WebhookConfig
from pbx.sip.dial_allow import dial_refusal
from pbx.sip.digest import Credentials
from pbx.sip.guard import SipGuard
from pbx.sip.headers import SipUri
from pbx.sip.message import Limits
from pbx.sip.registrar import InboundAuth, Registrar
from pbx.sip.registration import Registration
from pbx.sip.ua import (
    Ended,
    Failed,
    Incoming,
    Registered,
    RegistrationEvent,
    RegistrationFailed,
    Session,
    SessionState,
    UaEvent,
    UserAgent,
)

if TYPE_CHECKING:
    from pbx.server.siptransport import SipTransport

log = logging.getLogger(__name__)

Address = tuple[str, int]
WEBHOOK_HEADERS = ("From", "To", "Call-ID", "Contact", "User-Agent", "P-Asserted-Identity", "Remote-Party-ID",
                   "Diversion", "Subject")


class SessionOwner(Protocol):
    """What hears a SIP session's events: a call's transport, or a refer's transfer leg."""

    def on_ua_event(self, event: UaEvent) -> None: ...


@dataclass(frozen=True, slots=True)
class Side:
    """One address family the SIP port serves: where it listens, what peers are told, its RTP ports."""

    address: Address
    advertised: str
    ports: RtpPortPool
    ipv6: bool


@dataclass(eq=False, slots=True)
class Pending:
    """An inbound INVITE waiting for its application."""

    session: Session
    created_at: str
    deadline: asyncio.TimerHandle | None = None
    webhook: asyncio.Task[None] | None = None
    transport: SipTransport | None = None
    decided: bool = False


def advertised(config: SipConfig, bound_host: str) -> str:
    """The address peers are told (SDP c=, Contact, Via): ``external_ip``, else the bound address, else
    (bound to every interface) the address the host routes from."""
    if config.external_ip and (":" in config.external_ip) == (":" in bound_host):   # for its own family only
        return config.external_ip
    if not ipaddress.ip_address(bound_host).is_unspecified:
        return bound_host
    return default_route_address(":" in bound_host)


def numeric_host(uri: SipUri) -> str | None:
    """The URI's host if it is an IP address (no lookup needed), else None."""
    host = uri.host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host


class SipCalls:
    def __init__(self, config: SipConfig, webhook: WebhookConfig, registry: Registry | None = None) -> None:
        self.config = config
        self.webhook = webhook
        self.registry = registry        # an inbound call's dialog id is claimed there before the webhook
        self.ua: UserAgent | None = None
        self.guard: SipGuard | None = None
        self.network: SipNetwork | None = None
        self.ports = RtpPortPool(config.rtp_ports[0], config.rtp_ports[1], "0.0.0.0")
        self.advertised_host = "127.0.0.1"
        self.address: Address | None = None
        self.ipv6 = False                               # the family of ``address`` (and of ``ports``)
        self.other: Side | None = None                  # with [sip] addr6: the IPv6 side beside ``address``
        self.pending: dict[str, Pending] = {}
        self._bound: dict[str, SessionOwner] = {}       # by session id
        self._tasks: set[asyncio.Task[Any]] = set()
        self._names: dict[tuple[str, bool], str] = {}   # (host name, IPv6) looked up for outbound calls
        self.registrations: list[Registration] = []
        self._prebound: dict[Address, socket.socket] = {}
        # admission control (pbx.server.admission): why ``extra`` more calls are refused now, or None
        self.refusal: Callable[[int], str | None] = lambda extra: None

    @staticmethod
    def now() -> float:
        return time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self, sockets: Mapping[Address, socket.socket] | None = None, *, register: bool = True,
                    call_id_tag: str = "") -> Address:
        """Listen on ``[sip] addr`` (and ``addr6``); a worker of pbx.server.supervisor gets the supervisor's
        ``sockets`` for them instead, by configured address, tags its Call-IDs, and only one worker
        registers the accounts."""
        host, port = self.config.host_port
        ua = UserAgent(host, port, user_agent=self.config.user_agent)
        ua.call_id_tag = call_id_tag
        self.guard = SipGuard(self.config)     # docs/sip-security.md
        if self.config.users:
            ua.auth = InboundAuth(self.config.auth_realm, self.config.users, self.guard,
                                  algorithms=self.config.auth_algorithms)
            ua.registrar = Registrar()
        network = SipNetwork(ua, self._on_event, Limits(max_size=self.config.max_message_bytes), self.guard)
        self.ua, self.network = ua, network
        self._prebound = dict(sockets or {})
        side = await self._listen(host, port)
        self.address, self.advertised_host, self.ports, self.ipv6 = side.address, side.advertised, side.ports, side.ipv6
        ua.host, ua.port = side.advertised, side.address[1]
        if self.config.host_port6 is not None:
            self.other = await self._listen(*self.config.host_port6)
            ua.address6 = (self.other.advertised, self.other.address[1])
        bound = side.address
        if not self.config.dial_allow and not ipaddress.ip_address(host).is_loopback:
            log.warning("sip: [sip] dial_allow is empty: invite and refer may dial any callee (docs/sip-security.md)")
        for account in self.config.accounts if register else ():
            self._spawn(self._register(account))
        return bound

    async def _listen(self, host: str, port: int) -> Side:
        assert self.network is not None
        prebound = self._prebound.get((host, port))
        bound = self.network.attach(prebound) if prebound is not None else await self.network.start(host, port)
        ipv6 = ":" in bound[0]
        ports = RtpPortPool(self.config.rtp_ports[0], self.config.rtp_ports[1], "::" if ipv6 else bound[0],
                            ipv6=ipv6)
        return Side(bound, advertised(self.config, bound[0]), ports, ipv6)

    def media_side(self, ipv6: bool) -> tuple[str, RtpPortPool]:
        """The advertised host and RTP ports for a call's media over IPv6 or IPv4; ProtocolError when
        the server has no SIP address of that family."""
        if ipv6 == self.ipv6:
            return self.advertised_host, self.ports
        if self.other is not None:
            return self.other.advertised, self.other.ports
        raise ProtocolError(f"this server has no IPv{6 if ipv6 else 4} SIP address"
                            + (" ([sip] addr6)" if ipv6 else ""))

    def family_for(self, enable_ipv6: bool) -> bool:
        """Whether an outbound call goes over IPv6 (its signalling and media): with both families, as its
        ``enableIpv6`` option says; with one, that one."""
        return enable_ipv6 if self.other is not None else self.ipv6

    def _serves(self, ipv6: bool) -> bool:
        return self.ipv6 == ipv6 or self.other is not None

    async def _register(self, account: Account) -> None:
        """REGISTER a ``[[sip.accounts]]`` entry and keep it refreshed (the user agent's timer does)."""
        registrar = SipUri.parse(account.registrar)
        name = None if numeric_host(registrar) else registrar.host.strip("[]")
        try:
            if name is not None:
                await self.look_up(name, self.ipv6)
        except OSError as exc:
            log.warning("sip: cannot register %s: %s does not resolve: %s", account.username, name, exc)
            return
        if self.ua is None:
            return
        aor = f"sip:{account.username}@{registrar.host}"
        credentials = Credentials(account.username, account.password, account.realm or None) \
            if account.password else None
        self.registrations.append(self.ua.register(aor, account.registrar, self._next_hop(registrar, self.ipv6),
                                                   self.now(),
                                                   credentials=credentials, expires=account.expires))
        self.flush()

    async def stop(self) -> None:
        for pending in list(self.pending.values()):
            self._refuse(pending, 503, "Service Unavailable")
        if self.ua is not None:
            for registration in self.registrations:
                self.ua.unregister(registration, self.now())     # best effort: no waiting for the answer
        if self.network is not None:
            self.flush()
            await self.network.stop()
        for task in list(self._tasks):
            task.cancel()
        self.network = None

    @property
    def agent(self) -> UserAgent:
        if self.ua is None:
            raise ProtocolError("the SIP port is not running on this server ([sip] is not configured)")
        return self.ua

    def flush(self) -> None:
        if self.network is not None:
            self.network.flush()

    # -- calls and their transports ---------------------------------------------------------------------------
    def bind(self, session: Session, transport: SessionOwner) -> None:
        self._bound[session.id] = transport

    def unbind(self, session: Session) -> None:
        self._bound.pop(session.id, None)
        pending = self.pending.pop(session.id, None)
        if pending is not None:
            self._settle(pending)

    def claim(self, dialog_id: str, transport: SipTransport) -> Session | None:
        """The application connected for ``dialog_id``: its pending INVITE, or None (no such call, or one
        already claimed, or the caller gave up)."""
        pending = self.pending.get(dialog_id)
        if pending is None or pending.transport is not None:
            return None
        pending.transport = transport
        self.bind(pending.session, transport)
        return pending.session

    def decided(self, session: Session) -> None:
        """``ringing``, ``accept`` or ``reject`` came: the decision timeout no longer applies."""
        pending = self.pending.pop(session.id, None)
        if pending is not None:
            self._settle(pending)

    def next_hop_name(self, callee: str, ipv6: bool) -> str | None:
        """The host name the INVITE for ``callee`` must be sent to, when it has to be looked up first
        (:meth:`look_up`, for an IPv6 address if ``ipv6``); None when the next hop is an address."""
        trunk = self.config.trunk_for(callee)
        target = trunk.proxy if trunk is not None else callee
        if not target.startswith(("sip:", "sips:")):
            return None         # place() says why it cannot be dialled
        uri = SipUri.parse(target)
        if numeric_host(uri) is not None or (uri.host.strip("[]"), ipv6) in self._names:
            return None
        return uri.host.strip("[]")

    @property
    def rtp_timeout_ms(self) -> float:
        """``[sip] rtp_timeout_secs``: no RTP this long ends a leg's call (0: never)."""
        return self.config.rtp_timeout_secs * 1000.0

    def when_routable(self, callee: str, place: Callable[[], None], failed: Callable[[str], None], *,
                      ipv6: bool | None = None) -> None:
        """Call ``place`` once the next hop for ``callee`` is known: at once for an address, after a
        lookup off the event loop for a host name (``failed`` with why, if it does not resolve); the
        name is looked up for the server's own family, or for IPv6 or IPv4 as ``ipv6`` says. Both
        callbacks must check that their call is still wanted: it may have ended during the lookup."""
        refused = self.refusal(0)       # the call placing it is counted already
        if refused is None:
            refused = dial_refusal(self.config.dial_allow, callee)     # before any lookup or packet
        if refused is not None:
            failed(refused)
            return
        family = self.ipv6 if ipv6 is None else ipv6
        name = self.next_hop_name(callee, family)
        if name is None:
            place()
        else:
            self._spawn(self._look_up_then(name, family, place, failed))

    async def _look_up_then(self, name: str, ipv6: bool, place: Callable[[], None],
                            failed: Callable[[str], None]) -> None:
        try:
            await self.look_up(name, ipv6)
        except OSError as exc:
            failed(f"{name}: {exc.strerror or exc}")
        else:
            place()
        self.flush()

    async def look_up(self, name: str, ipv6: bool) -> None:
        """Resolve ``name`` to an IPv6 or IPv4 address without blocking the loop (the media of every call
        runs on it); OSError if it does not resolve. Kept for the server's lifetime (no SRV/NAPTR: RFC
        3263 is not built)."""
        infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_DGRAM,
                                                             family=socket.AF_INET6 if ipv6 else socket.AF_INET)
        if not infos:
            raise OSError(f"{name} does not resolve")
        self._names[name, ipv6] = str(infos[0][4][0])

    def _next_hop(self, uri: SipUri, ipv6: bool) -> Address:
        host = numeric_host(uri) or self._names.get((uri.host.strip("[]"), ipv6))
        if host is None:
            raise ProtocolError(f"{uri.host} is not looked up yet")
        if not self._serves(":" in host):
            raise ProtocolError(f"{uri.host} is an IPv{6 if ':' in host else 4} address and this server has no "
                                f"SIP address of that family")
        return host, uri.port or 5060

    def place(self, transport: SessionOwner, option: CallOption, sdp: bytes, *, ipv6: bool | None = None) -> Session:
        """INVITE ``option.callee`` with our ``sdp`` offer, through the trunk that takes the callee (a host
        name resolved for ``ipv6``, as given to :meth:`when_routable`)."""
        ua = self.agent
        callee = option.callee or ""
        refused = dial_refusal(self.config.dial_allow, callee)
        if refused is not None:
            raise ProtocolError(refused)
        trunk = self.config.trunk_for(callee)
        target = trunk.uri_for(callee) if trunk is not None else callee
        if not target.startswith(("sip:", "sips:")):
            raise ProtocolError(f"invite.option.callee: {callee!r} is not a sip: URI and no [[sip.trunks]] "
                                "entry takes it")
        next_hop = self._next_hop(SipUri.parse(trunk.proxy) if trunk is not None else SipUri.parse(target),
                                  self.ipv6 if ipv6 is None else ipv6)
        own = self.media_side(":" in next_hop[0])[0]
        own = f"[{own}]" if ":" in own else own
        caller = option.caller or f"sip:pypbx@{own}"
        if not caller.startswith(("sip:", "sips:")):
            caller = f"sip:{caller}@{own}"
        sip = option.sip
        username = (sip.username if sip is not None and sip.username else None) or (trunk.username if trunk else "")
        password = (sip.password if sip is not None and sip.password else None) or (trunk.password if trunk else "")
        realm = (sip.realm if sip is not None and sip.realm else None) or (trunk.realm if trunk else "")
        credentials = Credentials(username, password, realm or None) if username else None
        headers = dict(trunk.headers) if trunk is not None else {}
        if sip is not None and sip.headers:
            headers.update(sip.headers)
        session = ua.invite(target, caller, target, sdp, next_hop, self.now(), credentials=credentials,
                            headers=headers)
        self.bind(session, transport)
        return session

    # -- the user agent's events ----------------------------------------------------------------------------------
    def _on_event(self, event: UaEvent | RegistrationEvent) -> None:
        if isinstance(event, Registered):
            log.info("sip: registered %s at %s for %d s", event.registration.aor, event.registration.registrar,
                     event.expires)
            return
        if isinstance(event, RegistrationFailed):
            log.warning("sip: registering %s at %s failed: %d %s (again in %g s)", event.registration.aor,
                        event.registration.registrar, event.status, event.reason, event.registration.retry_after)
            return
        if isinstance(event, Incoming):
            self._incoming(event)
            return
        transport = self._bound.get(event.session.id)
        if isinstance(event, Ended | Failed):
            self._bound.pop(event.session.id, None)
            pending = self.pending.pop(event.session.id, None)
            if pending is not None:
                self._settle(pending)
        if transport is not None:
            transport.on_ua_event(event)

    def _incoming(self, event: Incoming) -> None:
        session = event.session
        created = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        pending = Pending(session, created)
        refused = self.refusal(1)
        if refused is not None:         # before the webhook: the application never hears of it
            warning = refused.replace('"', "'")     # a quoted-string
            self.agent.reject(session, 503, "Service Unavailable", self.now(),
                              headers=(("Retry-After", str(RETRY_AFTER_S)), ("Warning", f'399 pypbx "{warning}"')))
            self.flush()
            log.warning("sip: refused a call from %s: %s", session.invite.from_.uri, refused)
            return
        if not self.webhook.url:
            self.agent.reject(session, 480, "Temporarily Unavailable", self.now())
            log.info("sip: refused a call from %s: no [webhook] url to ask", session.invite.from_.uri)
            return
        self.pending[session.id] = pending
        loop = asyncio.get_running_loop()
        pending.deadline = loop.call_later(self.webhook.decision_timeout_secs, self._no_decision, pending)
        pending.webhook = self._spawn(self._notify(pending))

    async def _notify(self, pending: Pending) -> None:
        request = pending.session.invite
        headers = {name: value for name in WEBHOOK_HEADERS if (value := request.headers.get(name)) is not None}
        for name, value in request.headers.items():      # the caller's custom X- headers too (first of each)
            if name.lower().startswith("x-"):
                headers.setdefault(name, value)
        payload = {"dialogId": pending.session.id, "createdAt": pending.created_at, "caller": str(request.from_.uri),
                   "callee": str(request.to.uri), "event": "invite", "headers": headers,
                   "offer": request.body.decode("utf-8", "replace")}
        try:
            if self.registry is not None and not await self.registry.claim(pending.session.id):
                raise WebhookError("the call registry did not take the dialog id")
            await post_json(self.webhook.url, payload, self.webhook.timeout_secs)
        except WebhookError as exc:
            log.warning("sip: call %s refused: %s", pending.session.id, exc)
            if self.pending.get(pending.session.id) is pending and pending.transport is None:
                self.pending.pop(pending.session.id)
                self._refuse(pending, 503, "Service Unavailable")

    def _no_decision(self, pending: Pending) -> None:
        pending.deadline = None
        if self.pending.get(pending.session.id) is not pending:
            return
        del self.pending[pending.session.id]
        transport = pending.transport
        self._refuse(pending, 408, "Request Timeout")
        if transport is not None:
            transport.no_decision(self.webhook.decision_timeout_secs)

    def _refuse(self, pending: Pending, status: int, reason: str) -> None:
        self._settle(pending)
        self._bound.pop(pending.session.id, None)
        if pending.session.state in (SessionState.CALLING, SessionState.EARLY) and self.ua is not None:
            self.ua.reject(pending.session, status, reason, self.now())
            self.flush()

    def _settle(self, pending: Pending) -> None:
        if pending.deadline is not None:
            pending.deadline.cancel()
            pending.deadline = None
        if pending.transport is None and self.registry is not None:
            self.registry.release(pending.session.id)     # no call took the dialog id

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
