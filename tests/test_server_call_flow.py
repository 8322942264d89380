"""Call behaviour the call core now owns, end to end over real sockets: the timers the driver arms
(``autoHangup``, ``waitInputTimeout``), the state table's answer to a playback command before
``invite``, and the bounded send queue that ends the call of a client that stops reading."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pbx.server import control
from tests.support.calls import FRAME, Call, Event, running_server

CALL_ID = "flow"


def pcm_tts(ms: int, play_id: str, **fields: Any) -> Event:
    samples = np.full(16 * ms, 2000, dtype="<i2").tobytes()
    return {"command": "tts", "text": base64.b64encode(samples).decode(), "base64": True, "playId": play_id,
            **fields}


def test_auto_hangup_ends_the_call_when_its_track_has_played(tmp_path: Path) -> None:
    async def run() -> tuple[list[Event], int, list[bytes]]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0&dump=false") as call:
            await call.send({"command": "invite", "option": {"codec": "pcm"}})
            await call.wait_event("answer")
            await call.send(pcm_tts(300, "bye", autoHangup=True))
            closed = await call.wait_closed()
            assert closed.rcvd is not None
            return call.events(), closed.rcvd.code, call.frames()

    events, code, frames = asyncio.run(run())
    assert [e["event"] for e in events] == ["answer", "trackStart", "trackEnd", "hangup"]
    assert (events[-1]["reason"], events[-1]["initiator"]) == ("autohangup", "system")
    assert events[2]["duration"] == 300 and code == 1000
    assert len(frames) * FRAME >= 300 * 16        # every frame of the track went out before the hangup


def test_wait_input_timeout_reports_the_silence_after_the_track(tmp_path: Path) -> None:
    async def run() -> list[Event]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0&dump=false") as call:
            await call.send({"command": "invite", "option": {"codec": "pcm"}})
            await call.wait_event("answer")
            await call.send(pcm_tts(100, "ask", waitInputTimeout=0.4))
            await call.wait_event("silence", timeout=3.0)
            return call.events()

    events = asyncio.run(run())
    end = next(e for e in events if e["event"] == "trackEnd")
    silence = next(e for e in events if e["event"] == "silence")
    assert silence["trackId"] == "serverSideTrack"
    assert silence["startTime"] == end["timestamp"]
    assert silence["duration"] == silence["timestamp"] - silence["startTime"]
    assert 400 <= silence["duration"] <= 450


def test_interrupt_before_invite_names_the_state(tmp_path: Path) -> None:
    async def run() -> list[Event]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, f"id={CALL_ID}&pingInterval=0&dump=false") as call:
            await call.send({"command": "interrupt"})
            await call.send({"command": "unmute"})
            await call.wait(lambda: len(call.events()) >= 2)
            return call.events()

    assert [(e["sender"], e["error"]) for e in asyncio.run(run())] == [
        ("command", "interrupt: no call is answered yet (send invite or accept first)"),
        ("command", "unmute: no call is answered yet"),
    ]


def masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def test_a_client_that_stops_reading_has_its_call_ended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each unknown command gets an error event; the client never reads them. Once the unsent text passes
    the bound, the call ends (reason client_not_reading) instead of the server buffering without end."""
    monkeypatch.setattr(control, "TEXT_BACKLOG_BYTES", 64 * 1024)

    async def run() -> tuple[list[dict[str, Any]], bool]:
        async with running_server(tmp_path) as (server, address):
            host, port = address.rsplit(":", 1)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # a small window: the server backs up
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
            reader, writer = await asyncio.open_connection(sock=sock)
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(f"GET /call?id={CALL_ID}&pingInterval=0 HTTP/1.1\r\nHost: {address}\r\n"
                         f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n".encode())
            await reader.readuntil(b"\r\n\r\n")
            frame = masked_text_frame(json.dumps({"command": "x" * 90}))
            ended = False
            for _ in range(400):                       # up to 400 x 200 commands; never reading a byte
                writer.write(frame * 200)
                await writer.drain()
                await asyncio.sleep(0.005)
                if CALL_ID not in server.sessions:
                    ended = True
                    break
            dump = [json.loads(line) for line in
                    (tmp_path / "dumps" / f"{CALL_ID}.jsonl").read_text().splitlines()]
            writer.close()
            return dump, ended

    dump, ended = asyncio.run(run())
    assert ended
    hangup = dump[-1]["event"]
    assert (hangup["event"], hangup["reason"], hangup["initiator"]) == ("hangup", "client_not_reading", "system")
    assert sum(1 for line in dump if "event" in line and line["event"]["event"] == "error") > 500
