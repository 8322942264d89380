"""A small HTTP/1.1 GET client for audio to play.

Two layers, as in h11's own design:

* :class:`GetExchange` is sans-I/O: it turns one GET into request bytes and the response bytes fed
  to it into a :class:`Reply`, enforcing our policy (status, redirect, size limit) on the events
  h11 parses. It never touches a socket or a clock, so tests can feed it any byte split.
* :func:`http_get` moves bytes between a fresh asyncio connection (one per request,
  ``Connection: close``) and an exchange, follows redirects and applies the time limits.

Every failure is a :class:`pbx.errors.MediaError` whose message names the URL or host; an HTTP error
status also sets ``code``.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from dataclasses import dataclass

import h11

from pbx.errors import MediaError
from pbx.media.netpolicy import AddressPolicy, AddressRefused, allowed_addresses

USER_AGENT = b"pypbx/0.1"
READ_SIZE = 65536
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}
# What requote-style quoting leaves alone: reserved and already-escaped characters.
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"


@dataclass(frozen=True, slots=True)
class Url:
    """An absolute http(s) URL split into what a connection and a request need."""

    text: str
    scheme: str
    host: str
    port: int
    target: str  # path and query, percent-encoded ASCII

    @classmethod
    def parse(cls, text: str) -> Url:
        try:
            parts = urllib.parse.urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise MediaError(f"bad URL {text!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise MediaError(f"unsupported URL scheme {scheme!r} in {text} (only http and https)")
        host = parts.hostname
        if not host:
            raise MediaError(f"bad URL {text!r}: no host")
        try:
            host.encode("idna")  # what the Host header, DNS and TLS will need
        except UnicodeError as exc:
            raise MediaError(f"bad URL {text!r}: {exc}") from None
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        target = urllib.parse.quote(target, safe=_TARGET_SAFE)
        return cls(text, scheme, host, port if port is not None else DEFAULT_PORTS[scheme], target)

    @property
    def authority(self) -> str:
        """host[:port] as the Host header and messages spell it (port only if not the default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    def join(self, location: str) -> Url:
        """The URL a redirect's Location (absolute or relative) points to."""
        return Url.parse(urllib.parse.urljoin(self.text, location))


@dataclass(frozen=True, slots=True)
class Reply:
    """A finished exchange: a 200 with its body, or a redirect with its Location."""

    status: int
    body: bytes = b""
    location: str | None = None


class GetExchange:
    """One GET and its response over one connection, sans-I/O.

    ``request_bytes()`` gives what to send; ``receive_data(data)`` takes what arrived (``b""`` at
    end of stream) and returns a :class:`Reply` once the outcome is known, else None. A redirect is
    reported as soon as its head arrives (its body is not read); a too-large body fails as soon as
    its Content-Length or its running total exceeds ``max_bytes``.
    """

    def __init__(self, url: Url, max_bytes: int) -> None:
        self.url = url
        self.max_bytes = max_bytes
        self._conn = h11.Connection(h11.CLIENT)
        self._body = bytearray()
        self._status: int | None = None

    def request_bytes(self) -> bytes:
        request = h11.Request(
            method="GET",
            target=self.url.target.encode("ascii"),
            headers=[
                (b"Host", self.url.authority.encode("idna")),
                (b"User-Agent", USER_AGENT),
                (b"Accept", b"*/*"),
                (b"Accept-Encoding", b"identity"),
                (b"Connection", b"close"),
            ],
        )
        return (self._conn.send(request) or b"") + (self._conn.send(h11.EndOfMessage()) or b"")

    def receive_data(self, data: bytes) -> Reply | None:
        self._conn.receive_data(data)
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                if not data and self._status is None:
                    raise self._closed_early() from None
                raise MediaError(f"bad HTTP response from {self.url.authority} fetching {self.url.text}: "
                                 f"{exc}") from None
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Response):
                reply = self._on_head(event)
                if reply is not None:
                    return reply
            elif isinstance(event, h11.Data):
                self._body += event.data
                self._check_size(len(self._body))
            elif isinstance(event, h11.EndOfMessage):
                return Reply(200, bytes(self._body))
            elif isinstance(event, h11.ConnectionClosed):
                raise self._closed_early()
            # InformationalResponse (1xx) carries nothing for us; h11 moves on to the real head.

    def _closed_early(self) -> MediaError:
        return MediaError(f"{self.url.authority} closed the connection without a response "
                          f"fetching {self.url.text}")

    def _on_head(self, head: h11.Response) -> Reply | None:
        status = self._status = head.status_code
        headers = {name: value for name, value in head.headers}
        if status in REDIRECT_STATUSES and b"location" in headers:
            return Reply(status, location=headers[b"location"].decode("latin-1"))
        if status != 200:
            raise MediaError(f"HTTP {status} fetching {self.url.text}", code=status)
        length = headers.get(b"content-length")
        if length is not None:  # h11 has checked it is a plain decimal number
            self._check_size(int(length))
        return None

    def _check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise MediaError(f"{self.url.text} exceeds the {self.max_bytes}-byte limit")


