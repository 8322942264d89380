"""DTLS-SRTP (RFC 5763, RFC 5764), sans-I/O: the handshake that keys a WebRTC call's SRTP.

A :class:`DtlsEndpoint` takes the peer's DTLS datagrams (:meth:`~DtlsEndpoint.receive`) and queues its
own (:meth:`~DtlsEndpoint.datagrams_to_send`); OpenSSL (through pyOpenSSL, on memory BIOs) does the
cryptography. When the handshake completes it checks the peer's certificate against the fingerprint
its SDP gave (``a=fingerprint``: the certificate is self-signed, the fingerprint is what authenticates
it) and exports the SRTP keys (:attr:`~DtlsEndpoint.keys`). After that, DTLS carries nothing more for an
audio call: a close_notify from the peer sets :attr:`~DtlsEndpoint.closed`.

Handshake retransmission: OpenSSL keeps its own timer (it reads the clock itself: the one place here
where time is not passed in); :meth:`~DtlsEndpoint.get_timer` says when it is due, on the caller's clock,
and :meth:`~DtlsEndpoint.handle_timer` lets OpenSSL resend its last flight.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

MAX_DATAGRAM = 1500
HANDSHAKE_GIVE_UP_S = 30.0


@dataclass(frozen=True, slots=True)
class SrtpProfile:
    name: str                # RFC 5764 §4.1.2 / RFC 7714 §14.2 name, as OpenSSL knows it
    key_length: int
    salt_length: int


SRTP_PROFILES = (                  # our preference: GCM first (RFC 7714), then the mandatory one
    SrtpProfile("SRTP_AEAD_AES_128_GCM", 16, 12),
    SrtpProfile("SRTP_AES128_CM_SHA1_80", 16, 14),
)


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """What SRTP needs from the handshake: the profile and each direction's master key + salt."""

    profile: SrtpProfile
    local: bytes             # ours: protects what we send
    remote: bytes            # the peer's: unprotects what we receive


class DtlsError(Exception):
    """The handshake failed: the message says why (wrong fingerprint, no SRTP profile, a TLS alert)."""


class Certificate:
    """A self-signed ECDSA P-256 certificate, as browsers use for WebRTC; its SHA-256 fingerprint goes
    in our SDP. One per server is enough (browsers keep one per peer connection)."""

    def __init__(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, secrets.token_hex(8))])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
                .sign(key, hashes.SHA256()))
        self.der = cert.public_bytes(serialization.Encoding.DER)
        self.x509 = cert
        self.key = key

    @property
    def fingerprint(self) -> str:
        """``sha-256 AB:CD:...`` as ``a=fingerprint`` carries it."""
        return "sha-256 " + fingerprint_of(self.der, "sha-256")


def fingerprint_of(der: bytes, algorithm: str) -> str:
    """The colon-separated upper-case hex digest of a DER certificate (RFC 8122 §5)."""
    name = algorithm.lower().replace("-", "")
    if name not in ("sha1", "sha224", "sha256", "sha384", "sha512"):
        raise DtlsError(f"unsupported fingerprint algorithm {algorithm!r}")
    return ":".join(f"{b:02X}" for b in hashlib.new(name, der).digest())


