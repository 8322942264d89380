"""ICE as a lite agent (RFC 8445 §2.5), sans-I/O: the server side of a WebRTC call's connectivity.

A lite agent has host candidates only (from config), sends no checks of its own and takes the
controlled role: the browser (a full agent, controlling) checks our candidate and nominates a pair with
USE-CANDIDATE. So the whole of our ICE is answering Binding requests on the call's one UDP port:

- :meth:`IceLite.receive` takes a STUN datagram, its source and the time; it returns the response to
  send back to that source, or None when the datagram is to be dropped (a response, an indication, a
  bad FINGERPRINT: RFC 5389 §7.3);
- a request without USERNAME or MESSAGE-INTEGRITY gets 400; one whose USERNAME is not
  ``<our ufrag>:<theirs>`` or whose MESSAGE-INTEGRITY fails under our password gets 401 (§10.1.2); one
  carrying ICE-CONTROLLED (the peer thinks it is controlled too) gets 487 Role Conflict (RFC 8445
  §7.3.1.1: a lite agent never takes the controlling role);
- a valid request gets 200 with XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and FINGERPRINT; its source becomes a
  validated address, and with USE-CANDIDATE the selected one (:attr:`IceLite.selected`, where our DTLS
  and media go);
- consent (RFC 7675): the peer keeps checking the selected pair (every 5 s or so); with no valid check
  from it for :data:`CONSENT_TIMEOUT_S`, :meth:`handle_timer` declares the connection lost
  (:attr:`IceLite.lost`).
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from pbx.webrtc import stun

Address = tuple[str, int]
CONSENT_TIMEOUT_S = 30.0
SOFTWARE = b"pypbx"
_ICE_CHARS = string.ascii_letters + string.digits + "+/"


@dataclass(frozen=True, slots=True)
class IceCredentials:
    ufrag: str
    pwd: str

    @classmethod
    def generate(cls) -> IceCredentials:
        """Fresh credentials from the ice-char alphabet: an 8-character ufrag and a 24-character password
        (RFC 8839 §5.4 asks for at least 4 and 22, 24 and 128 bits of randomness)."""
        return cls("".join(secrets.choice(_ICE_CHARS) for _ in range(8)),
                   "".join(secrets.choice(_ICE_CHARS) for _ in range(24)))


class IceLite:
    def __init__(self, local: IceCredentials, remote: IceCredentials | None = None) -> None:
        self.local = local
        self.remote = remote
        self.selected: Address | None = None     # the nominated pair's remote address
        self.validated: list[Address] = []       # sources of valid checks, in order (at most a few)
        self.lost = False
        self._consent_at: float | None = None    # the last valid check from the selected address
        self.checks = 0                          # valid checks answered
        self.refused = 0                         # requests answered with an error

    @property
    def destination(self) -> Address | None:
        """Where our packets go: the selected address, else the latest validated one."""
        return self.selected or (self.validated[-1] if self.validated else None)

    def receive(self, data: bytes, addr: Address, now: float) -> bytes | None:
        try:
            message = stun.parse(data)
        except stun.StunError:
            return None
        if message.klass != stun.REQUEST:
            return None                          # we send no requests: responses and indications are dropped
        if message.has(stun.FINGERPRINT) and not stun.check_fingerprint(data):
            return None
        if message.method != stun.BINDING:
            return self._error(message, 400, "Bad Request")
        username = message.get(stun.USERNAME)
        if username is None or not message.has(stun.MESSAGE_INTEGRITY):
            return self._error(message, 400, "Bad Request")
        if not self._our_username(username) or not stun.check_integrity(data, self.local.pwd.encode()):
            return self._error(message, 401, "Unauthorized")
        if message.has(stun.ICE_CONTROLLED):
            return self._error(message, 487, "Role Conflict", integrity=True)
        self._validated(addr, message.has(stun.USE_CANDIDATE), now)
        response = stun.StunMessage(stun.BINDING, stun.SUCCESS, message.transaction_id,
                                    [(stun.XOR_MAPPED_ADDRESS, stun.xor_address(addr, message.transaction_id)),
                                     (stun.SOFTWARE, SOFTWARE)])
        return stun.serialize(response, integrity_key=self.local.pwd.encode())

    def get_timer(self) -> float | None:
        if self.lost or self._consent_at is None:
            return None
        return self._consent_at + CONSENT_TIMEOUT_S

    def handle_timer(self, now: float) -> None:
        deadline = self.get_timer()
        if deadline is not None and now >= deadline:
            self.lost = True

    # -- internals ----------------------------------------------------------------------------------------
    def _our_username(self, username: bytes) -> bool:
        """RFC 8445 §7.2.2: USERNAME is ``<receiver's ufrag>:<sender's ufrag>``."""
        ours, sep, theirs = username.decode("utf-8", "replace").partition(":")
        if not sep or ours != self.local.ufrag:
            return False
        return self.remote is None or theirs == self.remote.ufrag

    def _validated(self, addr: Address, nominated: bool, now: float) -> None:
        self.checks += 1
        if addr not in self.validated:
            self.validated = [*self.validated[-3:], addr]
        if nominated and not self.lost:
            self.selected = addr
        if addr == self.selected:
            self._consent_at = now

    def _error(self, request: stun.StunMessage, code: int, reason: str, *, integrity: bool = False) -> bytes:
        self.refused += 1
        response = stun.StunMessage(stun.BINDING, stun.ERROR, request.transaction_id,
                                    [(stun.ERROR_CODE, stun.error_code(code, reason)), (stun.SOFTWARE, SOFTWARE)])
        return stun.serialize(response, integrity_key=self.local.pwd.encode() if integrity else None)
