"""Inbound phone calls (/call/sip), with sipp as the caller on loopback.

sipp runs one call of a scenario from tests/fixtures/sipp (``caller_*.xml``) against the server's SIP
port; the webhook is a receiver on loopback (:class:`~tests.support.sip.WebhookReceiver`), the
application a WebSocket client (:class:`~tests.support.calls.Call`). What sipp received is read back
from its message trace; its return code says the whole scenario went as written (0).
"""

from __future__ import annotations

import asyncio
import datetime
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pbx.server.app import CallServer
from pbx.sip.config import SipConfig, WebhookConfig
from support.audio import read_wav, tone, write_wav
from tests.support.calls import Call, Event, running_server
from tests.support.sip import SIPP, SipMessage, Sipp, SippResult, WebhookMode, WebhookReceiver, sipp

pytestmark = pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")

SPEECH_OPTION = {"codec": "pcma", "recorder": {"recorderFile": "inbound.wav"}, "vad": {"type": "webrtc"}}


@dataclass
class Inbound:
    """One test's server, webhook and sipp run."""

    server: CallServer
    address: str
    webhook: WebhookReceiver
    sipp: Sipp

    @property
    def sip_port(self) -> int:
        assert self.server.sip is not None and self.server.sip.address is not None
        return self.server.sip.address[1]

    async def finish(self) -> SippResult:
        result = await self.sipp.finish()
        assert result.rc == 0, result.logs
        return result


@asynccontextmanager
async def inbound(tmp_path: Path, scenario: str, *, mode: WebhookMode = "ok", url: bool = True,
                  timeout_s: float = 15.0, sip_host: str = "127.0.0.1", sip_options: Mapping[str, Any] | None = None,
                  keys: Mapping[str, str] | None = None, sipp_args: Sequence[str] = (),
                  server_options: Mapping[str, Any] | None = None, **webhook: Any) -> AsyncIterator[Inbound]:
    """A server whose webhook is a receiver in ``mode`` (no ``[webhook] url`` if not ``url``), and sipp
    calling it with ``scenario`` (``keys``: its ``-key`` values, ``sipp_args`` more options); ``sip_host``
    ``::1``: SIP and RTP over IPv6; ``sip_options``: more ``[sip]`` settings, ``server_options`` more
    server settings."""
    async with WebhookReceiver.running(mode) as receiver:
        config = WebhookConfig(url=receiver.url if url else "", **webhook)
        sip_config = SipConfig(addr=f"[{sip_host}]:0" if ":" in sip_host else f"{sip_host}:0", **(sip_options or {}))
        async with running_server(tmp_path / "data", webhook=config, sip=sip_config,
                                  **(server_options or {})) as (server, address):
            assert server.sip is not None and server.sip.address is not None
            async with sipp(scenario, server.sip.address[1], tmp_path / "sipp", timeout_s=timeout_s,
                            host=sip_host, keys=keys, args=sipp_args) as run:
                try:
                    yield Inbound(server, address, receiver, run)
                except BaseException as exc:       # what sipp saw helps most when a wait failed
                    exc.add_note(run.logs())
                    raise


def answer_call(test: Inbound, hook: dict[str, Any]) -> AbstractAsyncContextManager[Call]:
    """The application's connection for the call the webhook announced (an async context manager)."""
    return Call.open(test.address, f"id={hook['dialogId']}&pingInterval=0", path="/call/sip")


def finals(messages: list[SipMessage]) -> list[tuple[int, str]]:
    """(status, CSeq) of the final responses among ``messages``."""
    return [(m.status, m.headers.get("CSeq", "")) for m in messages if m.status is not None and m.status >= 200]


