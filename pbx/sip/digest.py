"""HTTP Digest authentication for SIP: RFC 3261 §22 with the algorithms of RFC 8760 (and RFC 7616's).

Client side: :meth:`Challenge.parse` reads a ``WWW-Authenticate`` / ``Proxy-Authenticate`` value,
:func:`best_challenge` picks the one to answer among several, and :func:`authorization` computes the
``Authorization`` / ``Proxy-Authorization`` value. The client nonce and the nonce count are parameters, so
every answer can be checked against the published examples.

Server side: :class:`NonceIssuer` makes stateless nonces (a timestamp and random bytes under an HMAC, the time
passed in by the caller, never read from a clock), :func:`challenges` builds the challenge header values in
order of preference (RFC 8760 §2.4: one per algorithm, the most preferred first) and :func:`verify` checks an
``Authorization`` value with a constant-time comparison.

Algorithms (RFC 8760 §2.3; tokens are matched without regard to case and written as here): ``MD5``,
``SHA-256``, ``SHA-512-256`` and their ``-sess`` variants. qop: ``auth`` (chosen whenever offered),
``auth-int`` (only when it is all that is offered; the body is hashed), and none at all (the RFC 2069 form, a
challenge without ``qop``). Not built: ``userhash`` and ``username*`` (RFC 7616 §3.4.4, §3.4.5; SIP does not
use them), Authentication-Info and ``rspauth``.

Errors::

    SipError
    └── DigestError                         root of this module's errors
        ├── DigestParseError (also SipParseError, so ValueError)
        │                                   the peer sent a challenge or credentials we cannot read: a
        │                                   request carrying them is answered 400 Bad Request, a response
        │                                   carrying them is a failed authentication
        ├── UnsupportedChallenge (also ValueError)
        │                                   a well-formed challenge we cannot answer (another scheme, an
        │                                   unknown algorithm, only qop values we do not know)
        └── DigestUsageError (also ValueError)
                                            we were asked to do something invalid (a nonce count out of
                                            range, credentials for another realm, a short HMAC secret)

A wrong password is not an exception: :func:`verify` returns a :class:`Verification` whose ``result`` says
what to answer (accept, challenge again with ``stale=true``, or challenge again / 403).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import math
import re
import secrets
import string
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from pbx.sip.errors import SipError, SipParseError

__all__ = [
    "ALGORITHMS",
    "MAX_HEADER_LENGTH",
    "MAX_PARAMS",
    "SERVER_ALGORITHMS",
    "AuthResult",
    "Challenge",
    "Credentials",
    "DigestError",
    "DigestParseError",
    "DigestResponse",
    "DigestUsageError",
    "NonceIssuer",
    "NonceStatus",
    "UnsupportedChallenge",
    "Verification",
    "authorization",
    "best_challenge",
    "challenges",
    "digest_response",
    "verify",
]

MAX_HEADER_LENGTH = 4096     # characters in one challenge or credentials value
MAX_PARAMS = 32              # auth-params in one value

# token -> (hashlib name, hex digest length, strength); "-sess" variants share their base's entry
_HASHES: dict[str, tuple[str, int, int]] = {
    "MD5": ("md5", 32, 1),
    "SHA-256": ("sha256", 64, 2),
    "SHA-512-256": ("sha512_256", 64, 3),
}
#: every algorithm token we can answer or check, in their canonical spelling
ALGORITHMS: tuple[str, ...] = ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess")
#: what :func:`challenges` offers by default, most preferred first (RFC 8760 §2.4)
SERVER_ALGORITHMS: tuple[str, ...] = ("SHA-256", "MD5")
_CANONICAL = {name.upper(): name for name in ALGORITHMS}
_QOPS = ("auth", "auth-int")
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-.!%*_+`'~")
# an unquoted value: a token, and what real servers put in unquoted nonces and URIs
_BARE_VALUE_CHARS = frozenset(_TOKEN_CHARS | set("/:=@?&;[]"))
_LWS = " \t\r\n"
_HEX = re.compile(r"[0-9a-fA-F]+")
_NC = re.compile(r"[0-9a-fA-F]{8}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class DigestError(SipError):
    """Root of the digest-authentication errors."""


class DigestParseError(DigestError, SipParseError):
    """A challenge or credentials value the peer sent cannot be read (400 Bad Request)."""


class UnsupportedChallenge(DigestError, ValueError):
    """A well-formed challenge we cannot answer."""


class DigestUsageError(DigestError, ValueError):
    """We were asked to compute or check something invalid."""


def _show(text: str, limit: int = 60) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _canonical(algorithm: str) -> str | None:
    """The canonical spelling of a known algorithm token, None for an unknown one."""
    return _CANONICAL.get(algorithm.upper())


def _base(algorithm: str) -> str:
    return algorithm[:-5] if algorithm.endswith("-sess") else algorithm


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- auth-param lists (RFC 3261 §25.1, RFC 7235 §2.1) ----------------------------------------------------------
def _split_scheme(value: str, what: str) -> tuple[str, str]:
    if len(value) > MAX_HEADER_LENGTH:
        raise DigestParseError(f"{what}: {len(value)} characters, over the limit of {MAX_HEADER_LENGTH}")
    text = value.strip(_LWS)
    end = 0
    while end < len(text) and text[end] in _TOKEN_CHARS:
        end += 1
    if end == 0:
        raise DigestParseError(f"{what}: no authentication scheme in {_show(value)}")
    if end < len(text) and text[end] not in _LWS:
        raise DigestParseError(f"{what}: bad authentication scheme in {_show(value)}")
    return text[:end], text[end:]


def _parse_params(text: str, what: str) -> dict[str, str]:
    """``name=value`` pairs separated by commas; names in lower case, quoted values unquoted. Linear white
    space may stand around ``=`` and ``,``; empty list elements are skipped (RFC 7230 §7)."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and (text[i] in _LWS or text[i] == ","):
            i += 1
        if i >= n:
            return params
        start = i
        while i < n and text[i] in _TOKEN_CHARS:
            i += 1
        name = text[start:i].lower()
        if not name:
            raise DigestParseError(f"{what}: bad parameter at {_show(text[start:])}")
        while i < n and text[i] in _LWS:
            i += 1
        if i >= n or text[i] != "=":
            raise DigestParseError(f"{what}: parameter {name!r} has no value")
        i += 1
        while i < n and text[i] in _LWS:
            i += 1
        if i < n and text[i] == '"':
            chars: list[str] = []
            i += 1
            while True:
                if i >= n:
                    raise DigestParseError(f"{what}: unterminated quoted string in parameter {name!r}")
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n:
                    i += 1
                    c = text[i]
                chars.append(c)
                i += 1
            val = "".join(chars)
        else:
            start = i
            while i < n and text[i] in _BARE_VALUE_CHARS:
                i += 1
            val = text[start:i]
            if not val:
                raise DigestParseError(f"{what}: parameter {name!r} has no value")
        while i < n and text[i] in _LWS:
            i += 1
        if i < n and text[i] != ",":
            raise DigestParseError(f"{what}: expected ',' after parameter {name!r}, got {_show(text[i:])}")
        if name in params:
            raise DigestParseError(f"{what}: duplicate parameter {name!r}")
        if len(params) == MAX_PARAMS:
            raise DigestParseError(f"{what}: more than {MAX_PARAMS} parameters")
        params[name] = val


