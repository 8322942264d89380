"""RFC 4733 DTMF: one digit per key press in, a correct packet sequence out."""

from __future__ import annotations

import struct

import pytest

from pbx.core.dtmf import Receiver, Sender
from pbx.core.errors import MalformedPacket


def event(code: int, end: bool, duration: int, volume: int = 10) -> bytes:
    return struct.pack("!BBH", code, (0x80 if end else 0) | volume, duration)


def press(code: int, ts: int, frames: int = 5) -> list[tuple[int, bool, bytes]]:
    """A key press as a sender emits it: growing duration, marker first, end packet three times."""
    pkts = [(ts, i == 0, event(code, False, 160 * (i + 1))) for i in range(frames)]
    pkts += [(ts, False, event(code, True, 160 * frames))] * 3
    return pkts


def test_each_press_reported_once_despite_end_retransmissions() -> None:
    rx = Receiver()
    digits = []
    for code, ts in [(1, 1000), (1, 3000), (11, 5000), (15, 7000)]:  # "1", "1" again, "#", "D"
        for t, marker, payload in press(code, ts):
            d = rx.receive(0x1234, t, marker, payload)
            if d:
                digits.append(d)
    assert digits == ["1", "1", "#", "D"]
    assert rx.presses == 4


def test_lost_start_packets_still_report_the_press_once() -> None:
    rx = Receiver()
    pkts = press(5, 8000)[3:]  # first three packets lost
    assert [rx.receive(1, t, m, p) for t, m, p in pkts].count("5") == 1


def test_reordered_packets_of_one_press() -> None:
    rx = Receiver()
    pkts = press(9, 100)
    pkts[0], pkts[2] = pkts[2], pkts[0]
    assert [d for t, m, p in pkts if (d := rx.receive(7, t, m, p))] == ["9"]


def test_long_press_segments_continue_the_same_press() -> None:
    rx = Receiver()
    # RFC 4733 2.5.1.3: a press longer than the 16-bit duration continues with a new timestamp.
    assert rx.receive(1, 0, True, event(2, False, 0xFFFF)) == "2"
    assert rx.receive(1, 0xFFFF, False, event(2, False, 800)) is None
    assert rx.receive(1, 0xFFFF, False, event(2, True, 1600)) is None
    assert rx.receive(1, 0x20000, True, event(2, False, 160)) == "2"  # a new press (marker)


def test_new_ssrc_is_a_new_press() -> None:
    rx = Receiver()
    assert rx.receive(1, 500, True, event(3, True, 800)) == "3"
    assert rx.receive(2, 500, True, event(3, True, 800)) == "3"


def test_short_payload_is_malformed() -> None:
    with pytest.raises(MalformedPacket, match="telephone-event payload too short: 3 bytes"):
        Receiver().receive(1, 0, True, b"\x01\x02\x03")


def test_sender_sequence_matches_rfc4733() -> None:
    tx = Sender(duration=800, pause=320)  # 100 ms tone at 8 kHz, 40 ms pause
    tx.queue("7#")
    packets = []
    for _ in range(30):
        packets.append(tx.next_packet(160))
    sent = [p for p in packets if p]
    # digit 7: durations 160..800, marker on the first, then the end packet three times
    # (the packet that reaches the full duration is the first of the three end packets)
    first = [struct.unpack("!BBH", p[0]) for p in sent[:7]]
    assert [f[0] for f in first] == [7] * 7
    assert [f[2] for f in first] == [160, 320, 480, 640, 800, 800, 800]
    assert [bool(f[1] & 0x80) for f in first] == [False] * 4 + [True] * 3
    assert [p[1] for p in sent[:7]] == [True] + [False] * 6
    assert [p[2] for p in sent[:7]] == [True] + [False] * 6
    # then two empty frames of pause, then "#" (code 11) starts with the marker
    assert packets[7:9] == [None, None]
    assert struct.unpack("!BBH", packets[9][0])[0] == 11 and packets[9][1]
    assert not tx.busy


def test_sender_output_round_trips_through_receiver() -> None:
    tx, rx = Sender(), Receiver()
    tx.queue("0123456789*#ABCD")
    ts, got = 0, []
    for _ in range(400):
        pkt = tx.next_packet(160)
        if pkt is None:
            continue
        payload, marker, new_event = pkt
        if new_event:
            ts += 10_000
        if d := rx.receive(99, ts, marker, payload):
            got.append(d)
    assert "".join(got) == "0123456789*#ABCD"


def test_sender_rejects_non_digits() -> None:
    with pytest.raises(ValueError, match="not a DTMF digit: 'x'"):
        Sender().queue("x")
