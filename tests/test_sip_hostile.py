"""Hostile input on the SIP side (issue 13), each with a call in progress that must not notice.

The server listens on 127.0.0.1 and ::1 (``[sip] addr``, ``addr6``); the *bystander* is an outbound call from
``/call/sip`` to sipp on 127.0.0.1, which answers and plays sipp's g711a.pcap (236 PCMA packets, 7.05 s); the
application records it with webrtc VAD and hangs up once the speech is over. The attacker (*Mallory*) talks
from ::1, a source address of its own, so the per-source defences that refuse it leave the bystander alone;
RTP is attacked from 127.0.0.1 (the RTP ports are IPv4), the bystander's own host.

Unaffected means: no ``error`` event, speech heard (``speaking``), every one of the 236 packets received and
none lost (``hangup.extra.rtp``), and a recording whose loudest 50 ms is as loud as the pcap's speech, within
a factor of 2 (Mallory's RTP is full-scale, some 6 times louder: one packet of it in the call would show). (Whether
VAD reports the short pause in the middle of the speech as ``silence`` depends on how loaded the machine is:
it is not checked.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from pbx.core.g711 import alaw_decode
from pbx.server.app import CallServer
from pbx.sip.config import SipConfig, WebhookConfig
from pbx.sip.digest import Challenge, Credentials, authorization
from pbx.sip.message import Response, parse_message
from support.audio import read_wav
from tests.support.calls import Call, Event, running_server
from tests.support.sip import SIPP, WebhookReceiver, run_sipp, sipp, sipp_callee

needs_sipp = pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")
T = TypeVar("T")
PCAP_PACKETS = 236              # /usr/share/sip-tester/g711a.pcap
SPEECH_S = 7.05
PCAP = Path("/usr/share/sip-tester/g711a.pcap")
USERS = {"1001": "correct horse battery"}
OFFER = ("v=0\r\no=mallory 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\n"
         "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


# -- Mallory -------------------------------------------------------------------------------------------------------
class Mallory:
    """A hostile SIP peer on ::1 sending to the server's IPv6 SIP port."""

    def __init__(self, sip_port: int) -> None:
        self.port = sip_port
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind(("::1", 0))
        self.sock.setblocking(False)
        self.local = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def request(self, method: str, call_id: str, *, cseq: int = 1, user: str = "bot", extra: str = "",
                authorization_value: str | None = None) -> bytes:
        body = OFFER if method == "INVITE" else ""
        auth = f"Authorization: {authorization_value}\r\n" if authorization_value else ""
        return (f"{method} {self.uri(user)} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP [::1]:{self.local};branch=z9hG4bK-{call_id}-{cseq}\r\n"
                f"From: <sip:{user}@[::1]>;tag=m-{call_id}\r\nTo: <sip:{user}@[::1]>\r\n"
                f"Call-ID: {call_id}@mallory\r\nCSeq: {cseq} {method}\r\n"
                f"Contact: <sip:{user}@[::1]:{self.local}>\r\nMax-Forwards: 70\r\n{auth}{extra}"
                + ("Content-Type: application/sdp\r\n" if body else "")
                + f"Content-Length: {len(body)}\r\n\r\n{body}").encode()

    def uri(self, user: str = "bot") -> str:
        return f"sip:{user}@[::1]:{self.port}"

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, ("::1", self.port))

    async def replies(self, wait: float = 0.5) -> list[Response]:
        """The responses that come back within ``wait`` seconds."""
        loop = asyncio.get_running_loop()
        out: list[Response] = []
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0:
            try:
                data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), left)
            except TimeoutError:
                break
            message = parse_message(data)
            assert isinstance(message, Response), data
            out.append(message)
        return out

    async def exchange(self, data: bytes, wait: float = 0.5) -> list[Response]:
        self.send(data)
        return await self.replies(wait)


