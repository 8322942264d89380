"""What a hostile client tried on /call (issue 9), each as a test: the call goes on, the server holds.

The short cases run in ``make test``; the long ones (thousands of idle connections, churn, memory
bombs measured by RSS) are marked ``hostile`` and run with ``make hostile``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.calls import LOOPBACK_SIP, Call, Event, RawWebSocket, http, probe, running_server

CALL_ID = "hostile"


def invite(**option: Any) -> dict[str, Any]:
    return {"command": "invite", "option": {"codec": "pcm", **option}}


async def probe_reply(call: Call, since: int, tag: str = "probe") -> list[Event]:
    """What arrived from ``since`` up to the reply of a probe (a 20 ms base64 track), probe left out."""
    await call.send(probe(tag))
    end = await call.wait_event("trackEnd", since, timeout=10.0, playId=tag)
    return [e for e in call.events(since, call.position(end) + 1) if e.get("playId") != tag]


@contextlib.asynccontextmanager
async def answered_call(tmp_path: Path, **config: Any) -> AsyncIterator[tuple[Call, int, str]]:
    """A server, and one call on it answered; yields the call, the log position after its answer and
    the server's address."""
    async with running_server(tmp_path, **config) as (_, address), \
            Call.open(address, f"id={CALL_ID}&pingInterval=0&dump=false") as call:
        await call.send(invite())
        answer = await call.wait_event("answer")
        yield call, call.position(answer) + 1, address


def errors(events: list[Event]) -> list[tuple[str, str]]:
    return [(e["sender"], e["error"]) for e in events if e["event"] == "error"]


# -- commands that used to close the socket or misbehave --------------------------------------------
def test_a_deep_recorder_path_is_an_error_not_a_closed_socket(tmp_path: Path) -> None:
    async def run() -> tuple[list[Event], list[Event]]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0&dump=false") as call:
            await call.send(invite(recorder={"recorderFile": "d/" * 2000 + "x.wav"}))
            answer = await call.wait_event("answer")
            first = await probe_reply(call, call.position(answer) + 1, "p1")
            await call.send(invite(recorder={"recorderFile": "d/" * 40 + "x.wav"}))   # refused: answered
            mark = call.mark()
            second = await probe_reply(call, mark, "p2")
            return first, second

    first, _ = asyncio.run(run())
    assert errors(first) == [("recorder", "recorderFile is 4005 characters long; at most 1024 are allowed")]
    assert not list((tmp_path / "recordings").rglob("*.wav"))


def test_a_recorder_path_too_deep_is_refused_before_any_folder_is_made(tmp_path: Path) -> None:
    async def run() -> list[Event]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0&dump=false") as call:
            await call.send(invite(recorder={"recorderFile": "d/" * 40 + "x.wav"}))
            answer = await call.wait_event("answer")
            return await probe_reply(call, call.position(answer) + 1)

    assert errors(asyncio.run(run())) == [
        ("recorder", "cannot record to " + "d/" * 40 + "x.wav: 40 folders deep; at most 32 are allowed")]
    # no folder made; the call's record (CDR) lies at the top of the recordings folder, as for any call
    assert [p.name for p in (tmp_path / "recordings").iterdir()] in ([], [f"{CALL_ID}.cdr.json"])


def test_max_calls_reached_is_an_error_naming_the_limit_and_leaves_no_file(tmp_path: Path) -> None:
    async def run() -> tuple[list[Event], list[Event]]:
        async with running_server(tmp_path, max_calls=1) as (_, address), \
                Call.open(address, "id=first&pingInterval=0&dump=false") as first, \
                Call.open(address, "id=second&pingInterval=0&dump=false") as second:
            await first.send(invite())
            await first.wait_event("answer")
            await second.send(invite(recorder={"recorderFile": "second.wav"}))
            await second.wait_event("error")
            await second.send({"command": "hangup", "reason": "gave up"})
            await second.wait_event("hangup")
            return second.events(), first.events()

    second, first = asyncio.run(run())
    assert [e["event"] for e in second] == ["error", "hangup"]
    assert errors(second) == [("media", "cannot start the call's media: the server is at its limit of 1 "
                                        "concurrent calls (max_calls)")]
    assert (second[-1]["reason"], second[-1]["initiator"]) == ("gave up", "user")
    assert not (tmp_path / "recordings" / "second.wav").exists()
    assert [e["event"] for e in first] == ["answer"]


