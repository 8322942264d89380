"""Inbound digest authentication and a minimal registrar (location service), sans-I/O.

With ``[sip] users`` configured (username = password), :class:`InboundAuth` makes every INVITE and REGISTER
from outside a dialog prove a user's password (RFC 3261 §22.1, §22.4; RFC 7616/8760 algorithms, by default
SHA-256 and MD5, ``[sip] auth_algorithms``; qop ``auth``): a request without credentials, with credentials
that fail, with an algorithm not offered, or with a nonce that is not ours is answered 401 with one
``WWW-Authenticate`` per algorithm, in the configured order (RFC 8760 §2.4); the right password on an
expired nonce gets 401 with ``stale=true`` and a fresh nonce; credentials that do not parse, or whose
``uri`` is not the Request-URI, get 400. Every failed answer is told to the :class:`~pbx.sip.guard.SipGuard`,
which after too many blocks the source: that request gets 403 Forbidden, later ones are dropped. Without
users nothing is asked (the behaviour before this module: INVITEs go to the webhook, REGISTER is 405).

Nonces are :class:`~pbx.sip.digest.NonceIssuer`'s stateless HMAC nonces (valid ``NONCE_TTL_SECS``). The
HMAC key is derived from the realm and the users table, so every worker process of one configuration
accepts the others' nonces without sharing state. A nonce count seen once for a nonce is refused the
second time (a replayed Authorization), within a bounded memory of recent answers.

:class:`Registrar` keeps the bindings of authenticated REGISTERs in memory (RFC 3261 §10.3): the To URI's
user must be the authenticated user (else 403); each Contact with its ``expires`` parameter, else the
``Expires`` header, else 3600 s, clamped to at most 86400 s, at least ``MIN_EXPIRES`` (423 with
``Min-Expires`` below, 0 removes); ``Contact: *`` with ``Expires: 0`` removes all of the user's bindings.
The 200 lists the user's current bindings with their remaining ``expires``. At most ``MAX_BINDINGS`` per
user (the oldest goes) and bindings live only in this process: nothing routes calls to them yet
(:meth:`Registrar.lookup` gives them to a caller that wants them).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from pbx.sip.digest import (
    SERVER_ALGORITHMS,
    AuthResult,
    DigestParseError,
    NonceIssuer,
    challenges,
    verify,
)
from pbx.sip.errors import SipParseError
from pbx.sip.guard import SipGuard
from pbx.sip.headers import NameAddr
from pbx.sip.message import Request

__all__ = ["MAX_BINDINGS", "MIN_EXPIRES", "NONCE_TTL_SECS", "Answer", "Binding", "InboundAuth", "Registrar"]

NONCE_TTL_SECS = 300.0
MIN_EXPIRES = 60
MAX_EXPIRES = 86400
DEFAULT_EXPIRES = 3600
MAX_BINDINGS = 10
MAX_REMEMBERED_COUNTS = 20_000
AUTHENTICATED_METHODS = ("INVITE", "REGISTER")

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Answer:
    """A response for the user agent to send: status, reason and header fields to add."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