def finals(replies: list[Response], call_id: str | None = None, cseq: int | None = None) -> list[int]:
    """The final statuses among ``replies`` (of one request: its Call-ID and CSeq number, when given; a
    final response to an INVITE comes again until ACKed, which Mallory never does)."""
    return [r.status for r in replies if r.status >= 200
            and (call_id is None or r.call_id == f"{call_id}@mallory")
            and (cseq is None or r.cseq.seq == cseq)]


# -- the bystander -----------------------------------------------------------------------------------------------
def dual(**options: Any) -> SipConfig:
    return SipConfig(addr="127.0.0.1:0", addr6="[::1]:0", **options)


async def with_bystander(tmp_path: Path, sip: SipConfig, attack: Callable[[CallServer], Awaitable[T]],
                         webhook: WebhookConfig | None = None) -> tuple[T, list[Event]]:
    """Run ``attack`` on a server while its bystander call hears sipp's speech; the attack's result and the
    bystander's events (the last one its hangup)."""
    async with running_server(tmp_path / "data", sip=sip, webhook=webhook or WebhookConfig()) as (server, address), \
            sipp_callee("callee_answers.xml", tmp_path / "sipp", timeout_s=30.0) as callee, \
            Call.open(address, "pingInterval=0", path="/call/sip") as call:
        await call.send({"command": "invite", "option": {
            "caller": "sip:bot@127.0.0.1", "callee": callee.uri, "codec": "pcma",
            "vad": {"type": "webrtc"}, "recorder": {"recorderFile": "bystander.wav"}}})
        await call.wait_event("answer", timeout=10.0)
        started = asyncio.get_running_loop().time()
        await call.wait_event("speaking", timeout=5.0)
        result = await attack(server)
        left = started + SPEECH_S + 1.5 - asyncio.get_running_loop().time()
        assert left > 0, "the attack outlasted the bystander's speech: make it shorter"
        await asyncio.sleep(left)
        await call.send({"command": "hangup"})
        await call.wait_event("hangup", timeout=5.0)
        assert (await callee.finish()).rc == 0
        return result, call.events()


def pcap_speech() -> np.ndarray:
    """The speech sipp plays: the PCMA payloads of g711a.pcap (Ethernet, IPv4, UDP, RTP without CSRCs),
    decoded at 8 kHz."""
    data = PCAP.read_bytes()
    payloads, offset = [], 24
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset + 8)
        payloads.append(data[offset + 16 + 54:offset + 16 + length])
        offset += 16 + length
    return alaw_decode(b"".join(payloads)).astype(np.float64)


def envelope(pcm: np.ndarray, rate: int) -> np.ndarray:
    """RMS per 50 ms."""
    n = rate // 20
    k = len(pcm) // n
    return np.sqrt((pcm[:k * n].astype(np.float64).reshape(k, n) ** 2).mean(axis=1))


def assert_unaffected(events: list[Event], tmp_path: Path) -> None:
    names = [e["event"] for e in events]
    assert "error" not in names, events
    assert "speaking" in names, names
    rtp = events[-1]["extra"]["rtp"]
    assert (rtp["packetsReceived"], rtp["packetsLost"]) == (PCAP_PACKETS, 0), rtp
    pcm, rate = read_wav(tmp_path / "data" / "recordings" / "bystander.wav")
    assert pcm.ndim == 2 and pcm.shape[0] >= rate * SPEECH_S
    speech = envelope(pcap_speech(), 8000).max()
    peaks = [float(envelope(pcm[:, c], rate).max()) for c in range(2)]
    # the callee's channel peaks like sipp's speech: heard, and nothing of Mallory's full-scale packets in it
    assert 0.3 * speech < max(peaks) < 2 * speech, (peaks, speech)


def v6_port(server: CallServer) -> int:
    assert server.sip is not None and server.sip.other is not None
    return server.sip.other.address[1]