async def http_get(
    url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    connect_timeout_s: float | None = None,
    max_redirects: int = 3,
    ssl_context: ssl.SSLContext | None = None,
    policy: AddressPolicy | None = None,
) -> bytes:
    """GET ``url`` (http or https) and return the body of its final 200 response.

    ``timeout_s`` bounds the whole fetch, redirects included; ``connect_timeout_s`` (default:
    ``timeout_s``) bounds each TCP+TLS connect. ``ssl_context`` defaults to
    :func:`ssl.create_default_context` (pass one to reuse it across fetches). ``policy`` says which
    addresses may be fetched from (default: public ones only); every hop's host is resolved once,
    checked, and connected to at the address checked.
    """
    if policy is None:
        policy = AddressPolicy()
    current = Url.parse(url)
    seen = {current.text}
    if ssl_context is None and current.scheme == "https":
        ssl_context = ssl.create_default_context()
    try:
        async with asyncio.timeout(timeout_s):
            for _ in range(max_redirects + 1):
                reply = await _exchange(current, max_bytes, connect_timeout_s or timeout_s, ssl_context, policy)
                if reply.location is None:
                    return reply.body
                current = current.join(reply.location)
                if current.text in seen:
                    raise MediaError(f"redirect loop at {current.text} fetching {url}")
                seen.add(current.text)
                if ssl_context is None and current.scheme == "https":
                    ssl_context = ssl.create_default_context()
    except TimeoutError:
        raise MediaError(f"timed out after {float(timeout_s)} s fetching {url}") from None
    raise MediaError(f"too many redirects (more than {max_redirects}) fetching {url}")


async def _exchange(url: Url, max_bytes: int, connect_timeout_s: float,
                    ssl_context: ssl.SSLContext | None, policy: AddressPolicy) -> Reply:
    exchange = GetExchange(url, max_bytes)
    reader, writer = await _connect(url, connect_timeout_s, ssl_context, policy)
    try:
        writer.write(exchange.request_bytes())
        while True:
            data = await reader.read(READ_SIZE)
            reply = exchange.receive_data(data)
            if reply is not None:
                return reply
    except OSError as exc:  # reset, TLS failure mid-stream, ...
        raise MediaError(f"connection to {url.authority} failed fetching {url.text}: {exc}") from None
    finally:
        # The response is complete or abandoned: no graceful (TLS) shutdown to wait for.
        writer.transport.abort()


async def _addresses(url: Url, policy: AddressPolicy) -> list[str]:
    """The addresses of the URL's host that the policy allows (resolved once); MediaError if none."""
    try:
        return await allowed_addresses(url.host, url.port, policy)
    except AddressRefused as exc:
        if exc.reason.startswith("cannot reach"):
            raise MediaError(exc.reason) from None
        raise MediaError(f"not fetching {url.text}: {exc.reason}, which play may not reach "
                         "(config play_allow_networks allows networks)") from None


async def _connect(url: Url, timeout_s: float, ssl_context: ssl.SSLContext | None, policy: AddressPolicy
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    tls = ssl_context if url.scheme == "https" else None
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            failure: OSError | None = None
            for address in await _addresses(url, policy):
                try:   # the checked address itself: no second lookup between the check and the connect
                    return await asyncio.open_connection(
                        address, url.port, ssl=tls, server_hostname=url.host if tls else None,
                        ssl_handshake_timeout=timeout_s if tls else None,
                    )
                except (ConnectionRefusedError, ssl.SSLError):
                    raise
                except OSError as exc:   # unreachable: the next address may do
                    failure = exc
            raise failure or OSError(f"no address of {url.host} to connect to")
    except TimeoutError as exc:
        if deadline.expired():
            raise MediaError(f"timed out after {float(timeout_s)} s connecting to {url.authority} "
                             f"fetching {url.text}") from None
        raise MediaError(f"cannot reach {url.host}: {exc.strerror or exc}") from None
    except ConnectionRefusedError:
        raise MediaError(f"connection refused by {url.authority} fetching {url.text}") from None
    except ssl.SSLCertVerificationError as exc:
        raise MediaError(f"TLS certificate of {url.host} rejected: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise MediaError(f"TLS handshake with {url.host} failed: {exc.reason or exc}") from None
    except OSError as exc:  # unreachable network, ...
        raise MediaError(f"cannot reach {url.host}: {exc.strerror or exc}") from None
