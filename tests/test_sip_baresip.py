"""Interop with baresip, a real SIP user agent, on loopback: calls both ways with audio checked by content.

baresip runs headless from a config folder written per test (:class:`Baresip`): SIP on a free loopback
port, its network bound to 127.0.0.1 (``net_interface``; the name ``lo`` is refused, since libre skips
loopback interfaces), its DNS server set to 127.0.0.1:53 (only numeric hosts are dialled, so it never
asks), and no NAT (stun/turn/ice), registration (``regint=0``) or sound-card modules. Under strace it
sends only to 127.0.0.1. Its microphone is ``aufile`` playing a generated 1000 Hz tone (deterministic;
ausine needs 48 kHz stereo); ``audio_player nil`` plays nothing, and what baresip hears is dumped by the
``sndfile`` filter (``dump-<time>-dec.wav``, the decoded far end). It is driven over ``ctrl_tcp``
(netstring JSON commands and events; ``dial``, ``hangup``, ``hold`` etc. come from the ``menu`` module,
accounts are loaded by ``account``).

Each call checks both directions by frequency, once per codec (pcmu, pcma, g722, opus): the server's
recording has baresip's tone in the caller channel, and baresip's dump has the 600 Hz tone the
application played from the server's media folder.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pbx.sip.config import SipConfig, WebhookConfig
from support.audio import read_wav, tone, write_wav
from tests.support.calls import Call, Event, running_server
from tests.support.sip import WebhookReceiver

BARESIP = shutil.which("baresip")
pytestmark = pytest.mark.skipif(BARESIP is None, reason="baresip is not installed (Debian package baresip)")

PEER_TONE_HZ = 1000.0      # what baresip sends (aufile)
OUR_TONE_HZ = 600.0        # what the application plays through the server
TOLERANCE_HZ = 10.0
PEER_SECONDS = 30.0        # longer than any call here: at its end aufile would end baresip's call
CALL_SECONDS = 3.0         # how long the application keeps the call up
BARESIP_CODECS = {"pcmu": "PCMU", "pcma": "PCMA", "g722": "G722", "opus": "opus"}   # ours -> baresip's names
SDP_NAMES = {"pcmu": "PCMU/8000", "pcma": "PCMA/8000", "g722": "G722/8000", "opus": "opus/48000/2"}


# -- helpers ---------------------------------------------------------------------------------------------------
def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (baresip listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for both UDP and TCP on 127.0.0.1")


def peak_hz(pcm: np.ndarray, rate: int) -> float:
    """The frequency of the strongest FFT bin (Hann window), interpolated between bins."""
    x = pcm.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    spectrum[0] = 0.0
    k = int(np.argmax(spectrum))
    if 0 < k < len(spectrum) - 1:          # parabolic interpolation of the peak
        a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-12)
        k += 0.5 * (a - c) / (a - 2 * b + c)
    return float(k * rate / len(x))


def loud_part(pcm: np.ndarray, rate: int) -> np.ndarray:
    """The 20 ms frames louder than -30 dBFS: the tone, without the silence around it."""
    n = rate // 50
    frames = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    loud: np.ndarray = frames[rms > 32768 * 10 ** (-30 / 20)].reshape(-1)
    return loud


def assert_tone(pcm: np.ndarray, rate: int, expected_hz: float, what: str, min_seconds: float = 1.0) -> None:
    loud = loud_part(pcm, rate)
    assert len(loud) >= min_seconds * rate, (
        f"{what}: only {len(loud) / rate:.2f} s of audio above -30 dBFS in {len(pcm) / rate:.2f} s")
    found = peak_hz(loud, rate)
    assert abs(found - expected_hz) <= TOLERANCE_HZ, f"{what}: peak at {found:.1f} Hz, expected {expected_hz:g} Hz"


CONFIG = """\
poll_method         epoll
sip_listen          127.0.0.1:{sip_port}
net_interface       127.0.0.1
dns_server          127.0.0.1:53
rtp_ports           {rtp_low}-{rtp_high}
rtcp_mux            no
jitter_buffer_delay 1-5
audio_source        aufile,{source}
audio_player        nil,nil
audio_alert         nil,nil
ausrc_srate         8000
auplay_srate        8000
ausrc_channels      1
auplay_channels     1
module_path         /usr/lib/baresip/modules
module              g711.so
module              g722.so
module              opus.so
module              aufile.so
module              sndfile.so
snd_path            {dumps}
module_tmp          account.so
module_app          menu.so
module_app          ctrl_tcp.so
ctrl_tcp_listen     127.0.0.1:{ctrl_port}
"""


class Baresip:
    """A baresip process with its own config folder, driven over ctrl_tcp."""

    def __init__(self, root: Path, codec: str = "pcmu") -> None:
        self.root = root
        self.codec = codec
        self.sip_port = free_port()
        self.ctrl_port = free_port()
        self.dumps = root / "dumps"
        self.events: list[Event] = []
        self._arrived = asyncio.Condition()
        self._replies: dict[str, asyncio.Future[Event]] = {}
        self._tokens = 0
        self.process: asyncio.subprocess.Process | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    def write_config(self) -> None:
        self.dumps.mkdir(parents=True, exist_ok=True)
        source = self.root / "tone.wav"
        write_wav(source, tone(PEER_TONE_HZ, 8000, PEER_SECONDS, amplitude=0.3), 8000)
        rtp_low = 40000 + 2 * (self.sip_port % 4000)
        (self.root / "config").write_text(CONFIG.format(
            sip_port=self.sip_port, rtp_low=rtp_low, rtp_high=rtp_low + 100, source=source,
            dumps=self.dumps, ctrl_port=self.ctrl_port))
        # no registration (regint=0), answer at once, offer and accept only the codec under test
        (self.root / "accounts").write_text(
            f"<sip:test@127.0.0.1>;regint=0;answermode=auto;audio_codecs={BARESIP_CODECS[self.codec]}\n")

    async def __aenter__(self) -> Baresip:
        self.write_config()
        log = (self.root / "baresip.log").open("wb")
        assert BARESIP is not None
        self.process = await asyncio.create_subprocess_exec(
            BARESIP, "-f", str(self.root), "-v", stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        try:
            reader = await self._connect(self.process)
        except BaseException:
            await self.__aexit__()
            raise
        self._reader_task = asyncio.create_task(self._read(reader))
        return self

    async def _connect(self, process: asyncio.subprocess.Process) -> asyncio.StreamReader:
        """Connect to ctrl_tcp once baresip listens (it starts in well under a second)."""
        for _ in range(100):
            try:
                reader, self._writer = await asyncio.open_connection("127.0.0.1", self.ctrl_port)
                return reader
            except OSError:
                if process.returncode is not None:
                    raise AssertionError(f"baresip exited: {self.log()}") from None
                await asyncio.sleep(0.05)
        raise AssertionError(f"baresip's ctrl_tcp did not come up: {self.log()}")

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def log(self) -> str:
        return (self.root / "baresip.log").read_text(errors="replace")[-4000:]

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            length = int((await reader.readuntil(b":"))[:-1])
            message: Event = json.loads(await reader.readexactly(length))
            await reader.readexactly(1)     # the netstring's ","
            if message.get("response"):
                future = self._replies.pop(str(message.get("token")), None)
                if future is not None and not future.done():
                    future.set_result(message)
            else:
                async with self._arrived:
                    self.events.append(message)
                    self._arrived.notify_all()

    async def command(self, command: str, params: str = "") -> Event:
        assert self._writer is not None
        self._tokens += 1
        token = str(self._tokens)
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._replies[token] = future
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._writer.write(b"%d:%s," % (len(body), body))
        await self._writer.drain()
        reply = await asyncio.wait_for(future, 5)
        assert reply.get("ok"), f"baresip {command} {params}: {reply}"
        return reply

    async def wait_event(self, kind: str, timeout: float = 10.0) -> Event:
        async def find() -> Event:
            async with self._arrived:
                while True:
                    found = next((e for e in self.events if e.get("type") == kind), None)
                    if found is not None:
                        return found
                    await self._arrived.wait()
        try:
            return await asyncio.wait_for(find(), timeout)
        except TimeoutError:
            raise AssertionError(f"baresip: no {kind} within {timeout} s; events {self.events}; "
                                 f"log {self.log()}") from None

    def heard(self) -> tuple[np.ndarray, int]:
        """What baresip decoded from us (the sndfile dump of the far end)."""
        dumps = sorted(self.dumps.glob("dump-*-dec.wav"))
        assert dumps, f"baresip wrote no decoded-audio dump; log {self.log()}"
        pcm, rate = read_wav(dumps[-1])
        return (pcm[:, 0] if pcm.ndim > 1 else pcm), rate


@contextlib.asynccontextmanager
async def pypbx(tmp_path: Path, webhook: WebhookReceiver | None = None) -> AsyncIterator[tuple[Any, str]]:
    """The server with SIP on a free loopback port, a 600 Hz tone in its media folder."""
    media = tmp_path / "media"
    media.mkdir()
    write_wav(media / "tone600.wav", tone(OUR_TONE_HZ, 16000, CALL_SECONDS + 2.0, amplitude=0.3), 16000)
    hook = WebhookConfig(url=webhook.url) if webhook is not None else WebhookConfig()
    async with running_server(tmp_path / "data", media_dir=media, sip=SipConfig(addr="127.0.0.1:0"),
                              webhook=hook) as (server, address):
        yield server, address


def recorded_caller(tmp_path: Path, name: str) -> tuple[np.ndarray, int]:
    """The caller (left) channel of the server's recording."""
    pcm, rate = read_wav(tmp_path / "data" / "recordings" / name)
    return (pcm[:, 0] if pcm.ndim > 1 else pcm), rate


