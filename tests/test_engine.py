"""The media engine end to end with explicit time: no sleeps, real audio, real sockets for UDP legs."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pbx.core import engine as eng
from pbx.core.engine import Engine, Leg
from pbx.core.g711 import ulaw_encode
from pbx.core.g722 import G722Encoder
from pbx.core.wav import WavWriter
from support.audio import espeak_speech, read_wav, tone
from tests.test_media import peak_hz

FRAME_MS = 20
RATE = 16000


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def push(e: Engine, leg: Leg, packets: list[tuple[bytes, float]]) -> None:
    if not packets:
        return
    blob = b"".join(p for p, _ in packets)
    offsets = np.cumsum([0] + [len(p) for p, _ in packets]).astype(np.int64)
    slots = np.full(len(packets), leg.slot, dtype=np.int32)
    arrivals = np.array([a for _, a in packets], dtype=np.float64)
    assert e.push_packets(slots, blob, offsets, arrivals) == len(packets)


def pcmu_stream(pcm8k: np.ndarray, ssrc: int = 0x1234, pt: int = 0, seq0: int = 100) -> list[tuple[bytes, float]]:
    """20 ms PCMU packets of ``pcm8k`` with their send times (ms)."""
    out = []
    for k in range(len(pcm8k) // 160):
        payload = ulaw_encode(np.ascontiguousarray(pcm8k[k * 160:(k + 1) * 160]))
        out.append((rtp(pt, seq0 + k, 160 * k, ssrc, payload, marker=k == 0), float(k * FRAME_MS)))
    return out


def run(e: Engine, start: float, frames: int,
        packets: list[tuple[bytes, float]] | None = None, leg: Leg | None = None,
        delay_ms: float = 5.0) -> list[tuple[int, int, int, int, int, int, int]]:
    """Tick ``frames`` times from ``start``, pushing each packet when its arrival time has come."""
    pending = sorted(packets or [], key=lambda p: p[1])
    events = []
    i = 0
    for k in range(frames):
        now = start + k * FRAME_MS
        due = []
        while i < len(pending) and pending[i][1] + delay_ms <= now:
            due.append((pending[i][0], pending[i][1] + delay_ms))
            i += 1
        if due and leg is not None:
            push(e, leg, due)
        events += e.tick(now)
    return events


LEAD_MS = 1000


def trimmed_speech() -> np.ndarray:
    """A spoken phrase cut to where its 10 ms level first and last reaches -30 dBFS (espeak fades in
    and out over tens of ms), with 2 ms ramps: the speech segment then has exact edges."""
    speech = espeak_speech(RATE, text="Hello there, how are you doing today?").astype(np.float64)
    win = 160
    rms = np.sqrt(np.mean(speech[: len(speech) // win * win].reshape(-1, win) ** 2, axis=1))
    loud = np.nonzero(rms > 32768 * 10 ** (-30 / 20))[0]
    cut = speech[loud[0] * win:(loud[-1] + 1) * win]
    ramp = np.linspace(0.0, 1.0, 32)
    cut[:32] *= ramp
    cut[-32:] *= ramp[::-1]
    return np.round(cut).astype(np.int16)


def speech_truth(pcm16k: np.ndarray) -> tuple[float, float]:
    """Onset and offset (ms) of the phrase inside the ``phrase`` fixture."""
    return float(LEAD_MS), LEAD_MS + len(trimmed_speech()) / 16.0


@pytest.fixture(scope="module")
def phrase() -> np.ndarray:
    """1 s silence, a spoken phrase with exact edges, 1.5 s silence at 16 kHz."""
    return np.concatenate([np.zeros(RATE * LEAD_MS // 1000, np.int16), trimmed_speech(),
                           np.zeros(RATE * 3 // 2, np.int16)])


def ten_available() -> bool:
    try:
        from pbx.core.ten import TenBank
        TenBank(1)
    except ImportError:
        return False
    return True


TEN = pytest.param("ten", 10, marks=[
    pytest.mark.ten,
    pytest.mark.skipif(not ten_available(), reason="ten VAD needs the optional ten-vad package and libc++1"),
])


@pytest.mark.parametrize(("vad", "window"), [("webrtc", 20), ("silero", 32), TEN])
def test_vad_events_within_one_window_of_the_truth(phrase: np.ndarray, vad: str, window: int) -> None:
    e = Engine(4)
    leg = e.add_leg("stream", "pcm", 0.0)  # 16 kHz s16le: frame k is leg time 20 k exactly
    e.set_vad(leg, vad, speech_padding_ms=100, silence_padding_ms=300)
    e.feed(leg, phrase.astype("<i2").tobytes())
    events = run(e, 0.0, len(phrase) // 320)
    onset, offset = speech_truth(phrase)
    speaking = [ev for ev in events if ev[1] == eng.SPEAKING]
    silence = [ev for ev in events if ev[1] == eng.SILENCE]
    assert len(speaking) >= 1 and len(silence) >= 1
    assert abs(speaking[0][3] - onset) <= window, (speaking, onset)
    # the last silence marks the end of the phrase; it is reported silencePadding after the offset
    last = silence[-1]
    assert abs(last[3] - offset) <= window, (silence, offset)
    assert last[3] + last[4] == last[2]
    assert abs(last[2] - (offset + 300)) <= 2 * window
    # nothing before the speech started
    assert speaking[0][2] >= onset


def test_vad_through_rtp_jitter_buffer_keeps_a_constant_delay(phrase: np.ndarray) -> None:
    e = Engine(4)
    leg = e.add_leg("packets", "pcmu", 0.0)
    e.set_vad(leg, "webrtc", speech_padding_ms=100, silence_padding_ms=300)
    pcm8k = phrase[::2].copy()  # crude decimation is fine for VAD timing
    events = run(e, 0.0, len(pcm8k) // 160 + 20, pcmu_stream(pcm8k), leg)
    onset, offset = speech_truth(phrase)
    speaking = [ev for ev in events if ev[1] == eng.SPEAKING]
    silence = [ev for ev in events if ev[1] == eng.SILENCE]
    d_on = speaking[0][3] - onset
    d_off = silence[-1][3] - offset
    # the jitter buffer and resampler add one constant delay to both edges
    assert 0 <= d_on <= 100 and abs(d_on - d_off) <= 40, (d_on, d_off)


def test_dtmf_from_rfc4733_stream_reported_exactly_once() -> None:
    e = Engine(4)
    leg = e.add_leg("packets", "pcmu", 0.0, dtmf_payload_type=101)
    packets, seq, t = [], 1000, 0.0
    silence = ulaw_encode(np.zeros(160, np.int16))
    for digit_code in (1, 2, 11, 1):  # "1", "2", "#", "1" again
        for _ in range(5):  # audio between presses
            packets.append((rtp(0, seq, int(t * 8), 7, silence), t))
            seq, t = seq + 1, t + 20
        ev_ts = int(t * 8)
        for k in range(5):
            end = k == 4
            payload = struct.pack("!BBH", digit_code, (0x80 if end else 0) | 10, 160 * (k + 1))
            for _ in range(3 if end else 1):  # the end packet three times
                packets.append((rtp(101, seq, ev_ts, 7, payload, marker=k == 0), t))
                seq += 1
            t += 20
    events = run(e, 0.0, int(t // 20) + 20, packets, leg)
    digits = [chr(ev[3]) for ev in events if ev[1] == eng.DTMF]
    assert digits == ["1", "2", "#", "1"]
    assert leg.dtmf_digits == 4


def test_muted_inbound_drops_dtmf_and_zeroes_audio(tmp_path: Path) -> None:
    e = Engine(4)
    leg = e.add_leg("packets", "pcmu", 0.0, dtmf_payload_type=101)
    e.set_inbound_mute(leg, True)
    e.set_recorder(leg, tmp_path / "m.wav")
    packets = pcmu_stream(tone(440, 8000, 0.5))
    packets.append((rtp(101, 100 + 25, 4000, 0x1234, struct.pack("!BBH", 5, 0x8A, 800), True), 500.0))
    events = run(e, 0.0, 40, packets, leg)
    e.stop_recorder(leg)
    assert [ev for ev in events if ev[1] == eng.DTMF] == []
    data, _ = read_wav(tmp_path / "m.wav")
    assert not data[:, 0].any()


def test_interrupt_stops_output_at_the_next_frame() -> None:
    e = Engine(4)
    leg = e.add_leg("stream", "pcm", 0.0)
    leg.playout.enqueue(1, 0, tone(300, RATE, 1.0))
    events = run(e, 0.0, 10)
    slots, _, data = e.drain_out()
    assert len(slots) == 10 and len(data) == 10 * 640
    leg.playout.interrupt(graceful=False)
    events += run(e, 200.0, 5)
    slots, _, _ = e.drain_out()
    assert len(slots) == 0  # nothing after the interrupt
    ended = [ev for ev in events if ev[1] == eng.PLAY_ENDED_]
    assert ended == [(leg.slot, eng.PLAY_ENDED_, 200, 1, 200, 200, 1)]


def test_graceful_interrupt_finishes_the_current_item() -> None:
    e = Engine(4)
    leg = e.add_leg("stream", "pcm", 0.0)
    leg.playout.enqueue(1, 0, tone(300, RATE, 0.3))   # 15 frames
    leg.playout.enqueue(2, 0, tone(500, RATE, 1.0))
    events = run(e, 0.0, 5)
    leg.playout.interrupt(graceful=True)
    events += run(e, 100.0, 30)
    slots, _, _ = e.drain_out()
    assert len(slots) == 15  # item 1 whole, item 2 never
    kinds = [(ev[1], ev[3]) for ev in events if ev[1] in (eng.PLAY_ENDED_, eng.PLAY_DROPPED_)]
    assert kinds == [(eng.PLAY_ENDED_, 1), (eng.PLAY_DROPPED_, 2)]
    ended = next(ev for ev in events if ev[1] == eng.PLAY_ENDED_)
    assert ended[2] == 300 and ended[4] == 300 and ended[6] == 0


def test_recording_has_both_channels_at_the_requested_rate(tmp_path: Path) -> None:
    e = Engine(4)
    leg = e.add_leg("stream", "pcmu", 0.0)
    e.set_recorder(leg, tmp_path / "call.wav", samplerate=8000, ptime_ms=200)
    inbound = tone(440, 8000, 1.0, amplitude=0.3)
    e.feed(leg, ulaw_encode(inbound))
    leg.playout.enqueue(1, 0, tone(1000, RATE, 0.5, amplitude=0.3))
    run(e, 0.0, 75)  # 1.5 s
    e.stop_recorder(leg)
    data, rate = read_wav(tmp_path / "call.wav")
    assert rate == 8000 and data.shape == (75 * 160, 2)

    def level(x: np.ndarray) -> float:
        return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))

    left, right = data[:, 0], data[:, 1]
    assert level(left[400:7600]) > 5000 and level(left[8400:]) < 50      # remote: 1 s of tone
    assert level(right[400:3600]) > 5000 and level(right[4400:]) < 50    # ours: 0.5 s of tone
    # the left channel is the 440 Hz tone, the right the 1 kHz one
    spectrum_l = np.abs(np.fft.rfft(left[:8000]))
    spectrum_r = np.abs(np.fft.rfft(right[:4000]))
    assert abs(np.argmax(spectrum_l) * 8000 / 8000 - 440) <= 2
    assert abs(np.argmax(spectrum_r) * 8000 / 4000 - 1000) <= 4


def test_rtp_legs_send_valid_rtp_and_conceal_loss() -> None:
    e = Engine(4)
    leg = e.add_leg("packets", "pcmu", 0.0, ssrc=0xCAFE)
    packets = pcmu_stream(tone(440, 8000, 1.0))
    del packets[20:23]  # three lost packets
    run(e, 0.0, 60, packets, leg)
    slots, offsets, data = e.drain_out()
    assert len(slots) == 60
    headers = [struct.unpack("!BBHII", data[offsets[i]:offsets[i] + 12]) for i in range(len(slots))]
    assert all(h[0] == 0x80 and h[1] & 0x7F == 0 and h[4] == 0xCAFE for h in headers)
    assert headers[0][1] & 0x80  # marker on the first packet
    assert [(h[2] - headers[0][2]) & 0xFFFF for h in headers] == list(range(60))
    assert [(h[3] - headers[0][3]) & 0xFFFFFFFF for h in headers] == [160 * k for k in range(60)]
    assert all(offsets[i + 1] - offsets[i] == 172 for i in range(60))
    stats = leg.stats["jitter"]
    # the three holes, and the end of the stream (concealed until the buffer goes idle)
    assert isinstance(stats, dict) and stats["played"] == 47 and stats["lost"] >= 3


def test_set_codec_switches_a_leg_to_the_new_codec_both_ways(tmp_path: Path) -> None:
    """A re-INVITE moved the call from PCMU to G.722: the leg decodes the new stream into the same
    recorder, sends with the new payload type, and refuses the old one."""
    e = Engine(4)
    leg = e.add_leg("packets", "pcmu", 0.0, dtmf_payload_type=101, ssrc=0xCAFE)
    e.set_recorder(leg, tmp_path / "call.wav", samplerate=16000, ptime_ms=200)
    run(e, 0.0, 50, pcmu_stream(tone(440, 8000, 1.0, amplitude=0.3)), leg)
    e.drain_out()
    e.set_codec(leg, "g722", payload_type=9, dtmf_payload_type=101, ptime_ms=20)
    assert (leg.codec.audio_rate, leg.codec.clock_rate, leg.payload_type, leg.dtmf_pt) == (16000, 8000, 9, 101)
    pcm16k = tone(3000, RATE, 1.0, amplitude=0.3)     # above 4 kHz / 2: only a wideband codec carries it
    encoder = G722Encoder()
    packets = [(rtp(9, 500 + k, 160 * k, 0xBEEF, encoder.encode(np.ascontiguousarray(pcm16k[320 * k:320 * (k + 1)]))),
                1000.0 + k * FRAME_MS) for k in range(50)]
    packets.append((rtp(0, 999, 0, 0xBEEF, b"\xff" * 160), 1500.0))        # PCMU is no longer the stream's
    run(e, 1000.0, 60, packets, leg)
    slots, offsets, data = e.drain_out()
    headers = [struct.unpack("!BBHII", data[offsets[i]:offsets[i] + 12]) for i in range(len(slots))]
    assert {h[1] & 0x7F for h in headers} == {9} and all(h[4] == 0xCAFE for h in headers)
    assert headers[0][1] & 0x80                                  # a marker: the stream changed
    assert [(h[3] - headers[0][3]) & 0xFFFFFFFF for h in headers[:3]] == [0, 160, 320]
    assert all(offsets[i + 1] - offsets[i] == 12 + 160 for i in range(len(slots)))
    assert leg.rx_other_pt >= 1
    e.stop_recorder(leg)
    data16, rate = read_wav(tmp_path / "call.wav")
    remote = data16[:, 0].astype(np.float64)
    before, after = remote[int(0.2 * rate):int(0.8 * rate)], remote[int(1.3 * rate):int(1.8 * rate)]
    assert abs(peak_hz(before, rate) - 440) < 10 and abs(peak_hz(after, rate) - 3000) < 10
    with pytest.raises(ValueError, match="ptime"):
        e.set_codec(leg, "pcmu", ptime_ms=25)


def test_garbage_and_foreign_payload_types_never_crash() -> None:
    e = Engine(4)
    leg = e.add_leg("packets", "pcmu", 0.0)
    rng = np.random.default_rng(1)
    junk = [(bytes(rng.integers(0, 256, int(n), dtype=np.uint8)), 0.0) for n in rng.integers(0, 200, 300)]
    junk.append((rtp(8, 1, 0, 1, b"\x00" * 160), 0.0))  # PCMA on a PCMU leg
    push(e, leg, junk)
    run(e, 0.0, 5)
    assert leg.rx_bad > 250 and leg.rx_other_pt >= 1


def test_bridge_plays_each_inbound_to_the_other() -> None:
    e = Engine(4)
    a = e.add_leg("stream", "pcm", 0.0, stream_silence=True)
    b = e.add_leg("stream", "pcm", 0.0, stream_silence=True)
    e.bridge(a, b)
    e.feed(a, tone(500, RATE, 0.2, 0.3).astype("<i2").tobytes())
    run(e, 0.0, 10)
    slots, offsets, data = e.drain_out()
    to_b = b"".join(data[offsets[i]:offsets[i + 1]] for i in range(len(slots)) if slots[i] == b.slot)
    assert np.array_equal(np.frombuffer(to_b, "<i2"), tone(500, RATE, 0.2, 0.3))


def test_stream_feed_accepts_any_chunking() -> None:
    e = Engine(4)
    leg = e.add_leg("stream", "pcm", 0.0)
    e.set_asr_tap(leg, True)
    pcm = tone(700, RATE, 0.1).astype("<i2").tobytes()
    for i in range(0, len(pcm), 7):  # odd sizes split samples across messages
        e.feed(leg, pcm[i:i + 7])
    run(e, 0.0, 5)
    [(got_leg, audio)] = e.drain_asr()
    assert got_leg is leg and np.array_equal(audio, tone(700, RATE, 0.1))


def test_the_asr_tap_keeps_the_newest_max_seconds() -> None:
    e = Engine(4)
    leg = e.add_leg("stream", "pcm", 0.0)
    e.set_asr_tap(leg, True, max_seconds=0.05)            # 800 samples: the tap wraps and drops
    pcm = (np.arange(RATE * 3 // 10) % 30000).astype(np.int16)   # 300 ms, every sample distinct
    e.feed(leg, pcm.astype("<i2").tobytes())
    run(e, 0.0, 15)
    [(got_leg, audio)] = e.drain_asr()
    assert got_leg is leg and np.array_equal(audio, pcm[-800:])
    run(e, 300.0, 2)                                      # after the drain: only what came since
    [(_, after)] = e.drain_asr()
    assert len(after) == 2 * 320 and not after.any()


@pytest.fixture
def peer() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2)
    yield s
    s.close()


def test_udp_leg_latches_receives_and_sends(peer: socket.socket) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        e = Engine(4)
        leg = e.add_leg("udp", "pcmu", 0.0, fd=sock.fileno(), latch=True, rtp_timeout_ms=500)
        e.set_asr_tap(leg, True)
        for pkt, _ in pcmu_stream(tone(440, 8000, 0.2))[:5]:
            peer.sendto(pkt, sock.getsockname())
        events = e.tick(0.0)
        assert (leg.slot, eng.LATCHED, 0, 0, 0, 0, 0) in events
        assert leg.remote == peer.getsockname()
        stranger.sendto(rtp(0, 1, 0, 9, b"\xff" * 160), sock.getsockname())
        for k in range(1, 10):
            events += e.tick(k * 20.0)
        assert leg.rx_packets == 5 and leg.rx_foreign == 1
        got = [peer.recvfrom(2000)[0] for _ in range(10)]
        assert all(len(p) == 172 and p[1] & 0x7F == 0 for p in got)
        for k in range(10, 40):  # silence from the peer: the RTP timeout fires once
            events += e.tick(k * 20.0)
        timeouts = [ev for ev in events if ev[1] == eng.RTP_TIMEOUT]
        assert len(timeouts) == 1 and timeouts[0][3] >= 500
    finally:
        sock.close()
        stranger.close()


def test_leg_lifecycle_and_caller_errors(tmp_path: Path) -> None:
    e = Engine(2)
    a = e.add_leg("stream", "pcm", 0.0)
    e.add_leg("packets", "g722", 0.0)
    with pytest.raises(ValueError, match="engine full: 2 legs"):
        e.add_leg("stream", "pcm", 0.0)
    with pytest.raises(ValueError, match="unknown transport 'tcp'"):
        e.add_leg("tcp", "pcm", 0.0)
    with pytest.raises(ValueError, match="unknown VAD type 'foo'"):
        e.set_vad(a, "foo")
    with pytest.raises(ValueError, match="feed\\(\\) is for stream legs"):
        e.feed(e.leg(1), b"\x00")
    e.set_recorder(a, tmp_path / "a.wav")
    run(e, 0.0, 3)
    e.remove_leg(a)
    assert e.leg_count == 1
    _, rate = read_wav(tmp_path / "a.wav")
    assert rate == RATE
    assert e.add_leg("stream", "pcm", 100.0).slot == a.slot


def test_denoise_reduces_noise_on_the_inbound_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    noise = np.round(rng.normal(0, 1000, RATE * 2)).astype(np.int16)
    levels = []
    for denoise in (False, True):
        e = Engine(2)
        leg = e.add_leg("stream", "pcm", 0.0)
        e.set_denoise(leg, denoise)
        e.set_recorder(leg, tmp_path / f"d{denoise}.wav")
        e.feed(leg, noise.astype("<i2").tobytes())
        run(e, 0.0, 100)
        e.remove_leg(leg)
        data, _ = read_wav(tmp_path / f"d{denoise}.wav")
        tail = data[RATE:, 0].astype(np.float64)  # after the suppressor has learned the noise
        levels.append(10 * np.log10(np.mean(tail ** 2)))
    assert levels[0] - levels[1] >= 8.0, levels


def test_stream_takes_back_underrun_delay_with_quiet_frames_only() -> None:
    quiet = np.zeros(320, np.int16).astype("<i2").tobytes()
    loud = tone(440, RATE, 0.02, 0.3).astype("<i2").tobytes()
    for held, expected_skips in ((quiet, 10), (loud, 0)):
        e = Engine(2)
        leg = e.add_leg("stream", "pcm", 0.0)
        t = 0.0
        for _ in range(10):          # real time
            e.feed(leg, loud)
            e.tick(t)
            t += 20
        for _ in range(10):          # the client stalls: ten underruns
            e.tick(t)
            t += 20
        e.feed(leg, held * 10)       # ... then sends what it held back
        for _ in range(30):
            e.feed(leg, held)
            e.tick(t)
            t += 20
        assert leg.stats["stream_skipped_frames"] == expected_skips


def test_bulk_fed_stream_is_never_skipped() -> None:
    e = Engine(2)
    leg = e.add_leg("stream", "pcm", 0.0)
    e.set_asr_tap(leg, True)
    e.feed(leg, np.zeros(RATE, np.int16).astype("<i2").tobytes())  # 1 s of silence at once
    run(e, 0.0, 60)
    assert leg.stats["stream_skipped_frames"] == 0
    [(_, audio)] = e.drain_asr()
    assert len(audio) == 60 * 320


def test_push_packets_rejects_offsets_outside_the_blob() -> None:
    e = Engine(2)
    leg = e.add_leg("packets", "pcmu", 0.0)
    slots = np.full(2, leg.slot, np.int32)
    arrivals = np.zeros(2)
    with pytest.raises(ValueError, match=r"datagram 0 spans 0\.\.1000, outside the 10-byte blob"):
        e.push_packets(slots, b"x" * 10, np.array([0, 1000, 5], np.int64), arrivals)
    with pytest.raises(ValueError, match=r"datagram 1 spans 8\.\.4, outside the 10-byte blob"):
        e.push_packets(slots, b"x" * 10, np.array([0, 8, 4], np.int64), arrivals)
    assert leg.rx_bad == 0


def test_udp_leg_rtcp_reports_both_ways(peer: socket.socket) -> None:
    from pbx.core.rtp import Bye, ReceiverReport, ReportBlock, SenderReport, build_rtcp, parse_rtcp

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        e = Engine(2)
        e.epoch_offset_ms = 1_700_000_000_000.0   # wall clock = engine clock + this
        leg = e.add_leg("udp", "pcmu", 0.0, fd=sock.fileno(), remote=peer.getsockname(), rtcp_interval_ms=100)
        packets = [p for p, _ in pcmu_stream(tone(440, 8000, 0.2))]
        del packets[3]                                     # one lost of ten
        peer_ntp = 0x1122334455667788
        for pkt in packets:
            peer.sendto(pkt, sock.getsockname())
        peer.sendto(build_rtcp([SenderReport(ssrc=0x1234, ntp_timestamp=peer_ntp, rtp_timestamp=1,
                                             packet_count=9, octet_count=1440)]), sock.getsockname())
        for k in range(15):
            e.tick(k * 20.0)
        reports = []
        while True:
            try:
                data = peer.recv(2000)
            except (BlockingIOError, TimeoutError):
                break
            peer.settimeout(0.2)
            if 200 <= data[1] <= 204:
                reports.append(parse_rtcp(data))
        assert reports, "no RTCP from the engine"
        sr, sdes = reports[0][0], reports[0][1]
        assert isinstance(sr, SenderReport) and sr.ssrc == leg.ssrc and sr.packet_count > 0
        assert sdes.packet_type == 202 and b"pypbx-" in sdes.body
        (block,) = sr.reports
        assert block.ssrc == 0x1234 and block.cumulative_lost == 1
        assert block.highest_sequence & 0xFFFF == 109
        assert block.lsr == (peer_ntp >> 16) & 0xFFFFFFFF
        assert leg.stats["rtcp_rx"] == 1 and leg.rtcp_tx == len(reports)

        # The peer's report on our stream: loss, jitter and the round trip from LSR/DLSR.
        our_ntp = sr.ntp_timestamp
        dlsr = 65536 // 100                                 # it held our SR for 10 ms
        peer.sendto(build_rtcp([ReceiverReport(ssrc=0x1234, reports=[ReportBlock(
            ssrc=leg.ssrc, fraction_lost=12, cumulative_lost=3, highest_sequence=500, jitter=40,
            lsr=(our_ntp >> 16) & 0xFFFFFFFF, dlsr=dlsr)]), Bye(sources=[0x1234])]), sock.getsockname())
        events = e.tick(15 * 20.0)
        stats = leg.stats
        assert (stats["remote_fraction_lost"], stats["remote_cumulative_lost"], stats["remote_jitter"]) == (12, 3, 40)
        sr_sent_ms = (our_ntp / 2**32 - 2208988800) * 1000 - e.epoch_offset_ms   # engine clock
        expected_rtt = 15 * 20.0 - sr_sent_ms - 10.0                              # the RR arrived at t=300
        assert isinstance(stats["rtt_ms"], float) and abs(stats["rtt_ms"] - expected_rtt) < 1.0
        assert [ev[1] for ev in events if ev[1] == eng.RTCP_BYE_] == [eng.RTCP_BYE_]
        peer.sendto(b"\x81\xc9\x00\x07" + b"\x00" * 8, sock.getsockname())   # RR claiming 32 bytes, holding 12
        e.tick(16 * 20.0)
        assert leg.rx_bad == 1
    finally:
        sock.close()


def test_recorders_started_together_flush_on_different_ticks(tmp_path: Path) -> None:
    e = Engine(4)
    legs = [e.add_leg("stream", "pcm", 0.0) for _ in range(3)]
    for i, leg in enumerate(legs):
        e.set_recorder(leg, tmp_path / f"{i}.wav", ptime_ms=200)
    sizes = []
    for k in range(12):
        e.tick(k * 20.0)
        sizes.append([(tmp_path / f"{i}.wav").stat().st_size for i in range(3)])
    frame_bytes = 320 * 4   # 20 ms of 16 kHz stereo 16-bit
    # slot s flushes early after s + 1 frames, then every 10 frames (200 ms) from there
    assert [row[0] for row in sizes[:2]] == [44 + frame_bytes, 44 + frame_bytes]
    assert [row[1] for row in sizes[:2]] == [44, 44 + 2 * frame_bytes]
    assert sizes[2][2] == 44 + 3 * frame_bytes
    assert sizes[10][0] == 44 + 11 * frame_bytes and sizes[10][1] == 44 + 2 * frame_bytes


def test_a_recorder_opened_elsewhere_is_attached_and_detached_open(tmp_path: Path) -> None:
    """A server creates the file on a worker thread and closes it there: the engine only writes."""
    e = Engine(4)
    leg = e.add_leg("stream", "pcm", 0.0)
    writer = WavWriter(tmp_path / "w.wav", 8000, 2, flush_ms=100)
    e.attach_recorder(leg, writer)
    e.feed(leg, tone(440, RATE, 0.5, amplitude=0.3).tobytes())
    run(e, 0.0, 15)                           # 300 ms
    assert e.detach_recorder(leg) is writer and not writer.closed
    assert e.detach_recorder(leg) is None
    run(e, 300.0, 5)                          # not recorded any more
    assert writer.frames_written == 15 * 160  # resampled to the writer's 8 kHz
    writer.close()
    data, rate = read_wav(tmp_path / "w.wav")
    assert rate == 8000 and data.shape == (15 * 160, 2)


def test_attach_recorder_refuses_a_mono_or_closed_writer(tmp_path: Path) -> None:
    e = Engine(4)
    leg = e.add_leg("stream", "pcm", 0.0)
    with WavWriter(tmp_path / "mono.wav", RATE, 1) as mono, \
            pytest.raises(ValueError, match=r"^the recorder needs a stereo writer, not 1 channel\(s\)$"):
        e.attach_recorder(leg, mono)
    closed = WavWriter(tmp_path / "closed.wav", RATE, 2)
    closed.close()
    with pytest.raises(ValueError, match=r"^the recorder's writer is closed$"):
        e.attach_recorder(leg, closed)
    assert e.detach_recorder(leg) is None