# -- 1. the webhook and incoming ---------------------------------------------------------------------------------
def test_the_webhook_gets_the_invite_and_the_application_gets_incoming(tmp_path: Path) -> None:
    async def run() -> tuple[dict[str, Any], Event, list[SipMessage], list[SipMessage]]:
        async with inbound(tmp_path, "caller_refused.xml") as test:
            hook = await test.webhook.next_post()
            async with answer_call(test, hook) as call:
                incoming = await call.wait_event("incoming")
                await call.send({"command": "reject", "reason": "Busy Here", "code": 486})
                await call.wait_event("hangup")
            await test.finish()
            assert len(test.webhook.posts) == 1
            method, target, headers = test.webhook.requests[0]
            assert (method, target, headers["content-type"]) == ("POST", "/hook", "application/json")
            return hook, incoming, test.sipp.sent(), test.sipp.received()

    hook, incoming, sent, received = asyncio.run(run())
    invite = sent[0]
    assert invite.method == "INVITE"
    assert set(hook) == {"dialogId", "createdAt", "caller", "callee", "event", "headers", "offer"}
    created = datetime.datetime.fromisoformat(hook["createdAt"])
    assert created.tzinfo is not None and hook["createdAt"].endswith("Z")
    assert abs((datetime.datetime.now(datetime.UTC) - created).total_seconds()) < 30
    assert hook["event"] == "invite"
    assert (hook["caller"], hook["callee"]) == ("sip:alice@pypbx.test", "sip:bot@pypbx.test")
    assert hook["headers"]["X-Case"] == "refused-1"
    for name in ("From", "To", "Call-ID", "Contact", "User-Agent", "X-Case"):
        assert hook["headers"][name] == invite.headers[name], name
    assert hook["offer"].replace("\r\n", "\n").rstrip("\n") == invite.body
    assert hook["offer"].startswith("v=0\r\n")
    assert isinstance(hook["dialogId"], str) and hook["dialogId"]
    assert incoming["event"] == "incoming" and incoming["trackId"] == hook["dialogId"]
    assert (incoming["caller"], incoming["callee"], incoming["sdp"]) == (hook["caller"], hook["callee"],
                                                                          hook["offer"])
    assert finals(received) == [(486, "1 INVITE")]


# -- 2. an accepted call: audio, DTMF, recording, the caller's BYE ------------------------------------------------
def test_an_accepted_call_hears_speech_and_keys_records_and_ends_on_the_callers_bye(tmp_path: Path) -> None:
    async def run() -> list[Event]:
        async with inbound(tmp_path, "caller_speaks.xml") as test:
            hook = await test.webhook.next_post()
            async with answer_call(test, hook) as call:
                await call.wait_event("incoming")
                await call.send({"command": "accept", "option": SPEECH_OPTION})
                await call.wait_event("answer")
                await call.wait_event("hangup", timeout=15.0)
                events = call.events()
            await test.finish()
            return events

    events = asyncio.run(run())
    names = [e["event"] for e in events]
    assert "error" not in names, events
    assert names[:2] == ["incoming", "answer"]
    assert "speaking" in names
    assert [e["digit"] for e in events if e["event"] == "dtmf"] == ["1", "5", "7"]
    hangup = events[-1]
    assert (hangup["event"], hangup["reason"], hangup["initiator"]) == ("hangup", "remote_hangup", "caller")
    pcm, rate = read_wav(tmp_path / "data" / "recordings" / "inbound.wav")
    assert pcm.ndim == 2 and pcm.shape[1] == 2
    caller = pcm[:, 0].astype(np.float64)
    window = rate // 10                              # the loudest 100 ms of the caller's channel
    energy = np.convolve(caller ** 2, np.ones(window) / window, mode="valid")
    assert np.sqrt(energy.max()) > 1000, np.sqrt(energy.max())
    assert np.sqrt(np.mean(caller ** 2)) > 100        # speech through most of the call, not one burst


# -- 3. our BYE ----------------------------------------------------------------------------------------------------
def test_the_applications_hangup_sends_bye_and_sipp_answers_it(tmp_path: Path) -> None:
    async def run() -> tuple[list[Event], list[SipMessage], list[SipMessage]]:
        async with inbound(tmp_path, "caller_waits_for_bye.xml") as test:
            hook = await test.webhook.next_post()
            async with answer_call(test, hook) as call:
                await call.wait_event("incoming")
                await call.send({"command": "accept", "option": SPEECH_OPTION})
                await call.wait_event("speaking", timeout=5.0)
                await call.send({"command": "hangup"})
                await call.wait_event("hangup")
                events = call.events()
            await test.finish()
            return events, test.sipp.sent(), test.sipp.received()

    events, sent, received = asyncio.run(run())
    hangup = events[-1]
    assert (hangup["event"], hangup["initiator"], hangup.get("reason")) == ("hangup", "user", None), hangup
    assert [m.method for m in received if m.method] == ["BYE"]
    assert [m.status for m in sent if m.status] == [200]
    assert sent[-1].headers["CSeq"].endswith("BYE")