# -- the calls --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", list(BARESIP_CODECS))
def test_baresip_calls_us_and_both_sides_hear_each_other(tmp_path: Path, codec: str) -> None:
    async def run() -> list[Event]:
        async with WebhookReceiver.running() as webhook, pypbx(tmp_path, webhook) as (server, address), \
                Baresip(tmp_path / "baresip", codec) as peer:
            sip_port = server.sip.address[1]
            await peer.command("dial", f"sip:bot@127.0.0.1:{sip_port}")
            post = await webhook.next_post(timeout=10)
            assert post["event"] == "invite" and post["callee"].startswith("sip:bot@127.0.0.1")
            async with Call.open(address, f"id={post['dialogId']}&pingInterval=0", path="/call/sip") as call:
                incoming = await call.wait_event("incoming")
                assert incoming["caller"].startswith("sip:test@127.0.0.1")
                await call.send({"command": "accept", "option": {
                    "codec": codec, "recorder": {"recorderFile": "inbound.wav"}}})
                answer = await call.wait_event("answer")
                assert SDP_NAMES[codec] in answer["sdp"]
                await peer.wait_event("CALL_ESTABLISHED")
                await call.send({"command": "play", "url": "tone600.wav"})
                await call.wait_event("trackStart")
                await asyncio.sleep(CALL_SECONDS)      # both tones flow for a while
                await call.send({"command": "hangup"})
                hangup = await call.wait_event("hangup")
                await peer.wait_event("CALL_CLOSED")
                return [*call.events(), hangup]

    events = asyncio.run(run())
    assert events[-1]["event"] == "hangup"
    caller, rate = recorded_caller(tmp_path, "inbound.wav")
    assert_tone(caller, rate, PEER_TONE_HZ, "the server's recording of baresip")
    heard, heard_rate = Baresip(tmp_path / "baresip").heard()
    assert_tone(heard, heard_rate, OUR_TONE_HZ, "baresip's dump of what it heard")