class DtlsEndpoint:
    """One side of the handshake. ``server``: we wait for the peer's ClientHello (SDP ``setup:passive``)."""

    def __init__(self, certificate: Certificate, remote_fingerprint: str, *, server: bool) -> None:
        algorithm, _, value = remote_fingerprint.strip().partition(" ")
        if not value:
            raise DtlsError(f"a fingerprint is '<algorithm> <hex>', got {remote_fingerprint!r}")
        fingerprint_of(b"", algorithm)          # the algorithm is one we can check
        self._algorithm, self._expected = algorithm, value.strip().upper()
        context = SSL.Context(SSL.DTLS_METHOD)
        context.set_options(SSL.OP_NO_TICKET)
        # the peer's certificate is self-signed: required, and checked against its fingerprint below
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *_: True)
        context.use_certificate(certificate.x509)
        context.use_privatekey(certificate.key)
        context.set_tlsext_use_srtp(b":".join(p.name.encode() for p in SRTP_PROFILES))
        self._ssl = SSL.Connection(context)
        if server:
            self._ssl.set_accept_state()
        else:
            self._ssl.set_connect_state()
        self.server = server
        self.keys: SrtpKeys | None = None
        self.error: str | None = None
        self.closed = False
        self._out: list[bytes] = []
        self._started: float | None = None
        self._now = 0.0

    @property
    def connected(self) -> bool:
        return self.keys is not None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def start(self, now: float) -> None:
        """Begin the handshake (the client sends its ClientHello; the server just waits)."""
        self._started = now
        self._now = now
        self._step()

    def receive(self, data: bytes, now: float) -> None:
        self._now = now
        if self._started is None:
            self._started = now
        if self.failed or self.closed:
            return
        self._ssl.bio_write(data)
        if self.connected:               # after the handshake: an alert, a close_notify, a resent Finished
            try:
                self._ssl.recv(MAX_DATAGRAM)
            except SSL.ZeroReturnError:
                self.closed = True
            except SSL.WantReadError:
                pass
            except SSL.Error:
                pass                     # a stray record: it carries nothing for us
            self._flush()
            return
        self._step()

    def datagrams_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        if self.connected or self.failed or self._started is None:
            return None
        give_up = self._started + HANDSHAKE_GIVE_UP_S
        timeout = self._ssl.DTLSv1_get_timeout()
        return give_up if timeout is None else min(give_up, self._now + timeout)

    def handle_timer(self, now: float) -> None:
        self._now = now
        if self.connected or self.failed or self._started is None:
            return
        if now >= self._started + HANDSHAKE_GIVE_UP_S:
            self.error = f"no DTLS handshake within {HANDSHAKE_GIVE_UP_S:g} s"
            return
        self._ssl.DTLSv1_handle_timeout()
        self._flush()

    def close(self) -> None:
        """Send close_notify (the peer learns the call's media is over)."""
        if self.connected and not self.closed:
            self.closed = True
            with contextlib.suppress(SSL.Error):
                self._ssl.shutdown()
            self._flush()

    # -- internals ----------------------------------------------------------------------------------------
    def _step(self) -> None:
        try:
            self._ssl.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return
        except SSL.Error as exc:
            self._flush()                    # the alert, if OpenSSL wrote one
            self.error = f"DTLS handshake failed: {_describe(exc)}"
            return
        self._flush()
        try:
            self.keys = self._finish()
        except DtlsError as exc:
            self.error = str(exc)

    def _finish(self) -> SrtpKeys:
        peer = self._ssl.get_peer_certificate(as_cryptography=True)
        if peer is None:
            raise DtlsError("the peer sent no certificate")
        der = peer.public_bytes(serialization.Encoding.DER)
        if not hmac.compare_digest(fingerprint_of(der, self._algorithm), self._expected):
            raise DtlsError("the peer's certificate does not match the fingerprint in its SDP")
        selected = self._ssl.get_selected_srtp_profile()
        profile = next((p for p in SRTP_PROFILES if p.name.encode() == selected), None)
        if profile is None:
            raise DtlsError("no SRTP protection profile was agreed")
        n, s = profile.key_length, profile.salt_length
        material = self._ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", 2 * (n + s))
        client_key, server_key = material[:n], material[n:2 * n]
        client_salt, server_salt = material[2 * n:2 * n + s], material[2 * n + s:]
        client, server = client_key + client_salt, server_key + server_salt
        return SrtpKeys(profile, local=server if self.server else client, remote=client if self.server else server)

    def _flush(self) -> None:
        while True:
            try:
                data = self._ssl.bio_read(MAX_DATAGRAM)
            except SSL.WantReadError:
                return
            if not data:
                return
            self._out.append(data)


def _describe(exc: SSL.Error) -> str:
    reasons = [part[2] for part in exc.args[0] if isinstance(part, tuple) and len(part) == 3] \
        if exc.args and isinstance(exc.args[0], list) else []
    return ", ".join(str(r) for r in reasons) or exc.__class__.__name__