def test_sip_and_rtp_over_ipv6_when_the_sip_port_is_an_ipv6_address(tmp_path: Path) -> None:
    async def run() -> tuple[dict[str, Any], dict[str, Any], list[SipMessage]]:
        async with inbound(tmp_path, "caller_waits_for_bye.xml", sip_host="::1") as test:
            hook = await test.webhook.next_post()
            async with answer_call(test, hook) as call:
                await call.wait_event("incoming")
                await call.send({"command": "accept", "option": SPEECH_OPTION})
                answer = await call.wait_event("answer")
                await call.wait_event("speaking", timeout=5.0)     # sipp's RTP reached the leg over IPv6
                await call.send({"command": "hangup"})
                hangup = await call.wait_event("hangup")
            await test.finish()
            return answer, hangup, test.sipp.received()

    answer, hangup, received = asyncio.run(run())
    assert "c=IN IP6 ::1" in answer["sdp"]
    assert hangup["extra"]["rtp"]["packetsReceived"] > 0 and hangup["extra"]["rtp"]["packetsSent"] > 0
    assert [m.method for m in received if m.method] == ["BYE"]


# -- 4. CANCEL -----------------------------------------------------------------------------------------------------
def test_a_cancel_while_ringing_gets_200_and_487_and_the_application_hangup_canceled(tmp_path: Path) -> None:
    async def run() -> tuple[list[Event], list[SipMessage], list[SipMessage]]:
        async with inbound(tmp_path, "caller_cancels.xml") as test:
            hook = await test.webhook.next_post()
            async with answer_call(test, hook) as call:
                await call.wait_event("incoming")
                await call.send({"command": "ringing"})
                await call.wait_event("hangup")
                events = call.events()
            await test.finish()
            return events, test.sipp.sent(), test.sipp.received()

    events, sent, received = asyncio.run(run())
    assert [e["event"] for e in events] == ["incoming", "hangup"], events
    assert (events[-1]["reason"], events[-1]["initiator"]) == ("canceled", "caller")
    assert [(m.status, m.headers["CSeq"]) for m in received if m.status not in (None, 100)] == [
        (180, "1 INVITE"), (200, "1 CANCEL"), (487, "1 INVITE")]
    assert [m.method for m in sent] == ["INVITE", "CANCEL", "ACK"]


# -- 5. early media ------------------------------------------------------------------------------------------------
def test_ringing_with_early_media_sends_183_with_sdp_then_accept_sends_200(tmp_path: Path) -> None:
    async def run() -> tuple[list[Event], list[SipMessage]]:
        async with inbound(tmp_path, "caller_early_media.xml") as test:
            hook = await test.webhook.next_post()
            async with answer_call(test, hook) as call:
                await call.wait_event("incoming")
                await call.send({"command": "ringing", "earlyMedia": True})
                await asyncio.sleep(0.3)            # the caller hears the early media a while
                await call.send({"command": "accept", "option": {"codec": "pcma"}})
                await call.wait_event("answer")
                await call.wait_event("hangup")
                events = call.events()
            await test.finish()
            return events, test.sipp.received()

    events, received = asyncio.run(run())
    assert "error" not in [e["event"] for e in events], events
    assert [(m.status, m.headers["CSeq"]) for m in received if m.status not in (None, 100)] == [
        (183, "1 INVITE"), (200, "1 INVITE"), (200, "2 BYE")]
    early = next(m for m in received if m.status == 183)
    ok = next(m for m in received if m.status == 200)
    assert early.headers["Content-Type"] == "application/sdp" and "m=audio" in early.body
    assert ok.body == early.body            # the same answer: one offer/answer exchange (RFC 3264)
    answer = next(e for e in events if e["event"] == "answer")
    assert answer["sdp"].replace("\r\n", "\n").rstrip("\n") == ok.body
    assert events[-1]["reason"] == "remote_hangup"