# -- client side ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Challenge:
    """One Digest challenge (RFC 3261 §25.1 ``digest-cln``, RFC 8760 §2.3).

    ``algorithm`` is the canonical token for a known algorithm, the token as sent for an unknown one, and
    None when the challenge named none (MD5 then, RFC 3261 §22.4); ``qop`` holds the offered qop values in
    lower case, empty for an RFC 2069 challenge. ``str(challenge)`` is the header value.
    """

    realm: str
    nonce: str
    algorithm: str | None = None
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None

    @classmethod
    def parse(cls, header_value: str) -> Challenge:
        scheme, rest = _split_scheme(header_value, "challenge")
        if scheme.lower() != "digest":
            raise UnsupportedChallenge(f"unsupported authentication scheme {scheme!r}")
        params = _parse_params(rest, "challenge")
        realm = params.get("realm")
        nonce = params.get("nonce")
        if realm is None:
            raise DigestParseError("challenge: no realm")
        if not nonce:
            raise DigestParseError("challenge: no nonce")
        algorithm = params.get("algorithm")
        if algorithm is not None:
            if not algorithm:
                raise DigestParseError("challenge: empty algorithm")
            algorithm = _canonical(algorithm) or algorithm
        qop = tuple(q for q in (part.strip(_LWS).lower() for part in params.get("qop", "").split(",")) if q)
        # RFC 2617 §3.2.1: anything but "true" (in any case) means false
        stale = params.get("stale", "").lower() == "true"
        return cls(realm, nonce, algorithm, qop, params.get("opaque"), stale, params.get("domain"))

    @property
    def hash_algorithm(self) -> str:
        """The algorithm in effect: MD5 when the challenge named none."""
        return self.algorithm or "MD5"

    @property
    def supported(self) -> bool:
        """Whether :func:`authorization` can answer this challenge."""
        return _canonical(self.hash_algorithm) is not None and (not self.qop or _choose_qop(self.qop) is not None)

    def __str__(self) -> str:
        parts = [f"realm={_quote(self.realm)}"]
        if self.domain is not None:
            parts.append(f"domain={_quote(self.domain)}")
        parts.append(f"nonce={_quote(self.nonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        if self.algorithm is not None:
            parts.append(f"algorithm={self.algorithm}")
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        return "Digest " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user's secret. ``realm`` None answers a challenge from any realm; a realm limits the credentials to
    challenges from that realm (so a password is not sent to whoever asks)."""

    username: str
    password: str
    realm: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***', realm={self.realm!r})"


def _choose_qop(offered: Iterable[str]) -> str | None:
    options = set(offered)
    for qop in _QOPS:
        if qop in options:
            return qop
    return None


def best_challenge(candidates: Iterable[Challenge | str], *, realm: str | None = None,
                   allowed: Collection[str] = ALGORITHMS) -> Challenge | None:
    """The challenge to answer among several (the values of the WWW-Authenticate or Proxy-Authenticate header
    fields of one response, in order), None if we can answer none of them.

    RFC 8760 §2.4 has the server list its challenges most preferred first and lets local policy override
    that order; ours is the strongest algorithm we support (SHA-512-256, then SHA-256, then MD5; a ``-sess``
    variant ranks with its base), the topmost among equals. ``allowed`` limits the algorithms (leave MD5 out
    to refuse it); ``realm`` keeps only that realm's challenges. A value given as text that is not a Digest
    challenge we can read (another scheme, garbage) is passed over, like one with an algorithm we lack.
    """
    allowed_names = {a.upper() for a in allowed}
    best: Challenge | None = None
    best_strength = 0
    for candidate in candidates:
        if isinstance(candidate, str):
            try:
                candidate = Challenge.parse(candidate)
            except (DigestParseError, UnsupportedChallenge):
                continue
        algorithm = _canonical(candidate.hash_algorithm)
        if algorithm is None or algorithm.upper() not in allowed_names or not candidate.supported:
            continue
        if realm is not None and candidate.realm != realm:
            continue
        strength = _HASHES[_base(algorithm)][2]
        if strength > best_strength:
            best, best_strength = candidate, strength
    return best


def _hash(algorithm: str, data: bytes) -> str:
    return hashlib.new(_HASHES[_base(algorithm)][0], data).hexdigest()


def _h(algorithm: str, *parts: str) -> str:
    return _hash(algorithm, ":".join(parts).encode("utf-8", "surrogateescape"))


def digest_response(algorithm: str, username: str, realm: str, password: str, nonce: str, method: str, uri: str,
                    *, qop: str | None = None, nc: int | None = None, cnonce: str | None = None,
                    body: bytes = b"") -> str:
    """The ``response`` value (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1; RFC 2069 when ``qop`` is None), in lower-case
    hex. Strings are hashed as UTF-8."""
    name = _canonical(algorithm)
    if name is None:
        raise UnsupportedChallenge(f"unsupported digest algorithm {algorithm!r}")
    if qop is not None and qop not in _QOPS:
        raise UnsupportedChallenge(f"unsupported qop {qop!r}")
    sess = name.endswith("-sess")
    if (qop is not None or sess) and not cnonce:
        raise DigestUsageError(f"qop {qop} and algorithm {name} need a cnonce")
    if qop is not None and (nc is None or not 0 < nc <= 0xFFFFFFFF):
        raise DigestUsageError(f"nonce count must be 1 to 4294967295, got {nc}")
    ha1 = _h(name, username, realm, password)
    if sess:
        ha1 = _h(name, ha1, nonce, cnonce or "")
    # RFC 2617 §3.2.2.3: auth-int adds the hash of the body (of an empty one when there is none)
    ha2 = _h(name, method, uri, _hash(name, body)) if qop == "auth-int" else _h(name, method, uri)
    if qop is None:
        return _h(name, ha1, nonce, ha2)
    return _h(name, ha1, nonce, f"{nc:08x}", cnonce or "", qop, ha2)


@dataclass(frozen=True, slots=True)
class DigestResponse:
    """The credentials of an Authorization / Proxy-Authorization value (RFC 3261 §25.1 ``digest-response``).
    ``algorithm`` None means the value named none (MD5); ``nc`` is the nonce count as a number.
    ``str(response)`` is the header value."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: int | None = None

    @classmethod
    def parse(cls, header_value: str) -> DigestResponse:
        scheme, rest = _split_scheme(header_value, "credentials")
        if scheme.lower() != "digest":
            raise DigestParseError(f"credentials: unsupported authentication scheme {scheme!r}")
        params = _parse_params(rest, "credentials")
        for name in ("username", "realm", "nonce", "uri", "response"):
            if name not in params:
                raise DigestParseError(f"credentials: no {name}")
        algorithm = params.get("algorithm")
        if algorithm is not None:
            algorithm = _canonical(algorithm) or algorithm
        response = params["response"]
        known = _canonical(algorithm or "MD5")
        size = _HASHES[_base(known)][1] if known is not None else None
        if not _HEX.fullmatch(response) or (size is not None and len(response) != size):
            what = f"{size} hex digits" if size is not None else "hex digits"
            raise DigestParseError(f"credentials: response is not {what}: {_show(response)}")
        qop = params.get("qop")
        nc: int | None = None
        cnonce = params.get("cnonce")
        if qop is not None:
            qop = qop.lower()
            raw_nc = params.get("nc")
            if raw_nc is None or not _NC.fullmatch(raw_nc) or raw_nc == "00000000":
                raise DigestParseError(f"credentials: qop {qop} needs nc as 8 hex digits from 00000001, "
                                       f"got {raw_nc!r}")
            nc = int(raw_nc, 16)
            if not cnonce:
                raise DigestParseError(f"credentials: qop {qop} needs a cnonce")
        return cls(params["username"], params["realm"], params["nonce"], params["uri"], response.lower(),
                   algorithm, cnonce, params.get("opaque"), qop, nc)

    def __str__(self) -> str:
        parts = [f"username={_quote(self.username)}", f"realm={_quote(self.realm)}",
                 f"nonce={_quote(self.nonce)}", f"uri={_quote(self.uri)}", f"response={_quote(self.response)}"]
        if self.algorithm is not None:
            parts.append(f"algorithm={self.algorithm}")
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={self.qop}")
        if self.nc is not None:
            parts.append(f"nc={self.nc:08x}")
        return "Digest " + ", ".join(parts)


def authorization(challenge: Challenge, method: str, uri: str, credentials: Credentials, cnonce: str, nc: int,
                  body: bytes = b"") -> str:
    """The Authorization (or Proxy-Authorization) value answering ``challenge`` for a request ``method``
    to ``uri`` (the Request-URI as sent). qop ``auth`` is chosen when offered, ``auth-int`` (hashing
    ``body``) when only it is; a challenge without qop gets the RFC 2069 answer (``cnonce`` and ``nc`` then
    go unused, except for a ``-sess`` algorithm, which needs the cnonce). ``nc`` counts the requests sent
    with this nonce, from 1."""
    algorithm = _canonical(challenge.hash_algorithm)
    if algorithm is None:
        raise UnsupportedChallenge(f"unsupported digest algorithm {challenge.hash_algorithm!r}")
    qop: str | None = None
    if challenge.qop:
        qop = _choose_qop(challenge.qop)
        if qop is None:
            raise UnsupportedChallenge(f"unsupported qop {','.join(challenge.qop)!r} (we do auth and auth-int)")
    if credentials.realm is not None and credentials.realm != challenge.realm:
        raise DigestUsageError(f"the credentials are for realm {credentials.realm!r}, the challenge is from "
                               f"{challenge.realm!r}")
    for name, value in (("username", credentials.username), ("uri", uri), ("method", method)):
        if _CONTROL.search(value):
            raise DigestUsageError(f"the {name} has a control character: {_show(value)}")
    if not method or any(c not in _TOKEN_CHARS for c in method):
        raise DigestUsageError(f"bad method {_show(method)}")
    uses_cnonce = qop is not None or algorithm.endswith("-sess")
    if uses_cnonce and (not cnonce or _CONTROL.search(cnonce)):
        raise DigestUsageError(f"bad cnonce {cnonce!r}")
    response = digest_response(algorithm, credentials.username, challenge.realm, credentials.password,
                               challenge.nonce, method, uri, qop=qop, nc=nc if qop else None,
                               cnonce=cnonce if uses_cnonce else None, body=body)
    return str(DigestResponse(credentials.username, challenge.realm, challenge.nonce, uri, response,
                              challenge.algorithm, cnonce if uses_cnonce else None, challenge.opaque, qop,
                              nc if qop else None))


# -- server side ------------------------------------------------------------------------------------------------
class NonceStatus(enum.Enum):
    VALID = "valid"
    STALE = "stale"          # ours, but older than max_age
    INVALID = "invalid"      # not ours: forged, garbled, another secret or context, or from the future


class NonceIssuer:
    """Stateless nonces: base64url of a millisecond timestamp, 8 random bytes and an HMAC-SHA-256 over both
    (and an optional ``context``, such as the realm or the peer's address, that the check must repeat).

    The time is the caller's (any clock, the same for :meth:`issue` and :meth:`check`); nothing is stored, so
    a nonce can be replayed until it is ``max_age`` old unless the caller tracks the nonce counts it saw.
    """

    __slots__ = ("_random", "_secret")

    def __init__(self, secret: bytes, *, random: Callable[[int], bytes] = secrets.token_bytes) -> None:
        if len(secret) < 16:
            raise DigestUsageError(f"the nonce secret must have at least 16 bytes, got {len(secret)}")
        self._secret = secret
        self._random = random

    def _mac(self, payload: bytes, context: bytes) -> bytes:
        return hmac.new(self._secret, b"pypbx-nonce\0" + payload + context, hashlib.sha256).digest()[:16]

    def issue(self, now: float, context: bytes = b"") -> str:
        if not math.isfinite(now) or now < 0:
            raise DigestUsageError(f"bad time {now!r}")
        salt = self._random(8)
        if len(salt) != 8:
            raise DigestUsageError(f"the random source gave {len(salt)} bytes, not 8")
        payload = int(now * 1000).to_bytes(8, "big") + salt
        return base64.urlsafe_b64encode(payload + self._mac(payload, context)).decode("ascii").rstrip("=")

    def check(self, nonce: str, now: float, max_age: float, context: bytes = b"") -> NonceStatus:
        """VALID if we issued ``nonce`` (with this ``context``) at most ``max_age`` seconds before ``now``;
        STALE if we issued it earlier; INVALID if we did not issue it, or issued it more than ``max_age``
        after ``now`` (a clock gone back)."""
        if not _NONCE.fullmatch(nonce):
            return NonceStatus.INVALID
        raw = base64.urlsafe_b64decode(nonce + "=")
        payload, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, self._mac(payload, context)):
            return NonceStatus.INVALID
        age = now - int.from_bytes(payload[:8], "big") / 1000
        if age < -max_age:
            return NonceStatus.INVALID
        return NonceStatus.STALE if age > max_age else NonceStatus.VALID


