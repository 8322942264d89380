"""bench/sip_load.py, our SIP load generator: against a real call server on loopback (three 2 s calls
answered, speech both ways), its refusal of any target outside loopback (the classifier only: nothing is
ever sent there), and a 200 OK whose media is elsewhere (the user agent alone, no sockets).

Not a performance assertion: the machine may be busy, so the late-send ratio is not checked here.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pbx.sip.config import SipConfig, WebhookConfig
from pbx.sip.message import Request, Response, parse_message, response_to
from support.audio import tone, write_wav
from tests.support.calls import Call, Event, running_server
from tests.support.sip import WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import sip_load  # noqa: E402

CALLS = 3
HOLD_S = 2.0
PROMPT = "prompt.wav"


def write_prompt(media: Path, seconds: float) -> None:
    media.mkdir(parents=True)
    write_wav(media / PROMPT, tone(440.0, 16000, seconds, 0.3), 16000)


async def answer(address: str, hook: dict[str, Any]) -> list[Event]:
    """The application's side of one call: accept with PCMA, play the prompt, wait for the caller's BYE."""
    async with Call.open(address, f"id={hook['dialogId']}&pingInterval=0", path="/call/sip") as call:
        await call.wait_event("incoming")
        await call.send({"command": "accept", "option": {"codec": "pcma"}})
        await call.wait_event("answer")
        await call.send({"command": "play", "url": PROMPT})
        await call.wait_event("hangup", timeout=15.0)
        return call.events()


def test_calls_are_answered_and_carry_audio_both_ways(tmp_path: Path) -> None:
    write_prompt(tmp_path / "data" / "media", HOLD_S + 2.0)

    async def run() -> tuple[sip_load.LoadReport, list[list[Event]]]:
        async with WebhookReceiver.running() as receiver, \
                running_server(tmp_path / "data", webhook=WebhookConfig(url=receiver.url),
                               sip=SipConfig(addr="127.0.0.1:0")) as (server, address):
            assert server.sip is not None and server.sip.address is not None
            spec = sip_load.LoadSpec("127.0.0.1", server.sip.address[1], calls=CALLS, rate=10.0, hold_s=HOLD_S)
            load = await sip_load.SipLoad.start(spec)
            hooks = [await receiver.next_post(i, timeout=10.0) for i in range(CALLS)]
            apps = await asyncio.gather(*(answer(address, hook) for hook in hooks))
            return await load.finish(), apps

    report, apps = asyncio.run(run())
    assert (report.answered, report.failures) == (CALLS, {}), report.summary()
    assert len(report.setup_ms) == CALLS and all(0.0 < ms < 5000.0 for ms in report.setup_ms), report.setup_ms
    expected = round(HOLD_S / sip_load.FRAME_S)
    assert report.rtp_sent == [expected] * CALLS, report.summary()
    assert all(n > expected // 2 for n in report.rtp_received), report.summary()     # the prompt came back
    assert report.stray_rtp == 0 and report.refused == 0 and report.sip_bad == 0, report.summary()
    assert report.requests_unanswered == 0, report.summary()                         # every BYE got its 200
    assert report.cpu_s > 0.0 and report.packets_sent == CALLS * expected
    for events in apps:
        names = [e["event"] for e in events]
        assert "error" not in names, events
        hangup = events[-1]
        assert (hangup["event"], hangup["reason"], hangup["initiator"]) == ("hangup", "remote_hangup", "caller")
        rtp = hangup["extra"]["rtp"]
        assert rtp["packetsReceived"] >= 0.9 * expected, rtp                        # our RTP reached the leg
        assert rtp["packetsSent"] > expected // 2, rtp


@pytest.mark.parametrize("target", ["192.0.2.1:5060", "10.0.0.1:5060", "0.0.0.0:5060", "[2001:db8::1]:5060",
                                    "[::]:5060", "[::ffff:192.0.2.1]:5060", "localhost:5060", "example.com:5060"])
def test_a_target_outside_loopback_is_refused(target: str) -> None:
    with pytest.raises(sip_load.NotLoopback, match="loopback"):
        sip_load.parse_target(target)


def test_loopback_targets_are_taken() -> None:
    assert sip_load.parse_target("127.0.0.1:5060") == ("127.0.0.1", 5060)
    assert sip_load.parse_target("127.3.2.1:7") == ("127.3.2.1", 7)
    assert sip_load.parse_target("[::1]:5070") == ("::1", 5070)
    for bad in ("127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "::1:5060", "127.0.0.1:x"):
        with pytest.raises(ValueError):
            sip_load.parse_target(bad)


def test_the_command_line_and_the_spec_refuse_a_remote_target(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        sip_load.parse_args(["192.0.2.1:5060"])
    assert exit_info.value.code == 2
    assert "192.0.2.1 is not a loopback address" in capsys.readouterr().err
    with pytest.raises(sip_load.NotLoopback):
        sip_load.LoadSpec("192.0.2.1", 5060)


def test_an_answer_with_media_outside_loopback_is_hung_up_without_rtp() -> None:
    """Sans-I/O: the 200 OK's SDP names 192.0.2.1; the call is ACKed and ended with BYE, both to the
    loopback SIP peer, and no RTP stream is started."""
    spec = sip_load.LoadSpec("127.0.0.1", 5060, calls=1, rate=1.0, hold_s=1.0)
    ua = sip_load.UserAgent("127.0.0.1", 5062)
    calls = sip_load.Calls(spec, ua, 6000, [sip_load.prepare_stream(spec, 0, frames=10)], t0=0.0)
    calls.handle_time(0.0)
    [(data, addr)] = calls.datagrams()
    invite = parse_message(data)
    assert isinstance(invite, Request) and addr == ("127.0.0.1", 5060)
    ok: Response = response_to(invite, 200, "OK", to_tag="srv")
    ok.headers.add("Contact", "<sip:bench@127.0.0.1:5060>")
    ok.headers.add("Content-Type", "application/sdp")
    ok.body = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
               b"m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")
    calls.receive(parse_message(ok.serialize()), addr, 0.1)
    sent = [(parse_message(d), a) for d, a in calls.datagrams()]
    assert [(m.method, a) for m, a in sent if isinstance(m, Request)] == [("ACK", addr), ("BYE", addr)]
    record = calls.records[0]
    assert record.failure.startswith("bad answer: 192.0.2.1 is not a loopback address"), record.failure
    assert record.stream is None and calls.started == [] and calls.all_over()


# -- the batched RTP path: pbx.core.udp.send_batch / RecvBatch.count_sources and RtpSender's packets ----------

def loopback_udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


def test_send_batch_sends_each_slice_to_its_port_and_count_sources_counts_by_port() -> None:
    from pbx.core.udp import RecvBatch, send_batch
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(loopback_udp())
        sinks = [stack.enter_context(loopback_udp()) for _ in range(3)]
        ports = np.array([sinks[i % 3].getsockname()[1] for i in range(200)], np.int32)     # > one sendmmsg
        packets = np.arange(200 * 4, dtype=np.uint32).astype(np.uint8)
        assert send_batch(src.fileno(), packets, 4, "127.0.0.1", ports) == 200
        got = [drain(s) for s in sinks]
        assert [len(g) for g in got] == [67, 67, 66]
        assert got[1][0] == bytes(packets[4:8]) and got[0][1] == bytes(packets[12:16])
        with pytest.raises(ValueError, match="need 804 bytes"):
            send_batch(src.fileno(), packets, 4, "127.0.0.1", np.append(ports, ports[0]).astype(np.int32))
        counts = np.zeros(65536, np.int64)
        for i, s in enumerate(sinks):
            for _ in range(i + 1):
                s.sendto(b"x", src.getsockname())
        assert RecvBatch().count_sources(src.fileno(), counts) == 6
        assert [int(counts[s.getsockname()[1]]) for s in sinks] == [1, 2, 3] and counts.sum() == 6


def test_rtp_sender_sends_each_call_its_schedule_with_right_headers() -> None:
    spec = sip_load.LoadSpec("127.0.0.1", 5060, calls=4, rate=10.0, hold_s=0.3, loss=0.2, jitter_ms=30.0,
                             codec="pcmu")
    frames = [bytes([i]) * 160 for i in range(7)]
    streams = [sip_load.prepare_stream(spec, call, len(frames)) for call in range(spec.calls)]
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(loopback_udp())
        sinks = [stack.enter_context(loopback_udp()) for _ in streams]
        sender = sip_load.RtpSender(streams, frames, src.fileno(), "127.0.0.1")
        start = time.monotonic()
        for stream, sink in zip(streams, sinks, strict=True):
            stream.dest, stream.payload_type, stream.start = sink.getsockname(), 0, start
            sender.start(stream)
        sender.stop(streams[3])                                 # hung up before any packet: none sent
        while (due := sender.next_due()) is not None:
            time.sleep(max(0.0, due - time.monotonic()))
            sender.send_due()
        for stream, sink in zip(streams, sinks, strict=True):
            got = drain(sink)
            if stream.call == 3:
                assert got == []
                continue
            assert len(got) == len(stream.numbers) < round(spec.hold_s / sip_load.FRAME_S)    # 20 % dropped
            assert int(sender.sent_per_call[stream.call]) == len(got)
            for packet, k in zip(got, stream.numbers, strict=True):        # in the schedule's (jittered) order
                flags, marker_pt, seq, ts, ssrc = sip_load.RTP_HEADER.unpack(packet[:12])
                assert (flags, marker_pt & 0x7F, ssrc) == (0x80, 0, stream.ssrc)
                assert marker_pt >> 7 == (k == 0)
                assert seq == (stream.seq0 + k) & 0xFFFF and ts == (stream.ts0 + 160 * k) & 0xFFFFFFFF
                assert packet[12:] == frames[(stream.first_frame + k) % len(frames)]
    assert sender.sent == sum(len(s.numbers) for s in streams[:3]) and sender.errors == 0
