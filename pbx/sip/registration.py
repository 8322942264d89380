"""Client registration (RFC 3261 §10), sans-I/O: one :class:`Registration` per ``[[sip.accounts]]`` entry.

The user agent sends the REGISTERs through its transaction layer and hands each final response (or
a Timer F timeout) to :meth:`Registration.on_response`, which says what to do next:

- 2xx: registered for the interval the registrar granted (our Contact's ``expires``, else the
  ``Expires`` header, else what we asked); the refresh goes out at 80 % of it (at least 5 s before
  the end), with the same Call-ID and the next CSeq (§10.2.4).
- 401/407: answered once per challenge with the account's digest credentials; a second challenge
  after our answer is a failure (wrong password).
- 423 Interval Too Brief: asked again with the registrar's ``Min-Expires`` (§10.3 step 7).
- anything else, or no answer: a failure; a new attempt after ``retry_after`` seconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pbx.sip.digest import Credentials, DigestError, authorization, best_challenge
from pbx.sip.headers import NameAddr, SipUri
from pbx.sip.message import Headers, Request, Response

Address = tuple[str, int]
REFRESH_FRACTION = 0.8
MIN_MARGIN_S = 5.0
MAX_AUTH_ATTEMPTS = 1          # answers per challenge round before giving up


class RegistrationState(enum.Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"
    UNREGISTERED = "unregistered"


@dataclass(eq=False, slots=True)
class Registration:
    aor: str                         # the address of record, e.g. sip:1001@pbx.example
    registrar: str                   # the REGISTER Request-URI, e.g. sip:pbx.example
    peer: Address                    # where the REGISTERs go
    contact: str                     # our Contact, e.g. <sip:pypbx@203.0.113.7:5060>
    call_id: str
    tag: str
    credentials: Credentials | None = None
    expires: int = 3600              # what we ask for
    retry_after: float = 60.0
    state: RegistrationState = RegistrationState.REGISTERING
    cseq: int = 0
    granted: int = 0                 # what the registrar granted at the last 2xx
    next_at: float | None = None     # when to send the next REGISTER (refresh or retry)
    last_status: int = 0
    last_reason: str = ""
    auth_attempts: int = 0
    authorization: tuple[str, str] | None = field(default=None, repr=False)   # (header, value) to send

    def request(self, via: str, user_agent: str, *, expires: int | None = None) -> Request:
        """The next REGISTER (CSeq + 1, same Call-ID and From tag: §10.2.4)."""
        self.cseq += 1
        asked = self.expires if expires is None else expires
        headers = Headers()
        headers.add("Via", via)
        headers.add("Max-Forwards", "70")
        headers.add("From", str(NameAddr(None, SipUri.parse(self.aor), {"tag": self.tag})))
        headers.add("To", str(NameAddr(None, SipUri.parse(self.aor), {})))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.cseq} REGISTER")
        headers.add("Contact", f"{self.contact};expires={asked}")
        headers.add("Expires", str(asked))
        headers.add("User-Agent", user_agent)
        if self.authorization is not None:
            headers.add(*self.authorization)
        return Request("REGISTER", self.registrar, headers)

    def on_response(self, request: Request, response: Response | None, now: float) -> bool:
        """A final response to ``request`` (None: no answer, Timer F). True when a new REGISTER must go
        out now (a digest answer, or a 423 retry); otherwise :attr:`next_at` says when."""
        if response is None:
            return self._failed(408, "Request Timeout", now)
        status = response.status
        self.last_status, self.last_reason = status, response.reason
        if 200 <= status < 300:
            self.auth_attempts = 0
            if self.state is RegistrationState.UNREGISTERED or _asked(request) == 0:
                self.state, self.next_at = RegistrationState.UNREGISTERED, None
                return False
            self.granted = self._granted(response) or self.expires
            self.state = RegistrationState.REGISTERED
            margin = max(self.granted * (1 - REFRESH_FRACTION), min(MIN_MARGIN_S, self.granted / 2))
            self.next_at = now + self.granted - margin
            return False
        if status in (401, 407) and self.credentials is not None and self.auth_attempts < MAX_AUTH_ATTEMPTS:
            header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
            challenge = best_challenge(response.headers.get_all(header), realm=self.credentials.realm)
            if challenge is not None:
                try:
                    value = authorization(challenge, "REGISTER", self.registrar, self.credentials,
                                          cnonce=f"{self.call_id}-{self.cseq}", nc=1)
                except DigestError:
                    return self._failed(status, response.reason, now)
                self.auth_attempts += 1
                self.authorization = ("Authorization" if status == 401 else "Proxy-Authorization", value)
                return True
        if status == 423:
            minimum = response.headers.get("Min-Expires") or ""
            if minimum.strip().isdigit() and int(minimum) > self.expires:
                self.expires = int(minimum)
                return True
        return self._failed(status, response.reason, now)

    def _failed(self, status: int, reason: str, now: float) -> bool:
        self.last_status, self.last_reason = status, reason
        self.state = RegistrationState.FAILED
        self.auth_attempts = 0
        self.authorization = None
        self.next_at = now + self.retry_after
        return False

    def _granted(self, response: Response) -> int:
        """Our binding's expiry in the 2xx: its Contact's ``expires``, else the Expires header."""
        ours = SipUri.parse(self.contact.strip("<>").split(">")[0])
        for value in response.headers.get_all("Contact"):     # a list header: one binding each
            try:
                contact = NameAddr.parse(value)
            except ValueError:
                continue
            if contact.uri.host == ours.host and contact.uri.port == ours.port:
                expires = contact.params.get("expires")
                if expires is not None and expires.isdigit():
                    return int(expires)
        header = (response.headers.get("Expires") or "").strip()
        return int(header) if header.isdigit() else 0


def _asked(request: Request) -> int:
    header = (request.headers.get("Expires") or "").strip()
    return int(header) if header.isdigit() else -1
