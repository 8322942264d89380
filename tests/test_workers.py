"""Multi-worker mode: the routing rules on their own (sans-I/O), the channel's framing with descriptors,
and a real server with two workers on loopback: WebSocket calls, ``/call/lists``, ``/call/kill``, ids
unique across workers, inbound SIP calls through the webhook and outbound ones, spread over both."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from pbx.server.channel import FrameReader, encode
from pbx.server.routing import GRACE_S, Directory, SipRoutes, call_id_tag, request_target, sip_call_id
from pbx.server.supervisor import port_slice
from tests.support.calls import Call, http
from tests.support.served import ServerProcess, served
from tests.support.sip import SIPP, WebhookReceiver, sipp, sipp_callee
from tests.test_metrics import parse, scrape

INVITE = (b"INVITE sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
          b"From: <sip:a@x>;tag=1\r\nTo: <sip:bot@127.0.0.1>\r\ni:  abc@host \r\nCSeq: 1 INVITE\r\n"
          b"Content-Length: 0\r\n\r\n")


def offer(call_id: str, port: int) -> bytes:
    """An INVITE with a PCMU offer from 127.0.0.1:``port``."""
    sdp = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {port + 2} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    branch = "z9hG4bK" + call_id.split("@")[0]
    return (f"INVITE sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch={branch}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bot@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:{port}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}").encode()


# -- sans-I/O ----------------------------------------------------------------------------------------------------
def test_a_call_id_is_claimed_once_across_workers_and_freed_by_its_owner_only() -> None:
    directory = Directory()
    assert directory.claim("a", 0)
    assert not directory.claim("a", 1)
    directory.release("a", 1)                       # not its owner: nothing happens
    assert directory.owner("a") == 0
    directory.release("a", 0)
    assert directory.owner("a") is None and directory.claim("a", 1)
    directory.claim("b", 1)
    assert directory.counts == {0: 0, 1: 2}
    directory.drop_worker(1)
    assert directory.owner("a") is None and directory.counts[1] == 0


def test_the_request_target_comes_from_the_request_line_once_it_is_whole() -> None:
    assert request_target(b"GET /call/sip?id=d%201&x=2 HTT") is None
    target = request_target(b"GET /call/sip?id=d%201&x=2 HTTP/1.1\r\nHost: a\r\n")
    assert target is not None and (target.path, target.call_id) == ("/call/sip", "d 1")
    kill = request_target(b"POST /call/kill/abc%2Fd HTTP/1.1\r\n")
    assert kill is not None and kill.call_id == "abc/d"
    listing = request_target(b"GET /call/lists HTTP/1.1\r\n")
    assert listing is not None and listing.call_id is None
    garbage = request_target(b"\x16\x03\x01 hello\r\n")       # not HTTP: any worker answers it
    assert garbage is not None and garbage.path == ""
    assert request_target(b"G" * 9000) is not None             # no line end within the limit


def test_sip_messages_go_by_call_id_new_dialogs_to_the_least_busy_and_tagged_ids_home() -> None:
    assert sip_call_id(INVITE) == ("abc@host", True)
    assert sip_call_id(b"SIP/2.0 200 OK\r\nCall-ID: x.w1@h\r\n\r\n") == ("x.w1@h", False)
    assert sip_call_id(b"OPTIONS sip:a SIP/2.0\r\n\r\n") is None
    routes = SipRoutes(2)
    picks = iter([1, 0])
    assert routes.route(INVITE, 0.0, lambda: next(picks)) == 1
    assert routes.route(INVITE.replace(b"INVITE sip", b"BYE sip"), 1.0, lambda: 0) == 1   # remembered
    ours = f"r4nd{call_id_tag(1)}@127.0.0.1".encode()
    assert routes.route(b"SIP/2.0 180 Ringing\r\nCall-ID: " + ours + b"\r\n\r\n", 1.0, lambda: 0) == 1
    assert routes.route(b"SIP/2.0 200 OK\r\nCall-ID: nobody@x\r\n\r\n", 1.0, lambda: 0) is None
    assert routes.owner("x.w7@h") is None               # no such worker


def test_a_remembered_route_lives_while_its_worker_reports_the_session_then_ends_after_the_grace() -> None:
    routes = SipRoutes(2)
    routes.route(INVITE, 0.0, lambda: 0)
    routes.live(0, ["abc@host"], 100.0)               # still a session at 100 s: kept, refreshed
    routes.live(0, [], 100.0 + GRACE_S - 1)
    assert routes.owner("abc@host") == 0
    routes.live(0, [], 100.0 + GRACE_S + 1)
    assert routes.owner("abc@host") is None and len(routes) == 0


def test_each_worker_gets_an_even_aligned_slice_of_the_rtp_ports() -> None:
    assert [port_slice((20000, 30000), i, 3) for i in range(3)] == [(20000, 23332), (23332, 26664),
                                                                      (26664, 29996)]
    with pytest.raises(ValueError):
        port_slice((20000, 20002), 1, 2)


def test_frames_and_their_descriptors_come_out_in_order_however_the_bytes_are_cut() -> None:
    data = encode({"op": "a"}, b"xyz") + encode({"op": "b", "fds": 1}) + encode({"op": "c"}, b"\x00" * 70000)
    reader = FrameReader()
    r, w = os.pipe()
    try:
        frames = []
        for i in range(0, len(data), 7):
            frames += reader.feed(data[i:i + 7], [r] if i == 0 else [])
        assert [(h["op"], len(p), f) for h, p, f in frames] == [("a", 3, []), ("b", 0, [r]), ("c", 70000, [])]
    finally:
        os.close(r)
        os.close(w)


# -- a real server with two workers ----------------------------------------------------------------------------
def two_workers(tmp_path: Path, webhook: str = "", extra: str = "", sip: str = "",
                ) -> contextlib.AbstractAsyncContextManager[ServerProcess]:
    return served(tmp_path, extra, workers=2, sip=sip, webhook=webhook, rtp_ports=(41000, 41200))


def test_websocket_calls_spread_over_two_workers_and_lists_kill_and_ids_span_them(tmp_path: Path) -> None:
    async def run() -> None:
        async with two_workers(tmp_path) as server, \
                Call.open(server.address, "id=alpha&pingInterval=0") as alpha, \
                Call.open(server.address, "id=beta&pingInterval=0") as beta:
            for call in (alpha, beta):
                await call.send({"command": "invite", "option": {"codec": "pcm"}})
                await call.wait_event("answer")
            assert await server.calls_per_worker() == [1, 1]
            status, _, listing = await http(server.address, "GET", "/call/lists")
            assert status == 200 and sorted(c["id"] for c in listing["calls"]) == ["alpha", "beta"]
            async with Call.open(server.address, "id=alpha&pingInterval=0") as again:
                closed = await again.wait_closed()
                assert closed.rcvd is not None and closed.rcvd.code == 1008 and "in use" in closed.rcvd.reason
            status, _, body = await http(server.address, "POST", "/call/kill/beta")
            assert (status, body) == (200, True)
            hangup = await beta.wait_event("hangup")
            assert hangup["reason"] == "killed"
            status, _, body = await http(server.address, "POST", "/call/kill/beta")
            assert status == 404
            await asyncio.sleep(0.2)
            status, _, listing = await http(server.address, "GET", "/call/lists")
            assert [c["id"] for c in listing["calls"]] == ["alpha"]
            async with Call.open(server.address, "id=beta&pingInterval=0") as reused:   # free again
                await reused.send({"command": "invite", "option": {"codec": "pcm"}})
                await reused.wait_event("answer")
            await alpha.send({"command": "hangup"})
            await alpha.wait_event("hangup")
    asyncio.run(run())


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")
def test_inbound_sip_calls_reach_the_worker_holding_their_invite_through_the_webhook(tmp_path: Path) -> None:
    async def run() -> None:
        async with WebhookReceiver.running() as webhook, two_workers(tmp_path, webhook.url) as server, \
                sipp("caller_waits_for_bye.xml", server.sip_port, tmp_path / "sipp1") as first, \
                sipp("caller_waits_for_bye.xml", server.sip_port, tmp_path / "sipp2") as second:
            hooks = [await webhook.next_post(0), await webhook.next_post(1)]
            async with Call.open(server.address, f"id={hooks[0]['dialogId']}&pingInterval=0",
                                 path="/call/sip") as one, \
                    Call.open(server.address, f"id={hooks[1]['dialogId']}&pingInterval=0", path="/call/sip") as two:
                for call in (one, two):
                    await call.wait_event("incoming")
                    await call.send({"command": "accept", "option": {"codec": "pcma"}})
                    await call.wait_event("answer")
                assert await server.calls_per_worker() == [1, 1]
                for call in (one, two):
                    await call.send({"command": "hangup"})
                    await call.wait_event("hangup")
            for run in (first, second):
                result = await run.finish(timeout=10)
                assert result.rc == 0, result.logs
    asyncio.run(run())


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")
def test_outbound_calls_from_both_workers_get_their_answers_by_the_tagged_call_id(tmp_path: Path) -> None:
    async def run() -> None:
        async with two_workers(tmp_path) as server, \
                sipp_callee("callee_answers.xml", tmp_path / "c1") as callee1, \
                sipp_callee("callee_answers.xml", tmp_path / "c2") as callee2, \
                Call.open(server.address, "pingInterval=0", path="/call/sip") as one, \
                Call.open(server.address, "pingInterval=0", path="/call/sip") as two:
            for call, callee in ((one, callee1), (two, callee2)):
                await call.send({"command": "invite", "option": {"caller": "sip:bot@127.0.0.1",
                                                                  "callee": callee.uri, "codec": "pcmu"}})
            for call in (one, two):
                await call.wait_event("answer", timeout=10)
            assert await server.calls_per_worker() == [1, 1]
            tags = {m.headers["Call-ID"].split("@")[0][-3:] for c in (callee1, callee2) for m in c.received()
                    if m.method == "INVITE"}
            assert tags == {call_id_tag(0), call_id_tag(1)}
            for call in (one, two):
                await call.send({"command": "hangup"})
                await call.wait_event("hangup")
            for callee in (callee1, callee2):
                result = await callee.finish(timeout=10)
                assert result.rc == 0, result.logs
    asyncio.run(run())


def test_a_worker_that_dies_is_started_again_and_takes_calls(tmp_path: Path) -> None:
    async def run() -> None:
        async with two_workers(tmp_path) as server:
            before = await server.health()
            pid = server.process.pid
            workers = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            assert len(workers) == 2, workers
            os.kill(int(workers[0]), signal.SIGKILL)
            for _ in range(100):
                await asyncio.sleep(0.1)
                if "starting it again" in "".join(server.log):
                    break
            assert "starting it again" in "".join(server.log)
            for _ in range(100):
                await asyncio.sleep(0.1)
                health = await server.health()
                if health["workers"] == 2:
                    break
            assert health["workers"] == before["workers"] == 2
            async with Call.open(server.address, "pingInterval=0") as call:
                await call.send({"command": "invite", "option": {"codec": "pcm"}})
                await call.wait_event("answer")
    asyncio.run(run())


def test_sigterm_drains_every_worker_then_the_supervisor_exits(tmp_path: Path) -> None:
    """SIGTERM: each worker refuses new calls with 503 while its active call goes on; when the last call
    ends, the workers exit, then the supervisor, with code 0."""
    async def run() -> None:
        async with two_workers(tmp_path, extra="drain_secs = 20\n") as server, \
                Call.open(server.address, "id=one&pingInterval=0") as one, \
                Call.open(server.address, "id=two&pingInterval=0") as two:
            for call in (one, two):
                await call.send({"command": "invite", "option": {"codec": "pcm"}})
                await call.wait_event("answer")
            assert await server.calls_per_worker() == [1, 1]
            server.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            for _ in range(2):                        # whichever worker it reaches, the answer is 503
                with pytest.raises(InvalidStatus) as refused:
                    async with Call.open(server.address, "pingInterval=0"):
                        pass
                assert refused.value.response.status_code == 503
            await one.send({"command": "tts", "text": "still here", "option": {"provider": "espeak"}})
            await one.wait_event("trackEnd", timeout=10)
            assert server.process.returncode is None
            for call in (one, two):
                await call.send({"command": "hangup"})
                assert (await call.wait_event("hangup")).get("reason") != "shutdown"
            await asyncio.wait_for(server.process.wait(), 20)
            assert server.process.returncode == 0
    asyncio.run(run())


def test_the_per_source_rate_of_new_requests_holds_across_workers(tmp_path: Path) -> None:
    """An INVITE flood from one address: the supervisor applies [sip] max_new_requests_per_sec over all
    workers (each worker's own guard sees only its share): one 503, then drops, and the webhook hears
    about one second's worth, not one per worker."""
    async def run() -> tuple[list[bytes], int]:
        async with WebhookReceiver.running() as webhook, \
                two_workers(tmp_path, webhook.url, sip="max_new_requests_per_sec = 10\n") as server:
            flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            flood.bind(("127.0.0.1", 0))
            flood.setblocking(False)
            port = flood.getsockname()[1]
            answers: list[bytes] = []
            for i in range(60):
                flood.sendto(offer(f"flood{i}@x", port), ("127.0.0.1", server.sip_port))
                await asyncio.sleep(0.002)
            await asyncio.sleep(1.0)
            while True:
                try:
                    answers.append(flood.recv(65535))
                except BlockingIOError:
                    break
            flood.close()
            families = parse((await scrape(server.address))[2])
            refused = {labels["cause"]: v for _, labels, v in families["pypbx_sip_refused_total"].samples
                       if labels["worker"] == "supervisor"}
            assert refused["new_requests"] >= 30 and refused["blocks"] == 1, refused
            return answers, len(webhook.posts)

    answers, posts = asyncio.run(run())
    refused = [a for a in answers if a.startswith(b"SIP/2.0 503")]
    assert len(refused) == 1 and b"Retry-After:" in refused[0], answers[:3]
    assert 8 <= posts <= 13, posts        # ~10 (one second's bucket), not ~20 (one per worker)


def test_a_socket_pair_channel_carries_a_connection_to_another_process() -> None:
    """The hand-over itself: a TCP connection accepted here is served by the other end of the channel."""
    from pbx.server.channel import Channel

    async def run() -> bytes:
        listener = socket.create_server(("127.0.0.1", 0))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        got: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        receiver = Channel(theirs, lambda h, p, f: got.set_result(f))
        sender = Channel(ours, lambda h, p, f: None)
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        sender.send_fd({"op": "http"}, accepted)
        assert accepted.fileno() == -1                 # ours is closed once handed over
        fds = await asyncio.wait_for(got, 5)
        served = socket.socket(fileno=fds[0])
        client.sendall(b"ping")
        data = served.recv(4)
        for s in (served, client, listener):
            s.close()
        sender.close()
        receiver.close()
        return data
    assert asyncio.run(run()) == b"ping"