class InboundAuth:
    """Digest authentication of inbound INVITE and REGISTER (see the module's rules)."""

    def __init__(self, realm: str, users: Mapping[str, str], guard: SipGuard | None = None, *,
                 algorithms: tuple[str, ...] = SERVER_ALGORITHMS) -> None:
        if not users:
            raise ValueError("InboundAuth needs at least one user")
        self.realm = realm
        self.algorithms = algorithms        # challenged in this order; an answer with another is refused
        self.users = dict(users)
        self.guard = guard
        key = hashlib.sha256(repr((realm, sorted(self.users.items()))).encode("utf-8", "surrogateescape"))
        self.issuer = NonceIssuer(b"pypbx-sip-users\0" + key.digest())
        self._counts: OrderedDict[tuple[str, int | None, str | None], float] = OrderedDict()
        self.failures = 0

    def check(self, request: Request, addr: Address, now: float) -> str | Answer:
        """The authenticated username, or the :class:`Answer` that refuses ``request``."""
        values = request.headers.get_all("Authorization")
        if not values:
            return self._challenge(now)
        if len(values) > 1:
            return Answer(400, "Bad Request", (("Warning", '399 pypbx "one Authorization header, please"'),))
        try:
            found = verify(values[0], request.method, self._password, realm=self.realm, issuer=self.issuer,
                           now=now, max_age=NONCE_TTL_SECS, body=request.body, request_uri=request.uri,
                           algorithms=self.algorithms, context=self.realm.encode())
        except (DigestParseError, SipParseError) as exc:
            warning = str(exc).replace('"', "'").replace("\\", "/")[:200]
            return Answer(400, "Bad Request", (("Warning", f'399 pypbx "{warning}"'),))
        if found.result is AuthResult.STALE:
            return self._challenge(now, stale=True)
        if found.result is AuthResult.OK and self._first_use(found.credentials.nonce, found.credentials.nc,
                                                             found.credentials.cnonce, now):
            return found.username
        self.failures += 1
        if self.guard is not None and self.guard.auth_failed(addr[0], now):
            return Answer(403, "Forbidden", (("Warning", '399 pypbx "too many failed authentications"'),))
        return self._challenge(now)

    def _password(self, username: str, realm: str) -> str | None:
        return self.users.get(username) if realm == self.realm else None

    def _first_use(self, nonce: str, nc: int | None, cnonce: str | None, now: float) -> bool:
        """False for a (nonce, nc, cnonce) seen already: a replay. Entries older than a nonce's life go."""
        key = (nonce, nc, cnonce)
        counts = self._counts
        while counts:
            oldest_key, seen = next(iter(counts.items()))
            if now - seen <= NONCE_TTL_SECS * 2 and len(counts) < MAX_REMEMBERED_COUNTS:
                break
            del counts[oldest_key]
        if key in counts:
            return False
        counts[key] = now
        return True

    def _challenge(self, now: float, stale: bool = False) -> Answer:
        nonce = self.issuer.issue(now, self.realm.encode())
        values = tuple(("WWW-Authenticate", str(c))
                       for c in challenges(self.realm, nonce, algorithms=self.algorithms, stale=stale))
        return Answer(401, "Unauthorized", values)


@dataclass(frozen=True, slots=True)
class Binding:
    contact: str            # the Contact URI as registered
    expires_at: float
    source: Address         # where the REGISTER came from (behind NAT: where to send requests)


class Registrar:
    """The in-memory location service of authenticated REGISTERs (see the module's rules)."""

    def __init__(self) -> None:
        self._bindings: dict[str, dict[str, Binding]] = {}      # by user, then Contact URI

    def lookup(self, user: str, now: float) -> list[Binding]:
        """The user's bindings still in force, the newest first."""
        current = [b for b in self._bindings.get(user, {}).values() if b.expires_at > now]
        return sorted(current, key=lambda b: b.expires_at, reverse=True)

    def register(self, request: Request, user: str, addr: Address, now: float) -> Answer:
        try:
            to_user = request.to.uri.user
            contacts = request.headers.get_all("Contact")
            default = _expires(request.headers.get("Expires"), DEFAULT_EXPIRES)
            parsed = [] if contacts == ["*"] else [NameAddr.parse(c) for c in contacts]
        except (SipParseError, ValueError) as exc:
            return Answer(400, "Bad Request", (("Warning", f'399 pypbx "{str(exc)[:200]}"'.replace("\n", " ")),))
        if to_user != user:
            return Answer(403, "Forbidden", (("Warning", '399 pypbx "the To user is not the authenticated user"'),))
        mine = self._bindings.setdefault(user, {})
        for key in [k for k, b in mine.items() if b.expires_at <= now]:
            del mine[key]
        if contacts == ["*"]:
            if default != 0:
                return Answer(400, "Bad Request", (("Warning", '399 pypbx "Contact: * needs Expires: 0"'),))
            mine.clear()
        for contact in parsed:
            raw = contact.params.get("expires")
            try:
                seconds = _expires(raw, default) if raw is not None else default
            except ValueError:
                return Answer(400, "Bad Request", (("Warning", '399 pypbx "a bad expires parameter"'),))
            if 0 < seconds < MIN_EXPIRES:
                return Answer(423, "Interval Too Brief", (("Min-Expires", str(MIN_EXPIRES)),))
            uri = str(contact.uri)
            if seconds == 0:
                mine.pop(uri, None)
                continue
            mine.pop(uri, None)
            mine[uri] = Binding(uri, now + min(seconds, MAX_EXPIRES), addr)
            while len(mine) > MAX_BINDINGS:
                del mine[next(iter(mine))]
        if not mine:
            del self._bindings[user]
        listed = tuple(("Contact", f"<{b.contact}>;expires={max(0, round(b.expires_at - now))}")
                       for b in self.lookup(user, now))
        return Answer(200, "OK", listed)


def _expires(value: str | None, default: int) -> int:
    if value is None:
        return default
    value = value.strip()
    if not value.isdigit() or len(value) > 10:
        raise ValueError(f"expires must be a number of seconds, got {value[:20]!r}")
    return int(value)