@pytest.mark.parametrize("codec", list(BARESIP_CODECS))
def test_we_call_baresip_it_answers_and_hangs_up(tmp_path: Path, codec: str) -> None:
    async def run() -> tuple[list[Event], Event]:
        async with pypbx(tmp_path) as (_, address), Baresip(tmp_path / "baresip", codec) as peer, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await call.send({"command": "invite", "option": {
                "callee": f"sip:test@127.0.0.1:{peer.sip_port}", "caller": "sip:bot@127.0.0.1",
                "codec": codec, "recorder": {"recorderFile": "outbound.wav"}}})
            answer = await call.wait_event("answer", timeout=10)
            assert SDP_NAMES[codec] in answer["sdp"]
            await peer.wait_event("CALL_ESTABLISHED")
            await call.send({"command": "play", "url": "tone600.wav"})
            await call.wait_event("trackStart")
            await asyncio.sleep(CALL_SECONDS)
            await peer.command("hangup")
            hangup = await call.wait_event("hangup")
            await peer.wait_event("CALL_CLOSED")
            return call.events(), hangup

    events, hangup = asyncio.run(run())
    assert hangup["initiator"] == "callee", hangup
    assert [e["event"] for e in events].count("hangup") == 1
    caller, rate = recorded_caller(tmp_path, "outbound.wav")
    assert_tone(caller, rate, PEER_TONE_HZ, "the server's recording of baresip")
    heard, heard_rate = Baresip(tmp_path / "baresip").heard()
    assert_tone(heard, heard_rate, OUR_TONE_HZ, "baresip's dump of what it heard")