def test_a_negative_wait_input_timeout_is_an_error(tmp_path: Path) -> None:
    async def run() -> list[Event]:
        async with answered_call(tmp_path) as (call, mark, _):
            await call.send({**probe("neg"), "waitInputTimeout": -1})
            await call.send({"command": "play", "url": "x.wav", "waitInputTimeout": -0.5})
            await asyncio.sleep(0)
            return await probe_reply(call, mark)

    assert errors(asyncio.run(run())) == [
        ("command", "tts.waitInputTimeout: must not be negative, got -1"),
        ("command", "play.waitInputTimeout: must not be negative, got -0.5"),
    ]


# -- files ---------------------------------------------------------------------------------------------
FULL_DISK = """
import json, resource, signal, sys
from pathlib import Path
from pbx.protocol import RecorderOption
from pbx.server.recording import RecordingError, create_recording
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
base = Path(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))   # every write fails: a full disk
try:
    create_recording(base, RecorderOption(recorder_file="calls/full.wav"))
    print(json.dumps({"error": None}))
except RecordingError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def test_a_full_disk_leaves_no_empty_recording(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True, text=True,
                         check=True)
    error = json.loads(out.stdout)["error"]
    assert error is not None and error.startswith("cannot record to calls/full.wav: ")
    assert "File too large" in error
    assert not (tmp_path / "calls" / "full.wav").exists()


# -- liveness and idle connections -----------------------------------------------------------------------
def test_a_tiny_ping_interval_is_clamped(tmp_path: Path) -> None:
    async def run() -> int:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0.001&dump=false") as call:
            await asyncio.sleep(1.0)
            return len([e for e in call.events(pings=True) if e["event"] == "ping"])

    assert asyncio.run(run()) <= 5      # at most one per 0.2 s, not ~1000


@pytest.mark.parametrize("ping", ["0", "-5"])
def test_a_client_that_stops_answering_is_removed_whatever_its_ping_interval(tmp_path: Path, ping: str) -> None:
    """Ping events off (0, -5): WebSocket pings at the liveness interval still find a client that
    stopped answering. (inf and nan mean the default interval: tests/test_call_core.py.)"""
    async def run() -> tuple[list[Event], int]:
        async with running_server(tmp_path, liveness_interval_secs=0.2) as (_, address):
            raw = await RawWebSocket.connect(address, f"/call?id={CALL_ID}&pingInterval={ping}&dump=false")
            texts: list[Event] = []
            while True:
                opcode, payload = await raw.read_frame(timeout=5.0)
                if opcode == 0x1:
                    texts.append(json.loads(payload))
                if opcode == 0x8:
                    break
            raw.close()
            return texts, raw.pings

    texts, pings = asyncio.run(run())
    assert pings == 2
    assert [(e["event"], e.get("reason")) for e in texts] == [("hangup", "ping_timeout")]


def test_a_connection_that_never_sends_invite_is_closed(tmp_path: Path) -> None:
    async def run() -> tuple[list[Event], int, Any]:
        async with running_server(tmp_path, invite_timeout_secs=0.3) as (_, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0&dump=false") as call:
            closed = await call.wait_closed(timeout=3.0)
            listed = await http(address, "GET", "/call/lists")
            return call.events(), closed.rcvd.code if closed.rcvd else 0, listed[2]

    events, code, listed = asyncio.run(run())
    assert [(e["event"], e["reason"], e["initiator"]) for e in events] == [("hangup", "handshake_timeout", "system")]
    assert code == 1000 and listed == {"calls": []}


def test_ping_interval_values() -> None:
    from pbx.server.driver import ping_interval
    assert [ping_interval(v) for v in ("0.001", "0", "-5", "inf", "nan", "x", "1e9", "2.5")] == [
        0.2, 0.0, 0.0, 20.0, 20.0, 20.0, 3600.0, 2.5]


# -- capacity and descriptors ---------------------------------------------------------------------------
def test_connections_beyond_max_connections_get_503(tmp_path: Path) -> None:
    async def run() -> tuple[int, str, Any]:
        async with running_server(tmp_path, max_connections=2) as (_, address), \
                Call.open(address, "id=a&pingInterval=0&dump=false") as a, \
                Call.open(address, "id=b&pingInterval=0&dump=false"):
            await a.send(invite())
            await a.wait_event("answer")
            host, port = address.rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"GET /call?id=c HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n".encode())
            raw = await asyncio.wait_for(reader.read(), 5.0)
            writer.close()
            head, _, body = raw.partition(b"\r\n\r\n")
            status = int(head.split()[1])
            content_type = next(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                                if line.lower().startswith(b"content-type:"))
            return status, content_type, json.loads(body)

    status, content_type, body = asyncio.run(run())
    assert (status, content_type) == (503, "application/json")
    assert body == {"error": "the server has its maximum of 2 connections (max_connections); try again later"}


SERVER_LIMITS = """
import resource, runpy, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (48, 96))   # soft 48: the server must raise it to 96
sys.argv = ["pypbx", "serve", "--config", sys.argv[1]]
runpy.run_module("pbx", run_name="__main__")
"""


def test_out_of_descriptors_the_server_sheds_connections_quietly_and_recovers(tmp_path: Path) -> None:
    """With 96 descriptors, 200 connections at once: the soft limit was raised to the hard one, the
    connections past the limit are closed at once, the log gets a warning (not a traceback per
    accept), the server does not spin, and once they are gone a call works."""
    config = tmp_path / "pypbx.toml"
    config.write_text(f'http_addr = "127.0.0.1:0"\ndata_dir = "{tmp_path}"\nlog_level = "info"\n'
                      '[sip]\naddr = "127.0.0.1:0"\n')
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-c", SERVER_LIMITS, str(config)], stdout=log_file,
                                stderr=subprocess.STDOUT)
    try:
        address = wait_for_address(log_path)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        assert re.search(r"Max open files\s+96\s+96", limits), limits

        async def flood() -> tuple[float, bool]:
            host, port = address.rsplit(":", 1)
            conns = []
            for _ in range(200):
                try:
                    conns.append(await asyncio.open_connection(host, int(port)))
                except OSError:
                    break
            before = process_cpu_s(proc.pid)
            await asyncio.sleep(3.0)
            cpu = process_cpu_s(proc.pid) - before
            for _, writer in conns:
                writer.close()
            await asyncio.sleep(0.5)
            async with Call.open(address, "id=after&pingInterval=0&dump=false") as call:
                await call.send(invite())
                await call.wait_event("answer")
            return cpu, True

        cpu, answered = asyncio.run(flood())
        assert answered
        assert cpu < 0.5          # out of descriptors, the server waits rather than spins
    finally:
        proc.terminate()
        proc.wait(10)
    log = log_path.read_text()
    assert "out of file descriptors" in log
    assert "socket.accept() out of system resource" not in log
    assert len(log.splitlines()) < 40, log[-3000:]


def wait_for_address(log_path: Path) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = re.search(r"listening on (\S+:\d+)", log_path.read_text())
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise AssertionError(f"the server did not start: {log_path.read_text()}")


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- access ------------------------------------------------------------------------------------------------
async def request(address: str, method: str, target: str, headers: dict[str, str] | None = None
                  ) -> tuple[int, dict[str, str], Any]:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    headers = {"Connection": "close", **(headers or {})}
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: {address}\r\n{extra}Content-Length: 0\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
    head = raw[:-4]
    lines_ = head.decode("latin-1").split("\r\n")
    length = int(next((v for k, _, v in (line.partition(":") for line in lines_[1:])
                       if k.strip().lower() == "content-length"), "0"))
    body = await reader.readexactly(length) if length else b""
    writer.close()
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines_[1:])}
    return int(lines_[0].split()[1]), fields, json.loads(body) if body else None


REST = [("GET", "/call/lists"), ("POST", "/call/kill/nobody"), ("GET", "/iceservers"), ("GET", "/health")]


def test_off_loopback_every_endpoint_needs_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """No configuration, listening on 0.0.0.0 (the traffic stays on 127.0.0.1): a token is generated,
    kept in data_dir/api-token, required by every REST endpoint (401) and WebSocket (closed with 1008),
    accepted as a Bearer header or a token parameter, and never logged."""
    from websockets.asyncio.client import connect

    from pbx.config import Config
    from pbx.server.app import CallServer
    monkeypatch.delenv("PYPBX_API_TOKEN", raising=False)
    caplog.set_level("DEBUG")

    async def run() -> dict[str, Any]:
        server = CallServer(Config(data_dir=tmp_path, sip=LOOPBACK_SIP))
        _, port = await server.start(host="0.0.0.0", port=0)
        address = f"127.0.0.1:{port}"
        token = (tmp_path / "api-token").read_text().strip()
        out: dict[str, Any] = {"token": token}
        try:
            out["rest"] = [await request(address, m, p) for m, p in REST]
            out["rest_wrong"] = [await request(address, m, p, {"Authorization": "Bearer nope"}) for m, p in REST]
            out["rest_bearer"] = [await request(address, m, p, {"Authorization": f"Bearer {token}"}) for m, p in REST]
            out["rest_query"] = [await request(address, m, f"{p}?token={token}") for m, p in REST]
            closes = []
            for path in ("/call", "/call/sip", "/call/webrtc"):
                async with connect(f"ws://{address}{path}?pingInterval=0") as ws:
                    await ws.wait_closed()
                    closes.append((ws.close_code, ws.close_reason))
            out["ws"] = closes
            async with connect(f"ws://{address}/call?id=a&pingInterval=0",
                               additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                await ws.send(json.dumps(invite()))
                out["ws_bearer"] = json.loads(await ws.recv())["event"]
            async with connect(f"ws://{address}/call?id=b&pingInterval=0&token={token}") as ws:
                await ws.send(json.dumps(invite()))
                out["ws_query"] = json.loads(await ws.recv())["event"]
            out["dump"] = "".join(p.read_text() for p in (tmp_path / "dumps").glob("*.jsonl"))
        finally:
            await server.stop()
        return out

    out = asyncio.run(run())
    assert len(out["token"]) >= 32 and (tmp_path / "api-token").stat().st_mode & 0o777 == 0o600
    for status, fields, body in out["rest"] + out["rest_wrong"]:
        assert (status, body) == (401, {"error": "missing or wrong API token"})
        assert fields["www-authenticate"].startswith("Bearer")
    for rows in (out["rest_bearer"], out["rest_query"]):
        assert [status for status, _, _ in rows] == [200, 404, 200, 200]
    assert out["ws"] == [(1008, "missing or wrong API token")] * 3
    assert out["ws_bearer"] == out["ws_query"] == "answer"
    server_log = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("websockets.client"))
    assert "Authorization: Bearer ***" in server_log       # websockets' debug lines, masked
    assert out["token"] not in server_log and out["token"] not in out["dump"]


def test_a_browser_page_from_another_origin_is_refused(tmp_path: Path) -> None:
    async def run() -> list[int]:
        async with running_server(tmp_path, allowed_origins=["https://app.example"]) as (_, address):
            upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                       "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
            evil = await request(address, "GET", "/call", {**upgrade, "Origin": "http://evil.example"})
            kill = await request(address, "POST", "/call/kill/x", {"Origin": "http://evil.example"})
            good = await request(address, "GET", "/call", {**upgrade, "Origin": "https://app.example"})
            plain = await request(address, "GET", "/call", upgrade)      # no Origin: not a browser
            return [evil[0], kill[0], good[0], plain[0]]

    assert asyncio.run(run()) == [403, 403, 101, 101]


def test_the_server_s_own_page_is_its_own_origin_on_an_address_but_not_on_a_host_name() -> None:
    """The console's requests carry Origin http://<the Host they went to>; a DNS-rebound host name does
    not count as the server's own."""
    from pbx.server.auth import AccessPolicy, same_origin
    policy = AccessPolicy(None)
    for origin, host, allowed in (("http://127.0.0.1:8080", "127.0.0.1:8080", True),
                                  ("https://[::1]:8443", "[::1]:8443", True),
                                  ("http://localhost:8080", "localhost:8080", True),
                                  ("http://127.0.0.1:8080", "127.0.0.1:9090", False),     # another port
                                  ("http://rebound.example:8080", "rebound.example:8080", False),
                                  ("http://evil.example", "127.0.0.1:8080", False)):
        assert same_origin(origin, host) is allowed, (origin, host)
        refusal = policy.refuse("/call", {"Origin": origin, "Host": host})
        assert (refusal is None) is allowed
    assert same_origin("http://127.0.0.1:8080", None) is False


