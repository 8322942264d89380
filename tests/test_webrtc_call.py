"""``/call/webrtc`` end to end, with aiortc's RTCPeerConnection as the browser, on loopback.

The peer sends an espeak-ng phrase from a WAV file (aiortc's MediaPlayer) and keeps every audio frame it
receives. The server's host candidate is 127.0.0.1 from its ``[webrtc] addr``; the peer's own gathering
(aioice) would take every interface but loopback, so the tests limit it to 127.0.0.1 (the peer only: the
server's candidates come from its config).
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioice.ice
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer

from pbx.server.app import CallServer
from pbx.sip.config import SipConfig
from pbx.webrtc.config import WebRtcConfig
from support.audio import espeak_speech, read_wav, tone, write_wav
from tests.support.calls import Call, Event, running_server
from tests.support.sip import sipp_callee
from tests.test_media import peak_hz
from tests.test_server_e2e import GRAMMAR, PHRASE

WEBRTC = WebRtcConfig(addr="127.0.0.1")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def loopback_peer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield


@dataclass
class Browser:
    """An aiortc peer connection sending a WAV file and keeping what it hears (mono, its sample rate)."""

    pc: RTCPeerConnection
    heard: list[np.ndarray] = field(default_factory=list)
    rate: int = 48000
    readers: list[asyncio.Future[None]] = field(default_factory=list)

    @classmethod
    def sending(cls, wav: Path | None) -> Browser:
        pc = RTCPeerConnection()
        browser = cls(pc)
        if wav is not None:
            pc.addTrack(MediaPlayer(str(wav)).audio)
        else:
            pc.addTransceiver("audio", direction="recvonly")
        pc.on("track", browser._listen)
        return browser

    def _listen(self, track: MediaStreamTrack) -> None:
        async def consume() -> None:
            while True:
                try:
                    frame = await track.recv()
                except Exception:       # MediaStreamError: the track ended
                    return
                samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))
                self.rate = frame.sample_rate
                self.heard.append(samples[:, 0].copy())
        self.readers.append(asyncio.ensure_future(consume()))

    async def offer(self, codec: str | None = None) -> str:
        if codec is not None:
            for transceiver in self.pc.getTransceivers():
                wanted = [c for c in transceiver.receiver.getCapabilities("audio").codecs if c.name == codec]
                transceiver.setCodecPreferences(wanted)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def take(self, answer: Event) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    def audio(self) -> np.ndarray:
        return np.concatenate(self.heard) if self.heard else np.zeros(0, np.int16)


def speech_wav(tmp_path: Path) -> Path:
    """The phrase with a second of silence after it (so that the VAD and the recogniser finish it)."""
    path = tmp_path / "caller.wav"
    silence = np.zeros(16000, np.int16)
    write_wav(path, np.concatenate([silence[:8000], espeak_speech(16000, text=PHRASE), silence, silence]), 16000)
    return path


@asynccontextmanager
async def webrtc_server(tmp_path: Path) -> AsyncIterator[tuple[CallServer, str]]:
    async with running_server(tmp_path / "data", webrtc=WEBRTC) as (server, address):
        yield server, address


async def connect(call: Call, browser: Browser, **option: Any) -> Event:
    codec = option.pop("browser_codec", None)
    await call.send({"command": "invite", "option": {"offer": await browser.offer(codec), **option}})
    answer = await call.wait_event("answer", timeout=5.0)
    await browser.take(answer)
    return answer


def test_a_browser_call_speaks_is_heard_recognised_and_hears_tts(tmp_path: Path) -> None:
    async def run() -> tuple[list[Event], Browser, str]:
        try:
            return await call_and_hang_up()
        finally:
            leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()
                        and "pbx" in repr(t.get_coro())]
            assert leftover == [], leftover

    async def call_and_hang_up() -> tuple[list[Event], Browser, str]:
        async with webrtc_server(tmp_path) as (_, address), \
                Call.open(address, "pingInterval=0", path="/call/webrtc") as call:
            browser = Browser.sending(speech_wav(tmp_path))
            try:
                answer = await connect(call, browser, vad={"type": "webrtc"}, asr={
                    "provider": "pocketsphinx", "extra": {"grammar": GRAMMAR}})
                final = await call.wait_event("asrFinal", timeout=15.0)
                mark = len(browser.heard)
                await call.send({"command": "tts", "text": "Hello there, how can I help you?", "playId": "hi"})
                end = await call.wait_event("trackEnd", timeout=10.0)
                await asyncio.sleep(0.3)
                browser.heard = browser.heard[mark:]
                await call.send({"command": "hangup"})
                await call.wait_event("hangup")
                await asyncio.sleep(0.5)
                state = str(browser.pc.connectionState)
                assert final["text"] == PHRASE and end["event"] == "trackEnd"
                return call.events(), browser, state + "|" + answer["sdp"]
            finally:
                await browser.pc.close()

    events, browser, state = asyncio.run(run())
    names = [e["event"] for e in events]
    assert names[0] == "answer" and "speaking" in names and "silence" in names and "asrFinal" in names
    assert state.startswith("closed|")                    # our DTLS close_notify ended the browser's side
    assert "a=ice-lite" in state and "opus/48000/2" in state
    end = next(e for e in events if e["event"] == "trackEnd")
    heard = browser.audio().astype(np.float64)
    frame = browser.rate // 50
    n = len(heard) // frame
    power = (heard[:n * frame].reshape(n, frame) ** 2).mean(axis=1)
    loud = np.flatnonzero(power > 3400.0)
    assert len(loud) > 0, "the browser heard nothing"
    span_ms = (loud[-1] - loud[0] + 1) * 20
    assert 0.5 * end["duration"] <= span_ms <= end["duration"] + 100, (span_ms, end["duration"])
    hangup = events[-1]
    assert hangup["event"] == "hangup" and hangup["extra"]["rtp"]["packetsReceived"] > 100


def test_a_pcmu_offer_is_answered_pcmu_and_a_tone_comes_through(tmp_path: Path) -> None:
    async def run() -> tuple[Event, Browser, Event]:
        async with webrtc_server(tmp_path) as (_, address), \
                Call.open(address, "pingInterval=0", path="/call/webrtc") as call:
            browser = Browser.sending(None)
            try:
                answer = await connect(call, browser, browser_codec="PCMU")
                samples = tone(600, 16000, 1.0, 0.3).astype("<i2").tobytes()
                await call.send({"command": "tts", "text": base64.b64encode(samples).decode(), "base64": True,
                                 "playId": "tone"})
                await call.wait_event("trackEnd", timeout=10.0)
                await asyncio.sleep(0.3)
                await browser.pc.close()                   # the browser leaves: close_notify
                hangup = await call.wait_event("hangup", timeout=5.0)
                return answer, browser, hangup
            finally:
                await browser.pc.close()

    answer, browser, hangup = asyncio.run(run())
    assert "PCMU/8000" in answer["sdp"] and "opus" not in answer["sdp"]
    heard = browser.audio().astype(np.float64)
    loud = heard[np.abs(heard) > 1000]
    assert len(loud) > browser.rate * 0.5
    assert abs(peak_hz(heard[-int(browser.rate * 1.2):], browser.rate) - 600) < 15
    assert hangup["reason"] == "remote_hangup" and hangup["initiator"] == "caller"


def test_a_peer_that_never_completes_dtls_ends_with_handshake_timeout(tmp_path: Path) -> None:
    async def run() -> Event:
        async with webrtc_server(tmp_path) as (_, address), \
                Call.open(address, "pingInterval=0", path="/call/webrtc") as call:
            browser = Browser.sending(None)
            try:
                await call.send({"command": "invite", "option": {"offer": await browser.offer(),
                                                                 "handshakeTimeout": 1}})
                await call.wait_event("answer")               # the browser never takes the answer
                return await call.wait_event("hangup", timeout=5.0)
            finally:
                await browser.pc.close()

    hangup = asyncio.run(run())
    assert hangup["reason"] == "handshake_timeout" and hangup["initiator"] == "system"


@pytest.mark.parametrize(("offer", "why"), [
    ("", "needs the browser's SDP offer"),
    ("v=0\r\nthis is not sdp", "is not valid SDP"),
    ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\n",
     "a WebRTC offer's is UDP/TLS/RTP/SAVPF"),
])
def test_a_bad_offer_gets_an_error_and_the_socket_stays_usable(tmp_path: Path, offer: str, why: str) -> None:
    async def run() -> tuple[Event, list[Event]]:
        async with webrtc_server(tmp_path) as (_, address), \
                Call.open(address, "pingInterval=0", path="/call/webrtc") as call:
            await call.send({"command": "invite", "option": {"offer": offer}})
            error = await call.wait_event("error")
            browser = Browser.sending(None)
            try:
                await connect(call, browser)                   # a good offer on the same socket still works
                await call.send({"command": "hangup"})
                await call.wait_event("hangup")
            finally:
                await browser.pc.close()
            return error, call.events()

    error, events = asyncio.run(run())
    assert error["sender"] == "webrtc" and why in error["error"], error
    assert [e["event"] for e in events][-2:] == ["answer", "hangup"]


def test_add_ice_candidate_is_taken_in_both_spellings(tmp_path: Path) -> None:
    async def run() -> list[Event]:
        async with webrtc_server(tmp_path) as (_, address), \
                Call.open(address, "pingInterval=0", path="/call/webrtc") as call:
            browser = Browser.sending(None)
            try:
                await connect(call, browser)
                for index_key in ("sdpMLineIndex", "sdpMlineIndex"):
                    await call.send({"command": "addIceCandidate", "sdpMid": "0", index_key: 0,
                                     "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"})
                await call.send({"command": "hangup"})
                await call.wait_event("hangup")
            finally:
                await browser.pc.close()
            return call.events()

    events = asyncio.run(run())
    assert [e["event"] for e in events] == ["answer", "hangup"], events


def test_enable_ipv6_gives_an_ipv6_host_candidate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``[webrtc] addr6`` and ``enableIpv6``, the answer's candidate is IPv6 and the call runs over it."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["::1"])

    async def run() -> tuple[Event, Event, Browser]:
        config = WebRtcConfig(addr="127.0.0.1", addr6="::1")
        async with running_server(tmp_path / "data", webrtc=config) as (_, address), \
                Call.open(address, "pingInterval=0", path="/call/webrtc") as call:
            browser = Browser.sending(None)
            try:
                answer = await connect(call, browser, enableIpv6=True)
                samples = tone(600, 16000, 0.5, 0.3).astype("<i2").tobytes()
                await call.send({"command": "tts", "text": base64.b64encode(samples).decode(), "base64": True})
                await call.wait_event("trackEnd", timeout=10.0)
                await call.send({"command": "hangup"})
                return answer, await call.wait_event("hangup"), browser
            finally:
                await browser.pc.close()

    answer, hangup, browser = asyncio.run(run())
    assert "c=IN IP6 ::1" in answer["sdp"] and " ::1 " in answer["sdp"]
    assert hangup["extra"]["rtp"]["packetsSent"] > 20 and len(browser.audio()) > 0


def test_the_webrtc_client_example_talks_to_the_server(tmp_path: Path) -> None:
    """examples/webrtc_client.py: its phrase is recognised, the server's reply is heard and written out."""
    async def run() -> tuple[int, str, str]:
        async with webrtc_server(tmp_path) as (_, address):
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "examples" / "webrtc_client.py"), "--url", f"ws://{address}",
                "--wav", str(speech_wav(tmp_path)), "--out", str(tmp_path / "heard.wav"), "--loopback",
                "--duration", "15", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
            out, err = await asyncio.wait_for(process.communicate(), 40)
            assert process.returncode is not None
            return process.returncode, out.decode(), err.decode()

    code, out, err = asyncio.run(run())
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "answer" and "speaking" in lines and "trackEnd" in lines and lines[-1].startswith("hangup")
    assert any(line.startswith("asrFinal:") for line in lines), out
    heard, rate = read_wav(tmp_path / "heard.wav")
    mono = heard[:, 0] if heard.ndim > 1 else heard
    assert len(mono) > rate and np.abs(mono.astype(np.int32)).max() > 3000


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")
def test_refer_bridges_a_browser_call_to_a_phone(tmp_path: Path) -> None:
    """``refer`` from a WebRTC call: sipp answers the transfer leg and plays speech (g711a.pcap); the
    bridge carries it to the browser; our hangup ends the phone's leg too (its scenario waits for the BYE)."""
    async def run() -> tuple[list[Event], Browser]:
        async with running_server(tmp_path / "data", webrtc=WEBRTC, sip=SipConfig(addr="127.0.0.1:0")) \
                as (_, address), sipp_callee("callee_answers.xml", tmp_path / "sipp") as phone, \
                Call.open(address, "pingInterval=0", path="/call/webrtc") as call:
            browser = Browser.sending(None)
            try:
                await connect(call, browser)
                await asyncio.sleep(0.3)                    # DTLS done: the bridge has keys to send with
                mark = len(browser.heard)
                await call.send({"command": "refer", "caller": "sip:bot@127.0.0.1", "callee": phone.uri})
                await asyncio.sleep(4.0)
                browser.heard = browser.heard[mark:]
                await call.send({"command": "hangup"})
                await call.wait_event("hangup", timeout=5.0)
                assert (await phone.finish()).rc == 0
                return call.events(), browser
            finally:
                await browser.pc.close()

    events, browser = asyncio.run(run())
    assert events[-1]["event"] == "hangup", events
    heard = browser.audio().astype(np.float64)
    assert len(heard) > browser.rate and np.sqrt(np.mean(heard ** 2)) > 100     # the phone's audio came through
