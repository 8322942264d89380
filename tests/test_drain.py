"""Graceful shutdown of a real server process (``python -m pbx serve``, one process): SIGTERM refuses new
WebSocket calls (HTTP 503) and new INVITEs (SIP 503, sipp), while the calls up go on, working, until
they hang up or ``drain_secs`` ends them with ``shutdown``; the recording is a complete WAV, the dump
ends with the hangup, and the process exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pbx.sip.config import WebhookConfig
from tests.support.calls import Call, probe, running_server, stream_realtime
from tests.support.served import served
from tests.support.sip import SIPP, WebhookReceiver, sipp

RATE = 16000


async def refused_websocket(address: str, path: str = "/call") -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body of a WebSocket handshake the server refuses."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"ws://{address}{path}?pingInterval=0"):
            pass
    response = info.value.response
    return response.status_code, {k.lower(): v for k, v in response.headers.raw_items()}, json.loads(response.body)


def wav_is_complete(path: Path) -> tuple[int, int]:
    """(sample rate, frames) of a WAV whose RIFF and data sizes match the file's (what a writer that
    was not finalised leaves wrong); AssertionError otherwise."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", data[:12]
    assert struct.unpack_from("<I", data, 4)[0] == len(data) - 8, "RIFF size"
    pos, rate, channels = 12, 0, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk == b"fmt ":
            channels, rate = struct.unpack_from("<HI", data, pos + 10)
        if chunk == b"data":
            assert size == len(data) - pos - 8, f"data size {size} != {len(data) - pos - 8}"
            return rate, size // (2 * channels)
        pos += 8 + size
    raise AssertionError("no data chunk")