def test_the_token_rules() -> None:
    from pbx.server.auth import AccessPolicy, choose_token, is_loopback
    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "[::1]", "localhost", "0.0.0.0", "::", "10.1.2.3")] == [
        True, True, True, True, False, False, False]
    policy = AccessPolicy("s3cret")
    assert policy.refuse("/call?token=s3cret", {}) is None
    assert policy.refuse("/call", {"Authorization": "bearer s3cret"}) is None
    assert policy.refuse("/call?token=s3cre", {}) is not None
    assert policy.refuse("/call", {"Authorization": "Basic s3cret"}) is not None
    assert AccessPolicy(None).refuse("/call", {}) is None
    env = {"PYPBX_API_TOKEN": "from-env"}
    assert choose_token("auto", "127.0.0.1", "cfg", env, Path("/nonexistent")).token is None
    assert choose_token("none", "0.0.0.0", "cfg", env, Path("/nonexistent")).token is None
    assert choose_token("token", "127.0.0.1", "cfg", env, Path("/nonexistent")).token == "from-env"
    assert choose_token("auto", "0.0.0.0", "cfg", {}, Path("/nonexistent")).token == "cfg"


# -- play is not an open proxy ------------------------------------------------------------------------------
def test_the_address_classifier() -> None:
    from pbx.media.netpolicy import AddressPolicy, classify
    cases = {"127.0.0.1": "loopback", "10.1.2.3": "private", "192.168.0.9": "private", "172.16.0.1": "private",
             "169.254.169.254": "link-local", "224.0.0.1": "multicast", "0.0.0.0": "unspecified",
             "240.0.0.1": "reserved", "100.64.0.1": "non-public", "::1": "loopback", "fe80::1": "link-local",
             "fc00::1": "private", "::ffff:169.254.169.254": "link-local", "::": "unspecified",
             "8.8.8.8": None, "2606:4700::1111": None, "::ffff:8.8.8.8": None}
    import ipaddress
    assert {a: classify(ipaddress.ip_address(a)) for a in cases} == cases
    policy = AddressPolicy(["10.0.0.0/8", "fd00::/8"])
    assert policy.refusal("10.9.9.9") is None and policy.refusal("::ffff:10.0.0.1") is None
    assert policy.refusal("fd12::1") is None and policy.refusal("192.168.1.1") == "private"
    assert AddressPolicy().refusal("127.0.0.1") == "loopback"