# -- the tests ------------------------------------------------------------------------------------------------------
@needs_sipp
def test_garbage_and_oversized_sip_are_refused_and_the_call_goes_on(tmp_path: Path) -> None:
    async def attack(server: CallServer) -> dict[str, Any]:
        mallory = Mallory(v6_port(server))
        rng = random.Random(13)
        try:
            for _ in range(300):                                          # garbage: nothing to answer
                mallory.send(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 1400))))
            garbage = await mallory.replies(0.5)
            filler = "".join(f"X-Filler-{i:04d}: {'f' * 48}\r\n" for i in range(400))     # ~24 kB > 16384
            oversized = await mallory.exchange(mallory.request("INVITE", "big", extra=filler))
            options = await mallory.exchange(mallory.request("OPTIONS", "still-answered"))
        finally:
            mallory.close()
        reader, writer = await asyncio.open_connection("::1", v6_port(server))
        try:
            writer.write(os.urandom(40_000))                            # garbage on a stream: closed
            await writer.drain()
            closed = await asyncio.wait_for(reader.read(), 5.0)
        except ConnectionResetError:
            closed = b""
        finally:
            writer.close()
        return {"garbage": garbage, "oversized": oversized, "options": options, "tcp": closed}

    result, events = asyncio.run(with_bystander(tmp_path, dual(), attack))
    assert result["garbage"] == []
    assert [(r.status, r.reason) for r in result["oversized"]] == [(513, "Message Too Large")]
    assert finals(result["options"]) == [200]                # Mallory is not blocked for garbage alone
    assert b"SIP/2.0 200" not in result["tcp"]
    assert_unaffected(events, tmp_path)


@needs_sipp
def test_an_invite_flood_from_one_address_gets_one_503_then_silence(tmp_path: Path) -> None:
    async def attack(server: CallServer) -> tuple[list[Response], list[Response], int]:
        mallory = Mallory(v6_port(server))
        try:
            for n in range(400):
                mallory.send(mallory.request("INVITE", f"flood-{n}"))
            flood = await mallory.replies(1.5)
            later = await mallory.exchange(mallory.request("INVITE", "after-the-flood"), 0.5)
        finally:
            mallory.close()
        assert server.sip is not None and server.sip.guard is not None
        return flood, later, server.sip.guard.refused.new_requests

    async def run() -> tuple[tuple[list[Response], list[Response], int], list[Event], int]:
        async with WebhookReceiver.running() as hook:
            sip = dual(max_new_requests_per_sec=20, rate_cooloff_secs=30)
            result, events = await with_bystander(tmp_path, sip, attack, WebhookConfig(url=hook.url))
            return result, events, len(hook.posts)

    (flood, later, refused_new), events, posts = asyncio.run(run())
    unavailable = [r for r in flood if r.status == 503]
    assert len(unavailable) == 1 and unavailable[0].headers.get("Retry-After") == "30"
    assert "new SIP requests per second" in (unavailable[0].headers.get("Warning") or "")
    assert 20 <= posts <= 25, posts                          # the burst reached the webhook, the rest did not
    assert len({r.call_id for r in flood}) <= posts + 1       # INVITEs dropped unanswered
    assert later == []                                        # still cooling off
    assert refused_new >= 100, refused_new        # counted and dropped (the kernel drops some of 400 at once)
    assert_unaffected(events, tmp_path)


