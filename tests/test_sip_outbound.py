"""Outbound phone calls (``invite`` on ``/call/sip``) against sipp as the callee, over loopback.

Each test runs one sipp scenario of ``tests/fixtures/sipp/callee_*.xml`` as the user agent server and
places the call from a WebSocket client. sipp's exit status says whether the server did what the
scenario waits for (the ACK, the BYE, the CANCEL, the answer to a re-INVITE); its message log
(``-trace_msg``) lets the test read what the server sent (the Request-URI, the headers, the digest).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from pbx.sip.config import SipConfig, Trunk
from tests.support.calls import Call, running_server
from tests.support.sip import SipMessage, Sipp, free_udp_port, sipp_callee

CALLER = "sip:bot@127.0.0.1"
VERIFIER = {"authuser": "bot", "authpass": "s3cret"}    # the credentials sipp checks
pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")


# -- helpers ------------------------------------------------------------------------------------------------
async def passed(sipp: Sipp) -> None:
    """sipp's scenario ran to its end: every message it waits for came, as it wants it."""
    result = await sipp.finish(timeout=10)
    assert result.rc == 0, result.logs


def requests(sipp: Sipp, method: str) -> list[SipMessage]:
    return [m for m in sipp.received() if m.method == method]


def received(sipp: Sipp) -> list[str | int | None]:
    """What sipp received: request methods, response codes."""
    return [m.method or m.status for m in sipp.received()]


async def invite(call: Call, callee: str, **option: Any) -> None:
    await call.send({"command": "invite", "option": {"caller": CALLER, "callee": callee, "codec": "pcmu",
                                                      **option}})


# -- a digest oracle from RFC 7616 (independent of pbx.sip.digest) -----------------------------------------
def digest_fields(value: str) -> dict[str, str]:
    """The parameters of a ``Digest ...`` credentials header, unquoted."""
    scheme, _, rest = value.partition(" ")
    assert scheme.lower() == "digest", value
    pairs = re.findall(r'([A-Za-z0-9_-]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', rest)
    return {name.lower(): quoted or token for name, quoted, token in pairs}


def digest_valid(value: str, method: str, username: str, password: str) -> bool:
    f = digest_fields(value)
    name = {"MD5": "md5", "SHA-256": "sha256"}[f.get("algorithm", "MD5").upper()]

    def h(text: str) -> str:
        return hashlib.new(name, text.encode()).hexdigest()

    ha1 = h(f"{username}:{f['realm']}:{password}")
    ha2 = h(f"{method}:{f['uri']}")
    expected = h(f"{ha1}:{f['nonce']}:{f['nc']}:{f['cnonce']}:{f['qop']}:{ha2}")
    return f["username"] == username and f["response"] == expected


