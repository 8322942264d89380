"""A bridge of two same-codec RTP legs relays the payload as it came (no decode-mix-encode on the way
out), while the decoded audio still reaches VAD, ASR and the recorder; anything that changes the
audio (a different codec, a prompt playing, mute) falls back to transcoding. Loopback sockets,
explicit times."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import pytest

from pbx.core import g711
from pbx.core.engine import Engine, Leg
from tests.test_rtp_latch import Net, addr, drain


@pytest.fixture
def net() -> Iterator[Net]:
    sockets = Net()
    yield sockets
    sockets.close()


def tone_payloads(count: int) -> list[bytes]:
    t = np.arange(count * 160) / 8000.0
    pcm = np.round(8000 * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16)
    return [g711.ulaw_encode(pcm[i * 160:(i + 1) * 160]) for i in range(count)]


def packet(seq: int, payload: bytes, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 160, 0xCAFE) + payload


def bridged(net: Net, codec_b: str) -> tuple[Engine, Leg, Leg, object, object]:
    e = Engine(4)
    ours_a, peer_a, ours_b, peer_b = net.sock(), net.sock(), net.sock(), net.sock()
    a = e.add_leg("udp", "pcmu", 0.0, fd=ours_a.fileno(), remote=addr(peer_a))
    b = e.add_leg("udp", codec_b, 0.0, fd=ours_b.fileno(), remote=addr(peer_b))
    e.bridge(a, b)
    return e, a, b, (peer_a, ours_a), peer_b


def run(e: Engine, peer_a_and_ours: object, peer_b: object, payloads: list[bytes], start_ms: float = 0.0
        ) -> list[bytes]:
    peer_a, ours_a = peer_a_and_ours  # type: ignore[misc]
    out: list[bytes] = []
    for i, payload in enumerate(payloads):
        peer_a.sendto(packet(i + 1, payload), addr(ours_a))
        e.tick(start_ms + 20.0 * i)
        out += [p[12:] for p in drain(peer_b)]  # type: ignore[arg-type]
    return out


def test_same_codec_legs_relay_the_payload_unchanged(net: Net) -> None:
    e, a, b, peer_a, peer_b = bridged(net, "pcmu")
    payloads = tone_payloads(50)
    out = run(e, peer_a, peer_b, payloads)
    relayed = b.stats["relayed_frames"]
    assert relayed >= 45, b.stats
    assert sum(p in payloads for p in out) >= 45           # byte for byte what the peer of A sent
    assert a.stats["relayed_frames"] == 0                   # nothing comes from B's peer to relay to A


def test_a_different_codec_or_relay_off_or_mute_transcodes(net: Net) -> None:
    e, _, b, peer_a, peer_b = bridged(net, "pcma")
    out = run(e, peer_a, peer_b, tone_payloads(20))
    assert b.stats["relayed_frames"] == 0 and len(out) >= 15
    decoded = np.concatenate([g711.alaw_decode(p) for p in out[5:15]])
    assert np.abs(decoded.astype(np.int32)).max() > 4000    # the tone, re-encoded as PCMA

    e, a, b, peer_a, peer_b = bridged(net, "pcmu")
    e.relay_bridges = False
    run(e, peer_a, peer_b, tone_payloads(10))
    assert b.stats["relayed_frames"] == 0

    e, a, b, peer_a, peer_b = bridged(net, "pcmu")
    e.set_inbound_mute(a, True)
    out = run(e, peer_a, peer_b, tone_payloads(10))
    assert b.stats["relayed_frames"] == 0
    assert all(set(p) <= {0xFF, 0x7F} for p in out)        # muted: PCMU silence, not the tone
