"""The call record (CDR): real calls on loopback (a /call and a /call/sip call to sipp, both recording)
leave a <call id>.cdr.json next to the recording with the call's times, parties, codecs, RTP quality and
hangup; hostile ids stay inside the recordings folder; a full disk is logged and counted, nothing else."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pbx.server.app import CallServer
from pbx.server.cdr import write_record
from support.audio import tone
from tests.support.calls import RATE, Call, Event, running_server, stream_realtime
from tests.support.faults import can_mount, fill, small_disk
from tests.support.sip import sipp_callee

CALLER = "sip:bot@127.0.0.1"


def epoch_ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def records(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.cdr.json"))


async def hang_up(call: Call, server: CallServer, reason: str = "done") -> Event:
    await call.send({"command": "hangup", "reason": reason, "initiator": "user"})
    hangup = await call.wait_event("hangup")
    await call.wait_closed()
    assert server.cdr is not None
    await server.cdr.wait()
    return hangup


def test_a_websocket_call_leaves_its_record_next_to_its_recording(tmp_path: Path) -> None:
    async def run() -> tuple[Event, Event, int]:
        async with running_server(tmp_path) as (server, address), \
                Call.open(address, "id=ws-1&pingInterval=0") as call:
            await call.send({"command": "invite", "option": {
                "codec": "pcm", "caller": "sip:alice@example.com", "callee": "sip:bot@example.com",
                "recorder": {"recorderFile": "calls/ws-1.wav"}}})
            answer = await call.wait_event("answer")
            await stream_realtime(call, tone(440, RATE, 0.6))
            hangup = await hang_up(call, server)
            port = call.ws.local_address[1]
        return answer, hangup, port

    answer, hangup, port = asyncio.run(run())
    recordings = tmp_path / "recordings"
    assert records(recordings) == [recordings / "calls" / "ws-1.cdr.json"]
    record = json.loads((recordings / "calls" / "ws-1.cdr.json").read_text())
    wav = recordings / "calls" / "ws-1.wav"
    assert record["callId"] == "ws-1" and record["type"] == "websocket"
    times = record["times"]
    assert times["created"] == hangup["startTime"] and times["answered"] == hangup["answerTime"]
    assert times["answeredMs"] == answer["timestamp"]
    assert times["ended"] == hangup["hangupTime"] and times["ringing"] is None
    assert epoch_ms(times["ended"]) == times["endedMs"] and epoch_ms(times["created"]) == times["createdMs"]
    durations = record["durations"]
    assert durations["talkSeconds"] == round((times["endedMs"] - times["answeredMs"]) / 1000, 3) >= 0.4
    assert durations["totalSeconds"] == pytest.approx((times["endedMs"] - times["createdMs"]) / 1000, abs=0.002)
    assert record["hangup"] == {"reason": "done", "initiator": "user"}
    assert record["parties"] == {"from": {"username": "alice", "realm": "example.com", "uri": "sip:alice@example.com"},
                                 "to": {"username": "bot", "realm": "example.com", "uri": "sip:bot@example.com"}}
    assert record["remote"] == {"control": f"127.0.0.1:{port}", "signalling": None, "media": None}
    assert record["codecs"] == {"requested": "pcm", "leg": "pcm", "payloadType": None}
    assert record["rtp"] is None                       # no RTP on a /call
    assert record["recording"] == {"file": "calls/ws-1.wav", "path": str(wav.resolve()),
                                   "bytes": wav.stat().st_size}
    assert record["server"]["pid"] == os.getpid() and record["server"]["worker"] is None


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")
def test_a_sip_call_record_has_codecs_addresses_and_rtcp_quality(tmp_path: Path) -> None:
    async def run() -> tuple[Event, str]:
        async with running_server(tmp_path) as (server, address), \
                sipp_callee("callee_answers.xml", tmp_path) as sipp, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await call.send({"command": "invite", "option": {
                "caller": CALLER, "callee": sipp.uri, "codec": "pcmu", "recorder": {"recorderFile": "sip.wav"},
                "vad": {"type": "webrtc"}}})
            await call.wait_event("answer")
            await call.wait_event("speaking", timeout=5)       # sipp's pcap is flowing
            hangup = await hang_up(call, server, "user_requested")
            await sipp.finish(timeout=10)
            return hangup, sipp.uri

    hangup, uri = asyncio.run(run())
    recordings = tmp_path / "recordings"
    found = records(recordings)
    assert len(found) == 1 and found[0].parent == recordings
    record: dict[str, Any] = json.loads(found[0].read_text())
    assert found[0].name == f"{record['callId']}.cdr.json" and record["callId"] == hangup["trackId"]
    assert record["type"] == "sip"
    assert record["times"]["created"] <= record["times"]["ringing"] <= record["times"]["answered"] \
        <= record["times"]["ended"]
    assert record["durations"]["setupSeconds"] is not None and record["durations"]["talkSeconds"] > 0
    assert record["hangup"] == {"reason": "user_requested", "initiator": "user"}
    assert record["parties"]["to"]["uri"] == uri and record["parties"]["from"]["uri"] == CALLER
    sipp_host_port = uri.split("@", 1)[1]
    assert record["remote"]["signalling"] == sipp_host_port
    assert record["remote"]["media"].startswith("127.0.0.1:")
    assert record["codecs"] == {"requested": "pcmu", "leg": "pcma", "payloadType": 8}   # sipp answers PCMA
    assert record["rtp"] == hangup["extra"]["rtp"] and record["rtp"]["packetsReceived"] > 0
    assert record["recording"]["file"] == "sip.wav" and record["recording"]["bytes"] > 44


def test_hostile_ids_stay_inside_the_recordings_folder(tmp_path: Path) -> None:
    ids = ["../../escaped", "a/b", "..", ".hidden", "same", "same"]

    async def run() -> None:
        async with running_server(tmp_path / "data") as (server, address):
            for call_id in ids:
                # the id as a client sends it: percent-encoded in the query
                query = "id=" + "".join(f"%{b:02X}" for b in call_id.encode()) + "&pingInterval=0"
                async with Call.open(address, query) as call:
                    await call.send({"command": "invite", "option": {
                        "codec": "pcm", "recorder": {"recorderFile": "../../outside.wav"}}})   # refused
                    await call.wait_event("answer")
                    await hang_up(call, server)

    asyncio.run(run())
    recordings = tmp_path / "data" / "recordings"
    found = records(tmp_path)
    assert len(found) == len(ids) and all(p.parent == recordings for p in found)
    assert not any(p.name.startswith(".") for p in found)
    by_id = {json.loads(p.read_text())["callId"]: p.name for p in found if not p.name.startswith("same")}
    assert set(by_id) == set(ids) - {"same"}
    assert sorted(p.name for p in found if p.name.startswith("same")) == ["same-2.cdr.json", "same.cdr.json"]
    assert all(json.loads(p.read_text())["recording"] is None for p in found)


def test_a_record_that_cannot_be_written_raises_oserror_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "rec"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(OSError):
        write_record(blocker, {"callId": "x"}, None)
    assert blocker.read_text() == "a file where the folder should be"


@pytest.mark.skipif(not can_mount(), reason="mounting a small tmpfs needs root (CAP_SYS_ADMIN)")
def test_a_full_disk_is_logged_and_counted_and_the_next_call_is_served(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    with small_disk(tmp_path / "disk", 1 << 20) as disk:
        async def run() -> tuple[Event, int, int]:
            async with running_server(tmp_path, recordings_dir=disk) as (server, address):
                filler = fill(disk, 0)
                async with Call.open(address, "id=full&pingInterval=0") as call:
                    await call.send({"command": "invite", "option": {"codec": "pcm"}})
                    await call.wait_event("answer")
                    hangup = await hang_up(call, server)
                assert server.cdr is not None
                failed = server.cdr.failed
                filler.unlink()
                async with Call.open(address, "id=room&pingInterval=0") as call:
                    await call.send({"command": "invite", "option": {"codec": "pcm"}})
                    await call.wait_event("answer")
                    await hang_up(call, server)
                return hangup, failed, server.cdr.written

        hangup, failed, written = asyncio.run(run())
        assert hangup["reason"] == "done"
        assert failed == 1 and written == 1
        assert [p.name for p in records(disk)] == ["room.cdr.json"]      # no half-written record left
        assert any("call full: cannot write its call record" in r.getMessage() for r in caplog.records)


def test_cdr_false_writes_no_record(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_server(tmp_path, cdr=False) as (server, address), \
                Call.open(address, "id=quiet&pingInterval=0") as call:
            assert server.cdr is None
            await call.send({"command": "invite", "option": {"codec": "pcm", "recorder": {"recorderFile": "q.wav"}}})
            await call.wait_event("answer")
            await call.send({"command": "hangup"})
            await call.wait_event("hangup")
            await call.wait_closed()

    asyncio.run(run())
    assert (tmp_path / "recordings" / "q.wav").is_file() and records(tmp_path) == []