@contextlib.asynccontextmanager
async def audio_server(host: str, routes: dict[str, bytes]) -> AsyncIterator[tuple[int, list[str]]]:
    """An HTTP server on a loopback address; yields its port and the paths it was asked for."""
    asked: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1].decode()
        asked.append(path)
        writer.write(routes.get(path, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, host, 0)
    try:
        yield server.sockets[0].getsockname()[1], asked
    finally:
        server.close()


def wav_response() -> bytes:
    import io
    import wave
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x10\x00" * 1600)
    body = buffer.getvalue()
    return b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def redirect_to(url: str) -> bytes:
    return f"HTTP/1.1 302 Found\r\nLocation: {url}\r\nContent-Length: 0\r\n\r\n".encode()


def test_play_refuses_loopback_and_its_redirects_and_connects_to_the_address_it_checked(tmp_path: Path) -> None:
    from pbx.errors import MediaError
    from pbx.media.loader import MediaLoader

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with audio_server("127.0.0.1", {"/a.wav": wav_response()}) as (port, asked), \
                audio_server("127.0.0.2", {"/b.wav": wav_response()}) as (port2, asked2):
            strict = MediaLoader(tmp_path)
            try:
                await strict.load(f"http://127.0.0.1:{port}/a.wav")
            except MediaError as exc:
                out["direct"] = str(exc)
            out["asked_direct"] = list(asked)
            one = MediaLoader(tmp_path, allow_networks=["127.0.0.1/32"])
            async with audio_server("127.0.0.1", {"/r": redirect_to(f"http://127.0.0.2:{port2}/b.wav")}) as (
                    port3, asked3):
                try:
                    await one.load(f"http://127.0.0.1:{port3}/r")
                except MediaError as exc:
                    out["redirect"] = str(exc)
                out["asked_redirect"] = (list(asked3), list(asked2))
            # DNS rebinding: the name resolves to an allowed address first, to another one after
            loop = asyncio.get_running_loop()
            lookups: list[str] = []
            real = loop.getaddrinfo

            async def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
                lookups.append(host)
                target = "127.0.0.1" if len(lookups) == 1 else "127.0.0.2"
                return await real(target, *args, **kwargs)

            loop.getaddrinfo = rebinding  # type: ignore[method-assign]
            try:
                pcm = await one.load(f"http://pbx-test.invalid:{port}/a.wav")
            finally:
                loop.getaddrinfo = real  # type: ignore[method-assign]
            out["rebinding"] = (len(pcm), lookups, list(asked), list(asked2))
        return out

    out = asyncio.run(run())
    assert out["direct"].startswith(f"not fetching http://127.0.0.1:{out['direct'].split(':')[2].split('/')[0]}")
    assert "127.0.0.1 is a loopback address, which play may not reach (config play_allow_networks" in out["direct"]
    assert out["asked_direct"] == []                                   # never connected
    assert "127.0.0.2 is a loopback address" in out["redirect"]
    assert out["asked_redirect"] == (["/r"], [])                        # the second hop never connected
    samples, lookups, asked, asked2 = out["rebinding"]
    assert samples == 1600 and lookups == ["pbx-test.invalid"]          # one lookup per hop
    assert asked == ["/a.wav"] and asked2 == []                         # the checked address was used


def test_play_of_the_servers_own_port_is_an_error_naming_the_policy(tmp_path: Path) -> None:
    async def run() -> list[Event]:
        async with answered_call(tmp_path) as (call, mark, address):
            await call.send({"command": "play", "url": f"http://{address}/health"})
            await call.wait_event("trackEnd")
            return await probe_reply(call, mark)

    (error,) = errors(asyncio.run(run()))
    assert error[0] == "play" and "loopback address, which play may not reach" in error[1]
    assert "HTTP" not in error[1] and "200" not in error[1]


# -- memory a client can make the server spend -------------------------------------------------------------
def sox_file(path: Path, rate: int, seconds: float) -> Path:
    """Silence at ``rate`` Hz, as sox writes it (FLAC compresses it to almost nothing)."""
    subprocess.run(["sox", "-n", "-r", str(rate), "-b", "16", "-c", "1", str(path), "trim", "0", str(seconds)],
                   check=True, capture_output=True)
    return path


def test_an_absurd_source_rate_is_refused_before_decoding(tmp_path: Path) -> None:
    from pbx.errors import MediaError
    from pbx.media.decode import decode_audio
    bomb = sox_file(tmp_path / "bomb.flac", 655_350, 10)
    assert bomb.stat().st_size < 2_000_000
    started = time.process_time()
    with pytest.raises(MediaError, match=r"sample rate 655350 Hz \(at most 192000\)"):
        decode_audio(bomb, 16000, max_seconds=600.0)
    assert time.process_time() - started < 1.0


def test_the_server_caps_the_audio_all_calls_hold_to_play(tmp_path: Path) -> None:
    """playout_max_bytes of 2 s of audio: one call queues 1.5 s, another's 1 s is refused until the
    first has played."""
    import base64

    import numpy as np

    def pcm_tts(seconds: float, play_id: str) -> dict[str, Any]:
        samples = np.full(int(16000 * seconds), 500, dtype="<i2").tobytes()
        return {"command": "tts", "text": base64.b64encode(samples).decode(), "base64": True, "playId": play_id}

    async def run() -> tuple[list[Event], list[Event]]:
        async with running_server(tmp_path, playout_max_bytes=64_000) as (_, address), \
                Call.open(address, "id=a&pingInterval=0&dump=false") as a, \
                Call.open(address, "id=b&pingInterval=0&dump=false") as b:
            for call in (a, b):
                await call.send(invite())
                await call.wait_event("answer")
            await a.send(pcm_tts(1.5, "long"))
            await a.wait_event("trackStart", playId="long")
            await b.send(pcm_tts(1.0, "refused"))
            await b.wait_event("error")
            await a.wait_event("trackEnd", playId="long", timeout=5.0)
            await asyncio.sleep(1.2)          # the once-a-second recount sees a's queue empty
            await b.send(pcm_tts(1.0, "later"))
            await b.wait_event("trackEnd", playId="later", timeout=5.0)
            return a.events(), b.events()

    _, b_events = asyncio.run(run())
    assert errors(b_events) == [("tts", "the server holds its maximum of 0.064 MB of audio to play "
                                        "(playout_max_bytes); try again when some has played")]


def test_interrupt_and_hangup_stop_the_downloads_of_their_plays(tmp_path: Path) -> None:
    """Twenty plays of URLs that never answer, then interrupt: each play replaces the one before and
    stops its download, the interrupt stops the last, every connection is closed at once (not when
    the download would time out), and the process is back to its descriptors; the same at hangup."""
    open_now: set[int] = set()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_now.add(id(writer))
        try:
            await reader.read()          # until the client closes its end
        finally:
            open_now.discard(id(writer))
            writer.close()

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def run() -> tuple[int, int, int, int, int]:
        server = await asyncio.start_server(stall, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with answered_call(tmp_path, play_allow_networks=["127.0.0.0/8"], download_timeout_secs=30.0) as (
                call, _, _):
            baseline = fds()
            for i in range(20):
                await call.send({"command": "play", "url": f"http://127.0.0.1:{port}/slow-{i}.wav"})
            await asyncio.sleep(0.5)
            during = len(open_now)
            await call.send({"command": "interrupt"})
            await asyncio.sleep(0.5)
            after_interrupt, fds_after = len(open_now), fds()
            for i in range(5):
                await call.send({"command": "play", "url": f"http://127.0.0.1:{port}/again-{i}.wav"})
            await asyncio.sleep(0.3)
            await call.send({"command": "hangup"})
            await call.wait_event("hangup")
            await asyncio.sleep(0.3)
            after_hangup = len(open_now)
        server.close()
        return during, after_interrupt, after_hangup, baseline, fds_after

    during, after_interrupt, after_hangup, baseline, fds_after = asyncio.run(run())
    assert during == 1                    # each play replaces the last, whose download stops
    assert after_interrupt == 0 and after_hangup == 0
    assert fds_after <= baseline


# -- speech recognition a client can make expensive ----------------------------------------------------------
def children() -> set[int]:
    me = str(os.getpid())
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if stat.rsplit(")", 1)[1].split()[1] == me:
                    out.add(int(entry))
    return out


def test_bad_grammars_start_no_process_and_big_ones_are_refused(tmp_path: Path) -> None:
    bad = ["#JSGF V1.0;\ngrammar g;\npublic <s> = call ( stella ;\n",
           "#JSGF V1.0;\ngrammar g;\npublic <s> = call zzqxw ;\n",
           "#JSGF V1.0;\ngrammar g;\npublic <s> = " + " | ".join(["stella"] * 501) + " ;\n"]

    async def run() -> tuple[list[tuple[str, str]], list[set[int]]]:
        before = children()
        seen: list[tuple[str, str]] = []
        spawned = []
        async with running_server(tmp_path) as (_, address):
            for i in range(12):
                async with Call.open(address, f"id=g{i}&pingInterval=0&dump=false") as call:
                    await call.send(invite(asr={"provider": "pocketsphinx", "extra": {"grammar": bad[i % 3]}}))
                    answer = await call.wait_event("answer")
                    seen += errors(await probe_reply(call, call.position(answer) + 1))
                spawned.append(children() - before)
        return seen, spawned

    seen, spawned = asyncio.run(run())
    # The ASR worker (and multiprocessing's resource tracker) start with the first ASR stream, once:
    # never a process per call.
    kinds = {frozenset(s) for s in spawned if s}
    assert len(kinds) == 1 and len(next(iter(kinds))) <= 2
    assert seen[:3] == [
        ("asr", "pocketsphinx cannot use the grammar: syntax error at line 3: expected '|' or ')' to close the group "
                "of line 3, found ';'"),
        ("asr", "pocketsphinx cannot use the grammar: The word 'zzqxw' is missing in the dictionary"),
        ("asr", "pocketsphinx cannot use the grammar: the grammar has 501 words; at most 500 are allowed"),
    ]
    assert seen[3:6] == seen[:3] and len(seen) == 12


def test_http_errors_of_the_websocket_layer_are_json_too(tmp_path: Path) -> None:
    async def run() -> list[tuple[int, str, Any]]:
        out = []
        async with running_server(tmp_path) as (_, address):
            host, port = address.rsplit(":", 1)
            for raw in (f"GET /call/lists?{'x' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
                        b"GET /call/lists HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 300 + b"\r\n"):
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(raw)
                reply = await asyncio.wait_for(reader.read(), 5.0)
                writer.close()
                head, _, body = reply.partition(b"\r\n\r\n")
                fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
                out.append((int(head.split()[1]), fields["Content-Type"], json.loads(body)))
        return out

    assert asyncio.run(run()) == [
        (414, "application/json",
         {"error": "Failed to open a WebSocket connection: read 9027 bytes, expected no more than 8192 bytes."}),
        (431, "application/json",
         {"error": "Failed to open a WebSocket connection: expected no more than 128 headers."}),
    ]


def test_a_failure_inside_a_command_is_an_error_event_and_one_log_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The safety net under every command: whatever breaks (here playback, made to recurse without
    end) becomes one error event and one log line; the socket stays open and the call goes on."""
    from pbx.call.playback import Playback

    def recurse(self: Playback, cmd: Any) -> None:
        recurse(self, cmd)

    async def run() -> list[Event]:
        async with answered_call(tmp_path) as (call, mark, _):
            with monkeypatch.context() as patch:
                patch.setattr(Playback, "play", recurse)
                await call.send({"command": "play", "url": "x.wav"})
                await call.wait_event("error")
            return await probe_reply(call, mark)

    caplog.set_level("INFO")
    events = asyncio.run(run())
    assert errors(events) == [("server", "internal error handling PlayCommand")]
    failures = [r for r in caplog.records if r.name == "pbx.server.driver" and r.levelname == "ERROR"]
    assert len(failures) == 1 and failures[0].exc_info is None
    assert failures[0].getMessage().startswith(f"call {CALL_ID}: handling PlayCommand failed: RecursionError: ")
    assert len(failures[0].getMessage()) < 500


def test_decoders_beyond_the_idle_pool_give_their_memory_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """glibc keeps what a freed decoder used (~60 MB): each one not pooled is followed by malloc_trim.
    (RSS over rounds of calls: bench/hostile.py, case asr.)"""
    from pbx.asr import pocketsphinx as ps
    from pbx.asr.base import AsrOptions
    trims: list[int] = []
    monkeypatch.setattr(ps, "release_free_memory", lambda: trims.append(1) or True)

    async def run() -> int:
        provider = ps.PocketsphinxAsr(max_idle=1)
        streams = [await provider.open_stream(AsrOptions()) for _ in range(3)]
        for stream in streams:
            await stream.close()
        idle = provider.idle_count("lm")
        await provider.close()
        return idle

    assert asyncio.run(run()) == 1
    assert len(trims) == 2 + 1          # the two decoders the pool had no room for, and the provider's close