def test_our_dtmf_command_reaches_baresip_as_rfc_4733_keys(tmp_path: Path) -> None:
    """``dtmf`` (our extension) sends RFC 4733 events; baresip reports each key it decodes."""
    async def run() -> list[Event]:
        async with pypbx(tmp_path) as (_, address), Baresip(tmp_path / "baresip") as peer, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await call.send({"command": "invite", "option": {
                "callee": f"sip:test@127.0.0.1:{peer.sip_port}", "codec": "pcmu"}})
            await call.wait_event("answer", timeout=10)
            await peer.wait_event("CALL_ESTABLISHED")
            await call.send({"command": "dtmf", "digits": "42*#"})
            await asyncio.sleep(1.5)          # 4 keys of 100 ms with 60 ms gaps, and margin
            await call.send({"command": "hangup"})
            await call.wait_event("hangup")
            await peer.wait_event("CALL_CLOSED")
            return peer.events

    events = asyncio.run(run())
    assert [e.get("param") for e in events if e.get("type") == "CALL_DTMF_START"] == ["4", "2", "*", "#"], events


def test_baresip_sends_dtmf_and_holds_then_resumes(tmp_path: Path) -> None:
    """RFC 4733 keys from baresip become ``dtmf`` events; its hold and resume re-INVITEs (a=sendonly, then
    sendrecv) are answered and reported; the call's audio goes on after the resume."""
    async def run() -> list[Event]:
        async with pypbx(tmp_path) as (_, address), Baresip(tmp_path / "baresip") as peer, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await call.send({"command": "invite", "option": {
                "callee": f"sip:test@127.0.0.1:{peer.sip_port}", "codec": "pcmu",
                "recorder": {"recorderFile": "held.wav"}}})
            await call.wait_event("answer", timeout=10)
            await peer.wait_event("CALL_ESTABLISHED")
            await peer.command("sndcode", "19#")
            await call.wait(lambda: len([e for e in call.events() if e["event"] == "dtmf"]) >= 3)
            await peer.command("hold")
            held = await call.wait_event("other", sender="sip")
            assert held["extra"] == {"method": "INVITE", "hold": True, "resumed": False, "codec": "pcmu"}
            mark = call.mark()
            await peer.command("resume")
            resumed = await call.wait_event("other", since=mark, sender="sip")
            assert resumed["extra"] == {"method": "INVITE", "hold": False, "resumed": True, "codec": "pcmu"}
            await asyncio.sleep(1.5)        # audio after the resume
            await call.send({"command": "hangup"})
            await call.wait_event("hangup")
            await peer.wait_event("CALL_CLOSED")
            return call.events()

    events = asyncio.run(run())
    assert [e["digit"] for e in events if e["event"] == "dtmf"] == ["1", "9", "#"]
    assert [e["event"] for e in events].count("hangup") == 1
    caller, rate = recorded_caller(tmp_path, "held.wav")
    assert_tone(caller[-rate:], rate, PEER_TONE_HZ, "the last second of the recording, after the resume",
                min_seconds=0.5)
