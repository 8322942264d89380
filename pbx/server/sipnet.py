"""The SIP port on the event loop: UDP and TCP sockets around the sans-I/O :class:`~pbx.sip.ua.UserAgent`.

It only moves bytes: a datagram (or a message framed off a TCP stream) is parsed and handed to the
user agent with the time; afterwards :meth:`SipNetwork.flush` sends what the agent queued, passes
its events on, and re-arms one ``loop.call_at`` timer at :meth:`UserAgent.get_timer`.

Bad input never reaches a call: a datagram that does not parse as SIP is answered with the status
its error names (400, 413, 505, 513, ...) when it is a request whose Via can be read, and dropped
otherwise; a TCP stream that cannot be framed is answered and closed. Either way the other calls go
on. Before any of that, the :class:`~pbx.sip.guard.SipGuard` (source ACL, per-source rates, brute-force
blocks; docs/sip-security.md) may refuse a datagram, a TCP connection or a new request: its one answer
(503 with Retry-After) goes out, the rest is dropped. A message to an address with an open TCP connection
goes over it, else over UDP, from the socket of the address's family (a server can listen on an IPv4 and
an IPv6 address at once).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections.abc import Callable

from pbx.server.deadline import Deadline
from pbx.sip.errors import SipParseError
from pbx.sip.guard import Refused, SipGuard
from pbx.sip.message import Headers, Limits, Request, Response, parse_message, response_for_error
from pbx.sip.stream import StreamParser
from pbx.sip.ua import RegistrationEvent, UaEvent, UserAgent

log = logging.getLogger(__name__)

Address = tuple[str, int]
MAX_TCP_CONNECTIONS = 1024


def error_response(data: bytes, error: SipParseError) -> bytes | None:
    """The response to a request that failed to parse, built from whatever headers can be read;
    None when it is not a request or has no Via to answer to (RFC 3261 §18.2.1: then it is dropped)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    lines = head.splitlines()           # a bare CR or LF ends a line too: a header value may hold neither
    if not lines or b"SIP/2.0" not in lines[0] or lines[0].startswith(b"SIP/2.0"):
        return None
    wanted = {"via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
              "call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}
    headers = Headers()
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        key = name.strip().decode("latin-1").lower()
        if sep and key in wanted:
            headers.add(wanted[key], value.strip().decode("latin-1"))
    if "Via" not in headers:
        return None
    reason = error.reason.replace("\r", " ").replace("\n", " ")
    headers.add("Warning", f'399 pypbx "{str(error)[:200]}"'.replace("\r", " ").replace("\n", " "))
    for field_name, field_value in error.headers:       # Allow, Retry-After, ...: ours, one line each
        headers.add(field_name, field_value)
    return Response(error.status, reason, headers).serialize()


def _dialog_opener(message: Request | Response) -> Request | None:
    """The message if it is a request outside any dialog (no To tag) that the user agent would act on:
    INVITE, REGISTER, OPTIONS, ...; CANCEL and ACK belong to a transaction that exists already."""
    if not isinstance(message, Request) or message.method in ("ACK", "CANCEL"):
        return None
    try:
        return message if message.to.tag is None else None
    except SipParseError:
        return None                 # the user agent answers the unreadable To itself


def _socket(family: int, kind: int) -> socket.socket:
    """A socket of one family only: an IPv6 one does not take IPv4 (mapped) traffic, which is the IPv4
    socket's, so both can hold the same port."""
    sock = socket.socket(family, kind)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return sock


def bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP socket and a listening TCP socket on ``host:port`` (0: a free port, the same for both)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(20):
        udp = _socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind((host, port))
            bound = udp.getsockname()[1]
            tcp = _socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((host, bound))
            except OSError:
                tcp.close()
                udp.close()
                if port:
                    raise
                continue            # port 0: the TCP side of that port was taken; pick again
        except OSError:
            udp.close()
            raise
        tcp.listen(128)
        return udp, tcp
    raise OSError(f"no port free for both UDP and TCP on {host}")


class _SendOnly:
    """The sending side of a UDP socket another process reads (a worker's view of the SIP port)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def sendto(self, data: bytes, addr: Address) -> None:
        try:
            self.sock.sendto(data, addr)
        except OSError as exc:     # a full buffer or an unreachable peer: SIP's retransmissions cover it
            log.debug("sip udp send to %s:%d: %s", addr[0], addr[1], exc)

    def close(self) -> None:
        self.sock.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, network: SipNetwork) -> None:
        self.network = network

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.network.datagram(data, (addr[0], addr[1]), None)

    def error_received(self, exc: Exception) -> None:   # ICMP unreachable for an earlier send: nothing to do
        log.debug("sip udp: %s", exc)


class SipNetwork:
    def __init__(self, ua: UserAgent, on_event: Callable[[UaEvent | RegistrationEvent], None],
                 limits: Limits | None = None, guard: SipGuard | None = None) -> None:
        self.ua = ua
        self.on_event = on_event
        self.limits = limits or Limits()
        self.guard = guard                  # source ACL, rates, auth blocks (pbx.sip.guard); None: none
        self._udp: dict[int, asyncio.DatagramTransport | _SendOnly] = {}      # by address family
        self._tcp: list[asyncio.Server] = []
        self._streams: dict[Address, asyncio.StreamWriter] = {}
        self._deadline = Deadline(self._on_timer)
        self.bad_messages = 0

    @staticmethod
    def now() -> float:
        return time.monotonic()

    async def start(self, host: str, port: int) -> Address:
        """Bind UDP and TCP on ``host:port`` (0: a free port, the same for both); returns the address.
        Called again with an address of the other family, the server listens on both."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if family in self._udp:
            raise ValueError(f"already listening on an IPv{6 if family == socket.AF_INET6 else 4} address")
        udp, tcp = bind_pair(host, port)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp)
        self._udp[family] = transport
        self._tcp.append(await asyncio.start_server(self._serve_stream, sock=tcp))
        return host, tcp.getsockname()[1]

    def attach(self, udp: socket.socket) -> Address:
        """Worker mode (pbx.server.supervisor): send over ``udp``, a SIP socket the supervisor bound and
        reads; what comes in reaches :meth:`datagram` from it, TCP connections :meth:`adopt_stream`."""
        udp.setblocking(False)
        self._udp[udp.family] = _SendOnly(udp)
        host, port = udp.getsockname()[:2]
        return host, port

    async def adopt_stream(self, sock: socket.socket) -> None:
        """Serve a TCP connection the supervisor accepted."""
        reader, writer = await asyncio.open_connection(sock=sock)
        await self._serve_stream(reader, writer)

    async def stop(self) -> None:
        self._deadline.arm(None)
        for udp in self._udp.values():
            udp.close()
        for tcp in self._tcp:
            tcp.close()
        for writer in list(self._streams.values()):
            writer.transport.abort()
        self._streams.clear()

    # -- input ---------------------------------------------------------------------------------------------
    def datagram(self, data: bytes, addr: Address, stream: asyncio.StreamWriter | None) -> None:
        if not data.strip(b"\r\n"):
            return                          # a keep-alive (RFC 5626 CRLF ping)
        if self.guard is not None and (refused := self.guard.inbound(addr[0], self.now(),
                                                                     request=not data.startswith(b"SIP/"))):
            self._guard_refused(refused, addr, error_response(data, refused) if refused.answered else None, stream)
            return
        try:
            message = parse_message(data, self.limits)
        except SipParseError as exc:
            self._refuse(data, exc, addr, stream)
            return
        self.deliver(message, addr)

    def deliver(self, message: Request | Response, addr: Address) -> None:
        if self.guard is not None and (opener := _dialog_opener(message)) is not None and (
                refused := self.guard.new_request(addr[0], self.now())):
            answer = response_for_error(opener, refused, "g" + secrets.token_hex(4)) if refused.answered else None
            if answer is not None:
                answer.headers.add("Warning", f'399 pypbx "{refused}"')
            self._guard_refused(refused, addr, answer.serialize() if answer is not None else None,
                                self._streams.get(addr))
            return
        try:
            self.ua.receive(message, addr, self.now())
        except SipParseError as exc:      # a header the agent needed did not parse
            self.bad_messages += 1
            log.info("sip: dropped a message from %s:%d: %s", addr[0], addr[1], exc)
        self.flush()

    def _refuse(self, data: bytes, error: SipParseError, addr: Address, stream: asyncio.StreamWriter | None) -> None:
        self.bad_messages += 1
        log.info("sip: bad message from %s:%d: %s", addr[0], addr[1], error)
        response = error_response(data, error)
        if response is None:
            return
        if stream is not None:
            stream.write(response)
        else:
            self._send_udp(response, addr)

    def _guard_refused(self, refused: Refused, addr: Address, answer: bytes | None,
                       stream: asyncio.StreamWriter | None) -> None:
        """What the guard refused: its one answer (503 with Retry-After, 403), else nothing (dropped)."""
        if answer is None:
            log.debug("sip: dropped a message from %s:%d: %s", addr[0], addr[1], refused)
            return
        log.info("sip: refused %s:%d: %s", addr[0], addr[1], refused)
        if stream is not None:
            stream.write(answer)
        else:
            self._send_udp(answer, addr)

    async def _serve_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        addr: Address = (peer[0], peer[1])
        if len(self._streams) >= MAX_TCP_CONNECTIONS or (
                self.guard is not None and self.guard.connection(addr[0], self.now()) is not None):
            writer.transport.abort()
            return
        self._streams[addr] = writer
        parser = StreamParser(self.limits)
        try:
            while data := await reader.read(65536):
                try:
                    messages = parser.feed(data)
                except SipParseError as exc:
                    self._refuse(data, exc, addr, writer)
                    break
                for message in messages:
                    self.deliver(message, addr)
                if parser.error is not None:    # after those messages: the stream cannot be read further
                    break
        except OSError:
            pass
        finally:
            if self._streams.get(addr) is writer:
                del self._streams[addr]
            writer.transport.abort()

    # -- output --------------------------------------------------------------------------------------------
    def flush(self) -> None:
        ua = self.ua
        for data, addr in ua.datagrams_to_send():
            self.send(data, addr)
        for event in ua.events():
            try:
                self.on_event(event)
            except Exception:   # one call's bug must not stop the SIP port
                log.exception("sip: handling %s failed", type(event).__name__)
        for data, addr in ua.datagrams_to_send():   # what the handlers asked for
            self.send(data, addr)
        self._deadline.arm(ua.get_timer())

    def send(self, data: bytes, addr: Address) -> None:
        writer = self._streams.get(addr)
        if writer is not None:
            writer.write(data)
        else:
            self._send_udp(data, addr)

    def _send_udp(self, data: bytes, addr: Address) -> None:
        udp = self._udp.get(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET)
        if udp is not None:         # no socket of that family: the peer cannot be reached from here
            udp.sendto(data, addr)

    def _on_timer(self) -> None:
        self.ua.handle_timer(self.now())
        self.flush()
