"""Faults with calls in progress (issue 13): each fault hits one call of a real server (an in-process
:class:`~pbx.server.app.CallServer` on loopback sockets) while two bystanders run beside it, and the
bystanders must not notice.

The bystanders (:func:`bystanders`): a ``/call/sip`` call to a phone of its own
(:class:`~tests.support.faults.SipPeer`: RTP both ways, a tone each way) and a ``/call`` call that
streams speech in (webrtc VAD: ``speaking``) and plays a long tone out. After the fault
(:func:`check_unaffected`) the phone got every packet the server numbered (no sequence gap) with no
long silence, the server got the phone's packets, ``/call`` got its tone frame after frame, neither
call had an ``error`` or a ``hangup``, the engine skipped no frame, and both then end normally.

The faults: a phone that stops sending RTP, a phone that vanishes (no RTP, no SIP answer), the ASR and
the TTS provider dying (a local Deepgram killed mid-stream), the webhook down, the application's
WebSocket reset mid-TTS (and before it decided on an inbound INVITE), and a full disk under the
recordings. The call that took the fault must give back what it held: RTP ports, its engine leg, its
place in ``/call/lists``, its asyncio tasks.

SIP's Timer F (64*T1, the BYE to a vanished phone) has no config key: that test shortens T1 on the
server's transaction layer (``SHORT_T1``), so the BYE gives up after 3.2 s instead of 32 s.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import struct
import time
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pbx.cloud import asr as cloud_asr
from pbx.server.app import CallServer
from pbx.sip.config import SipConfig, WebhookConfig
from pbx.sip.timers import TimerConfig
from support.audio import espeak_speech, read_wav
from tests.support.calls import RATE, Call, Event, http, running_server, stream_realtime
from tests.support.deepgram_server import KEY, Step
from tests.support.faults import KillableDeepgram, PeerCall, SipPeer, can_mount, fill, free_bytes, small_disk
from tests.support.sip import WebhookReceiver

CALLER = "sip:bot@127.0.0.1"
RTP_TIMEOUT_S = 1.0
GAP_S = 0.3                  # the longest silence a bystander may see (the machine is shared; 20 ms is normal)
BYSTANDER_TONE_S = 14.0      # long enough to outlast every fault
SHORT_T1 = TimerConfig(t1=0.05, t2=0.4, t4=0.5)     # Timer F = 3.2 s instead of 32 s


def sip_config(**options: Any) -> SipConfig:
    options.setdefault("rtp_timeout_secs", RTP_TIMEOUT_S)
    return SipConfig(addr="127.0.0.1:0", **options)


@asynccontextmanager
async def fault_server(tmp_path: Path, **config: Any) -> AsyncIterator[tuple[CallServer, str]]:
    config.setdefault("sip", sip_config())
    config.setdefault("endpoint_allow_networks", ["127.0.0.0/8"])
    async with running_server(tmp_path / "data", **config) as (server, address):
        yield server, address


@asynccontextmanager
async def sip_call(address: str, peer: SipPeer, call_id: str, index: int = 0,
                   **option: Any) -> AsyncIterator[tuple[Call, PeerCall]]:
    """A ``/call/sip`` application calling ``peer`` (its ``index``-th call); yields once RTP flows."""
    async with Call.open(address, f"id={call_id}&pingInterval=0&dump=false", path="/call/sip") as app:
        await app.send({"command": "invite", "option": {"caller": CALLER, "callee": peer.uri, "codec": "pcmu",
                                                         **option}})
        await app.wait_event("answer")
        leg = await peer.wait_for_call(index)
        yield app, leg


def tone_tts(seconds: float, play_id: str, rate: int = 8000) -> dict[str, Any]:
    """A tts command whose audio is a tone carried in the command (base64 PCM: no provider)."""
    t = np.arange(int(seconds * rate)) / rate
    pcm = np.round(6000 * np.sin(2 * np.pi * 523 * t)).astype("<i2").tobytes()
    return {"command": "tts", "text": base64.b64encode(pcm).decode(), "base64": True, "playId": play_id,
            "option": {"samplerate": rate}}


def speech_loop(seconds: float) -> np.ndarray:
    one = np.concatenate([espeak_speech(RATE, "one two three four five"), np.zeros(RATE // 2, np.int16)])
    return np.resize(one, int(seconds * RATE)).astype(np.int16)


# -- the bystanders ----------------------------------------------------------------------------------------------
@dataclass
class Bystanders:
    address: str
    server: CallServer
    phone: SipPeer
    sip_app: Call
    sip_leg: PeerCall
    ws: Call
    since: float                 # time.monotonic() once both were up
    track_start: int             # the ws call's log position of its tone's trackStart
    speaker: asyncio.Task[None]


@asynccontextmanager
async def bystanders(server: CallServer, address: str) -> AsyncIterator[Bystanders]:
    async with SipPeer.running() as phone, sip_call(address, phone, "bystander-sip") as (sip_app, sip_leg), \
            Call.open(address, "id=bystander-ws&pingInterval=0&dump=false") as ws:
        await ws.send({"command": "invite", "option": {"codec": "pcm", "vad": {"type": "webrtc"}}})
        await ws.wait_event("answer")
        await ws.send(tone_tts(BYSTANDER_TONE_S, "bystander"))
        start = await ws.wait_event("trackStart", playId="bystander")
        speaker = asyncio.create_task(stream_realtime(ws, speech_loop(BYSTANDER_TONE_S)))
        await ws.wait_event("speaking")
        try:
            yield Bystanders(address, server, phone, sip_app, sip_leg, ws, time.monotonic(), ws.position(start),
                             speaker)
        finally:
            speaker.cancel()


async def check_unaffected(b: Bystanders) -> None:
    """The bystanders went on through the fault as if nothing happened, then end normally."""
    now = time.monotonic()
    elapsed = now - b.since
    assert elapsed < BYSTANDER_TONE_S - 1, f"the fault took {elapsed:.1f} s: the bystanders' audio ran out"
    leg = b.sip_leg
    assert leg.missing() == 0, "the server skipped RTP packets of the bystander's SIP call"
    assert leg.longest_gap(b.since) < GAP_S, f"the bystander's phone heard nothing for {leg.longest_gap(b.since):.2f} s"
    assert len(leg.received(b.since)) >= 0.9 * elapsed / 0.02 - 5, (len(leg.received(b.since)), elapsed)
    assert not leg.ended.is_set()
    assert [e["event"] for e in b.sip_app.events()] == ["answer"], b.sip_app.events()
    frames = b.ws.frames(b.track_start)
    expected = (now - b.since) / 0.02
    assert len(frames) >= 0.9 * expected - 5, f"/call got {len(frames)} tone frames in {elapsed:.1f} s"
    names = [e["event"] for e in b.ws.events()]
    assert "error" not in names and "hangup" not in names and "trackEnd" not in names, b.ws.events()
    assert names.count("speaking") >= 2 or elapsed < 3, "the /call bystander's speech was not heard"
    _, _, health = await http(b.address, "GET", "/health")
    assert health["status"] == "ok" and health["media_skipped_frames"] == 0, health
    # and both end normally
    sent = leg.sent
    await b.sip_app.send({"command": "hangup"})
    hangup = await b.sip_app.wait_event("hangup")
    assert (hangup["initiator"], hangup.get("reason")) == ("user", None), hangup
    assert hangup["extra"]["rtp"]["packetsReceived"] >= sent - 5, (hangup["extra"]["rtp"], sent)
    await asyncio.wait_for(leg.ended.wait(), 5.0)
    assert leg.end_reason == "bye"
    b.speaker.cancel()
    await b.ws.send({"command": "hangup"})
    hangup = await b.ws.wait_event("hangup")
    assert hangup["initiator"] == "user", hangup


async def wait_until(condition: Any, timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


async def listed(address: str) -> list[str]:
    _, _, body = await http(address, "GET", "/call/lists")
    return sorted(c["id"] for c in body["calls"])


def errors(events: list[Event]) -> list[tuple[str, str]]:
    return [(e["sender"], e["error"]) for e in events if e["event"] == "error"]


# -- 1. the phone stops sending RTP ------------------------------------------------------------------------------
def test_a_phone_that_stops_sending_rtp_is_hung_up_with_rtp_timeout_and_a_bye(tmp_path: Path) -> None:
    async def run() -> None:
        async with fault_server(tmp_path) as (server, address), bystanders(server, address) as b, \
                SipPeer.running() as phone, sip_call(address, phone, "quiet") as (app, leg):
            await asyncio.sleep(0.5)
            stopped = time.monotonic()
            leg.stop_rtp()
            hangup = await app.wait_event("hangup", timeout=5.0)
            ended_after = time.monotonic() - stopped
            await asyncio.wait_for(leg.ended.wait(), 5.0)
            assert (hangup["reason"], hangup["initiator"]) == ("rtp_timeout", "system"), hangup
            assert RTP_TIMEOUT_S - 0.1 <= ended_after < RTP_TIMEOUT_S + 1.0, ended_after
            assert leg.end_reason == "bye"              # the phone got our BYE (and answered it)
            assert [line.split()[0] for line, _ in phone.heard] == ["INVITE", "ACK", "BYE"]
            assert "quiet" not in await listed(address)
            await check_unaffected(b)
    asyncio.run(run())


# -- 2. the phone vanishes ----------------------------------------------------------------------------------------
def test_a_phone_that_vanishes_is_hung_up_and_its_resources_freed_while_the_bye_times_out(tmp_path: Path) -> None:
    async def run() -> None:
        async with fault_server(tmp_path) as (server, address):
            assert server.sip.ua is not None
            server.sip.ua.layer.timers = SHORT_T1       # the BYE gives up after 3.2 s, not 32
            async with bystanders(server, address) as b:
                tasks = len(asyncio.all_tasks())
                async with SipPeer.running() as phone, sip_call(address, phone, "gone") as (app, leg):
                    await vanish_and_time_out(server, address, phone, app, leg)
                await wait_until(lambda: len(asyncio.all_tasks()) <= tasks, what="the call's tasks ended")
                await check_unaffected(b)
            await wait_until(lambda: server.sip.ports.in_use == 0 and server.media.engine.leg_count == 0,
                             what="every port and leg back")
            assert await listed(address) == [] and not server.sip.pending
    asyncio.run(run())


async def vanish_and_time_out(server: CallServer, address: str, phone: SipPeer, app: Call, leg: PeerCall) -> None:
    """The phone vanishes: its call ends (rtp_timeout) and gives everything back at once; the BYE is sent
    again and again, unanswered, until its transaction times out (Timer F)."""
    assert server.sip.ua is not None
    ports, legs = server.sip.ports.in_use, server.media.engine.leg_count
    assert (ports, legs) == (2, 3)
    phone.vanish()
    hangup = await app.wait_event("hangup", timeout=5.0)
    assert (hangup["reason"], hangup["initiator"]) == ("rtp_timeout", "system"), hangup
    # at once: its RTP ports back in the pool, its leg out of the engine, off the list
    await wait_until(lambda: server.sip.ports.in_use == 1 and server.media.engine.leg_count == 2,
                     what="the vanished call's ports and leg freed")
    assert await listed(address) == ["bystander-sip", "bystander-ws"]
    call_id = leg.session.call_id if leg.session is not None else ""
    byes = await phone.wait_heard("BYE", count=4, timeout=3.0)
    await wait_until(lambda: not [t for t in server.sip.ua.layer.client_transactions
                                  if t.request.call_id == call_id], timeout=5.0,
                     what="the BYE transaction timed out")
    sent = len(phone.times_of("BYE"))
    await asyncio.sleep(0.5)
    assert len(phone.times_of("BYE")) == sent, "BYE still sent after its transaction timed out"
    assert phone.times_of("BYE")[-1] - byes[0] > 2.0       # retransmitted until Timer F (3.2 s)
    assert call_id not in server.sip.ua.sessions


# -- 3. the ASR and TTS providers die -----------------------------------------------------------------------------
ASR_SCRIPT = (Step(0.4, "interim", "one"), Step(0.8, "final", "one two"), Step(1.2, "interim", "three"))


def deepgram_asr(server: KillableDeepgram) -> dict[str, Any]:
    return {"provider": "deepgram", "endpoint": server.listen_url, "secretKey": KEY, "language": "en-US"}


def deepgram_tts(server: KillableDeepgram) -> dict[str, Any]:
    return {"provider": "deepgram", "endpoint": server.speak_url, "secretKey": KEY, "speaker": "aura-2-thalia-en"}


def test_the_asr_provider_dying_mid_stream_is_an_error_and_recognition_resumes_when_it_is_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloud_asr, "BACKOFF_FIRST_S", 0.2)

    async def run() -> None:
        async with KillableDeepgram() as deepgram, \
                fault_server(tmp_path, provider_timeout_secs=2.0) as (server, address), \
                bystanders(server, address) as b, Call.open(address, "id=asr&pingInterval=0&dump=false") as call:
            deepgram.script = ASR_SCRIPT
            await call.send({"command": "invite", "option": {"codec": "pcm", "asr": deepgram_asr(deepgram)}})
            await call.wait_event("answer")
            speaker = asyncio.create_task(stream_realtime(call, speech_loop(8.0)))
            try:
                await call.wait_event("asrDelta", text="one", timeout=5.0)
                await deepgram.kill()
                killed = call.mark()
                lost = await call.wait_event("error", killed, sender="asr", timeout=5.0)
                await asyncio.sleep(0.8)                 # reconnecting meanwhile fails: refused
                await deepgram.revive()
                back = call.mark()
                await call.wait_event("asrDelta", back, text="one", timeout=5.0)
                final = await call.wait_event("asrFinal", back, timeout=5.0)
            finally:
                speaker.cancel()
            events = call.events(killed, call.position(final) + 1)
            assert lost["error"] == "deepgram closed the connection: no close frame", lost
            assert final["text"].startswith("one two"), final
            # while it is down, each reconnection is refused, an error, and the wait doubles (the first
            # wait, 0.2 s here, came after the loss)
            retries = errors(events)[1:]
            assert retries and all(sender == "asr" for sender, _ in retries), retries
            waits = [float(re.fullmatch(r"deepgram: .*; trying again in ([0-9.]+) s", error).group(1))  # type: ignore[union-attr]
                     for _, error in retries]
            assert waits == [0.2 * 2 ** (i + 1) for i in range(len(waits))], retries
            assert [e["event"] for e in call.events() if e["event"] in ("hangup", "answer")] == ["answer"]
            assert len(deepgram.listens) == 2 and deepgram.violations == []
            await check_unaffected(b)
            await call.send({"command": "hangup"})
            await call.wait_event("hangup")
    asyncio.run(run())


def test_the_tts_provider_dying_mid_synthesis_ends_the_track_with_an_error_and_the_call_goes_on(
        tmp_path: Path) -> None:
    async def run() -> None:
        async with KillableDeepgram() as deepgram, \
                fault_server(tmp_path, provider_timeout_secs=2.0) as (server, address), \
                bystanders(server, address) as b, SipPeer.running() as phone, \
                sip_call(address, phone, "tts", tts=deepgram_tts(deepgram)) as (app, leg):
            deepgram.speak_modes = ["hold"]
            mark = app.mark()
            await app.send({"command": "tts", "text": "Your order number is four seven two nine.", "playId": "cut"})
            await app.wait_event("trackStart", mark, playId="cut")
            await deepgram.wait_for(lambda: deepgram.speaks and deepgram.speaks[0].messages)
            await deepgram.kill()
            end = await app.wait_event("trackEnd", mark, playId="cut", timeout=5.0)
            cut = app.events(mark, app.position(end) + 1)
            assert errors(cut) == [("tts", "deepgram closed the connection before the audio was complete "
                                           "(no close frame)")], cut
            # the call goes on: a synthesis while the provider is down fails alone, one once it is back plays
            mark = app.mark()
            await app.send({"command": "tts", "text": "Are you there?", "playId": "down"})
            end = await app.wait_event("trackEnd", mark, playId="down", timeout=5.0)
            down = errors(app.events(mark, app.position(end) + 1))
            assert [sender for sender, _ in down] == ["tts"] and "deepgram" in down[0][1], down
            await deepgram.revive()
            mark = app.mark()
            await app.send({"command": "tts", "text": "Thank you.", "playId": "again"})
            await app.wait_event("trackEnd", mark, playId="again", timeout=5.0)
            assert errors(app.events(mark)) == []
            assert leg.missing() == 0 and leg.longest_gap() < GAP_S and not leg.ended.is_set()
            await check_unaffected(b)
            await app.send({"command": "hangup"})
            await app.wait_event("hangup")
    asyncio.run(run())


# -- 4. the webhook is down ---------------------------------------------------------------------------------------
def closed_port() -> int:
    """A loopback TCP port nothing listens on (bound, then closed: refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_inbound_invite_with_the_webhook_down_is_answered_503(tmp_path: Path) -> None:
    async def run() -> None:
        webhook = WebhookConfig(url=f"http://127.0.0.1:{closed_port()}/hook", timeout_secs=1.0)
        async with fault_server(tmp_path, webhook=webhook) as (server, address), bystanders(server, address) as b, \
                SipPeer.running() as caller:
            assert server.sip.address is not None
            asked = time.monotonic()
            calls = [await caller.call(server.sip.address[1]) for _ in range(3)]
            for call in calls:
                await asyncio.wait_for(call.ended.wait(), 5.0)
            assert [c.failed for c in calls] == [503, 503, 503]
            assert time.monotonic() - asked < 3.0
            assert not server.sip.pending and await listed(address) == ["bystander-sip", "bystander-ws"]
            assert server.sip.ports.in_use == 1
            await check_unaffected(b)
    asyncio.run(run())


# -- 5. the application's WebSocket is reset mid-TTS -------------------------------------------------------------
def reset(call: Call) -> None:
    """Cut the client's TCP connection with a reset: no close frame, no FIN."""
    transport = call.ws.transport
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def test_an_application_reset_mid_tts_finalises_the_recording_and_hangs_up_the_phone(tmp_path: Path) -> None:
    async def run() -> tuple[float, Path]:
        async with fault_server(tmp_path) as (server, address), bystanders(server, address) as b:
            tasks = len(asyncio.all_tasks())
            async with SipPeer.running() as phone, \
                    sip_call(address, phone, "reset", recorder={"recorderFile": "reset.wav"}) as (app, leg):
                answered = time.monotonic()
                mark = app.mark()
                await app.send({"command": "tts", "text": "Thank you for calling. Your order number is four seven "
                                "two nine. Would you like to hear about delivery times?", "playId": "long"})
                await app.wait_event("trackStart", mark, playId="long")
                await asyncio.sleep(1.0)
                reset(app)
                gone = time.monotonic()
                await asyncio.wait_for(leg.ended.wait(), 5.0)
                assert leg.end_reason == "bye"
                (bye,) = phone.times_of("BYE")
                assert bye - gone < 1.0, f"the BYE came {bye - gone:.2f} s after the reset"
                await wait_until(lambda: "reset" not in server.sessions, timeout=1.0, what="the call ended")
                assert await listed(address) == ["bystander-sip", "bystander-ws"]
                assert server.sip.ports.in_use == 1
            await wait_until(lambda: len(asyncio.all_tasks()) <= tasks, what="the call's tasks ended")
            await check_unaffected(b)
            return gone - answered, tmp_path / "data" / "recordings" / "reset.wav"

    length, path = asyncio.run(run())
    with wave.open(str(path)) as wav:            # a valid header whose sizes match the data
        assert (wav.getnchannels(), wav.getsampwidth()) == (2, 2)
        seconds = wav.getnframes() / wav.getframerate()
    assert path.stat().st_size == 44 + wav.getnframes() * 4
    assert abs(seconds - length) < 0.3, (seconds, length)
    pcm, rate = read_wav(path)
    caller, ours = pcm[:, 0].astype(float), pcm[:, 1].astype(float)
    assert np.sqrt(np.mean(caller ** 2)) > 1000            # the phone's tone
    assert np.sqrt(np.mean(ours[-rate // 2:] ** 2)) > 100  # our speech, up to the reset


@pytest.mark.parametrize("stage", ["incoming", "ringing", "early media"])
def test_an_application_reset_before_it_decides_declines_the_invite_and_frees_it(tmp_path: Path, stage: str) -> None:
    async def run() -> None:
        async with WebhookReceiver.running() as hook, \
                fault_server(tmp_path, webhook=WebhookConfig(url=hook.url)) as (server, address), \
                bystanders(server, address) as b:
            assert server.sip.address is not None
            tasks = len(asyncio.all_tasks())
            async with SipPeer.running() as caller:
                call = await caller.call(server.sip.address[1])
                post = await hook.next_post()
                async with Call.open(address, f"id={post['dialogId']}&pingInterval=0&dump=false",
                                     path="/call/sip") as app:
                    await app.wait_event("incoming")
                    if stage != "incoming":
                        await app.send({"command": "ringing", "option": {"codec": "pcmu"},
                                        "earlyMedia": stage == "early media"})
                        await caller.wait_heard("SIP/2.0 183" if stage == "early media" else "SIP/2.0 180")
                    reset(app)
                    gone = time.monotonic()
                await asyncio.wait_for(call.ended.wait(), 5.0)
                assert call.failed == 603 and time.monotonic() - gone < 1.0, (call.failed, time.monotonic() - gone)
                await wait_until(lambda: post["dialogId"] not in server.sessions, timeout=1.0, what="the call ended")
                assert not server.sip.pending and await listed(address) == ["bystander-sip", "bystander-ws"]
                assert (server.sip.ports.in_use, server.media.engine.leg_count) == (1, 2)
            await wait_until(lambda: len(asyncio.all_tasks()) <= tasks, what="the call's tasks ended")
            await check_unaffected(b)
    asyncio.run(run())


# -- 6. a full disk under the recordings ---------------------------------------------------------------------------
@pytest.mark.skipif(not can_mount(), reason="mounting a small tmpfs needs root (CAP_SYS_ADMIN)")
def test_a_full_disk_stops_the_recording_with_an_error_and_the_call_goes_on(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 1 << 20) as disk:
        fill(disk, 96 * 1024)

        async def run() -> None:
            async with fault_server(tmp_path, recordings_dir=disk) as (server, address), \
                    bystanders(server, address) as b, SipPeer.running() as phone, \
                    sip_call(address, phone, "full", recorder={"recorderFile": "full.wav"}) as (app, leg):
                error = await app.wait_event("error", timeout=8.0)
                assert (error["sender"], error["error"]) == ("recorder", "recording stopped: No space left on device")
                assert free_bytes(disk) < 64 * 1024
                mark = app.mark()
                await app.send(tone_tts(0.5, "after"))
                await app.wait_event("trackEnd", mark, playId="after", timeout=5.0)
                assert errors(app.events(mark)) == []
                assert leg.missing() == 0 and leg.longest_gap() < GAP_S and not leg.ended.is_set()
                await app.send({"command": "hangup"})
                hangup = await app.wait_event("hangup")
                assert (hangup["initiator"], hangup.get("reason")) == ("user", None), hangup
                await asyncio.wait_for(leg.ended.wait(), 5.0)
                assert [e["event"] for e in app.events()] == ["answer", "error", "trackStart", "trackEnd", "hangup"]
                await check_unaffected(b)
                _, _, health = await http(address, "GET", "/health")
                assert health["status"] == "ok" and health["calls"] == 0

        asyncio.run(run())
        pcm, rate = read_wav(disk / "full.wav")      # what was recorded before the disk filled stays readable
        assert pcm.shape[1] == 2 and len(pcm) > rate // 2