# -- 6. what ends a pending INVITE ------------------------------------------------------------------------------------
async def app_rejects(test: Inbound) -> list[Event]:
    hook = await test.webhook.next_post()
    async with answer_call(test, hook) as call:
        await call.wait_event("incoming")
        await call.send({"command": "reject", "reason": "Busy Here", "code": 486})
        await call.wait_event("hangup")
        return call.events()


async def nobody_connects(test: Inbound) -> list[Event]:
    await test.webhook.next_post()
    return []


async def app_stays_silent(test: Inbound) -> list[Event]:
    hook = await test.webhook.next_post()
    async with answer_call(test, hook) as call:
        await call.wait_event("incoming")
        await call.wait_event("hangup", timeout=5.0)
        return call.events()


async def app_disconnects(test: Inbound) -> list[Event]:
    hook = await test.webhook.next_post()
    async with answer_call(test, hook) as call:
        await call.wait_event("incoming")
        return call.events()


async def no_webhook(test: Inbound) -> list[Event]:
    return []


@pytest.mark.parametrize(("app", "settings", "status"), [
    (app_rejects, {}, 486),
    (nobody_connects, {"decision_timeout_secs": 1.0}, 408),
    (app_stays_silent, {"decision_timeout_secs": 1.0}, 408),
    (nobody_connects, {"mode": "error"}, 503),
    (nobody_connects, {"mode": "hang", "timeout_secs": 0.5}, 503),
    (no_webhook, {"url": False}, 480),
    (app_disconnects, {}, 603),
], ids=["reject-486", "no-decision-408", "silent-app-408", "webhook-500-503", "webhook-hangs-503",
        "no-webhook-480", "app-disconnects-603"])
def test_a_pending_invite_is_refused_with_the_status_of_what_happened(
        tmp_path: Path, app: Callable[[Inbound], Awaitable[list[Event]]], settings: dict[str, Any],
        status: int) -> None:
    async def run() -> tuple[list[Event], list[SipMessage], int]:
        async with inbound(tmp_path, "caller_refused.xml", **settings) as test:
            events = await app(test)
            await test.finish()
            return events, test.sipp.received(), len(test.webhook.posts)

    events, received, posts = asyncio.run(run())
    assert finals(received) == [(status, "1 INVITE")]
    assert posts == (0 if settings.get("url") is False else 1)
    if app is app_rejects:
        assert [e["event"] for e in events] == ["incoming", "hangup"], events
    if app is app_stays_silent:
        assert [e["event"] for e in events] == ["incoming", "reject", "hangup"], events
        assert events[1]["code"] == 408


# -- 8. mid-call requests ---------------------------------------------------------------------------------------------
async def accepted_until_hangup(test: Inbound) -> list[Event]:
    """Accept the announced call (pcma), wait until it ends, and let sipp finish its scenario."""
    hook = await test.webhook.next_post()
    async with answer_call(test, hook) as call:
        await call.wait_event("incoming")
        await call.send({"command": "accept", "option": {"codec": "pcma"}})
        await call.wait_event("hangup", timeout=10.0)
        events = call.events()
    await test.finish()
    return events


def test_hold_reinvite_and_info_are_other_events_and_info_dtmf_is_a_dtmf_event(tmp_path: Path) -> None:
    async def run() -> list[Event]:
        async with inbound(tmp_path, "caller_midcall.xml") as test:
            return await accepted_until_hangup(test)

    events = asyncio.run(run())
    names = [e["event"] for e in events]
    assert names == ["incoming", "answer", "other", "other", "dtmf", "hangup"], events
    hold, info = events[2], events[3]
    assert hold["sender"] == "sip" and hold["extra"] == {"method": "INVITE", "hold": True, "resumed": False,
                                                          "codec": "pcma"}
    assert info["sender"] == "sip" and info["extra"] == {"method": "INFO", "contentType": "application/x-pypbx-note",
                                                          "body": "hello from sipp\r\n"}
    assert events[4]["digit"] == "7"
    assert events[5]["reason"] == "remote_hangup"


