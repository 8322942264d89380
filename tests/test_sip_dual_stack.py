"""One server on IPv4 and IPv6 at once (``[sip] addr`` and ``addr6``), with sipp on 127.0.0.1 and ::1.

Inbound, each caller's family decides its call's: Via and Contact, the SDP answer's ``c=`` and the RTP
ports. Outbound, the ``invite`` option ``enableIpv6`` picks IPv6 for the call's signalling and media.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pbx.errors import ProtocolError
from pbx.server.sipcalls import SipCalls
from pbx.sip import sdp as sdpmod
from pbx.sip.config import SipConfig, WebhookConfig
from pbx.sip.offer import offer_is_ipv6
from tests.support.calls import Call, Event, running_server
from tests.support.sip import SIPP, SipMessage, WebhookReceiver, sipp, sipp_callee
from tests.test_sip_inbound import SPEECH_OPTION

DUAL = SipConfig(addr="127.0.0.1:0", addr6="[::1]:0")
needs_sipp = pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")


async def answer_one(address: str, hook: dict[str, Any]) -> tuple[Event, Event]:
    """Accept the call the webhook announced, wait for the caller's speech, hang up."""
    async with Call.open(address, f"id={hook['dialogId']}&pingInterval=0", path="/call/sip") as call:
        await call.wait_event("incoming")
        await call.send({"command": "accept", "option": SPEECH_OPTION})
        answer = await call.wait_event("answer")
        await call.wait_event("speaking", timeout=5.0)          # the caller's RTP reached the leg
        await call.send({"command": "hangup"})
        return answer, await call.wait_event("hangup")


@needs_sipp
def test_callers_over_ipv4_and_ipv6_reach_one_server_each_in_its_own_family(tmp_path: Path) -> None:
    async def run() -> tuple[dict[str, tuple[Event, Event]], dict[str, list[SipMessage]], dict[str, int]]:
        async with WebhookReceiver.running() as webhook, running_server(
                tmp_path / "data", webhook=WebhookConfig(url=webhook.url), sip=DUAL) as (server, address):
            sip = server.sip
            assert sip is not None and sip.address is not None and sip.other is not None
            ports = {"4": sip.address[1], "6": sip.other.address[1]}
            async with sipp("caller_waits_for_bye.xml", ports["4"], tmp_path / "v4") as four, \
                    sipp("caller_waits_for_bye.xml", ports["6"], tmp_path / "v6", host="::1") as six:
                hooks = [await webhook.next_post(0), await webhook.next_post(1)]
                calls = await asyncio.gather(*(answer_one(address, hook) for hook in hooks))
                for caller in (four, six):
                    assert (await caller.finish()).rc == 0
                families = ["6" if "c=IN IP6" in hook["offer"] else "4" for hook in hooks]
                by_family = dict(zip(families, calls, strict=True))
                return by_family, {"4": four.received(), "6": six.received()}, ports

    calls, received, ports = asyncio.run(run())
    assert sorted(calls) == ["4", "6"]
    for family, ours in (("4", "127.0.0.1"), ("6", "::1")):
        answer, hangup = calls[family]
        assert f"c=IN IP{family} {ours}" in answer["sdp"], answer
        assert hangup["extra"]["rtp"]["packetsReceived"] > 0 and hangup["extra"]["rtp"]["packetsSent"] > 0
        (bye,) = [m for m in received[family] if m.method == "BYE"]
        host = f"[{ours}]" if family == "6" else ours
        assert bye.headers["Via"].split()[1].startswith(f"{host}:{ports[family]};"), bye.headers["Via"]


@needs_sipp
@pytest.mark.parametrize("enable_ipv6", [True, False])
def test_enable_ipv6_picks_the_family_of_an_outbound_call(tmp_path: Path, enable_ipv6: bool) -> None:
    host = "::1" if enable_ipv6 else "127.0.0.1"

    async def run() -> tuple[Event, list[SipMessage]]:
        async with running_server(tmp_path / "data", sip=DUAL) as (_, address), \
                sipp_callee("callee_answers.xml", tmp_path / "callee", host=host) as callee, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await call.send({"command": "invite", "option": {
                "callee": callee.uri, "caller": "sip:bot@pypbx.test", "codec": "pcma", "enableIpv6": enable_ipv6,
                "vad": {"type": "webrtc"}}})
            await call.wait_event("answer", timeout=10.0)
            await call.wait_event("speaking", timeout=5.0)       # the callee's RTP reached us in its family
            await call.send({"command": "hangup"})
            hangup = await call.wait_event("hangup")
            assert (await callee.finish()).rc == 0
            return hangup, callee.received()

    hangup, received = asyncio.run(run())
    (invite,) = [m for m in received if m.method == "INVITE"]
    family = "6" if enable_ipv6 else "4"
    assert f"c=IN IP{family} {host}" in invite.body
    assert invite.headers["Contact"].startswith(f"<sip:pypbx@{'[::1]' if enable_ipv6 else '127.0.0.1'}:")
    assert hangup["extra"]["rtp"]["packetsReceived"] > 0


def test_an_offer_s_family_and_a_server_without_it() -> None:
    four = sdpmod.parse(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                        b"m=audio 4000 RTP/AVP 0\r\n")
    six = sdpmod.parse(b"v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                       b"m=audio 4000 RTP/AVP 0\r\nc=IN IP6 ::1\r\n")
    assert not offer_is_ipv6(four) and offer_is_ipv6(six)          # the stream's own c= wins
    calls = SipCalls(SipConfig(addr="127.0.0.1:0"), WebhookConfig())
    assert calls.media_side(False)[0] == "127.0.0.1"
    with pytest.raises(ProtocolError, match="no IPv6 SIP address"):
        calls.media_side(True)
    assert calls.family_for(True) is False          # one family: enableIpv6 cannot pick another