# -- the tests ----------------------------------------------------------------------------------------------
def test_a_callee_rings_answers_speaks_and_gets_our_bye(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_server(tmp_path) as (_, address), \
                sipp_callee("callee_answers.xml", tmp_path) as sipp, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await invite(call, sipp.uri, vad={"type": "webrtc"})
            ringing = await call.wait_event("ringing")
            assert ringing["earlyMedia"] is False
            answer = await call.wait_event("answer")
            assert "m=audio" in answer["sdp"] and "RTP/AVP 8 101" in answer["sdp"]   # sipp's own SDP
            await call.wait_event("speaking", timeout=5)      # the g711a.pcap, decoded from PCMA
            await call.send({"command": "hangup", "reason": "user_requested", "initiator": "user"})
            hangup = await call.wait_event("hangup")
            await passed(sipp)
        assert hangup["reason"] == "user_requested" and hangup["initiator"] == "user"
        assert hangup["from"] == {"username": "bot", "realm": "127.0.0.1", "source": CALLER}
        assert hangup["to"] == {"username": "alice", "realm": "127.0.0.1", "source": sipp.uri}
        assert hangup["startTime"] <= hangup["ringingTime"] <= hangup["answerTime"] <= hangup["hangupTime"]
        assert hangup["extra"]["rtp"]["packetsReceived"] > 0 and hangup["extra"]["rtp"]["packetsSent"] > 0
        names = [e["event"] for e in call.events()]
        assert names.index("ringing") < names.index("answer") < names.index("speaking") < names.index("hangup")
        assert received(sipp) == ["INVITE", "ACK", "BYE"]
        offer = requests(sipp, "INVITE")[0]
        assert offer.uri == sipp.uri and offer.headers.get("Content-Type") == "application/sdp"
        assert "a=rtpmap:0 PCMU/8000" in offer.body and "a=rtpmap:8 PCMA/8000" in offer.body
    asyncio.run(run())


def test_183_with_sdp_is_ringing_with_early_media_then_200_is_the_answer(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_server(tmp_path) as (_, address), \
                sipp_callee("callee_early_media.xml", tmp_path) as sipp, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await invite(call, sipp.uri)
            ringing = await call.wait_event("ringing")
            assert ringing["earlyMedia"] is True
            answer = await call.wait_event("answer")
            assert "RTP/AVP 8 101" in answer["sdp"]
            await call.send({"command": "hangup"})
            hangup = await call.wait_event("hangup")
            await passed(sipp)
        assert received(sipp) == ["INVITE", "ACK", "BYE"]
        # sipp plays its pcap from the 183 on and answers a second later; the hangup follows the answer at
        # once: most of what the leg received is early media (VAD, like the other options, starts at the answer)
        assert hangup["extra"]["rtp"]["packetsReceived"] >= 20
    asyncio.run(run())


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_a_407_challenge_is_answered_with_proxy_authorization_and_the_call_connects(
        tmp_path: Path, algorithm: str) -> None:
    async def run() -> None:
        async with running_server(tmp_path) as (_, address), \
                sipp_callee("callee_challenges.xml", tmp_path, keys={"algorithm": algorithm}) as sipp, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await invite(call, sipp.uri, sip={"username": "bot", "password": "s3cret", "realm": "pbx.test",
                                              "headers": {"X-Account": "42"}})
            await call.wait_event("answer")
            await call.send({"command": "hangup"})
            await call.wait_event("hangup")
            await passed(sipp)
        assert received(sipp) == ["INVITE", "ACK", "INVITE", "ACK", "BYE"]
        first, second = requests(sipp, "INVITE")
        ack = requests(sipp, "ACK")[0]                 # the 407's, from the INVITE transaction (RFC 3261 17.1.1.3)
        assert ack.headers["CSeq"] == "1 ACK" and ack.headers["Via"] == first.headers["Via"]
        assert first.headers.get("Proxy-Authorization") is None
        credentials = second.headers.get("Proxy-Authorization")
        assert credentials is not None
        fields = digest_fields(credentials)
        assert fields["realm"] == "pbx.test" and fields["nonce"] == "5e2f09c4a71b3d86" and fields["qop"] == "auth"
        assert fields["opaque"] == "0f1e2d" and fields["uri"] == sipp.uri
        assert fields.get("algorithm", "MD5").upper() == algorithm
        assert digest_valid(credentials, "INVITE", "bot", "s3cret")
        assert first.headers.get("X-Account") == second.headers.get("X-Account") == "42"
        assert first.headers.get("Call-ID") == second.headers.get("Call-ID")
        assert first.headers.get("CSeq") == "1 INVITE" and second.headers.get("CSeq") == "2 INVITE"
    asyncio.run(run())


def test_a_401_digest_verifies_with_sipp_s_own_verifyauth(tmp_path: Path) -> None:
    """sipp checks the Authorization itself (MD5 only: sipp 3.6's verifyauth knows no SHA-256 and reads
    only ``Authorization``, which is why the 407 test checks the digest with its own oracle)."""
    async def run() -> None:
        async with running_server(tmp_path) as (_, address), \
                sipp_callee("callee_verifies_digest.xml", tmp_path, keys=VERIFIER) as sipp, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await invite(call, sipp.uri, sip={"username": "bot", "password": "s3cret"})
            await call.wait_event("answer")
            await call.send({"command": "hangup"})
            await call.wait_event("hangup")
            await passed(sipp)
        authorization = requests(sipp, "INVITE")[1].headers.get("Authorization")
        assert authorization is not None and digest_valid(authorization, "INVITE", "bot", "s3cret")
    asyncio.run(run())


def test_a_wrong_password_gets_the_callee_s_refusal(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_server(tmp_path) as (_, address), \
                sipp_callee("callee_verifies_digest.xml", tmp_path, keys=VERIFIER) as sipp, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await invite(call, sipp.uri, sip={"username": "bot", "password": "wrong"})
            reject = await call.wait_event("reject")
            hangup = await call.wait_event("hangup")
            assert (await sipp.finish(timeout=10)).rc != 0     # its error action: the digest did not verify
        assert reject["code"] == 403
        assert hangup["reason"] == "rejected"
    asyncio.run(run())


def test_a_busy_callee_is_a_reject_486_and_a_hangup_rejected(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_server(tmp_path) as (_, address), \
                sipp_callee("callee_rejects.xml", tmp_path) as sipp, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await invite(call, sipp.uri)
            reject = await call.wait_event("reject")
            hangup = await call.wait_event("hangup")
            await passed(sipp)      # our ACK of the 486 came
        assert reject["code"] == 486
        assert hangup["reason"] == "rejected" and hangup["initiator"] == "callee"
        assert "answerTime" not in hangup
        assert received(sipp) == ["INVITE", "ACK"]
    asyncio.run(run())


def test_no_answer_within_handshake_timeout_cancels_the_call(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_server(tmp_path) as (_, address), \
                sipp_callee("callee_never_answers.xml", tmp_path) as sipp, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            sent = time.monotonic()
            await invite(call, sipp.uri, handshakeTimeout="2s")
            await call.wait_event("ringing")
            hangup = await call.wait_event("hangup", timeout=5)
            waited = time.monotonic() - sent
            await passed(sipp)      # CANCEL, then the ACK of its 487
        assert hangup["reason"] == "handshake_timeout"
        assert 1.9 <= waited < 3.5
        assert received(sipp) == ["INVITE", "CANCEL", "ACK"]
        invite_, cancel = requests(sipp, "INVITE")[0], requests(sipp, "CANCEL")[0]
        assert cancel.uri == invite_.uri and cancel.headers.get("Call-ID") == invite_.headers.get("Call-ID")
        assert cancel.headers.get("CSeq") == "1 CANCEL"
    asyncio.run(run())


def test_a_callee_that_does_not_exist_ends_the_call_at_handshake_timeout(tmp_path: Path) -> None:
    """Nothing listens on the callee's port: no response ever, the handshake timeout ends the call."""
    async def run() -> dict[str, Any]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await invite(call, f"sip:nobody@127.0.0.1:{free_udp_port()}", handshakeTimeout="1s")
            hangup = await call.wait_event("hangup", timeout=4)
            assert not [e for e in call.events() if e["event"] in ("ringing", "answer")]
            return hangup
    hangup = asyncio.run(run())
    assert hangup["reason"] == "handshake_timeout"


def test_the_callee_s_bye_is_remote_hangup_by_the_callee(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_server(tmp_path) as (_, address), \
                sipp_callee("callee_hangs_up.xml", tmp_path) as sipp, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await invite(call, sipp.uri)
            await call.wait_event("answer")
            hangup = await call.wait_event("hangup", timeout=5)
            await passed(sipp)      # its BYE got our 200
        assert hangup["reason"] == "remote_hangup" and hangup["initiator"] == "callee"
        assert "answerTime" in hangup
    asyncio.run(run())


def test_a_trunk_rewrites_the_number_sends_to_its_proxy_with_its_headers_and_credentials(tmp_path: Path) -> None:
    async def run() -> None:
        async with sipp_callee("callee_challenges.xml", tmp_path, keys={"algorithm": "MD5"}) as sipp:
            trunk = Trunk(name="t", proxy=f"sip:127.0.0.1:{sipp.port}", number_template="sip:{number}@carrier.test",
                          username="trunkuser", password="trunkpass", headers={"X-Trunk": "1"})
            async with running_server(tmp_path, sip=SipConfig(addr="127.0.0.1:0", trunks=(trunk,))) as (_, address), \
                    Call.open(address, "pingInterval=0", path="/call/sip") as call:
                await invite(call, "+15551234567", sip={"headers": {"X-Account": "42"}})
                await call.wait_event("answer")
                await call.send({"command": "hangup"})
                hangup = await call.wait_event("hangup")
                await passed(sipp)
        first, second = requests(sipp, "INVITE")
        assert first.uri == second.uri == "sip:+15551234567@carrier.test"
        assert first.headers.get("To") == "<sip:+15551234567@carrier.test>"
        assert first.headers.get("X-Trunk") == second.headers.get("X-Trunk") == "1"
        assert second.headers.get("X-Account") == "42"
        credentials = second.headers.get("Proxy-Authorization")
        assert credentials is not None and digest_valid(credentials, "INVITE", "trunkuser", "trunkpass")
        assert hangup["to"]["source"] == "+15551234567"
    asyncio.run(run())


def test_a_hold_re_invite_is_answered_recvonly_and_reported(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_server(tmp_path) as (_, address), \
                sipp_callee("callee_holds.xml", tmp_path) as sipp, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await invite(call, sipp.uri)
            answer = await call.wait_event("answer")
            other = await call.wait_event("other", since=call.position(answer), timeout=5)
            await call.send({"command": "hangup"})
            await call.wait_event("hangup")
            await passed(sipp)      # our 200 said a=recvonly
        assert other["sender"] == "sip"
        assert other["extra"] == {"method": "INVITE", "hold": True, "resumed": False, "codec": "pcmu"}
        assert received(sipp) == ["INVITE", "ACK", 200, "BYE"]
        held = sipp.received()[2]
        assert "a=recvonly" in held.body and "a=rtpmap:0 PCMU/8000" in held.body
    asyncio.run(run())


def test_no_rtp_after_the_answer_ends_the_call_with_rtp_timeout_and_a_bye(tmp_path: Path) -> None:
    async def run() -> None:
        config = SipConfig(addr="127.0.0.1:0", rtp_timeout_secs=1.0)
        async with running_server(tmp_path, sip=config) as (_, address), \
                sipp_callee("callee_sends_no_media.xml", tmp_path) as sipp, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await invite(call, sipp.uri)
            answer = await call.wait_event("answer")
            hangup = await call.wait_event("hangup", timeout=5)
            await passed(sipp)      # our BYE came
        assert hangup["reason"] == "rtp_timeout"
        assert 0.9 <= (hangup["timestamp"] - answer["timestamp"]) / 1000 < 3
        assert received(sipp) == ["INVITE", "ACK", "BYE"]
    asyncio.run(run())


def test_refer_mode_sip_sends_a_real_refer_and_its_notify_progress_ends_the_call(tmp_path: Path) -> None:
    """``refer_mode = "sip"``: the peer gets REFER (RFC 3515) and reports its call to the target in
    NOTIFYs; each is an ``other`` event, and the final 200 sipfrag with ``autoHangup`` ends the call."""
    async def run() -> None:
        sip = SipConfig(addr="127.0.0.1:0", refer_mode="sip")
        async with running_server(tmp_path, sip=sip) as (_, address), \
                sipp_callee("callee_transferee.xml", tmp_path) as sipp, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await invite(call, sipp.uri)
            await call.wait_event("answer")
            await call.send({"command": "refer", "caller": CALLER, "callee": "sip:carol@127.0.0.1",
                             "options": {"autoHangup": True}})
            hangup = await call.wait_event("hangup", timeout=10)
            await passed(sipp)
        notices = [e["extra"] for e in call.events() if e["event"] == "other"]
        assert [(n["method"], n["sipfrag"].strip()) for n in notices] == [("NOTIFY", "SIP/2.0 100 Trying"),
                                                                          ("NOTIFY", "SIP/2.0 200 OK")]
        assert hangup["reason"] == "refer"
        assert received(sipp) == ["INVITE", "ACK", "REFER", 200, 200, "BYE"]
        (refer,) = requests(sipp, "REFER")
        assert refer.headers.get("Refer-To") == "<sip:carol@127.0.0.1>"
        assert refer.headers.get("Referred-By") == f"<{CALLER}>"
    asyncio.run(run())
