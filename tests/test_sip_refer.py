"""refer: a /call WebSocket call bridged to a phone (sipp as the transfer callee), audio checked both ways.

The callee's SDP names the test's own UDP socket, so the test sees exactly the RTP the transfer leg
sends (the caller's tone, transcoded to PCMU) and answers with a tone of its own, which must come
out of the WebSocket call's audio. Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

from pbx.core import g711
from support.audio import tone, write_wav
from tests.support.calls import Call, running_server

FIXTURES = Path(__file__).parent / "fixtures" / "sipp"
pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dominant_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm))


def rtp_packet(seq: int, ts: int, payload: bytes, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def test_refer_bridges_a_websocket_call_to_a_phone_and_audio_flows_both_ways(tmp_path: Path) -> None:
    """The callee is named by host name (localhost): it is looked up off the event loop first."""
    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.bind(("127.0.0.1", 0))
    media.setblocking(False)
    rtp_port = media.getsockname()[1]
    sipp_port = free_udp_port()

    async def run() -> tuple[float, float, list[str], int]:
        loop = asyncio.get_running_loop()
        async with running_server(tmp_path) as (_, address):
            sipp = await asyncio.create_subprocess_exec(
                "sipp", "-sf", str(FIXTURES / "transfer_callee.xml"), "-i", "127.0.0.1", "-p", str(sipp_port),
                "-m", "1", "-key", "rtpport", str(rtp_port), "-timeout", "30", "-nostdin", "-trace_err",
                cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            try:
                async with Call.open(address, "id=referring&pingInterval=0") as call:
                    await call.send({"command": "invite", "option": {"codec": "pcm"}})
                    await call.wait_event("answer")
                    await call.send({"command": "refer", "caller": "sip:bot@127.0.0.1",
                                     "callee": f"sip:callee@localhost:{sipp_port}", "options": {"timeout": 10}})
                    caller_tone = tone(440.0, 16000, 4.0, 0.3)

                    async def speak() -> None:
                        start = loop.time()
                        for i in range(0, len(caller_tone), 320):
                            await call.ws.send(caller_tone[i:i + 320].tobytes())
                            await asyncio.sleep(max(0.0, start + (i // 320 + 1) * 0.02 - loop.time()))

                    speaker = asyncio.create_task(speak())
                    received: list[bytes] = []
                    callee_tone = tone(1000.0, 8000, 2.0, 0.3)

                    async def answer_back(peer: tuple[str, int]) -> None:
                        """Symmetric RTP: the callee's tone goes where the transfer leg's packets come from."""
                        start = loop.time()
                        for i in range(len(callee_tone) // 160):
                            chunk = callee_tone[i * 160:(i + 1) * 160]
                            media.sendto(rtp_packet(i, i * 160, g711.ulaw_encode(chunk)), peer)
                            await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - loop.time()))

                    answering: asyncio.Task[None] | None = None
                    deadline = loop.time() + 8.0
                    while loop.time() < deadline and len(received) < 150:
                        with contextlib.suppress(TimeoutError):
                            data, peer = await asyncio.wait_for(loop.sock_recvfrom(media, 2048), 0.1)
                            received.append(data[12:])
                            if answering is None:
                                answering = asyncio.create_task(answer_back(peer))
                    if answering is not None:
                        await answering
                    await speaker
                    await asyncio.sleep(0.3)
                    await call.send({"command": "hangup"})
                    await call.wait_event("hangup")
                    heard = np.frombuffer(b"".join(f for f in call.log if isinstance(f, bytes)), dtype="<i2")
                    names = [e["event"] for e in call.events()]
            finally:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sipp.wait(), 10)
                if sipp.returncode is None:
                    sipp.kill()
                    await sipp.wait()
            assert len(received) >= 100, f"the transfer leg sent {len(received)} RTP packets"
            at_callee = g711.ulaw_decode(b"".join(received[20:100]))
            onset = int(np.argmax(np.abs(heard.astype(np.int32)) > 1000))     # where the callee's tone begins
            loud = heard[onset + 1600:onset + 17600]
            return dominant_hz(at_callee, 8000), dominant_hz(loud, 16000), names, sipp.returncode

    callee_hz, caller_hz, names, rc = asyncio.run(run())
    media.close()
    assert abs(callee_hz - 440.0) < 10, callee_hz          # the WebSocket caller's tone reached the phone
    assert abs(caller_hz - 1000.0) < 10, caller_hz         # the phone's tone reached the WebSocket caller
    assert "error" not in names and "reject" not in names, names
    assert rc == 0                                         # sipp saw the whole exchange, BYE included


def test_refer_to_a_callee_that_never_answers_plays_hold_music_then_rejects_408_and_the_call_goes_on(
        tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    write_wav(tmp_path / "media" / "hold.wav", tone(500.0, 16000, 5.0, 0.2), 16000)
    silent_port = free_udp_port()      # nothing listens there: the INVITE goes unanswered

    async def run() -> list[tuple[str, object]]:
        async with running_server(tmp_path) as (_, address), \
                Call.open(address, "id=referring&pingInterval=0") as call:
            await call.send({"command": "invite", "option": {"codec": "pcm"}})
            await call.wait_event("answer")
            start = call.mark()
            await call.send({"command": "refer", "caller": "sip:bot@127.0.0.1",
                             "callee": f"sip:nobody@127.0.0.1:{silent_port}",
                             "options": {"timeout": 1, "moh": "hold.wav"}})
            await call.wait_event("reject", start, timeout=5.0)
            await call.send({"command": "tts", "text": "still here", "playId": "after"})
            await call.wait_event("trackEnd", start, playId="after", timeout=10.0)
            await call.send({"command": "hangup"})
            await call.wait_event("hangup", start)
            return [(e["event"], e.get("code")) for e in call.events(start)
                    if e["event"] in ("trackStart", "interruption", "reject", "error", "hangup")]

    events = asyncio.run(run())
    # the music stops at the reject (its interruption event comes with the next media frame)
    assert events[0] == ("trackStart", None) and sorted(events[1:3], key=str) == [("interruption", None),
                                                                                 ("reject", 408)], events
    assert ("error", None) not in events and events[-1] == ("hangup", None)