async def speak(call: Call, pcm: np.ndarray) -> None:
    """Caller audio in real time until the call ends."""
    with contextlib.suppress(ConnectionClosed):
        await stream_realtime(call, pcm)


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")
def test_sigterm_refuses_new_calls_both_ways_lets_calls_finish_and_ends_the_rest_with_shutdown(
        tmp_path: Path) -> None:
    drain_s = 4.0
    tone = (np.sin(2 * np.pi * 440 * np.arange(RATE * 10) / RATE) * 8000).astype(np.int16)

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with WebhookReceiver.running() as webhook, \
                served(tmp_path, f"drain_secs = {drain_s}\n[webhook]\nurl = \"{webhook.url}\"") as server, \
                sipp("caller_waits_for_bye.xml", server.sip_port, tmp_path / "sipp_up") as phone:
            dialog = (await webhook.next_post(0))["dialogId"]
            async with Call.open(server.address, f"id={dialog}&pingInterval=0", path="/call/sip") as sip_call, \
                    Call.open(server.address, "id=recorded&pingInterval=0") as ws_call:
                await sip_call.wait_event("incoming")
                await sip_call.send({"command": "accept", "option": {"codec": "pcma"}})
                await sip_call.wait_event("answer")
                await ws_call.send({"command": "invite", "option": {
                    "codec": "pcm", "recorder": {"recorderFile": "drain.wav"}}})
                await ws_call.wait_event("answer")
                speaking = asyncio.create_task(speak(ws_call, tone))
                await asyncio.sleep(0.5)

                server.process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                for _ in range(50):                 # the signal is handled on the server's loop
                    if "SIGTERM: draining" in "".join(server.log):
                        break
                    await asyncio.sleep(0.05)
                out["refused_ws"] = await refused_websocket(server.address)
                async with sipp("caller_refused.xml", server.sip_port, tmp_path / "sipp_new") as newcomer:
                    result = await newcomer.finish(timeout=10)
                    assert result.rc == 0, result.logs
                    out["refused_sip"] = [m for m in newcomer.received() if m.status is not None and m.status >= 200]
                out["health"] = await server.health()

                # the calls up go on: both still work during the drain
                mark = ws_call.mark()
                await ws_call.send(probe("during"))
                await ws_call.wait_event("trackEnd", since=mark, playId="during")
                await sip_call.send(probe("during-sip"))
                await sip_call.wait_event("trackEnd", playId="during-sip")
                await sip_call.send({"command": "hangup"})      # this one ends by itself
                out["sip_hangup"] = await sip_call.wait_event("hangup")
                out["ws_hangup"] = await ws_call.wait_event("hangup", timeout=drain_s + 5)
                out["ws_hangup_after_s"] = time.monotonic() - signalled
                speaking.cancel()
            phone_result = await phone.finish(timeout=10)
            assert phone_result.rc == 0, phone_result.logs
            out["rc"] = await asyncio.wait_for(server.process.wait(), drain_s + 15)
            out["exited_after_s"] = time.monotonic() - signalled
            out["log"] = "".join(server.log)
        return out

    out = asyncio.run(run())
    assert out["rc"] == 0, out["log"]
    status, headers, body = out["refused_ws"]
    assert (status, headers.get("retry-after")) == (503, "5")
    assert body == {"error": "the server is shutting down and takes no new calls; try another server"}
    [refusal] = out["refused_sip"]
    assert (refusal.status, refusal.headers.get("Retry-After")) == (503, "5")
    assert refusal.headers.get("Warning") == \
        '399 pypbx "the server is shutting down and takes no new calls; try another server"'
    assert out["health"]["draining"] is True and out["health"]["calls"] == 2
    assert out["sip_hangup"]["initiator"] == "user" and "reason" not in out["sip_hangup"]   # its own hangup
    assert (out["ws_hangup"]["reason"], out["ws_hangup"]["initiator"]) == ("shutdown", "system")
    assert drain_s - 0.5 <= out["ws_hangup_after_s"] <= drain_s + 3
    assert out["exited_after_s"] <= drain_s + 10
    # the recording and the dump were finished by the call's normal end
    rate, frames = wav_is_complete(tmp_path / "data" / "recordings" / "drain.wav")
    assert rate == RATE and frames / RATE >= drain_s
    lines = (tmp_path / "data" / "dumps" / "recorded.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    assert last["event"]["event"] == "hangup" and last["event"]["reason"] == "shutdown"


def test_a_second_sigterm_during_the_drain_stops_at_once_and_an_outbound_invite_meanwhile_is_refused(
        tmp_path: Path) -> None:
    async def run() -> tuple[Any, float, int]:
        async with served(tmp_path, "drain_secs = 60") as server, \
                Call.open(server.address, "id=long&pingInterval=0") as call, \
                Call.open(server.address, "id=dialer&pingInterval=0", path="/call/sip") as dialer:
            await call.send({"command": "invite", "option": {"codec": "pcm"}})
            await call.wait_event("answer")
            server.process.send_signal(signal.SIGTERM)
            for _ in range(50):
                if "SIGTERM: draining" in "".join(server.log):
                    break
                await asyncio.sleep(0.05)
            assert (await server.health())["draining"] is True
            # an application connected before the drain cannot place a new call during it
            await dialer.send({"command": "invite", "option": {"callee": "sip:alice@127.0.0.1:9", "codec": "pcmu"}})
            error = await dialer.wait_event("error")
            assert error["error"] == ("cannot place the call: the server is shutting down and takes no new calls; "
                                      "try another server"), error
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            hangup = await call.wait_event("hangup", timeout=10)
            rc = await asyncio.wait_for(server.process.wait(), 15)
            return hangup, time.monotonic() - started, rc

    hangup, took_s, rc = asyncio.run(run())
    assert rc == 0 and took_s < 10
    assert (hangup["reason"], hangup["initiator"]) == ("shutdown", "system")


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")
def test_drain_lets_an_invite_taken_before_it_be_answered_and_returns_when_the_last_call_ends(
        tmp_path: Path) -> None:
    """``CallServer.drain`` called directly (as a supervisor would): the INVITE that came before it is
    still answered by its application, which connects during the drain; drain returns when that call
    ends, well before its time is up."""
    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with WebhookReceiver.running() as webhook, \
                running_server(tmp_path, webhook=WebhookConfig(url=webhook.url)) as (server, address), \
                sipp("caller_waits_for_bye.xml", server.sip.address[1] if server.sip.address else 0,
                     tmp_path / "sipp") as phone:
            dialog = (await webhook.next_post(0))["dialogId"]
            started = time.monotonic()
            draining = asyncio.create_task(server.drain(20.0))
            await asyncio.sleep(0.1)
            out["refused"] = await refused_websocket(address, "/call/sip")
            async with Call.open(address, f"id={dialog}&pingInterval=0", path="/call/sip") as app:
                await app.wait_event("incoming")
                await app.send({"command": "accept", "option": {"codec": "pcma"}})
                out["answer"] = await app.wait_event("answer")
                await asyncio.sleep(0.5)
                assert not draining.done()
                await app.send({"command": "hangup"})
                await app.wait_event("hangup")
            await asyncio.wait_for(draining, 5)
            out["drained_after_s"] = time.monotonic() - started
            result = await phone.finish(timeout=10)
            assert result.rc == 0, result.logs
        return out

    out = asyncio.run(run())
    assert out["refused"][0] == 503
    assert out["answer"]["event"] == "answer"
    assert out["drained_after_s"] < 5
