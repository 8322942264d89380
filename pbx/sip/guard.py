"""Who may talk to the SIP port, and how much: sans-I/O (the time is passed in), one table per server.

:class:`SipGuard` is asked before a datagram is parsed (:meth:`SipGuard.inbound`), when a parsed request
would open a dialog (:meth:`SipGuard.new_request`), when a TCP connection comes (:meth:`SipGuard.connection`),
and told of every failed digest answer (:meth:`SipGuard.auth_failed`). Each answer is ``None`` (go on) or a
:class:`Refused` whose ``status`` (0: drop silently) the shell sends back to a request it can answer.

Rules (the configuration keys are ``[sip]``'s, docs/sip-security.md):

- Source ACL: an address in ``deny_networks``, or outside ``allow_networks`` when that list is not empty,
  is dropped unanswered (no 403: over UDP an answer would reflect traffic to a forged source, and a
  scanner learns nothing). Checked first, on every datagram and connection.
- Rates, per source address (the port is the sender's to change, so it is not part of the key): one token
  bucket for every datagram (``max_messages_per_sec``, holding one second's worth) and one for requests
  outside a dialog (``max_new_requests_per_sec``: INVITE, REGISTER, OPTIONS without a To tag). A source
  that empties the message bucket is answered 503 Service Unavailable with ``Retry-After:
  rate_cooloff_secs`` once (a request; a response is never answered), then everything from it is dropped
  until the cool-off ends. One that empties the new-request bucket gets the same 503, then only its new
  requests are dropped for the cool-off: the calls it has going on carry on. 0 turns a rate off.
- Digest brute force: ``auth_max_failures`` failed answers (wrong password, unknown user, a nonce not
  ours) from one address within ``auth_failure_window_secs`` block it for ``auth_block_secs``: 403
  Forbidden once, then dropped. A success does not clear the count (one known account must not cover
  guessing at another).
- Memory: at most ``MAX_SOURCES`` addresses are tracked; the least recently seen one is forgotten first
  (a forgotten source starts afresh, which errs on the side of letting it in). Loopback is tracked like
  any other address: the hostile tests rely on it.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from pbx.sip.config import SipConfig
from pbx.sip.errors import SipParseError

__all__ = ["MAX_SOURCES", "Refused", "SipGuard", "Verdicts"]

MAX_SOURCES = 10_000
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(SipParseError):
    """A message the guard will not pass on. ``status`` 0 means drop it unanswered; otherwise answer a request
    with ``status``/``reason`` and ``headers`` (a SipParseError, so the shell's error responses serve it)."""

    def __init__(self, message: str, status: int = 0, reason: str = "", headers: tuple[tuple[str, str], ...] = ()
                 ) -> None:
        super().__init__(message, status, reason, headers)

    @property
    def answered(self) -> bool:
        return self.status != 0


@dataclass(slots=True)
class _Bucket:
    """A token bucket holding one second's worth of ``rate``, full when made."""

    tokens: float
    at: float

    def take(self, rate: float, now: float) -> bool:
        self.tokens = min(rate, self.tokens + max(0.0, now - self.at) * rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(slots=True)
class _Source:
    messages: _Bucket
    new_requests: _Bucket
    blocked_until: float = -1.0
    block_answered: bool = False        # the 503/403 of the current block went out
    block_status: int = 0
    new_blocked_until: float = -1.0     # over the new-request rate: new requests only are refused
    failures: deque[float] = field(default_factory=deque)


@dataclass(slots=True)
class Verdicts:
    """Counts of what the guard refused, by cause (for /health and the logs)."""

    acl: int = 0
    rate: int = 0
    new_requests: int = 0
    auth_blocked: int = 0
    blocks: int = 0                     # times a source was put on a cool-off or an auth block


def _networks(values: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class SipGuard:
    """The per-source table and the ACL of one SIP port (see the module's rules)."""

    def __init__(self, config: SipConfig, *, max_sources: int = MAX_SOURCES) -> None:
        self.rate = config.max_messages_per_sec
        self.new_rate = config.max_new_requests_per_sec
        self.cooloff = config.rate_cooloff_secs
        self.allow = _networks(config.allow_networks)
        self.deny = _networks(config.deny_networks)
        self.max_failures = config.auth_max_failures
        self.failure_window = config.auth_failure_window_secs
        self.auth_block = config.auth_block_secs
        self.max_sources = max_sources
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self.refused = Verdicts()

    def __len__(self) -> int:
        return len(self._sources)

    # -- the ACL (a classifier: no state) ------------------------------------------------------------------
    def permits(self, host: str) -> bool:
        """Whether the ACL lets ``host`` talk to the SIP port (an address that does not parse never does)."""
        address = _address(host)
        if address is None:
            return False
        if any(address in network for network in self.deny if network.version == address.version):
            return False
        return not self.allow or any(address in network for network in self.allow
                                     if network.version == address.version)

    # -- checks ---------------------------------------------------------------------------------------------
    def connection(self, host: str, now: float) -> Refused | None:
        """A TCP connection from ``host``: refused (closed) when the ACL or a block says so."""
        if not self.permits(host):
            self.refused.acl += 1
            return Refused(f"{host} is not allowed by [sip] allow_networks/deny_networks")
        source = self._sources.get(host)
        if source is not None and now < source.blocked_until:
            return Refused(f"{host} is blocked for {source.blocked_until - now:.0f} s more")
        return None

    def inbound(self, host: str, now: float, *, request: bool) -> Refused | None:
        """A datagram (or a framed TCP message) from ``host``; ``request``: it is a request, which a refusal
        may answer."""
        if not self.permits(host):
            self.refused.acl += 1
            return Refused(f"{host} is not allowed by [sip] allow_networks/deny_networks")
        source = self._source(host, now)
        blocked = self._blocked(source, host, now, request)
        if blocked is not None:
            return blocked
        if self.rate > 0 and not source.messages.take(self.rate, now):
            self.refused.rate += 1
            return self._block(source, host, now, request,
                               f"{host} sent more than {self.rate:g} SIP messages per second")
        return None

    def new_request(self, host: str, now: float) -> Refused | None:
        """A request outside any dialog from ``host`` (after :meth:`inbound` passed it)."""
        if self.new_rate <= 0:
            return None
        source = self._source(host, now)
        blocked = self._blocked(source, host, now, True)
        if blocked is not None:
            return blocked
        if now < source.new_blocked_until:
            self.refused.new_requests += 1
            return Refused(f"{host} may send no new requests for {source.new_blocked_until - now:.0f} s more")
        if not source.new_requests.take(self.new_rate, now):
            self.refused.new_requests += 1
            self.refused.blocks += 1
            source.new_blocked_until = now + self.cooloff
            return Refused(f"{host} sent more than {self.new_rate:g} new SIP requests per second", 503,
                           "Service Unavailable", (("Retry-After", str(max(1, round(self.cooloff)))),))
        return None

    def auth_failed(self, host: str, now: float) -> bool:
        """A failed digest answer from ``host``; True when it has now failed too often and is blocked: the
        caller answers this request 403 (the block's one answer), later ones are dropped."""
        source = self._source(host, now)
        failures = source.failures
        failures.append(now)
        while failures and failures[0] <= now - self.failure_window:
            failures.popleft()
        if len(failures) >= self.max_failures and now >= source.blocked_until:
            failures.clear()
            source.blocked_until = now + self.auth_block
            source.block_answered = True
            source.block_status = 403
            self.refused.blocks += 1
            return True
        return False

    def blocked(self, host: str, now: float) -> bool:
        source = self._sources.get(host)
        return source is not None and now < source.blocked_until

    # -- the table -----------------------------------------------------------------------------------------
    def _source(self, host: str, now: float) -> _Source:
        source = self._sources.get(host)
        if source is None:
            source = _Source(_Bucket(self.rate, now), _Bucket(self.new_rate, now))
            self._sources[host] = source
            if len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)        # the least recently seen
        else:
            self._sources.move_to_end(host)
        return source

    def _blocked(self, source: _Source, host: str, now: float, request: bool) -> Refused | None:
        if now >= source.blocked_until:
            return None
        if source.block_status == 403:
            self.refused.auth_blocked += 1
        else:
            self.refused.rate += 1
        if request and not source.block_answered:     # the block's one answer, if its cause gave none
            source.block_answered = True
            return self._answer(source, host, now)
        return Refused(f"{host} is blocked for {source.blocked_until - now:.0f} s more")

    def _block(self, source: _Source, host: str, now: float, request: bool, why: str) -> Refused:
        """Over the message rate: a cool-off, announced by a 503 to this message if it is a request, else to
        the next request (the first one is the only one answered)."""
        source.blocked_until = now + self.cooloff
        source.block_status = 503
        source.block_answered = request
        self.refused.blocks += 1
        if not request:
            return Refused(why)
        return Refused(why, 503, "Service Unavailable", (("Retry-After", str(max(1, round(self.cooloff)))),))

    def _answer(self, source: _Source, host: str, now: float) -> Refused:
        left = max(1, round(source.blocked_until - now))
        if source.block_status == 403:
            return Refused(f"{host} failed digest authentication too often: blocked for {left} s", 403, "Forbidden")
        return Refused(f"{host} is over its SIP rate: dropped for {left} s more", 503, "Service Unavailable",
                       (("Retry-After", str(left)),))