def test_a_reinvite_to_another_codec_moves_the_call_s_media_to_it(tmp_path: Path) -> None:
    """sipp (``-rtp_echo``: it sends back what it gets) moves the call from PCMA to G.722. A 5 kHz tone the
    application plays comes back through the echo only once the call is wideband: PCMA (8 kHz) cannot
    carry it, G.722 (16 kHz) can, so both directions really switched codec."""
    media = tmp_path / "media"
    media.mkdir()
    write_wav(media / "tone5k.wav", tone(5000, 16000, 6.0, amplitude=0.3), 16000)

    async def run() -> list[Event]:
        async with inbound(tmp_path, "caller_changes_codec.xml", sipp_args=["-rtp_echo"],
                           server_options={"media_dir": media}) as test:
            hook = await test.webhook.next_post()
            async with answer_call(test, hook) as call:
                await call.wait_event("incoming")
                await call.send({"command": "accept", "option": {
                    "codec": "pcma", "recorder": {"recorderFile": "codec.wav", "samplerate": 16000}}})
                await call.wait_event("answer")
                await call.send({"command": "play", "url": "tone5k.wav"})
                await call.wait_event("hangup", timeout=10.0)
                events = call.events()
            await test.finish()
            return events

    events = asyncio.run(run())
    change = next(e for e in events if e["event"] == "other")
    assert change["extra"]["codec"] == "g722" and change["extra"]["hold"] is False, change
    pcm, rate = read_wav(tmp_path / "data" / "recordings" / "codec.wav")
    caller = pcm[:, 0].astype(np.float64)
    pcma_part, g722_part = caller[int(0.5 * rate):int(1.8 * rate)], caller[int(2.6 * rate):int(3.8 * rate)]
    assert band_level(g722_part, rate, 5000) > 30 * max(band_level(pcma_part, rate, 5000), 1.0)


def band_level(pcm: np.ndarray, rate: int, hz: float) -> float:
    """The RMS of ``pcm`` within 100 Hz of ``hz``."""
    spectrum = np.fft.rfft(pcm * np.hanning(len(pcm)))
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    band = np.abs(freqs - hz) < 100
    return float(np.sqrt(np.sum(np.abs(spectrum[band]) ** 2)) / len(pcm))


# -- 7. bad input while a call runs -----------------------------------------------------------------------------------
def request(method: str, sip_port: int, local: tuple[str, int], call_id: str, *, transport: str = "UDP",
            extra: str = "", body: str = "", content_length: int | None = None) -> bytes:
    length = len(body.encode()) if content_length is None else content_length
    return (f"{method} sip:bot@127.0.0.1:{sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} {local[0]}:{local[1]};branch=z9hG4bK-{call_id}\r\n"
            f"From: <sip:mallory@pypbx.test>;tag=m-{call_id}\r\n"
            f"To: <sip:bot@pypbx.test>\r\n"
            f"Call-ID: {call_id}@pypbx.test\r\n"
            f"CSeq: 1 {method}\r\n"
            f"Contact: <sip:mallory@{local[0]}:{local[1]}>\r\n"
            f"Max-Forwards: 70\r\n{extra}"
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {length}\r\n\r\n{body}").encode()


OFFER = ("v=0\r\no=mallory 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


async def udp_exchange(sock: socket.socket, data: bytes, sip_port: int, wait: float = 0.5) -> list[bytes]:
    """Send ``data`` to the SIP port; what comes back within ``wait`` seconds."""
    loop = asyncio.get_running_loop()
    sock.sendto(data, ("127.0.0.1", sip_port))
    replies: list[bytes] = []
    deadline = loop.time() + wait
    while (left := deadline - loop.time()) > 0:
        try:
            reply, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65536), left)
        except TimeoutError:
            break
        replies.append(reply)
    return replies