def challenges(realm: str, nonce: str, *, algorithms: Iterable[str] = SERVER_ALGORITHMS,
               qop: tuple[str, ...] = ("auth",), opaque: str | None = None, stale: bool = False) -> list[Challenge]:
    """Our challenges, one per algorithm in order of preference (RFC 8760 §2.4): send each as its own
    WWW-Authenticate (or Proxy-Authenticate) header field, in this order."""
    result = []
    for algorithm in algorithms:
        name = _canonical(algorithm)
        if name is None:
            raise DigestUsageError(f"unsupported digest algorithm {algorithm!r}")
        result.append(Challenge(realm, nonce, name, qop, opaque, stale))
    if not result:
        raise DigestUsageError("no algorithm to challenge with")
    return result


class AuthResult(enum.Enum):
    OK = "ok"
    STALE = "stale"          # the right password on an expired nonce: challenge again with stale=true
    REJECTED = "rejected"    # challenge again (401/407), or 403 after too many tries


@dataclass(frozen=True, slots=True)
class Verification:
    """What :func:`verify` found. ``reason`` is for the log, never for the peer."""

    result: AuthResult
    credentials: DigestResponse
    reason: str = ""

    @property
    def username(self) -> str:
        return self.credentials.username


def verify(authorization_value: str, method: str, password_lookup: Callable[[str, str], str | None], *,
           realm: str, issuer: NonceIssuer, now: float, max_age: float = 300.0, body: bytes = b"",
           request_uri: str | None = None, algorithms: Collection[str] = ALGORITHMS,
           context: bytes = b"") -> Verification:
    """Check the credentials of a request: ``password_lookup(username, realm)`` gives the user's password or
    None for an unknown user. ``request_uri``, when given, must equal the credentials' ``uri`` (RFC 7616
    §3.4.6) or the value is refused as malformed. Raises :class:`DigestParseError` for a value we cannot read
    (answer 400). The response is compared in constant time, and an unknown user costs the same hashing as a
    known one."""
    creds = DigestResponse.parse(authorization_value)
    if request_uri is not None and creds.uri != request_uri:
        raise DigestParseError(f"credentials: uri {_show(creds.uri)} is not the Request-URI {_show(request_uri)}")

    def rejected(reason: str) -> Verification:
        return Verification(AuthResult.REJECTED, creds, reason)

    if creds.realm != realm:
        return rejected(f"realm {creds.realm!r} is not ours")
    algorithm = _canonical(creds.algorithm or "MD5")
    if algorithm is None or algorithm.upper() not in {a.upper() for a in algorithms}:
        return rejected(f"algorithm {creds.algorithm!r} is not accepted")
    if creds.qop is not None and creds.qop not in _QOPS:
        return rejected(f"qop {creds.qop!r} is not supported")
    if creds.qop is None and algorithm.endswith("-sess") and not creds.cnonce:
        return rejected(f"algorithm {algorithm} without a cnonce")
    status = issuer.check(creds.nonce, now, max_age, context)
    if status is NonceStatus.INVALID:
        return rejected("the nonce is not ours")
    password = password_lookup(creds.username, realm)
    expected = digest_response(algorithm, creds.username, realm, password if password is not None else "",
                               creds.nonce, method, creds.uri, qop=creds.qop, nc=creds.nc, cnonce=creds.cnonce,
                               body=body)
    matches = hmac.compare_digest(expected, creds.response)
    if password is None:
        return rejected(f"unknown user {creds.username!r}")
    if not matches:
        return rejected("wrong response")
    if status is NonceStatus.STALE:
        return Verification(AuthResult.STALE, creds, "the nonce is stale")
    return Verification(AuthResult.OK, creds)