def rtp_packet(pt: int, seq: int, ssrc: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + payload


@needs_sipp
@pytest.mark.parametrize("rtp_source", ["latch", "sdp"])
def test_random_rtp_to_every_port_of_the_range_changes_nothing(tmp_path: Path, rtp_source: str) -> None:
    base = random.Random().randrange(42000, 58000, 2)
    ports = (base, base + 40)

    async def attack(server: CallServer) -> int:
        rng = random.Random(7)
        loud = bytes([0xD5, 0x2A] * 80)                     # PCMA at full scale, alternating sign
        sent = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            for round_ in range(3):
                for port in range(ports[0], ports[1] + 1):     # RTP and RTCP ports alike
                    for k in range(8):
                        kind = rng.randrange(3)
                        if kind == 0:
                            data = os.urandom(rng.randrange(1, 300))
                        elif kind == 1:                        # RTP of any payload type
                            data = rtp_packet(rng.randrange(128), rng.randrange(65536), rng.getrandbits(32), loud)
                        else:                                  # the call's PCMA, a new SSRC every packet
                            data = rtp_packet(8, round_ * 8 + k, rng.getrandbits(32), loud)
                        sock.sendto(data, ("127.0.0.1", port))
                        sent += 1
                await asyncio.sleep(0.1)
            if rtp_source == "sdp":                            # a steady stream: would re-latch a latching leg
                for seq in range(60):
                    for port in range(ports[0], ports[1] + 1, 2):
                        sock.sendto(rtp_packet(8, seq, 0x4D414C, loud), ("127.0.0.1", port))
                        sent += 1
                    await asyncio.sleep(0.005)
        return sent

    sent, events = asyncio.run(with_bystander(tmp_path, dual(rtp_ports=ports, rtp_source=rtp_source), attack))
    assert sent >= 3 * 41 * 8
    assert_unaffected(events, tmp_path)


def challenge_answer(challenge: Response, method: str, uri: str, password: str, nc: int = 1) -> str:
    offered = Challenge.parse(challenge.headers.get_all("WWW-Authenticate")[0])
    return authorization(offered, method, uri, Credentials("1001", password), f"c{nc}", nc)


@needs_sipp
def test_digest_brute_force_on_register_and_invite_ends_in_403_and_a_block(tmp_path: Path) -> None:
    async def attack(server: CallServer) -> dict[str, Any]:
        mallory = Mallory(v6_port(server))
        statuses: list[list[int]] = []
        try:
            for n in range(5):
                method = "REGISTER" if n % 2 == 0 else "INVITE"
                first = await mallory.exchange(mallory.request(method, f"guess-{n}", user="1001"))
                [challenge] = [r for r in first if r.status == 401 and r.call_id == f"guess-{n}@mallory"]
                value = challenge_answer(challenge, method, mallory.uri("1001"), f"guess {n}")
                reply = await mallory.exchange(mallory.request(method, f"guess-{n}", cseq=2, user="1001",
                                                               authorization_value=value))
                statuses.append(finals(reply, f"guess-{n}", 2))
            blocked = await mallory.exchange(mallory.request("REGISTER", "after", user="1001"))
        finally:
            mallory.close()
        # the right password from another address is not blocked
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            assert server.sip is not None and server.sip.address is not None
            port = server.sip.address[1]
            local = sock.getsockname()[1]

            def register(cseq: int, value: str | None) -> bytes:
                auth = f"Authorization: {value}\r\n" if value else ""
                return (f"REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n"
                        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-alice-{cseq}\r\n"
                        f"From: <sip:1001@127.0.0.1>;tag=alice\r\nTo: <sip:1001@127.0.0.1>\r\n"
                        f"Call-ID: alice-register\r\nCSeq: {cseq} REGISTER\r\n"
                        f"Contact: <sip:1001@127.0.0.1:{local}>\r\nExpires: 600\r\nMax-Forwards: 70\r\n{auth}"
                        f"Content-Length: 0\r\n\r\n").encode()

            loop = asyncio.get_running_loop()
            sock.sendto(register(1, None), ("127.0.0.1", port))
            challenge = parse_message(await asyncio.wait_for(loop.sock_recv(sock, 65536), 2.0))
            assert isinstance(challenge, Response) and challenge.status == 401
            value = challenge_answer(challenge, "REGISTER", f"sip:127.0.0.1:{port}", USERS["1001"])
            sock.sendto(register(2, value), ("127.0.0.1", port))
            ok = parse_message(await asyncio.wait_for(loop.sock_recv(sock, 65536), 2.0))
            assert isinstance(ok, Response)
        assert server.sip.ua is not None and server.sip.ua.registrar is not None
        bindings = server.sip.ua.registrar.lookup("1001", server.sip.now())
        return {"statuses": statuses, "blocked": blocked, "ok": ok, "bindings": bindings}

    sip = dual(users=USERS, auth_max_failures=5, auth_failure_window_secs=60, auth_block_secs=300)
    result, events = asyncio.run(with_bystander(tmp_path, sip, attack))
    assert result["statuses"] == [[401], [401], [401], [401], [403]]
    assert finals(result["blocked"], "after") == []           # blocked: dropped unanswered
    ok = result["ok"]
    assert ok.status == 200 and (ok.headers.get("Contact") or "").endswith(";expires=600")
    assert [b.contact for b in result["bindings"]] == [(ok.headers.get("Contact") or "")[1:].split(">")[0]]
    assert_unaffected(events, tmp_path)


# -- the dial allowlist --------------------------------------------------------------------------------------------
def test_a_callee_outside_dial_allow_is_refused_by_name_and_never_sent_a_packet(tmp_path: Path) -> None:
    async def run() -> tuple[Event, Event, list[bytes], bytes]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as far:
            far.bind(("127.0.0.1", 0))
            far.setblocking(False)
            port = far.getsockname()[1]
            allowed = f"sip:*@127.0.0.1:{port}"
            sip = SipConfig(addr="127.0.0.1:0", dial_allow=(allowed, "+1555*"))
            loop = asyncio.get_running_loop()
            async with running_server(tmp_path / "data", sip=sip) as (_, address):
                async with Call.open(address, "pingInterval=0", path="/call/sip") as call:
                    await call.send({"command": "invite", "option": {
                        "caller": "sip:bot@127.0.0.1", "callee": f"sip:mallory@127.0.0.1:{port + 1}",
                        "codec": "pcmu"}})
                    refused = await call.wait_event("error")
                async with Call.open(address, "pingInterval=0") as call:       # a /call call's refer
                    await call.send({"command": "invite", "option": {"codec": "pcm"}})
                    await call.wait_event("answer")
                    await call.send({"command": "refer", "caller": "sip:bot@127.0.0.1",
                                     "callee": "sip:mallory@evil.example"})
                    refer_refused = await call.wait_event("reject")
                    got: list[bytes] = []
                    with contextlib.suppress(TimeoutError):
                        got.append(await asyncio.wait_for(loop.sock_recv(far, 65536), 0.5))
                async with Call.open(address, "pingInterval=0", path="/call/sip") as call:
                    await call.send({"command": "invite", "option": {
                        "caller": "sip:bot@127.0.0.1", "callee": f"sip:alice@127.0.0.1:{port}", "codec": "pcmu"}})
                    invite = await asyncio.wait_for(loop.sock_recv(far, 65536), 5.0)
            return refused, refer_refused, got, invite

    refused, refer_refused, got, invite = asyncio.run(run())
    assert "matches no [sip] dial_allow pattern" in refused["error"] and "sip:mallory@127.0.0.1" in refused["error"]
    assert "matches no [sip] dial_allow pattern" in refer_refused["reason"], refer_refused
    assert got == []                                          # nothing went out for the refused callees
    assert invite.startswith(b"INVITE sip:alice@127.0.0.1:")  # an allowed callee is dialled


# -- the source ACL --------------------------------------------------------------------------------------------------
def test_a_denied_source_is_dropped_unanswered_over_udp_and_tcp_and_others_are_served(tmp_path: Path) -> None:
    async def run() -> tuple[list[Response], bytes, list[int], int]:
        async with running_server(tmp_path / "data", sip=dual(deny_networks=("::1/128",))) as (server, _):
            mallory = Mallory(v6_port(server))
            try:
                udp = await mallory.exchange(mallory.request("OPTIONS", "denied"))
                over_tcp = mallory.request("OPTIONS", "denied-tcp")
            finally:
                mallory.close()
            reader, writer = await asyncio.open_connection("::1", v6_port(server))
            try:
                writer.write(over_tcp)
                await writer.drain()
                tcp = await asyncio.wait_for(reader.read(), 5.0)
            except ConnectionResetError:
                tcp = b""
            finally:
                writer.close()
            assert server.sip is not None and server.sip.address is not None and server.sip.guard is not None
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", 0))
                sock.setblocking(False)
                port, local = server.sip.address[1], sock.getsockname()[1]
                sock.sendto((f"OPTIONS sip:bot@127.0.0.1:{port} SIP/2.0\r\n"
                             f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-ok\r\n"
                             "From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bot@127.0.0.1>\r\n"
                             "Call-ID: allowed\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                             "Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", port))
                reply = parse_message(await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65536), 2.0))
                assert isinstance(reply, Response)
            return udp, tcp, [reply.status], server.sip.guard.refused.acl

    udp, tcp, served, refused = asyncio.run(run())
    assert (udp, tcp, served) == ([], b"", [200])
    assert refused == 2                                      # the datagram and the connection


# -- a real peer registers ----------------------------------------------------------------------------------------
@needs_sipp
@pytest.mark.parametrize(("algorithms", "registered"), [(("MD5",), True), (("SHA-256", "MD5"), False)])
def test_sipp_registers_with_digest_when_md5_is_challenged_first(tmp_path: Path, algorithms: tuple[str, ...],
                                                                 registered: bool) -> None:
    """sipp 3.6 answers only the first challenge and only MD5: with the default order (SHA-256 first) it cannot
    register, which is why ``auth_algorithms`` is configurable (docs/sip-security.md)."""
    async def run() -> tuple[int, list[str]]:
        users = {"1001": "sipp-s3cret"}
        sip = SipConfig(addr="127.0.0.1:0", users=users, auth_algorithms=algorithms)
        async with running_server(tmp_path / "data", sip=sip) as (server, _):
            assert server.sip is not None and server.sip.address is not None and server.sip.ua is not None
            result = await run_sipp("caller_registers.xml", server.sip.address[1], tmp_path / "sipp",
                                    args=("-au", "1001", "-ap", users["1001"]))
            assert server.sip.ua.registrar is not None
            return result.rc, [b.contact for b in server.sip.ua.registrar.lookup("1001", server.sip.now())]

    rc, contacts = asyncio.run(run())
    assert (rc == 0, len(contacts)) == (registered, 1 if registered else 0)
    if registered:
        assert contacts[0].startswith("sip:1001@127.0.0.1:")


@needs_sipp
def test_sipp_authenticates_its_invite_and_the_call_reaches_the_application(tmp_path: Path) -> None:
    async def run() -> tuple[list[Any], list[Event], int]:
        users = {"1001": "sipp-s3cret"}
        async with WebhookReceiver.running() as hook, running_server(
                tmp_path / "data", webhook=WebhookConfig(url=hook.url),
                sip=SipConfig(addr="127.0.0.1:0", users=users, auth_algorithms=("MD5",))) as (server, address):
            assert server.sip is not None and server.sip.address is not None
            async with sipp("caller_authenticates.xml", server.sip.address[1], tmp_path / "sipp", timeout_s=20.0,
                            args=("-au", "1001", "-ap", users["1001"],      # sipp's digest uri: the Request-URI's
                                  "-auth_uri", f"bot@127.0.0.1:{server.sip.address[1]}")) as caller:
                post = await hook.next_post()
                async with Call.open(address, f"id={post['dialogId']}&pingInterval=0", path="/call/sip") as call:
                    await call.wait_event("incoming")
                    await call.send({"command": "accept", "option": {"codec": "pcma", "vad": {"type": "webrtc"}}})
                    await call.wait_event("speaking", timeout=5.0)
                    await call.wait_event("hangup", timeout=10.0)
                    events = call.events()
                result = await caller.finish()
                assert result.rc == 0, result.logs
                invites = [m for m in caller.sent() if m.method == "INVITE"]
            return [post, invites], events, len(hook.posts)

    (post, invites), events, posts = asyncio.run(run())
    assert posts == 1                                         # the challenged INVITE never reached the webhook
    assert "Authorization" not in invites[0].headers and 'username="1001"' in invites[1].headers["Authorization"]
    assert post["caller"].startswith("sip:1001@127.0.0.1")
    names = [e["event"] for e in events]
    assert names[0] == "incoming" and "answer" in names and "speaking" in names and "error" not in names, names
    assert (events[-1]["event"], events[-1]["reason"]) == ("hangup", "remote_hangup")