def status_of(reply: bytes) -> tuple[int, str]:
    """The status and the Call-ID of a response."""
    text = reply.decode("latin-1")
    call_id = next((line.split(":", 1)[1].strip() for line in text.split("\r\n")
                    if line.lower().startswith("call-id:")), "")
    return int(text.split(" ", 2)[1]), call_id


async def send_bad_input(sip_port: int) -> tuple[dict[str, list[tuple[int, str]]], bytes, bytes]:
    """Garbage, a truncated INVITE, an oversized one and one with a wrong Content-Length over UDP; over
    TCP an OPTIONS split in pieces then garbage. Returns the UDP responses by case, the TCP response to
    the OPTIONS and what the TCP connection gave after the garbage."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    local = sock.getsockname()
    full = request("INVITE", sip_port, local, "truncated", body=OFFER)
    filler = "".join(f"X-Filler-{i:04d}: {'f' * 48}\r\n" for i in range(1000))     # ~65000 octets, 1000 fields
    oversized = request("INVITE", sip_port, local, "oversized", extra=filler, body=OFFER)
    assert 60000 < len(oversized) < 65507
    cases = {
        "garbage": bytes(range(256)) * 4,
        "truncated": full[:full.index(b"CSeq:") + 3],             # cut inside the header section
        "oversized": oversized,
        "content-length": request("INVITE", sip_port, local, "length", body=OFFER, content_length=len(OFFER) + 100),
    }
    replies: dict[str, list[tuple[int, str]]] = {}
    try:
        for name, data in cases.items():
            replies[name] = [status_of(r) for r in await udp_exchange(sock, data, sip_port)]
    finally:
        sock.close()

    reader, writer = await asyncio.open_connection("127.0.0.1", sip_port)
    try:
        tcp_local = writer.get_extra_info("sockname")
        options = request("OPTIONS", sip_port, tcp_local, "split", transport="TCP")
        for piece in (options[:7], options[7:100], options[100:101], options[101:]):    # split anywhere
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        writer.write(b"\x16\x03\x01\x02\x00garbage on a SIP stream\r\n\r\n")       # a TLS hello and junk
        await writer.drain()
        after = await asyncio.wait_for(reader.read(), 5.0)                          # b"" once it is closed
    finally:
        writer.close()
    return replies, head, after


def test_bad_input_on_the_sip_port_is_refused_and_the_running_call_goes_on(tmp_path: Path) -> None:
    async def run() -> tuple[list[Event], int, dict[str, list[tuple[int, str]]], bytes, bytes, int]:
        async with inbound(tmp_path, "caller_speaks.xml") as test:
            hook = await test.webhook.next_post()
            async with answer_call(test, hook) as call:
                await call.wait_event("incoming")
                await call.send({"command": "accept", "option": SPEECH_OPTION})
                await call.wait_event("speaking", timeout=5.0)
                mark = call.mark()
                replies, head, after = await send_bad_input(test.sip_port)
                await call.wait_event("hangup", timeout=15.0)
                events = call.events()
                since = len([m for m in call.log[:mark] if isinstance(m, dict) and m.get("event") != "ping"])
            await test.finish()
            return events, since, replies, head, after, len(test.webhook.posts)

    events, since, replies, head, after, posts = asyncio.run(run())
    assert replies == {
        "garbage": [],                                            # not SIP: nothing to answer to
        "truncated": [(400, "truncated@pypbx.test")],
        "oversized": [(513, "oversized@pypbx.test")],
        "content-length": [(400, "length@pypbx.test")],
    }
    assert head.startswith(b"SIP/2.0 200 OK\r\n") and b"Call-ID: split@pypbx.test" in head
    assert after == b""                                           # the garbage stream was closed
    assert posts == 1                                             # no bad INVITE became a call
    names = [e["event"] for e in events]
    assert "error" not in names, events
    later = events[since:]
    assert "silence" in [e["event"] for e in later], later        # the speech went on to its end
    assert [e["digit"] for e in later if e["event"] == "dtmf"] == ["1", "5", "7"]
    assert (events[-1]["event"], events[-1]["reason"], events[-1]["initiator"]) == ("hangup", "remote_hangup",
                                                                                      "caller")
