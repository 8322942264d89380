"""A peer's REFER acted on (``[sip] accept_refer``): we are the transferee (RFC 3515, RFC 5589 blind transfer).

sipp calls in as the transferor (``caller_transfer*.xml``) and, once answered, REFERs the call to a second
sipp, the target (a ``callee_*.xml`` user agent server). The application on the WebSocket only answers;
it sees the REFER and its outcome as ``other`` events while the server calls the target, tells the
transferor in NOTIFY sipfrags, and hands the call's RTP leg to the target.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pbx.server.referred import refer_target
from pbx.sip.errors import SipParseError
from tests.support.calls import Event
from tests.support.sip import SIPP, SipMessage, Sipp, sipp_callee
from tests.test_sip_inbound import accepted_until_hangup, answer_call, inbound

ACCEPT = {"sip_options": {"accept_refer": True}}


def other_events(events: list[Event]) -> list[dict[str, Any]]:
    return [e["extra"] for e in events if e["event"] == "other" and e["sender"] == "sip"]


def requests(run: Sipp, method: str) -> list[SipMessage]:
    return [m for m in run.received() if m.method == method]


def sipfrags(run: Sipp) -> list[str]:
    return [m.body.strip() for m in requests(run, "NOTIFY")]


async def transferred_call(tmp_path: Path, scenario: str, target: Sipp, *, hang_up_after: float | None = None,
                           **options: Any) -> tuple[list[Event], Sipp]:
    """sipp calls in with ``scenario``, REFERring to ``target``; the application accepts the call (PCMA,
    webrtc VAD) and, with ``hang_up_after``, hangs up that long after the REFER's outcome."""
    async with inbound(tmp_path, scenario, keys={"target": target.uri}, **options) as test:
        hook = await test.webhook.next_post()
        async with answer_call(test, hook) as call:
            await call.wait_event("incoming")
            await call.send({"command": "accept", "option": {"codec": "pcma", "vad": {"type": "webrtc"}}})
            if hang_up_after is not None:
                await call.wait(lambda: any("status" in extra for extra in other_events(call.events())),
                                timeout=10.0)
                await asyncio.sleep(hang_up_after)
                await call.send({"command": "hangup"})
            await call.wait_event("hangup", timeout=15.0)
            events = call.events()
        await test.finish()
        return events, test.sipp


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")
def test_an_accepted_refer_calls_the_target_notifies_the_transferor_and_hands_it_the_call(tmp_path: Path) -> None:
    async def run() -> tuple[list[Event], Sipp, Sipp]:
        async with sipp_callee("callee_answers.xml", tmp_path / "target") as target:
            events, transferor = await transferred_call(tmp_path, "caller_transfers.xml", target,
                                                        hang_up_after=2.0, **ACCEPT)
            result = await target.finish()
            assert result.rc == 0, result.logs
            return events, transferor, target

    events, transferor, target = asyncio.run(run())
    extras = other_events(events)
    assert extras[0] == {"method": "REFER", "referTo": f"<{target.uri}>", "accepted": True}
    assert extras[1] == {"method": "REFER", "referTo": target.uri, "status": 200, "reason": "OK"}
    # the transferor heard 202, the progress, and our BYE: its scenario checks each (rc 0)
    assert sipfrags(transferor) == ["SIP/2.0 100 Trying", "SIP/2.0 180 Ringing", "SIP/2.0 200 OK"]
    notify = requests(transferor, "NOTIFY")[-1]
    assert notify.headers["Event"] == "refer" and notify.headers["Subscription-State"].startswith("terminated")
    # the target was called from the call's own RTP port with the call's codec, and heard our BYE
    (invite,) = requests(target, "INVITE")
    assert invite.headers["Referred-By"] == "<sip:alice@pypbx.test>"
    assert "RTP/AVP 8 " in invite.body               # the call's codec (PCMA) first
    assert [m.method for m in target.received() if m.method] == ["INVITE", "ACK", "BYE"]
    # the target's speech (sipp's g711a.pcap) reached the call: VAD heard it, RTP counted it
    names = [e["event"] for e in events]
    assert "speaking" in names[names.index("other"):], events
    hangup = events[-1]
    assert hangup["event"] == "hangup" and hangup["initiator"] == "user", hangup
    assert hangup["extra"]["rtp"]["packetsReceived"] > 50


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")
def test_a_busy_target_is_notified_and_the_call_stays_with_the_transferor(tmp_path: Path) -> None:
    async def run() -> tuple[list[Event], Sipp]:
        async with sipp_callee("callee_rejects.xml", tmp_path / "target") as target:
            events, transferor = await transferred_call(tmp_path, "caller_transfer_fails.xml", target, **ACCEPT)
            assert (await target.finish()).rc == 0
            return events, transferor

    events, transferor = asyncio.run(run())
    extras = other_events(events)
    assert extras[1]["status"] == 486 and extras[1]["reason"] == "Busy Here"
    assert sipfrags(transferor) == ["SIP/2.0 100 Trying", "SIP/2.0 486 Busy Here"]
    assert events[-1]["reason"] == "remote_hangup"          # the transferor's BYE, after the failed transfer


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")
@pytest.mark.parametrize(("target_scenario", "status"), [("callee_answers.xml", 200), ("callee_rejects.xml", 486)])
def test_a_transferor_that_leaves_at_once_hands_the_call_to_the_target(tmp_path: Path, target_scenario: str,
                                                                       status: int) -> None:
    """Blind transfer where the transferor hangs up right after the REFER: its BYE does not end the call,
    which goes on with the target if it answers, and ends (remote_hangup) if it does not. sipp ``-aa``
    answers the NOTIFYs that cross its BYE."""
    async def run() -> list[Event]:
        async with sipp_callee(target_scenario, tmp_path / "target") as target:
            events, _ = await transferred_call(tmp_path, "caller_transfers_and_leaves.xml", target,
                                               hang_up_after=1.0 if status == 200 else None, sipp_args=["-aa"],
                                               **ACCEPT)
            assert (await target.finish()).rc == 0
            return events

    events = asyncio.run(run())
    assert other_events(events)[1]["status"] == status
    if status == 200:
        assert events[-1]["initiator"] == "user" and events[-1]["extra"]["rtp"]["packetsReceived"] > 20
    else:
        assert events[-1]["reason"] == "remote_hangup"


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")
@pytest.mark.parametrize(("target", "options", "why"), [
    ("sip:carol@127.0.0.1:9", {}, "[sip] accept_refer is off"),
    ("sip:carol@127.0.0.1:9?Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2", ACCEPT, "Replaces"),
    ("tel:+15551234567", ACCEPT, "is not a sip: URI"),
])
def test_a_refer_we_do_not_act_on_is_declined_603_and_reported(tmp_path: Path, target: str,
                                                               options: dict[str, Any], why: str) -> None:
    async def run() -> list[Event]:
        async with inbound(tmp_path, "caller_refer_refused.xml", keys={"target": target}, **options) as test:
            return await accepted_until_hangup(test)          # sipp got 603: its scenario requires it

    events = asyncio.run(run())
    (extra,) = other_events(events)
    assert extra["method"] == "REFER" and extra["accepted"] is False and why in extra["refused"], extra
    assert events[-1]["reason"] == "remote_hangup"


def test_refer_target_takes_sip_uris_without_headers() -> None:
    assert str(refer_target('"Carol" <sip:carol@127.0.0.1:5070;transport=udp>')) == \
        "sip:carol@127.0.0.1:5070;transport=udp"
    assert refer_target("<sips:carol@example.test>").scheme == "sips"
    for bad in ("<tel:+15551234567>", "<sip:carol@h?Replaces=x>", "not a uri <"):
        with pytest.raises(SipParseError):
            refer_target(bad)
